"""SSDLite320-MobileNetV3-Large: layout, initialisation and default boxes, against torchvision's model."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn
from torchvision.models.detection import ssdlite320_mobilenet_v3_large
from torchvision.models.detection.image_list import ImageList

from data.config import coco320, get_config, voc, voc320
from data.priors import load_prior_config, prior_config_dict, prior_config_from_dict
from layers import Detect, PriorBox
from layers.box_utils import point_form
from layers.modules.ssdlite import BN_EPS, BN_MOMENTUM, SOURCE_CHANNELS, MobileNetV3Backbone, source_sizes
from ssd import SSDLite, build_ssd

ARCH = "mobilenet_v3_large"
MAPS = (20, 10, 5, 3, 2, 1)


@pytest.fixture(scope="module")
def net() -> SSDLite:
    torch.manual_seed(0)
    return build_ssd("train", 320, 91, architecture=ARCH)


def test_parameters_equal_torchvisions(net: SSDLite) -> None:
    torch.manual_seed(0)
    tv = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=91)
    count = sum(p.numel() for p in net.parameters())
    assert count == sum(p.numel() for p in tv.parameters()) == 3_440_060
    assert len(net.state_dict()) == len(tv.state_dict())


def test_state_dict_keys(net: SSDLite) -> None:
    sd = net.state_dict()
    heads = {k.split(".")[0] for k in sd}
    assert heads == {"backbone", "extras", "loc", "conf"}
    assert sd["backbone.0.0.weight"].shape == (16, 3, 3, 3)  # the stem keeps torchvision's index
    assert sd["backbone.13.block.0.0.weight"].shape == (672, 112, 1, 1)  # C4's expansion, the first source
    assert sd["backbone.16.0.weight"].shape == (480, 80, 1, 1)  # the reduced tail's last conv
    assert sd["extras.0.reduce.0.weight"].shape == (256, 480, 1, 1)
    assert sd["extras.0.depthwise.0.weight"].shape == (256, 1, 3, 3)
    assert sd["extras.3.project.1.running_var"].shape == (128,)
    assert sd["loc.0.depthwise.0.weight"].shape == (672, 1, 3, 3)
    assert sd["loc.5.pointwise.weight"].shape == (6 * 4, 128, 1, 1)
    assert sd["conf.0.pointwise.bias"].shape == (6 * 91,)
    assert not any("priors" in k for k in sd)
    assert net.batch_norm is True and net.architecture == ARCH


def test_batch_norm_settings_and_normal_init(net: SSDLite) -> None:
    norms = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.eps == BN_EPS and m.momentum == BN_MOMENTUM for m in norms)
    for module in (net.backbone, net.extras, net.loc, net.conf):
        weights = torch.cat([m.weight.flatten() for m in module.modules() if isinstance(m, nn.Conv2d)])
        assert weights.std().item() == pytest.approx(0.03, rel=0.05)
    assert all(torch.all(m.bias == 0) for m in net.conf.modules() if isinstance(m, nn.Conv2d) and m.bias is not None)


def test_sources_and_outputs(net: SSDLite) -> None:
    assert source_sizes(320) == MAPS
    with torch.no_grad():
        loc, conf, priors = net(torch.randn(2, 3, 320, 320))  # train mode: BatchNorm needs 2 pictures on a 1x1 map
        sources = net.eval().sources(torch.randn(1, 3, 320, 320))
    assert [tuple(s.shape[1:]) for s in sources] == [(c, f, f) for c, f in zip(SOURCE_CHANNELS, MAPS)]
    assert loc.shape == (2, 3234, 4) and conf.shape == (2, 3234, 91) and priors.shape == (3234, 4)


def test_backbone_c4_block_has_no_residual() -> None:
    backbone = MobileNetV3Backbone()
    assert backbone.c4_index == 13
    assert not backbone[13].use_res_connect


def test_test_phase_uses_torchvisions_postprocessing() -> None:
    net = build_ssd("test", None, 3, architecture=ARCH)
    detect = net.detect
    assert net.size == 320 and net.cfg is voc320
    assert (detect.top_k, detect.conf_thresh, detect.nms_thresh, detect.keep_top_k) == (300, 0.001, 0.55, 300)
    assert detect.clip_boxes is True
    assert build_ssd("test", 300, 3).detect.clip_boxes is False  # the classic VGG16 head is unchanged


def test_configs_that_do_not_fit_are_refused() -> None:
    with pytest.raises(ValueError, match="size must be 320"):
        build_ssd("train", 300, 21, architecture=ARCH)
    with pytest.raises(ValueError, match="does not fit SSDLite320"):
        build_ssd("train", 320, 21, cfg=get_config("VOC", 300), architecture=ARCH)


def test_priors_equal_torchvisions_default_boxes() -> None:
    tv = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3)
    images = ImageList(torch.zeros(1, 3, 320, 320), [(320, 320)])
    anchors = tv.anchor_generator(images, [torch.zeros(1, 1, f, f) for f in MAPS])[0]  # xyxy pixels
    for cfg in (voc320, coco320):
        priors = PriorBox(cfg).forward()
        assert priors.shape == (3234, 4)
        assert torch.allclose(point_form(priors) * 320, anchors, atol=1e-3)


def test_320_configs_keep_the_classic_keys_and_round_trip(tmp_path) -> None:
    assert get_config("voc", 320) is voc320 and get_config("COCO", 320) is coco320
    assert set(voc320) == set(get_config("VOC", 300)) and voc320["name"] == "VOC320"
    assert coco320["num_classes"] == 81 and voc320["num_classes"] == 21
    assert voc320["steps"][3] == 320 / 3 and 320 / voc320["steps"][3] == 3
    record = json.loads(json.dumps(prior_config_dict(coco320)))
    cfg = prior_config_from_dict(record, coco320)
    assert cfg["name"] == "COCO320" and PriorBox(cfg).forward().equal(PriorBox(coco320).forward())
    path = tmp_path / "priors.json"
    path.write_text(json.dumps({**{k: record[k] for k in ("min_sizes", "max_sizes")}, "aspect_ratios": [[2]] * 6,
                                "steps": record["steps"]}))  # fmt: skip
    custom = load_prior_config(path, 320, voc320)
    assert PriorBox(custom).forward().shape == (sum(f * f * 4 for f in MAPS), 4)
    assert build_ssd("train", 320, 4, cfg=custom, architecture=ARCH).loc[0].pointwise.out_channels == 16


def test_first_and_last_priors_by_hand() -> None:
    priors = PriorBox(voc320).forward()
    c, s, s_prime = 0.5 / 20, 0.2, math.sqrt(0.2 * 0.35)
    r2, r3 = math.sqrt(2), math.sqrt(3)
    first = [[c, c, s, s], [c, c, s_prime, s_prime], [c, c, s * r2, s / r2], [c, c, s / r2, s * r2],
             [c, c, s * r3, s / r3], [c, c, s / r3, s * r3]]  # fmt: skip
    assert torch.allclose(priors[:6], torch.tensor(first), atol=1e-6)
    three = 20 * 20 * 6 + 10 * 10 * 6 + 5 * 5 * 6  # the first prior of the 3x3 map
    assert priors[three + 6 * 4, :2].tolist() == pytest.approx([1.5 / 3, 1.5 / 3])  # cell (1, 1): the centre
    assert priors[-1].tolist() == pytest.approx([0.5, 0.5, 0.95 / r3, 1.0])  # 0.95 * sqrt(3) clamped to 1


def test_detect_clips_boxes_before_nms_when_asked() -> None:
    # two boxes at the right border: unclipped, x 0.8-1.3 and 0.8-1.0 overlap with IoU 0.4; clipped, they coincide
    priors = torch.tensor([[1.05, 0.5, 0.5, 0.2], [0.9, 0.5, 0.2, 0.2]])
    loc = torch.zeros(1, 2, 4)
    conf = torch.tensor([[[0.1, 0.9], [0.2, 0.8]]])
    kept = Detect(2, 0, 5, 0.01, 0.5)(loc, conf, priors)
    clipped = Detect(2, 0, 5, 0.01, 0.5, clip_boxes=True)(loc, conf, priors)
    assert (kept[0, 1, :, 0] > 0).sum() == 2
    assert kept[0, 1, 0, 1:].tolist() == pytest.approx([0.8, 0.4, 1.3, 0.6])
    assert (clipped[0, 1, :, 0] > 0).sum() == 1
    assert clipped[0, 1, 0, 1:].tolist() == pytest.approx([0.8, 0.4, 1.0, 0.6])


def test_clip_sizes_clamps_widths_and_heights_only() -> None:
    # SSD300's 10x10 map has step 32: its last column's centres are 9.5 * 32 / 300 = 1.0133, past the border
    sizes_only = PriorBox({**voc, "clip": "sizes"}).forward()
    classic = PriorBox(voc).forward()
    last = 38 * 38 * 4 + 19 * 19 * 6 + 9 * 6  # the first prior of cell (0, 9) of the 10x10 map
    assert sizes_only[last, 0].item() == pytest.approx(9.5 * 32 / 300) and classic[last, 0].item() == 1.0
    assert sizes_only[:, 2:].equal(classic[:, 2:]) and sizes_only[:, 2:].max() == 1.0
    record = {**prior_config_dict(voc), "clip": "sizes"}
    assert prior_config_from_dict(json.loads(json.dumps(record)), voc)["clip"] == "sizes"
    with pytest.raises(ValueError, match="clip is 'yes', expected true, false or \"sizes\""):
        prior_config_from_dict({**record, "clip": "yes"}, voc)
    with pytest.raises(ValueError, match="clip must be"):
        PriorBox({**voc, "clip": "centres"})
