"""A private single-node SLURM cluster for the tests: munged, slurmctld and slurmd started as the current user.

Why: the SLURM back end (issue 21) must be tested against real ``sbatch``/``squeue``/``scancel`` and real
job arrays, not a mocked ``sbatch`` (as submitit's own tests do). Debian's ``slurm-wlm`` and ``munge`` are
enough for a one-node cluster whose every file lives in temporary folders, so nothing in ``/etc`` or
``/var`` is read or written and a machine's own SLURM (if any) is not touched.

Two folders, because munged refuses a socket whose folder, or any folder above it, is not searchable by
all users (pytest's ``/tmp/pytest-of-<user>`` is 0700): ``tmp_dir`` (the caller's, kept after the run:
``slurm.conf``, ``logs/``, state and spool) and a short world-searchable ``/tmp/bilayer-slurm-*`` for
the munge socket and key, removed by :meth:`SlurmCluster.stop`.

Client commands need nothing but ``SLURM_CONF=<conf>`` in their environment (:attr:`SlurmCluster.env`):
slurm.conf's ``AuthInfo=socket=...`` tells them and the daemons where munged listens. The daemons run
in the foreground as children of this process with a parent-death signal, so they end with it even
when it is killed; :meth:`SlurmCluster.stop` cancels the jobs, stops the daemons by pid and ends every
leftover process of the cluster (job steps and job processes, found by their environment).
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["PARTITION", "ClusterUnavailable", "SlurmCluster", "start_cluster"]

#: The one partition: CPU only, default, no time limit.
PARTITION = "cpu"
#: Programs the cluster needs (Debian packages ``slurm-wlm`` and ``munge``).
PROGRAMS = ("munged", "mungekey", "slurmd", "slurmctld", "sbatch", "squeue", "scancel", "sinfo", "scontrol")
#: Set to the cluster's slurm.conf in the daemons' environment only (slurmstepd inherits it), to find leftovers.
MARKER = "BILAYER_TEST_SLURM_CLUSTER"
#: Command names of the daemons (a cluster with none of them alive is gone).
_DAEMON_NAMES = ("munged", "slurmctld", "slurmd")
#: Hardware fields of ``slurmd -C`` copied into the node line (slurmd drains a node that claims more).
_NODE_FIELDS = ("CPUs", "Boards", "SocketsPerBoard", "CoresPerSocket", "ThreadsPerCore", "RealMemory")
_PR_SET_PDEATHSIG = 1
_RUN_DIR_PREFIX = "bilayer-slurm-"


class ClusterUnavailable(RuntimeError):
    """The daemons cannot run here (programs missing, no permission, a sandbox without what they need).

    The message is one line naming the daemon and its own last log line, for ``pytest.skip``.
    """


@dataclass
class _Daemon:
    name: str
    process: subprocess.Popen
    log: Path


@dataclass
class SlurmCluster:
    """A running single-node cluster; use :func:`start_cluster` to make one and :meth:`stop` to end it.

    Attributes:
        conf: the cluster's slurm.conf.
        log_dir: the daemons' logs (``munged.log``, ``slurmctld.log``, ``slurmd.log`` and their stdout).
        env: an environment for client commands and anything that calls them (submitit): this
            process's environment with ``SLURM_CONF`` set and any inherited ``SLURM_*`` job variables removed.
        node: the node's name (this host's short name, as ``slurmd -C`` gives it).
        partition: the partition's name, ``"cpu"``.
    """

    conf: Path
    log_dir: Path
    env: dict[str, str]
    node: str
    run_dir: Path
    partition: str = PARTITION
    _daemons: list[_Daemon] = field(default_factory=list)
    _stopped: bool = False

    def run(self, *args: str, check: bool = True, timeout: float = 30.0) -> subprocess.CompletedProcess:
        """Runs a client command (``sbatch``, ``squeue``, ...) against this cluster and returns its result."""
        result = subprocess.run(list(args), check=False, env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed ({result.returncode}): {result.stderr.strip()}")
        return result

    def sbatch(self, *args: str) -> str:
        """Submits a batch job (``sbatch --parsable ARGS``) to the partition; returns its job id."""
        out = self.run("sbatch", "--parsable", f"--partition={self.partition}", *args).stdout
        return out.strip().split(";")[0]

    def squeue(self, *, all_states: bool = False) -> list[tuple[str, str]]:
        """The cluster's jobs as ``(job_id, state)``, one line per array task (``"12_3"``), e.g. "RUNNING".

        Only pending and running jobs, unless ``all_states``: then finished ones too (kept for MinJobAge).
        """
        args = ["squeue", "--noheader", "--array", "--format=%i %T"] + (["--states=all"] if all_states else [])
        lines = self.run(*args).stdout.splitlines()
        return [(job_id, state) for job_id, state in (line.split() for line in lines if line.strip())]

    def states(self, job_id: str) -> dict[str, str]:
        """Every task of job ``job_id`` (finished ones included) mapped to its state."""
        return {jid: state for jid, state in self.squeue(all_states=True)
                if jid == job_id or jid.startswith(f"{job_id}_")}

    def wait_idle(self, timeout: float = 60.0) -> None:
        """Waits until no job is pending, running or completing.

        Raises:
            TimeoutError: jobs are still there after ``timeout`` seconds (named in the message).
        """
        deadline = time.monotonic() + timeout
        while jobs := self.squeue():
            if time.monotonic() > deadline:
                raise TimeoutError(f"SLURM jobs still there after {timeout:g} s: {jobs}")
            time.sleep(0.2)

    def job_pids(self, job_id: str) -> list[int]:
        """Live processes of job ``job_id`` on this cluster (a number, as ``SLURM_JOB_ID``; an array task's
        own id is squeue's ``%A``): the batch script and its children, found by their environment."""
        wanted = {b"SLURM_JOB_ID=" + job_id.encode(), f"SLURM_CONF={self.conf}".encode()}
        return [pid for pid, environ in _environments() if wanted <= set(environ)]

    def scancel(self, job_id: str) -> None:
        """Cancels a job, an array or one array task (``"12_3"``)."""
        self.run("scancel", job_id)

    def cancel_all(self, timeout: float = 15.0) -> None:
        """Cancels every job of the cluster and waits until they are gone.

        Raises:
            TimeoutError: jobs are still there after ``timeout`` seconds.
        """
        self.run("scancel", f"--user={pwd.getpwuid(os.getuid()).pw_name}")
        self.wait_idle(timeout)

    def stop(self) -> None:
        """Cancels every job, stops the daemons by pid, ends leftover job processes, removes the run folder.

        Safe to call twice; the logs stay in ``log_dir``.
        """
        if self._stopped:
            return
        self._stopped = True
        if len(self.running_daemons()) == len(self._daemons):
            try:
                self.cancel_all()
            except (TimeoutError, RuntimeError, subprocess.TimeoutExpired):
                pass
        for daemon in reversed(self._daemons):
            _terminate(daemon.process)
        _kill_and_wait([pid for pid, _ in _cluster_processes().get(str(self.conf), [])])
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def running_daemons(self) -> list[str]:
        """The names of the cluster's daemons still running, in start order."""
        return [daemon.name for daemon in self._daemons if daemon.process.poll() is None]

    def last_log_line(self, name: str) -> str:
        """The last non-empty line a daemon wrote (its log file, else its stdout/stderr), or ``"(no log)"``."""
        for path in (self.log_dir / f"{name}.log", self.log_dir / f"{name}.out"):
            lines = path.read_text(errors="replace").splitlines() if path.exists() else []
            lines = [line.strip() for line in lines if line.strip()]
            if lines:
                return lines[-1]
        return "(no log)"


def start_cluster(tmp_dir: Path, timeout: float = 30.0) -> SlurmCluster:
    """Configures and starts munged, slurmctld and slurmd; returns once the node is idle.

    Args:
        tmp_dir: an empty folder for slurm.conf, logs, state and spool (kept after :meth:`SlurmCluster.stop`).
        timeout: seconds to wait for each daemon and for the node to become idle.

    Raises:
        ClusterUnavailable: a program is missing or a daemon exited while starting (message for pytest.skip).
        RuntimeError: the daemons run but the node did not become idle (a broken configuration; not skipped).
    """
    missing = [name for name in PROGRAMS if _which(name) is None]
    if missing:
        raise ClusterUnavailable(f"SLURM test cluster: {', '.join(missing)} not installed "
                                 "(Debian: apt-get install slurm-wlm munge)")
    _end_orphans()
    tmp_dir = Path(tmp_dir).resolve()
    log_dir = tmp_dir / "logs"
    for sub in ("logs", "state", "spool"):
        (tmp_dir / sub).mkdir(parents=True, exist_ok=True)
    run_dir = Path(tempfile.mkdtemp(prefix=_RUN_DIR_PREFIX, dir=_run_dir_base()))
    run_dir.chmod(0o755)
    node, hardware = _node_hardware()
    conf = tmp_dir / "slurm.conf"
    (tmp_dir / "plugstack.conf").write_text("")
    conf.write_text(_slurm_conf(tmp_dir, run_dir, node, hardware))
    env = _client_env(conf)
    cluster = SlurmCluster(conf=conf, log_dir=log_dir, env=env, node=node, run_dir=run_dir)
    try:
        _start_munge(cluster, timeout)
        _spawn(cluster, "slurmctld", [_which("slurmctld"), "-D", "-f", str(conf)])
        _spawn(cluster, "slurmd", [_which("slurmd"), "-D", "-f", str(conf), "-N", node])
        _wait_node_idle(cluster, timeout)
    except BaseException:
        cluster.stop()
        raise
    return cluster


def _which(name: str) -> str | None:
    """Finds a program on PATH or in the sbin folders (not on a plain user's PATH on Debian)."""
    return shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/local/sbin")


def _node_hardware() -> tuple[str, dict[str, str]]:
    """This host's node name and hardware fields, as ``slurmd -C`` reports them."""
    result = subprocess.run([_which("slurmd"), "-C"], check=False, capture_output=True, text=True, timeout=30)
    fields = dict(item.split("=", 1) for item in result.stdout.split() if "=" in item)
    if result.returncode != 0 or "NodeName" not in fields or "CPUs" not in fields:
        last = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
        raise ClusterUnavailable(f"SLURM test cluster: slurmd -C failed: {last[0]}")
    return fields["NodeName"], {key: fields[key] for key in _NODE_FIELDS if key in fields}


def _free_ports(count: int) -> list[int]:
    """Ports free on this host now (the daemons bind them a moment later; a clash fails loudly)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _slurm_conf(tmp_dir: Path, run_dir: Path, node: str, hardware: dict[str, str]) -> str:
    """The cluster's slurm.conf: one node, one CPU partition, no cgroups, no accounting, short timeouts."""
    user = pwd.getpwuid(os.getuid()).pw_name
    ctld_port, slurmd_port = _free_ports(2)
    logs = tmp_dir / "logs"
    node_line = " ".join(f"{key}={value}" for key, value in hardware.items())
    return f"""\
# Written by tests/slurm_cluster.py for one test session; every path is private to it.
ClusterName=bilayertest
SlurmctldHost={node}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser={user}
SlurmdUser={user}
AuthType=auth/munge
AuthInfo=socket={run_dir / "munge.socket"}
CredType=cred/munge
StateSaveLocation={tmp_dir / "state"}
SlurmdSpoolDir={tmp_dir / "spool"}
SlurmctldPidFile={run_dir / "slurmctld.pid"}
SlurmdPidFile={run_dir / "slurmd.pid"}
SlurmctldLogFile={logs / "slurmctld.log"}
SlurmdLogFile={logs / "slurmd.log"}
SlurmctldDebug=info
SlurmdDebug=info
PlugStackConfig={tmp_dir / "plugstack.conf"}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0
MpiDefault=none
ReturnToService=2
SlurmctldTimeout=20
SlurmdTimeout=20
InactiveLimit=0
KillWait=2
MinJobAge=300
MailProg=/bin/true
NodeName={node} NodeAddr=127.0.0.1 {node_line} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def _client_env(conf: Path) -> dict[str, str]:
    """This process's environment for the cluster: SLURM_CONF set, inherited SLURM_* job variables dropped."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("SLURM_")}
    env["SLURM_CONF"] = str(conf)
    return env


def _parent_death_signal() -> Callable[[], None] | None:
    """A function for Popen's preexec_fn that asks Linux to SIGTERM the child when this process ends, however
    it ends (SIGKILL included); None where prctl is not available. libc is loaded here, in the parent."""
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    return lambda: prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _spawn(cluster: SlurmCluster, name: str, argv: list[str | None]) -> None:
    """Starts a daemon in the foreground, stdout and stderr to ``logs/<name>.out``."""
    env = dict(cluster.env, **{MARKER: str(cluster.conf)})
    with open(cluster.log_dir / f"{name}.out", "wb") as out:
        # preexec_fn only calls prctl (no locks, no allocation), which is safe even with threads running.
        process = subprocess.Popen([str(arg) for arg in argv], stdin=subprocess.DEVNULL, stdout=out,
                                   stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                   preexec_fn=_parent_death_signal())  # noqa: PLW1509
    cluster._daemons.append(_Daemon(name, process, cluster.log_dir / f"{name}.log"))


def _check_alive(cluster: SlurmCluster) -> None:
    for daemon in cluster._daemons:
        status = daemon.process.poll()
        if status is not None:
            raise ClusterUnavailable(f"SLURM test cluster: {daemon.name} exited with status {status}: "
                                     f"{cluster.last_log_line(daemon.name)}")


def _start_munge(cluster: SlurmCluster, timeout: float) -> None:
    """Makes a key and starts munged on the run folder's socket; waits until it answers."""
    key = cluster.run_dir / "munge.key"
    made = subprocess.run([_which("mungekey"), "--create", f"--keyfile={key}"], check=False,
                          capture_output=True, text=True)
    if made.returncode != 0:
        raise ClusterUnavailable(f"SLURM test cluster: mungekey failed: {made.stderr.strip()}")
    sock = cluster.run_dir / "munge.socket"
    _spawn(cluster, "munged", [_which("munged"), "--foreground", f"--socket={sock}", f"--key-file={key}",
                               f"--log-file={cluster.log_dir / 'munged.log'}",
                               f"--pid-file={cluster.run_dir / 'munged.pid'}",
                               f"--seed-file={cluster.run_dir / 'munged.seed'}"])
    deadline = time.monotonic() + timeout
    while not sock.exists():
        _check_alive(cluster)
        if time.monotonic() > deadline:
            raise ClusterUnavailable(f"SLURM test cluster: munged made no socket in {timeout:g} s: "
                                     f"{cluster.last_log_line('munged')}")
        time.sleep(0.05)


def _wait_node_idle(cluster: SlurmCluster, timeout: float) -> None:
    """Waits until sinfo says the node is idle; a daemon that exits meanwhile means the cluster cannot run."""
    deadline = time.monotonic() + timeout
    state = ""
    while state != "idle":
        _check_alive(cluster)
        if time.monotonic() > deadline:
            reason = cluster.run("sinfo", "--noheader", "--Node", "--format=%T %E", check=False).stdout.strip()
            raise RuntimeError(f"SLURM test cluster: node {cluster.node} not idle after {timeout:g} s "
                               f"(sinfo: {reason or 'no answer'}); slurmd: {cluster.last_log_line('slurmd')}; "
                               f"slurmctld: {cluster.last_log_line('slurmctld')}")
        time.sleep(0.2)
        result = cluster.run("sinfo", "--noheader", "--format=%T", check=False, timeout=10)
        state = result.stdout.strip() if result.returncode == 0 else ""


def _terminate(process: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; reaps the process."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _environments() -> list[tuple[int, list[bytes]]]:
    """Every readable process but this one, with its environment's ``NAME=value`` items (zombies have none)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                found.append((int(entry.name), (entry / "environ").read_bytes().split(b"\0")))
            except OSError:
                continue
    return found


def _cluster_processes() -> dict[str, list[tuple[int, str]]]:
    """Live processes of test clusters as ``{slurm.conf path: [(pid, command name)]}``, never this process.

    A daemon or slurmstepd carries ``MARKER=<conf>`` (set when the daemon started); a job process carries
    the cluster's ``SLURM_CONF`` and a ``SLURM_JOB_ID``. Job processes count only for confs some marked
    process names, so jobs of a real cluster this session may run inside are never included.
    """
    marked: dict[str, list[tuple[int, str]]] = {}
    in_jobs: dict[str, list[tuple[int, str]]] = {}
    for pid, items in _environments():
        environ = dict(item.split(b"=", 1) for item in items if b"=" in item)
        try:
            name = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        if MARKER.encode() in environ:
            marked.setdefault(environ[MARKER.encode()].decode(), []).append((pid, name))
        elif b"SLURM_JOB_ID" in environ and b"SLURM_CONF" in environ:
            in_jobs.setdefault(environ[b"SLURM_CONF"].decode(), []).append((pid, name))
    return {conf: found + in_jobs.get(conf, []) for conf, found in marked.items()}


def _end_orphans() -> None:
    """Ends job steps and jobs of earlier test clusters whose daemons are gone (their session was killed
    with SIGKILL: the daemons die with it, slurmstepd and the jobs do not), and removes their run folders
    (no munge socket, older than a minute, so a cluster starting at this moment keeps its own)."""
    for processes in _cluster_processes().values():
        if not any(name in _DAEMON_NAMES for _, name in processes):
            _kill_and_wait([pid for pid, _ in processes])
    for run_dir in _run_dir_base().glob(f"{_RUN_DIR_PREFIX}*"):
        if not (run_dir / "munge.socket").exists() and time.time() - run_dir.stat().st_mtime > 60:
            shutil.rmtree(run_dir, ignore_errors=True)


def _run_dir_base() -> Path:
    """Where run folders go: /tmp (short socket paths, searchable by all), else the system's temporary folder."""
    return Path("/tmp") if Path("/tmp").is_dir() else Path(tempfile.gettempdir())


def _kill_and_wait(pids: list[int], timeout: float = 10.0) -> None:
    """SIGKILLs the processes and waits until each is gone or a zombie (SIGKILL is delivered asynchronously)."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)


def _alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
