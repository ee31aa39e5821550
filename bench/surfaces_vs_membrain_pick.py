"""Membrane surfaces benchmark: ``bilayer mesh`` and ``bilayer measure`` against MemBrain-pick 0.0.9's
``convert_file`` meshing of the same mask.

The mask is an analytic scene at 10 Å (``_membrain_pick_scene.py``: vesicles of several radii, some cut
by the volume's faces, wavy sheets spanning the volume, cristae-like lamellar sacs, a tube; each
membrane a band 5 voxels thick and its own connected component) with its tomogram (two dark leaflets
40 Å apart over noise); both are cached in ``bench/.cache/surfaces/``. Three measured children, one
after the other, each with all cores:

- ``bilayer mesh SEG --out A`` (the midsurface of every membrane, PLY, and their record);
- ``bilayer measure SEG --tomogram TOMO --meshes A --out B`` (A's meshes read, then curvature,
  nearest-membrane distance, thickness, the CSV table, PLYs with per-vertex values, histograms and
  pictures; without the mesh child it meshes itself);
- ``membrain_pick convert_file --tomogram-path TOMO --mb-path SEG --no-only-largest-component`` in its
  own virtualenv (marching cubes at 0.5 of each component's mask, Taubin smoothing, ACVD re-meshing to
  its default 400 Å² barycentric area, and the tomogram sampled along the normals into an HDF5 file).

Bilayer works on membranes in one process per core, so memory is the peak of each child's process
tree together (private memory summed, shared libraries once, sampled every 50 ms), besides ``wait4``'s
largest single process. It prints
wall time, CPU time and peak memory of each child, the meshes, vertices and area each made,
the ratios, the issue's targets (Bilayer's mesh + measure under a minute and under 2 GB) and a table
per membrane: the exact midsurface area where geometry gives it, Bilayer's and MemBrain-pick's.
MemBrain-pick meshes both faces of the band, so its area is about twice the membrane's.

    python bench/surfaces_vs_membrain_pick.py --quick                  # 128×256×256, 7 membranes
    nice -n 5 python bench/surfaces_vs_membrain_pick.py --max-load 3   # 256×512×512, 20 membranes
    python bench/surfaces_vs_membrain_pick.py --report bench/results/<time>/results.json   # its tables again
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np
from _membrain_env import BENCH_DIR, CACHE_DIR, BenchError, run_measured
from _membrain_pick_env import PICK_ENV, ensure_membrain_pick_venv, pick_python
from _membrain_pick_scene import LEAFLETS, draw_scene, expected_area, plan_shapes

VOXEL_SIZE = 10.0  # Å
DEFAULT_SHAPE = (256, 512, 512)
QUICK_SHAPE = (128, 256, 256)
FULL_COUNTS = {"sheet": 2, "tube": 1, "sac": 3, "vesicle": 14}
QUICK_COUNTS = {"sheet": 1, "tube": 1, "sac": 1, "vesicle": 4}
TIME_TARGET_S = 60.0  # the issue: Bilayer's mesh + measure under a minute
RSS_TARGET_MB = 2048.0  # and under 2 GB
PICK_MIN_VOXELS = 10_000  # membrain-pick's convert_to_mesh skips smaller components (min_connected_size, not a CLI option)
MATCH_SAMPLE = 2000  # vertices per mesh looked up in the scene's labels


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    try:
        return _run(args)
    except BenchError as e:
        print(f"surfaces_vs_membrain_pick: error: {e}", file=sys.stderr)
        return 2


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help=f"smoke test: {'×'.join(map(str, QUICK_SHAPE))}, {sum(QUICK_COUNTS.values())} membranes")
    p.add_argument("--shape", nargs=3, type=int, metavar=("Z", "Y", "X"), default=None,
                   help=f"mask size (default {' '.join(map(str, DEFAULT_SHAPE))})")
    p.add_argument("--seed", type=int, default=1, help="seed of the scene")
    p.add_argument("--tools", nargs="+", choices=("mesh", "measure", "pick"), default=["mesh", "measure", "pick"],
                   help="children to run (default: all three)")
    p.add_argument("--bilayer-timeout", type=float, default=10.0, metavar="MIN",
                   help="stop a Bilayer child after this many minutes (default 10)")
    p.add_argument("--pick-timeout", type=float, default=30.0, metavar="MIN",
                   help="stop MemBrain-pick after this many minutes (default 30)")
    p.add_argument("--max-load", type=float, default=None,
                   help="before each child, wait (up to --max-wait minutes in all) until the 1-min load is below this")
    p.add_argument("--max-wait", type=float, default=20.0, help="minutes of waiting for --max-load, in all")
    p.add_argument("--out", type=Path, default=None, help="results folder (default: bench/results/<time>)")
    p.add_argument("--report", type=Path, default=None, metavar="RESULTS_JSON",
                   help="only print the tables of a finished run's results.json")
    args = p.parse_args(argv)
    args.shape = tuple(args.shape or (QUICK_SHAPE if args.quick else DEFAULT_SHAPE))
    args.counts = QUICK_COUNTS if args.quick and args.shape == QUICK_SHAPE else FULL_COUNTS
    if min(args.shape) < 32:
        p.error("--shape: every size must be at least 32")
    return args


def _run(args: argparse.Namespace) -> int:
    if args.report:
        report = json.loads(args.report.read_text())
        report["membranes"] = membrane_rows(report)
        print(format_header(report))
        print(format_report(report))
        return 0
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = (args.out or BENCH_DIR / "results" / stamp).resolve()
    out.mkdir(parents=True, exist_ok=True)
    pick = ensure_membrain_pick_venv(out) if "pick" in args.tools else {"error": "not asked for (--tools)"}
    scene = make_scene(args.shape, args.seed, args.counts)
    report = {"started": stamp, "machine": machine(), "membrain_pick": pick, "bilayer": _bilayer_version(),
              "shape": list(args.shape), "voxel_size": VOXEL_SIZE, "seed": args.seed,
              "scene": {k: str(v) for k, v in scene.items() if k != "shapes"}, "shapes": scene["shapes"],
              "runs": {}}
    print(format_header(report))
    print(f"results and logs: {out}")
    deadline = time.monotonic() + 60 * args.max_wait
    seg, tomo = scene["seg"], scene["tomogram"]
    reuse = ["--meshes", out / "bilayer-mesh"] if "mesh" in args.tools else []  # measure what mesh made
    commands = {
        "bilayer mesh": (["timeout", f"{60 * args.bilayer_timeout:.0f}", sys.executable, "-m", "bilayer", "mesh", seg,
                          "--out", out / "bilayer-mesh"], {}),
        "bilayer measure": (["timeout", f"{60 * args.bilayer_timeout:.0f}", sys.executable, "-m", "bilayer",
                             "measure", seg, "--tomogram", tomo, *reuse, "--out", out / "bilayer-measure"], {}),
    }
    if "error" not in pick:
        commands["membrain-pick"] = (["timeout", f"{60 * args.pick_timeout:.0f}", pick_python().parent / "membrain_pick",
                                      "convert_file", "--tomogram-path", tomo, "--mb-path", seg, "--out-folder",
                                      out / "membrain-pick", "--no-only-largest-component"], PICK_ENV)
    wanted = {"mesh": "bilayer mesh", "measure": "bilayer measure", "pick": "membrain-pick"}
    for tool in [wanted[t] for t in wanted if t in args.tools and wanted[t] in commands]:  # mesh before measure
        _wait_for_load(args.max_load, deadline)
        argv, env = commands[tool]
        print(f"running {tool} ...", flush=True)
        run = run_measured(argv, out / f"{tool.replace(' ', '-')}.log", env=env).to_dict()
        run["timed_out"] = run["returncode"] == 124
        run.update(mesh_summary(tool, out, scene))
        report["runs"][tool] = run
        (out / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        print(format_run(tool, run), flush=True)
    report["membranes"] = membrane_rows(report)
    (out / "results.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(format_report(report))
    print(f"\nwritten {out / 'results.json'}")
    return 0 if all(r["returncode"] == 0 for r in report["runs"].values()) else 1


def make_scene(shape: tuple[int, int, int], seed: int, counts: dict[str, int]) -> dict:
    """The scene's mask, labels and tomogram as MRC files in ``bench/.cache/surfaces/`` (made once)."""
    from bilayer.io import write_volume

    folder = CACHE_DIR / "surfaces"
    stem = f"scene_{'x'.join(map(str, shape))}_{seed}"
    paths = {"seg": folder / f"{stem}_seg.mrc", "labels": folder / f"{stem}_labels.mrc",
             "tomogram": folder / f"{stem}.mrc", "shapes_json": folder / f"{stem}_shapes.json"}
    if not all(p.is_file() for p in paths.values()):
        folder.mkdir(parents=True, exist_ok=True)
        print(f"drawing the scene {stem} ...", flush=True)
        plan = plan_shapes(shape, seed, vesicles=counts["vesicle"], sheets=counts["sheet"], sacs=counts["sac"],
                           tubes=counts["tube"])
        labels, density, kept = draw_scene(shape, plan, seed, limits=counts)
        write_volume(paths["labels"], labels, voxel_size=VOXEL_SIZE, overwrite=True)
        write_volume(paths["seg"], (labels > 0).astype(np.uint8), voxel_size=VOXEL_SIZE, overwrite=True)
        write_volume(paths["tomogram"], density, voxel_size=VOXEL_SIZE, overwrite=True)
        rows = [{"label": i + 1, **asdict(s), "voxels": int(n), "exact_area_nm2": _nm2(expected_area(s, shape))}
                for i, (s, n) in enumerate(zip(kept, np.bincount(labels.ravel(), minlength=len(kept) + 1)[1:],
                                               strict=True))]
        paths["shapes_json"].write_text(json.dumps(rows, indent=2) + "\n")
    return {**paths, "shapes": json.loads(paths["shapes_json"].read_text())}


def _nm2(voxels2: float | None) -> float | None:
    return None if voxels2 is None else voxels2 * (VOXEL_SIZE / 10) ** 2


def mesh_summary(tool: str, out: Path, scene: dict) -> dict:
    """Meshes, vertices, faces, total area (nm²) and each mesh's scene label of a finished child."""
    if tool == "membrain-pick":
        files, scale = sorted((out / "membrain-pick").glob("*.obj")), VOXEL_SIZE  # its vertices: voxels, (x, y, z)
    else:
        files, scale = sorted((out / tool.replace(" ", "-")).glob("*.ply")), 1.0  # Å, (x, y, z)
    if not files:
        return {"meshes": 0, "vertices": 0, "faces": 0, "area_nm2": 0.0, "per_mesh": []}
    from bilayer.io import read_volume

    labels = read_volume(scene["labels"]).data
    per_mesh = []
    for path in files:
        vertices, faces, closed = _load_mesh(path)
        xyz_voxels = vertices * (scale / VOXEL_SIZE)
        per_mesh.append({"file": path.name, "vertices": len(vertices), "faces": len(faces), "closed": closed,
                         "area_nm2": triangle_area(vertices * scale, faces) / 100.0,
                         "label": scene_label(xyz_voxels, labels)})
    table = tool == "bilayer measure" and _measure_table(out / "bilayer-measure")
    return {"meshes": len(per_mesh), "vertices": sum(m["vertices"] for m in per_mesh),
            "faces": sum(m["faces"] for m in per_mesh), "area_nm2": sum(m["area_nm2"] for m in per_mesh),
            "per_mesh": per_mesh, **({"table": table} if table else {})}


def _load_mesh(path: Path) -> tuple[np.ndarray, np.ndarray, bool]:
    import trimesh

    mesh = trimesh.load(path, process=False, force="mesh")
    return np.asarray(mesh.vertices, dtype=np.float64), np.asarray(mesh.faces, dtype=np.int64), bool(mesh.is_watertight)


def _measure_table(folder: Path) -> list[dict] | None:
    tables = sorted(folder.glob("*_surfaces.csv"))
    if not tables:
        return None
    with open(tables[0], newline="") as f:
        return list(csv.DictReader(f))


def triangle_area(vertices: np.ndarray, faces: np.ndarray) -> float:
    """Total area of a triangle mesh (units of ``vertices`` squared)."""
    if len(faces) == 0:
        return 0.0
    a, b, c = (vertices[faces[:, i]] for i in range(3))
    return float(0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1).sum())


def scene_label(xyz_voxels: np.ndarray, labels: np.ndarray, *, reach: int = 2, sample: int = MATCH_SAMPLE) -> int:
    """The scene label a mesh lies on: the most common non-zero label within ``reach`` voxels of up to
    ``sample`` of its vertices (``xyz_voxels``: (n, 3) x, y, z in voxels); 0 if none is near."""
    if len(xyz_voxels) == 0:
        return 0
    step = max(1, len(xyz_voxels) // sample)
    zyx = np.rint(xyz_voxels[::step, ::-1]).astype(np.int64)
    offsets = np.stack(np.meshgrid(*[np.arange(-reach, reach + 1)] * 3, indexing="ij"), -1).reshape(-1, 3)
    points = (zyx[:, None, :] + offsets[None]).reshape(-1, 3)
    points = np.clip(points, 0, np.asarray(labels.shape) - 1)
    found = np.asarray(labels[points[:, 0], points[:, 1], points[:, 2]]).reshape(len(zyx), -1)
    per_vertex = [Counter(row[row > 0].tolist()).most_common(1) for row in found]
    votes = Counter(hit[0][0] for hit in per_vertex if hit)
    return int(votes.most_common(1)[0][0]) if votes else 0


def membrane_rows(report: dict) -> list[dict]:
    """One row per scene membrane: its kind, size, exact area and each tool's meshes and area on it."""
    rows = []
    for shape in report["shapes"]:
        row = {"label": shape["label"], "kind": shape["kind"], "size_nm": shape["size"] * VOXEL_SIZE / 10,
               "voxels": shape["voxels"], "exact_area_nm2": shape["exact_area_nm2"]}
        for tool, run in report["runs"].items():
            hits = [m for m in run.get("per_mesh", []) if m["label"] == shape["label"]]
            row[tool] = {"meshes": len(hits), "area_nm2": sum(m["area_nm2"] for m in hits),
                         "vertices": sum(m["vertices"] for m in hits), "closed": all(m["closed"] for m in hits)}
        rows.append(row)
    return rows


def _wait_for_load(max_load: float | None, deadline: float) -> None:
    while max_load is not None and os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        print(f"load average {os.getloadavg()[0]:.2f} > {max_load:g}: waiting a minute", flush=True)
        time.sleep(60)


def machine() -> dict:
    """CPU model, cores, memory and load of this machine."""
    import platform

    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), platform.processor())
    mem = {line.split(":")[0]: int(line.split()[1]) / 1024 for line in Path("/proc/meminfo").read_text().splitlines()
           if line.startswith(("MemTotal:", "MemAvailable:"))}
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_total_mb": mem.get("MemTotal"),
            "memory_available_mb": mem.get("MemAvailable"), "load": os.getloadavg(),
            "platform": platform.platform(), "python": sys.version.split()[0]}


def _bilayer_version() -> dict:
    import subprocess

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(BENCH_DIR), *args], check=False, capture_output=True,
                              text=True).stdout.strip()

    return {"git": git("rev-parse", "--short", "HEAD"), "git_dirty": bool(git("status", "--porcelain", "-uno"))}


def _loads(load: list[float] | tuple[float, ...]) -> str:
    return "/".join(f"{x:.2f}" for x in load)


def format_header(report: dict) -> str:
    m, pick = report["machine"], report["membrain_pick"]
    kinds = Counter(s["kind"] for s in report["shapes"])
    voxels = int(np.prod(report["shape"]))
    mask = sum(s["voxels"] for s in report["shapes"])
    small = sum(s["voxels"] < PICK_MIN_VOXELS for s in report["shapes"])
    pick_text = (f"MemBrain-pick {pick['membrain_pick']} (membrain-seg {pick['membrain_seg']}, pyvista {pick['pyvista']}, "
                 f"vtk {pick['vtk']}, scipy {pick['scipy']}; its venv)" if "error" not in pick
                 else f"MemBrain-pick NOT run: {pick['error']}")
    return (f"CPU: {m['cpu']}, {m['cores']} cores; memory {m['memory_total_mb'] / 1024:.1f} GB, "
            f"{m['memory_available_mb'] / 1024:.1f} GB available; load average {_loads(m['load'])}\n"
            f"{pick_text}\nBilayer {report['bilayer']['git']}"
            f"{' (uncommitted changes)' if report['bilayer']['git_dirty'] else ''}\n"
            f"scene: {'×'.join(map(str, report['shape']))} at {report['voxel_size']:g} Å, {len(report['shapes'])} "
            f"membranes ({', '.join(f'{k} × {n}' for k, n in kinds.items())}), mask {100 * mask / voxels:.1f} % of "
            f"the voxels; {small} membrane(s) under MemBrain-pick's {PICK_MIN_VOXELS} voxels (it skips them)")


_HEAD = (f"{'child':<22}{'wall s':>8}{'CPU s':>8}{'memory MB':>11}{'largest MB':>12}{'meshes':>8}{'vertices':>11}"
         f"{'area nm²':>12}  {'load 1/5/15 before → after'}")


def _memory(run: dict) -> float:
    """A child's peak memory, MB: its process tree's together (wait4's largest process in older results)."""
    tree = run.get("peak_tree_mb", float("nan"))
    return run["peak_rss_mb"] if tree != tree else tree


def format_run(tool: str, run: dict) -> str:
    """One child's line of the table."""
    status = "" if run["returncode"] == 0 else (
        "  TIMED OUT (stopped)" if run["timed_out"] else f"  FAILED (exit {run['returncode']}); see {run['log']}")
    return (f"{tool:<22}{run['wall_s']:>8.1f}{run['user_s'] + run['system_s']:>8.1f}{_memory(run):>11.0f}"
            f"{run['peak_rss_mb']:>12.0f}{run['meshes']:>8}{run['vertices']:>11,}{run['area_nm2']:>12,.0f}  "
            f"{_loads(run['load_before'])} → {_loads(run['load_after'])}{status}")


def format_report(report: dict) -> str:
    """The side-by-side table, the ratios and targets, and the table per membrane."""
    runs = report["runs"]
    lines = [f"\n== {'×'.join(map(str, report['shape']))} mask, {len(report['shapes'])} membranes ==", _HEAD,
             "-" * len(_HEAD)]
    lines += [format_run(tool, run) for tool, run in runs.items()]
    mesh, measure, pick = runs.get("bilayer mesh"), runs.get("bilayer measure"), runs.get("membrain-pick")
    if mesh and measure:
        wall = mesh["wall_s"] + measure["wall_s"]
        peak = max(_memory(mesh), _memory(measure))
        lines.append(f"Bilayer mesh + measure: {wall:.1f} s wall (target under {TIME_TARGET_S:.0f} s: "
                     f"{'met' if wall < TIME_TARGET_S else 'NOT met'}), peak memory {peak:.0f} MB, all processes "
                     f"(target under {RSS_TARGET_MB:.0f} MB: {'met' if peak < RSS_TARGET_MB else 'NOT met'})")
    lines += format_thickness(measure)
    if pick and pick["returncode"] == 0 and mesh and measure and mesh["returncode"] == measure["returncode"] == 0:
        cpu = sum(run["user_s"] + run["system_s"] for run in (mesh, measure))
        lines.append(f"MemBrain-pick / Bilayer mesh + measure: time {pick['wall_s'] / wall:.2f}×, peak memory "
                     f"{_memory(pick) / peak:.2f}×, CPU {(pick['user_s'] + pick['system_s']) / cpu:.2f}×")
    if pick and pick["returncode"] == 0:
        for name in ("bilayer mesh", "bilayer measure"):
            run = runs.get(name)
            if run and run["returncode"] == 0 and run["wall_s"] > 0:
                area = pick["area_nm2"] / run["area_nm2"] if run["area_nm2"] else float("nan")
                lines.append(f"MemBrain-pick / {name}: time {pick['wall_s'] / run['wall_s']:.2f}×, peak memory "
                             f"{_memory(pick) / _memory(run):.2f}×, CPU "
                             f"{(pick['user_s'] + pick['system_s']) / (run['user_s'] + run['system_s']):.2f}×, "
                             f"area {area:.2f}× (MemBrain-pick meshes both faces of the band: expect about 2×), "
                             f"vertices {pick['vertices'] / max(run['vertices'], 1):.2f}×")
    lines += format_membranes(report)
    lines.append("wall s: the whole child (interpreter start, imports, reading, writing); CPU s user + system; "
                 "memory MB: peak of the child's processes together (private memory summed, libraries once, "
                 "sampled every 50 ms); largest MB: "
                 "wait4's largest single process; all cores to each child")
    return "\n".join(lines)


def format_thickness(measure: dict | None) -> list[str]:
    """Bilayer's thickness per membrane (its mean profile's) next to the scene's leaflet distance."""
    table = (measure or {}).get("table") or []
    values = [float(r["membrane_thickness_nm"]) for r in table
              if r.get("membrane_thickness_resolved") == "True" and r.get("membrane_thickness_nm")]
    if not table:
        return []
    truth = LEAFLETS * VOXEL_SIZE / 10
    if not values:
        return [f"Bilayer's thickness: no membrane resolved (scene: {truth:.1f} nm)"]
    return [(f"Bilayer's thickness per membrane: {len(values)} of {len(table)} resolved, median {np.median(values):.2f} "
            f"nm, {min(values):.2f}–{max(values):.2f} nm (scene: leaflets {truth:.1f} nm apart)")]


def format_membranes(report: dict) -> list[str]:
    """Per scene membrane: exact midsurface area, each tool's meshes and area (nm²) on it."""
    tools = [t for t in ("bilayer mesh", "membrain-pick") if t in report["runs"]]
    if not tools:
        return []
    head = f"{'label':>5} {'kind':<8}{'size nm':>8}{'voxels':>10}{'exact nm²':>11}"
    head += "".join(f"{t.split()[0][:8] + ' n/nm²':>22}" for t in tools)
    head += f"{'bilayer/exact':>15}{'pick/bilayer':>14}" if len(tools) == 2 else f"{'bilayer/exact':>15}"
    title = ("\nper membrane (size: vesicle/tube radius, sac disc radius, sheet wave amplitude; exact: the "
             "midsurface's area where geometry gives it):")
    lines = [title, head, "-" * len(head)]
    for row in report["membranes"]:
        exact = row["exact_area_nm2"]
        exact_text = "—" if exact is None else f"{exact:,.0f}"
        text = f"{row['label']:>5} {row['kind']:<8}{row['size_nm']:>8.1f}{row['voxels']:>10,}{exact_text:>11}"
        for tool in tools:
            hit = row[tool]
            cell = f"{hit['meshes']} / {hit['area_nm2']:,.0f}"
            text += f"{cell:>22}"
        bl = row.get("bilayer mesh", {}).get("area_nm2", 0.0)
        text += f"{bl / exact:>15.3f}" if exact and bl else f"{'—':>15}"
        if len(tools) == 2:
            pk = row["membrain-pick"]["area_nm2"]
            text += f"{pk / bl:>14.2f}" if bl and pk else f"{'—':>14}"
        lines.append(text)
    return lines


if __name__ == "__main__":
    sys.exit(main())
