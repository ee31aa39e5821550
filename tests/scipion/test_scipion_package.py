"""The Scipion adapter package is installed and registered where Scipion looks for plugins."""

from __future__ import annotations

from importlib import metadata

import pytest

pytest.importorskip("pyworkflow", reason="Scipion is not installed (pip install '.[scipion]'): "
                                         "the Scipion plugin cannot be imported")

import bilayer  # noqa: E402


def test_scipion_plugin_entry_point_is_registered():
    entry_points = metadata.entry_points(group="pyworkflow.plugin")
    ours = [ep for ep in entry_points if ep.value == "bilayer_scipion"]
    assert len(ours) == 1
    module = ours[0].load()
    assert module.__version__ == bilayer.__version__
