"""train_log.csv keeps exact floats and one consistent history across resumes; loss.png is drawn."""

from __future__ import annotations

import csv
import errno
import os

import pytest

import utils.training.log as log_module
from utils.training.log import COLUMNS, TrainLog, plot_loss, read_eval_log, read_log


def test_rows_hold_exact_values(tmp_path) -> None:
    path = str(tmp_path / "train_log.csv")
    log = TrainLog(path)
    log.write(1, 0.1 + 0.2, 1 / 3, 1e-3, 12.345)
    log.close()
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    assert tuple(rows[0]) == COLUMNS == ("iter", "loss_l", "loss_c", "loss", "lr", "img_per_s")
    values = read_log(path)
    assert values["loss_l"] == [0.1 + 0.2] and values["loss_c"] == [1 / 3]
    assert values["loss"] == [0.1 + 0.2 + 1 / 3] and values["img_per_s"] == [12.35]


def test_a_resume_drops_rows_past_its_start_and_appends(tmp_path) -> None:
    path = str(tmp_path / "train_log.csv")
    log = TrainLog(path)
    for i in range(1, 6):
        log.write(i, float(i), 0.0, 1e-3, 1.0)
    log.close()
    log = TrainLog(path, start_iter=3)
    log.write(4, 40.0, 0.0, 1e-3, 1.0)
    log.close()
    values = read_log(path)
    assert values["iter"] == [1, 2, 3, 4] and values["loss_l"] == [1.0, 2.0, 3.0, 40.0]


def _full_disk_after_the_header(monkeypatch) -> None:
    """The disk fills up once the header of the rewritten log is out: the kept rows never reach it."""
    real_writer = csv.writer

    class FullDiskWriter:
        def __init__(self, f, *args, **kwargs) -> None:
            self.inner = real_writer(f, *args, **kwargs)

        def writerow(self, row):
            return self.inner.writerow(row)

        def writerows(self, rows):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(log_module.csv, "writer", FullDiskWriter)


def _full_disk_at_sync(monkeypatch) -> None:
    """The new file is written but the disk reports it full when it is synced (where ENOSPC often surfaces)."""

    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)


@pytest.mark.parametrize("fault", [_full_disk_after_the_header, _full_disk_at_sync])
def test_a_failed_rewrite_on_resume_keeps_the_old_log(tmp_path, monkeypatch, fault) -> None:
    path = str(tmp_path / "train_log.csv")
    log = TrainLog(path)
    for i in range(1, 6):
        log.write(i, float(i), 0.5, 1e-3, 1.0)
    log.close()
    before = (tmp_path / "train_log.csv").read_bytes()
    fault(monkeypatch)
    with pytest.raises(OSError, match="No space left on device"):
        TrainLog(path, start_iter=3)
    monkeypatch.undo()
    assert (tmp_path / "train_log.csv").read_bytes() == before  # the whole history, not a truncated file
    assert os.listdir(tmp_path) == ["train_log.csv"]  # no temporary file left behind
    log = TrainLog(path, start_iter=3)  # the next try succeeds and appends after the kept rows
    log.write(4, 40.0, 0.5, 1e-3, 1.0)
    log.close()
    assert read_log(path)["iter"] == [1, 2, 3, 4]
    assert (tmp_path / "train_log.csv").read_bytes().startswith(before[: before.index(b"\r\n4,")])


def test_a_fresh_run_starts_a_new_log(tmp_path) -> None:
    path = str(tmp_path / "train_log.csv")
    first = TrainLog(path)
    first.write(1, 1.0, 1.0, 1e-3, 1.0)
    first.close()
    log = TrainLog(path)
    log.close()
    assert read_log(path)["iter"] == []


def test_plot_loss_writes_a_png(tmp_path) -> None:
    path = str(tmp_path / "train_log.csv")
    log = TrainLog(path)
    for i in range(1, 4):
        log.write(i, 3.0 / i, 6.0 / i, 1e-3, 2.0)
    log.close()
    plot_loss(path, str(tmp_path / "loss.png"))
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_loss_draws_the_validation_metric_on_a_second_axis(tmp_path, monkeypatch) -> None:
    import matplotlib.figure

    path = str(tmp_path / "train_log.csv")
    log = TrainLog(path)
    for i in range(1, 5):
        log.write(i, 3.0 / i, 6.0 / i, 1e-3, 2.0)
    log.close()
    (tmp_path / "eval_log.csv").write_text("iter,metric,value,seconds\n2,voc07,0.125,1.0\n4,voc07,0.5,1.0\n")
    assert read_eval_log(str(tmp_path / "eval_log.csv")) == ([2, 4], [0.125, 0.5], "voc07")
    axes_seen = []
    real_savefig = matplotlib.figure.Figure.savefig
    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", lambda fig, *a, **k: axes_seen.append(fig.axes) or
                        real_savefig(fig, *a, **k))  # fmt: skip
    plot_loss(path, str(tmp_path / "loss.png"), str(tmp_path / "eval_log.csv"))
    (ax, right) = axes_seen[0]
    assert right.get_ylabel() == "validation voc07"
    assert list(right.lines[0].get_xdata()) == [2, 4] and list(right.lines[0].get_ydata()) == [0.125, 0.5]
    assert (tmp_path / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
