"""utils.training.finetune: class-head rows copied by name, the classic VOC layout, class maps, other priors, what
cannot fit, and a frozen backbone that keeps its weights and BatchNorm statistics."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from data import VOC_CLASSES, get_config
from layers import MultiBoxLoss
from ssd import build_ssd
from utils.checkpoint import ModelFacts, build_from_facts, write_sidecar
from utils.training.finetune import (
    CLASS_HEAD_KEY,
    apply_finetune,
    class_rows,
    finetune_facts,
    freeze,
    keep_class_rows,
    plan_finetune,
    read_source,
    trainable_parameters,
)

pytestmark = pytest.mark.usefixtures("one_thread")
SOURCE_CLASSES = ("car", "boat", "sheep")  # A, B, C
TARGET_CLASSES = ("boat", "sheep", "bottle")  # B, C, D
SIZES = {"vgg16": 300, "mobilenet_v3_large": 320}


def _save(path, net: nn.Module, names, dataset: str | None = "VOC") -> str:
    """``net``'s weights at ``path`` with the sidecar train.py writes."""
    state = net.state_dict()
    torch.save(state, path)
    write_sidecar(path, ModelFacts.from_model(net, names, dataset), state)
    return str(path)


def _trained_like(net: nn.Module, seed: int) -> nn.Module:
    """``net`` with every parameter and BatchNorm statistic moved off its initial value, as training would."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, value in net.state_dict().items():
            if value.is_floating_point():
                value.add_(0.05 * torch.randn(value.shape, generator=generator))
                if key.endswith("running_var"):
                    value.abs_()
    return net


@pytest.fixture(scope="module")
def voc_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The classic layout: a bare VOC-shaped SSD300 state_dict (21 classes), no sidecar."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("classic") / "ssd300_voc.pth"
    torch.save(build_ssd("test", 300, 21).state_dict(), path)
    return str(path)


def test_class_rows_pick_each_anchors_rows() -> None:
    # 2 anchors x 3 classes: anchor a's class k is channel 3a + k
    assert class_rows(6, 3, [0, 2]).tolist() == [0, 2, 3, 5]
    state = {"conf.0.weight": torch.arange(6.0)[:, None], "conf.1.pointwise.bias": torch.arange(6.0), "loc.0.bias": 1}
    keep_class_rows(state, 3, [2, 0])
    assert state["conf.0.weight"].flatten().tolist() == [2, 0, 5, 3]
    assert state["conf.1.pointwise.bias"].tolist() == [2, 0, 5, 3] and state["loc.0.bias"] == 1
    with pytest.raises(ValueError, match="7 outputs, not a multiple of 3"):
        class_rows(7, 3, [0])


def _outputs(net: nn.Module, pictures: torch.Tensor, features: list[torch.Tensor] | None) -> tuple:
    """``net.predict`` in eval mode: (loc [B, P, 4], conf [B, P, C]); ``features`` stand in for the feature maps
    (SSD300's VGG16 takes seconds a picture on one CPU thread; the loaded backbones are compared tensor by tensor)."""
    if features is not None:
        net.sources = lambda x: features
    with torch.no_grad():
        return net.eval().predict(pictures)


@pytest.mark.parametrize("architecture", ["vgg16", "mobilenet_v3_large"])
def test_shared_classes_start_with_the_source_outputs(architecture: str, tmp_path) -> None:
    """A, B, C → B, C, D: before any step the new model's logits for background, B and C and its box offsets are
    the source's on the same pictures; D's rows keep the fresh initialisation."""
    torch.manual_seed(1)
    size = SIZES[architecture]
    source_net = _trained_like(build_ssd("train", size, 4, architecture=architecture), seed=2)
    source = read_source(_save(tmp_path / "abc.pth", source_net, SOURCE_CLASSES))
    facts = finetune_facts(source, TARGET_CLASSES, "VOC")
    torch.manual_seed(3)
    net = build_from_facts(facts, "train")
    fresh = {k: v.clone() for k, v in net.state_dict().items()}
    plan = plan_finetune(source, facts)
    report = apply_finetune(net, plan)
    assert plan.rows == ((0, 0), (1, 2), (2, 3)) and plan.new == ("bottle",)
    assert "classes kept: background, boat, sheep; new: bottle" in report.summary()
    assert report.left == {}
    state = net.state_dict()
    assert all(torch.equal(v, source.state[k]) for k, v in state.items() if not CLASS_HEAD_KEY.fullmatch(k))

    generator = torch.Generator().manual_seed(4)
    pictures = torch.randn(2, 3, size, size, generator=generator)
    features = None
    if architecture == "vgg16":
        shapes = [(512, 38), (1024, 19), (512, 10), (256, 5), (256, 3), (256, 1)]
        features = [torch.randn(2, c, n, n, generator=generator) for c, n in shapes]
    loc_s, conf_s = _outputs(source_net, pictures, features)
    loc_t, conf_t = _outputs(net, pictures, features)
    torch.testing.assert_close(loc_t, loc_s, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conf_t[..., :3], conf_s[..., [0, 2, 3]], rtol=1e-5, atol=1e-5)
    for key in (k for k in fresh if CLASS_HEAD_KEY.fullmatch(k)):
        bottle = class_rows(fresh[key].shape[0], 4, [3])
        assert torch.equal(state[key][bottle], fresh[key][bottle]), key
        assert not torch.equal(state[key], fresh[key]), key


def test_the_classic_voc_model_to_three_of_its_classes(voc_file: str) -> None:
    """Every backbone, extra and loc tensor loads; each conf head takes background's, car's, person's and dog's rows."""
    source = read_source(voc_file)
    assert source.class_names == tuple(VOC_CLASSES)
    facts = finetune_facts(source, ["car", "person", "dog"], "VOC")
    net = build_from_facts(facts, "train")
    report = apply_finetune(net, plan_finetune(source, facts))

    keys = list(net.state_dict())
    assert sorted(report.loaded) == sorted(k for k in keys if not k.startswith("conf."))
    assert sorted(report.by_rows) == sorted(k for k in keys if k.startswith("conf.")) and len(report.by_rows) == 12
    assert report.summary().endswith("71 of 71 tensors loaded (12 class heads by rows); classes kept: background, "
                                     "car, person, dog; new: none")  # fmt: skip
    wanted = [0, *(VOC_CLASSES.index(n) + 1 for n in ("car", "person", "dog"))]
    for key in ("conf.0.weight", "conf.5.bias", "vgg.0.weight", "loc.3.weight", "extras.7.bias", "L2Norm.weight"):
        theirs, ours = source.state[key], net.state_dict()[key]
        if key.startswith("conf."):
            theirs = theirs[class_rows(theirs.shape[0], 21, wanted)]
        assert torch.equal(ours, theirs), key


def test_a_class_map_maps_differing_names(voc_file: str, tmp_path) -> None:
    source = read_source(voc_file)
    facts = finetune_facts(source, ["motorcycle", "CAR", "widget"], "VOC")
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"Motorcycle": "motorbike"}))
    plan = plan_finetune(source, facts, str(mapping))
    assert plan.kept == {"motorcycle": "motorbike", "CAR": "car"} and plan.new == ("widget",)
    net = build_from_facts(facts, "train")
    report = apply_finetune(net, plan)
    assert "classes kept: background, motorcycle (from motorbike), CAR; new: widget" in report.summary()
    rows = class_rows(84, 21, [VOC_CLASSES.index("motorbike") + 1])
    assert torch.equal(net.state_dict()["conf.0.bias"][class_rows(16, 4, [1])], source.state["conf.0.bias"][rows])
    assert plan.record() == {"source": voc_file, "kept": {"motorcycle": "motorbike", "CAR": "car"}, "new": ["widget"]}

    mapping.write_text(json.dumps({"widget": "unicorn"}))
    with pytest.raises(ValueError, match=r"maps 'widget' to 'unicorn', which .* does not score"):
        plan_finetune(source, facts, str(mapping))
    with pytest.raises(ValueError, match="maps 'truck', which is not one of the new model's 3 classes"):
        plan_finetune(source, facts, {"truck": "car"})
    mapping.write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        plan_finetune(source, facts, str(mapping))


def test_other_priors_leave_the_box_heads_and_the_heads_of_other_shapes(voc_file: str) -> None:
    source = read_source(voc_file)
    priors = {**dict(source.facts.prior_config), "aspect_ratios": [[2, 3]] * 6}  # 6 boxes on maps 0, 4 and 5 too
    facts = finetune_facts(source, ["car"], "VOC", priors)
    report = apply_finetune(build_from_facts(facts, "train"), plan_finetune(source, facts))
    lines = report.lines()
    assert len(lines) == 3 and "53 of 71 tensors loaded (6 class heads by rows)" in lines[0]
    assert lines[1].startswith(f"not loaded (other priors than {voc_file}'s): loc.0.weight")
    assert lines[1].endswith("(12 tensors)")
    assert lines[2] == (f"not loaded (other boxes per location than {voc_file}'s): conf.0.weight, conf.0.bias, "
                        "conf.4.weight, conf.4.bias, conf.5.weight, conf.5.bias")  # fmt: skip


def test_nothing_fits_is_one_line(tmp_path) -> None:
    lite = build_ssd("test", 320, 3, architecture="mobilenet_v3_large")
    source = read_source(_save(tmp_path / "lite.pth", lite, ["car", "boat"]))
    vgg = ModelFacts(300, False, ("car",), get_config("VOC", 300), "VOC")
    with pytest.raises(ValueError, match="nothing of .*lite.pth fits: it holds an SSDLite320-MobileNetV3") as info:
        plan_finetune(source, vgg)
    assert "\n" not in str(info.value)


def test_a_frozen_backbone_keeps_weights_and_batchnorm_statistics() -> None:
    """SSDLite (BatchNorm throughout): after SGD steps in train mode the backbone is bit-identical, the rest moved."""
    torch.manual_seed(5)
    net = build_ssd("train", 320, 3, architecture="mobilenet_v3_large")
    assert freeze(net, "backbone") == [net.backbone]
    before = {k: v.clone() for k, v in net.state_dict().items()}
    params = trainable_parameters(net)
    assert {id(p) for p in params} == {id(p) for n, p in net.named_parameters() if not n.startswith("backbone.")}
    optimizer = torch.optim.SGD(params, lr=0.1, momentum=0.9)
    criterion = MultiBoxLoss(3, 0.5, True, 0, True, 3, 0.5, False)
    pictures = torch.randn(2, 3, 320, 320, generator=torch.Generator().manual_seed(6))
    targets = [torch.tensor([[0.1, 0.1, 0.6, 0.5, 0.0]]), torch.tensor([[0.3, 0.2, 0.9, 0.9, 1.0]])]
    for _ in range(2):
        net.train()  # what a loop may call: frozen BatchNorm must stay on its running statistics
        loss_l, loss_c = criterion(net(pictures), targets)
        optimizer.zero_grad()
        (loss_l + loss_c).backward()
        optimizer.step()
    after = net.state_dict()
    backbone = [k for k in before if k.startswith("backbone.")]
    assert any(k.endswith("running_mean") for k in backbone)
    assert all(torch.equal(after[k], before[k]) for k in backbone)
    assert not any(m.training for m in net.backbone.modules() if isinstance(m, nn.BatchNorm2d))
    for prefix in ("extras.", "loc.", "conf."):  # the rest trains, BatchNorm statistics included
        assert not all(torch.equal(after[k], before[k]) for k in before if k.startswith(prefix)), prefix
    assert not torch.equal(after["extras.0.reduce.1.running_mean"], before["extras.0.reduce.1.running_mean"])


def test_vgg_freezes_through_conv7() -> None:
    net = build_ssd("train", 300, 3, batch_norm=True)
    assert freeze(net, "none") == [] and all(p.requires_grad for p in net.parameters())
    freeze(net, "backbone")
    frozen = {n for n, p in net.named_parameters() if not p.requires_grad}
    assert frozen == {n for n, _ in net.named_parameters() if n.startswith("vgg.")}
    assert not any(m.training for m in net.vgg.modules() if isinstance(m, nn.BatchNorm2d))
    assert all(m.training for m in net.extras.modules())
    with pytest.raises(ValueError, match="cannot freeze 'head'"):
        freeze(net, "head")
