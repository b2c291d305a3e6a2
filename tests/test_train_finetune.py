"""train.py --finetune / --class_map / --freeze: a fine-tune with a frozen backbone resumes exactly and records where
it started; the flags that cannot go with it are one line and exit 2.

The source is an SSDLite320 (BatchNorm throughout) of three classes; the fine-tune trains the six synthetic classes
on a 4-picture generated dataset, batch 2, one thread, a few iterations.
"""

from __future__ import annotations

import glob
import json
import math

import pytest
import torch

import train
from ssd import build_ssd
from utils.checkpoint import ModelFacts, read_sidecar, write_sidecar
from utils.training.log import read_log

pytestmark = pytest.mark.usefixtures("one_thread")
SOURCE_CLASSES = ["automobile", "boat", "sheep"]  # the data's "car" is the source's "automobile", by a class map
NEW_CLASSES = ["boat", "sheep", "bottle", "car", "person", "tvmonitor"]


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A trained-looking SSDLite320 of automobile, boat and sheep, with its sidecar."""
    torch.manual_seed(0)
    net = build_ssd("train", 320, 4, architecture="mobilenet_v3_large")
    with torch.no_grad():
        for value in net.state_dict().values():
            if value.is_floating_point():
                value.add_(0.01).abs_()  # BatchNorm statistics off their initial values too
    path = str(tmp_path_factory.mktemp("source") / "lite_cbs.pth")
    torch.save(net.state_dict(), path)
    write_sidecar(path, ModelFacts.from_model(net, SOURCE_CLASSES, "VOC"), net.state_dict())
    return path


@pytest.fixture(scope="module")
def lists(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    folder = tmp_path_factory.mktemp("lists")
    (folder / "classes.txt").write_text("\n".join(NEW_CLASSES) + "\n")
    (folder / "map.json").write_text(json.dumps({"car": "automobile"}))
    return str(folder / "classes.txt"), str(folder / "map.json")


def _argv(root: str, folder, *extra: str) -> list[str]:
    return [
        "--dataset_root", root, "--save_folder", str(folder), "--batch_size", "2", "--num_workers", "0",
        "--cuda", "false", "--seed", "3", "--log_every", "1", "--save_every", "100", *extra,
    ]  # fmt: skip


def _only(pattern: str) -> str:
    (path,) = glob.glob(pattern)
    return path


def test_a_frozen_fine_tune_resumes_exactly_and_records_its_source(
    tiny_voc, source, lists, tmp_path, capsys, fail_line
) -> None:
    """3 iterations == 1, --resume, 2 more (bit-equal losses and weights); the backbone ends as the source's, BatchNorm
    statistics included; the sidecar and _last.ckpt record the source and the classes kept; --freeze and --classes
    are kept."""
    classes, class_map = lists
    start = ("--finetune", source, "--classes", classes, "--class_map", class_map, "--freeze", "backbone",
             "--lr", "0.01", "--warmup", "0")  # fmt: skip
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train.main(_argv(tiny_voc, whole, "--max_iter", "3", *start)) == 0
    out = capsys.readouterr().out
    assert (f"fine-tuning from {source}: 476 of 476 tensors loaded (12 class heads by rows); classes kept: background, "
            "boat, sheep, car (from automobile); new: bottle, person, tvmonitor") in out  # fmt: skip
    assert train.main(_argv(tiny_voc, parts, "--max_iter", "1", *start)) == 0
    ckpt = _only(str(parts / "*_last.ckpt"))
    assert train.main(_argv(tiny_voc, parts, "--max_iter", "3", "--resume", ckpt)) == 0
    line = fail_line(train.main, _argv(tiny_voc, parts, "--max_iter", "4", "--resume", ckpt, "--freeze", "none"))
    assert "--freeze none contradicts" in line

    assert read_log(str(parts / "train_log.csv"))["loss"] == read_log(str(whole / "train_log.csv"))["loss"]
    assert all(math.isfinite(v) for v in read_log(str(whole / "train_log.csv"))["loss"])
    final_whole = torch.load(_only(str(whole / "*_3.pth")), weights_only=True)
    final_parts = torch.load(_only(str(parts / "*_3.pth")), weights_only=True)
    assert all(torch.equal(final_whole[k], final_parts[k]) for k in final_whole)
    first = torch.load(source, weights_only=True)
    backbone = [k for k in first if k.startswith("backbone.")]
    assert any(k.endswith("running_var") for k in backbone)
    assert all(torch.equal(final_parts[k], first[k]) for k in backbone)
    assert not torch.equal(final_parts["extras.0.reduce.0.weight"], first["extras.0.reduce.0.weight"])

    record = {"source": source, "kept": {"boat": "boat", "sheep": "sheep", "car": "automobile"},
              "new": ["bottle", "person", "tvmonitor"]}  # fmt: skip
    saved = torch.load(ckpt, weights_only=True)
    assert saved["extra"]["finetuned_from"] == record and saved["args"]["freeze"] == "backbone"
    sidecar = _only(str(parts / "*_3.json"))
    with open(sidecar, encoding="utf-8") as f:
        assert json.load(f)["finetuned_from"] == record
    assert read_sidecar(sidecar.replace(".json", ".pth")).class_names == tuple(NEW_CLASSES)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--resume", "{ckpt}"], "--finetune starts a new run; --resume {ckpt} continues one"),
        (["--basenet", "weights/vgg16_reducedfc.pth"], "no base network is read: drop --basenet"),
        (["--size", "300"], "--size 300 contradicts --finetune {source}, which holds an SSDLite320-MobileNetV3"),
        (["--backbone", "vgg16"], "--backbone vgg16 contradicts --finetune"),
    ],
)
def test_flags_that_cannot_go_with_a_fine_tune(extra, expected, source, tmp_path, fail_line) -> None:
    ckpt = str(tmp_path / "ssdlite320_VOC_last.ckpt")
    extra = [e.format(ckpt=ckpt) for e in extra]
    line = fail_line(train.main, _argv(str(tmp_path), tmp_path / "w", "--finetune", source, *extra))
    assert expected.format(ckpt=ckpt, source=source) in line


def test_class_map_without_finetune_and_a_file_nothing_fits(tmp_path, fail_line) -> None:
    line = fail_line(train.main, _argv(str(tmp_path), tmp_path / "w", "--class_map", "map.json"))
    assert "--class_map maps the new classes to those of a --finetune model" in line
    backbone_only = tmp_path / "vgg16_reducedfc.pth"
    torch.save({"0.weight": torch.zeros(64, 3, 3, 3), "0.bias": torch.zeros(64)}, backbone_only)
    line = fail_line(train.main, _argv(str(tmp_path), tmp_path / "w", "--finetune", str(backbone_only)))
    assert "not an SSD state_dict" in line and "backbone-only file" in line
