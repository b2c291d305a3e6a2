"""utils/training/hooks.py: eval_log.csv kept whole when a resume rewrites it."""

from __future__ import annotations

import errno
import os

import pytest

from utils.training.hooks import keep_eval_rows


def test_a_resume_keeps_the_rows_up_to_its_iteration(tmp_path) -> None:
    path = tmp_path / "eval_log.csv"
    keep_eval_rows(str(path), 0)
    assert path.read_bytes() == b"iter,metric,value,seconds\r\n"
    with open(path, "a", newline="") as f:
        f.write("10,voc07,0.25,1.00\r\n20,voc07,0.5,1.00\r\n")
    keep_eval_rows(str(path), 15)
    assert path.read_bytes() == b"iter,metric,value,seconds\r\n10,voc07,0.25,1.00\r\n"


def test_a_failed_rewrite_keeps_the_old_log_and_leaves_no_temporary(tmp_path, monkeypatch) -> None:
    path = tmp_path / "eval_log.csv"
    before = b"iter,metric,value,seconds\r\n10,voc07,0.25,1.00\r\n20,voc07,0.5,1.00\r\n"
    path.write_bytes(before)

    def failing_replace(src, dst) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match=f"Input/output error: '{path}'"):
        keep_eval_rows(str(path), 15)
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ["eval_log.csv"]
