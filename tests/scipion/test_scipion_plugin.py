"""The plugin as Scipion sees it: discovery, menu, variables, engine runs, forms, validation.

Nothing here launches a protocol; see test_scipion_segment/train/skeleton for real runs.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyworkflow", reason="Scipion is not installed (pip install '.[scipion]'): "
                                         "the Scipion plugin cannot be tested")

import numpy as np  # noqa: E402
from pwem import Domain  # noqa: E402
from pyworkflow.protocol.constants import GPU_LIST, USE_GPU  # noqa: E402
from tomo.objects import Tomogram  # noqa: E402

import bilayer_scipion  # noqa: E402
from bilayer.infer.config import InferenceConfig  # noqa: E402
from bilayer.io import write_volume  # noqa: E402
from bilayer_scipion import Plugin, defaults  # noqa: E402
from bilayer_scipion.engine import run_engine  # noqa: E402
from bilayer_scipion.protocols import ProtBilayerSegment, ProtBilayerSkeleton, ProtBilayerTrain  # noqa: E402
from bilayer_scipion.protocols.model_choice import ModelParam, ModelSource  # noqa: E402
from bilayer_scipion.protocols.protocol_segment import SegmentParam  # noqa: E402
from bilayer_scipion.protocols.protocol_skeleton import SkeletonParam  # noqa: E402
from bilayer_scipion.protocols.protocol_train import TrainParam  # noqa: E402

OURS = {"ProtBilayerSegment": ProtBilayerSegment, "ProtBilayerTrain": ProtBilayerTrain,
        "ProtBilayerSkeleton": ProtBilayerSkeleton}
PARAMS = {ProtBilayerSegment: [*SegmentParam, *ModelParam], ProtBilayerTrain: [*TrainParam, *ModelParam],
          ProtBilayerSkeleton: [*SkeletonParam]}


def test_scipion_finds_the_plugin_its_three_protocols_and_its_model_object():
    assert "bilayer_scipion" in Domain.getPlugins()
    protocols = Domain.getProtocols()
    for name in OURS:
        assert protocols[name].getClassPackage() is bilayer_scipion
    assert "ProtBilayerBase" not in protocols  # the shared base is not offered
    assert "BilayerModel" in Domain.getObjects()


def test_protocols_conf_puts_them_under_tomograms_segmentation():
    from pyworkflow.gui.project.viewprotocols_extra import ProtocolTreeConfig

    conf = Path(bilayer_scipion.__file__).with_name("protocols.conf")
    assert conf.is_file(), "protocols.conf must be installed beside the package (setup.py package_data)"
    views = ProtocolTreeConfig.load(Domain, str(conf.parent / "no-base-protocols.conf"))

    def find(node, *path):
        for text in path:
            node = next(child for child in node.childs if child.text == text)
        return node

    segmentation = find(views["Tomography"], "Tomograms", "Segmentation")
    assert {child.value for child in segmentation.childs} >= set(OURS)


def test_the_engine_is_this_interpreter_unless_a_site_says_otherwise(monkeypatch):
    assert Plugin.getEngineCommand() == [sys.executable, "-m", "bilayer"]
    assert Plugin.usesThisInterpreter() and Plugin.validateInstallation() == []
    monkeypatch.setenv("PYTHONPATH", "/this/environment")
    assert Plugin.getEnviron()["PYTHONPATH"] == "/this/environment"

    monkeypatch.setenv("BILAYER_COMMAND", "'/opt/bilayer env/bin/bilayer' --debug")
    assert Plugin.getEngineCommand() == ["/opt/bilayer env/bin/bilayer", "--debug"]
    environ = Plugin.getEnviron((1, 3))
    assert "PYTHONPATH" not in environ and environ["CUDA_VISIBLE_DEVICES"] == "1,3"
    errors = Plugin.validateInstallation()
    assert len(errors) == 1 and "/opt/bilayer env/bin/bilayer" in errors[0] and "BILAYER_COMMAND" in errors[0]


def test_parallel_steps_share_the_cpu_cores_unless_the_site_says_otherwise(monkeypatch):
    prot = ProtBilayerSegment()
    prot.numberOfThreads.set(1)
    assert prot._engineThreads() is None  # one step at a time: the engine's own choice
    prot.numberOfThreads.set(3)  # two steps at once
    assert prot._engineThreads() == max(1, (os.cpu_count() or 1) // 2)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert Plugin.getEnviron(threads=4)["OMP_NUM_THREADS"] == "4"
    assert "OMP_NUM_THREADS" not in Plugin.getEnviron()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert Plugin.getEnviron(threads=4)["OMP_NUM_THREADS"] == "1"


def test_a_missing_default_model_file_is_a_validation_error(monkeypatch, tmp_path):
    monkeypatch.setenv("BILAYER_MODEL", str(tmp_path / "gone.bilayer.pt"))
    errors = Plugin.validateInstallation()
    assert len(errors) == 1 and "gone.bilayer.pt" in errors[0]


def test_the_engine_runs_and_its_error_line_is_kept(tmp_path):
    version = run_engine(["--version"])
    assert version.ok and version.error == ""
    failed = run_engine(["info", str(tmp_path / "missing.mrc")], tag="TS_1")
    assert failed.returncode == 2 and "missing.mrc" in failed.error and "does not exist" in failed.error
    assert not failed.error.startswith("bilayer:")  # the prefix is dropped, the message kept


def test_an_engine_that_cannot_start_is_a_failure_naming_the_variable(monkeypatch):
    monkeypatch.setenv("BILAYER_COMMAND", "/nonexistent/bin/bilayer")
    run = run_engine(["--version"])
    assert run.returncode == 127 and "BILAYER_COMMAND" in run.error


def test_output_names_are_the_engines():
    from bilayer.io import OUTPUT_SUFFIXES

    for kind in ("mask", "scores", "components", "skeleton", "uncertainty"):
        assert defaults.output_suffix(kind) == OUTPUT_SUFFIXES[kind]


@pytest.mark.parametrize("protocol", list(OURS.values()), ids=list(OURS))
def test_every_parameter_has_a_label_and_help(protocol):
    definition = protocol().getDefinition()
    names = [p.value for p in PARAMS[protocol]]
    if protocol is not ProtBilayerSkeleton:
        names += [USE_GPU, GPU_LIST]
    for name in names:
        param = definition.getParam(name)
        assert param is not None, f"{protocol.__name__} has no parameter {name}"
        hidden = name in (USE_GPU, GPU_LIST)  # Scipion draws these in its parallel section, unlabelled
        assert hidden or param.label.get(), f"{protocol.__name__}.{name} needs a label"
        assert len(param.help.get() or "") > 20, f"{protocol.__name__}.{name} needs help"


def test_form_defaults_are_the_engines():
    from bilayer.train.config import TrainConfig

    segment, train = ProtBilayerSegment(), ProtBilayerTrain()
    engine = InferenceConfig()
    assert (segment.window.get(), segment.overlap.get(), segment.tta.get(), segment.threshold.get(),
            segment.rescale.get()) == (engine.window, engine.overlap, engine.tta, engine.threshold, engine.rescale)
    assert defaults.precisions()[segment.precision.get()] == engine.precision.value
    assert defaults.paddings()[segment.padding.get()] == engine.padding.value
    assert segment.fitWindow.get() is engine.fit_window
    recipe = TrainConfig()
    assert (train.patchSize.get(), train.batchSize.get(), train.stepsPerEpoch.get(), train.seed.get(),
            train.compileNetwork.get(), train.timeLimit.get()) == (recipe.patch_size, recipe.batch_size,
                                                                   recipe.steps_per_epoch, recipe.seed,
                                                                   recipe.compile, recipe.time_limit)
    assert train.epochs.get() is None and train.learningRate.get() is None  # the engine's, per mode


def test_validation_reports_the_engines_verdict_and_the_model(tmp_path):
    prot = ProtBilayerSegment()
    prot.window.set(50)
    prot.overlap.set(1.5)
    getattr(prot, ModelParam.SOURCE.value).set(ModelSource.FILE.value)
    getattr(prot, ModelParam.FILE.value).set(str(tmp_path / "nowhere.ckpt"))
    errors = prot._validate()
    assert any("window=50" in e and "multiple of 32" in e for e in errors), errors
    assert any("nowhere.ckpt" in e for e in errors), errors
    prot.window.set(64)
    prot.overlap.set(0.25)
    getattr(prot, ModelParam.FILE.value).set(str(tmp_path))  # a folder is no checkpoint
    assert any(str(tmp_path) in e for e in prot._validate())


def test_the_default_model_is_checked_before_running():
    from bilayer.errors import BilayerError
    from bilayer.model.zoo import default_model_path

    prot = ProtBilayerSegment()
    errors = prot._validate()
    try:
        default_model_path()
    except BilayerError:
        assert any("No default model" in e for e in errors), errors
    else:
        assert errors == []


def _segment_protocol(tmp_path, file_name: str, ts_id: str, sampling_rate: float = 14.0) -> ProtBilayerSegment:
    """A segment protocol with one tomogram of ``ts_id`` at ``sampling_rate``, ready for ``_segmentArgs``."""
    tomo = Tomogram()
    tomo.setFileName(file_name)
    tomo.setSamplingRate(sampling_rate)
    tomo.setTsId(ts_id)
    prot = ProtBilayerSegment()
    prot.setWorkingDir(str(tmp_path / "run"))
    for folder in (prot._getTmpPath(), prot._getExtraPath()):
        os.makedirs(folder)
    prot._itemsByTsId = {ts_id: tomo}
    return prot


def test_segment_arguments_carry_the_sampling_rate_and_name_outputs_by_tsid(tmp_path):
    source = write_volume(tmp_path / "tomo with spaces.mrc", np.zeros((8, 8, 8), np.float32), voxel_size=10.0)
    prot = _segment_protocol(tmp_path, f"{source}:mrc", "TS_7")
    prot.keepComponents.set(True)
    prot.minSize.set(12)
    prot.rescale.set(False)
    prot.fitWindow.set(False)
    getattr(prot, USE_GPU).set(False)
    args = prot._segmentArgs("TS_7")
    link = Path(args[1])
    assert args[0] == "segment" and link.name == "TS_7.mrc" and link.resolve() == source.resolve()
    assert args[args.index("--voxel-size") + 1] == "14.0"
    assert args[args.index("--min-size") + 1] == "12" and "--components" in args
    assert "--no-rescale" in args and "--no-tta" not in args and "--tta" in args
    assert "--fixed-window" in args and "--fit-window" not in args
    assert args[args.index("--device") + 1] == "cpu"
    assert "--model" not in args  # the default model: the engine's own


def test_every_engine_option_is_a_parameter_and_reaches_the_engine(tmp_path):
    from bilayer.cli_segment import segment_options_from_args
    from bilayer.infer.config import SegmentOptions
    from bilayer_scipion.protocols.protocol_segment import OPTIONS_ELSEWHERE, SegmentParam

    params = {member.name.lower() for member in SegmentParam if member is not SegmentParam.TOMOGRAMS}
    assert params | set(OPTIONS_ELSEWHERE) == set(SegmentOptions.names()), "an engine option has no parameter"
    source = write_volume(tmp_path / "t.mrc", np.zeros((8, 8, 8), np.float32), voxel_size=10.0)
    prot = _segment_protocol(tmp_path, str(source), "TS_1")
    engine = SegmentOptions()
    chosen = dict(threshold=0.7, tta=not engine.inference.tta, window=96, overlap=0.25, batch_size=3, min_size=7,
                  fit_window=not engine.inference.fit_window, scores=True, components=True, skeleton=True,
                  rescale=True, rescale_like_membrain=True)  # --no-rescale: see the test above
    for name, value in chosen.items():
        getattr(prot, SegmentParam[name.upper()].value).set(value)
    for name, choices in (("padding", defaults.paddings()), ("precision", defaults.precisions()),
                          ("tta_grid", defaults.tta_grids())):
        getattr(prot, SegmentParam[name.upper()].value).set(1)
        chosen[name] = choices[1]
    prot.extraThresholds.set("0.5, 1.5")
    chosen["extra_thresholds"] = [0.5, 1.5]  # the form's text, read by the engine
    got = segment_options_from_args(prot._segmentArgs("TS_1")[1:])
    for name, value in chosen.items():
        assert got.to_dict()[name] == value, name
    assert got.voxel_size == 14.0 and got.outputs.preview is False
    with_tta = dict(tta=True, uncertainty=True, smooth_uncertainty=not engine.outputs.smooth_uncertainty)
    for name, value in with_tta.items():  # the uncertainty needs test-time augmentation, off above
        getattr(prot, SegmentParam[name.upper()].value).set(value)
    got = segment_options_from_args(prot._segmentArgs("TS_1")[1:]).to_dict()
    assert {name: got[name] for name in with_tta} == with_tta
    assert set(chosen) | set(with_tta) == params


def test_uncertainty_and_extra_thresholds_become_outputs_named_by_the_engine(tmp_path):
    from bilayer_scipion.protocols.protocol_segment import SegmentOutput, threshold_output

    source = write_volume(tmp_path / "t.mrc", np.zeros((8, 8, 8), np.float32), voxel_size=10.0)
    prot = _segment_protocol(tmp_path, str(source), "TS_1")
    prot.keepUncertainty.set(True)
    prot.extraThresholds.set("1.5 -0.5")
    files = prot._outputFiles("TS_1")
    assert {name: os.path.basename(path) for name, path in files.items()} == {
        SegmentOutput.MASKS.value: "TS_1_seg.mrc", SegmentOutput.UNCERTAINTY.value: "TS_1_uncertainty.mrc",
        "tomoMasksT1p5": "TS_1_seg_t1.5.mrc", "tomoMasksTm0p5": "TS_1_seg_t-0.5.mrc"}
    assert threshold_output(1.5) == "tomoMasksT1p5" and all(name.isidentifier() for name in files)
    args = prot._segmentArgs("TS_1")
    assert "--uncertainty" in args and "--raw-uncertainty" not in args
    assert args[args.index("--extra-threshold") + 1] == "1.5 -0.5"
    prot.tta.set(False)  # the form hides the question without TTA: no map is made or expected
    assert "--uncertainty" not in prot._segmentArgs("TS_1")
    assert SegmentOutput.UNCERTAINTY.value not in prot._outputFiles("TS_1")
    prot.extraThresholds.set("1.5, high")
    assert any("extra_thresholds: 'high' is not a number" in e for e in prot._validate())


def test_the_citation_is_the_membrain_v2_paper():
    Domain.getPlugins()  # registering the plugin reads its bibtex
    cite = bilayer_scipion._bibtex["Lamm2024"]
    assert cite["doi"] == "10.1101/2024.01.05.574336" and "v2: an end-to-end tool" in cite["title"]
    prot = Domain.getProtocols()["ProtBilayerSegment"]()
    assert "10.1101/2024.01.05.574336" in " ".join(prot.citations())
