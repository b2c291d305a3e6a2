"""train.py under ``torchrun --nproc_per_node 2`` with the gloo backend on the CPU."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest
import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_gloo_ranks_train_and_end_with_identical_parameters(tmp_path) -> None:
    from data.synthetic import make_voc_dataset

    root, folder = tmp_path / "voc", tmp_path / "w"
    make_voc_dataset(str(root), num_train=4, num_test=1, seed=0)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
        "--master_port", str(_free_port()), "train.py", "--dataset_root", str(root), "--save_folder", str(folder),
        "--basenet", "none", "--batch_size", "2", "--max_iter", "2", "--save_every", "1", "--num_workers", "0",
        "--cuda", "false", "--seed", "1", "--log_every", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert re.search(r"parameters identical on all 2 ranks \(sha256 [0-9a-f]{64}\)", proc.stdout), proc.stdout
    assert "on 2 x cpu" in proc.stdout
    # rank 0 alone logs and saves: one row per iteration, files for both iterations
    with open(folder / "train_log.csv") as f:
        assert [line.split(",")[0] for line in f.read().splitlines()] == ["iter", "1", "2"]
    ckpt = torch.load(folder / "ssd300_VOC_last.ckpt", weights_only=True)
    assert ckpt["iteration"] == 2 and ckpt["world_size"] == 2 and ckpt["args"]["batch_size"] == 2
    assert (folder / "ssd300_VOC_1.pth").is_file() and (folder / "ssd300_VOC_2.pth").is_file()
