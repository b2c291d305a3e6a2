import math

import pytest
import torch
from torch import nn

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
        criterion = MultiBoxLoss(21, 0.5, True, 0, True, 3, 0.5, False, select_rows=select)
        c = conf.clone().requires_grad_()
        loss_l, loss_c = criterion((loc, c, priors), targets)
        loss_c.backward()
        results.append((loss_l, loss_c, c.grad))
    assert torch.allclose(results[0][0], results[1][0])
    assert torch.allclose(results[0][1], results[1][1], rtol=1e-5)
    assert torch.allclose(results[0][2], results[1][2], atol=1e-7)


CLASSIC = (21, 0.5, True, 0, True, 3, 0.5, False)


@pytest.mark.parametrize("use_gpu", [True, False])
def test_classic_positional_call_works_whatever_use_gpu(use_gpu):
    loc, conf, targets = _tiny_case()
    criterion = MultiBoxLoss(2, 0.5, True, 0, True, 3, 0.5, False, use_gpu)
    loss_l, loss_c = criterion((loc, conf, PRIORS), targets)
    assert loss_l.item() == pytest.approx(1.625)
    assert loss_c.item() == pytest.approx(math.log(2) + math.log1p(math.exp(-1)) + math.log1p(math.e), rel=1e-6)
    assert criterion.select_rows is None and criterion.variance == (0.1, 0.2)


@pytest.mark.parametrize(
    ("position", "value", "words"),
    [
        (0, 1, "num_classes"),
        (1, 0.0, "overlap_thresh"),
        (1, 1.5, "overlap_thresh"),
        (2, False, "prior_for_matching=False is not implemented"),
        (3, 1, "bkg_label=1"),
        (4, False, "neg_mining=False is not implemented"),
        (5, -1, "neg_pos"),
        (5, 2.5, "neg_pos"),
        (6, 0.3, "neg_overlap=0.3 is not implemented"),
        (7, True, "encode_target=True is not implemented"),
    ],
)
def test_unimplemented_settings_are_rejected(position, value, words):
    args = list(CLASSIC)
    args[position] = value
    with pytest.raises(ValueError, match=words):
        MultiBoxLoss(*args)


@pytest.mark.parametrize("kwargs", [{"select_rows": "yes"}, {"variance": (0.1,)}, {"variance": (0.1, 0.0)}])
def test_bad_keywords_are_rejected(kwargs):
    with pytest.raises(ValueError):
        MultiBoxLoss(*CLASSIC, **kwargs)


def test_select_rows_is_fixed_at_construction():
    criterion = MultiBoxLoss(*CLASSIC, select_rows=False)
    assert criterion.select_rows is False
    with pytest.raises(AttributeError):
        criterion.select_rows = True
    assert "select_rows=False" in repr(criterion)


def test_conf_with_another_class_count_is_rejected():
    loc, conf, targets = _tiny_case()
    with pytest.raises(ValueError, match="2 classes per prior, the loss was built for 21"):
        MultiBoxLoss(*CLASSIC)((loc, conf, PRIORS), targets)


@pytest.mark.parametrize("select_rows", [True, False])
def test_sums_are_the_loss_before_dividing_by_the_positives(select_rows):
    priors = PriorBox(voc).forward()
    torch.manual_seed(2)
    loc = torch.randn(2, priors.shape[0], 4)
    conf = torch.randn(2, priors.shape[0], 21)
    targets = [torch.tensor([[0.1, 0.1, 0.5, 0.6, 4.0]]), torch.tensor([[0.3, 0.2, 0.9, 0.8, 7.0]])]
    criterion = MultiBoxLoss(*CLASSIC, select_rows=select_rows)
    loss_l, loss_c, num_pos = criterion.sums((loc, conf, priors), targets)
    assert num_pos.dtype == torch.float32 and num_pos.shape == ()
    assert num_pos.item() > 2  # more than the two forced best priors
    mean_l, mean_c = criterion((loc, conf, priors), targets)
    torch.testing.assert_close(mean_l, loss_l / num_pos)
    torch.testing.assert_close(mean_c, loss_c / num_pos)
    empty = criterion.sums((loc, conf, priors), [torch.zeros(0, 5), torch.zeros(0, 5)])
    assert [t.item() for t in empty] == [0.0, 0.0, 0.0]


def _split_case():
    """Four pictures (1, 3, 1 and 0 boxes), 4 classes, and a linear head shared by all priors and pictures.

    Returns:
        priors (Tensor[P, 4]), features (Tensor[4, P, 8]), targets (4 tensors [n_i, 5]), head (nn.Linear 8 -> 4 + 4).
    """
    priors = PriorBox(voc).forward()
    gen = torch.Generator().manual_seed(5)
    features = torch.randn(4, priors.shape[0], 8, generator=gen)
    targets = [
        torch.tensor([[0.1, 0.1, 0.5, 0.6, 0.0]]),
        torch.tensor([[0.2, 0.2, 0.9, 0.8, 1.0], [0.0, 0.5, 0.3, 1.0, 2.0], [0.6, 0.05, 0.95, 0.4, 0.0]]),
        torch.tensor([[0.3, 0.3, 0.7, 0.7, 2.0]]),
        torch.zeros(0, 5),
    ]
    torch.manual_seed(5)
    return priors, features, targets, nn.Linear(8, 8)


def _head_grad(head: nn.Module, loss: torch.Tensor) -> torch.Tensor:
    head.zero_grad(set_to_none=True)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in head.parameters()])


@pytest.mark.parametrize("select_rows", [True, False])
def test_ranks_normalised_by_the_global_positives_give_the_one_process_gradient(select_rows):
    priors, features, targets, head = _split_case()
    criterion = MultiBoxLoss(4, 0.5, True, 0, True, 3, 0.5, False, select_rows=select_rows)

    def predictions(rows: slice):
        out = head(features[rows])
        return out[..., :4], out[..., 4:], priors

    whole_l, whole_c = criterion(predictions(slice(None)), targets)
    whole = _head_grad(head, whole_l + whole_c)

    halves = [criterion.sums(predictions(rows), targets[rows]) for rows in (slice(0, 2), slice(2, 4))]
    # What the all-reduce of [loss_l, loss_c, num_pos] gives every rank.
    global_pos = sum(n for _, _, n in halves).detach()
    world = len(halves)
    rank_grads = [_head_grad(head, (sum_l + sum_c) * world / global_pos.clamp(min=1)) for sum_l, sum_c, _ in halves]
    averaged = sum(rank_grads) / world  # what gradient averaging across the ranks gives
    scale = whole.abs().max().item()
    assert scale > 0
    assert (averaged - whole).abs().max().item() <= 1e-5 * scale

    # Each rank dividing by its own positives is a different gradient: the halves hold different counts.
    half_pos = [n.item() for _, _, n in halves]
    assert half_pos[0] != half_pos[1]
    halves = [criterion.sums(predictions(rows), targets[rows]) for rows in (slice(0, 2), slice(2, 4))]
    local = sum(_head_grad(head, (sum_l + sum_c) / n.clamp(min=1)) for sum_l, sum_c, n in halves) / world
    assert (local - whole).abs().max().item() > 1e-2 * scale
