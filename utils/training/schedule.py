"""The SSD learning-rate schedule: optional linear warm-up, then steps of ``gamma`` at the config's ``lr_steps``."""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import LRScheduler


class WarmupMultiStepLR(LRScheduler):
    """``lr(i) = base_lr * gamma ** #{s in milestones: s <= i} * min(1, (i + 1) / warmup_iters)``.

    ``i`` is the 0-based index of the optimisation step, which is what the classic script does: at iteration
    80000 of VOC the step already uses ``1e-4``. The rate is a closed form of ``i``, so the state dict holds only
    numbers and loads with ``weights_only=True``.

    Args:
        optimizer: the wrapped optimizer.
        milestones: iteration indices where the rate is multiplied by ``gamma``.
        gamma: the decay factor.
        warmup_iters: length of the linear warm-up from ``base_lr / warmup_iters`` to ``base_lr`` (0: none).
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
        self.warmup_iters = int(warmup_iters)
        super().__init__(optimizer, last_epoch)

    def factor(self, iteration: int) -> float:
        """The multiplier of the base rate at step ``iteration``."""
        decay = self.gamma ** bisect_right(self.milestones, iteration)
        if self.warmup_iters > 0 and iteration < self.warmup_iters:
            decay *= (iteration + 1) / self.warmup_iters
        return decay

    def get_lr(self) -> list[float]:
        return [base * self.factor(self.last_epoch) for base in self.base_lrs]

    def jump_to(self, iteration: int) -> None:
        """Set the rates for step ``iteration`` as if every earlier step had been taken (weights-only resume)."""
        self.last_epoch = iteration
        lrs = [base * self.factor(iteration) for base in self.base_lrs]
        for group, lr in zip(self.optimizer.param_groups, lrs):
            group["lr"] = lr
        self._last_lr = lrs
