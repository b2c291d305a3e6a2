"""WarmupMultiStepLR: classic step semantics, linear warm-up, weights_only state, weights-only resume."""

from __future__ import annotations

import io

import pytest
import torch

from utils.training.schedule import WarmupMultiStepLR


def _optimizer(lr: float = 1e-3) -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr, momentum=0.9)


def _rates(scheduler: WarmupMultiStepLR, steps: int) -> list[float]:
    rates = []
    for _ in range(steps):
        rates.append(scheduler.optimizer.param_groups[0]["lr"])
        scheduler.optimizer.step()
        scheduler.step()
    return rates


def test_steps_apply_at_the_milestone_index_like_the_classic_script() -> None:
    rates = _rates(WarmupMultiStepLR(_optimizer(), [2, 4], gamma=0.1), 6)
    assert rates == pytest.approx([1e-3, 1e-3, 1e-4, 1e-4, 1e-5, 1e-5])


def test_linear_warmup_reaches_the_base_rate() -> None:
    rates = _rates(WarmupMultiStepLR(_optimizer(), [100], warmup_iters=4), 6)
    assert rates == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])


def test_state_dict_loads_with_weights_only_and_continues() -> None:
    first = WarmupMultiStepLR(_optimizer(), [3], warmup_iters=2)
    _rates(first, 2)
    buffer = io.BytesIO()
    torch.save({"opt": first.optimizer.state_dict(), "sched": first.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    second = WarmupMultiStepLR(_optimizer(), [3], warmup_iters=2)
    second.optimizer.load_state_dict(state["opt"])
    second.load_state_dict(state["sched"])
    assert _rates(second, 3) == _rates(first, 3)


def test_jump_to_sets_the_rate_of_a_later_iteration() -> None:
    scheduler = WarmupMultiStepLR(_optimizer(), [3, 5])
    scheduler.jump_to(4)
    assert scheduler.optimizer.param_groups[0]["lr"] == pytest.approx(1e-4)
    assert _rates(scheduler, 2) == pytest.approx([1e-4, 1e-5])
