"""The ``bilayer`` command: one subcommand per job, errors as one line and exit status 2.

Results and per-tomogram summaries go to stdout; warnings go to stderr as one line each;
a user error (bad file, bad option, unwritable folder) is one line on stderr and exit
status 2, with the traceback only under ``--debug``.
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import click
import numpy as np

from bilayer._version import __version__
from bilayer.errors import BilayerError
from bilayer.infer.config import InferenceConfig, Padding, Precision, TtaGrid
from bilayer.io import write_volume

__all__ = ["main", "cli"]

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
_INFER = InferenceConfig()  # the engine's defaults, shown in --help
_VOXEL_SIZE_HELP = "Voxel size in Å, replacing the file header's (needed when the header has 0)."


class _Group(click.Group):
    """A click group whose errors are one line (click would print a usage block)."""

    def main(self, args: Sequence[str] | None = None, **extra: Any) -> Any:  # type: ignore[override]
        argv = list(sys.argv[1:] if args is None else args)
        debug = "--debug" in argv
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
                click.echo(f"bilayer: error: {_one_line(e.format_message())} (see 'bilayer --help')", err=True)
                return EXIT_USAGE
            except BilayerError as e:
                if debug:
                    raise
                click.echo(f"bilayer: error: {_one_line(str(e))}", err=True)
                return EXIT_USAGE
        return result if isinstance(result, int) else 0


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _show_warning(message: Warning | str, category: type[Warning], *_: object, **__: object) -> None:
    click.echo(f"bilayer: warning: {_one_line(str(message))}", err=True)


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
              default=None, help="JSON file of generator settings (SynthConfig fields); options override it.")
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
    from bilayer.viz import write_preview

    config = _load_synth_config(SynthConfig, config_path, shape=shape, voxel_size=voxel_size)
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
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=_VOXEL_SIZE_HELP)
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
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=_VOXEL_SIZE_HELP)
def info(tomograms: tuple[Path, ...], voxel_size: float | None) -> None:
    """Print shape, dtype, voxel size and origin of tomograms (header and a data check)."""
    from bilayer.io import read_volume

    for path in tomograms:
        v = read_volume(path, voxel_size=voxel_size)
        vs = ", ".join(f"{s:.4g}" for s in v.voxel_size)
        origin = ", ".join(f"{o:.1f}" for o in v.origin)
        click.echo(f"{path}  {'×'.join(map(str, v.shape))} (z, y, x)  {v.data.dtype}  "
                   f"voxel ({vs}) Å  origin ({origin}) Å")


@cli.command()
@click.argument("tomograms", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder for <stem>_seg.mrc and the other outputs.")
@click.option("--model", "model_path", type=click.Path(path_type=Path), default=None,
              help="Checkpoint: Bilayer's own, or a MemBrain-seg .ckpt (imported safely, no code runs). "
                   "[default: the embedded default model]")
@click.option("--tta/--no-tta", default=_INFER.tta, show_default=True,
              help="Average the 8 mirrored copies of every window (8x slower, slightly better).")
@click.option("--tta-grid", type=click.Choice([g.value for g in TtaGrid]), default=_INFER.tta_grid.value,
              show_default=True, help="membrain: MemBrain-seg's mirrored windows (its exact scores); window: mirror "
              "each window in place (one pass always).")
@click.option("--window", type=click.IntRange(min=32), default=_INFER.window, show_default=True,
              help="Window edge in the model's voxels, a multiple of 32.")
@click.option("--fit-window/--fixed-window", default=_INFER.fit_window, show_default=True,
              help="Grow the window by up to 32 voxels where that predicts fewer voxels (e.g. one window "
                   "instead of eight for a 162³ tomogram; up to 1.7× the GPU memory of a 160³ window); "
                   "--fixed-window places MemBrain-seg's windows.")
@click.option("--overlap", type=click.FloatRange(0, 1, max_open=True), default=_INFER.overlap, show_default=True,
              help="Fraction of a window shared with its neighbours (MemBrain-seg uses 0.5).")
@click.option("--padding", type=click.Choice([p.value for p in Padding]), default=_INFER.padding.value,
              show_default=True, help="What fills a window along an axis the tomogram is shorter than: reflect: "
              "the tomogram mirrored; zeros: MemBrain-seg's (its exact scores; marks noise in thin tomograms).")
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=_VOXEL_SIZE_HELP)
@click.option("--rescale/--no-rescale", default=_INFER.rescale, show_default=True,
              help="Resample windows to the model's voxel size and back; --no-rescale only for tomograms already "
                   "at it.")
@click.option("--threshold", type=float, default=_INFER.threshold, show_default=True,
              help="Membrane where the network's score (a logit) exceeds this; higher gives thinner masks.")
@click.option("--scores", is_flag=True, help="Also write <stem>_scores.mrc (float32 logits).")
@click.option("--components", is_flag=True, help="Also write <stem>_components.mrc (1 = largest membrane).")
@click.option("--min-size", type=click.IntRange(min=0), default=0, show_default=True,
              help="With --components: drop membranes smaller than this many voxels.")
@click.option("--skeleton", is_flag=True, help="Also write <stem>_skeleton.mrc (one-voxel surface skeleton).")
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice([p.value for p in Precision]), default=_INFER.precision.value,
              show_default=True, help="Arithmetic of the network (auto: bfloat16 where the hardware has it).")
@click.option("--batch-size", type=click.IntRange(min=1), default=_INFER.batch_size, show_default=True,
              help="Windows per forward pass (more is faster on a large GPU).")
@click.option("--preview/--no-preview", default=True, show_default=True, help="Write <stem>_preview.png.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def segment(tomograms: tuple[Path, ...], out_dir: Path, model_path: Path | None, tta: bool, tta_grid: str,
            window: int, fit_window: bool, overlap: float, padding: str, voxel_size: float | None, rescale: bool,
            threshold: float, scores: bool, components: bool, min_size: int, skeleton: bool, device: str,
            precision: str, batch_size: int, preview: bool, overwrite: bool) -> int:
    """Segment membranes in tomograms: writes <stem>_seg.mrc (int8 0/1) per input.

    The model is loaded once for all TOMOGRAMS; a tomogram that fails is reported on one
    line and the others go on (exit status 2 if any failed).
    """
    from bilayer.infer.pipeline import OutputOptions, segment_file
    from bilayer.infer.predictor import Predictor
    from bilayer.io import ensure_output_dir

    config = InferenceConfig(window=window, fit_window=fit_window, overlap=overlap, tta=tta, tta_grid=tta_grid,
                             batch_size=batch_size, precision=precision, threshold=threshold, rescale=rescale,
                             padding=padding)
    outputs = OutputOptions(scores=scores, components=components, min_size=min_size, skeleton=skeleton,
                            preview=preview)
    folder = ensure_output_dir(out_dir)
    predictor = Predictor.from_checkpoint(model_path, config, device)
    failed = 0
    for path in tomograms:
        try:
            with _window_progress(path.name) as progress:
                report = segment_file(path, folder, predictor, voxel_size=voxel_size, outputs=outputs,
                                      overwrite=overwrite, progress=progress)
        except BilayerError as e:
            failed += 1
            click.echo(f"bilayer: error: {_one_line(str(e))}", err=True)
            continue
        click.echo(report.summary())
    return EXIT_USAGE if failed else 0


@cli.command()
@click.argument("masks", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for <stem>_components.mrc. [default: beside each mask]")
@click.option("--min-size", type=click.IntRange(min=0), default=0, show_default=True,
              help="Drop membranes smaller than this many voxels.")
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=_VOXEL_SIZE_HELP)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def components(masks: tuple[Path, ...], out_dir: Path | None, min_size: int, voxel_size: float | None,
               overwrite: bool) -> None:
    """Label connected membranes of binary masks (26-connectivity; 1 = the largest)."""
    from bilayer.postprocess import connected_components

    for path, volume, target in _each_mask(masks, out_dir, "_components.mrc", overwrite, voxel_size):
        found = connected_components(np.asarray(volume.data) > 0, min_size=min_size)
        dtype = np.float32 if found.count > np.iinfo(np.uint16).max else None
        write_volume(target, volume.with_data(found.labels), dtype=dtype, overwrite=overwrite, protect=[path])
        click.echo(f"{target}  {found.count} components")


@cli.command()
@click.argument("masks", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for <stem>_skeleton.mrc. [default: beside each mask]")
@click.option("--voxel-size", type=click.FloatRange(min=0, min_open=True), default=None, help=_VOXEL_SIZE_HELP)
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
def skeletonize(masks: tuple[Path, ...], out_dir: Path | None, voxel_size: float | None, overwrite: bool) -> None:
    """One-voxel surface skeletons of membrane masks (MemBrain-seg's Hessian method)."""
    from bilayer.postprocess import skeletonize as surface_skeleton

    for path, volume, target in _each_mask(masks, out_dir, "_skeleton.mrc", overwrite, voxel_size):
        skeleton = surface_skeleton(np.asarray(volume.data) > 0)
        write_volume(target, volume.with_data(skeleton.astype(np.int8)), overwrite=overwrite, protect=[path])
        click.echo(f"{target}  {int(skeleton.sum())} skeleton voxels")


def _each_mask(masks: Sequence[Path], out_dir: Path | None, suffix: str, overwrite: bool,
               voxel_size: float | None = None) -> Any:
    """(path, volume, output path) per mask, after checking every output can be written; ``voxel_size``
    (Å) replaces the headers' and goes into the outputs."""
    from bilayer.io import check_output_path, ensure_output_dir, read_volume

    targets = []
    for path in masks:
        folder = ensure_output_dir(out_dir) if out_dir is not None else path.parent
        target = folder / f"{path.stem}{suffix}"
        check_output_path(target, overwrite=overwrite, protect=masks)
        targets.append(target)
    for path, target in zip(masks, targets):
        yield path, read_volume(path, voxel_size=voxel_size), target


def _window_progress(name: str) -> Any:
    """A context giving a window-progress callback: a bar on a terminal, else nothing."""
    from contextlib import contextmanager

    from tqdm import tqdm

    @contextmanager
    def bar() -> Any:
        if not sys.stderr.isatty():
            yield None
            return
        with tqdm(desc=name, unit="window", leave=False) as t:
            def update(done: int, total: int) -> None:
                t.total = total
                t.update(done - t.n)
            yield update

    return bar()


def _progress(items: Sequence[Any], what: str) -> Any:
    """A progress bar on stderr when it is a terminal and there is more than one item."""
    from tqdm import tqdm

    return tqdm(items, desc=what, unit="tomogram", leave=False, disable=len(items) < 2 or not sys.stderr.isatty())


def _load_synth_config(config_cls: Any, path: Path | None, **overrides: Any) -> Any:
    """The generator config from a JSON file (if any), with command-line values on top."""
    from bilayer.errors import ConfigError

    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError(f"cannot read generator settings from {path}: {e}; give a JSON object of SynthConfig fields") from e
        if not isinstance(values, dict):
            raise ConfigError(f"{path} must hold a JSON object of SynthConfig fields")
    values.update({k: v for k, v in overrides.items() if v is not None})
    return config_cls.from_dict(values)


def _add_training_commands() -> None:
    from bilayer.cli_train import evaluate, finetune, train

    for command in (train, finetune, evaluate):
        cli.add_command(command)


_add_training_commands()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``bilayer`` command; returns its exit status."""
    return cli.main(argv)


if __name__ == "__main__":
    sys.exit(main())
