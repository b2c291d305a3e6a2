"""Throughput of the training data stream, and whether the default DataLoader workers can feed training.

    python benchmarks/bench_data.py [--workers 0,4] [--images 64] [--batch_size 32] [--warmup 2] [--batches 20]
                                    [--repeats 3] [--train_img_per_s X] [--out benchmarks/results/data_cpu_<date>.json]

The stream is the one ``train.py`` builds: ``VOCDetection`` (JPEG decode + XML parse) whose transform is a
``SeededTransform`` of ``SSDAugmentation(300)`` (reseeded from ``(seed, epoch, index)`` before each picture),
wrapped in ``EpochIndexedDataset`` and read through ``utils.training.data.iterate_batches`` with
``detection_collate`` -- one DataLoader for the whole run, running on across epochs. The pictures are a synthetic
VOC set (``data.synthetic.make_voc_dataset``: 300-500 px, drawn objects) in a temporary folder.

For each worker count the script times the start-up (until the first batch), skips ``--warmup`` batches per
worker, then times ``--repeats`` windows of ``--batches`` batches and reports the median images/s. Nothing
consumes the batches, so this is the most the stream can deliver.

The loader's rate is set against a training throughput (``--train_img_per_s``; by default the newest ``train``
figure of ``bench.py`` in ``benchmarks/results/``): a ratio of at least 1 at train.py's default worker count
means those workers keep the training step fed.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repository's packages import

import train  # noqa: E402
from benchmarks.repo import RESULTS  # noqa: E402
from benchmarks.timing import add_common_flags, machine_info, write_json  # noqa: E402
from data import MEANS, VOCAnnotationTransform, VOCDetection, detection_collate  # noqa: E402
from data.synthetic import make_voc_dataset  # noqa: E402
from utils.augmentations import SSDAugmentation  # noqa: E402
from utils.training.data import EpochIndexedDataset, SeededTransform, iterate_batches  # noqa: E402
from utils.training.runtime import worker_count  # noqa: E402


def training_dataset(root: str, size: int, seed: int) -> EpochIndexedDataset:
    """VOC2007 trainval under ``root`` with the training augmentation, keyed by ``(epoch, index)`` as in train.py."""
    transform = SeededTransform(partial(SSDAugmentation, size, MEANS), seed)
    base = VOCDetection(root, [("2007", "trainval")], transform, VOCAnnotationTransform(keep_difficult=False))
    return EpochIndexedDataset(base, transform)


def measure(
    dataset: EpochIndexedDataset, workers: int, batch_size: int, seed: int, warmup: int, batches: int, repeats: int
) -> dict[str, Any]:
    """Start-up seconds and median images/s over ``repeats`` windows of ``batches`` batches with ``workers``,
    after ``warmup`` batches per worker."""
    start = time.perf_counter()
    stream = iterate_batches(
        dataset, start_iter=0, batch_size=batch_size, seed=seed, collate_fn=detection_collate, num_workers=workers
    )
    try:
        next(stream)
        startup = time.perf_counter() - start
        # each worker's first batches arrive together after start-up; skip them so the windows see the steady rate
        for _ in islice(stream, warmup * max(1, workers)):
            pass
        rates = []
        for _ in range(repeats):
            begin, images = time.perf_counter(), 0
            for batch_images, _ in islice(stream, batches):
                images += batch_images.shape[0]
            rates.append(images / (time.perf_counter() - begin))
    finally:
        stream.close()
    return {
        "workers": workers,
        "images_per_s": round(statistics.median(rates), 2),
        "startup_s": round(startup, 3),
        "windows": repeats,
        "images_per_window": batches * batch_size,
    }


def latest_train_rate(folder: str | None = None) -> tuple[float, str] | None:
    """The newest training throughput in the JSON files of ``folder`` (default ``benchmarks/results``):
    ``bench.py``'s ``train`` case (ours, largest batch) of the file whose machine date is latest ->
    (images/s, where it came from), or None."""
    found: list[tuple[str, float, str]] = []
    for path in glob.glob(os.path.join(folder or RESULTS, "*.json")):
        try:
            with open(path) as f:
                record = json.load(f)
        except (OSError, ValueError):
            continue
        rows = record.get("results") if isinstance(record, dict) else None
        train_rows = [
            r for r in rows or [] if isinstance(r, dict) and r.get("case") == "train" and r.get("impl") == "ours"
        ]
        if not train_rows:
            continue
        row = max(train_rows, key=lambda r: r.get("batch", 0))
        machine = record.get("machine", {})
        where = f"{path}: train step, batch {row.get('batch')}, {machine.get('device', '?')}"
        found.append((str(machine.get("date", "")), float(row["img_per_s"]), where))
    if not found:
        return None
    _, rate, where = max(found)
    return rate, where


def build_parser() -> argparse.ArgumentParser:
    default_workers = worker_count(train.build_parser().get_default("num_workers"))
    parser = argparse.ArgumentParser(description="Throughput of the training data stream against training's.")
    parser.add_argument("--workers", default=f"0,{default_workers}", help="comma-separated worker counts")
    parser.add_argument(
        "--default_workers", type=int, default=default_workers, help="the count judged (default: train.py's)"
    )
    parser.add_argument("--images", type=int, default=64, help="synthetic training images (the stream loops over them)")
    parser.add_argument("--batch_size", type=int, default=train.DEFAULTS["batch_size"])
    parser.add_argument("--size", type=int, default=train.DEFAULTS["size"])
    parser.add_argument("--warmup", type=int, default=2, help="batches skipped after the first, per worker")
    parser.add_argument("--batches", type=int, default=20, help="batches per timed window")
    parser.add_argument("--repeats", type=int, default=3, help="timed windows per worker count (median)")
    parser.add_argument(
        "--train_img_per_s",
        type=float,
        default=None,
        help="training throughput to feed (default: the newest bench.py train figure in benchmarks/results/)",
    )
    add_common_flags(parser, ("out", "note", "seed"))
    return parser


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.images < args.batch_size:
        parser.error(f"--images ({args.images}) must be at least --batch_size ({args.batch_size})")
    if min(args.batches, args.repeats) < 1 or args.warmup < 0:
        parser.error("--batches and --repeats must be at least 1 and --warmup at least 0")
    if args.train_img_per_s is not None:
        train_rate, source = args.train_img_per_s, "--train_img_per_s"
    elif (latest := latest_train_rate()) is not None:
        train_rate, source = latest
    else:
        parser.error(f"no bench.py train figure in {RESULTS}: pass --train_img_per_s")
    if train_rate <= 0:
        parser.error(f"--train_img_per_s must be positive, got {train_rate}")
    workers = [int(w) for w in args.workers.split(",")]
    print(f"training throughput to feed: {train_rate:g} img/s ({source})", flush=True)

    result: dict[str, Any] = {
        "machine": machine_info(torch.device("cpu")),
        "settings": vars(args)
        | {
            "pipeline": "VOCDetection + SeededTransform(SSDAugmentation) + EpochIndexedDataset + iterate_batches "
            "(detection_collate), as train.py builds it",
            "dataset": "data.synthetic.make_voc_dataset (JPEG, 300-500 px, drawn objects)",
        },
        "train_img_per_s": train_rate,
        "train_img_per_s_source": source,
        "results": [],
    }
    with tempfile.TemporaryDirectory() as folder:
        dataset = training_dataset(make_voc_dataset(folder, args.images, 0, args.seed), args.size, args.seed)
        for n in workers:
            record = measure(dataset, n, args.batch_size, args.seed, args.warmup, args.batches, args.repeats)
            record["ratio_to_training"] = round(record["images_per_s"] / train_rate, 3)
            result["results"].append(record)
            print(
                f"  workers {n}: {record['images_per_s']:8.1f} img/s ({record['ratio_to_training']:.2f}x training), "
                f"start-up {record['startup_s']:.2f} s",
                flush=True,
            )
    default = next((r for r in result["results"] if r["workers"] == args.default_workers), None)
    if default is not None:
        result["default_workers_feed_training"] = default["ratio_to_training"] >= 1.0
        verdict = "enough" if result["default_workers_feed_training"] else "NOT enough"
        print(f"{args.default_workers} workers (train.py's default): {default['ratio_to_training']:.2f}x -> {verdict}")
    result["notes"] = list(args.note)
    if args.out:
        write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
