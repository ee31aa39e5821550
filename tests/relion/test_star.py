"""bilayer_relion.star: tomogram lists read from RELION STAR files, and tables written back."""

from __future__ import annotations

from pathlib import Path

import pytest
import starfile

from bilayer.errors import InputFileError
from bilayer_relion.star import AUTO, ListKind, read_tomogram_list, star_text


@pytest.fixture
def three(project, tomogram_files):
    return tomogram_files([f"Tomograms/job007/tomograms/rec_TS_0{i}.mrc" for i in (1, 2, 3)])


def test_a_relion5_tomogram_set_gives_names_files_and_pixel_size_times_binning(three, tomogram_set):
    star = tomogram_set("Tomograms/job007/tomograms.star", three, pixel_size=1.35, binning=6.0)
    found = read_tomogram_list(star)
    assert found.kind is ListKind.TOMOGRAM_SET and found.block == "global" and found.version == "50001"
    assert found.column == "rlnTomoReconstructedTomogram"
    assert [t.ts_id for t in found.tomograms] == ["TS_01", "TS_02", "TS_03"]
    assert [t.path for t in found.tomograms] == three
    assert [t.voxel_size for t in found.tomograms] == pytest.approx([1.35 * 6.0] * 3)


def test_written_back_the_table_keeps_every_value_as_written_and_gains_columns(three, tomogram_set, tmp_path):
    star = tomogram_set("Tomograms/job007/tomograms.star", three)
    found = read_tomogram_list(star)
    out = tmp_path / "out.star"
    out.write_text(star_text(found.with_columns({"rlnTomoMembraneSegmentation": ["a.mrc", "b.mrc", "c.mrc"]}),
                             found.version))
    text = out.read_text()
    assert "# version 50001" in text
    before = starfile.read(star, parse_as_string=["rlnTomoName", "rlnTomoHand", "rlnVoltage"])
    after = starfile.read(out, parse_as_string=["rlnTomoName", "rlnTomoHand", "rlnVoltage"])
    assert list(after.columns) == [*before.columns, "rlnTomoMembraneSegmentation"]
    assert after["rlnVoltage"].tolist() == ["300.000000"] * 3 and after["rlnTomoHand"].tolist() == ["-1.00000"] * 3
    assert after["rlnTomoMembraneSegmentation"].tolist() == ["a.mrc", "b.mrc", "c.mrc"]
    assert read_tomogram_list(out).tomograms == found.tomograms


def test_auto_takes_the_reconstructed_tomogram_and_a_named_column_takes_that(three, tomogram_set):
    denoised = [p.with_name(p.stem + "_denoised.mrc") for p in three]
    for source, target in zip(three, denoised):
        target.write_bytes(source.read_bytes())
    star = tomogram_set("tomograms.star", three)
    lines = star.read_text().splitlines()
    header_end = max(i for i, line in enumerate(lines) if line.startswith("_"))
    lines.insert(header_end + 1, "_rlnTomoReconstructedTomogramDenoised #15 ")
    for i, path in zip(range(header_end + 2, header_end + 5), denoised):
        lines[i] += f" {path}"
    star.write_text("\n".join(lines))
    assert read_tomogram_list(star, column=AUTO).column == "rlnTomoReconstructedTomogram"
    chosen = read_tomogram_list(star, column="rlnTomoReconstructedTomogramDenoised")
    assert [t.path for t in chosen.tomograms] == denoised
    with pytest.raises(InputFileError, match="no rlnTomoDenoisedTomogram column.*choose one of"):
        read_tomogram_list(star, column="rlnTomoDenoisedTomogram")


def test_a_tomogram_set_without_binning_says_which_column_is_missing(three, tomogram_set):
    star = tomogram_set("tomograms.star", three, drop=("rlnTomoTomogramBinning",))
    with pytest.raises(InputFileError, match=r"tomograms.star has no rlnTomoTomogramBinning column.*--voxel_size"):
        read_tomogram_list(star)
    assert read_tomogram_list(star, voxel_size=12.0).tomograms[0].voxel_size == 12.0


def test_missing_files_are_all_listed_at_once(three, tomogram_set):
    star = tomogram_set("tomograms.star", three)
    three[0].unlink()
    three[2].unlink()
    with pytest.raises(InputFileError, match=r"2 tomogram file\(s\) that do not exist: .*rec_TS_01.mrc, "
                                             r".*rec_TS_03.mrc \(paths are relative to the project folder"):
        read_tomogram_list(star)


def test_a_row_without_a_file_and_a_bad_pixel_size_are_named(three, tomogram_set):
    star = tomogram_set("tomograms.star", three)
    star.write_text(star.read_text().replace(str(three[1]), "N/A"))
    with pytest.raises(InputFileError, match="TS_02 has no rlnTomoReconstructedTomogram"):
        read_tomogram_list(star)
    star = tomogram_set("tomograms.star", three, pixel_size=0.0)
    with pytest.raises(InputFileError, match="rlnTomoTiltSeriesPixelSize of TS_01 is '0.000000', not a positive"):
        read_tomogram_list(star)


def test_a_relion31_micrograph_list_takes_the_pixel_size_of_each_optics_group(three, micrograph_list):
    star = micrograph_list("Import/job001/micrographs.star", three, pixel_size=13.5)
    found = read_tomogram_list(star)
    assert found.kind is ListKind.MICROGRAPHS and found.block == "micrographs" and found.version == "30001"
    assert [t.ts_id for t in found.tomograms] == ["rec_TS_01", "rec_TS_02", "rec_TS_03"]
    assert [t.voxel_size for t in found.tomograms] == [13.5] * 3


def test_a_relion30_list_without_pixel_sizes_leaves_them_to_the_headers(three, project):
    star = project / "mics.star"
    star.write_text("data_\nloop_\n_rlnMicrographName\n" + "".join(f"{p}\n" for p in three))
    found = read_tomogram_list(star)
    assert found.block == "" and [t.voxel_size for t in found.tomograms] == [None] * 3


def test_a_one_tomogram_set_written_without_loop_is_read(three, project):
    star = project / "one.star"
    star.write_text(f"data_global\n\n_rlnTomoName TS_01\n_rlnTomoReconstructedTomogram {three[0]}\n"
                    "_rlnTomoTiltSeriesPixelSize 2.5\n_rlnTomoTomogramBinning 4\n")
    found = read_tomogram_list(star)
    assert [(t.ts_id, t.path, t.voxel_size) for t in found.tomograms] == [("TS_01", three[0], 10.0)]


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    ("data_particles\nloop_\n_rlnImageName\na.mrcs\n", "lists no tomograms: expected a RELION 5 tomogram set"),
    ("data_global\nloop_\n_rlnTomoName\n_rlnTomoReconstructedTomogram\n", "lists no tomograms"),
    ("data_global\nloop_\n_rlnTomoName\n_rlnTomoTiltSeriesStarFile\nTS_01 ts.star\n", "RELION 4 tomogram sets"),
])
def test_files_that_list_no_tomograms_are_refused(project, content, message):
    star = project / "in.star"
    if content is not None:
        star.write_text(content)
    with pytest.raises(InputFileError, match=message):
        read_tomogram_list(star)


def test_a_tomogram_listed_twice_is_refused(three, tomogram_set):
    star = tomogram_set("tomograms.star", [three[0], three[1], three[0]])
    with pytest.raises(InputFileError, match="lists TS_01 more than once"):
        read_tomogram_list(star)


def test_label_paths_are_checked_like_tomograms(three, tomogram_set):
    star = tomogram_set("tomograms.star", three, labels_column="rlnTomoMembraneSegmentation")
    found = read_tomogram_list(star)
    with pytest.raises(InputFileError, match=r"3 label file\(s\) that do not exist: .*rec_TS_01_labels.mrc"):
        found.paths("rlnTomoMembraneSegmentation", "label")
    with pytest.raises(InputFileError, match="no rlnMyLabels column in data_global; add the label"):
        found.paths("rlnMyLabels", "label")
    assert found.paths(found.column, "tomogram") == [Path(p) for p in three]
