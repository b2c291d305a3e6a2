"""weights/convert_torchvision.py: torchvision's SSD detectors, randomly initialised (no download), give the same raw
outputs and the same detections once converted into our models."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import Tensor, nn
from torchvision.models.detection import ssd300_vgg16, ssdlite320_mobilenet_v3_large
from torchvision.models.detection.image_list import ImageList

from data import COCO_CLASSES
from data.config import coco, coco320
from data.priors import prior_config_dict
from layers import Detect, PriorBox
from layers.box_utils import point_form
from ssd import build_ssd
from utils.checkpoint import read_sidecar
from weights.convert_torchvision import (
    ARCHITECTURES,
    TORCHVISION_COCO_CLASSES,
    coco_rows,
    from_torchvision,
    main,
)

LITE, VGG = "ssdlite320_mobilenet_v3_large", "ssd300_vgg16"
UNUSED_IDS = sorted(set(range(1, TORCHVISION_COCO_CLASSES)) - set(coco_rows()))


def _lively(model: nn.Module, gain: float, head_gain: float) -> None:
    """Random weights whose activations neither vanish nor blow up (torchvision's from-scratch SSDLite init gives
    outputs of 1e-15): conv weights normal(0, gain / sqrt(fan_in)), random biases and BatchNorm statistics; the
    heads' last convs scaled by ``head_gain`` so that scores spread and boxes move off their priors."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.normal_(module.weight, 0.0, gain / math.sqrt(module.weight[0].numel()))
            if module.bias is not None:
                nn.init.normal_(module.bias, 0.0, 0.1)
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.normal_(module.bias, 0.0, 0.1)
            module.running_mean.normal_(0.0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    with torch.no_grad():
        for conv in _last_convs(model.head.classification_head) + _last_convs(model.head.regression_head):
            conv.weight.mul_(head_gain)
        if hasattr(model.backbone, "scale_weight"):
            model.backbone.scale_weight.uniform_(10.0, 30.0)


def _last_convs(head: nn.Module) -> list[nn.Conv2d]:
    """The conv that ends each source's head (the head itself for VGG16, its pointwise conv for SSDLite)."""
    return [[m for m in block.modules() if isinstance(m, nn.Conv2d)][-1] for block in head.module_list]


def _silence_unused_classes(model: nn.Module) -> None:
    """The 10 category ids COCO does not use score nothing (weight 0, bias -1e4), so the softmax over torchvision's
    91 columns equals ours over the 81 kept."""
    with torch.no_grad():
        for conv in _last_convs(model.head.classification_head):
            rows = torch.arange(conv.out_channels // TORCHVISION_COCO_CLASSES)[:, None] * TORCHVISION_COCO_CLASSES
            unused = (rows + torch.tensor(UNUSED_IDS)).reshape(-1)
            conv.weight[unused] = 0.0
            conv.bias[unused] = -1e4


def _torchvision_run(model: nn.Module, x: Tensor) -> tuple[dict[str, Tensor], list[dict[str, Tensor]]]:
    """torchvision's head outputs and detections for a normalised batch (its resize and normalisation bypassed)."""
    sizes = [tuple(x.shape[-2:])] * x.shape[0]
    with torch.no_grad():
        features = list(model.backbone(x).values())
        head = model.head(features)
        anchors = model.anchor_generator(ImageList(x, sizes), features)
        return head, model.postprocess_detections(head, anchors, sizes)


def _sorted_detections(labels: Tensor, scores: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    order = torch.argsort(labels.double() * 2 - scores.double(), stable=True)  # by label, then score descending
    return labels[order], scores[order], boxes[order]


def _assert_same_detections(ours: Tensor, theirs: list[dict[str, Tensor]], size: int, labels: Tensor) -> int:
    """Our ``[B, C, top_k, 5]`` detections equal torchvision's per picture; ``labels[c]`` is torchvision's label of
    our class c. Returns the number of detections."""
    total = 0
    for b, expected in enumerate(theirs):
        cls, row = (ours[b, :, :, 0] > 0).nonzero(as_tuple=True)
        got = _sorted_detections(labels[cls], ours[b, cls, row, 0], ours[b, cls, row, 1:] * size)
        want = _sorted_detections(expected["labels"], expected["scores"], expected["boxes"])
        assert got[0].tolist() == want[0].tolist()
        torch.testing.assert_close(got[1], want[1], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got[2], want[2], atol=1e-3, rtol=1e-5)
        total += len(got[0])
    return total


def _assert_close(ours: Tensor, theirs: Tensor) -> None:
    torch.testing.assert_close(ours, theirs, atol=1e-4 * float(theirs.abs().max()), rtol=1e-4)


def _assert_lite_equals(net: nn.Module, model: nn.Module, rows: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Our light ``net`` gives torchvision's SSDLite ``model``'s offsets, logits (its columns ``rows``, ours in
    order) and more than 150 equal detections on two random pictures; returns our ``loc``, ``conf`` and detections."""
    x = torch.randn(2, 3, 320, 320)
    head, detections = _torchvision_run(model, x)
    with torch.no_grad():
        loc, conf = net.predict(x)
        ours = net(x)
    _assert_close(loc, head["bbox_regression"])
    _assert_close(conf, head["cls_logits"][..., rows])
    assert _assert_same_detections(ours, detections, 320, rows) > 150
    return loc, conf, ours


def _convert_file(tmp_path, model: nn.Module, name: str) -> tuple[nn.Module, object]:
    """Save the torchvision weights, run the converter on the file, and build our model from what it wrote."""
    source, out = tmp_path / f"{name}_torchvision.pth", tmp_path / f"{name}.pth"
    torch.save(model.state_dict(), source)
    assert main(["--model", name, "--weights", str(source), "--out", str(out)]) == 0
    facts = read_sidecar(out)
    net = build_ssd("test", facts.size, facts.num_classes, dict(facts.prior_config), facts.batch_norm,
                    architecture=facts.architecture)  # fmt: skip
    net.load_state_dict(torch.load(out, map_location="cpu", weights_only=True))
    return net.eval(), facts


@pytest.fixture()
def lite_same_classes(one_thread) -> nn.Module:
    torch.manual_seed(0)
    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=5).eval()
    _lively(model, gain=1.0, head_gain=8.0)
    return model


def test_lite_raw_outputs_and_detections_equal_torchvisions(lite_same_classes: nn.Module) -> None:
    state, num_classes = from_torchvision(lite_same_classes, LITE)
    assert num_classes == 5  # not a 91-class COCO model: the rows stay as they are
    tv_rows = lite_same_classes.head.classification_head.module_list[2][1].weight
    assert torch.equal(state["conf.2.pointwise.weight"], tv_rows)
    net = build_ssd("test", 320, num_classes, coco320, architecture="mobilenet_v3_large").eval()
    net.load_state_dict(state)
    loc, conf, ours = _assert_lite_equals(net, lite_same_classes, torch.arange(num_classes))
    assert conf.std() > 1.0 and loc.std() > 0.5  # spread scores, boxes off their priors
    assert ours[..., 1:].min() >= 0 and ours[..., 1:].max() <= 1  # clipped like torchvision's


def test_lite_coco_weights_file(tmp_path, one_thread) -> None:
    torch.manual_seed(1)
    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None).eval()
    _lively(model, gain=1.0, head_gain=8.0)
    _silence_unused_classes(model)
    net, facts = _convert_file(tmp_path, model, LITE)
    assert (facts.architecture, facts.size, facts.batch_norm) == ("mobilenet_v3_large", 320, True)
    assert facts.dataset == "COCO"
    assert facts.class_names == COCO_CLASSES
    assert prior_config_dict(facts.prior_config) == prior_config_dict(coco320)
    _assert_lite_equals(net, model, torch.tensor(coco_rows()))


def test_vgg16_coco_weights_file(tmp_path, one_thread) -> None:
    torch.manual_seed(2)
    with torch.device("meta"):  # torchvision builds VGG16's 120M classifier weights that SSD drops: skip that work
        model = ssd300_vgg16(weights=None, weights_backbone=None)
    model.to_empty(device="cpu").eval()
    boxes = model.anchor_generator  # its box sizes are plain tensors, left on the meta device: made again
    model.anchor_generator = type(boxes)(boxes.aspect_ratios, scales=boxes.scales, steps=boxes.steps, clip=boxes.clip)
    _lively(model, gain=1.2, head_gain=2.0)
    _silence_unused_classes(model)
    net, facts = _convert_file(tmp_path, model, VGG)
    assert (facts.architecture, facts.size, facts.batch_norm, facts.dataset) == ("vgg16", 300, False, "COCO")
    # torchvision's default boxes (scales 0.07 ... 1.05, steps 8 ... 300) are our COCO SSD300 priors but for the
    # clamp: the 10x10 map's last centres stay at 1.013 (the classic clamp moves them to 1.0)
    assert prior_config_dict(facts.prior_config) == {**prior_config_dict(coco), "clip": "sizes"}
    classic = PriorBox(coco).forward()
    assert ((net.priors - classic).abs().amax(dim=1) > 0.01).sum() == 19 * 6
    maps = [torch.zeros(1, 1, f, f) for f in coco["feature_maps"]]
    anchors = model.anchor_generator(ImageList(torch.zeros(1, 3, 300, 300), [(300, 300)]), maps)[0]
    torch.testing.assert_close(point_form(net.priors) * 300, anchors, atol=1e-3, rtol=0)
    x = torch.randn(1, 3, 300, 300)
    head, detections = _torchvision_run(model, x)
    with torch.no_grad():
        loc, conf = net.predict(x)
    _assert_close(loc, head["bbox_regression"])
    _assert_close(conf, head["cls_logits"][..., coco_rows()])
    # torchvision's SSD300 post-processing: 400 candidates per class, 200 per picture, boxes clipped
    detect = Detect(81, 0, 400, 0.01, 0.45, keep_top_k=200, clip_boxes=True)
    with torch.no_grad():
        ours = detect(loc, torch.softmax(conf, dim=-1), net.priors)
    assert _assert_same_detections(ours, detections, 300, torch.tensor(coco_rows())) > 100


def test_coco_rows_are_background_then_category_ids() -> None:
    rows = coco_rows()
    assert len(rows) == 81 and rows[:4] == [0, 1, 2, 3] and rows[-1] == 90
    assert len(UNUSED_IDS) == 10 and 12 in UNUSED_IDS and 12 not in rows  # torchvision's first "N/A"
    assert set(ARCHITECTURES) == {LITE, VGG}


def test_cli_user_errors(tmp_path, fail_line, one_thread) -> None:
    out = str(tmp_path / "out.pth")
    missing = fail_line(main, ["--model", LITE, "--weights", str(tmp_path / "none.pth"), "--out", out])
    assert missing.startswith("convert_torchvision: error:") and "none.pth" in missing
    foreign = tmp_path / "foreign.pth"
    torch.save({"features.0.weight": torch.zeros(1)}, foreign)
    line = fail_line(main, ["--model", LITE, "--weights", str(foreign), "--out", out])
    assert "'features.0.weight' is not a key of torchvision's ssdlite320_mobilenet_v3_large" in line
    torch.manual_seed(0)
    small = tmp_path / "small.pth"
    torch.save(ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3).state_dict(), small)
    assert "name them with --classes" in fail_line(main, ["--model", LITE, "--weights", str(small), "--out", out])
    names = tmp_path / "names.txt"
    names.write_text("cat\ndog\nbird\n")
    argv = ["--model", LITE, "--weights", str(small), "--classes", str(names), "--out", out]
    assert "3 class names for a model that scores 2 classes" in fail_line(main, argv)
    names.write_text("cat\ndog\n")
    assert main(argv) == 0
    assert json.loads((tmp_path / "out.json").read_text())["class_names"] == ["cat", "dog"]
