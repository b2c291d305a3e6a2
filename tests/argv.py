"""Command lines the test files share."""

from __future__ import annotations

from pathlib import Path


def train_argv(root: str | Path, folder: str | Path, *extra: str, seed: int = 3) -> list[str]:
    """train.py's arguments for a tiny VGG16 run from scratch on the CPU: the dataset under ``root``, files in
    ``folder``, batch 1, no loader workers, a log line at every iteration; ``extra`` after them."""
    return [
        "--dataset_root", str(root), "--save_folder", str(folder), "--basenet", "none", "--batch_size", "1",
        "--num_workers", "0", "--cuda", "false", "--seed", str(seed), "--log_every", "1", *extra,
    ]  # fmt: skip
