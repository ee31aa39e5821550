"""Train or fine-tune a Bilayer network on tomograms and their membrane masks."""

from __future__ import annotations

import csv
import enum
import os
import re

from pwem.protocols import EMProtocol
from pyworkflow import BETA
from pyworkflow.protocol import GE, GPU_LIST, USE_GPU, BooleanParam, EnumParam, FileParam, FloatParam, IntParam, \
    LEVEL_ADVANCED, PointerParam, StringParam
from pyworkflow.utils import Message
from tomo.objects import SetOfTomoMasks, SetOfTomograms

from bilayer import __version__
from bilayer_scipion import defaults
from bilayer_scipion.constants import CITATION_MEMBRAIN_V2
from bilayer_scipion.engine import run_engine
from bilayer_scipion.objects import BilayerModel
from bilayer_scipion.protocols.model_choice import ModelParam, ModelSource, add_model_params, model_args, \
    model_description, model_errors
from bilayer_scipion.protocols.protocol_base import file_path

__all__ = ["ProtBilayerTrain", "TrainMode", "TrainOutput", "TrainParam"]

_SEPARATORS = re.compile(r"[\s,;]+")


class TrainParam(str, enum.Enum):
    """Form names of the train protocol's parameters (the model's are in ``ModelParam``)."""

    TOMOGRAMS = "inputTomograms"
    MASKS = "inputMasks"
    VALIDATION = "validationTsIds"
    MODE = "trainingMode"
    EPOCHS = "epochs"
    LEARNING_RATE = "learningRate"
    PATCH_SIZE = "patchSize"
    BATCH_SIZE = "batchSize"
    STEPS_PER_EPOCH = "stepsPerEpoch"
    TIME_LIMIT = "timeLimit"
    SURFACE_DICE = "surfaceDice"
    AUGMENT = "augment"
    VALIDATE_EVERY = "validateEvery"
    SEED = "seed"
    WORKERS = "workers"
    PRECISION = "precision"
    COMPILE = "compileNetwork"
    SETTINGS = "settingsFile"


class TrainMode(enum.IntEnum):
    """Choices of ``trainingMode``."""

    SCRATCH = 0
    FINETUNE = 1


class TrainOutput(enum.Enum):
    """The protocol's one output."""

    model = BilayerModel


class ProtBilayerTrain(EMProtocol):
    """Train a Bilayer membrane-segmentation network, or fine-tune one, on tomograms and masks.

    MemBrain-seg's recipe (MemBrain v2): a U-Net with deep supervision trained with masked
    Dice + cross-entropy (optionally Surface-Dice), SGD with a poly schedule, and cryo-ET
    augmentations. Masks hold 0 (background), 1 (membrane) and 2 (ignore: not used for the
    loss). Tomograms and masks are paired by tsId. The output model can be chosen in the
    Bilayer segment protocol; its training curves open with the protocol's viewer.
    """

    # --------------------------- ATTRIBUTES -----------------------------------
    _label = "train membrane model"
    _devStatus = BETA
    _possibleOutputs = TrainOutput

    # --------------------------- DEFINE param functions -----------------------
    def _defineParams(self, form) -> None:  # noqa: ANN001
        engine = defaults.training()
        tuned = defaults.finetune_overrides()
        form.addSection(label=Message.LABEL_INPUT)
        form.addParam(TrainParam.TOMOGRAMS.value, PointerParam, pointerClass="SetOfTomograms", important=True,
                      label="Tomograms",
                      help="Training tomograms. Their Scipion sampling rate (Å/px) is stored in the model, so "
                           "tomograms of other sampling rates are resampled to it when segmented.")
        form.addParam(TrainParam.MASKS.value, PointerParam, pointerClass="SetOfTomoMasks", important=True,
                      label="Membrane labels",
                      help="One mask per tomogram, paired by tsId and of the same size: 0 background, 1 membrane, "
                           "2 ignore (left out of the loss and the scores).")
        form.addParam(TrainParam.VALIDATION.value, StringParam, default="", label="Validation tsIds",
                      help="tsIds held out for validation, separated by spaces or commas. Validation picks the best "
                           "checkpoint (lowest validation loss) and gives the Dice curves. Empty: train on all "
                           "pairs; the model is the last network.")
        form.addParam(TrainParam.MODE.value, EnumParam, choices=["train from scratch", "fine-tune a model"],
                      default=TrainMode.SCRATCH.value, display=EnumParam.DISPLAY_HLIST, label="Mode",
                      help="*train from scratch*: a new network (MemBrain-seg's architecture unless a settings "
                           "file says otherwise).\n*fine-tune a model*: continue training an existing model "
                           "(its architecture is kept) with MemBrain-seg's fine-tuning defaults.")
        add_model_params(form, condition=f"{TrainParam.MODE.value} == {TrainMode.FINETUNE.value}",
                         purpose="start fine-tuning from")

        form.addSection(label="Training")
        form.addParam(TrainParam.EPOCHS.value, IntParam, default=None, allowsNull=True, label="Epochs",
                      help=f"Length of the run; empty: the engine's default ({engine.epochs} from scratch, "
                           f"{tuned.get('epochs', engine.epochs)} when fine-tuning). The learning rate decays to "
                           "0 at the end (poly schedule).")
        form.addParam(TrainParam.LEARNING_RATE.value, FloatParam, default=None, allowsNull=True,
                      label="Learning rate",
                      help=f"Initial learning rate of SGD (Nesterov momentum {engine.momentum:g}); empty: the "
                           f"engine's default ({engine.learning_rate:g} from scratch, "
                           f"{tuned.get('learning_rate', engine.learning_rate):g} when fine-tuning).")
        form.addParam(TrainParam.PATCH_SIZE.value, IntParam, default=engine.patch_size, label="Patch size (voxels)",
                      help="Edge of the cubic training patches, a multiple of the network's size multiple "
                           "(32 for MemBrain-seg's network). Larger patches see more context and need more memory.")
        form.addParam(TrainParam.BATCH_SIZE.value, IntParam, default=engine.batch_size, validators=[GE(1)],
                      label="Batch size", help="Patches per optimiser step.")
        form.addParam(TrainParam.STEPS_PER_EPOCH.value, IntParam, default=engine.steps_per_epoch, validators=[GE(0)],
                      label="Steps per epoch", help="Optimiser steps per epoch; 0: one pass over the training pairs.")
        form.addParam(TrainParam.TIME_LIMIT.value, FloatParam, default=engine.time_limit, validators=[GE(0)],
                      label="Time limit (minutes)",
                      help="Wall-clock minutes the training may take, e.g. a queue's wall time less a margin: the "
                           "learning rate then decays over this time (or the epochs, whichever ends first) and "
                           "the run stops with its checkpoints once it is spent. 0: no limit.")
        form.addParam(TrainParam.SURFACE_DICE.value, BooleanParam, default=engine.loss.surface_dice,
                      label="Surface-Dice loss?",
                      help="Add MemBrain v2's Surface-Dice loss, which rewards connected membranes.")
        form.addParam(TrainParam.AUGMENT.value, BooleanParam, default=engine.augment is not None,
                      label="Augment?",
                      help="MemBrain-seg's augmentations (geometry, intensity, blur, Fourier amplitude, missing "
                           "wedge); turn off only for tests.")

        form.addSection(label="Advanced")
        form.addParam(TrainParam.VALIDATE_EVERY.value, IntParam, default=engine.validate_every, validators=[GE(1)],
                      expertLevel=LEVEL_ADVANCED, label="Validate every (epochs)",
                      help="Validation runs every this many epochs and after the last.")
        form.addParam(TrainParam.SEED.value, IntParam, default=engine.seed, validators=[GE(0)],
                      expertLevel=LEVEL_ADVANCED, label="Random seed",
                      help="Seeds the initial weights, the patch crops and the augmentation: the same seed and "
                           "data give the same model.")
        form.addParam(TrainParam.WORKERS.value, IntParam, default=engine.num_workers, validators=[GE(0)],
                      expertLevel=LEVEL_ADVANCED, label="Data-loading processes",
                      help="Processes preparing patches beside the training one; 0 prepares them in it.")
        form.addParam(TrainParam.PRECISION.value, EnumParam, choices=defaults.training_precisions(), default=0,
                      expertLevel=LEVEL_ADVANCED, label="Arithmetic",
                      help="Number format of the forward pass (weights stay float32): auto uses bfloat16 where the "
                           "hardware has it, else float32. float16 needs a GPU.")
        form.addParam(TrainParam.COMPILE.value, BooleanParam, default=engine.compile, expertLevel=LEVEL_ADVANCED,
                      label="Compile the network?",
                      help="torch.compile the network: faster steps after a minute or two of compiling (falls back "
                           "to plain execution when it cannot compile).")
        form.addParam(TrainParam.SETTINGS.value, FileParam, default="", expertLevel=LEVEL_ADVANCED,
                      label="Settings file",
                      help="Optional YAML or JSON file of engine training settings (bilayer.train.TrainConfig "
                           "fields, e.g. a smaller 'network'). The values in this form override the file's.")
        form.addHidden(USE_GPU, BooleanParam, default=True, label="Use GPU?",
                       help="Train on a GPU (the CPU when none is visible); No trains on the CPU.")
        form.addHidden(GPU_LIST, StringParam, default="0", label="GPU IDs",
                       help="The GPU to train on (the first one listed is used).")

    # --------------------------- INSERT steps functions -----------------------
    def _insertAllSteps(self) -> None:
        self._insertFunctionStep(self.prepareDatasetStep, needsGPU=False)
        self._insertFunctionStep(self.trainStep, needsGPU=True)
        self._insertFunctionStep(self.createOutputStep, needsGPU=False)

    # --------------------------- STEPS functions ------------------------------
    def prepareDatasetStep(self) -> None:
        """Link tomograms and masks, paired by tsId, into a MemBrain-seg dataset folder (the engine's layout)."""
        from bilayer.data.layout import Split, case_id, link_pairs

        validation = set(self._validationTsIds())
        masks = {mask.getTsId(): file_path(mask.getFileName()) for mask in self._masks()}
        pairs: dict[Split, list[tuple[str, str, str]]] = {Split.TRAIN: [], Split.VAL: []}
        for tomo in self._tomograms():
            tsId = tomo.getTsId()
            if tsId in masks:
                split = Split.VAL if tsId in validation else Split.TRAIN
                pairs[split].append((case_id(tsId), file_path(tomo.getFileName()), masks[tsId]))
        link_pairs(self._datasetPath(), {split: items for split, items in pairs.items() if items}, prune=True)

    def trainStep(self) -> None:
        """Run ``bilayer train`` (or ``finetune``); its failure fails the protocol with the engine's message."""
        gpus = [int(g) for g in self._stepsExecutor.getGpuList()] if self._usesGpu() else []
        run = run_engine(self._trainArgs(), gpus=gpus, tag="train")
        if not run.ok:
            raise RuntimeError(f"Bilayer training failed: {run.error}")

    def createOutputStep(self) -> None:
        best, last = self._runPath("best.bilayer.pt"), self._runPath("last.bilayer.pt")
        model = BilayerModel(checkpoint=best if os.path.isfile(best) else last, runFolder=self._runPath(),
                             samplingRate=self._tomograms().getSamplingRate(), fineTuned=self._isFinetune())
        self._defineOutputs(**{TrainOutput.model.name: model})
        self._defineSourceRelation(getattr(self, TrainParam.TOMOGRAMS.value), model)
        self._defineSourceRelation(getattr(self, TrainParam.MASKS.value), model)
        if self._isFinetune() and ModelSource(getattr(self, ModelParam.SOURCE.value).get()) is ModelSource.TRAINED:
            self._defineSourceRelation(getattr(self, ModelParam.TRAINED.value), model)

    # --------------------------- UTILS functions ------------------------------
    def _value(self, param: TrainParam):  # noqa: ANN202  (the parameter's own type)
        return getattr(self, param.value).get()

    def _tomograms(self) -> SetOfTomograms:
        return self._value(TrainParam.TOMOGRAMS)

    def _masks(self) -> SetOfTomoMasks:
        return self._value(TrainParam.MASKS)

    def _isFinetune(self) -> bool:
        return self._value(TrainParam.MODE) == TrainMode.FINETUNE.value

    def _usesGpu(self) -> bool:
        return bool(self.getAttributeValue(USE_GPU, False))

    def _validationTsIds(self) -> list[str]:
        return [t for t in _SEPARATORS.split(self._value(TrainParam.VALIDATION) or "") if t]

    def _pairedTsIds(self) -> list[str]:
        masks = set(self._masks().getTSIds())
        return sorted(t for t in self._tomograms().getTSIds() if t in masks)

    def _datasetPath(self, *parts: str) -> str:
        return self._getExtraPath("dataset", *parts)

    def _runPath(self, *parts: str) -> str:
        return self._getExtraPath("run", *parts)

    def _trainArgs(self) -> list[str]:
        """The engine's argv (after ``bilayer``)."""
        args = ["finetune" if self._isFinetune() else "train", os.path.abspath(self._datasetPath()),
                "--out", os.path.abspath(self._runPath()),
                "--voxel-size", repr(float(self._tomograms().getSamplingRate())),
                "--patch-size", str(self._value(TrainParam.PATCH_SIZE)),
                "--batch-size", str(self._value(TrainParam.BATCH_SIZE)),
                "--steps-per-epoch", str(self._value(TrainParam.STEPS_PER_EPOCH)),
                "--time-limit", repr(float(self._value(TrainParam.TIME_LIMIT))),
                "--validate-every", str(self._value(TrainParam.VALIDATE_EVERY)),
                "--seed", str(self._value(TrainParam.SEED)),
                "--workers", str(self._value(TrainParam.WORKERS)),
                "--precision", self._precision(),
                "--surface-dice" if self._value(TrainParam.SURFACE_DICE) else "--no-surface-dice",
                "--augment" if self._value(TrainParam.AUGMENT) else "--no-augment",
                "--compile" if self._value(TrainParam.COMPILE) else "--no-compile",
                "--device", "auto" if self._usesGpu() else "cpu"]
        if self._value(TrainParam.EPOCHS) is not None:
            args += ["--epochs", str(self._value(TrainParam.EPOCHS))]
        if self._value(TrainParam.LEARNING_RATE) is not None:
            args += ["--lr", repr(float(self._value(TrainParam.LEARNING_RATE)))]
        if self._value(TrainParam.SETTINGS):
            args += ["--config", os.path.abspath(self._value(TrainParam.SETTINGS))]
        if self._isFinetune():
            args += model_args(self, explicit=True)
        return args

    def _precision(self) -> str:
        return defaults.training_precisions()[self._value(TrainParam.PRECISION)]

    def getCurvesFile(self) -> str:
        """The engine's plot of the training curves (redrawn after every epoch)."""
        return self._runPath("curves.png")

    def _lastMetrics(self) -> dict[str, str]:
        """The last row of the engine's metrics.csv, as written ({} before the first epoch)."""
        path = self._runPath("metrics.csv")
        if not os.path.isfile(path):
            return {}
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        return rows[-1] if rows else {}

    # --------------------------- INFO functions -------------------------------
    def _validate(self) -> list[str]:
        errors = list(super()._validate())
        tomos, masks = self._tomograms(), self._masks()
        if tomos is None or masks is None:
            return errors
        paired = self._pairedTsIds()
        validation = self._validationTsIds()
        unknown = [t for t in validation if t not in paired]
        if not paired:
            errors.append("No tomogram has a mask with the same tsId; pair them by tsId.")
        if unknown:
            errors.append(f"Validation tsIds {', '.join(unknown)} have no tomogram-mask pair; "
                          f"choose among {', '.join(paired)}.")
        if paired and not set(paired) - set(validation):
            errors.append("Every pair is held out for validation; leave at least one for training.")
        if abs(tomos.getSamplingRate() - masks.getSamplingRate()) > 1e-3 * tomos.getSamplingRate():
            errors.append(f"Tomograms ({tomos.getSamplingRate():.3f} Å/px) and masks ({masks.getSamplingRate():.3f} "
                          "Å/px) must have the same sampling rate.")
        if self._isFinetune():
            errors += model_errors(self, explicit=True)
        errors += self._settingErrors()
        return errors

    def _settingErrors(self) -> list[str]:
        """The engine's verdict on the form's values (skipped with a settings file, which may change
        the network and so the valid patch sizes; the engine checks them all when the run starts)."""
        if self._value(TrainParam.SETTINGS):
            if not os.path.isfile(self._value(TrainParam.SETTINGS)):
                return [f"The settings file {self._value(TrainParam.SETTINGS)} does not exist."]
            return []
        values = {"voxel_size": self._tomograms().getSamplingRate(),
                  "patch_size": self._value(TrainParam.PATCH_SIZE), "batch_size": self._value(TrainParam.BATCH_SIZE),
                  "steps_per_epoch": self._value(TrainParam.STEPS_PER_EPOCH),
                  "time_limit": self._value(TrainParam.TIME_LIMIT),
                  "validate_every": self._value(TrainParam.VALIDATE_EVERY), "seed": self._value(TrainParam.SEED),
                  "num_workers": self._value(TrainParam.WORKERS), "precision": self._precision()}
        for key, param in (("epochs", TrainParam.EPOCHS), ("learning_rate", TrainParam.LEARNING_RATE)):
            if self._value(param) is not None:
                values[key] = self._value(param)
        problem = defaults.training_error(values)
        return [f"Invalid training setting: {problem}."] if problem else []

    def _summary(self) -> list[str]:
        tomos = self._tomograms()
        if tomos is None:
            return ["No tomograms chosen."]
        validation = self._validationTsIds()
        lines = [f"{'Fine-tuning' if self._isFinetune() else 'Training from scratch'} on "
                 f"{len(self._pairedTsIds()) - len(validation)} tomogram-mask pairs "
                 f"({len(validation)} held out for validation) at {tomos.getSamplingRate():.2f} Å/px."]
        if self._isFinetune():
            lines.append(f"Starting model: {model_description(self)}.")
        metrics = self._lastMetrics()
        if metrics:
            shown = ", ".join(f"{k} {v}" for k, v in metrics.items() if v not in ("", None) and k != "seconds")
            lines.append(f"Last epoch: {shown}.")
        model = getattr(self, TrainOutput.model.name, None)
        if model is not None:
            lines.append(f"Model: {model.getPath()} (training curves: {model.getCurvesFile()}).")
        return lines

    def _methods(self) -> list[str]:
        tomos = self._tomograms()
        if tomos is None:
            return []
        verb = "fine-tuned" if self._isFinetune() else "trained"
        return [f"A membrane segmentation network was {verb} with Bilayer {__version__} on "
                f"{len(self._pairedTsIds())} tomograms at {tomos.getSamplingRate():.2f} Å/px, following the "
                f"MemBrain-seg recipe of MemBrain v2 [{CITATION_MEMBRAIN_V2}]"
                f"{' with the Surface-Dice loss' if self._value(TrainParam.SURFACE_DICE) else ''}."]

    def _citations(self) -> list[str]:
        return [CITATION_MEMBRAIN_V2]
