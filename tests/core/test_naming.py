"""bilayer.io.naming: the one owner of output names."""

from __future__ import annotations

from pathlib import Path

import pytest

from bilayer.errors import ConfigError
from bilayer.io import OUTPUT_SUFFIXES, output_name, output_paths
from bilayer.io.naming import threshold_mask_name


def test_names_are_the_stem_and_the_kinds_suffix():
    assert output_name("a/b/TS_01.rec", "mask") == "TS_01_seg.mrc"
    assert output_name("t.mrc", "preview") == "t_preview.png"
    assert output_paths("x/t.mrc", "out", ["mask", "scores"]) == {"mask": Path("out/t_seg.mrc"),
                                                                  "scores": Path("out/t_scores.mrc")}
    assert set(OUTPUT_SUFFIXES) >= {"mask", "scores", "components", "skeleton", "uncertainty", "preview"}
    assert len(set(OUTPUT_SUFFIXES.values())) == len(OUTPUT_SUFFIXES)


def test_an_unknown_kind_lists_the_known_ones():
    with pytest.raises(ConfigError, match="'mesh'.*mask, scores"):
        output_name("t.mrc", "mesh")


def test_a_mask_at_another_threshold_is_named_after_the_scores():
    assert threshold_mask_name("a/tomo_scores.mrc", 1.5) == "tomo_seg_t1.5.mrc"
    assert threshold_mask_name("tomo.mrc", -0.5) == "tomo_seg_t-0.5.mrc"
    assert threshold_mask_name("tomo_scores.mrc", 0.0) == "tomo_seg_t0.mrc"
    with pytest.raises(ConfigError, match="finite"):
        threshold_mask_name("tomo_scores.mrc", float("inf"))
