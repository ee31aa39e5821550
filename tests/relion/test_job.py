"""bilayer_relion._job: RELION's External-job protocol (exit files, output nodes, aborts, arguments)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest
import starfile

from bilayer.errors import ConfigError, InputFileError
from bilayer_relion._job import (
    ABORT_FILE,
    EXIT_ABORTED,
    EXIT_USAGE,
    NODES_FILE,
    ExitStatus,
    JobParser,
    Node,
    NodeType,
    Job,
    JobAborted,
    device_from_gpu,
    gpu_devices,
    run_program,
    yes_no,
)

EXIT_FILES = {s.value for s in ExitStatus}


def _parser() -> JobParser:
    parser = JobParser("test-job", "a job for tests")
    parser.add_option("size", kind=int, help="a number")
    parser.add_option("flag", kind=yes_no, help="a yes/no")
    return parser


def _exit_files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()} & EXIT_FILES


def test_success_writes_the_nodes_with_both_type_columns_and_only_the_success_file(project, capsys, monkeypatch):
    threads = []
    monkeypatch.setattr("bilayer_relion._job._set_threads", threads.append)  # torch's count is process-wide
    folder = project / "External" / "job003"
    folder.mkdir(parents=True)
    for stale in EXIT_FILES:
        (folder / stale).touch()
    seen = {}

    def run(args, job):
        seen.update(vars(args))
        assert _exit_files(job.folder) == set()  # stale exit files are gone while the job runs
        return [Node(Path("External/job003/tomograms.star"), NodeType.TOMOGRAM_SET),
                Node(Path("External/job003/a_seg.mrc"), NodeType.MASK)]

    code = run_program(["--o", "External/job003/", "--size", "3", "--flag", "--j", "2", "--pipeline_control",
                        "External/job003/"], _parser(), run)
    assert code == 0
    assert _exit_files(folder) == {"RELION_JOB_EXIT_SUCCESS"}
    assert seen["size"] == 3 and seen["flag"] is True and threads == [2]
    nodes = starfile.read(folder / NODES_FILE, always_dict=True)["output_nodes"]
    assert nodes["rlnPipeLineNodeName"].tolist() == ["External/job003/tomograms.star", "External/job003/a_seg.mrc"]
    assert nodes["rlnPipeLineNodeType"].tolist() == [1, 7]
    assert nodes["rlnPipeLineNodeTypeLabel"].tolist() == ["TomogramGroupMetadata.star.bilayer.membranes",
                                                          "Mask3D.mrc.bilayer.membranes"]
    out = capsys.readouterr().out
    assert "ignoring arguments this job does not know: --pipeline_control External/job003/" in out


@pytest.mark.parametrize("argv, message", [
    (["--size", "many"], "argument --size: invalid int value: 'many'"),
    (["--flag", "maybe"], "'maybe' is not yes or no"),
    (["--j", "0"], "'0' is not a whole number of at least 1"),
])
def test_arguments_that_cannot_be_parsed_fail_the_job_with_one_line(project, capsys, argv, message):
    code = run_program(["--o", "External/job001", *argv], _parser(), lambda args, job: [])
    assert code == EXIT_USAGE
    assert _exit_files(project / "External" / "job001") == {"RELION_JOB_EXIT_FAILURE"}
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and "see 'test-job --help'" in err


def test_without_a_job_folder_nothing_is_written_and_the_error_says_so(project, capsys):
    assert run_program(["--size", "1"], _parser(), lambda args, job: []) == EXIT_USAGE
    assert "give the job folder with --o" in capsys.readouterr().err
    assert list(project.iterdir()) == []


def test_a_user_error_is_one_line_and_a_bug_keeps_its_traceback(project, capsys):
    def bad_input(args, job):
        raise InputFileError("tomo.mrc is truncated;\n  export it again")

    assert run_program(["--o", "Ext/job1"], _parser(), bad_input) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err == "test-job: error: tomo.mrc is truncated; export it again\n"

    def bug(args, job):
        return 1 / 0

    assert run_program(["--o", "Ext/job1"], _parser(), bug) == 1
    assert "ZeroDivisionError" in capsys.readouterr().err
    assert _exit_files(project / "Ext" / "job1") == {"RELION_JOB_EXIT_FAILURE"}


def test_the_abort_file_ends_the_job_aborted_and_is_consumed(project, capsys):
    def run(args, job):
        (job.folder / ABORT_FILE).touch()  # the GUI's abort button, while the job runs
        job.check_abort()
        raise AssertionError("not reached")

    assert run_program(["--o", "Ext/job2"], _parser(), run) == EXIT_ABORTED
    folder = project / "Ext" / "job2"
    assert _exit_files(folder) == {"RELION_JOB_EXIT_ABORTED"} and not (folder / ABORT_FILE).exists()
    assert not (folder / NODES_FILE).exists()
    assert "aborted" in capsys.readouterr().out


def test_sigterm_ends_the_job_aborted(project):
    def run(args, job):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("not reached")

    previous = signal.getsignal(signal.SIGTERM)
    assert run_program(["--o", "Ext/job3"], _parser(), run) == EXIT_ABORTED
    assert _exit_files(project / "Ext" / "job3") == {"RELION_JOB_EXIT_ABORTED"}
    assert signal.getsignal(signal.SIGTERM) is previous


def test_an_unwritable_job_folder_is_reported(project, capsys):
    (project / "Ext").write_text("a file where the folder should be")
    assert run_program(["--o", "Ext/job4"], _parser(), lambda args, job: []) == EXIT_USAGE
    err = capsys.readouterr().err
    assert "cannot create output folder Ext/job4" in err and "cannot write Ext/job4/RELION_JOB_EXIT_FAILURE" in err


def test_help_prints_the_parameters_and_writes_nothing(project, capsys):
    assert run_program(["--help"], _parser(), lambda args, job: []) == 0
    assert "--size" in capsys.readouterr().out and list(project.iterdir()) == []


@pytest.mark.parametrize("text, value", [("Yes", True), ("no", False), ("TRUE", True), ("0", False), (" on ", True)])
def test_yes_no_reads_relion_answers(text, value):
    assert yes_no(text) is value


@pytest.mark.parametrize("text, device", [(None, "auto"), ("", "auto"), ("cpu", "cpu"), ("0", "cuda:0"),
                                          ("1,2", "cuda:1"), ("2:3", "cuda:2"), ("cuda:1", "cuda:1")])
def test_gpu_fields_become_devices(text, device):
    assert device_from_gpu(text) == device


def test_a_bad_gpu_field_is_refused():
    with pytest.raises(ConfigError, match="gpu 'first' is not a GPU id"):
        device_from_gpu("first")


@pytest.mark.parametrize("text, devices", [(None, ["auto"]), ("cpu", ["cpu"]), ("0", ["cuda:0"]),
                                           ("0,1", ["cuda:0", "cuda:1"]), ("2:3", ["cuda:2", "cuda:3"]),
                                           (" 1, 0 ", ["cuda:1", "cuda:0"]), ("cuda:1", ["cuda:1"])])
def test_every_gpu_id_becomes_a_device(text, devices):
    assert gpu_devices(text) == devices


def test_several_gpus_for_a_one_gpu_job_say_which_is_used(capsys):
    assert device_from_gpu("1,2") == "cuda:1"
    assert "this job uses one GPU, cuda:1" in capsys.readouterr().out


def test_the_abort_watch_interrupts_a_waiting_block_with_an_abort(project):
    job = Job(project)
    waited = []
    with pytest.raises(JobAborted, match=ABORT_FILE):
        with job.abort_watch(interval=0.02):
            (project / ABORT_FILE).touch()
            for _ in range(1000):  # waits as a process pool's parent does, until interrupted
                time.sleep(0.01)
            waited.append("to the end")
    assert not waited  # interrupted in the block, not merely checked after it
    (project / ABORT_FILE).unlink()
    with job.abort_watch(interval=0.02):  # no abort: the block ends as it would without the watch
        time.sleep(0.1)
    assert all(t.name != "abort watch" for t in threading.enumerate())


def test_a_keyboard_interrupt_under_the_abort_watch_stays_one(project):
    with pytest.raises(KeyboardInterrupt):
        with Job(project).abort_watch(interval=0.02):
            raise KeyboardInterrupt
