"""Fixtures of the SLURM tests: one private single-node cluster per test session (tests/slurm_cluster.py).

``slurm_cluster`` (session) starts munged, slurmctld and slurmd under a temporary folder and skips, with
the daemon's own last log line, only where they cannot start (and fails instead under
``BILAYER_REQUIRE_SLURM=1``, which CI sets). For the session it sets ``SLURM_CONF`` in
``os.environ`` (and drops inherited ``SLURM_*`` job variables) so that code calling ``sbatch`` itself,
such as submitit, reaches this cluster; the environment is restored and the cluster stopped (jobs
cancelled, daemons and leftover job processes ended) at the end of the session, even after failures.
``idle_slurm_cluster`` (per test) is the same cluster, checked empty before the test and emptied after it,
so one test's jobs never reach the next. Tests in this folder request either by name.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.slurm_cluster import ClusterUnavailable, SlurmCluster, start_cluster


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running single-node cluster (partition "cpu"); ``SLURM_CONF`` points at it for the session."""
    try:
        cluster = start_cluster(tmp_path_factory.mktemp("slurm_cluster"))
    except ClusterUnavailable as e:
        if os.environ.get("BILAYER_REQUIRE_SLURM") == "1":  # set by .ci/run, which installs SLURM: no silent skip
            pytest.fail(f"{e} (BILAYER_REQUIRE_SLURM=1)")
        pytest.skip(str(e))
    with pytest.MonkeyPatch.context() as patch:
        for key in [key for key in os.environ if key.startswith("SLURM_")]:
            patch.delenv(key)
        patch.setenv("SLURM_CONF", str(cluster.conf))
        try:
            yield cluster
        finally:
            cluster.stop()


@pytest.fixture
def idle_slurm_cluster(slurm_cluster: SlurmCluster):
    """The session's cluster with no job in it; whatever the test leaves is cancelled after it."""
    slurm_cluster.wait_idle(timeout=30)
    yield slurm_cluster
    slurm_cluster.cancel_all()
