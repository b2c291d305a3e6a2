from pathlib import Path

import pytest
import torch

from data.config import coco, voc
from ssd import build_ssd

GOLDEN = Path(__file__).parent / "golden"


def _golden(size):
    lines = (GOLDEN / f"ssd{size}_voc_state_dict.txt").read_text().splitlines()
    return [(k, tuple(int(d) for d in shape.split(","))) for k, shape in (line.split() for line in lines[1:])]


@pytest.mark.parametrize("size", [300, 512])
def test_state_dict_keys_and_shapes_equal_the_classic_port(size):
    net = build_ssd("train", size, 21)
    assert [(k, tuple(v.shape)) for k, v in net.state_dict().items()] == _golden(size)
    assert "priors" not in net.state_dict()
    assert "priors" in dict(net.named_buffers())


def test_parameter_count_of_ssd300_voc():
    net = build_ssd("train", 300, 21)
    assert sum(p.numel() for p in net.parameters()) == 26_285_486


def test_train_phase_shapes_300():
    net = build_ssd("train", 300, 21)
    loc, conf, priors = net(torch.randn(2, 3, 300, 300))
    assert loc.shape == (2, 8732, 4)
    assert conf.shape == (2, 8732, 21)
    assert priors.shape == (8732, 4)


def test_test_phase_shapes_300():
    net = build_ssd("test", 300, 21).eval()
    with torch.no_grad():
        det = net(torch.randn(1, 3, 300, 300))
    assert det.shape == (1, 21, 200, 5)
    assert (det[:, 0] == 0).all()


@pytest.mark.slow
def test_shapes_512():
    net = build_ssd("train", 512, 21)
    loc, conf, priors = net(torch.randn(1, 3, 512, 512))
    assert loc.shape == (1, 24564, 4) and conf.shape == (1, 24564, 21) and priors.shape == (24564, 4)
    net.phase = "test"
    net.eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 512, 512)).shape == (1, 21, 200, 5)


def test_bad_phase_and_size():
    with pytest.raises(ValueError, match="phase"):
        build_ssd("eval")
    with pytest.raises(ValueError, match="size"):
        build_ssd("train", 400)


def test_config_choice_follows_num_classes():
    assert build_ssd("train", 300, 81).cfg is coco
    assert build_ssd("train", 300, 21).cfg is voc
    assert build_ssd("train", 300, 6).cfg is voc  # custom class lists use VOC's priors


def test_detect_kwargs_reach_detect():
    net = build_ssd("test", 300, 21, top_k=50, conf_thresh=0.2, keep_top_k=100)
    assert (net.detect.top_k, net.detect.conf_thresh, net.detect.keep_top_k) == (50, 0.2, 100)


def test_published_layout_round_trips_through_a_state_dict_file(tmp_path):
    src = build_ssd("train", 300, 21)
    torch.save(src.state_dict(), tmp_path / "ssd.pth")
    dst = build_ssd("test", 300, 21)
    dst.load_state_dict(torch.load(tmp_path / "ssd.pth", weights_only=True))
    vgg_only = {k[len("vgg.") :]: v for k, v in src.state_dict().items() if k.startswith("vgg.")}
    dst.vgg.load_state_dict(vgg_only)  # how vgg16_reducedfc.pth is loaded
    for (k, a), b in zip(src.state_dict().items(), dst.state_dict().values()):
        assert torch.equal(a, b), k


def test_batch_norm_variant_adds_bn_and_keeps_interface():
    net = build_ssd("train", 300, 21, batch_norm=True)
    keys = net.state_dict().keys()
    assert any(k.endswith("running_mean") for k in keys)
    assert net.batch_norm and not build_ssd("train", 300, 21).batch_norm
    loc, conf, _ = net(torch.randn(2, 3, 300, 300))
    assert loc.shape == (2, 8732, 4) and conf.shape == (2, 8732, 21)


def test_heads_are_xavier_initialised_with_zero_bias():
    net = build_ssd("train", 300, 21)
    for head in (*net.loc, *net.conf, *net.extras):
        assert torch.count_nonzero(head.bias) == 0
        fan_in = head.weight[0].numel()
        fan_out = head.weight.shape[0] * head.weight[0, 0].numel()
        bound = (6 / (fan_in + fan_out)) ** 0.5
        assert head.weight.abs().max() <= bound
