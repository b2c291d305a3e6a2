import math

import pytest
import torch
from torchvision.ops import nms as tv_nms

from layers.box_utils import (
    batched_jaccard,
    center_size,
    decode,
    encode,
    intersect,
    jaccard,
    log_sum_exp,
    match,
    match_batch,
    nms,
    point_form,
)

VAR = (0.1, 0.2)
# Three priors (cx, cy, w, h): top-left quarter, bottom-right quarter, whole image.
PRIORS = torch.tensor([[0.25, 0.25, 0.5, 0.5], [0.75, 0.75, 0.5, 0.5], [0.5, 0.5, 1.0, 1.0]])


def test_point_form_and_center_size_are_inverse():
    boxes = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    assert torch.allclose(point_form(boxes), torch.tensor([[0.4, 0.3, 0.6, 0.7]]))
    assert torch.allclose(center_size(point_form(boxes)), boxes)
    batched = torch.rand(2, 5, 4)
    assert torch.allclose(center_size(point_form(batched)), batched, atol=1e-6)


def test_intersect_and_jaccard_by_hand():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0], [5.0, 5.0, 6.0, 6.0]])
    assert intersect(a, b).tolist() == [[1.0, 1.0, 0.0]]
    iou = jaccard(a, b)
    assert iou.shape == (1, 3)
    assert torch.allclose(iou, torch.tensor([[1 / 7, 1 / 4, 0.0]]))
    assert torch.allclose(batched_jaccard(a[None], b)[0], iou)


def test_jaccard_half_precision_does_not_overflow():
    a = torch.tensor([[0.0, 0.0, 300.0, 300.0]], dtype=torch.float16)
    b = torch.tensor([[0.0, 0.0, 300.0, 150.0]], dtype=torch.float16)
    iou = jaccard(a, b)
    assert iou.dtype == torch.float32
    assert iou.item() == pytest.approx(0.5)


def test_encode_by_hand():
    matched = torch.tensor([[0.6, 0.6, 0.7, 0.7]])
    prior = PRIORS[1:2]
    # centre (0.65 - 0.75) / (0.1 * 0.5) = -2; size log(0.1 / 0.5) / 0.2
    expected = torch.tensor([[-2.0, -2.0, math.log(0.2) / 0.2, math.log(0.2) / 0.2]])
    assert torch.allclose(encode(matched, prior, VAR), expected, atol=1e-5)


def test_decode_inverts_encode():
    torch.manual_seed(0)
    priors = torch.cat((torch.rand(100, 2), torch.rand(100, 2) * 0.5 + 0.05), dim=1)
    centers = torch.rand(100, 2)
    sizes = torch.rand(100, 2) * 0.6 + 0.01
    truth = torch.cat((centers - sizes / 2, centers + sizes / 2), dim=1)
    assert (decode(encode(truth, priors, VAR), priors, VAR) - truth).abs().max() < 1e-5
    batched = truth[None].repeat(3, 1, 1)
    assert (decode(encode(batched, priors, VAR), priors, VAR) - batched).abs().max() < 1e-5


def test_decode_clamps_huge_size_offsets_and_encode_survives_degenerate_boxes():
    loc = torch.tensor([[0.0, 0.0, 1e4, 1e4]])
    assert torch.isfinite(decode(loc, PRIORS[:1], VAR)).all()
    degenerate = torch.tensor([[0.3, 0.3, 0.3, 0.5]])
    assert torch.isfinite(encode(degenerate, PRIORS[:1], VAR)).all()


def test_log_sum_exp():
    x = torch.tensor([[0.0, 0.0], [1000.0, 1000.0]])
    assert torch.allclose(log_sum_exp(x), torch.tensor([[math.log(2)], [1000 + math.log(2)]]))


def _run_match(truths, labels, priors=PRIORS, threshold=0.5):
    loc_t = torch.zeros(1, priors.shape[0], 4)
    conf_t = torch.zeros(1, priors.shape[0], dtype=torch.long)
    match(threshold, truths, priors, VAR, labels, loc_t, conf_t, 0)
    return loc_t[0], conf_t[0]


def test_match_forces_a_truths_best_prior_even_below_threshold():
    truths = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.6, 0.6, 0.7, 0.7]])
    labels = torch.tensor([3, 1])
    loc_t, conf_t = _run_match(truths, labels)
    # Truth 0 fits prior 0 exactly; truth 1 overlaps prior 1 with IoU 0.04 only, but it is its best prior;
    # prior 2's best IoU is 0.25 (truth 0), below threshold: background.
    assert conf_t.tolist() == [4, 2, 0]
    assert torch.allclose(loc_t[0], torch.zeros(4), atol=1e-6)
    assert torch.allclose(loc_t[1], torch.tensor([-2.0, -2.0, math.log(0.2) / 0.2, math.log(0.2) / 0.2]), atol=1e-5)


def test_match_later_truth_wins_a_shared_best_prior():
    truths = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.45, 0.45]])
    labels = torch.tensor([0, 2])
    _, conf_t = _run_match(truths, labels)
    assert conf_t.tolist() == [3, 0, 0]


def _classic_match(threshold, truths, priors, labels):
    """The classic ssd.pytorch matcher, written out with its loop, as a reference."""
    overlaps = jaccard(truths, point_form(priors))
    best_prior_idx = overlaps.argmax(1)
    best_truth_overlap, best_truth_idx = overlaps.max(0)
    best_truth_overlap = best_truth_overlap.clone()
    best_truth_overlap[best_prior_idx] = 2.0
    for j in range(best_prior_idx.shape[0]):
        best_truth_idx[best_prior_idx[j]] = j
    conf = labels[best_truth_idx] + 1
    conf[best_truth_overlap < threshold] = 0
    return encode(truths[best_truth_idx], priors, VAR), conf


def test_batched_matcher_equals_classic_loop_with_padding():
    from data.config import voc
    from layers.functions.prior_box import PriorBox

    priors = PriorBox(voc).forward()
    torch.manual_seed(1)
    counts = [3, 1, 7]
    per_image = []
    for n in counts:
        xy = torch.rand(n, 2) * 0.7
        wh = torch.rand(n, 2) * 0.3 + 0.02
        per_image.append((torch.cat((xy, xy + wh), 1), torch.randint(0, 20, (n,))))
    n_max = max(counts)
    truths = torch.zeros(len(counts), n_max, 4)
    labels = torch.zeros(len(counts), n_max, dtype=torch.long)
    valid = torch.zeros(len(counts), n_max, dtype=torch.bool)
    for i, (t, lab) in enumerate(per_image):
        truths[i, : len(t)], labels[i, : len(t)], valid[i, : len(t)] = t, lab, True
    loc_t, conf_t = match_batch(0.5, truths, labels, valid, priors, VAR)
    for i, (t, lab) in enumerate(per_image):
        ref_loc, ref_conf = _classic_match(0.5, t, priors, lab)
        assert torch.equal(conf_t[i], ref_conf)
        assert torch.allclose(loc_t[i], ref_loc, atol=1e-5)


def test_batched_matcher_image_without_boxes_is_all_background():
    truths = torch.zeros(2, 1, 4)
    truths[0, 0] = torch.tensor([0.0, 0.0, 0.5, 0.5])
    valid = torch.tensor([[True], [False]])
    _, conf_t = match_batch(0.5, truths, torch.zeros(2, 1, dtype=torch.long), valid, PRIORS, VAR)
    assert conf_t.tolist() == [[1, 0, 0], [0, 0, 0]]


def _slow_greedy_nms(boxes, scores, overlap, top_k):
    order = sorted(range(len(scores)), key=lambda i: -float(scores[i]))[:top_k]
    keep = []
    for i in order:
        if all(jaccard(boxes[i : i + 1], boxes[j : j + 1]).item() <= overlap for j in keep):
            keep.append(i)
    return keep


def _random_boxes(n, seed):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g)
    wh = torch.rand(n, 2, generator=g) * 0.3 + 0.01
    return torch.cat((xy, xy + wh), 1), torch.rand(n, generator=g)


@pytest.mark.parametrize(("n", "top_k"), [(50, 200), (300, 200), (120, 30)])
def test_nms_equals_slow_greedy_reference(n, top_k):
    boxes, scores = _random_boxes(n, seed=n)
    keep, count = nms(boxes, scores, overlap=0.5, top_k=top_k)
    expected = _slow_greedy_nms(boxes, scores, 0.5, top_k)
    assert count == len(expected)
    assert keep.tolist() == expected
    if n <= top_k:
        assert keep.tolist() == tv_nms(boxes, scores, 0.5).tolist()


def test_nms_cut_comes_before_suppression():
    # Two identical boxes then a third far away with the lowest score; top_k=2 drops the third before NMS.
    boxes = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]])
    scores = torch.tensor([0.9, 0.8, 0.1])
    assert nms(boxes, scores, 0.5, top_k=2)[0].tolist() == [0]
    assert nms(boxes, scores, 0.5, top_k=3)[0].tolist() == [0, 2]


def test_nms_empty():
    keep, count = nms(torch.zeros(0, 4), torch.zeros(0))
    assert count == 0 and keep.numel() == 0
