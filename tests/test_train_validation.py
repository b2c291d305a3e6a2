"""train.py --eval_every: validation rows equal eval.py's numbers, the best checkpoint, no effect on the losses."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import sys

import pytest
import torch

import train
from utils.training.log import read_log

pytestmark = pytest.mark.filterwarnings("ignore:--basenet none:UserWarning")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _eval_script():
    spec = importlib.util.spec_from_file_location("eval", os.path.join(REPO, "eval.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("eval", module)
    spec.loader.exec_module(module)
    return module


def _argv(root: str, folder, *extra: str) -> list[str]:
    return [
        "--dataset_root", root, "--save_folder", str(folder), "--basenet", "none", "--batch_size", "1",
        "--num_workers", "0", "--cuda", "false", "--seed", "5", "--log_every", "1", "--image_sets", "2007:trainval",
        *extra,
    ]  # fmt: skip


def _eval_rows(folder) -> list[list[str]]:
    with open(os.path.join(folder, "eval_log.csv"), newline="") as f:
        return list(csv.reader(f))


@pytest.mark.slow
def test_validation_during_training(tmp_path, one_thread) -> None:
    from data.synthetic import make_voc_dataset

    root = make_voc_dataset(str(tmp_path / "voc"), num_train=3, num_test=3, seed=1)
    with_eval, plain = tmp_path / "with_eval", tmp_path / "plain"
    validation = ("--eval_every", "1", "--eval_images", "2", "--eval_sets", "2007:test")
    assert train.main(_argv(root, with_eval, "--max_iter", "2", "--save_every", "1", *validation)) == 0
    assert train.main(_argv(root, plain, "--max_iter", "2", "--save_every", "1")) == 0

    # the same losses with and without validation: it draws nothing from the training streams
    log, log_plain = read_log(str(with_eval / "train_log.csv")), read_log(str(plain / "train_log.csv"))
    assert (log["loss_l"], log["loss_c"]) == (log_plain["loss_l"], log_plain["loss_c"])

    rows = _eval_rows(with_eval)
    assert rows[0] == ["iter", "metric", "value", "seconds"] and [r[:2] for r in rows[1:]] == [
        ["1", "voc07"],
        ["2", "voc07"],
    ]
    # eval.py on the same weights and the same seeded subset gives the same number
    ev = _eval_script()
    out = tmp_path / "eval"
    argv = ["--trained_model", str(with_eval / "ssd300_VOC_2.pth"), "--dataset_root", root, "--num_images", "2"]
    assert ev.main(argv + ["--save_folder", str(out), "--num_workers", "0", "--cuda", "false"]) == 0
    assert json.loads((out / "results.json").read_text())["mAP"] == pytest.approx(float(rows[2][2]), abs=1e-12)

    values = [float(r[2]) for r in rows[1:]]
    best_iter = 1 + values.index(max(values))
    best = torch.load(with_eval / "ssd300_VOC_best.pth", weights_only=True)
    same = torch.load(with_eval / f"ssd300_VOC_{best_iter}.pth", weights_only=True)
    assert all(torch.equal(best[k], same[k]) for k in same)
    assert (with_eval / "ssd300_VOC_best.json").is_file()
    recorded = torch.load(with_eval / "ssd300_VOC_last.ckpt", weights_only=True)["extra"]["best"]
    assert recorded["iteration"] == best_iter and recorded["value"] == max(values)

    # a resumed run keeps its best and continues the validation log
    resume = ["--resume", str(with_eval / "ssd300_VOC_last.ckpt"), "--max_iter", "3", *validation]
    assert train.main(_argv(root, with_eval, *resume)) == 0
    rows = _eval_rows(with_eval)
    assert [r[0] for r in rows[1:]] == ["1", "2", "3"]
    kept = torch.load(with_eval / "ssd300_VOC_last.ckpt", weights_only=True)["extra"]["best"]
    assert kept["value"] == max(float(r[2]) for r in rows[1:])
    assert kept["iteration"] in (best_iter, 3)
