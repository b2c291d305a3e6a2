import math

import pytest
import torch

from data.config import voc
from layers import MultiBoxLoss, PriorBox
from layers.modules.multibox_loss import hard_negative_mask

PRIORS = torch.tensor([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])


def _criterion(neg_pos=3):
    return MultiBoxLoss(2, 0.5, True, 0, True, neg_pos, 0.5, False)


def _tiny_case():
    # One truth equal to prior 0 (label 0 -> class 1). Prior 1 has IoU 0 and prior 2 IoU 0.25: background.
    targets = [torch.tensor([[0.0, 0.0, 0.5, 0.5, 0.0]])]
    loc = torch.zeros(1, 3, 4)
    loc[0, 0] = torch.tensor([0.5, 0.0, 0.0, 2.0])
    conf = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]]])
    return loc, conf, targets


def test_loss_by_hand():
    loc, conf, targets = _tiny_case()
    loss_l, loss_c = _criterion()((loc, conf, PRIORS), targets)
    # Smooth L1 of (0.5, 0, 0, 2) against zero targets: 0.5 * 0.5**2 + (2 - 0.5) = 1.625.
    assert loss_l.item() == pytest.approx(1.625)
    # positive: log 2; negatives (min(3*1, P-1) = 2 of them): log(1 + e^-1) and log(1 + e).
    expected = math.log(2) + math.log1p(math.exp(-1)) + math.log1p(math.e)
    assert loss_c.item() == pytest.approx(expected, rel=1e-6)


def test_mining_keeps_only_the_hardest_negatives():
    loc, conf, targets = _tiny_case()
    _, loss_c = _criterion(neg_pos=1)((loc, conf, PRIORS), targets)
    assert loss_c.item() == pytest.approx(math.log(2) + math.log1p(math.e), rel=1e-6)


def test_image_without_boxes_adds_nothing():
    loc, conf, targets = _tiny_case()
    alone = _criterion()((loc, conf, PRIORS), targets)
    loc2 = torch.cat((loc, torch.randn(1, 3, 4)))
    conf2 = torch.cat((conf, torch.randn(1, 3, 2) * 5))
    both = _criterion()((loc2, conf2, PRIORS), [targets[0], torch.zeros(0, 5)])
    assert both[0].item() == pytest.approx(alone[0].item())
    assert both[1].item() == pytest.approx(alone[1].item())


def test_batch_without_any_box_is_finite_zero():
    loc = torch.randn(2, 3, 4, requires_grad=True)
    conf = torch.randn(2, 3, 2, requires_grad=True)
    loss_l, loss_c = _criterion()((loc, conf, PRIORS), [torch.zeros(0, 5), torch.zeros(0, 5)])
    assert loss_l.item() == 0.0 and loss_c.item() == 0.0
    (loss_l + loss_c).backward()
    assert torch.isfinite(loc.grad).all() and torch.isfinite(conf.grad).all()


def test_degenerate_box_gives_finite_loss():
    priors = PriorBox(voc).forward()
    targets = [torch.tensor([[0.5, 0.5, 0.5, 0.7, 3.0], [0.1, 0.1, 0.4, 0.4, 1.0]])]
    loc = torch.randn(1, priors.shape[0], 4)
    conf = torch.randn(1, priors.shape[0], 21)
    loss_l, loss_c = MultiBoxLoss(21, 0.5, True, 0, True, 3, 0.5, False)((loc, conf, priors), targets)
    assert math.isfinite(loss_l.item()) and math.isfinite(loss_c.item())


def test_negatives_are_three_times_positives_per_image_capped():
    torch.manual_seed(0)
    loss = torch.rand(3, 10)
    pos = torch.zeros(3, 10, dtype=torch.bool)
    pos[0, :1] = True  # 1 positive -> 3 negatives
    pos[1, :2] = True  # 2 positives -> 6 negatives
    pos[2, :5] = True  # 5 positives -> 15, capped at P - 1 = 9 (only 5 non-positive priors exist)
    neg = hard_negative_mask(loss, pos, pos.sum(1) * 3)
    assert (neg & pos).sum() <= 4  # only possible where the cap exceeds the background priors
    assert (neg & ~pos).sum(1).tolist() == [3, 6, 5]
    # the chosen negatives are the highest-loss non-positive priors
    for i in range(2):
        bg_loss = loss[i][~pos[i]]
        chosen = loss[i][neg[i] & ~pos[i]]
        assert torch.equal(chosen.sort().values, bg_loss.topk(chosen.numel()).values.sort().values)


def test_real_model_sized_case_mines_per_image_and_backpropagates():
    priors = PriorBox(voc).forward()
    torch.manual_seed(0)
    loc = torch.randn(2, priors.shape[0], 4, requires_grad=True)
    conf = torch.randn(2, priors.shape[0], 21, requires_grad=True)
    targets = [
        torch.tensor([[0.1, 0.1, 0.5, 0.6, 4.0]]),
        torch.tensor([[0.2, 0.2, 0.9, 0.8, 7.0], [0.0, 0.5, 0.3, 1.0, 0.0]]),
    ]
    loss_l, loss_c = MultiBoxLoss(21, 0.5, True, 0, True, 3, 0.5, False)((loc, conf, priors), targets)
    (loss_l + loss_c).backward()
    assert loc.grad.abs().sum() > 0 and conf.grad.abs().sum() > 0
    # conf gradient is non-zero on exactly positives + 3x positives negatives, per image
    touched = (conf.grad.abs().sum(2) > 0).sum(1)
    loc_touched = (loc.grad.abs().sum(2) > 0).sum(1)
    assert (touched == 4 * loc_touched).all()
    assert (loc_touched > 0).all()


def test_topk_mining_equals_full_sort_mining():
    torch.manual_seed(3)
    loss = torch.rand(4, 50)
    pos = torch.rand(4, 50) < 0.1
    pos[3] = False  # an image without positives
    num_neg = pos.sum(1) * 3
    assert torch.equal(hard_negative_mask(loss, pos, num_neg), hard_negative_mask(loss, pos, num_neg, exact_k=True))


def test_row_selection_and_masking_give_the_same_loss_and_gradients():
    priors = PriorBox(voc).forward()
    torch.manual_seed(1)
    loc = torch.randn(3, priors.shape[0], 4)
    conf = torch.randn(3, priors.shape[0], 21)
    targets = [torch.tensor([[0.1, 0.1, 0.5, 0.6, 4.0]]), torch.zeros(0, 5), torch.tensor([[0.3, 0.2, 0.9, 0.8, 7.0]])]
    results = []
    for select in (True, False):
        criterion = MultiBoxLoss(21, 0.5, True, 0, True, 3, 0.5, False)
        criterion.select_rows = select
        c = conf.clone().requires_grad_()
        loss_l, loss_c = criterion((loc, c, priors), targets)
        loss_c.backward()
        results.append((loss_l, loss_c, c.grad))
    assert torch.allclose(results[0][0], results[1][0])
    assert torch.allclose(results[0][1], results[1][1], rtol=1e-5)
    assert torch.allclose(results[0][2], results[1][2], atol=1e-7)
