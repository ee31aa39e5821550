"""bilayer.model.zoo: the default model is inside the package; a missing one is a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest

import bilayer.model
import bilayer.model.zoo as zoo
from bilayer.errors import InputFileError
from bilayer.model import CHECKPOINT_SUFFIX, default_model_path


def test_the_default_model_is_a_checkpoint_inside_the_package():
    path = default_model_path()
    assert path.is_file() and path.stat().st_size > 1_000_000
    assert path.name.endswith(CHECKPOINT_SUFFIX) and path.name == Path(zoo.DEFAULT_MODEL_FILE).name
    assert path.parent.parent == Path(bilayer.model.__file__).parent


def test_a_missing_default_model_says_to_reinstall_or_give_one(monkeypatch):
    monkeypatch.setattr(zoo, "DEFAULT_MODEL_FILE", "weights/absent.bilayer.pt")
    with pytest.raises(InputFileError) as caught:
        default_model_path()
    message = str(caught.value)
    assert "\n" not in message and "absent.bilayer.pt is missing from this installation" in message
    assert message.endswith("reinstall Bilayer (pip install .) or give a model with --model")
