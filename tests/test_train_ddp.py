"""train.py under ``torchrun --nproc_per_node 2`` with the gloo backend on the CPU: two ranks with one picture
each train the model one process trains with both pictures."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
@pytest.mark.filterwarnings("ignore:--basenet none:UserWarning")
def test_two_gloo_ranks_train_what_one_process_trains_with_the_whole_batch(
    tmp_path: Path, tiny_voc: str, free_port: int
) -> None:
    folder, single = tmp_path / "w", tmp_path / "single"
    common = [
        "--dataset_root", tiny_voc, "--basenet", "none", "--batch_size", "2", "--max_iter", "2", "--save_every", "1",
        "--num_workers", "0", "--cuda", "false", "--seed", "1", "--log_every", "1",
    ]  # fmt: skip
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(free_port), "train.py", "--save_folder", str(folder), *common,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "on 2 x cpu" in proc.stdout
    # the same seed on one process sees the same two pictures per step (rank r takes the r-th of each pair)
    assert train.main(["--save_folder", str(single), *common]) == 0
    ddp = torch.load(folder / "ssd300_VOC_2.pth", weights_only=True)
    one = torch.load(single / "ssd300_VOC_2.pth", weights_only=True)
    start = torch.load(single / "ssd300_VOC_1.pth", weights_only=True)
    assert ddp.keys() == one.keys()
    step = sum(float((one[k] - start[k]).norm() ** 2) for k in one) ** 0.5
    gap = sum(float((ddp[k] - one[k]).norm() ** 2) for k in one) ** 0.5
    assert step > 0.1 and gap < 1e-3 * step, (gap, step)  # only the order of float sums differs
    losses = [_losses(f / "train_log.csv") for f in (folder, single)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-6)
    # rank 0 alone logs and saves: one row per iteration, files for both iterations
    with open(folder / "train_log.csv") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()] == ["iter", "1", "2"]
    ckpt = torch.load(folder / "ssd300_VOC_last.ckpt", weights_only=True)
    assert ckpt["iteration"] == 2 and ckpt["world_size"] == 2 and ckpt["args"]["batch_size"] == 2
    assert (folder / "ssd300_VOC_1.pth").is_file() and (folder / "ssd300_VOC_2.pth").is_file()


def _losses(path: Path) -> list[float]:
    """The ``loss`` column of a train_log.csv."""
    rows = [line.split(",") for line in path.read_text().splitlines()]
    column = rows[0].index("loss")
    return [float(row[column]) for row in rows[1:]]
