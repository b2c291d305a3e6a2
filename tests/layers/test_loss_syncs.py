"""The loss's mask path never makes the host wait for the device; the row path does, by design."""

from __future__ import annotations

import pytest
import torch

from data.config import voc
from layers import MultiBoxLoss, PriorBox
from tests.sync_counter import SyncCounter

CLASSIC = (21, 0.5, True, 0, True, 3, 0.5, False)


def _batch(targets: list[torch.Tensor]) -> tuple[tuple[torch.Tensor, torch.Tensor, torch.Tensor], list[torch.Tensor]]:
    """Model-sized predictions (Tensor[B, 8732, 4], Tensor[B, 8732, 21], priors) that require grad, and targets."""
    priors = PriorBox(voc).forward()
    gen = torch.Generator().manual_seed(0)
    loc = torch.randn(len(targets), priors.shape[0], 4, generator=gen).requires_grad_()
    conf = torch.randn(len(targets), priors.shape[0], 21, generator=gen).requires_grad_()
    return (loc, conf, priors), targets


BOXES = [
    torch.tensor([[0.1, 0.1, 0.5, 0.6, 4.0]]),
    torch.tensor([[0.2, 0.2, 0.9, 0.8, 7.0], [0.0, 0.5, 0.3, 1.0, 0.0]]),
]


@pytest.mark.parametrize("targets", [BOXES, [torch.zeros(0, 5), torch.zeros(0, 5)]], ids=["boxes", "empty"])
def test_mask_path_makes_no_sync_forward_or_backward(targets: list[torch.Tensor]) -> None:
    predictions, targets = _batch(targets)
    criterion = MultiBoxLoss(*CLASSIC, select_rows=False)
    with SyncCounter() as syncs:
        loss_l, loss_c, num_pos = criterion.sums(predictions, targets)
        scale = num_pos.clamp(min=1)
        (loss_l / scale + loss_c / scale).backward()
    assert syncs.total == 0, dict(syncs.calls)
    assert predictions[1].grad is not None


def test_row_path_syncs_and_is_the_cpu_default() -> None:
    predictions, targets = _batch(BOXES)
    counts = []
    for select_rows in (True, None):
        with SyncCounter() as syncs:
            MultiBoxLoss(*CLASSIC, select_rows=select_rows).sums(predictions, targets)
        counts.append(dict(syncs.calls))
    # positives' rows (nonzero), the largest negative count (a scalar read) and the chosen rows (nonzero)
    assert counts[0] == {"aten::nonzero": 2, "aten::_local_scalar_dense": 1}
    assert counts[1] == counts[0]


def test_counter_sees_each_kind_of_sync() -> None:
    x = torch.arange(6.0)
    mask = x > 2
    with SyncCounter() as syncs:
        x[mask]
        x[mask] = 0.0
        int(x.sum())
        torch.equal(x, x)
        x.nonzero()
        x.to("meta")
    assert dict(syncs.calls) == {
        "aten::index.Tensor[bool index]": 1,
        "aten::index_put_[bool index]": 1,
        "aten::_local_scalar_dense": 1,
        "aten::equal": 1,
        "aten::nonzero": 1,
        "aten::_to_copy[blocking copy]": 1,
    }


def test_counter_ignores_device_side_work() -> None:
    x = torch.arange(6.0)
    with SyncCounter() as syncs:
        x[torch.tensor([0, 2])]
        x.masked_fill(x > 2, 0.0)
        torch.where(x > 2, x, 0.0).sum()
        x.argsort().scatter(0, torch.tensor([1]), torch.tensor([5]))
        x.to("meta", non_blocking=True)
    assert syncs.total == 0, dict(syncs.calls)
