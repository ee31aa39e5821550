"""Side-by-side preprocessing benchmark: ``bilayer preprocess`` against MemBrain-seg 0.0.10's
``tomo_preprocessing``.

On a synthetic tomogram (Bilayer's generator, written once to ``bench/.cache/tomograms/``, its header
set to 16, 8 or 10 Å as each step needs) it runs each step with each tool in its own child process:

- ``rescale-16`` / ``rescale-8``: ``bilayer preprocess rescale --voxel-size 10 --smooth-edge`` against
  ``match_pixel_size --pixel-size-out 10`` (16 Å → 10 Å pads the spectrum, 8 Å → 10 Å crops it);
- ``spectrum``: ``bilayer preprocess spectrum`` against ``extract_spectrum``;
- ``match-spectrum``: ``bilayer preprocess match-spectrum --target`` against ``match_spectrum``, both
  matching to the spectrum of a second, differently imaged synthetic tomogram;
- ``deconvolve``: ``bilayer preprocess deconvolve --defocus --voxel-size`` against ``deconvolve
  --df --pixel-size`` (every other setting at each tool's default, which are the same).

It prints per step the wall time, CPU time and peak RSS of each child, the ratios MemBrain-seg /
Bilayer next to the targets (≥ 2× faster, ≤ ½ the peak memory), and the agreement of the outputs:
Pearson r of the volumes and the largest difference of the z-scored volumes (spectra: r of the
intensity columns and the largest relative difference). Spectrum matching differs by design
(MemBrain-seg takes the absolute value of the inverse transform, Bilayer its real part): both are
shown, with the agreement once Bilayer's result is folded at zero as MemBrain-seg's is.

MemBrain-seg's children run under an address-space limit (``--memory-limit``) so that a step too large
for this machine fails instead of exhausting it; above 8 M voxels its peak is first estimated from a
run on a half-size crop, and if it would not fit both tools run on the most sections that do (said in
the output). Results: ``bench/results/<time>/results.json``, each child's log in ``<step>/``.

    python bench/preprocess_vs_membrain.py --quick                 # 64×128×128, about 1 minute
    python bench/preprocess_vs_membrain.py --max-load 1.5          # 200×512×512, about 8 minutes
    python bench/preprocess_vs_membrain.py --steps rescale-16 deconvolve --shape 100 256 256
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from _membrain_env import BENCH_DIR, CACHE_DIR, BenchError, ensure_membrain_venv, membrain_python, run_measured

TARGET_VOXEL_SIZE = 10.0  # Å, what rescaling aims at (MemBrain-seg's recommended pixel size)
DEFAULT_SHAPE = (200, 512, 512)
QUICK_SHAPE = (64, 128, 128)
DEFOCUS = 30000.0  # Å: the main tomogram's (MAIN_LOOK), given to both deconvolutions
#: Generator settings of the tomogram processed (raw CTF at 3 µm) and of the one whose spectrum is matched to.
MAIN_LOOK = {"voxel_size": 10.0, "defocus_range_um": [3.0, 3.0], "phase_flip_probability": 0.0,
             "lowpass_probability": 0.0, "empty_probability": 0.0}
TARGET_LOOK = {"voxel_size": 10.0, "defocus_range_um": [6.0, 6.0], "phase_flip_probability": 1.0,
               "noise_color_range": [1.0, 1.0], "b_factor_range": [400.0, 500.0], "lowpass_probability": 1.0,
               "empty_probability": 0.0}
TIME_TARGET = 2.0  # MemBrain-seg / Bilayer wall time
RSS_TARGET = 2.0  # MemBrain-seg / Bilayer peak RSS (Bilayer at most half)
R_TARGET = 0.999  # Pearson r where the algorithm is the same
PROBE_ABOVE = 8 * 2**20  # voxels: estimate MemBrain-seg's peak from a half-size crop first
AS_OVERHEAD_MB = 1536.0  # address space MemBrain-seg maps beyond its resident memory (torch's libraries)
MIN_SECTIONS = 16  # fewer sections than this: MemBrain-seg is not run at all
#: Environment of every measured child: no FutureWarnings from MemBrain-seg's libraries in the logs.
QUIET = {"PYTHONWARNINGS": "ignore::FutureWarning"}


@dataclass(frozen=True)
class Step:
    """One preprocessing step: its input's header voxel size and what its outputs are."""

    name: str
    title: str
    header_voxel_size: float
    output: str  # "volume" or "spectrum"
    same_algorithm: bool = True


STEPS = {
    "rescale-16": Step("rescale-16", "rescale 16 Å → 10 Å (Fourier padding)", 16.0, "volume"),
    "rescale-8": Step("rescale-8", "rescale 8 Å → 10 Å (Fourier cropping)", 8.0, "volume"),
    "spectrum": Step("spectrum", "amplitude spectrum", 10.0, "spectrum"),
    "match-spectrum": Step("match-spectrum", "spectrum matching", 10.0, "volume", same_algorithm=False),
    "deconvolve": Step("deconvolve", f"deconvolution (defocus {DEFOCUS:g} Å)", 10.0, "volume"),
}
BILAYER_COMMANDS = {"rescale-16": "rescale", "rescale-8": "rescale", "spectrum": "spectrum",
                    "match-spectrum": "match-spectrum", "deconvolve": "deconvolve"}


@dataclass
class Context:
    """What every step shares: the inputs, the results folder, the memory limit."""

    shape: tuple[int, int, int]
    seed: int
    out: Path
    limit_mb: float
    probe: str
    keep_outputs: bool
    target_tsv: Path = Path()
    _base_mb: float | None = field(default=None, repr=False)

    @property
    def stem(self) -> str:
        return f"preproc_{'x'.join(map(str, self.shape))}"

    def tomogram(self, voxel_size: float) -> Path:
        """The main tomogram with ``voxel_size`` in its header (same voxels for every header)."""
        folder = CACHE_DIR / "tomograms"
        base = synthesize(folder, self.stem, self.shape, self.seed, MAIN_LOOK)
        return base if voxel_size == MAIN_LOOK["voxel_size"] else with_header(base, voxel_size)

    def membrain_base_mb(self) -> float:
        """Peak RSS of MemBrain-seg's command doing nothing but its imports (``--help``), measured once."""
        if self._base_mb is None:
            ran = run_guarded([tomo_preprocessing(), "--help"], self.out / "membrain_imports.log", self.limit_mb)
            if ran["returncode"] != 0:
                raise BenchError(f"MemBrain-seg's tomo_preprocessing --help failed; see {ran['log']}")
            self._base_mb = ran["peak_rss_mb"]
        return self._base_mb


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return _run(args)
    except BenchError as e:
        print(f"preprocess_vs_membrain: error: {e}", file=sys.stderr)
        return 2


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", nargs="+", choices=list(STEPS), default=list(STEPS), help="steps to run (default: all)")
    p.add_argument("--shape", nargs=3, type=int, metavar=("Z", "Y", "X"), default=None,
                   help=f"tomogram size (default {' '.join(map(str, DEFAULT_SHAPE))})")
    p.add_argument("--quick", action="store_true", help=f"smoke test on {'×'.join(map(str, QUICK_SHAPE))}")
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic tomogram (the target's is seed + 1)")
    p.add_argument("--memory-limit", type=float, default=None, metavar="GB",
                   help="address-space limit of every child (default: available memory now less 1 GB)")
    p.add_argument("--probe", choices=("auto", "always", "never"), default="auto",
                   help=f"estimate MemBrain-seg's peak from a half-size crop first (auto: above {PROBE_ABOVE} voxels)")
    p.add_argument("--max-load", type=float, default=None,
                   help="before each step, wait (up to --max-wait minutes in all) until the 1-min load is below this")
    p.add_argument("--max-wait", type=float, default=20.0, help="minutes of waiting for --max-load, in all")
    p.add_argument("--keep-outputs", action="store_true", help="keep the output volumes (default: logs and TSVs only)")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: bench/results/<time>)")
    args = p.parse_args(argv)
    if args.quick and args.shape is None:
        args.shape = list(QUICK_SHAPE)
    args.shape = tuple(args.shape or DEFAULT_SHAPE)
    if min(args.shape) < 2:
        p.error("--shape: every size must be at least 2")
    return args


def _run(args: argparse.Namespace) -> int:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = (args.out or BENCH_DIR / "results" / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    _check_bilayer_commands(args.steps)
    versions = ensure_membrain_venv(out)
    limit_mb = 1024 * args.memory_limit if args.memory_limit else _meminfo_mb("MemAvailable") - 1024
    ctx = Context(args.shape, args.seed, out, limit_mb, args.probe, args.keep_outputs)
    report = {"started": stamp, "machine": machine(), "membrain": versions, "bilayer": _bilayer_version(),
              "shape": list(args.shape), "seed": args.seed, "defocus": DEFOCUS, "memory_limit_mb": limit_mb,
              "steps": []}
    print(format_machine(report))
    print(f"results and logs: {out}")
    if "match-spectrum" in args.steps:
        ctx.target_tsv = target_spectrum(ctx)
    deadline = time.monotonic() + 60 * args.max_wait
    for name in args.steps:
        _wait_for_load(args.max_load, deadline)
        result = run_step(STEPS[name], ctx)
        report["steps"].append(result)
        print(format_step(result))
        (out / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    print(format_summary(report))
    print(f"\nwritten {out / 'results.json'}")
    failed = [r["step"] for r in report["steps"] for run in r["runs"].values() if run["returncode"] != 0]
    return 1 if failed else 0


def run_step(step: Step, ctx: Context) -> dict:
    """Run MemBrain-seg and Bilayer on ``step``'s input; measure both, compare their outputs."""
    folder = ctx.out / step.name
    if folder.exists() and any(folder.iterdir()):
        raise BenchError(f"{folder} already holds results of {step.name}; give another --out folder")
    tomo = ctx.tomogram(step.header_voxel_size)
    result = {"step": step.name, "title": step.title, "input": str(tomo), "shape": list(ctx.shape),
              "header_voxel_size": step.header_voxel_size, "runs": {}, "notes": []}
    compared = tomo
    if ctx.probe == "always" or (ctx.probe == "auto" and np.prod(ctx.shape) > PROBE_ABOVE):
        estimate = estimate_membrain_peak(step, tomo, ctx, folder)
        result["membrain_estimate"] = estimate
        if estimate["sections"] < ctx.shape[0]:
            compared = z_crop(tomo, estimate["sections"]) if estimate["sections"] >= MIN_SECTIONS else None
            result["notes"].append(_shrink_note(estimate, ctx))
    if compared is not None:
        result["compared_shape"] = [int(s) for s in _header(compared)[0]]
        result["runs"]["membrain-seg"] = run_tool("membrain-seg", step, compared, ctx, folder / "membrain")
    result["runs"]["bilayer"] = run_tool("bilayer", step, compared or tomo, ctx, folder / "bilayer")
    if compared not in (None, tomo):
        result["runs"]["bilayer-full"] = run_tool("bilayer", step, tomo, ctx, folder / "bilayer-full")
    m, b = result["runs"].get("membrain-seg"), result["runs"]["bilayer"]
    if m and m["returncode"] == 0 and b["returncode"] == 0:
        result["time_ratio"] = m["wall_s"] / b["wall_s"]
        result["rss_ratio"] = m["peak_rss_mb"] / b["peak_rss_mb"]
        result["agreement"] = agreement(step, Path(m["output"]), Path(b["output"]))
    if not ctx.keep_outputs:
        for run in result["runs"].values():
            if run["output"].endswith(".mrc"):
                Path(run["output"]).unlink(missing_ok=True)
    return result


def run_tool(tool: str, step: Step, tomo: Path, ctx: Context, out_dir: Path) -> dict:
    """One measured child: ``tool`` doing ``step`` on ``tomo`` (MemBrain-seg under the memory limit)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / (f"{tomo.stem}_{step.name}" + (".tsv" if step.output == "spectrum" else ".mrc"))
    argv = membrain_argv(step, tomo, output, ctx) if tool == "membrain-seg" else bilayer_argv(step, tomo, output, ctx)
    run = {"tool": tool, **run_guarded(argv, out_dir.with_suffix(".log"), ctx.limit_mb), "output": str(output)}
    if run["returncode"] == 0 and output.suffix == ".mrc":
        shape, voxel_size = _header(output)
        run.update(output_shape=[int(s) for s in shape], output_voxel_size=voxel_size)
    elif run["returncode"] == 0:
        run["bins"] = len(output.read_text().splitlines()) - 1
    else:
        print(f"{tool} failed on {step.name} (exit {run['returncode']}); see {run['log']}", file=sys.stderr)
    return run


def membrain_argv(step: Step, tomo: Path, output: Path, ctx: Context) -> list:
    """MemBrain-seg's own command for ``step`` (its defaults except what the step fixes)."""
    tp = tomo_preprocessing()
    if step.name.startswith("rescale"):
        return [tp, "match_pixel_size", "--input-tomogram", tomo, "--output-path", output,
                "--pixel-size-out", TARGET_VOXEL_SIZE]
    if step.name == "spectrum":
        return [tp, "extract_spectrum", "--input-path", tomo, "--output-path", output]
    if step.name == "match-spectrum":
        return [tp, "match_spectrum", "--input", tomo, "--target", ctx.target_tsv, "--output", output]
    return [tp, "deconvolve", "--input", tomo, "--output", output, "--pixel-size", step.header_voxel_size,
            "--df", DEFOCUS]


def bilayer_argv(step: Step, tomo: Path, output: Path, ctx: Context) -> list:
    """Bilayer's command for ``step``, with MemBrain-seg's settings (Bilayer's defaults are the same)."""
    command = [sys.executable, "-m", "bilayer", "preprocess", BILAYER_COMMANDS[step.name], tomo, "--out", output]
    if step.name.startswith("rescale"):
        return command + ["--voxel-size", TARGET_VOXEL_SIZE, "--smooth-edge"]
    if step.name == "match-spectrum":
        return command + ["--target", ctx.target_tsv]
    if step.name == "deconvolve":
        return command + ["--defocus", DEFOCUS, "--voxel-size", step.header_voxel_size]
    return command


def run_guarded(argv: list, log: Path, limit_mb: float) -> dict:
    """Run ``argv`` under an address-space limit of ``limit_mb`` MiB (a MemoryError instead of a full
    machine), its output in ``log``: :func:`run_measured`'s figures as a dict."""
    return run_measured(argv, log, env=QUIET, limit_mb=limit_mb).to_dict()


def agreement(step: Step, reference: Path, other: Path) -> dict:
    """How Bilayer's output ``other`` agrees with MemBrain-seg's ``reference``."""
    if step.output == "spectrum":
        return spectrum_agreement(reference, other)
    if step.same_algorithm:
        return volume_agreement(reference, other)
    return match_agreement(reference, other)


def volume_agreement(reference: Path, other: Path) -> dict:
    """Pearson r of two volumes, and the largest and mean |difference| once each is z-scored."""
    with _open_pair(reference, other) as (ref, oth):
        if ref.shape != oth.shape:
            return {"kind": "volume", "shapes_differ": f"{_shape(ref)} vs {_shape(oth)}"}
        return {"kind": "volume", **_pair_stats(ref, oth)}


def match_agreement(reference: Path, other: Path) -> dict:
    """:func:`volume_agreement` for spectrum matching, plus how far the difference by design explains it.

    MemBrain-seg's output is z-score(|R|), Bilayer's z-score(R) = (R - μ)/σ, R the filtered real part.
    Folding Bilayer's at its real zero, |B + c| with c = μ/σ, should give MemBrain-seg's; c is fitted
    (the value maximising r on a subsample), then r, max |Δ| and the fraction of voxels with B + c < 0
    (the voxels MemBrain-seg flips) are taken on all voxels.
    """
    with _open_pair(reference, other) as (ref, oth):
        if ref.shape != oth.shape:
            return {"kind": "match", "shapes_differ": f"{_shape(ref)} vs {_shape(oth)}"}
        plain = _pair_stats(ref, oth)
        offset = _fold_offset(ref, oth)
        folded = _pair_stats(ref, oth, offset=offset)
        sign, flipped, n = 0, 0, 0
        for x, y in _slabs(ref, oth):
            sign += int(np.count_nonzero((x > 0) != (y > 0)))
            flipped += int(np.count_nonzero(y + offset < 0))
            n += x.size
        return {"kind": "match", **plain, "sign_differs": sign / n,
                "pearson_abs": _pair_stats(ref, oth, offset=0.0)["pearson"], "offset": offset,
                "pearson_folded": folded["pearson"], "max_abs_diff_folded_z": folded["max_abs_diff_z"],
                "flipped": flipped / n}


def spectrum_agreement(reference: Path, other: Path) -> dict:
    """Pearson r of two spectra's intensity columns and their largest relative difference."""
    ref, oth = (np.loadtxt(p, delimiter="\t", skiprows=1, ndmin=2)[:, 1] for p in (reference, other))
    if ref.shape != oth.shape:
        return {"kind": "spectrum", "shapes_differ": f"{len(ref)} vs {len(oth)} bins"}
    return {"kind": "spectrum", "bins": len(ref), "pearson": float(np.corrcoef(ref, oth)[0, 1]),
            "max_rel_diff": float(np.max(np.abs(oth - ref) / np.abs(ref)))}


class _open_pair:
    """Both volumes memory-mapped (outputs may be larger than what the comparison should hold)."""

    def __init__(self, a: Path, b: Path) -> None:
        import mrcfile

        self._files = [mrcfile.mmap(p, mode="r", permissive=True) for p in (a, b)]

    def __enter__(self) -> tuple[np.ndarray, np.ndarray]:
        return self._files[0].data, self._files[1].data

    def __exit__(self, *exc: object) -> None:
        for f in self._files:
            f.close()


def _shape(a: np.ndarray) -> str:
    return "×".join(map(str, a.shape))


def _slabs(a: np.ndarray, b: np.ndarray):
    """Matching z-slabs of two volumes as float64, about 4 M voxels at a time."""
    per = max(1, 4 * 2**20 // int(np.prod(a.shape[1:])))
    for z0 in range(0, a.shape[0], per):
        yield np.asarray(a[z0:z0 + per], dtype=np.float64), np.asarray(b[z0:z0 + per], dtype=np.float64)


def _pair_stats(x_volume: np.ndarray, y_volume: np.ndarray, *, offset: float | None = None) -> dict:
    """r of x and y (y replaced by |y + offset| if an offset is given), max and mean |z(x) - z(y)|;
    two passes over the slabs (means and spreads, then centred sums), so volumes are never held whole."""
    def fold(y: np.ndarray) -> np.ndarray:
        return y if offset is None else np.abs(y + offset)

    n, sums = 0, np.zeros(4)
    for x, y in _slabs(x_volume, y_volume):
        y = fold(y)
        n += x.size
        sums += (x.sum(), y.sum(), (x * x).sum(), (y * y).sum())
    mx, my = sums[0] / n, sums[1] / n
    sx, sy = (np.sqrt(max(s / n - m * m, 0.0)) or 1.0 for s, m in ((sums[2], mx), (sums[3], my)))
    cxy = cxx = cyy = dsum = dmax = 0.0
    for x, y in _slabs(x_volume, y_volume):
        x -= mx
        y = fold(y) - my
        cxy, cxx, cyy = cxy + (x * y).sum(), cxx + (x * x).sum(), cyy + (y * y).sum()
        d = np.abs(x / sx - y / sy)
        dsum, dmax = dsum + d.sum(), max(dmax, float(d.max()))
    return {"pearson": float(cxy / np.sqrt(cxx * cyy)) if cxx and cyy else float("nan"),
            "max_abs_diff_z": dmax, "mean_abs_diff_z": dsum / n}


def _fold_offset(x_volume: np.ndarray, y_volume: np.ndarray) -> float:
    """The c maximising r(x, |y + c|), on about a million voxels: a grid over the values of -y (outside
    it |y + c| is ±(y + c) and r no longer changes), then refined."""
    from scipy.optimize import minimize_scalar

    step = max(1, x_volume.size // 2**20)
    x = np.asarray(x_volume.reshape(-1)[::step], dtype=np.float64)
    y = np.asarray(y_volume.reshape(-1)[::step], dtype=np.float64)

    def minus_r(c: float) -> float:
        return -float(np.corrcoef(x, np.abs(y + c))[0, 1])

    grid = np.linspace(-y.max(), -y.min(), 241)
    best = grid[int(np.argmin([minus_r(c) for c in grid]))]
    width = grid[1] - grid[0]
    found = minimize_scalar(minus_r, bounds=(best - width, best + width), method="bounded")
    return float(found.x)


def estimate_membrain_peak(step: Step, tomo: Path, ctx: Context, folder: Path) -> dict:
    """MemBrain-seg's peak RSS on ``tomo`` predicted from a run on a half-size crop, and the number of
    sections that fit under the memory limit (peak = imports + a part growing with the voxels)."""
    probe = half_crop(tomo)
    out_dir = folder / "membrain-probe"
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / (f"{probe.stem}_{step.name}" + (".tsv" if step.output == "spectrum" else ".mrc"))
    ran = run_guarded(membrain_argv(step, probe, output, ctx), folder / "membrain-probe.log", ctx.limit_mb)
    shutil.rmtree(out_dir, ignore_errors=True)
    base = ctx.membrain_base_mb()
    probe_voxels, voxels = int(np.prod(_header(probe)[0])), int(np.prod(ctx.shape))
    if ran["returncode"] != 0:  # the probe itself did not fit: give up on MemBrain-seg for this step
        return {"probe_shape": list(_header(probe)[0]), "probe_peak_mb": ran["peak_rss_mb"], "probe_failed": True,
                "base_mb": base, "predicted_mb": None, "sections": 0, "log": ran["log"]}
    per_voxel = max(ran["peak_rss_mb"] - base, 0.0) / probe_voxels
    predicted = base + per_voxel * voxels
    room = ctx.limit_mb - AS_OVERHEAD_MB - base
    sections = ctx.shape[0] if predicted + AS_OVERHEAD_MB <= ctx.limit_mb else \
        max(0, int(room / (per_voxel * voxels / ctx.shape[0])) // 2 * 2)
    return {"probe_shape": [int(s) for s in _header(probe)[0]], "probe_peak_mb": ran["peak_rss_mb"],
            "probe_wall_s": ran["wall_s"], "base_mb": base, "predicted_mb": predicted,
            "sections": min(sections, ctx.shape[0]), "log": ran["log"]}


def _shrink_note(estimate: dict, ctx: Context) -> str:
    full = "×".join(map(str, ctx.shape))
    predicted = f"{estimate['predicted_mb'] / 1024:.1f} GB" if estimate["predicted_mb"] else "more than the probe"
    limit = f"{ctx.limit_mb / 1024:.1f} GB of address space, {AS_OVERHEAD_MB / 1024:.1f} GB of it mapped by its libraries"
    if estimate["sections"] < MIN_SECTIONS:
        return f"MemBrain-seg not run: on {full} it would need {predicted} (limit {limit}); Bilayer alone"
    return (f"MemBrain-seg would need {predicted} on {full} (limit {limit}): both tools compared on the central "
            f"{estimate['sections']} sections; Bilayer also on the full tomogram (bilayer-full)")


def synthesize(folder: Path, name: str, shape: tuple[int, int, int], seed: int, look: dict) -> Path:
    """A synthetic tomogram by ``bilayer synth`` (cached): ``folder/<name>_<seed>.mrc``."""
    image = folder / f"{name}_{seed:04d}.mrc"  # bilayer synth's naming
    if image.is_file():
        return image
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"{name}_{seed}_look.json"
    config.write_text(json.dumps({k: v for k, v in look.items() if k != "voxel_size"}, indent=2) + "\n")
    print(f"generating {image.name} ({'×'.join(map(str, shape))}) ...", flush=True)
    argv = [sys.executable, "-m", "bilayer", "synth", "--out", folder, "--seed", seed, "--shape", *shape,
            "--voxel-size", look["voxel_size"], "--config", config, "--name", name, "--no-preview", "--overwrite"]
    run_measured(argv, folder / f"{name}_{seed}_synth.log").check(f"generating {image.name}")
    if not image.is_file():
        raise BenchError(f"bilayer synth did not write {image}; see {folder / f'{name}_{seed}_synth.log'}")
    return image


def with_header(source: Path, voxel_size: float) -> Path:
    """A copy of ``source`` (cached beside it) whose header says ``voxel_size`` Å."""
    from bilayer.io import read_volume, write_volume

    target = source.with_name(f"{source.stem}_{voxel_size:g}A.mrc")
    if not target.is_file():
        write_volume(target, read_volume(source).data, voxel_size=voxel_size, overwrite=True)
    return target


def z_crop(source: Path, sections: int) -> Path:
    """The central ``sections`` sections of ``source`` (cached beside it, same header)."""
    return _crop(source, sections, 1)


def half_crop(source: Path) -> Path:
    """The central half (each axis halved, even) of ``source``: MemBrain-seg's memory probe."""
    return _crop(source, None, 2)


def _crop(source: Path, sections: int | None, divisor: int) -> Path:
    from bilayer.io import read_volume, write_volume

    volume = read_volume(source)
    size = [max(2, n // divisor // 2 * 2) for n in volume.shape]
    if sections is not None:
        size[0] = sections
    target = source.with_name(f"{source.stem}_crop{'x'.join(map(str, size))}.mrc")
    if not target.is_file():
        start = [(n - s) // 2 for n, s in zip(volume.shape, size, strict=True)]
        data = volume.data[tuple(slice(a, a + s) for a, s in zip(start, size, strict=True))]
        write_volume(target, np.ascontiguousarray(data), voxel_size=volume.voxel_size, overwrite=True)
    return target


def target_spectrum(ctx: Context) -> Path:
    """The spectrum both tools match to: Bilayer's spectrum of a second tomogram imaged differently
    (6 µm defocus, phase-flipped, blue noise, strong B-factor, low-passed; cached)."""
    folder = CACHE_DIR / "tomograms"
    tomo = synthesize(folder, f"{ctx.stem}_target", ctx.shape, ctx.seed + 1, TARGET_LOOK)
    tsv = tomo.with_name(f"{tomo.stem}_spectrum.tsv")
    if not tsv.is_file():
        argv = [sys.executable, "-m", "bilayer", "preprocess", "spectrum", tomo, "--out", tsv]
        run_measured(argv, folder / f"{tomo.stem}_spectrum.log").check(f"the spectrum of {tomo.name}")
    return tsv


def tomo_preprocessing() -> Path:
    """MemBrain-seg's ``tomo_preprocessing`` command in its virtualenv."""
    return membrain_python().parent / "tomo_preprocessing"


def _check_bilayer_commands(steps: list[str]) -> None:
    missing = []
    for command in sorted({BILAYER_COMMANDS[s] for s in steps}):
        done = subprocess.run([sys.executable, "-m", "bilayer", "preprocess", command, "--help"], check=False,
                              capture_output=True, text=True)
        if done.returncode != 0:
            missing.append(command)
    if missing:
        raise BenchError(f"this Bilayer has no `bilayer preprocess {'/'.join(missing)}`; leave those steps out "
                         f"with --steps (available: {', '.join(s for s in steps if BILAYER_COMMANDS[s] not in missing)})")


def _wait_for_load(max_load: float | None, deadline: float) -> None:
    while max_load is not None and os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        print(f"load average {os.getloadavg()[0]:.2f} > {max_load:g}: waiting a minute", flush=True)
        time.sleep(60)


def _header(path: Path) -> tuple[tuple[int, int, int], float]:
    """(z, y, x) shape and x voxel size (Å) of an MRC file."""
    import mrcfile

    with mrcfile.open(path, header_only=True, permissive=True) as f:
        h = f.header
        return (int(h.nz), int(h.ny), int(h.nx)), round(float(f.voxel_size.x), 4)


def _meminfo_mb(key: str) -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"/proc/meminfo has no {key}; give --memory-limit")


def machine() -> dict:
    """CPU model, cores, memory and load of this machine."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_total_mb": _meminfo_mb("MemTotal"),
            "memory_available_mb": _meminfo_mb("MemAvailable"), "load": os.getloadavg(),
            "platform": platform.platform(), "python": sys.version.split()[0]}


def _bilayer_version() -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(BENCH_DIR), *args], check=False, capture_output=True,
                              text=True).stdout.strip()

    return {"git": git("rev-parse", "--short", "HEAD"), "git_dirty": bool(git("status", "--porcelain", "-uno"))}


def format_machine(report: dict) -> str:
    m = report["machine"]
    return (f"CPU: {m['cpu']}, {m['cores']} cores; memory {m['memory_total_mb'] / 1024:.1f} GB, "
            f"{m['memory_available_mb'] / 1024:.1f} GB available; load average {_loads(m['load'])}\n"
            f"MemBrain-seg {report['membrain']['membrain_seg']} (its venv), Bilayer {report['bilayer']['git']}"
            f"{' (uncommitted changes)' if report['bilayer']['git_dirty'] else ''}; every child limited to "
            f"{report['memory_limit_mb'] / 1024:.1f} GB of address space")


def _loads(load: list[float] | tuple[float, ...]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def _met(value: float | None, target: float) -> str:
    return "n/a" if value is None else ("met" if value >= target else "NOT met")


def format_step(result: dict) -> str:
    """The table of one step as text."""
    shape = "×".join(map(str, result.get("compared_shape", result["shape"])))
    lines = [f"\n== {result['title']}: {shape} at {result['header_voxel_size']:g} Å =="]
    head = f"{'tool':<14}{'wall s':>9}{'CPU s':>9}{'peak RSS MB':>13}  {'output':<22}{'load 1/5/15 before → after'}"
    lines += [head, "-" * len(head)]
    for name, run in result["runs"].items():
        if run["returncode"] != 0:
            lines.append(f"{name:<14}FAILED (exit {run['returncode']}, peak RSS {run['peak_rss_mb']:.0f} MB); "
                         f"see {run['log']}")
            continue
        output = (f"{'×'.join(map(str, run['output_shape']))} {run['output_voxel_size']:g} Å"
                  if "output_shape" in run else f"TSV, {run.get('bins', '?')} bins")
        lines.append(f"{name:<14}{run['wall_s']:>9.1f}{run['user_s'] + run['system_s']:>9.1f}"
                     f"{run['peak_rss_mb']:>13.0f}  {output:<22}{_loads(run['load_before'])} → "
                     f"{_loads(run['load_after'])}")
    if "time_ratio" in result:
        lines.append(f"MemBrain-seg / Bilayer: time {result['time_ratio']:.2f}× (target ≥ {TIME_TARGET:g}×: "
                     f"{_met(result['time_ratio'], TIME_TARGET)}), peak RSS {result['rss_ratio']:.2f}× (target ≥ "
                     f"{RSS_TARGET:g}×, i.e. Bilayer ≤ ½: {_met(result['rss_ratio'], RSS_TARGET)})")
        lines += _format_agreement(result["agreement"])
    estimate = result.get("membrain_estimate")
    if estimate and estimate.get("predicted_mb"):
        lines.append(f"MemBrain-seg's peak estimated from {'×'.join(map(str, estimate['probe_shape']))}: "
                     f"{estimate['probe_peak_mb']:.0f} MB there, {estimate['predicted_mb']:.0f} MB predicted here")
    lines += [f"NOTE: {note}" for note in result["notes"]]
    return "\n".join(lines)


def _format_agreement(a: dict) -> list[str]:
    if a.get("shapes_differ"):
        return [f"agreement: not comparable, output shapes differ ({a['shapes_differ']})"]
    if a["kind"] == "spectrum":
        return [(f"agreement: r of the intensities {a['pearson']:.6f} (target ≥ {R_TARGET}: "
                f"{_met(a['pearson'], R_TARGET)}), max relative difference {a['max_rel_diff']:.2e} "
                f"({a['bins']} bins each)")]
    line = (f"agreement: Pearson r {a['pearson']:.6f}, max |Δ| of the z-scored volumes {a['max_abs_diff_z']:.3g}, "
            f"mean {a['mean_abs_diff_z']:.3g}")
    if a["kind"] == "volume":
        return [line + f" (target r ≥ {R_TARGET}: {_met(a['pearson'], R_TARGET)})"]
    return [
        line + " — differs by design: MemBrain-seg takes |inverse transform|, Bilayer keeps its real part",
        (f"  sign of MemBrain-seg's voxel ≠ Bilayer's on {100 * a['sign_differs']:.2f} % of voxels; "
        f"r(|Bilayer|, MemBrain-seg) {a['pearson_abs']:.4f} (Bilayer's z-scored file folded at 0)"),
        (f"  folded where MemBrain-seg folds (at Bilayer's real zero, the offset c = {a['offset']:.3f} its "
        f"z-scoring removed, fitted): r {a['pearson_folded']:.6f} (target ≥ {R_TARGET}: "
        f"{_met(a['pearson_folded'], R_TARGET)}), max |Δ| z-scored {a['max_abs_diff_folded_z']:.3g}; "
        f"{100 * a['flipped']:.2f} % of voxels are negative in Bilayer's real part (flipped by MemBrain-seg)"),
    ]


def format_summary(report: dict) -> str:
    """One line per step: times, peaks, ratios and agreement next to the targets."""
    head = (f"{'step':<16}{'compared on':<14}{'MB wall s':>10}{'BL wall s':>10}{'time ×':>8}{'MB RSS MB':>11}"
            f"{'BL RSS MB':>11}{'RSS ×':>7}{'r':>11}  targets (time, RSS, r)")
    lines = [(f"\n== summary: MemBrain-seg (MB) / Bilayer (BL); targets time ≥ {TIME_TARGET:g}×, peak RSS ≥ "
             f"{RSS_TARGET:g}× (Bilayer ≤ ½), r ≥ {R_TARGET} where the algorithm is the same =="), head,
             "-" * len(head)]
    for r in report["steps"]:
        m, b = r["runs"].get("membrain-seg"), r["runs"]["bilayer"]
        shape = "×".join(map(str, r.get("compared_shape", r["shape"])))
        if "time_ratio" not in r:
            status = "MemBrain-seg not run" if m is None else "a run failed"
            lines.append(f"{r['step']:<16}{shape:<14}{status}")
            continue
        a = r["agreement"]
        if a.get("shapes_differ"):
            rtext, rmet = "shapes ≠", "n/a"
        elif a["kind"] == "match":
            rtext, rmet = f"{a['pearson']:.4f}", f"n/a (by design; folded r {a['pearson_folded']:.6f})"
        else:
            rtext, rmet = f"{a['pearson']:.6f}", _met(a["pearson"], R_TARGET)
        lines.append(f"{r['step']:<16}{shape:<14}{m['wall_s']:>10.1f}{b['wall_s']:>10.1f}{r['time_ratio']:>8.2f}"
                     f"{m['peak_rss_mb']:>11.0f}{b['peak_rss_mb']:>11.0f}{r['rss_ratio']:>7.2f}{rtext:>11}  "
                     f"{_met(r['time_ratio'], TIME_TARGET)}, {_met(r['rss_ratio'], RSS_TARGET)}, {rmet}")
    lines.append("wall s: the whole child (interpreter start, imports, reading and writing); peak RSS from wait4; "
                 "both tools read the same file and get all cores")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
