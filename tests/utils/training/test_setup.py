"""utils/training/setup.py: the save-folder guard (which files a run owns, folders it cannot write)."""

from __future__ import annotations

import argparse
import os

import pytest

from utils.training.engine import TrainError
from utils.training.setup import guard_save_folder
from utils.training.state import is_run_file

RUN_FILES = [
    "ssd300_VOC_5000.pth", "ssd300_VOC_5000.json", "ssd512_COCO_best.pth", "ssd512_COCO_best.json",
    "ssdlite320_VOC_120.pth", "ssdlite320_VOC_last.ckpt", "ssd300_VOC_last.ckpt", "train_log.csv", "eval_log.csv",
    "loss.png", "tensorboard",
]  # fmt: skip
OTHER_FILES = ["vgg16_reducedfc.pth", "ssd300_mAP_77.43_v2.pth", "ssdlite320_coco.pth", "ssdlite320_coco.json",
               "model.onnx", "README.md", "notes.csv"]  # fmt: skip


def _args(folder, resume: str | None = None, overwrite: bool = False) -> argparse.Namespace:
    return argparse.Namespace(save_folder=str(folder), resume=resume, overwrite=overwrite)


@pytest.mark.parametrize("name", RUN_FILES)
def test_a_new_run_never_overwrites_a_file_any_run_writes(tmp_path, name: str) -> None:
    """Another model's weights, sidecars, best, checkpoint, logs, plot or TensorBoard events: all of them stop a new
    run, whatever the new model's name."""
    if name == "tensorboard":
        (tmp_path / name).mkdir()
    else:
        (tmp_path / name).write_bytes(b"another run's")
    assert is_run_file(name)
    with pytest.raises(TrainError) as info:
        guard_save_folder(_args(tmp_path))
    line = str(info.value)
    assert f"holds another run ({name})" in line and "--resume" in line and "--overwrite true" in line
    guard_save_folder(_args(tmp_path, resume="ssd300_VOC_last.ckpt"))
    guard_save_folder(_args(tmp_path, overwrite=True))


def test_files_no_run_writes_do_not_stop_a_new_run(tmp_path) -> None:
    """weights/ holds the base network and converted or published models beside the runs' files."""
    for name in OTHER_FILES:
        (tmp_path / name).write_bytes(b"x")
    assert not any(is_run_file(name) for name in OTHER_FILES)
    guard_save_folder(_args(tmp_path))
    guard_save_folder(_args(tmp_path / "new" / "folder"))


def test_a_long_listing_is_cut(tmp_path) -> None:
    for i in range(1, 8):
        (tmp_path / f"ssd300_VOC_{i}.pth").write_bytes(b"x")
    with pytest.raises(TrainError, match=r"\(ssd300_VOC_1.pth, .* \(\+3 more\)\)"):
        guard_save_folder(_args(tmp_path))


def test_a_save_folder_that_is_a_file_or_lies_in_one(tmp_path) -> None:
    file = tmp_path / "weights"
    file.write_text("not a folder")
    for folder, where in ((file, ""), (file / "run1", f": {file}")):
        with pytest.raises(TrainError) as info:
            guard_save_folder(_args(folder, resume="x.ckpt"))  # checked for a resumed run too
        assert str(info.value) == f"--save_folder {folder}{where} is a file, not a folder"


def test_a_save_folder_that_cannot_be_written(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(os, "access", lambda path, mode: os.path.abspath(path) != str(tmp_path))
    with pytest.raises(TrainError, match=f"--save_folder {tmp_path / 'run'}: cannot write in {tmp_path}"):
        guard_save_folder(_args(tmp_path / "run"))
