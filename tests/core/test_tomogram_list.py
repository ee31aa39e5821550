"""bilayer.io.tomogram_list: tomogram lists read from RELION STAR files (the engine's part; the
RELION adapter's re-exports and job-option messages are tested in tests/relion/test_star.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import starfile
from bilayer.errors import InputFileError
from bilayer.io.tomogram_list import ListKind, check_files, read_tomogram_list, star_text


def tomogram_set(path: Path, rows: list[tuple[str, str, float, float]]) -> Path:
    """A RELION 5 tomograms.star: (name, file, tilt-series pixel size, binning) per row."""
    lines = ["# version 50001", "", "data_global", "", "loop_", "_rlnTomoName #1", "_rlnVoltage #2",
             "_rlnTomoTiltSeriesPixelSize #3", "_rlnTomoTomogramBinning #4", "_rlnTomoReconstructedTomogram #5"]
    lines += [f"{name} 300.000000 {pixel:.6f} {binning:.6f} {file}" for name, file, pixel, binning in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n\n")
    return path


def micrograph_list(path: Path, rows: list[tuple[str, int]], pixel_sizes: dict[int, float]) -> Path:
    """A RELION 3.1 micrograph-style list: (file, optics group) per row, pixel size per optics group."""
    lines = ["# version 30001", "", "data_optics", "", "loop_", "_rlnOpticsGroupName #1", "_rlnOpticsGroup #2",
             "_rlnMicrographPixelSize #3"]
    lines += [f"opticsGroup{g} {g} {size:.6f}" for g, size in pixel_sizes.items()]
    lines += ["", "# version 30001", "", "data_micrographs", "", "loop_", "_rlnMicrographName #1",
              "_rlnOpticsGroup #2"]
    lines += [f"{file} {group}" for file, group in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n\n")
    return path


def test_a_tomogram_set_read_with_a_base_joins_relative_paths_and_multiplies_pixel_size_by_binning(tmp_path, blank_tomograms):
    project = tmp_path / "project"
    files = blank_tomograms(project, ["Tomograms/job007/tomograms/rec_TS_01.mrc", "Tomograms/job007/tomograms/rec_TS_02.mrc"])
    star = tomogram_set(project / "Tomograms/job007/tomograms.star",
                        [("TS_01", "Tomograms/job007/tomograms/rec_TS_01.mrc", 1.35, 6.0),
                         ("TS_02", str(files[1]), 2.0, 4.0)])
    found = read_tomogram_list(star, base=project)
    assert found.kind is ListKind.TOMOGRAM_SET and found.base == project
    assert [(t.ts_id, t.path, t.row) for t in found.tomograms] == [("TS_01", files[0], 0), ("TS_02", files[1], 1)]
    assert [t.voxel_size for t in found.tomograms] == pytest.approx([1.35 * 6.0, 8.0])
    assert found.paths(found.column, "tomogram") == files


def test_without_a_base_paths_stay_as_written_relative_to_the_working_directory(tmp_path, monkeypatch, blank_tomograms):
    blank_tomograms(tmp_path, ["tomos/rec_TS_01.mrc"])
    star = tomogram_set(tmp_path / "tomograms.star", [("TS_01", "tomos/rec_TS_01.mrc", 2.5, 4.0)])
    monkeypatch.chdir(tmp_path)
    assert read_tomogram_list(star).tomograms[0].path == Path("tomos/rec_TS_01.mrc")
    monkeypatch.chdir(tmp_path / "tomos")
    with pytest.raises(InputFileError, match=r"1 tomogram file\(s\) that do not exist: tomos/rec_TS_01.mrc"):
        read_tomogram_list(star)


def test_missing_files_are_listed_at_once_or_left_to_the_caller(tmp_path):
    star = tomogram_set(tmp_path / "tomograms.star", [("TS_01", "a.mrc", 2.5, 4.0), ("TS_02", "b.mrc", 2.5, 4.0)])
    with pytest.raises(InputFileError, match=rf"2 tomogram file\(s\) .*a.mrc, .*b.mrc \(paths are relative to the "
                                             rf"project folder {tmp_path}\)"):
        read_tomogram_list(star, base=tmp_path)
    found = read_tomogram_list(star, base=tmp_path, require_files=False)
    assert [t.path for t in found.tomograms] == [tmp_path / "a.mrc", tmp_path / "b.mrc"]


def test_check_files_names_every_missing_file_once(tmp_path, blank_tomograms):
    present = blank_tomograms(tmp_path, ["x.mrc"])[0]
    check_files([present], "tomogram", tmp_path / "list.star")
    with pytest.raises(InputFileError, match=r"list.star names 2 label file\(s\) that do not exist: .*/a.mrc, .*/b.mrc "):
        check_files([tmp_path / "b.mrc", present, tmp_path / "a.mrc", tmp_path / "b.mrc"], "label", tmp_path / "list.star")


def test_voxel_size_errors_name_the_callers_option(tmp_path, blank_tomograms):
    files = blank_tomograms(tmp_path, ["t.mrc"])
    star = tomogram_set(tmp_path / "tomograms.star", [("TS_01", str(files[0]), 0.0, 4.0)])
    with pytest.raises(InputFileError, match=r"rlnTomoTiltSeriesPixelSize of TS_01 is '0.000000'.*\(--voxel-size\)"):
        read_tomogram_list(star)
    with pytest.raises(InputFileError, match=r"\(--pixel\)"):
        read_tomogram_list(star, voxel_size_option="--pixel")
    assert read_tomogram_list(star, voxel_size=9.5).tomograms[0].voxel_size == 9.5


def test_a_micrograph_list_takes_each_rows_optics_group_pixel_size_and_file_stems_as_names(tmp_path, blank_tomograms):
    files = blank_tomograms(tmp_path, ["a/TS_1.mrc", "b/TS_2.rec"])
    star = micrograph_list(tmp_path / "mics.star", [(str(files[0]), 2), (str(files[1]), 1)], {1: 10.0, 2: 13.5})
    found = read_tomogram_list(star)
    assert found.kind is ListKind.MICROGRAPHS and found.block == "micrographs"
    assert [(t.ts_id, t.path, t.voxel_size) for t in found.tomograms] == [("TS_1", files[0], 13.5),
                                                                        ("TS_2", files[1], 10.0)]


def test_star_text_writes_the_tables_back_unchanged_with_new_columns(tmp_path, blank_tomograms):
    files = blank_tomograms(tmp_path, ["rec_TS_01.mrc"])
    star = tomogram_set(tmp_path / "tomograms.star", [("TS_01", str(files[0]), 1.35, 6.0)])
    found = read_tomogram_list(star)
    out = tmp_path / "out.star"
    out.write_text(star_text(found.with_columns({"rlnExtra": ["x.mrc"]}), found.version))
    assert "# version 50001" in out.read_text()
    table = starfile.read(out, parse_as_string=["rlnVoltage", "rlnTomoTiltSeriesPixelSize"])
    assert table["rlnVoltage"].tolist() == ["300.000000"] and table["rlnTomoTiltSeriesPixelSize"].tolist() == ["1.350000"]
    assert table["rlnExtra"].tolist() == ["x.mrc"]
    assert read_tomogram_list(out).tomograms == found.tomograms


def test_a_missing_star_file_is_named(tmp_path):
    with pytest.raises(InputFileError, match=r"STAR file .*none.star does not exist"):
        read_tomogram_list(tmp_path / "none.star")
