"""Headless Scipion for the plugin's tests, in a temporary folder of its own.

pyworkflow reads its configuration from the environment when it is first imported, so the
variables are set here, before any test module imports it: Scipion's home, user data,
projects and test output all go to one temporary folder (removed at exit), never into the
repository or the user's home; protocols run with this interpreter; and the plugin uses its
defaults (this interpreter's engine), whatever the developer's environment says.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

_ROOT = Path(tempfile.mkdtemp(prefix="bilayer-scipion-tests-"))
atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)

_SCIPION_ENVIRONMENT = {
    "SCIPION_HOME": str(_ROOT / "home"),
    "SCIPION_USER_DATA": str(_ROOT / "user-data"),
    "SCIPION_TESTS": str(_ROOT / "test-data"),
    "SCIPION_TESTS_OUTPUT": str(_ROOT / "test-output"),
    "SCIPION_DOMAIN": "pwem",  # the EM domain: objects, protocols and viewers of pwem's plugins
    "SCIPION_PYTHON": sys.executable,  # protocols run in a subprocess of this interpreter
    "SCIPION_TEST_NOSYNC": "1",  # never download test data sets
    "SCIPION_NOTIFY": "False",  # no usage statistics sent home
    "SCIPION_USE_QUEUE": "False",
    "SCIPION_LOG_LEVEL": "INFO",
    "SCIPION_HOSTS": str(_ROOT / "home" / "config" / "hosts.conf"),
    # The engine processes the protocols start run on one CPU thread: on a 2-core CI machine
    # OpenMP's spinning threads make two-thread torch about 30x slower on these small tensors.
    "OMP_NUM_THREADS": "1",
}
for _name, _value in _SCIPION_ENVIRONMENT.items():
    os.environ[_name] = _value
for _name in ("BILAYER_COMMAND", "BILAYER_MODEL", "SCIPION_CONFIG", "SCIPION_LOCAL_CONFIG", "SCIPION_PROTOCOLS",
              "SCIPION_TEST_CONTINUE"):
    os.environ.pop(_name, None)
for _folder in ("home/config", "user-data", "test-data", "test-output"):
    (_ROOT / _folder).mkdir(parents=True, exist_ok=True)
# One local host, no queue: Scipion refuses to create a project without a hosts file.
(_ROOT / "home" / "config" / "hosts.conf").write_text(
    "[localhost]\nPARALLEL_COMMAND = mpirun -np %_(JOB_NODES)d %_(COMMAND)s\n")
