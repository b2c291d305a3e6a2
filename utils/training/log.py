"""The training loss history: ``train_log.csv`` (one row per iteration) and the ``loss.png`` plot.

Rows are written with ``repr`` of the floats, so the file holds the exact values a run produced (the resume test
compares them bit for bit). A resumed run first drops the rows past its starting iteration, so the file always
describes one consistent history; that rewrite replaces the file atomically, so an interrupted one loses nothing.
"""

from __future__ import annotations

import csv
import io
import os
from typing import TextIO

from utils.training.state import atomic_write_text

COLUMNS: tuple[str, ...] = ("iter", "loss_l", "loss_c", "loss", "lr", "img_per_s")


class TrainLog:
    """Appends ``iter,loss_l,loss_c,loss,lr,img_per_s`` rows to ``path``.

    Args:
        path: the CSV file; created with a header when missing.
        start_iter: rows with ``iter > start_iter`` left by an earlier run are dropped (a resume from an older
            checkpoint rewrites that part of the history).
    """

    def __init__(self, path: str, start_iter: int = 0) -> None:
        self.path = path
        kept = _read_rows(path, keep_upto=start_iter) if start_iter > 0 else []
        start = io.StringIO(newline="")
        writer = csv.writer(start)
        writer.writerow(COLUMNS)
        writer.writerows(kept)
        # the kept rows replace the file in one step: a kill or a full disk now leaves the old history whole
        atomic_write_text(path, start.getvalue())
        self._file: TextIO = open(path, "a", newline="")  # noqa: SIM115 - closed in close()
        self._writer = csv.writer(self._file)

    def write(self, iteration: int, loss_l: float, loss_c: float, lr: float, img_per_s: float) -> None:
        """Append one row; ``loss`` is ``loss_l + loss_c``."""
        self._writer.writerow(
            [
                iteration,
                repr(float(loss_l)),
                repr(float(loss_c)),
                repr(float(loss_l) + float(loss_c)),
                repr(lr),
                f"{img_per_s:.2f}",
            ]
        )
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _read_rows(path: str, keep_upto: int) -> list[list[str]]:
    """Data rows of an existing log with ``iter <= keep_upto`` (none when the file is missing or foreign)."""
    if not os.path.isfile(path):
        return []
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    if not rows or tuple(rows[0]) != COLUMNS:
        return []
    return [row for row in rows[1:] if len(row) == len(COLUMNS) and int(row[0]) <= keep_upto]


def read_log(path: str) -> dict[str, list[float]]:
    """The columns of a ``train_log.csv`` as lists of floats (``iter`` included)."""
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        columns: dict[str, list[float]] = {name: [] for name in COLUMNS}
        for row in reader:
            for name in COLUMNS:
                columns[name].append(float(row[name]))
    return columns


def read_eval_log(path: str) -> tuple[list[int], list[float], str]:
    """Iterations, values and metric name of an ``eval_log.csv`` (``iter,metric,value,seconds``); empty when
    the file is missing."""
    if not os.path.isfile(path):
        return [], [], ""
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("value") not in (None, "", "nan")]
    return [int(r["iter"]) for r in rows], [float(r["value"]) for r in rows], (rows[0]["metric"] if rows else "")


def plot_loss(csv_path: str, png_path: str, eval_path: str | None = None) -> None:
    """Plot loc, conf and total loss against the iteration from ``csv_path`` into ``png_path``; with an
    ``eval_path`` (``eval_log.csv``) holding results, the validation metric on a second axis.

    matplotlib is imported here, with the Agg backend, so training never needs a display.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    log = read_log(csv_path)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for name, label in (("loss_l", "loc (Smooth L1)"), ("loss_c", "conf (cross-entropy)"), ("loss", "total")):
        ax.plot(log["iter"], log[name], label=label, linewidth=1)
    ax.set_xlabel("iteration")
    ax.set_ylabel("loss")
    ax.set_title("SSD training loss")
    ax.grid(True, alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    iters, values, metric = read_eval_log(eval_path) if eval_path else ([], [], "")
    if iters:
        right = ax.twinx()
        (line,) = right.plot(iters, values, "o-", color="black", linewidth=1.5, label=f"validation {metric}")
        right.set_ylabel(f"validation {metric}")
        right.set_ylim(0.0, max(1e-3, max(values) * 1.1))
        handles, labels = handles + [line], labels + [line.get_label()]
    ax.legend(handles, labels, loc="upper right")
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)
