"""Patch centres from CSV/text, RELION STAR or one x,y,z, held as (z, y, x); written back both ways."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import starfile
from bilayer.annotation.positions import parse_position, read_positions, write_positions
from bilayer.errors import BilayerError, ConfigError, InputFileError


def test_membrain_csv_without_header_is_x_y_z(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("135,445,98\n456, 324, 134\n\n")
    np.testing.assert_array_equal(read_positions(path), [[98, 445, 135], [134, 324, 456]])


def test_a_header_chooses_the_columns_by_name(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text("score,Z,x,y\n0.5,3,10,20\n0.1,4,11,21\n")
    np.testing.assert_array_equal(read_positions(path), [[3, 20, 10], [4, 21, 11]])


def test_whitespace_text_with_comments_and_fractions_rounds_to_voxels(tmp_path):
    path = tmp_path / "points.txt"  # IMOD model2point style
    path.write_text("# picked in 3dmod\n  10.4  20.6   3.5\n7 8 9\n")
    np.testing.assert_array_equal(read_positions(path), [[4, 21, 10], [9, 8, 7]])


def test_star_positions_and_tomogram_choice(tmp_path):
    path = tmp_path / "p.star"
    table = pd.DataFrame({"rlnTomoName": ["TS_01", "TS_02", "TS_01"], "rlnCoordinateX": [1.0, 2.0, 3.2],
                          "rlnCoordinateY": [4.0, 5.0, 6.0], "rlnCoordinateZ": [7.0, 8.0, 9.0]})
    starfile.write({"particles": table}, path)
    np.testing.assert_array_equal(read_positions(path, tomo_name="TS_01"), [[7, 4, 1], [9, 6, 3]])
    with pytest.raises(ConfigError, match=r"p\.star lists positions of 2 tomograms.*--tomo-name"):
        read_positions(path, fallback_name="TS_03")
    np.testing.assert_array_equal(read_positions(path, fallback_name="TS_02"), [[8, 5, 2]])
    with pytest.raises(InputFileError, match="no positions of tomogram 'TS_09'.*TS_01, TS_02"):
        read_positions(path, tomo_name="TS_09")


def test_a_star_file_of_one_tomogram_needs_no_name_and_optics_blocks_are_passed_over(tmp_path):
    path = tmp_path / "p.star"
    optics = pd.DataFrame({"rlnOpticsGroup": [1], "rlnImagePixelSize": [10.0]})
    particles = pd.DataFrame({"rlnCoordinateX": [5], "rlnCoordinateY": [6], "rlnCoordinateZ": [7]})
    starfile.write({"optics": optics, "particles": particles}, path)
    np.testing.assert_array_equal(read_positions(path), [[7, 6, 5]])


def test_relion5_centred_coordinates_are_refused_with_the_fix(tmp_path):
    path = tmp_path / "p.star"
    table = pd.DataFrame({f"rlnCenteredCoordinate{a}Angst": [0.0] for a in "XYZ"})
    starfile.write({"particles": table}, path)
    with pytest.raises(InputFileError, match="RELION 5 centred coordinates in Å.*convert"):
        read_positions(path)


@pytest.mark.parametrize("text, words", [("1,2\n", "line 1"), ("x,y,z\n1,2,3\n1,b,3\n", "line 3"),
                                         ("a,b,c\n1,2,3\n", "names no x, y, z"), ("", "lists no positions")])
def test_bad_text_names_the_file_and_line(tmp_path, text, words):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(InputFileError, match=words) as caught:
        read_positions(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_missing_file(tmp_path):
    with pytest.raises(InputFileError, match="does not exist; give a CSV"):
        read_positions(tmp_path / "nope.csv")


def test_one_position_on_the_command_line():
    assert parse_position("120, 88,40") == (40, 88, 120)
    assert parse_position("1.6,2,3") == (3, 2, 2)
    for bad in ("1,2", "a,b,c", "1,2,3,4"):
        with pytest.raises(ConfigError, match="is not x,y,z"):
            parse_position(bad)


@pytest.mark.parametrize("name", ["out.csv", "out.star"])
def test_written_positions_read_back(tmp_path, name):
    centres = np.array([[3, 20, 10], [40, 0, 7]])
    path = write_positions(tmp_path / name, centres, tomo_name="tomo")
    np.testing.assert_array_equal(read_positions(path), centres)
    if name.endswith(".csv"):  # MemBrain-seg's get_csv_data reads it: no header, x,y,z
        assert path.read_text() == "10,20,3\n7,0,40\n"
    else:
        table = starfile.read(path)
        assert list(table["rlnTomoName"]) == ["tomo", "tomo"] and list(table["rlnCoordinateX"]) == [10, 7]
    with pytest.raises(BilayerError, match="already exists"):
        write_positions(path, centres)
