"""The lr schedules: classic step semantics, linear warm-up, cosine to zero, weights_only state, weights-only resume."""

from __future__ import annotations

import io

import pytest
import torch

from utils.training.schedule import WarmupCosineLR, WarmupMultiStepLR, build_schedule


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


def test_cosine_warms_up_then_falls_to_zero_at_max_iter() -> None:
    rates = _rates(WarmupCosineLR(_optimizer(0.05), max_iters=6, warmup_iters=2), 7)
    # warm-up 0.025, 0.05; then 0.05 * (1 + cos(pi * k / 4)) / 2 for k = 0..3; past the end 0
    expected = [0.025, 0.05, 0.05, 0.05 * (1 + 2**-0.5) / 2, 0.025, 0.05 * (1 - 2**-0.5) / 2, 0.0]
    assert rates == pytest.approx(expected)


def test_cosine_state_dict_resumes_and_build_schedule_names_both() -> None:
    first = build_schedule(_optimizer(0.05), "cosine", warmup=1, max_iter=5)
    assert isinstance(first, WarmupCosineLR)
    _rates(first, 2)
    buffer = io.BytesIO()
    torch.save({"opt": first.optimizer.state_dict(), "sched": first.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    second = build_schedule(_optimizer(0.05), "cosine", warmup=1, max_iter=5)
    second.optimizer.load_state_dict(state["opt"])
    second.load_state_dict(state["sched"])
    assert _rates(second, 3) == _rates(first, 3)
    steps = build_schedule(_optimizer(), "multistep", warmup=0, lr_steps=[1], gamma=0.5)
    assert isinstance(steps, WarmupMultiStepLR) and _rates(steps, 2) == pytest.approx([1e-3, 5e-4])
    with pytest.raises(ValueError, match="unknown schedule 'poly'"):
        build_schedule(_optimizer(), "poly", warmup=0)
