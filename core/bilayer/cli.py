"""The ``bilayer`` command: one subcommand per job, errors as one line and exit status 2.

Results and per-tomogram summaries go to stdout; warnings go to stderr as one line each;
a user error (bad file, bad option, unwritable folder) is one line on stderr and exit
status 2, with the traceback only under ``--debug``.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import click

from bilayer._version import __version__
from bilayer.errors import BilayerError
from bilayer.cli_common import EXIT_INTERRUPTED, EXIT_USAGE, VOXEL_SIZE_HELP, echo_error, one_line

__all__ = ["main", "cli"]



class _Group(click.Group):
    """A click group whose errors are one line (click would print a usage block)."""

    def main(self, args: Sequence[str] | None = None, **extra: Any) -> Any:  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _interrupt)  # a killed run cleans up as after Ctrl-C
        with warnings.catch_warnings():
            warnings.showwarning = _show_warning
            try:
                result = super().main(argv, standalone_mode=False, **extra)
            except click.exceptions.Exit as e:
                return e.exit_code
            except click.exceptions.Abort:
                click.echo("bilayer: interrupted", err=True)
                return EXIT_INTERRUPTED
            except click.ClickException as e:
                if debug:
                    raise
                click.echo(f"bilayer: error: {one_line(e.format_message())} (see 'bilayer --help')", err=True)
                return EXIT_USAGE
            except BilayerError as e:
                if debug:
                    raise
                echo_error(e)
                return EXIT_USAGE
        return result if isinstance(result, int) else 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _show_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    click.echo(f"bilayer: warning: {one_line(str(message))}", err=True)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", prog_name="bilayer", message="%(prog)s %(version)s")
@click.option("--debug", is_flag=True, help="Show full tracebacks and debug logging.")
def cli(debug: bool) -> None:
    """Bilayer: membrane segmentation for cryo-electron tomograms (MemBrain v2 method).

    Arrays are (z, y, x), voxel sizes in Å, labels 0 background, 1 membrane, 2 ignore.
    """
    logging.basicConfig(level=logging.DEBUG if debug else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


@cli.command()
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder for the tomograms, labels, previews and parameter files.")
@click.option("-n", "--count", type=click.IntRange(min=1), default=1, show_default=True,
              help="How many tomograms; tomogram i uses seed SEED+i.")
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True,
              help="Random seed; the same seed and options give the same tomogram.")
@click.option("--shape", type=(int, int, int), default=None, metavar="Z Y X",
              help="Size in voxels, (z, y, x). [default: 128 128 128]")
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Voxel size in Å. [default: drawn per tomogram from the configured range, 5-20 Å]")
@click.option("--config", "config_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=None, help="JSON or YAML file of generator settings (SynthConfig fields); options override it.")
@click.option("--name", default="synth", show_default=True, help="File name prefix.")
@click.option("--preview/--no-preview", default=True, show_default=True, help="Write a PNG preview with the labels.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs of the same name.")
def synth(out_dir: Path, count: int, seed: int, shape: tuple[int, int, int] | None, voxel_size: float | None,
          config_path: Path | None, name: str, preview: bool, overwrite: bool) -> None:
    """Generate synthetic membrane tomograms with ground-truth labels.

    Writes NAME_SEED.mrc (float32 image), NAME_SEED_labels.mrc (int8: 0 background,
    1 membrane, 2 ignore), NAME_SEED.json (every drawn parameter) and NAME_SEED_preview.png.
    """
    from bilayer.data.synthetic import SynthConfig, generate_tomogram
    from bilayer.io import ensure_output_dir, write_volume
    from bilayer.io.atomic import atomic_open, check_output_path
    from bilayer.settings import merged_config
    from bilayer.viz import write_preview

    config = merged_config(SynthConfig, config_path, what="generator settings", shape=shape, voxel_size=voxel_size)
    folder = ensure_output_dir(out_dir)
    stems = [f"{name}_{seed + i:04d}" for i in range(count)]
    for stem in stems:  # refuse before writing anything, so a refusal leaves no partial set
        for suffix in (".mrc", "_labels.mrc", ".json", *(("_preview.png",) if preview else ())):
            check_output_path(folder / f"{stem}{suffix}", overwrite=overwrite)
    for index, stem in enumerate(_progress(stems, "synth")):
        started = time.perf_counter()
        tomo_seed = seed + index
        tomogram = generate_tomogram(config, seed=tomo_seed)
        label = f"bilayer synth seed {tomo_seed}"
        write_volume(folder / f"{stem}.mrc", tomogram.image, voxel_size=tomogram.voxel_size,
                     overwrite=overwrite, labels=[label])
        write_volume(folder / f"{stem}_labels.mrc", tomogram.labels.astype("int8"), voxel_size=tomogram.voxel_size,
                     overwrite=overwrite, labels=[label])
        record = {"bilayer_version": __version__, "seed": tomo_seed, "config": config.to_dict(),
                  "params": tomogram.params}
        with atomic_open(folder / f"{stem}.json", overwrite=overwrite) as f:
            f.write((json.dumps(record, indent=2, sort_keys=True) + "\n").encode())
        if preview:
            write_preview(folder / f"{stem}_preview.png", tomogram.image, tomogram.labels,
                          voxel_size=tomogram.voxel_size, title=f"{stem}.mrc (synthetic, seed {tomo_seed})",
                          overwrite=overwrite)
        membrane = float((tomogram.labels == 1).mean())
        click.echo(f"{folder / stem}.mrc  {'×'.join(map(str, tomogram.image.shape))}  "
                   f"voxel {tomogram.voxel_size:.2f} Å  membrane {100 * membrane:.1f}%  "
                   f"{time.perf_counter() - started:.1f} s")


@cli.command()
@click.argument("tomogram", type=click.Path(path_type=Path))
@click.option("--mask", type=click.Path(path_type=Path), default=None,
              help="A mask or label volume of the same shape to draw over the slices.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="PNG to write. [default: TOMOGRAM's stem + _preview.png, beside it]")
@click.option("--slab", type=click.IntRange(min=1), default=1, show_default=True,
              help="Voxels averaged across each slice; thicker slabs show noisy membranes better.")
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=VOXEL_SIZE_HELP)
@click.option("--overwrite", is_flag=True, help="Replace an existing PNG.")
def preview(tomogram: Path, mask: Path | None, out_path: Path | None, slab: int, voxel_size: float | None,
            overwrite: bool) -> None:
    """Write a PNG of three orthogonal central slices, with an optional mask overlay."""
    from bilayer.io import ensure_output_dir, read_volume
    from bilayer.viz import write_preview

    volume = read_volume(tomogram, voxel_size=voxel_size)
    overlay = read_volume(mask, voxel_size=volume.voxel_size) if mask is not None else None
    target = out_path or tomogram.with_name(f"{tomogram.stem}_preview.png")
    ensure_output_dir(target.parent)
    write_preview(target, volume, overlay, slab=slab, title=tomogram.name, overwrite=overwrite,
                  protect=[tomogram, *([mask] if mask else [])])
    click.echo(str(target))


@cli.command()
@click.argument("tomograms", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=VOXEL_SIZE_HELP)
def info(tomograms: tuple[Path, ...], voxel_size: float | None) -> None:
    """Print shape, dtype, voxel size and origin of tomograms (header and a data check)."""
    from bilayer.io import read_volume

    for path in tomograms:
        v = read_volume(path, voxel_size=voxel_size)
        vs = ", ".join(f"{s:.4g}" for s in v.voxel_size)
        origin = ", ".join(f"{o:.1f}" for o in v.origin)
        click.echo(f"{path}  {'×'.join(map(str, v.shape))} (z, y, x)  {v.data.dtype}  "
                   f"voxel ({vs}) Å  origin ({origin}) Å")


def _progress(items: Sequence[Any], what: str) -> Any:
    """A progress bar on stderr when it is a terminal and there is more than one item."""
    from tqdm import tqdm

    return tqdm(items, desc=what, unit="tomogram", leave=False, disable=len(items) < 2 or not sys.stderr.isatty())


def _add_commands() -> None:
    from bilayer.cli_batch import status_command
    from bilayer.cli_patches import patches
    from bilayer.cli_preprocess import preprocess
    from bilayer.cli_segment import components, segment_command, skeletonize_command, threshold_command
    from bilayer.cli_surfaces import measure_command, mesh_command
    from bilayer.cli_train import evaluate, finetune, train

    for command in (segment_command, threshold_command, components, skeletonize_command, mesh_command,
                    measure_command, preprocess, train, finetune, evaluate, patches, status_command):
        cli.add_command(command)


_add_commands()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bilayer`` command; returns its exit status."""
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
