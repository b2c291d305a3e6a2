import math

import pytest
import torch

from data.config import coco, voc, voc512
from layers import PriorBox
from layers.functions.prior_box import boxes_per_location


def test_prior_counts():
    assert PriorBox(voc).forward().shape == (8732, 4)
    assert PriorBox(coco).forward().shape == (8732, 4)
    assert PriorBox(voc512).forward().shape == (24564, 4)
    assert boxes_per_location(voc["aspect_ratios"]) == [4, 6, 6, 6, 4, 4]
    assert boxes_per_location(voc512["aspect_ratios"]) == [4, 6, 6, 6, 6, 4, 4]


def test_first_location_of_first_map_by_hand():
    priors = PriorBox(voc).forward()
    c = 0.5 / (300 / 8)  # centre of cell (0, 0)
    s, s_prime, r = 30 / 300, math.sqrt(30 / 300 * 60 / 300), math.sqrt(2)
    expected = torch.tensor([[c, c, s, s], [c, c, s_prime, s_prime], [c, c, s * r, s / r], [c, c, s / r, s * r]])
    assert torch.allclose(priors[:4], expected, atol=1e-6)
    # the next location is one step to the right (row-major)
    assert priors[4, 0].item() == pytest.approx(1.5 / 37.5)
    assert priors[4, 1].item() == pytest.approx(c)
    # first prior of the second row
    assert priors[38 * 4, :2].tolist() == pytest.approx([c, 1.5 / 37.5])


def test_second_map_has_ratio_three_boxes():
    priors = PriorBox(voc).forward()
    start = 38 * 38 * 4
    c = 0.5 / (300 / 16)
    s = 60 / 300
    assert priors[start, :2].tolist() == pytest.approx([c, c])
    assert priors[start + 1, 2].item() == pytest.approx(math.sqrt(0.2 * 111 / 300))
    assert priors[start + 4, 2:].tolist() == pytest.approx([s * math.sqrt(3), s / math.sqrt(3)])
    assert priors[start + 5, 2:].tolist() == pytest.approx([s / math.sqrt(3), s * math.sqrt(3)])


def test_last_map_priors_are_clamped():
    priors = PriorBox(voc).forward()
    s, s_prime, r = 264 / 300, math.sqrt(264 / 300 * 315 / 300), math.sqrt(2)
    # s * sqrt(2) = 1.245 and s_prime > 0.96: the wide box is clamped to width 1.0
    expected = torch.tensor(
        [[0.5, 0.5, s, s], [0.5, 0.5, s_prime, s_prime], [0.5, 0.5, 1.0, s / r], [0.5, 0.5, s / r, 1.0]]
    )
    assert torch.allclose(priors[-4:], expected, atol=1e-6)
    assert priors.min() >= 0 and priors.max() <= 1


def test_ssd512_first_prior():
    priors = PriorBox(voc512).forward()
    c = 0.5 / 64
    assert priors[0].tolist() == pytest.approx([c, c, 35.84 / 512, 35.84 / 512])
    assert priors[1, 2].item() == pytest.approx(math.sqrt(35.84 / 512 * 76.8 / 512))


def test_unclipped_priors_exceed_one():
    cfg = dict(voc)
    cfg["clip"] = False
    assert PriorBox(cfg).forward().max() > 1.2
