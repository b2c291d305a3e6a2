"""utils/inference.py: pixel boxes from detections, batching through preprocess, drawing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from data.transforms import preprocess
from utils.inference import class_color, detect_images, detections_to_arrays, draw_detections


def _dets() -> Tensor:
    """[B=2, C=3, K=3, 5] test-phase output: rows (score, x1, y1, x2, y2) relative, zero-padded."""
    d = torch.zeros(2, 3, 3, 5)
    d[0, 0, 0] = torch.tensor([0.99, 0.0, 0.0, 1.0, 1.0])  # background: never reported
    d[0, 1, 0] = torch.tensor([0.90, 0.10, 0.20, 0.50, 0.60])
    d[0, 1, 1] = torch.tensor([0.30, -0.10, 0.50, 1.20, 1.00])  # crosses the border: clipped
    d[0, 2, 0] = torch.tensor([0.60, 0.25, 0.25, 0.75, 0.75])
    d[0, 2, 1] = torch.tensor([0.05, 0.00, 0.00, 0.50, 0.50])  # below a 0.1 threshold
    d[1, 2, 0] = torch.tensor([0.10, 0.50, 0.50, 1.00, 1.00])  # exactly at the threshold: kept
    return d


def test_detections_to_arrays_pixels_order_and_classes() -> None:
    out = detections_to_arrays(_dets(), [(100, 200), (10, 20)], conf_thresh=0.1)
    assert len(out) == 2
    labels, scores, boxes = out[0]
    np.testing.assert_array_equal(labels, [0, 1, 0])  # model classes 1, 2, 1 → name indices 0, 1, 0
    np.testing.assert_allclose(scores, [0.9, 0.6, 0.3])
    # width 200, height 100: x * 200, y * 100, clipped to [0, 199] x [0, 99]
    np.testing.assert_allclose(boxes, [[20, 20, 100, 60], [50, 25, 150, 75], [0, 50, 199, 99]], atol=1e-4)
    labels, scores, boxes = out[1]
    np.testing.assert_array_equal(labels, [1])
    np.testing.assert_allclose(boxes, [[10, 5, 19, 9]], atol=1e-4)


def test_detections_to_arrays_extent_clip_and_empty() -> None:
    out = detections_to_arrays(_dets(), [(100, 200), (10, 20)], conf_thresh=0.1, inclusive=False)
    np.testing.assert_allclose(out[0].boxes[2], [0, 50, 200, 100], atol=1e-4)  # clipped to [0, w] x [0, h]
    empty = detections_to_arrays(torch.zeros(1, 3, 4, 5), [(5, 5)])
    assert empty[0].labels.shape == (0,) and empty[0].boxes.shape == (0, 4)


class _StubSSD(nn.Module):
    """Test-phase stand-in: records its inputs and returns ``_dets()`` rows for each image."""

    size = 32

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.inputs: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        assert not torch.is_grad_enabled()
        self.inputs.append(x)
        return _dets()[:1].expand(x.shape[0], -1, -1, -1)


def test_detect_images_batches_preprocess_and_tuples() -> None:
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in [(40, 50), (60, 30), (20, 20)]]
    net = _StubSSD()
    dets = detect_images(net, images, conf_thresh=0.5, batch_size=2)
    assert [x.shape[0] for x in net.inputs] == [2, 1]
    torch.testing.assert_close(net.inputs[0][1], preprocess(images[1], 32))
    torch.testing.assert_close(net.inputs[1][0], preprocess(images[2], 32))
    # preprocess gives RGB: its first channel is the image's last (R) channel minus 123
    assert len(dets) == 3
    assert [(c, round(s, 2)) for c, s, _ in dets[1]] == [(0, 0.9), (1, 0.6)]
    c, s, box = dets[1][0]
    assert isinstance(c, int) and isinstance(s, float) and isinstance(box, list)
    np.testing.assert_allclose(box, [3.0, 12.0, 15.0, 36.0], atol=1e-4)  # image 1 is 30 wide, 60 high


def test_preprocess_is_rgb_minus_means() -> None:
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    img[..., 2] = 200  # red in BGR
    x = preprocess(img, 8)
    torch.testing.assert_close(x[:, 0, 0], torch.tensor([200.0 - 123, -117.0, -104.0]))


def test_draw_detections_copies_and_draws() -> None:
    img = np.zeros((60, 80, 3), dtype=np.uint8)
    out = draw_detections(img, [(2, 0.87, [10.0, 20.0, 50.0, 40.0]), (99, 0.5, [0.0, 0.0, 5.0, 5.0])], ["a", "b", "c"])
    assert img.sum() == 0 and out.shape == img.shape
    assert tuple(out[30, 10]) == class_color(2)  # left edge of the box
    assert out[30, 30].sum() == 0  # inside untouched
    assert out[:20, 10:50].any()  # the label above the box


@pytest.mark.parametrize("index", [0, 1, 20, 79])
def test_class_color_is_bright_bgr(index: int) -> None:
    color = class_color(index)
    assert len(color) == 3 and max(color) == 255 and all(0 <= v <= 255 for v in color)


def test_load_detector_runs_the_model_as_recorded(tmp_path) -> None:
    """Size, priors and class names come from the sidecar; Detect settings from the call; flags may not contradict."""
    from data.config import voc512
    from layers import PriorBox
    from ssd import build_ssd
    from utils.checkpoint import CheckpointError, ModelFacts, write_sidecar
    from utils.inference import load_detector

    cfg = dict(voc512, aspect_ratios=((2,),) * 7, name="custom")
    torch.manual_seed(4)
    trained = build_ssd("train", 512, 3, cfg=cfg, batch_norm=True)
    weights = tmp_path / "ssd512_VOC_5.pth"
    torch.save(trained.state_dict(), weights)
    write_sidecar(weights, ModelFacts.from_model(trained, ["circle", "square"], "VOC"))

    net = load_detector(weights, top_k=7, conf_thresh=0.2)
    facts, line = net.facts, net.description
    assert (net.size, net.training, net.net.batch_norm) == (512, False, True)
    assert (net.detect.top_k, net.detect.conf_thresh) == (7, 0.2)
    assert torch.equal(net.priors, PriorBox(cfg).forward()) and net.net.loc[1].out_channels == 4 * 4
    assert facts.class_names == ("circle", "square")
    assert line.startswith("model: SSD512 BatchNorm custom priors, 2 classes from ") and "(circle, square)" in line
    with pytest.raises(CheckpointError, match="--size 300 contradicts"):
        load_detector(weights, size=300)
