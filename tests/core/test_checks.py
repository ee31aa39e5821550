"""bilayer.checks: the one family of option checks; and configurations stay plain data (no torch/MONAI)."""

from __future__ import annotations

import dataclasses
import enum
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import bilayer
from bilayer.checks import choice, choices_text, flag, known_keys, number, number_pair, probability
from bilayer.errors import BilayerError, ConfigError


class Colour(str, enum.Enum):
    RED = "red"
    DARK_BLUE = "dark_blue"


def test_choice_accepts_members_and_values_and_lists_the_valid_ones():
    assert choice("colour", "red", Colour) is Colour.RED
    assert choice("colour", Colour.DARK_BLUE, Colour) is Colour.DARK_BLUE
    assert choices_text(Colour) == "red, dark_blue"
    for bad in ("green", None, 3, ["red"]):
        with pytest.raises(ConfigError, match=r"colour=.* is not one of red, dark_blue"):
            choice("colour", bad, Colour)


def test_flag_takes_python_and_numpy_bools_only():
    assert flag("tta", True) is True and flag("tta", np.bool_(False)) is False
    for bad in (1, 0, "yes", None, 1.0):
        with pytest.raises(ConfigError, match=r"^tta=.* must be true or false$"):
            flag("tta", bad)


def test_number_canonicalises_ints_floats_and_numpy_scalars():
    assert number("x", 3, 0, 10) == 3.0 and type(number("x", 3, 0, 10)) is float
    assert type(number("x", np.float32(0.5), 0, 1)) is float and number("x", np.float32(0.5), 0, 1) == 0.5
    assert type(number("x", np.int64(7), 1, integer=True)) is int
    assert number("x", 10**30, 0, integer=True) == 10**30  # no float conversion for integers
    assert number("x", -1e300) == -1e300  # unbounded by default


@pytest.mark.parametrize("value", [True, False, np.bool_(True), "3", None, [1.0], 1 + 2j, np.complex64(1),
                                   math.nan, math.inf, -math.inf, np.float64("nan")])
def test_number_refuses_non_numbers_bools_and_non_finite_values(value):
    with pytest.raises(ConfigError, match=r"^overlap=.* must be a finite number in \[0, 1\)$"):
        number("overlap", value, 0.0, 1.0, open_high=True)


def test_number_refuses_non_integers_where_integers_are_needed():
    for value in (2.0, 2.5, np.float64(2.0), True, "2"):
        with pytest.raises(ConfigError, match=r"^batch_size=.* must be an integer in \[1, inf\]$"):
            number("batch_size", value, 1, integer=True)


@pytest.mark.parametrize(("value", "low", "high", "ends", "interval"), [
    (-0.1, 0.0, 1.0, {}, r"\[0, 1\]"),
    (1.5, 0.0, 1.0, {}, r"\[0, 1\]"),
    (0.0, 0.0, math.inf, {"open_low": True}, r"\(0, inf\]"),
    (90.0, 0.0, 90.0, {"open_high": True}, r"\[0, 90\)"),
    (0.0001, 0.001, 10.0, {}, r"\[0\.001, 10\]"),
])
def test_number_out_of_range_names_option_value_and_interval(value, low, high, ends, interval):
    with pytest.raises(ConfigError, match=rf"^tilt={value!r} is out of range; use a value in {interval}$"):
        number("tilt", value, low, high, **ends)


def test_number_keeps_closed_ends():
    assert number("p", 0, 0, 1) == 0.0 and number("p", 1, 0, 1) == 1.0
    assert number("n", 1, 1, 1, integer=True) == 1


def test_probability_is_a_number_in_the_unit_interval():
    assert probability("p", 1) == 1.0 and probability("p", np.float16(0.25)) == 0.25
    for bad in (-0.01, 1.01, True, "0.5", math.nan):
        with pytest.raises(ConfigError, match=r"^p=.*\[0, 1\]$"):
            probability("p", bad)


def test_number_pair_canonicalises_to_a_tuple():
    assert number_pair("zoom", [0.7, 1]) == (0.7, 1.0) and type(number_pair("zoom", [0.7, 1])[1]) is float
    assert number_pair("zoom", np.array([0.5, 0.5]), 0.0, open_low=True) == (0.5, 0.5)  # equal ends fix the value
    assert number_pair("size", (np.int32(2), 7), 1, integer=True) == (2, 7)
    assert all(type(v) is int for v in number_pair("size", (np.int32(2), 7), 1, integer=True))


def test_number_pair_refuses_what_is_not_a_pair_and_names_the_allowed_ends():
    for bad in ("ab", 0.5, (1.0,), (1.0, 2.0, 3.0), None, {"low": 1}):
        with pytest.raises(ConfigError, match=r"^zoom=.* must be a pair \(low, high\) with low <= high, "
                                              r"each end in \(0, 10\]$"):
            number_pair("zoom", bad, 0.0, 10.0, open_low=True)


def test_number_pair_refuses_reversed_ends_and_shows_the_fix():
    with pytest.raises(ConfigError, match=r"^zoom=\(1\.5, 0\.7\) has low > high; write it as \(0\.7, 1\.5\), "
                                          r"each end in \(0, inf\]$"):
        number_pair("zoom", (1.5, 0.7), 0.0, open_low=True)
    with pytest.raises(ConfigError, match=r"^shift=\(2\.0, 1\.0\) has low > high; write it as \(1\.0, 2\.0\)$"):
        number_pair("shift", (2, 1))  # unbounded: nothing more to say


def test_number_pair_checks_each_end_by_name():
    with pytest.raises(ConfigError, match=r"^size\[1\]=7\.5 must be an integer in \[1, inf\]$"):
        number_pair("size", (2, 7.5), 1, integer=True)
    with pytest.raises(ConfigError, match=r"^tilt\[0\]=True must be a finite number in \(0, 90\)$"):
        number_pair("tilt", (True, 60.0), 0.0, 90.0, open_low=True, open_high=True)
    with pytest.raises(ConfigError, match=r"^tilt\[1\]=90\.0 is out of range; use a value in \(0, 90\)$"):
        number_pair("tilt", (45.0, 90.0), 0.0, 90.0, open_low=True, open_high=True)


@dataclasses.dataclass(frozen=True)
class _Options:
    window: int = 160
    overlap: float = 0.5


def test_known_keys_returns_a_plain_dict_and_lists_unknown_and_known_keys():
    data = {"window": 96}
    out = known_keys(_Options, data, "inference setting")
    assert out == data and out is not data
    with pytest.raises(ConfigError, match=r"^unknown inference setting key\(s\) 'overlop', 'windw'; "
                                          r"known keys: overlap, window$"):
        known_keys(_Options, {"windw": 1, "overlop": 0.5, "window": 3}, "inference setting")
    for bad in ([("window", 96)], None, "window=96"):
        with pytest.raises(ConfigError, match=r"^inference setting must be a mapping of settings, not "):
            known_keys(_Options, bad, "inference setting")


def test_every_refusal_is_a_bilayer_error():
    with pytest.raises(BilayerError):
        number("x", "no")
    assert issubclass(ConfigError, BilayerError)


def test_configuration_modules_load_neither_torch_nor_monai():
    """A configuration can be read and checked (Scipion forms, RELION job definitions) without the engine."""
    modules = ("bilayer.checks", "bilayer.settings", "bilayer.augment.config", "bilayer.train.config",
               "bilayer.train.settings", "bilayer.data.synthetic.config", "bilayer.losses.config",
               "bilayer.model.config", "bilayer.model.info")
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "from bilayer.train.config import TrainConfig\n"
            "TrainConfig.from_dict(TrainConfig().to_dict())\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'monai'}))\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(bilayer.__file__).parents[1]),
                                                         os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
