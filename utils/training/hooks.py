"""What runs after a training step besides the step itself: live plots and validation with the best checkpoint."""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from utils.training.engine import Session, StepResult, say
from utils.training.runtime import worker_count
from utils.training.state import EVAL_LOG, atomic_write_text
from utils.training.tensorboard_log import TensorBoardHook
from utils.training.validation import Validator
from utils.training.visdom_plot import VisdomLossPlot

EVAL_COLUMNS = ("iter", "metric", "value", "seconds")


class VisdomHook:
    """Posts each step's losses (and each validation result) to a visdom server, rank 0 only."""

    def __init__(self, s: Session) -> None:
        self.plot = VisdomLossPlot(s.args.visdom_server, s.args.visdom_port)

    def __call__(self, s: Session, result: StepResult) -> None:
        if result.finite:
            self.plot.update(s.iteration, result.loss_l, result.loss_c)

    def validated(self, s: Session, score: Any) -> None:
        self.plot.metric(s.iteration, score.metric, score.value)

    def close(self) -> None:
        self.plot.close()


class ValidationHook:
    """Every ``--eval_every`` iterations and at the last one: the validation metric on all ranks (sharded), a row
    of ``eval_log.csv``, and ``..._best.pth`` (with its sidecar) rewritten atomically when the metric improves.

    The best value and iteration live in ``s.extra["best"]``, which ``_last.ckpt`` records, so a resumed run
    keeps its best. On rank 0 each of ``listeners`` (the visdom and TensorBoard hooks) gets every result:
    ``validated(s, score)`` with a ``utils.training.validation.ValidationResult``.
    """

    def __init__(self, s: Session, dataset: Any, listeners: Sequence[Any] = ()) -> None:
        args = s.args
        metric = "coco" if args.dataset == "COCO" else "voc07"
        self.validator = Validator(
            dataset, list(s.facts.class_names), args.size, metric, args.eval_images, batch_size=8,
            num_workers=min(2, worker_count(args.num_workers)), rt=s.rt,
        )  # fmt: skip
        self.every = args.eval_every
        self.path = os.path.join(args.save_folder, EVAL_LOG)
        self.listeners = list(listeners)  # each told of every validation: validated(s, score)
        if s.rt.is_main:
            keep_eval_rows(self.path, s.iteration)

    def __call__(self, s: Session, step: StepResult) -> None:
        if s.iteration % self.every and s.iteration != s.args.max_iter:
            return
        score = self.validator.evaluate(s.net)
        if not s.rt.is_main:
            return
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([s.iteration, score.metric, repr(score.value), f"{score.seconds:.2f}"])
        best = s.extra.get("best")
        improved = math.isfinite(score.value) and (best is None or score.value > best["value"])
        if improved:
            s.extra["best"] = {"iteration": s.iteration, "metric": score.metric, "value": score.value}
            s.save_weights(f"{s.prefix()}_best.pth")
        note = " (best so far)" if improved else f" (best {best['value']:.4f} at {best['iteration']})" if best else ""
        say(s.rt, f"validation at iteration {s.iteration}: {score.metric} {score.value:.4f}{note}")
        for listener in self.listeners:
            listener.validated(s, score)

    def close(self) -> None:
        return None


def keep_eval_rows(path: str, upto: int) -> None:
    """Start ``eval_log.csv`` (header), or drop the rows past iteration ``upto`` that a resumed run redoes; the
    kept rows replace the file atomically, so a kill or a full disk at that moment leaves the old log whole."""
    rows = []
    if upto > 0 and os.path.isfile(path):
        with open(path, newline="") as f:
            rows = [r for r in list(csv.reader(f))[1:] if len(r) == len(EVAL_COLUMNS) and int(r[0]) <= upto]
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(EVAL_COLUMNS)
    writer.writerows(rows)
    atomic_write_text(path, text.getvalue())


def build(s: Session, open_eval_dataset: Callable[[str], Any]) -> list[Any]:
    """The hooks this run's flags ask for; ``open_eval_dataset(sets)`` opens the validation split."""
    hooks: list[Any] = []
    if s.args.visdom and s.rt.is_main:
        hooks.append(VisdomHook(s))
    started = time.perf_counter()
    eval_dataset = open_eval_dataset(s.args.eval_sets) if s.args.eval_every > 0 else None
    if s.args.tensorboard and s.rt.is_main:
        hooks.append(TensorBoardHook(s, eval_dataset))
    if eval_dataset is not None:
        hooks.append(ValidationHook(s, eval_dataset, [h for h in hooks if hasattr(h, "validated")]))
        say(s.rt, f"validation on {s.args.eval_sets} every {s.args.eval_every} iterations "
                  f"(set up in {time.perf_counter() - started:.1f} s)")  # fmt: skip
    return hooks


def close(hooks: list[Any]) -> None:
    for hook in hooks:
        hook.close()
