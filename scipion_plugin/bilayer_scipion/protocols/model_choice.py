"""Choosing a model in a form: the default one, one trained in Scipion, or a checkpoint file.

The segment protocol and fine-tuning share these parameters, so a model trained by the
train protocol can be picked in both.
"""

from __future__ import annotations

import enum
import os

from pyworkflow.protocol import EnumParam, FileParam, PointerParam

from bilayer_scipion import Plugin

__all__ = ["ModelParam", "ModelSource", "add_model_params", "model_args", "model_description", "model_errors"]


class ModelParam(str, enum.Enum):
    """Form names of the model parameters."""

    SOURCE = "modelSource"
    TRAINED = "inputModel"
    FILE = "modelFile"


class ModelSource(enum.IntEnum):
    """Where the model comes from (the choices of ``modelSource``, in order)."""

    DEFAULT = 0
    TRAINED = 1
    FILE = 2

    @property
    def label(self) -> str:
        return {ModelSource.DEFAULT: "default model", ModelSource.TRAINED: "trained in Scipion",
                ModelSource.FILE: "checkpoint file"}[self]


def add_model_params(form, *, condition: str = "True", purpose: str = "segment") -> None:  # noqa: ANN001
    """Add the model choice to ``form``, shown when ``condition`` holds."""
    source = ModelParam.SOURCE.value
    form.addParam(source, EnumParam, choices=[s.label for s in ModelSource], default=ModelSource.DEFAULT.value,
                  display=EnumParam.DISPLAY_HLIST, condition=condition, label="Model",
                  help=f"The network used to {purpose}.\n"
                       "*default model*: the model embedded in Bilayer (no download), or the checkpoint named "
                       "by the BILAYER_MODEL variable of this Scipion installation.\n"
                       "*trained in Scipion*: the output of a Bilayer train / fine-tune run.\n"
                       "*checkpoint file*: a Bilayer checkpoint (.bilayer.pt) or a MemBrain-seg checkpoint "
                       "(.ckpt, read safely: no code in it runs).")
    form.addParam(ModelParam.TRAINED.value, PointerParam, pointerClass="BilayerModel", allowsNull=True,
                  condition=f"({condition}) and {source} == {ModelSource.TRAINED.value}",
                  label="Trained model", help="A model made by the Bilayer train / fine-tune protocol.")
    form.addParam(ModelParam.FILE.value, FileParam, default="",
                  condition=f"({condition}) and {source} == {ModelSource.FILE.value}",
                  label="Checkpoint file",
                  help="Path of a Bilayer (.bilayer.pt) or MemBrain-seg (.ckpt) checkpoint.")


def _source(protocol) -> ModelSource:  # noqa: ANN001
    return ModelSource(getattr(protocol, ModelParam.SOURCE.value).get())


def _path(protocol) -> str | None:  # noqa: ANN001
    """The checkpoint chosen, or None for the engine's embedded model."""
    source = _source(protocol)
    if source is ModelSource.TRAINED:
        model = getattr(protocol, ModelParam.TRAINED.value).get()
        return model.getPath() if model is not None else None
    if source is ModelSource.FILE:
        return getattr(protocol, ModelParam.FILE.value).get() or None
    return Plugin.getDefaultModel()


def model_args(protocol, *, explicit: bool = False) -> list[str]:  # noqa: ANN001
    """``--model PATH`` for the chosen checkpoint; nothing for the embedded model, unless
    ``explicit`` (``bilayer finetune`` needs a path): then the embedded model's file."""
    path = _path(protocol)
    if path is None and explicit:
        from bilayer.model.zoo import default_model_path

        path = str(default_model_path())
    return ["--model", os.path.abspath(path)] if path else []


def model_errors(protocol, *, explicit: bool = False) -> list[str]:  # noqa: ANN001
    """What is wrong with the model choice, one message each (``explicit`` as for
    :func:`model_args`)."""
    source = _source(protocol)
    if source is ModelSource.TRAINED and getattr(protocol, ModelParam.TRAINED.value).get() is None:
        return ["Choose a trained model (the output of a Bilayer train / fine-tune run)."]
    path = _path(protocol)
    if source is ModelSource.FILE and not path:
        return ["Give a checkpoint file, or choose the default model."]
    if path and not os.path.isfile(path):
        return [f"The model checkpoint {path} does not exist."]
    if path is None and explicit and not Plugin.usesThisInterpreter():
        return ["The engine runs in another environment, so its embedded model cannot be named here: set the "
                "BILAYER_MODEL variable, or choose a trained model or a checkpoint file."]
    if path is None and Plugin.usesThisInterpreter():
        from bilayer.errors import BilayerError
        from bilayer.model.zoo import default_model_path

        try:
            default_model_path()
        except BilayerError as e:
            return [f"No default model: {e}. Choose a trained model or a checkpoint file."]
    return []


def model_description(protocol) -> str:  # noqa: ANN001
    """The model in words, for summaries and methods."""
    path = _path(protocol)
    return f"{_source(protocol).label} ({os.path.basename(path) if path else 'embedded in Bilayer'})"
