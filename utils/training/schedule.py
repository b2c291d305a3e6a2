"""The SSD learning-rate schedules, closed forms of the iteration: an optional linear warm-up, then either steps of
``gamma`` at the config's ``lr_steps`` (the classic recipe) or a cosine decay to zero at ``max_iter`` (the light
model's recipe)."""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler

SCHEDULES = ("multistep", "cosine")


class WarmupSchedule(LRScheduler):
    """``lr(i) = base_lr * factor(i)``, ``factor`` a closed form of the 0-based step index ``i``, so the state dict
    holds only numbers (it loads with ``weights_only=True``) and a weights-only resume can jump to any step.

    Args:
        optimizer: the wrapped optimizer.
        warmup_iters: length of the linear warm-up from ``base_lr / warmup_iters`` to ``base_lr`` (0: none).
        last_epoch: the index of the last step taken (-1: none yet).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup_iters: int = 0, last_epoch: int = -1) -> None:
        self.warmup_iters = int(warmup_iters)
        super().__init__(optimizer, last_epoch)

    def warmup(self, iteration: int) -> float:
        """The warm-up's multiplier at step ``iteration`` (1 after it)."""
        if self.warmup_iters > 0 and iteration < self.warmup_iters:
            return (iteration + 1) / self.warmup_iters
        return 1.0

    def factor(self, iteration: int) -> float:
        """The multiplier of the base rate at step ``iteration``."""
        raise NotImplementedError

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]

    def jump_to(self, iteration: int) -> None:
        """Set the rates for step ``iteration`` as if every earlier step had been taken (weights-only resume)."""
        self.last_epoch = iteration
        lrs = [base * self.factor(iteration) for base in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs


class WarmupMultiStepLR(WarmupSchedule):
    """``lr(i) = base_lr * gamma ** #{s in milestones: s <= i} * min(1, (i + 1) / warmup_iters)``.

    ``i`` is the 0-based index of the optimisation step, which is what the classic script does: at iteration
    80000 of VOC the step already uses ``1e-4``.

    Args:
        optimizer: the wrapped optimizer.
        milestones: iteration indices where the rate is multiplied by ``gamma``.
        gamma: the decay factor.
        warmup_iters: length of the linear warm-up (0: none).
        last_epoch: the index of the last step taken (-1: none yet).
    """

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        milestones: Sequence[int],
        gamma: float = 0.1,
        warmup_iters: int = 0,
        last_epoch: int = -1,
    ) -> None:
        self.milestones = sorted(int(m) for m in milestones)
        self.gamma = float(gamma)
        super().__init__(optimizer, warmup_iters, last_epoch)

    def factor(self, iteration: int) -> float:
        return self.gamma ** bisect_right(self.milestones, iteration) * self.warmup(iteration)


class WarmupCosineLR(WarmupSchedule):
    """The linear warm-up, then ``lr(i) = base_lr * (1 + cos(pi * (i - warmup) / (max_iters - warmup))) / 2``: from
    the base rate after the warm-up down to zero at ``max_iters`` (torchvision's detection reference: LinearLR, then
    CosineAnnealingLR over the rest). Steps past ``max_iters`` keep rate zero.

    Args:
        optimizer: the wrapped optimizer.
        max_iters: the run's length in steps.
        warmup_iters: length of the linear warm-up (0: none).
        last_epoch: the index of the last step taken (-1: none yet).
    """

    def __init__(
        self, optimizer: torch.optim.Optimizer, max_iters: int, warmup_iters: int = 0, last_epoch: int = -1
    ) -> None:
        self.max_iters = int(max_iters)
        super().__init__(optimizer, warmup_iters, last_epoch)

    def factor(self, iteration: int) -> float:
        if self.warmup_iters > 0 and iteration < self.warmup_iters:
            return self.warmup(iteration)
        span = max(self.max_iters - self.warmup_iters, 1)
        progress = min(max(iteration - self.warmup_iters, 0), span) / span
        return 0.5 * (1.0 + math.cos(math.pi * progress))


def build_schedule(
    optimizer: torch.optim.Optimizer,
    schedule: str,
    warmup: int,
    lr_steps: Sequence[int] = (),
    gamma: float = 0.1,
    max_iter: int = 0,
    last_epoch: int = -1,
) -> WarmupSchedule:
    """The ``schedule`` ("multistep": ``lr_steps`` and ``gamma``; "cosine": to zero at ``max_iter``) after a linear
    ``warmup``; ValueError for another name."""
    if schedule == "multistep":
        return WarmupMultiStepLR(optimizer, lr_steps, gamma, warmup, last_epoch=last_epoch)
    if schedule == "cosine":
        return WarmupCosineLR(optimizer, max_iter, warmup, last_epoch=last_epoch)
    raise ValueError(f"unknown schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
