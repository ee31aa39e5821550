"""Where Bilayer's time and memory go on the surfaces benchmark's scene (``surfaces_vs_membrain_pick.py``).

Runs ``bilayer measure``'s stages through the Python API, in one process, and prints per stage the
wall and CPU seconds and the peak of memory that numpy and Python allocated during it (``tracemalloc``,
reset per stage; the process's resident peak ``ru_maxrss`` is printed at the end): reading and labelling
the mask; meshing each membrane (:func:`bilayer.surfaces.extract.membrane_meshes` on that membrane's
labels alone, so each row is one membrane; its kind from the scene's labels); the thickness of each
membrane from the tomogram; curvature and nearest-membrane distance (``measure_meshes``); the table; writing the
PLYs alone, then everything ``bilayer measure`` writes (CSV, PLYs, histograms, pictures) into a
temporary folder (these two untraced: tracing slows matplotlib several times over). With ``--profile FILE`` the meshing stage runs
under cProfile too and its top functions (cumulative time) are printed.

    python bench/_membrain_pick_profile.py bench/.cache/surfaces/scene_256x512x512_1 --profile /tmp/mesh.prof
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import resource
import sys
import tempfile
import time
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def stage(rows: list[dict], name: str, **extra):
    """Time ``name`` (wall, CPU) and take the traced memory peak during it; append a row."""
    traced = tracemalloc.is_tracing()
    if traced:
        tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    wall, cpu = time.perf_counter(), time.process_time()
    yield extra
    rows.append({"stage": name, **extra, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
                 "peak_mb": (tracemalloc.get_traced_memory()[1] - base) / 2**20 if traced else float("nan")})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("stem", type=Path, help="the scene's files without suffix: STEM_seg.mrc, STEM.mrc, STEM_labels.mrc")
    p.add_argument("--profile", type=Path, default=None, help="also cProfile the meshing stage into this file")
    p.add_argument("--no-thickness", action="store_true", help="leave the thickness stage out")
    args = p.parse_args(argv)

    from bilayer.io import Volume, read_volume
    from bilayer.surfaces.api import Surfaces, load_membranes
    from bilayer.surfaces.extract import MeshOptions, membrane_meshes
    from bilayer.surfaces.files import write_meshes, write_surfaces
    from bilayer.surfaces.measures import measure_meshes, surface_table
    from bilayer.surfaces.thickness import membrane_thickness

    kinds = {row["label"]: row["kind"] for row in json.loads(Path(f"{args.stem}_shapes.json").read_text())}
    truth = read_volume(f"{args.stem}_labels.mrc").data
    tracemalloc.start()
    rows: list[dict] = []
    with stage(rows, "read + label the mask"):
        membranes = load_membranes(f"{args.stem}_seg.mrc", min_size=1000)
    labels = membranes.labels
    options = MeshOptions(min_size=1000)
    meshes = []
    profiler = cProfile.Profile() if args.profile else None
    from scipy import ndimage

    for index, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        kind = kinds.get(int(np.bincount(truth[box][labels[box] == index]).argmax()), "?")
        single = (labels == index).view(np.uint8)  # this membrane alone, in place (made before the stage)
        with stage(rows, "mesh", label=index, kind=kind, voxels=int((labels[box] == index).sum()),
                   box="×".join(str(s.stop - s.start) for s in box)) as row:
            if profiler:
                profiler.enable()
            found = membrane_meshes(single, membranes.voxel_size, membranes.origin, options)
            if profiler:
                profiler.disable()
            row["vertices"] = sum(len(m.vertices) for m in found)
        meshes += [m.__class__(m.vertices, m.faces, label=index, closed=m.closed) for m in found]
        del single
    if not args.no_thickness:
        density = read_volume(f"{args.stem}.mrc")
        density = Volume(density.data, density.voxel_size, membranes.origin, density.path)
        measured = []
        for mesh in meshes:
            with stage(rows, "thickness", label=mesh.label, vertices=len(mesh.vertices)):
                measured.append(mesh.with_values(**membrane_thickness(mesh, density).vertex_values()))
        meshes = measured
    with stage(rows, "curvature + nearest distance", vertices=sum(len(m.vertices) for m in meshes)):
        meshes = measure_meshes(meshes)
    with stage(rows, "table"):
        table = surface_table(meshes)
    tracemalloc.stop()  # tracing slows matplotlib's many small allocations several times over: times only
    with tempfile.TemporaryDirectory() as folder:
        source = Path(f"{args.stem}_seg.mrc")
        with stage(rows, "write PLYs (write_meshes)"):
            write_meshes(source, meshes, Path(folder) / "plys")
        with stage(rows, "write all (CSV, PLYs, plots)"):
            write_surfaces(source, Surfaces(meshes, table, {}), Path(folder) / "all")
    print(format_rows(rows))
    print(f"process peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB "
          f"(tracemalloc adds its own bookkeeping)")
    if profiler:
        profiler.dump_stats(args.profile)
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(30)
    return 0


def format_rows(rows: list[dict]) -> str:
    """The stages as a table; the mesh and thickness rows also summed."""
    head = f"{'stage':<30}{'label':>6} {'kind':<8}{'voxels':>10}{'box':>14}{'vertices':>10}{'wall s':>8}{'CPU s':>8}{'peak MB':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r['stage']:<30}{r.get('label', ''):>6} {r.get('kind', ''):<8}{r.get('voxels', ''):>10}"
                     f"{r.get('box', ''):>14}{r.get('vertices', ''):>10}{r['wall_s']:>8.1f}{r['cpu_s']:>8.1f}"
                     f"{r['peak_mb']:>9.0f}")
    for name in ("mesh", "thickness"):
        part = [r for r in rows if r["stage"] == name]
        if part:
            lines.append(f"{name + ' (all membranes)':<30}{'':>48}{sum(r['wall_s'] for r in part):>8.1f}"
                         f"{sum(r['cpu_s'] for r in part):>8.1f}{max(r['peak_mb'] for r in part):>9.0f}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
