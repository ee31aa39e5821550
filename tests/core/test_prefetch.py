"""bilayer.batch.prefetch: the next tomogram is read in the background, within a limit, and stops when asked."""

from __future__ import annotations

import os

from bilayer.batch.prefetch import Prefetch


def test_a_file_is_read_whole(tmp_path):
    path = tmp_path / "t.mrc"
    path.write_bytes(os.urandom(3 * 1024**2 + 17))
    reading = Prefetch.start(path)
    assert reading.join(10)
    assert reading.read_bytes == path.stat().st_size


def test_the_limit_caps_what_is_read(tmp_path):
    path = tmp_path / "t.mrc"
    path.write_bytes(b"\0" * (2 * 1024**2))
    reading = Prefetch.start(path, limit=1000)
    assert reading.join(10)
    assert reading.read_bytes == 1000


def test_stop_ends_a_long_read_early(tmp_path):
    path = tmp_path / "big.mrc"
    with open(path, "wb") as f:  # sparse: 64 GiB that cost nothing on disk
        f.truncate(64 * 1024**3)
    reading = Prefetch.start(path, limit=64 * 1024**3)
    reading.stop(wait=10)
    assert reading.join(0.1)
    assert 0 < reading.read_bytes < 64 * 1024**3 or reading.read_bytes == 0


def test_a_missing_file_is_left_to_the_segmentation(tmp_path):
    reading = Prefetch.start(tmp_path / "gone.mrc")
    assert reading.join(5)
    assert reading.read_bytes == 0
