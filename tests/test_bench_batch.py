"""bench/batch.py's pure helpers: shapes, the commands of the three ways (the loop's bash run for real
with a stand-in for bilayer), summary counts, mask comparison and the figures. No segmentation here."""

from __future__ import annotations

import argparse
import importlib.util
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture(scope="module")
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("bench_batch", BENCH / "batch.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture
def fake_bilayer(tmp_path):
    """A stand-in for ``bilayer``: appends its arguments, one call a line (tab-separated), to calls.txt."""
    script = tmp_path / "bin" / "bilayer"
    script.parent.mkdir()
    calls = tmp_path / "calls.txt"
    script.write_text(f"#!/bin/bash\nIFS=$'\\t'; echo \"$*\" >> {calls}\n"
                      "case \"$2\" in *bad*) exit 3;; esac\n"
                      "[ \"$2\" = --help ] && echo '  --out DIRECTORY  Folder.' && echo '  --tta / --no-tta  TTA.'\n"
                      "exit 0\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return [str(script)], calls


def test_parse_shape(bench):
    assert bench.parse_shape("128,256,256") == (128, 256, 256)
    assert bench.parse_shape("64x128x96") == (64, 128, 96)
    for bad in ("128,256", "a,b,c", "16,256,256", "1,2,3,4"):
        with pytest.raises(argparse.ArgumentTypeError, match="Z,Y,X"):
            bench.parse_shape(bad)


def test_quick_and_defaults(bench):
    quick = bench._parse(["--quick"])
    assert (quick.count, quick.shape) == (3, (64, 128, 128))
    full = bench._parse([])
    assert (full.count, full.shape, full.workers) == (12, (128, 256, 256), 2)
    assert bench._parse(["--quick", "--count", "5"]).count == 5


def test_loop_runs_bilayer_once_per_tomogram_with_odd_paths(bench, fake_bilayer, tmp_path):
    bilayer, calls = fake_bilayer
    tomos = [tmp_path / "a b.mrc", tmp_path / "it's.mrc", tmp_path / "c.mrc"]
    run_dir = tmp_path / "run dir"
    options = bench.segment_options(tta=False)
    argv = bench.mode_argv("loop", bilayer, tomos, run_dir, options, 2)
    assert subprocess.run(argv, check=False).returncode == 0
    lines = calls.read_text().splitlines()
    assert [line.split("\t") for line in lines] == [
        ["segment", str(t), "--out", str(run_dir), "--device", "cpu", "--no-preview", "--no-tta"] for t in tomos]


def test_loop_goes_on_after_a_failure_and_says_so(bench, fake_bilayer, tmp_path):
    bilayer, calls = fake_bilayer
    tomos = [tmp_path / "bad.mrc", tmp_path / "good.mrc"]
    argv = bench.mode_argv("loop", bilayer, tomos, tmp_path / "run", [], 2)
    assert subprocess.run(argv, check=False).returncode == 1
    assert len(calls.read_text().splitlines()) == 2


def test_batch_and_workers_are_one_command(bench, tmp_path):
    tomos = [tmp_path / "a.mrc", tmp_path / "b.mrc"]
    batch = bench.mode_argv("batch", ["bilayer"], tomos, tmp_path / "r", ["--no-tta"], 3)
    assert batch == ["bilayer", "segment", *map(str, tomos), "--out", str(tmp_path / "r"), "--no-tta"]
    workers = bench.mode_argv("workers", ["bilayer"], tomos, tmp_path / "r", ["--no-tta"], 3)
    assert workers == [*batch, "--workers", "3"]
    with pytest.raises(ValueError, match="unknown mode"):
        bench.mode_argv("slurm", ["bilayer"], tomos, tmp_path / "r", [], 1)


def test_has_option_matches_whole_options(bench, fake_bilayer):
    bilayer, _ = fake_bilayer
    assert bench.has_option(bilayer, "--out")
    assert bench.has_option(bilayer, "--no-tta")
    assert not bench.has_option(bilayer, "--workers")
    assert not bench.has_option(bilayer, "--ou")


def test_describe_shortens_long_tomogram_lists(bench):
    argv = ["bilayer", "segment", *(f"t{i}.mrc" for i in range(12)), "--out", "r"]
    assert bench.describe(argv) == "bilayer segment t0.mrc t1.mrc ... (10 more) --out r"
    assert bench.describe(argv[:4]) == "bilayer segment t0.mrc t1.mrc"


def test_per_hour(bench):
    figures = bench.per_hour({"wall_s": 90.0, "user_s": 150.0, "system_s": 10.0}, 12)
    assert figures == {"tomograms_per_hour": 480.0, "cpu_s": 160.0}


def test_summary_counts(bench, tmp_path):
    assert bench.summary_counts(tmp_path)["missing"]
    (tmp_path / "summary.csv").write_text(
        "tomogram,status,seconds,membrane_fraction,outputs,reason\n"
        "/a.mrc,done,1.5,0.1,a_seg.mrc,\n/b.mrc,failed,0.25,,,\"constant, volume\"\n/c.mrc,done,2,0.2,c_seg.mrc,\n")
    counts = bench.summary_counts(tmp_path)
    assert counts == {"rows": 3, "done": 2, "statuses": {"done": 2, "failed": 1}, "seconds": 3.75}


def test_compare_masks_counts_differing_voxels(bench, tmp_path):
    from bilayer.io import write_volume

    tomos = [tmp_path / "t1.mrc", tmp_path / "t2.mrc", tmp_path / "t3.mrc"]
    ref, other = tmp_path / "ref", tmp_path / "other"
    ref.mkdir()
    other.mkdir()
    rng = np.random.default_rng(0)
    masks = [rng.integers(0, 2, (8, 12, 16), dtype=np.int8) for _ in range(2)]
    changed = masks[1].copy()
    changed[0, 0, :5] ^= 1
    for folder, pair in ((ref, masks), (other, [masks[0], changed])):
        for tomo, mask in zip(tomos, pair, strict=False):
            write_volume(folder / bench.mask_paths(folder, [tomo])[0].name, mask, voxel_size=10.0)
    result = bench.compare_masks(ref, other, tomos)
    assert result["per_tomogram"] == {"t1_seg.mrc": 0, "t2_seg.mrc": 5}
    assert (result["differing_voxels"], result["voxels"]) == (5, 2 * 8 * 12 * 16)
    assert result["missing"] == ["t3_seg.mrc"] and not result["identical"]
    assert bench.compare_masks(ref, ref, tomos[:2])["identical"]


def test_table_ratios_against_the_loop(bench):
    def run(wall: float, rss: float) -> dict:
        return {"returncode": 0, "wall_s": wall, "peak_rss_mb": rss, "cpu_s": 2 * wall,
                "tomograms_per_hour": 4 * 3600 / wall, "summary": {"done": 4, "rows": 4, "seconds": wall / 2},
                "load_before": [0.1, 0.2, 0.3], "load_after": [1.0, 1.0, 1.0]}

    report = {"count": 4, "shape": [64, 128, 128], "workers": 2, "notes": [],
              "machine": {"cpu": "Test CPU", "cores": 2},
              "runs": {"loop": run(100.0, 800.0), "batch": {**run(25.0, 1000.0), "masks_vs_loop": {
                  "missing": [], "identical": False, "differing_voxels": 3, "voxels": 3000}}}}
    table = bench.format_table(report)
    batch_line = next(line for line in table.splitlines() if line.startswith("one batch run"))
    assert batch_line.split()[3:9] == ["25.0", "12.5", "576", "4.00", "50.0", "1000"]
    assert "1.25" in batch_line and "3 of 3000 voxels differ (0.1000 %)" in batch_line


def test_process_roles(bench):
    py = sys.executable
    processes = [
        {"argv": [py, "-I", "-S", "-c", "guard", "0", "r.json", "bilayer", "segment"], "peak_mb": 6.0},
        {"argv": ["/bin/bash", "-c", "for f ...", "bash", "a.mrc"], "peak_mb": 3.0},
        {"argv": [py, "/venv/bin/bilayer", "segment", "a.mrc", "--out", "r"], "peak_mb": 300.04},
        {"argv": [py, "-c", "from multiprocessing.resource_tracker import main;main(5)"], "peak_mb": 15.0},
        {"argv": [py, "-c", "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=6)",
                  "--multiprocessing-fork"], "peak_mb": 780.0},
        {"argv": [py, "-c", "from multiprocessing.spawn import spawn_main; spawn_main(tracker_fd=6)",
                  "--multiprocessing-fork"], "peak_mb": 790.0},
        {"argv": ["/usr/bin/sleep", "1"], "peak_mb": 1.0},
    ]
    roles = bench.process_roles(processes)
    assert roles == {"segment": [300.0], "helper": [15.0], "worker": [780.0, 790.0], "other": [1.0]}
    assert bench.format_roles(roles) == "segment 300 MB; helper 15 MB; worker 780, 790 MB; other 1 MB"
    assert bench.format_roles({"segment": [700.0, 710.0, 702.0, 731.4]}) == "segment 4× 700–731 MB"


def test_process_peaks_sees_a_child_and_its_peak(bench):
    script = "import time; block = bytearray(80 * 2**20); block[::4096] = b'x' * len(block[::4096]); time.sleep(1.2)"
    with bench.ProcessPeaks(interval=0.1) as peaks:
        subprocess.run([sys.executable, "-c", script, "peak-probe"], check=True)
    probes = [p for p in peaks.processes() if "peak-probe" in p["argv"]]
    assert len(probes) == 1
    assert 80 <= probes[0]["peak_mb"] < 200
