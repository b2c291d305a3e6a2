"""train.py under ``torchrun --nproc_per_node 2`` with the gloo backend on the CPU: two ranks with half the pictures
each train the model one process trains with the whole batch, across a stop and a resume."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train
from benchmarks.repo import REPO_ROOT


def _torchrun(port: int, *argv: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(port), "train.py", *argv,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.filterwarnings("ignore:--basenet none:UserWarning")
def test_two_gloo_ranks_stopped_and_resumed_train_what_one_process_trains(
    tmp_path: Path, tiny_voc: str, free_port_factory
) -> None:
    """2 ranks x 2 pictures, 3 SGD steps with a stop and --resume after step 2 == 1 process x 4 pictures, 3 steps."""
    folder, single = tmp_path / "ddp", tmp_path / "single"
    common = [
        "--dataset_root", tiny_voc, "--basenet", "none", "--batch_size", "4", "--save_every", "1",
        "--num_workers", "0", "--cuda", "false", "--seed", "1", "--log_every", "1",
    ]  # fmt: skip
    proc = _torchrun(free_port_factory(), "--save_folder", str(folder), "--max_iter", "2", *common)
    assert "on 2 x cpu" in proc.stdout
    resume = ["--resume", str(folder / "ssd300_VOC_last.ckpt"), "--max_iter", "3"]
    _torchrun(free_port_factory(), "--save_folder", str(folder), *resume, *common)
    assert train.main(["--save_folder", str(single), "--max_iter", "3", *common]) == 0

    ddp = torch.load(folder / "ssd300_VOC_3.pth", weights_only=True)
    one = torch.load(single / "ssd300_VOC_3.pth", weights_only=True)
    start = torch.load(single / "ssd300_VOC_1.pth", weights_only=True)
    assert ddp.keys() == one.keys()
    largest = max(float(v.abs().max()) for v in one.values())
    gap = max(float((ddp[k] - one[k]).abs().max()) for k in one)
    moved = max(float((one[k] - start[k]).abs().max()) for k in one)
    assert moved > 1e-4 and gap <= 1e-5 * largest, (gap, largest, moved)
    losses = [_losses(f / "train_log.csv") for f in (folder, single)]
    assert len(losses[0]) == 3 and losses[0] == pytest.approx(losses[1], rel=1e-5)
    ckpt = torch.load(folder / "ssd300_VOC_last.ckpt", weights_only=True)
    assert ckpt["iteration"] == 3 and ckpt["world_size"] == 2 and ckpt["args"]["batch_size"] == 4


def _losses(path: Path) -> list[float]:
    """The ``loss`` column of a train_log.csv."""
    rows = [line.split(",") for line in path.read_text().splitlines()]
    column = rows[0].index("loss")
    return [float(row[column]) for row in rows[1:]]
