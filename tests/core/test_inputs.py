"""bilayer.batch.inputs: a batch run's inputs (files, globs, text lists, RELION STAR lists) expanded
into one ordered, checked list of tomograms."""

from __future__ import annotations

from pathlib import Path

import pytest
from bilayer.batch import BatchInput, expand_inputs
from bilayer.errors import ConfigError, InputFileError


def summary(found: list[BatchInput]) -> list[tuple[Path, str, float | None]]:
    return [(i.path, i.name, i.voxel_size) for i in found]


def test_files_keep_their_order_and_take_names_from_their_stems(tmp_path, blank_tomograms):
    b, a = blank_tomograms(tmp_path, ["b.mrc", "sub/a.rec"])
    found = expand_inputs(["b.mrc", Path("sub/a.rec")], base=tmp_path)
    assert summary(found) == [(b, "b", None), (a, "a", None)]
    assert found[0].origin == "'b.mrc'"
    assert summary(expand_inputs([str(a), str(b)])) == [(a, "a", None), (b, "b", None)]


def test_relative_items_are_relative_to_the_working_directory_by_default(tmp_path, monkeypatch, blank_tomograms):
    (a,) = blank_tomograms(tmp_path, ["a.mrc"])
    monkeypatch.chdir(tmp_path)
    assert [i.path for i in expand_inputs(["a.mrc"])] == [a]


def test_a_glob_expands_sorted_to_tomogram_files_only(tmp_path, blank_tomograms):
    files = blank_tomograms(tmp_path, ["t/TS_10.mrc", "t/TS_02.mrc", "t/TS_01.mrc", "t/deep/TS_03.mrc"])
    (tmp_path / "t" / "TS_04.xml").write_text("<x/>")
    found = expand_inputs(["t/TS_*"], base=tmp_path)
    assert [i.path for i in found] == [files[2], files[1], files[0]]
    assert [i.name for i in expand_inputs(["t/**/TS_0[3]*.mrc", "t/TS_1?.mrc"], base=tmp_path)] == ["TS_03", "TS_10"]


def test_a_glob_matching_nothing_is_an_error_naming_it(tmp_path, blank_tomograms):
    blank_tomograms(tmp_path, ["a.mrc"])
    with pytest.raises(InputFileError, match=r"the pattern t/\*.mrc matches no tomogram file .*; fix the pattern"):
        expand_inputs(["a.mrc", "t/*.mrc"], base=tmp_path)


def test_a_text_list_skips_comments_and_blanks_and_reads_paths_relative_to_its_folder(tmp_path, blank_tomograms):
    files = blank_tomograms(tmp_path, ["lists/tomos/b.mrc", "lists/tomos/a.mrc", "elsewhere/c.mrc"])
    listed = tmp_path / "lists" / "run.txt"
    listed.write_text(f"# tomograms of the run\n\ntomos/b.mrc\n   # indented comment\n{files[2]}\n  tomos/a*.mrc  \n")
    found = expand_inputs(["lists/run.txt"], base=tmp_path)
    assert summary(found) == [(files[0], "b", None), (files[2], "c", None), (files[1], "a", None)]
    assert found[1].origin == f"{listed} line 5"


def test_an_at_file_is_a_list_whatever_its_suffix(tmp_path, blank_tomograms):
    files = blank_tomograms(tmp_path, ["x.mrc", "y.mrc"])
    (tmp_path / "inputs").write_text("y.mrc\nx.mrc\n")
    (tmp_path / "more.list").write_text("x.mrc\n")
    assert [i.path for i in expand_inputs(["@inputs"], base=tmp_path)] == [files[1], files[0]]
    assert [i.path for i in expand_inputs(["more.list"], base=tmp_path)] == [files[0]]


def test_a_list_line_that_is_no_tomogram_or_an_empty_list_is_refused(tmp_path, blank_tomograms):
    blank_tomograms(tmp_path, ["x.mrc"])
    (tmp_path / "bad.txt").write_text("x.mrc\nnotes.pdf\n")
    with pytest.raises(InputFileError, match=r"bad.txt line 2: notes.pdf is not a tomogram"):
        expand_inputs(["bad.txt"], base=tmp_path)
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    with pytest.raises(InputFileError, match=r"empty.txt names no tomograms"):
        expand_inputs(["empty.txt"], base=tmp_path)
    with pytest.raises(InputFileError, match=r"tomogram list .*none.txt does not exist"):
        expand_inputs(["@none.txt"], base=tmp_path)


def test_a_relion5_tomogram_set_gives_ts_ids_and_pixel_size_times_binning(tmp_path, blank_tomograms):
    files = blank_tomograms(tmp_path, ["Tomograms/job007/tomograms/rec_TS_01.mrc", "Tomograms/job007/tomograms/rec_TS_02.mrc"])
    star = tmp_path / "Tomograms" / "job007" / "tomograms.star"
    star.write_text("# version 50001\n\ndata_global\n\nloop_\n_rlnTomoName #1\n_rlnTomoTiltSeriesPixelSize #2\n"
                    "_rlnTomoTomogramBinning #3\n_rlnTomoReconstructedTomogram #4\n"
                    "TS_01 1.350000 6.000000 Tomograms/job007/tomograms/rec_TS_01.mrc\n"
                    "TS_02 2.000000 4.000000 Tomograms/job007/tomograms/rec_TS_02.mrc\n\n")
    found = expand_inputs(["Tomograms/job007/tomograms.star"], base=tmp_path)
    assert [(i.path, i.name) for i in found] == [(files[0], "TS_01"), (files[1], "TS_02")]
    assert [i.voxel_size for i in found] == pytest.approx([1.35 * 6.0, 8.0])
    assert found[1].origin == f"{star} row 2 (TS_02)"
    with pytest.raises(InputFileError, match=r"no rlnTomoDenoisedTomogram column"):
        expand_inputs([star], tomogram_column="rlnTomoDenoisedTomogram", base=tmp_path)


def test_a_micrograph_list_takes_pixel_sizes_from_its_optics_groups(tmp_path, blank_tomograms):
    files = blank_tomograms(tmp_path, ["a/TS_1.mrc", "b/TS_2.mrc"])
    star = tmp_path / "mics.star"
    star.write_text("# version 30001\n\ndata_optics\n\nloop_\n_rlnOpticsGroupName #1\n_rlnOpticsGroup #2\n"
                    "_rlnMicrographPixelSize #3\nopticsGroup1 1 10.000000\nopticsGroup2 2 13.500000\n\n"
                    "# version 30001\n\ndata_micrographs\n\nloop_\n_rlnMicrographName #1\n_rlnOpticsGroup #2\n"
                    "b/TS_2.mrc 2\na/TS_1.mrc 1\n\n")
    found = expand_inputs([star], base=tmp_path)
    assert summary(found) == [(files[1], "TS_2", 13.5), (files[0], "TS_1", 10.0)]


def test_the_same_file_given_twice_is_refused_naming_both_entries(tmp_path, blank_tomograms):
    files = blank_tomograms(tmp_path, ["t/a.mrc", "t/b.mrc"])
    (tmp_path / "run.txt").write_text("t/b.mrc\n")
    (tmp_path / "link.mrc").symlink_to(files[0])
    with pytest.raises(InputFileError) as caught:
        expand_inputs(["t/a.mrc", "t/*.mrc", "run.txt", "link.mrc"], base=tmp_path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("tomograms given twice: ")
    assert f"'t/a.mrc' and 't/*.mrc' (a.mrc) are the same file {files[0]}" in message
    assert f"'t/*.mrc' (b.mrc) and {tmp_path / 'run.txt'} line 1 are the same file {files[1]}" in message
    assert f"'t/a.mrc' and 'link.mrc' are the same file {files[0]}" in message


def test_missing_files_of_every_kind_are_listed_in_one_line(tmp_path, blank_tomograms):
    blank_tomograms(tmp_path, ["here.mrc"])
    (tmp_path / "run.txt").write_text("here.mrc\ngone.mrc\n")
    star = tmp_path / "tomograms.star"
    star.write_text("data_global\nloop_\n_rlnTomoName\n_rlnTomoTiltSeriesPixelSize\n_rlnTomoTomogramBinning\n"
                    "_rlnTomoReconstructedTomogram\nTS_09 2.5 4 rec_TS_09.mrc\n")
    with pytest.raises(InputFileError) as caught:
        expand_inputs(["absent.mrc", "run.txt", star], base=tmp_path)
    message = str(caught.value)
    assert "\n" not in message and message.startswith("3 tomogram file(s) do not exist: ")
    assert message.index("absent.mrc ('absent.mrc')") < message.index(f"gone.mrc ({tmp_path / 'run.txt'} line 2)") \
        < message.index(f"rec_TS_09.mrc ({star} row 1 (TS_09))")


def test_items_of_no_known_kind_and_no_items_are_refused(tmp_path):
    with pytest.raises(InputFileError, match=r"'notes.pdf': notes.pdf is not a tomogram \(.mrc, .*\), a glob, a text"):
        expand_inputs(["notes.pdf"], base=tmp_path)
    with pytest.raises(ConfigError, match="no tomograms given"):
        expand_inputs([])
