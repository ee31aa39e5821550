"""The embedded default model: weights shipped inside the package, so nothing is downloaded.

``bilayer segment tomo.mrc`` and ``bilayer.segment(tomo)`` use it when no model is given. It
is a five-level MemBrain-seg-style U-Net trained by ``bilayer train`` on synthetic tomograms
only (``configs/default_train.yaml``, ``scripts/train_default_model.sh``), stored in float16;
its model card is ``docs/model_card.md``.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from bilayer.errors import InputFileError

__all__ = ["DEFAULT_MODEL_FILE", "default_model_path"]

#: File name of the default model inside the ``bilayer.model`` package.
DEFAULT_MODEL_FILE = "weights/bilayer_default.bilayer.pt"


def default_model_path() -> Path:
    """Where the installed default model is.

    Raises:
        InputFileError: this installation does not contain it (a broken or partial install).
    """
    path = Path(str(resources.files("bilayer.model").joinpath(DEFAULT_MODEL_FILE)))
    if not path.is_file():
        raise InputFileError(f"the default model {path} is missing from this installation; reinstall Bilayer "
                             "(pip install .) or give a model with --model")
    return path
