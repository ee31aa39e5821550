"""Bilayer as a Scipion plugin: protocols that translate Scipion objects into engine calls.

The protocols (segment, train / fine-tune, skeleton and components) hand tomograms to the
``bilayer`` command and register what it writes as Scipion sets. The plugin holds no
numerical code: every number comes from the ``bilayer`` engine, which runs as a separate
command (by default this interpreter's ``-m bilayer``; see :class:`Plugin`).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys

import pwem
from pyworkflow import VarTypes

from bilayer import __version__
from bilayer_scipion.constants import BILAYER_COMMAND_VAR, BILAYER_MODEL_VAR, CITATION_MEMBRAIN_V2

__all__ = ["Plugin", "__version__"]

_references = [CITATION_MEMBRAIN_V2]

#: Variables that would make another environment's Python pick up this one's packages.
_FOREIGN_PYTHON_VARS = ("PYTHONPATH", "PYTHONHOME")


class Plugin(pwem.Plugin):
    """Where the engine runs and which model is the default; nothing is installed or downloaded.

    Variables (environment or Scipion config):
        BILAYER_COMMAND: the engine command, split like a shell line; empty runs
            ``<this python> -m bilayer``.
        BILAYER_MODEL: the checkpoint used for "default model"; empty uses the engine's
            embedded model.
    """

    @classmethod
    def _defineVariables(cls) -> None:
        cls._defineVar(BILAYER_COMMAND_VAR, "",
                       description="Command that runs the Bilayer engine (e.g. /opt/bilayer/bin/bilayer or "
                                   "'conda run -n bilayer bilayer'). Empty: this Python with -m bilayer.",
                       var_type=VarTypes.STRING)
        cls._defineVar(BILAYER_MODEL_VAR, "",
                       description="Checkpoint used when a protocol asks for the default model. "
                                   "Empty: the model embedded in the engine.",
                       var_type=VarTypes.PATH)

    @classmethod
    def _value(cls, name: str) -> str:
        return (cls.getVar(name) or os.environ.get(name, "")).strip()

    @classmethod
    def usesThisInterpreter(cls) -> bool:
        """True when the engine is this interpreter's ``bilayer`` (no BILAYER_COMMAND set)."""
        return not cls._value(BILAYER_COMMAND_VAR)

    @classmethod
    def getEngineCommand(cls) -> list[str]:
        """The argv prefix that runs the engine; the subcommand and options follow it."""
        value = cls._value(BILAYER_COMMAND_VAR)
        return shlex.split(value) if value else [sys.executable, "-m", "bilayer"]

    @classmethod
    def getDefaultModel(cls) -> str | None:
        """The site's default checkpoint, or None for the engine's embedded model."""
        return cls._value(BILAYER_MODEL_VAR) or None

    @classmethod
    def getEnviron(cls, gpus: list[int] | tuple[int, ...] = (), threads: int | None = None) -> dict[str, str]:
        """The engine's environment: Scipion's own, limited to ``gpus`` when given, and to
        ``threads`` CPU threads when given (unless the environment already sets OMP_NUM_THREADS).

        A command in another environment does not inherit this one's PYTHONPATH/PYTHONHOME.
        """
        environ = dict(os.environ)
        if not cls.usesThisInterpreter():
            for name in _FOREIGN_PYTHON_VARS:
                environ.pop(name, None)
        if gpus:
            environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(gpu) for gpu in gpus)
        if threads and "OMP_NUM_THREADS" not in environ:
            environ["OMP_NUM_THREADS"] = environ["MKL_NUM_THREADS"] = str(threads)
        return environ

    @classmethod
    def validateInstallation(cls) -> list[str]:
        """Problems with the engine command or the site's default model, one message each."""
        errors = []
        command = cls.getEngineCommand()
        if not command or shutil.which(command[0]) is None:
            errors.append(f"The Bilayer engine command {shlex.join(command)!r} cannot be run: "
                          f"{command[0] if command else 'nothing'} is not an executable. "
                          f"Fix {BILAYER_COMMAND_VAR} in the Scipion config, or leave it empty to use this Python.")
        model = cls.getDefaultModel()
        if model and not os.path.isfile(model):
            errors.append(f"{BILAYER_MODEL_VAR}={model} is not a file; point it at a checkpoint "
                          "or leave it empty to use the engine's embedded model.")
        return errors

    @classmethod
    def defineBinaries(cls, env) -> None:  # noqa: ANN001  (Scipion's install environment)
        """Nothing to install: the engine and its embedded model come with this package."""
