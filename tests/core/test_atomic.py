"""bilayer.io.atomic: outputs spare inputs, appear whole or not at all, and a group appears together."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from bilayer.errors import OutputError
from bilayer.io import open_volume_writer, read_volume, write_volume


def test_writing_never_overwrites_the_input(tmp_path, real_crops):
    path = real_crops["visfd"]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    volume = read_volume(path)
    with pytest.raises(OutputError, match="is an input"):
        write_volume(path, volume, overwrite=True)
    with pytest.raises(OutputError, match="is an input"):
        write_volume(path, volume.data * 2, voxel_size=10, overwrite=True, protect=[path])
    assert hashlib.sha256(path.read_bytes()).hexdigest() == digest


def test_existing_outputs_are_kept_unless_overwrite(tmp_path, rng):
    path = tmp_path / "out.mrc"
    write_volume(path, np.zeros((2, 3, 4), np.float32), voxel_size=5)
    with pytest.raises(OutputError, match="already exists"):
        write_volume(path, np.ones((2, 3, 4), np.float32), voxel_size=5)
    assert read_volume(path).data.max() == 0
    write_volume(path, np.ones((2, 3, 4), np.float32), voxel_size=5, overwrite=True)
    assert read_volume(path).data.min() == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mrc"]


def test_an_error_inside_a_streaming_write_leaves_no_file(tmp_path):
    path = tmp_path / "partial.mrc"
    with pytest.raises(RuntimeError):
        with open_volume_writer(path, (4, 8, 8), np.float32, 10.0) as writer:
            writer.write(0, np.ones((2, 8, 8), np.float32))
            raise RuntimeError("simulated crash")
    assert list(tmp_path.iterdir()) == []


def test_a_writer_killed_mid_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "killed.mrc"
    script = textwrap.dedent(
        f"""
        import sys, time
        import numpy as np
        from bilayer.io import open_volume_writer
        with open_volume_writer({str(target)!r}, (50, 256, 256), np.float32, 10.0) as w:
            for z in range(50):
                w.write(z, np.ones((1, 256, 256), np.float32))
                if z == 10:
                    print("writing", flush=True)
                    time.sleep(60)
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "writing"
        proc.kill()
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -9
    assert list(tmp_path.iterdir()) == []


def test_an_output_group_publishes_together_the_first_file_last(tmp_path, monkeypatch):
    import bilayer.io.atomic as atomic
    from bilayer.io import HEADER_BYTES, open_volume_writer, output_group

    order = []
    original = atomic._publish
    monkeypatch.setattr(atomic, "_publish", lambda fd, part, path, overwrite: (order.append(path.name),
                                                                               original(fd, part, path, overwrite)))
    mask = np.arange(2 * 3 * 4, dtype=np.int8).reshape(2, 3, 4)
    with output_group() as group:
        with open_volume_writer(tmp_path / "t_seg.mrc", mask.shape, np.int8, 10.0, group=group) as w:
            w.write(0, mask)
        assert list(tmp_path.iterdir()) == []  # finished, not yet named
        np.testing.assert_array_equal(group.memmap(tmp_path / "t_seg.mrc", np.int8, mask.shape, HEADER_BYTES), mask)
        write_volume(tmp_path / "t_scores.mrc", mask.astype(np.float32), voxel_size=10.0, group=group)
        assert list(tmp_path.iterdir()) == []
    assert order == ["t_scores.mrc", "t_seg.mrc"]
    np.testing.assert_array_equal(read_volume(tmp_path / "t_seg.mrc").data, mask)


def test_an_error_in_a_group_leaves_none_of_its_files(tmp_path):
    from bilayer.io import output_group

    with pytest.raises(RuntimeError):
        with output_group() as group:
            write_volume(tmp_path / "a.mrc", np.zeros((2, 2, 2), np.float32), voxel_size=1.0, group=group)
            write_volume(tmp_path / "b.mrc", np.zeros((2, 2, 2), np.float32), voxel_size=1.0, group=group)
            raise RuntimeError("killed during post-processing")
    assert list(tmp_path.iterdir()) == []


def test_a_group_that_cannot_name_a_file_removes_those_it_named(tmp_path):
    from bilayer.errors import OutputError
    from bilayer.io import output_group

    with pytest.raises(OutputError, match="appeared while it was being written"):
        with output_group() as group:
            write_volume(tmp_path / "first.mrc", np.zeros((2, 2, 2), np.float32), voxel_size=1.0, group=group)
            write_volume(tmp_path / "second.mrc", np.zeros((2, 2, 2), np.float32), voxel_size=1.0, group=group)
            (tmp_path / "first.mrc").write_bytes(b"someone else's")  # appears while the group is open
    assert sorted(p.name for p in tmp_path.iterdir()) == ["first.mrc"]  # theirs, untouched; second.mrc removed
    assert (tmp_path / "first.mrc").read_bytes() == b"someone else's"


def test_a_full_disk_while_writing_is_an_output_error_naming_the_file(tmp_path, monkeypatch):
    import errno
    import os

    import bilayer.io.mrc_writer as mrc_writer
    from bilayer.errors import OutputError

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(mrc_writer, "_pwrite_all", full)
    with pytest.raises(OutputError, match=r"cannot write .*v.mrc: No space left on device; free space"):
        write_volume(tmp_path / "v.mrc", np.zeros((2, 2, 2), np.float32), voxel_size=1.0)
    assert list(tmp_path.iterdir()) == []


def test_file_identity_follows_links_to_one_file_and_keeps_a_file_to_be_written_as_given(tmp_path):
    from bilayer.io import file_identity

    target = tmp_path / "t.mrc"
    target.write_bytes(b"x")
    (tmp_path / "link.mrc").symlink_to(target)
    (tmp_path / "sub").mkdir()
    assert file_identity(tmp_path / "link.mrc") == file_identity(tmp_path / "sub" / ".." / "t.mrc") == target
    assert file_identity(tmp_path / "new" / ".." / "n.mrc") == tmp_path / "new" / ".." / "n.mrc"
