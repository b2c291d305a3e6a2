"""Atomic checkpoint writes and RNG states that load with weights_only=True."""

from __future__ import annotations

import errno
import os
import random
import subprocess
import sys
import tempfile
import textwrap

import numpy as np
import pytest
import torch

from benchmarks.repo import REPO_ROOT
from utils.training.state import atomic_save, atomic_write_bytes, capture_rng_state, restore_rng_state


def test_atomic_save_replaces_the_file(tmp_path) -> None:
    path = str(tmp_path / "a.ckpt")
    atomic_save({"iteration": 1}, path)
    atomic_save({"iteration": 2}, path)
    assert torch.load(path, weights_only=True) == {"iteration": 2}
    assert os.listdir(tmp_path) == ["a.ckpt"]
    mask = os.umask(0o022)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask


def test_a_failed_save_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch) -> None:
    path = str(tmp_path / "a.ckpt")
    atomic_save({"iteration": 1, "w": torch.arange(10)}, path)

    def half_write(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 truncated")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", half_write)
    with pytest.raises(OSError, match="disk full"):
        atomic_save({"iteration": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True)["iteration"] == 1
    assert os.listdir(tmp_path) == ["a.ckpt"]


def test_a_full_disk_or_an_unwritable_folder_names_the_file_being_written(tmp_path, monkeypatch) -> None:
    """The error names the file the caller asked for, not the hidden temporary file, and the old file stays."""
    path = str(tmp_path / "ssd300_VOC_10.pth")
    atomic_save({"iteration": 1}, path)

    def full_disk(obj, f, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    def permission_denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".ssd300_VOC_10.pth.1.x.tmp"))

    for target, fault, reason in ((torch, full_disk, "No space left on device"),
                                  (tempfile, permission_denied, "Permission denied")):  # fmt: skip
        monkeypatch.setattr(target, "save" if target is torch else "mkstemp", fault)
        with pytest.raises(OSError) as info:
            atomic_save({"iteration": 2}, path)
        monkeypatch.undo()
        assert str(info.value) == f"[Errno {info.value.errno}] {reason}: {path!r}"
        assert torch.load(path, weights_only=True) == {"iteration": 1}
        assert os.listdir(tmp_path) == ["ssd300_VOC_10.pth"]
    with pytest.raises(FileNotFoundError, match="no_such_folder"):  # a missing folder is named as it is
        atomic_write_bytes(str(tmp_path / "no_such_folder" / "m.onnx"), b"onnx")
    atomic_write_bytes(str(tmp_path / "m.onnx"), b"\x08\x07")
    assert (tmp_path / "m.onnx").read_bytes() == b"\x08\x07"


def test_a_process_killed_mid_write_leaves_the_previous_checkpoint_intact(tmp_path) -> None:
    """SIGKILL-like death (os._exit) half-way through torch.save: the latest file is still the old, whole one."""
    path = str(tmp_path / "ssd300_VOC_last.ckpt")
    script = textwrap.dedent(f"""
        import os, torch
        from utils.training.state import atomic_save
        atomic_save({{"iteration": 1, "w": torch.ones(1000)}}, {path!r})
        real_save = torch.save
        def dying_save(obj, f, *a, **k):
            real_save(obj, f, *a, **k)
            f.flush()
            f.truncate(f.tell() // 2)
            os._exit(9)
        torch.save = dying_save
        atomic_save({{"iteration": 2, "w": torch.zeros(1000)}}, {path!r})
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    state = torch.load(path, weights_only=True)
    assert state["iteration"] == 1 and torch.equal(state["w"], torch.ones(1000))
    leftovers = [name for name in os.listdir(tmp_path) if name != "ssd300_VOC_last.ckpt"]
    assert len(leftovers) == 1 and leftovers[0].startswith(".") and leftovers[0].endswith(".tmp")
    # the next save of that checkpoint removes what the dead writer left; a live writer's file stays
    live = tmp_path / f".ssd300_VOC_last.ckpt.{os.getpid()}.abc.tmp"
    live.write_bytes(b"partial")
    other = tmp_path / ".other.ckpt.1.abc.tmp"
    other.write_bytes(b"partial")
    atomic_save({"iteration": 3}, path)
    assert sorted(os.listdir(tmp_path)) == sorted([live.name, other.name, "ssd300_VOC_last.ckpt"])


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path) -> None:
    random.seed(1)
    np.random.seed(2)  # noqa: NPY002 - the global RNG is what is being saved
    torch.manual_seed(3)
    path = str(tmp_path / "rng.ckpt")
    atomic_save({"rng": capture_rng_state()}, path)
    expected = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    random.seed(7)
    np.random.seed(7)  # noqa: NPY002
    torch.manual_seed(7)
    restore_rng_state(torch.load(path, weights_only=True)["rng"])
    got = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert got[0] == expected[0] and got[1] == expected[1] and torch.equal(got[2], expected[2])
