"""MultiBoxLoss gives the classic ssd.pytorch loss (per-image loop, double-sort mining), values and gradients."""

from __future__ import annotations

import pytest
import torch

from benchmarks.classic import classic_multibox_loss
from data.config import voc
from layers import MultiBoxLoss, PriorBox


def _targets(batch: int, seed: int) -> list[torch.Tensor]:
    """B tensors ``[n_i, 5]``: 1..10 boxes of 5-80% side inside the image, labels 0..19 (the classic needs n_i >= 1)."""
    gen = torch.Generator().manual_seed(seed)
    targets = []
    for _ in range(batch):
        n = int(torch.randint(1, 11, (1,), generator=gen))
        wh = 0.05 + 0.75 * torch.rand(n, 2, generator=gen)
        top_left = (1.0 - wh) * torch.rand(n, 2, generator=gen)
        labels = torch.randint(0, 20, (n, 1), generator=gen).float()
        targets.append(torch.cat((top_left, top_left + wh, labels), 1))
    return targets


@pytest.mark.parametrize("select_rows", [True, False])
def test_loss_and_gradients_equal_the_classic(select_rows: bool) -> None:
    priors = PriorBox(voc).forward()
    targets = _targets(3, seed=1)
    gen = torch.Generator().manual_seed(1)
    loc = torch.randn(3, priors.shape[0], 4, generator=gen)
    conf = torch.randn(3, priors.shape[0], 21, generator=gen)
    ours = MultiBoxLoss(21, 0.5, True, 0, True, 3, 0.5, False, select_rows=select_rows)
    results = []
    for loss_fn in (classic_multibox_loss, ours):
        loc_g, conf_g = loc.clone().requires_grad_(), conf.clone().requires_grad_()
        loss_l, loss_c = loss_fn((loc_g, conf_g, priors), targets)
        (loss_l + loss_c).backward()
        results.append((loss_l.detach(), loss_c.detach(), loc_g.grad, conf_g.grad))
    assert results[0][0].item() > 0 and results[0][1].item() > 0
    for a, b in zip(*results):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
