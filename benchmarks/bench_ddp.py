"""DDP scaling on gloo, as a sanity figure: the same global batch trained by 1 process and by 2 ranks (torchrun).

    python benchmarks/bench_ddp.py --batch_size 4 --iters 6 --out benchmarks/results/ddp_gloo_cpu_<date>.json

On a CPU both ranks share the same cores, so 2 ranks are not expected to be faster: the figure shows that the
distributed path adds no large overhead (one all-reduce of the statistics and DDP's gradient all-reduce per step).
Throughput is the median ``img_per_s`` of ``train_log.csv`` after the first ``--skip`` iterations.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repository's packages import

from benchmarks.repo import REPO_ROOT  # noqa: E402
from benchmarks.timing import add_common_flags, machine_info, median_img_per_s, write_json  # noqa: E402
from data.synthetic import make_voc_dataset  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(ranks: int, root: str, folder: Path, args: argparse.Namespace) -> float:
    argv = [
        "train.py", "--dataset_root", root, "--save_folder", str(folder), "--basenet", "none",
        "--batch_size", str(args.batch_size), "--max_iter", str(args.iters), "--save_every", str(args.iters),
        "--num_workers", "0", "--cuda", "false", "--seed", "0", "--image_sets", "2007:trainval",
    ]  # fmt: skip
    launcher = [sys.executable]
    if ranks > 1:
        launcher += ["-m", "torch.distributed.run", "--nproc_per_node", str(ranks), "--master_addr", "127.0.0.1",
                     "--master_port", str(_free_port())]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // ranks))}
    subprocess.run([*launcher, *argv], cwd=REPO_ROOT, env=env, check=True, capture_output=True, text=True)
    return median_img_per_s(folder / "train_log.csv", args.skip)


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="DDP scaling on gloo: 1 process vs 2 ranks, same global batch")
    parser.add_argument("--batch_size", type=int, default=4, help="global batch")
    parser.add_argument("--iters", type=int, default=6)
    parser.add_argument("--skip", type=int, default=2, help="first iterations left out of the median")
    add_common_flags(parser, ("out", "note"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as work:
        root = make_voc_dataset(os.path.join(work, "voc"), num_train=2 * args.batch_size, num_test=0, seed=0)
        one = _train(1, root, Path(work, "one"), args)
        two = _train(2, root, Path(work, "two"), args)
    report = {
        "machine": machine_info(torch.device("cpu")),
        "backend": "gloo",
        "global_batch": args.batch_size,
        "iterations": args.iters,
        "img_per_s": {"1_process": round(one, 3), "2_ranks": round(two, 3)},
        "ratio_2_ranks_to_1": round(two / one, 3),
        "notes": [
            "Both ranks share the machine's cores (OMP threads split between them): a sanity figure for the "
            "overhead of the distributed path, not a speed-up.",
            *args.note,
        ],
    }
    print(report["img_per_s"], "ratio", report["ratio_2_ranks_to_1"])
    if args.out:
        write_json(report, args.out)
    return report


if __name__ == "__main__":
    main()
