import pytest
import torch

import layers.functions.detection as detection
from data.config import voc
from layers import Detect, PriorBox
from layers.box_utils import decode, jaccard
from tests.sync_counter import SyncCounter


def _reference_detect(loc, conf, priors, num_classes, top_k, conf_thresh, nms_thresh):
    """Per image and class, the classic algorithm with a slow greedy NMS (equal scores: lower prior first)."""
    out = torch.zeros(loc.shape[0], num_classes, top_k, 5)
    for b in range(loc.shape[0]):
        boxes = decode(loc[b], priors)
        for c in range(1, num_classes):
            scores = conf[b, :, c]
            idx = (scores > conf_thresh).nonzero().squeeze(1)
            idx = idx[scores[idx].argsort(descending=True, stable=True)][:top_k]
            iou = jaccard(boxes[idx], boxes[idx])
            keep = []
            for i in range(idx.numel()):
                if all(iou[i, j].item() <= nms_thresh for j in keep):
                    keep.append(i)
            for row, i in enumerate(keep):
                out[b, c, row, 0] = scores[idx[i]]
                out[b, c, row, 1:] = boxes[idx[i]]
    return out


def _random_inputs(batch, num_priors, num_classes, seed, background_bias=0.0, logit_scale=2.0):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(batch, num_priors, 4, generator=g) * 0.5
    logits = torch.randn(batch, num_priors, num_classes, generator=g) * logit_scale
    logits[..., 0] += background_bias
    return loc, torch.softmax(logits, dim=-1)


@pytest.mark.parametrize(("num_priors", "top_k", "bias"), [(300, 200, 0.0), (8732, 200, 6.0), (8732, 50, 0.0)])
def test_detect_equals_per_class_reference(num_priors, top_k, bias):
    priors = PriorBox(voc).forward()[:num_priors]
    loc, conf = _random_inputs(2, num_priors, 4, seed=num_priors + top_k, background_bias=bias)
    detect = Detect(4, 0, top_k, 0.01, 0.45)
    out = detect(loc, conf, priors)
    expected = _reference_detect(loc, conf, priors, 4, top_k, 0.01, 0.45)
    assert out.shape == (2, 4, top_k, 5)
    assert torch.allclose(out, expected, atol=1e-6)
    assert (out[:, 1:, :, 0] > 0).any()


def test_dense_scores_equal_reference():
    """An untrained network's near-uniform softmax: nearly every prior of every class passes the threshold,
    so every row is cut to top_k before NMS; one class stays sparse, so both kinds of row meet."""
    priors = PriorBox(voc).forward()[:1500]
    loc, conf = _random_inputs(2, 1500, 6, seed=11, logit_scale=0.1)
    conf[..., 3] *= 0.07  # about 0.012: some priors of class 3 above 0.01, most below
    assert (conf[..., 1:] > 0.01).float().mean() > 0.8
    out = Detect(6, 0, 200, 0.01, 0.45)(loc, conf, priors)
    expected = _reference_detect(loc, conf, priors, 6, 200, 0.01, 0.45)
    assert torch.allclose(out, expected, atol=1e-6)
    used = (out[..., 0] > 0).sum(dim=2)  # rows per (image, class)
    assert (used[:, [1, 2, 4, 5]] > 50).all() and (used[:, 3] > 0).all() and (used[:, 3] < 200).all()


def test_nan_scores_are_skipped_as_the_reference_skips_them():
    """A NaN fails ``score > conf_thresh``: it is no candidate, and the rest of its row still is, even where the
    row is crowded and its cut comes from a sample holding the NaN."""
    priors = PriorBox(voc).forward()[:1500]
    loc, conf = _random_inputs(2, 1500, 6, seed=13, logit_scale=0.1)
    conf[0, ::13] = float("nan")  # every sampled prior of image 0
    conf[1, 40:90, 2] = float("nan")
    out = Detect(6, 0, 200, 0.01, 0.45)(loc, conf, priors)
    expected = _reference_detect(loc, conf, priors, 6, 200, 0.01, 0.45)
    assert not out.isnan().any()
    assert torch.allclose(out, expected, atol=1e-6)
    assert ((out[:, 1:, :, 0] > 0).sum(dim=2) > 50).all()


def test_equal_scores_rank_by_prior_index_as_reference():
    """Scores on a coarse grid tie everywhere, the top_k-th best of a row included: the lower prior index wins."""
    priors = PriorBox(voc).forward()[:1200]
    loc, conf = _random_inputs(2, 1200, 4, seed=5, logit_scale=0.3)
    conf = (conf * 64).round() / 64  # ties
    out = Detect(4, 0, 100, 0.01, 0.45)(loc, conf, priors)
    expected = _reference_detect(loc, conf, priors, 4, 100, 0.01, 0.45)
    assert torch.allclose(out, expected, atol=1e-6)


def test_nms_in_several_chunks_gives_the_same_output(monkeypatch):
    priors = PriorBox(voc).forward()[:2000]
    loc, conf = _random_inputs(2, 2000, 5, seed=9, logit_scale=0.2)
    detect = Detect(5, 0, 100, 0.01, 0.45)
    whole = detect(loc, conf, priors)  # 2 images x 4 classes x 100 candidates: one call of 800 boxes

    calls = []

    def counting_nms(boxes, scores, thresh):
        calls.append(boxes.shape[0])
        return torch.ops.torchvision.nms(boxes, scores, thresh)

    monkeypatch.setattr(detection, "nms_op", counting_nms)
    monkeypatch.setattr(detection, "NMS_CPU_BOXES", 250)
    chunked = detect(loc, conf, priors)
    assert torch.equal(chunked, whole)
    assert len(calls) > 1 and max(calls) <= 250 and sum(calls) == 800
    assert all(n % 100 == 0 for n in calls)  # whole (image, class) groups only


def test_chunk_sizes_hold_whole_groups_within_the_bound():
    counts = torch.tensor([3, 1, 4, 0, 5, 2, 6, 5, 3])
    group = torch.repeat_interleave(torch.arange(counts.numel()), counts)
    sizes = detection.nms_chunk_sizes(group, max_boxes=8, largest_group=6)
    assert sum(sizes) == group.numel() and max(sizes) <= 8 and len(sizes) > 1
    ends = set(counts.cumsum(0).tolist())
    assert set(torch.tensor(sizes).cumsum(0).tolist()) <= ends  # every chunk ends where a group ends
    assert detection.nms_chunk_sizes(group, max_boxes=4, largest_group=6) == [3, 1, 4, 5, 2, 6, 5, 3]
    assert detection.nms_chunk_sizes(group, max_boxes=100, largest_group=6) == [29]
    assert detection.nms_chunk_sizes(group[:0], max_boxes=8, largest_group=6) == []


def test_gpu_bound_keeps_the_nms_mask_within_its_bytes(monkeypatch):
    gpu = torch.device("cuda")
    assert detection.max_boxes_per_nms(gpu) == 46336  # 46336 * 724 words * 8 bytes <= 256 MiB
    assert detection.nms_mask_bytes(46336) <= 256 * 2**20 < detection.nms_mask_bytes(46337)
    assert detection.nms_mask_bytes(128000) == 2_048_000_000  # VOC batch 32 in one call: ~2 GiB
    monkeypatch.setattr(detection, "NMS_MASK_BYTES", 8 * 1024)
    assert detection.max_boxes_per_nms(gpu) == 256  # 256 rows of 4 words
    assert detection.max_boxes_per_nms(torch.device("cpu")) == detection.NMS_CPU_BOXES


@pytest.mark.parametrize(("logit_scale", "bias", "most"), [(0.1, 0.0, 5), (2.0, 14.0, 4)], ids=["dense", "sparse"])
def test_host_waits_a_fixed_number_of_times_per_call(logit_scale, bias, most):
    """The host waits for: whether the sample finds a crowded row; the candidates (on the CPU, when few, their
    8-byte words and then their bytes); whether a row came out short or crowded; and, when crowded, the rows within
    top_k and the NMS chunk sizes. Never once per image or class, and indexing goes through index tensors."""
    priors = PriorBox(voc).forward()
    counts = []
    for batch in (1, 3):
        loc, conf = _random_inputs(batch, priors.shape[0], 21, seed=1, background_bias=bias, logit_scale=logit_scale)
        with SyncCounter() as syncs:
            Detect(21, 0, 200, 0.01, 0.45, keep_top_k=None)(loc, conf, priors)
        assert not any("bool index" in name for name in syncs.calls)
        counts.append(syncs.total)
    assert counts[0] == counts[1] <= most, counts


def test_detect_layout_ordering_padding_and_background():
    priors = PriorBox(voc).forward()
    loc, conf = _random_inputs(3, priors.shape[0], 21, seed=3, background_bias=5.0)
    out = Detect(21, 0, 200, 0.01, 0.45)(loc, conf, priors)
    assert out.shape == (3, 21, 200, 5)
    assert out.dtype == torch.float32
    assert (out[:, 0] == 0).all()
    scores = out[..., 0]
    assert (scores[..., 1:] <= scores[..., :-1]).all()  # sorted, zeros last
    used = scores > 0
    assert (used[..., 1:] <= used[..., :-1]).all()  # no gaps
    assert (out[~used] == 0).all()
    assert (scores[used] > 0.01).all()


def test_detect_with_fewer_priors_than_top_k_pads_rows():
    priors = PriorBox(voc).forward()[:10]
    loc, conf = _random_inputs(1, 10, 3, seed=0)
    out = Detect(3, 0, 200, 0.01, 0.45)(loc, conf, priors)
    assert out.shape == (1, 3, 200, 5)
    assert (out[:, :, 10:] == 0).all()


def test_keep_top_k_keeps_best_rows_per_image():
    priors = PriorBox(voc).forward()
    loc, conf = _random_inputs(2, priors.shape[0], 6, seed=7, background_bias=4.0)
    full = Detect(6, 0, 200, 0.01, 0.45)(loc, conf, priors)
    cut = Detect(6, 0, 200, 0.01, 0.45, keep_top_k=20)(loc, conf, priors)
    for b in range(2):
        kept = cut[b, ..., 0][cut[b, ..., 0] > 0]
        assert kept.numel() == 20
        best = full[b, ..., 0].flatten().topk(20).values
        assert torch.allclose(kept.sort(descending=True).values, best)
    assert (cut[..., 0][..., 1:] <= cut[..., 0][..., :-1]).all()


def test_detect_under_half_precision_inputs_decodes_in_float32():
    priors = PriorBox(voc).forward()
    loc, conf = _random_inputs(1, priors.shape[0], 3, seed=2, background_bias=4.0)
    out16 = Detect(3)(loc.half(), conf.half(), priors)
    assert out16.dtype == torch.float32
    assert torch.isfinite(out16).all()
    assert torch.equal(out16, Detect(3)(loc.half().float(), conf.half().float(), priors))


def test_top_k_must_be_positive():
    with pytest.raises(ValueError, match="top_k"):
        Detect(3, 0, 0)


def test_a_sample_that_overrates_a_row_falls_back_to_the_threshold(monkeypatch):
    """The sampled priors of class 1 score high, the others just above the threshold: the cut read from the sample
    leaves fewer than top_k, so the row goes back to the plain threshold and still equals the reference."""
    priors = PriorBox(voc).forward()[:1500]
    loc, conf = _random_inputs(1, 1500, 3, seed=17, logit_scale=0.1)
    g = torch.Generator().manual_seed(0)
    conf[0, :, 1] = 0.02 + 0.01 * torch.rand(1500, generator=g)
    sampled = conf[0, :: detection.SAMPLE_STRIDE, 1]  # a view
    sampled.copy_(0.5 + 0.1 * torch.rand(sampled.shape, generator=g))
    passes = []
    real_above = detection._above
    monkeypatch.setattr(detection, "_above", lambda *args, **kwargs: passes.append(1) or real_above(*args, **kwargs))
    out = Detect(3, 0, 200, 0.01, 0.45)(loc, conf, priors)
    assert len(passes) == 2  # the raised cut, then the fallback
    assert torch.allclose(out, _reference_detect(loc, conf, priors, 3, 200, 0.01, 0.45), atol=1e-6)
    assert (out[0, 1, :, 0] < 0.1).any()  # rows below the sample's cut made it in


@pytest.mark.parametrize("size", [0, 5, 64, 1001])
@pytest.mark.parametrize("density", [0.0, 0.01, 0.5])
def test_true_positions_equal_nonzero(size, density):
    g = torch.Generator().manual_seed(size)
    mask = torch.rand(-(-size // 8) * 8, generator=g) < density
    mask[size:] = False
    for few in (True, False):
        assert torch.equal(detection._true_positions(mask, few), mask.nonzero().squeeze(1))


def test_sort_by_group_then_score_orders_any_floats_and_keeps_ties_in_order():
    group = torch.tensor([2, 0, 2, 1, 0, 2, 0, 1, 2])
    scores = torch.tensor([0.5, -1.0, 0.5, 3.0, 0.0, -0.0, 2.5, float("inf"), 1e-30])
    order = detection._sort_by_group_then_score(group, scores).tolist()
    expected = sorted(range(9), key=lambda i: (group[i].item(), -scores[i].item(), i))
    assert order == expected
