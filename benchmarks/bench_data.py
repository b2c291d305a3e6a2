"""DataLoader throughput of the SSD training pipeline, for 0..N workers.

    python benchmarks/bench_data.py [--workers 0,1,2] [--images 96] [--batch_size 8] [--repeats 3]
                                    [--out benchmarks/results/data_cpu_<date>.json]

The pipeline is the one ``train.py`` feeds: ``VOCDetection`` (JPEG decode + XML parse) with ``SSDAugmentation``
(300 px), ``detection_collate``, and ``utils.augmentations.worker_init_fn``, over a synthetic VOC dataset
(``data.synthetic.make_voc_dataset``: images 300-500 px with drawn objects) written to a temporary folder. For
each worker count the script times whole epochs (``--images`` images; worker start-up included, as each epoch of
``train.py`` starts a DataLoader) and the steady state (from the second batch on), and reports the medians over
``--repeats`` epochs in images/s.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.timing import machine_info, write_json  # noqa: E402
from data import MEANS, VOCDetection, detection_collate  # noqa: E402
from data.synthetic import make_voc_dataset  # noqa: E402
from utils.augmentations import SSDAugmentation, worker_init_fn  # noqa: E402


def make_loader(root: str, workers: int, batch_size: int, seed: int = 0) -> DataLoader:
    """The training DataLoader over the VOC root ``root`` (trainval of VOC2007), shuffled with a seeded order."""
    dataset = VOCDetection(root, [("2007", "trainval")], transform=SSDAugmentation(300, MEANS, rng=seed))
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        collate_fn=detection_collate,
        worker_init_fn=worker_init_fn,
        generator=torch.Generator().manual_seed(seed),
        drop_last=True,
    )


def time_epoch(loader: DataLoader) -> tuple[float, float, int]:
    """One pass over ``loader`` -> (seconds in all, seconds after the first batch, images)."""
    start = time.perf_counter()
    first = None
    images = 0
    for batch_images, _ in loader:
        images += batch_images.shape[0]
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    return end - start, end - (first if first is not None else end), images


def measure(root: str, workers: int, batch_size: int, repeats: int) -> dict[str, Any]:
    """Median images/s over ``repeats`` epochs with ``workers`` DataLoader workers."""
    loader = make_loader(root, workers, batch_size)
    totals, steadies = [], []
    for _ in range(repeats):
        total, steady, images = time_epoch(loader)
        totals.append(images / total)
        steadies.append((images - batch_size) / steady if steady > 0 else float("nan"))
    result = {
        "workers": workers,
        "images_per_s": round(statistics.median(totals), 2),
        "steady_images_per_s": round(statistics.median(steadies), 2),
        "epochs": repeats,
        "images_per_epoch": images,
    }
    print(
        f"  workers {workers}: {result['images_per_s']:8.1f} img/s per epoch, "
        f"{result['steady_images_per_s']:8.1f} img/s after the first batch",
        flush=True,
    )
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="DataLoader throughput of the SSD training pipeline.")
    parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts")
    parser.add_argument("--images", type=int, default=96, help="synthetic training images (one epoch)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="epochs timed per worker count (median)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON file to write")
    parser.add_argument("--note", action="append", default=[])
    args = parser.parse_args(argv)
    if args.images < args.batch_size:
        parser.error(f"--images ({args.images}) must be at least --batch_size ({args.batch_size})")

    result: dict[str, Any] = {
        "machine": machine_info(torch.device("cpu")),
        "settings": vars(args)
        | {
            "pipeline": "VOCDetection + SSDAugmentation(300) + detection_collate + worker_init_fn, shuffled",
            "dataset": "data.synthetic.make_voc_dataset (JPEG, 300-500 px, drawn objects)",
        },
        "results": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        root = make_voc_dataset(folder, num_train=args.images, num_test=0, seed=args.seed)
        for workers in (int(w) for w in args.workers.split(",")):
            result["results"].append(measure(root, workers, args.batch_size, args.repeats))
    result["notes"] = list(args.note)
    if args.out:
        write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
