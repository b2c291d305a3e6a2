"""Which solver settings suit SSD300 trained from scratch: loss on a fixed batch after N steps per (lr, warm-up, clip).

    python benchmarks/bn_solver_sweep.py --steps 25 --configs 1e-3:0:0,2e-3:0:10 --batch_norm true

A fixed batch of ``--images`` synthetic pictures (``data.synthetic``, BaseTransform: no augmentation), SSD300 with
random weights (same seed for every setting), SGD momentum 0.9 and weight decay 5e-4 as train.py, the lr schedule
of train.py (``WarmupMultiStepLR``) and optional gradient-norm clipping. Records, per setting, the loss and the
gradient norm (before clipping) at every step. It informs the defaults train.py uses under ``--batch_norm true``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repository's packages import

from benchmarks.timing import add_common_flags, machine_info, torch_threads, write_json  # noqa: E402
from data import MEANS, BaseTransform, VOCDetection, detection_collate, get_config  # noqa: E402
from data.synthetic import make_voc_dataset  # noqa: E402
from layers import MultiBoxLoss  # noqa: E402
from ssd import build_ssd  # noqa: E402
from utils.cli import str2bool  # noqa: E402
from utils.training.schedule import WarmupMultiStepLR  # noqa: E402


def parse_configs(text: str) -> list[tuple[float, int, float]]:
    """``"1e-3:0:0,2e-3:10:10"`` -> ``[(lr, warmup, clip), ...]`` (clip 0: off)."""
    configs = []
    for item in text.split(","):
        lr, warmup, clip = item.split(":")
        configs.append((float(lr), int(warmup), float(clip)))
    return configs


def fixed_batch(images: int, seed: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """``images`` synthetic pictures at 300 px: (images [B, 3, 300, 300], targets B x [n_i, 5])."""
    with tempfile.TemporaryDirectory(prefix="ssd_sweep_") as root:
        make_voc_dataset(root, num_train=images, num_test=0, seed=seed)
        dataset = VOCDetection(root, [("2007", "trainval")], transform=BaseTransform(300, MEANS))
        return detection_collate([dataset[i] for i in range(images)])


def run(
    config: tuple[float, int, float], batch: tuple[torch.Tensor, list[torch.Tensor]], steps: int, batch_norm: bool
) -> dict[str, Any]:
    lr, warmup, clip = config
    images, targets = batch
    torch.manual_seed(0)
    net = build_ssd("train", 300, 21, get_config("VOC", 300), batch_norm)
    criterion = MultiBoxLoss(21, 0.5, True, 0, True, 3, 0.5, False, use_gpu=False)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    scheduler = WarmupMultiStepLR(optimizer, [10**9], 0.1, warmup)
    losses, norms, start = [], [], time.perf_counter()
    for _ in range(steps):
        loss_l, loss_c = criterion(net(images), targets)
        loss = loss_l + loss_c
        optimizer.zero_grad()
        loss.backward()
        norm = nn.utils.clip_grad_norm_(net.parameters(), clip if clip > 0 else float("inf"))
        optimizer.step()
        scheduler.jump_to(scheduler.last_epoch + 1)
        losses.append(round(loss.item(), 3))
        norms.append(round(float(norm), 1))
    return {
        "batch_norm": batch_norm, "lr": lr, "warmup": warmup, "clip_grad": clip, "loss": losses,
        "grad_norm": norms, "s_per_step": round((time.perf_counter() - start) / steps, 2),
    }  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--configs", type=parse_configs, default=parse_configs("1e-3:0:0,2e-3:0:0,2e-3:0:10,2e-3:10:10"))
    p.add_argument("--batch_norm", type=str2bool, default=True)
    p.add_argument("--images", type=int, default=2)
    p.add_argument("--data_seed", type=int, default=1)
    add_common_flags(p, ("out", "note", "threads"), threads=2)
    args = p.parse_args(argv)
    with torch_threads(args.threads):
        batch = fixed_batch(args.images, args.data_seed)
        results = []
        for config in args.configs:
            results.append(run(config, batch, args.steps, args.batch_norm))
            r = results[-1]
            print(f"bn={r['batch_norm']} lr={r['lr']:g} warmup={r['warmup']} clip={r['clip_grad']:g}: "
                  f"loss {r['loss'][0]} -> {r['loss'][-1]} in {args.steps} steps, max grad norm {max(r['grad_norm'])}",
                  flush=True)  # fmt: skip
        machine = machine_info(torch.device("cpu")) | {"threads": args.threads}
    if args.out:
        record = {
            "what": __doc__.strip().splitlines()[0],
            "machine": machine,
            "date": machine["date"][:10],
            "settings": {"steps": args.steps, "images": args.images, "data_seed": args.data_seed, "num_classes": 21},
            "results": results,
            "notes": list(args.note),
        }
        write_json(record, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
