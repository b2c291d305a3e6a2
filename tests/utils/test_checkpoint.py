"""utils/checkpoint.py: reading weights files, inferring the model, strict loading with clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ssd import build_ssd
from utils.checkpoint import (
    CheckpointError,
    describe_state_dict,
    fit_report,
    load_model,
    load_state_dict_file,
    read_checkpoint,
)


@pytest.fixture(scope="module")
def sd3() -> dict[str, torch.Tensor]:
    """State dict of an SSD300 with 3 classes (background + 2)."""
    torch.manual_seed(0)
    return build_ssd("train", 300, 3).state_dict()


@pytest.fixture(scope="module")
def sd3_file(tmp_path_factory: pytest.TempPathFactory, sd3: dict[str, torch.Tensor]) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "ssd300_3.pth"
    torch.save(sd3, path)
    return path


def _fake_sd(num_heads: int, num_classes: int, bn: bool = False) -> dict[str, torch.Tensor]:
    sd = {"vgg.0.weight": torch.zeros(64, 3, 3, 3), "L2Norm.weight": torch.zeros(512)}
    for i in range(num_heads):
        boxes = 4 if i in (0, num_heads - 2, num_heads - 1) else 6
        sd[f"loc.{i}.weight"] = torch.zeros(boxes * 4, 8, 3, 3)
        sd[f"loc.{i}.bias"] = torch.zeros(boxes * 4)
        sd[f"conf.{i}.weight"] = torch.zeros(boxes * num_classes, 8, 3, 3)
    if bn:
        sd["vgg.1.running_mean"] = torch.zeros(64)
    return sd


def test_describe_state_dict() -> None:
    assert describe_state_dict(_fake_sd(6, 21)) == (300, 21, False)
    assert describe_state_dict(_fake_sd(7, 81)) == (512, 81, False)
    assert describe_state_dict(_fake_sd(6, 3, bn=True)) == (300, 3, True)
    with pytest.raises(CheckpointError, match="backbone"):
        describe_state_dict({"0.weight": torch.zeros(64, 3, 3, 3)})  # a vgg16_reducedfc.pth
    with pytest.raises(CheckpointError, match="5 loc heads"):
        describe_state_dict(_fake_sd(5, 21))


def test_describe_real_models(sd3: dict[str, torch.Tensor]) -> None:
    assert describe_state_dict(sd3) == (300, 3, False)
    assert describe_state_dict(build_ssd("train", 512, 21, batch_norm=True).state_dict()) == (512, 21, True)


def test_plain_full_and_ddp_files(tmp_path: Path, sd3: dict[str, torch.Tensor], sd3_file: Path) -> None:
    plain = load_state_dict_file(sd3_file)
    assert plain.keys() == sd3.keys()
    assert all(torch.equal(plain[k], sd3[k]) for k in sd3)

    full = tmp_path / "ssd300_VOC_last.ckpt"
    torch.save({"model": sd3, "optimizer": {"state": {}}, "iteration": 7, "class_names": ["a", "b"]}, full)
    sd, meta = read_checkpoint(full)
    assert sd.keys() == sd3.keys()
    assert meta["iteration"] == 7 and meta["class_names"] == ["a", "b"] and "model" not in meta

    ddp = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in sd3.items()}, ddp)
    assert load_state_dict_file(ddp).keys() == sd3.keys()


def test_missing_corrupt_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found: .*nothing.pth"):
        load_state_dict_file(tmp_path / "nothing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x02garbage")
    with pytest.raises(CheckpointError, match="corrupt.pth"):
        load_state_dict_file(corrupt)
    foreign = tmp_path / "foreign.pth"
    torch.save([1, 2, 3], foreign)
    with pytest.raises(CheckpointError, match="foreign.pth.*got list"):
        load_state_dict_file(foreign)
    mixed = tmp_path / "mixed.pth"
    torch.save({"a": torch.zeros(1), "epoch": 3}, mixed)
    with pytest.raises(CheckpointError, match="epoch"):
        load_state_dict_file(mixed)


def test_load_model_infers_size_and_classes(sd3: dict[str, torch.Tensor], sd3_file: Path) -> None:
    net = load_model(sd3_file, top_k=50)
    assert (net.size, net.num_classes, net.phase, net.training) == (300, 3, "test", False)
    assert all(torch.equal(net.state_dict()[k], sd3[k]) for k in sd3)
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 300, 300))
    assert out.shape == (1, 3, 50, 5)


def test_load_model_other_num_classes_names_keys(sd3_file: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        load_model(sd3_file, num_classes=21)
    message = str(info.value)
    assert "\n" not in message
    assert str(sd3_file) in message and "3 classes" in message and "21 classes" in message
    assert "conf.0.weight checkpoint [12, 512, 3, 3] vs model [84, 512, 3, 3]" in message
    assert "conf.5.bias" in message and "loc.0.weight" not in message


def test_load_model_bn_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "bn.pth"
    torch.save(build_ssd("train", 300, 4, batch_norm=True).state_dict(), path)
    net = load_model(path, phase="train")
    assert net.batch_norm and net.num_classes == 4 and net.phase == "train"


def test_fit_report_lists_missing_and_unexpected() -> None:
    model = {"a": torch.zeros(2), "b": torch.zeros(3)}
    assert fit_report(model, {"a": torch.zeros(2), "b": torch.zeros(3)}) == ""
    report = fit_report(model, {"a": torch.zeros(2), "c": torch.zeros(1)})
    assert report == "missing keys: b; unexpected keys: c"
    many = fit_report({}, {f"k{i}": torch.zeros(1) for i in range(20)})
    assert "(+4 more)" in many
