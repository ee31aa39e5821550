"""The one family of option checks every configuration uses.

Each check takes the option's name and value and returns the value in its canonical form (an
enum member, a float, a tuple), or raises a :class:`~bilayer.errors.ConfigError` whose one-line
message names the option, the value and what is allowed. Configurations call these in
``__post_init__``, so a bad value is refused where the configuration is built, whichever door it
came through (command line, Python, Scipion, RELION). Plain Python and numpy only: importing a
configuration never loads torch or MONAI.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np

from bilayer.errors import ConfigError

__all__ = ["choice", "choices_text", "flag", "known_keys", "number", "number_pair", "probability"]

E = TypeVar("E", bound=enum.Enum)


def choices_text(enum_cls: type[enum.Enum]) -> str:
    """The valid values of ``enum_cls``, comma-separated, for messages and help texts."""
    return ", ".join(str(member.value) for member in enum_cls)


def choice(name: str, value: Any, enum_cls: type[E]) -> E:
    """``value`` as a member of ``enum_cls`` (a member, or its value such as ``"reflect"``).

    Raises:
        ConfigError: not one of the enum's values; the message lists them.
    """
    try:
        return enum_cls(value)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"{name}={value!r} is not one of {choices_text(enum_cls)}") from e


def flag(name: str, value: Any) -> bool:
    """``value`` as a bool when it is one (Python or numpy), else a :class:`ConfigError`."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConfigError(f"{name}={value!r} must be true or false")
    return bool(value)


def number(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
           open_low: bool = False, open_high: bool = False, integer: bool = False) -> Any:
    """``value`` as a float (an int with ``integer``) when it is finite and within [low, high]
    (ends excluded where asked).

    Raises:
        ConfigError: not a number, not finite, not an integer where one is needed, or out of range;
            the message names ``name``, the value and the allowed interval.
    """
    ok_type = isinstance(value, (int, np.integer) if integer else (int, float, np.integer, np.floating))
    finite = not isinstance(value, (float, np.floating)) or math.isfinite(value)
    if isinstance(value, (bool, np.bool_)) or not ok_type or not finite:
        kind = "an integer" if integer else "a finite number"
        within = "" if math.isinf(low) and math.isinf(high) else f" in {_interval(low, high, open_low, open_high)}"
        raise ConfigError(f"{name}={value!r} must be {kind}{within}")
    too_low = value <= low if open_low else value < low
    too_high = value >= high if open_high else value > high
    if too_low or too_high:
        raise ConfigError(f"{name}={value!r} is out of range; use a value in "
                          f"{_interval(low, high, open_low, open_high)}")
    return int(value) if integer else float(value)


def probability(name: str, value: Any) -> float:
    """``value`` as a float when it is a probability in [0, 1]."""
    return number(name, value, 0.0, 1.0)


def number_pair(name: str, value: Any, low: float = -math.inf, high: float = math.inf, *,
                open_low: bool = False, open_high: bool = False, integer: bool = False) -> tuple:
    """``value`` as a ``(lo, hi)`` tuple with ``lo <= hi``, both ends checked by :func:`number`.

    A pair with equal ends fixes the value; draws are uniform between the ends.

    Raises:
        ConfigError: not a pair, an end out of range, or ``lo > hi``; the message names ``name``.
    """
    ends = _ends_text(low, high, open_low, open_high, integer)
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)) or len(value) != 2:
        raise ConfigError(f"{name}={value!r} must be a pair (low, high) with low <= high{ends}")
    lo, hi = (number(f"{name}[{i}]", v, low, high, open_low=open_low, open_high=open_high, integer=integer)
              for i, v in enumerate(value))
    if lo > hi:
        raise ConfigError(f"{name}={(lo, hi)!r} has low > high; write it as {(hi, lo)!r}{ends}")
    return lo, hi


def known_keys(cls: type, data: Any, what: str) -> dict[str, Any]:
    """``data`` as a dict after checking it is a mapping whose keys are fields of dataclass ``cls``.

    Raises:
        ConfigError: ``data`` is not a mapping, or a key is unknown (the message names it and the
            known ones).
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{what} must be a mapping of settings, not {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(str(key) for key in data if key not in known)
    if unknown:
        raise ConfigError(f"unknown {what} key(s) {', '.join(map(repr, unknown))}; "
                          f"known keys: {', '.join(sorted(known))}")
    return dict(data)


def _interval(low: float, high: float, open_low: bool, open_high: bool) -> str:
    return f"{'(' if open_low else '['}{low:g}, {high:g}{')' if open_high else ']'}"


def _ends_text(low: float, high: float, open_low: bool, open_high: bool, integer: bool) -> str:
    """", each end an integer in [1, inf]" for messages about pairs; "" when any finite number will do."""
    if integer:
        return f", each end an integer in {_interval(low, high, open_low, open_high)}"
    if math.isinf(low) and math.isinf(high):
        return ""
    return f", each end in {_interval(low, high, open_low, open_high)}"
