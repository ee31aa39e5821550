"""Package names that load on first use (PEP 562), so importing a light module of a package (its
plain-data configuration, say) does not load the heavy ones (torch, MONAI) beside it."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping

__all__ = ["lazy_names"]


def lazy_names(package: str, homes: Mapping[str, str]) -> tuple[Callable[[str], Any], list[str]]:
    """``(__getattr__, __all__)`` for ``package``, whose name ``n`` lives in ``package.<homes[n]>``.

    Use in a package's ``__init__``: ``__getattr__, __all__ = lazy_names(__name__, _HOMES)``.
    """

    def __getattr__(name: str) -> Any:
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{homes[name]}"), name)
        setattr(sys.modules[package], name, value)  # later lookups skip this function
        return value

    return __getattr__, sorted(homes)
