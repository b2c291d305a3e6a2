"""train.py --eval_every: validation rows equal eval.py's numbers, the best checkpoint, no effect on the losses;
--tensorboard: the same numbers and the validation pictures in TensorBoard's event files, continued by a resume."""

from __future__ import annotations

import csv
import json
import os
import sys

import pytest
import torch

import train
from tests.argv import train_argv
from utils.training.log import read_log

pytestmark = pytest.mark.filterwarnings("ignore:--basenet none:UserWarning")
TRAINVAL = ("--image_sets", "2007:trainval")


def _eval_rows(folder) -> list[list[str]]:
    with open(os.path.join(folder, "eval_log.csv"), newline="") as f:
        return list(csv.reader(f))


def _events(folder):  # noqa: ANN202 - TensorBoard's EventAccumulator
    """The run's TensorBoard events as TensorBoard itself reads them (every event file of the folder, purges
    applied)."""
    from tensorboard.backend.event_processing.event_accumulator import IMAGES, SCALARS, EventAccumulator

    events = EventAccumulator(str(folder / "tensorboard"), size_guidance={SCALARS: 0, IMAGES: 0})
    events.Reload()
    return events


def _scalars(events, tag: str) -> tuple[list[int], list[float]]:
    found = events.Scalars(tag)
    return [e.step for e in found], [e.value for e in found]


def _check_events(folder, iterations: list[int]) -> None:
    """Losses, lr and pictures/s at every iteration (--log_every 1), the validation mAP, per-class APs and the
    three validation pictures at every validation, all equal to the run's CSV logs."""
    events, log, rows = _events(folder), read_log(str(folder / "train_log.csv")), _eval_rows(folder)[1:]
    assert log["iter"] == iterations and [int(r[0]) for r in rows] == iterations
    for tag, column in (("loss/loc", "loss_l"), ("loss/conf", "loss_c"), ("loss/total", "loss"), ("train/lr", "lr")):
        steps, values = _scalars(events, tag)
        assert steps == iterations and values == pytest.approx(log[column], rel=1e-6), tag
    assert _scalars(events, "train/pictures_per_s")[0] == iterations
    steps, values = _scalars(events, "validation/mAP")
    assert steps == iterations and values == pytest.approx([float(r[2]) for r in rows], rel=1e-6)
    assert any(tag.startswith("validation_AP/") for tag in events.Tags()["scalars"])
    pictures = sorted(tag for tag in events.Tags()["images"])
    assert pictures == ["detections/0", "detections/1", "detections/2"]  # the split's 3 pictures
    for tag in pictures:
        shown = events.Images(tag)
        assert [e.step for e in shown] == iterations
        assert len({(e.width, e.height) for e in shown}) == 1 and shown[0].width >= 300  # the same picture each time


@pytest.mark.slow
def test_validation_during_training(tmp_path, one_thread, scripts) -> None:
    from data.synthetic import make_voc_dataset

    root = make_voc_dataset(str(tmp_path / "voc"), num_train=3, num_test=3, seed=1)
    with_eval, plain = tmp_path / "with_eval", tmp_path / "plain"
    validation = ("--eval_every", "1", "--eval_images", "2", "--eval_sets", "2007:test", "--tensorboard", "true")
    steps = (*TRAINVAL, "--max_iter", "2", "--save_every", "1")
    assert train.main(train_argv(root, with_eval, *steps, *validation, seed=5)) == 0
    assert train.main(train_argv(root, plain, *steps, seed=5)) == 0

    # the same losses with and without validation: it draws nothing from the training streams
    log, log_plain = read_log(str(with_eval / "train_log.csv")), read_log(str(plain / "train_log.csv"))
    assert (log["loss_l"], log["loss_c"]) == (log_plain["loss_l"], log_plain["loss_c"])

    rows = _eval_rows(with_eval)
    assert rows[0] == ["iter", "metric", "value", "seconds"] and [r[:2] for r in rows[1:]] == [
        ["1", "voc07"],
        ["2", "voc07"],
    ]
    # eval.py on the same weights and the same seeded subset gives the same number
    out = tmp_path / "eval"
    argv = ["--trained_model", str(with_eval / "ssd300_VOC_2.pth"), "--dataset_root", root, "--num_images", "2"]
    assert scripts.eval.main(argv + ["--save_folder", str(out), "--num_workers", "0", "--cuda", "false"]) == 0
    assert json.loads((out / "results.json").read_text())["mAP"] == pytest.approx(float(rows[2][2]), abs=1e-12)

    values = [float(r[2]) for r in rows[1:]]
    best_iter = 1 + values.index(max(values))
    best = torch.load(with_eval / "ssd300_VOC_best.pth", weights_only=True)
    same = torch.load(with_eval / f"ssd300_VOC_{best_iter}.pth", weights_only=True)
    assert all(torch.equal(best[k], same[k]) for k in same)
    assert (with_eval / "ssd300_VOC_best.json").is_file()
    recorded = torch.load(with_eval / "ssd300_VOC_last.ckpt", weights_only=True)["extra"]["best"]
    assert recorded["iteration"] == best_iter and recorded["value"] == max(values)
    _check_events(with_eval, [1, 2])

    # a run killed after logging iteration 3 but before saving it: the resume's events replace that step
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(with_eval / "tensorboard")) as killed:
        killed.add_scalar("loss/total", 1e6, 3)

    # a resumed run keeps its best and continues the validation log
    resume = ["--resume", str(with_eval / "ssd300_VOC_last.ckpt"), "--max_iter", "3", *validation]
    assert train.main(train_argv(root, with_eval, *TRAINVAL, *resume, seed=5)) == 0
    rows = _eval_rows(with_eval)
    assert [r[0] for r in rows[1:]] == ["1", "2", "3"]
    kept = torch.load(with_eval / "ssd300_VOC_last.ckpt", weights_only=True)["extra"]["best"]
    assert kept["value"] == max(float(r[2]) for r in rows[1:])
    assert kept["iteration"] in (best_iter, 3)
    _check_events(with_eval, [1, 2, 3])


def test_tensorboard_without_the_package_is_one_line(tmp_path, tiny_voc, monkeypatch, fail_line) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # importing it raises ImportError
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    folder = tmp_path / "run"
    argv = train_argv(tiny_voc, folder, *TRAINVAL, "--max_iter", "1", "--tensorboard", "true", seed=5)
    err = fail_line(train.main, argv)
    assert "--tensorboard true needs the tensorboard package (pip install tensorboard)" in err
    assert not folder.exists()  # refused before anything is written
