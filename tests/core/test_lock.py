"""bilayer.batch.lock: one holder at a time across processes, released when its holder is killed."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from bilayer.batch.lock import LOCK_FILE, folder_lock
from bilayer.errors import OutputError

_HOLD = "import sys, time; from bilayer.batch.lock import folder_lock\nwith folder_lock(sys.argv[1]):\n" \
        "    print('held', flush=True); time.sleep(60)\n"


def test_a_second_process_waits_and_a_killed_holder_frees_the_lock(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", _HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(OutputError, match=f"{LOCK_FILE} has been locked by another process for 0.2 s"):
            with folder_lock(tmp_path, timeout=0.2):
                pass
        holder.kill()
        holder.wait()
        started = time.monotonic()
        with folder_lock(tmp_path, timeout=5):
            pass
        assert time.monotonic() - started < 5
    finally:
        holder.kill()


def test_the_lock_is_reentrant_across_calls_not_within(tmp_path):
    with folder_lock(tmp_path):
        pass
    with folder_lock(tmp_path):  # released after the block
        pass
    assert (tmp_path / LOCK_FILE).is_file()
