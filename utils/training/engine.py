"""The training loop: one SGD step, the run from the current iteration to the last, checkpoints on the way.

A step makes one collective and one host read: the summed losses, the number of positives, a non-finite flag
and the stop flag travel together in one tensor (all-reduced under DDP) before the backward pass, so every rank
takes the same decisions and the loss is normalised by the positives of the whole global batch.
"""

from __future__ import annotations

import os
import signal
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from utils.checkpoint import write_sidecar
from utils.cli import AMP_DTYPES, EXIT_SIGINT, EXIT_SIGTERM
from utils.training.finetune import FINETUNED_FROM
from utils.training.log import TrainLog
from utils.training.runtime import Runtime, StopRequest
from utils.training.schedule import WarmupSchedule
from utils.training.state import atomic_save, capture_rng_state

try:
    from tqdm import tqdm
except ImportError:  # a bare image without tqdm: the --log_every lines only
    tqdm = None

EXIT_CODES = {signal.SIGINT: EXIT_SIGINT, signal.SIGTERM: EXIT_SIGTERM}
SIDECAR_EXTRA = (FINETUNED_FROM,)  # entries of Session.extra that the weights' sidecars record too


class TrainError(Exception):
    """A problem the user can fix (missing file, bad flag); train.py prints it as one line and exits 2."""


class Stopped(Exception):
    """Training stopped on a signal after saving; ``code`` is the exit status (130 SIGINT, 143 SIGTERM)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


@dataclass
class Session:
    """Everything the loop updates and a checkpoint records.

    ``facts`` (a ``utils.checkpoint.ModelFacts``) describes the model for the weights' sidecar; ``extra`` holds
    further state that must survive a resume (the best validation result, ...).
    """

    args: Any  # argparse.Namespace
    rt: Runtime
    net: nn.Module  # the bare SSD (not the DDP wrapper)
    model: nn.Module  # what the loop calls: the SSD or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: WarmupSchedule
    scaler: torch.amp.GradScaler
    facts: Any
    iteration: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def prefix(self) -> str:
        """``SAVE_FOLDER/ssd300_VOC``: where this run's files go, named by :func:`weights_stem`."""
        return os.path.join(self.args.save_folder, weights_stem(self.facts))

    def checkpoint(self) -> dict[str, Any]:
        """The full training state as plain containers, numbers, strings and tensors (``weights_only`` loads it)."""
        return {
            "model": cpu_state(self.net),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "rng": capture_rng_state(cuda=self.rt.device.type == "cuda"),
            "args": dict(vars(self.args)),
            "model_facts": self.facts.to_dict(),
            "world_size": self.rt.world_size,
            "extra": dict(self.extra),
        }

    def save_weights(self, path: str) -> None:
        """The model's state_dict (classic format) to ``path`` and its sidecar, with the weights' digest, beside it,
        atomically (rank 0)."""
        if self.rt.is_main:
            state = cpu_state(self.net)
            atomic_save(state, path)
            write_sidecar(path, self.facts, state, extra={k: self.extra[k] for k in SIDECAR_EXTRA if k in self.extra})

    def save(self) -> None:
        """Write ``..._{iteration}.pth`` and ``..._last.ckpt`` for the current iteration (rank 0 only)."""
        if self.rt.is_main:
            self.save_weights(f"{self.prefix()}_{self.iteration}.pth")
            atomic_save(self.checkpoint(), f"{self.prefix()}_last.ckpt")


def weights_stem(facts: Any) -> str:
    """The stem of a training run's file names for the model ``facts`` (a ``ModelFacts``) describe: ``ssd300_VOC``,
    ``ssd512_COCO``, ``ssdlite320_VOC`` (``{stem}_{iteration}.pth``, ``{stem}_last.ckpt``, ``{stem}_best.pth``)."""
    model = "ssdlite" if facts.architecture == "mobilenet_v3_large" else "ssd"
    return f"{model}{facts.size}_{facts.dataset}"


def cpu_state(net: nn.Module) -> dict[str, Tensor]:
    """The state_dict on the CPU in the default memory format (the classic, device-free file format)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}


@dataclass
class StepResult:
    loss_l: float  # over the global batch: summed over ranks, divided by the global positives
    loss_c: float
    finite: bool
    stop: bool  # a stop was requested on some rank
    lr: float = 0.0  # the learning rate of the step and the pictures per second of the global batch, data loading
    img_per_s: float = 0.0  # included (run_loop sets both; what train_log.csv records)


def train_step(
    s: Session, criterion: nn.Module, images: Tensor, targets: list[Tensor], stop: StopRequest | None = None
) -> StepResult:
    """One SGD step on ``images [B, 3, size, size]`` and ``targets`` (B tensors ``[n_i, 5]``) of this rank.

    N ranks with B/N pictures each compute the gradients of one process with all B: the loss is the sum over
    this rank's positives times N divided by the positives of the global batch (DDP averages the gradients).
    A signal that reached ``stop`` before the statistics are shared stops every rank after this step.
    """
    args, rt = s.args, s.rt
    amp_dtype = AMP_DTYPES[args.amp]
    with torch.autocast(rt.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loc, conf, priors = s.model(images)
    loss_l, loss_c, num_pos = criterion.sums((loc.float(), conf.float(), priors.float()), targets)
    sums = torch.stack([loss_l.detach(), loss_c.detach()]).float()
    nonfinite = (~torch.isfinite(sums).all()).float().reshape(1)
    stop_flag = torch.full((1,), float(stop is not None and stop.signum is not None), device=sums.device)
    stats = torch.cat([sums, num_pos.detach().float().reshape(1), nonfinite, stop_flag])
    if rt.distributed:
        dist.all_reduce(stats)
    l_sum, c_sum, total_pos, nonfinite_v, stop_v = stats.tolist()  # the step's one host read
    scale = 1.0 / max(total_pos, 1.0)
    s.optimizer.zero_grad(set_to_none=True)
    if nonfinite_v == 0:
        s.scaler.scale((loss_l + loss_c) * (rt.world_size * scale)).backward()
        if args.clip_grad > 0:
            s.scaler.unscale_(s.optimizer)
            nn.utils.clip_grad_norm_(s.net.parameters(), args.clip_grad)
        s.scaler.step(s.optimizer)
        s.scaler.update()
    # The rate is a closed form of the iteration: move it on whether or not the optimizer stepped (a skipped
    # step, or fp16 overflow), without the scheduler's "step() before optimizer.step()" warning.
    s.scheduler.jump_to(s.scheduler.last_epoch + 1)
    return StepResult(l_sum * scale, c_sum * scale, nonfinite_v == 0, stop_v > 0)


def to_device(images: Tensor, targets: list[Tensor], device: torch.device) -> tuple[Tensor, list[Tensor]]:
    """The batch on ``device``: images channels_last on CUDA, all targets in one host-to-device copy."""
    images = images.to(device, non_blocking=True)
    if device.type == "cuda":
        images = images.contiguous(memory_format=torch.channels_last)
    counts = [len(t) for t in targets]
    flat = torch.cat([t.reshape(-1, 5) for t in targets]).to(device, non_blocking=True)
    return images, list(flat.split(counts))


Hook = Callable[["Session", "StepResult"], None]


def run_loop(
    s: Session,
    batches: Iterator[Any],
    criterion: nn.Module,
    stop: StopRequest,
    log: TrainLog | None,
    after_step: list[Hook],
    max_nonfinite: int,
) -> None:
    """Train from ``s.iteration`` to ``--max_iter``; ``after_step`` hooks run after each step (plots,
    validation); raises :class:`Stopped` after saving when a signal asked to stop."""
    args, rt = s.args, s.rt
    bar = progress_bar(args.max_iter, s.iteration, rt.is_main and sys.stderr.isatty())
    nonfinite_run = 0
    try:
        while s.iteration < args.max_iter:
            tick = time.perf_counter()
            images, targets = to_device(*next_batch(batches), rt.device)
            lr = s.optimizer.param_groups[0]["lr"]
            result = train_step(s, criterion, images, targets, stop)
            s.iteration += 1
            img_per_s = args.batch_size / max(time.perf_counter() - tick, 1e-9)
            result.lr, result.img_per_s = lr, img_per_s
            nonfinite_run = check_finite(result, nonfinite_run, s.iteration, max_nonfinite)
            if log is not None and result.finite:
                log.write(s.iteration, result.loss_l, result.loss_c, lr, img_per_s)
            report(bar, s, result, lr, img_per_s)
            if result.stop:
                s.save()
                signum = stop.signum or signal.SIGTERM
                saved = f"{s.prefix()}_{s.iteration}.pth and {s.prefix()}_last.ckpt"
                say(rt, f"stopped by {signal.Signals(signum).name} at iteration {s.iteration}; saved {saved} "
                    "(continue with --resume)")  # fmt: skip
                raise Stopped(EXIT_CODES.get(signum, 143))
            for hook in after_step:
                hook(s, result)
            if s.iteration % args.save_every == 0 or s.iteration == args.max_iter:
                s.save()
    finally:
        bar.close()


def next_batch(batches: Iterator[Any]) -> Any:
    """The next batch; a dataset that cannot give one (every sample bad) is a TrainError with its own message,
    also when a DataLoader worker raised it (its message then ends with the original error's line)."""
    try:
        return next(batches)
    except ValueError as err:
        lines = [line for line in str(err).strip().splitlines() if line.strip()]
        raise TrainError(lines[-1].split(": ", 1)[-1] if len(lines) > 1 else str(err)) from err


def check_finite(result: StepResult, run: int, iteration: int, limit: int) -> int:
    """Count non-finite losses in a row; warn for each, stop with a clear error after ``limit``."""
    if result.finite:
        return 0
    run += 1
    warnings.warn(
        f"iteration {iteration}: non-finite loss (loc {result.loss_l}, conf {result.loss_c}); "
        f"step skipped ({run} in a row)",
        RuntimeWarning,
        stacklevel=2,
    )
    if run >= limit:
        raise TrainError(
            f"the loss was not finite for {run} iterations in a row (up to iteration {iteration}): "
            "lower --lr, use --warmup or --clip_grad, or check the dataset's boxes"
        )
    return run


class _NoBar:
    """Stands in for the progress bar where there is no terminal or no tqdm."""

    def set_postfix(self, **values: Any) -> None:
        return None

    def update(self, n: int = 1) -> None:
        return None

    def close(self) -> None:
        return None


def progress_bar(total: int, initial: int, enabled: bool) -> Any:
    """A tqdm bar for terminals; logs and CI get the --log_every lines instead of carriage-return noise."""
    if tqdm is None or not enabled:
        return _NoBar()
    return tqdm(total=total, initial=initial, dynamic_ncols=True, mininterval=1.0, desc="train")


def report(bar: Any, s: Session, r: StepResult, lr: float, img_per_s: float) -> None:
    bar.set_postfix(
        loss_l=f"{r.loss_l:.3f}", loss_c=f"{r.loss_c:.3f}", lr=f"{lr:.1e}", img_s=f"{img_per_s:.1f}", refresh=False
    )
    bar.update(1)
    if s.rt.is_main and (s.iteration % s.args.log_every == 0 or s.iteration == s.args.max_iter):
        say(
            s.rt,
            f"iter {s.iteration:>7d}/{s.args.max_iter} | loss {r.loss_l + r.loss_c:.4f} "
            f"(loc {r.loss_l:.4f}, conf {r.loss_c:.4f}) | lr {lr:.2e} | {img_per_s:.1f} img/s",
        )


def say(rt: Runtime, message: str) -> None:
    if rt.is_main:
        (tqdm.write if tqdm is not None else print)(message, file=sys.stdout)
        sys.stdout.flush()
