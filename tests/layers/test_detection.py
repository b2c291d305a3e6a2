import pytest
import torch

from data.config import voc
from layers import Detect, PriorBox
from layers.box_utils import decode, jaccard


def _reference_detect(loc, conf, priors, num_classes, top_k, conf_thresh, nms_thresh):
    """Per image and class, the classic algorithm with a slow greedy NMS."""
    out = torch.zeros(loc.shape[0], num_classes, top_k, 5)
    for b in range(loc.shape[0]):
        boxes = decode(loc[b], priors)
        for c in range(1, num_classes):
            scores = conf[b, :, c]
            idx = (scores > conf_thresh).nonzero().squeeze(1)
            idx = idx[scores[idx].argsort(descending=True)][:top_k]
            keep = []
            for i in idx.tolist():
                if all(jaccard(boxes[i : i + 1], boxes[j : j + 1]).item() <= nms_thresh for j in keep):
                    keep.append(i)
            for row, i in enumerate(keep):
                out[b, c, row, 0] = scores[i]
                out[b, c, row, 1:] = boxes[i]
    return out


def _random_inputs(batch, num_priors, num_classes, seed, background_bias=0.0):
    g = torch.Generator().manual_seed(seed)
    loc = torch.randn(batch, num_priors, 4, generator=g) * 0.5
    logits = torch.randn(batch, num_priors, num_classes, generator=g) * 2
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
