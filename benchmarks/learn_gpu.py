"""Train SSD300 (or SSDLite320) from scratch on a synthetic dataset for a fixed wall-clock budget and record mAP
over time.

    python benchmarks/learn_gpu.py                                   # GPU: 5 minutes, BN model, bf16
    python benchmarks/learn_gpu.py --device cpu --budget_s 900 --num_train 400 --num_test 50 --batch_size 8
    python benchmarks/learn_gpu.py --backbone mobilenet_v3_large     # the light model with its recipe

It goes through the real code paths: ``data.synthetic`` writes a VOC-layout dataset, ``train.main`` trains with
SSDAugmentation and DataLoader workers, and ``eval.main`` measures VOC07 mAP on the synthetic test split. The
training runs in segments that each resume the previous one's full checkpoint exactly (``--resume *_last.ckpt``),
so the model can be evaluated along the way. Only the training iterations count towards ``--budget_s`` and the
curve's time axis: their seconds (data wait + step) come from ``train_log.csv``'s ``img_per_s`` column. The rest is
reported apart: ``generate_s`` (writing the dataset), ``startup_s`` (each segment's set-up, worker start and
checkpoint writes), ``eval_s`` (the evaluations) and ``wall_s`` (everything). ``--max_wall_s`` stops starting
segments that would end past that wall-clock time. DataLoader workers never outnumber the CPUs the process may
use. Writes a JSON (curve, timings, throughput, settings, machine) after every evaluation, so a run cut short keeps
its points, and a PNG of the curve at the end where matplotlib is installed.
"""

from __future__ import annotations

import argparse
import csv
import glob
import json
import os
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repository's packages import

import eval as eval_script  # noqa: E402
import train as train_script  # noqa: E402
from benchmarks.repo import RESULTS  # noqa: E402
from benchmarks.timing import add_common_flags, machine_info, median_img_per_s, write_json  # noqa: E402
from data.synthetic import make_voc_dataset  # noqa: E402
from utils.cli import available_cpus  # noqa: E402


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--backbone", choices=("vgg16", "mobilenet_v3_large"), default="vgg16", help="train.py's")
    p.add_argument("--budget_s", type=float, default=300.0, help="seconds of training iterations")
    p.add_argument(
        "--max_wall_s", type=float, default=None, help="start no segment that would end after this many seconds"
    )
    p.add_argument("--eval_every_s", type=float, default=60.0, help="training seconds between evaluations")
    p.add_argument("--first_segment", type=int, default=50, help="iterations of the first segment (sets the pace)")
    p.add_argument("--num_train", type=int, default=3500)
    p.add_argument("--num_test", type=int, default=300)
    p.add_argument("--data_seed", type=int, default=0)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--batch_norm", default="true", help="vgg16: the BN model (mobilenet_v3_large always has BN)")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default=None, help="default: bf16 on cuda, none on cpu")
    p.add_argument(
        "--num_workers",
        type=int,
        default=None,
        help="DataLoader workers, at most the CPUs this process may use (default: those CPUs - 2, at least 1)",
    )
    p.add_argument("--work_dir", default=None, help="default: a temporary folder")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/learn_<device>.json)")
    add_common_flags(p, ("note",))
    p.add_argument(
        "--train_arg",
        action="append",
        default=None,
        help="train.py flag (repeatable), e.g. --train_arg=--lr=4e-3; default: none, train.py's recipe for the "
        "model (BN: lr 1e-3, 300 warm-up steps, no clipping; the light model's: lr 0.05, cosine)",
    )
    return p


def capped_worker_count(requested: int | None) -> int:
    """DataLoader workers: ``requested`` (default: the CPUs this process may use - 2, at least 1), never more than
    those CPUs."""
    cpus = available_cpus()
    if requested is None:
        return max(1, cpus - 2)
    return max(0, min(requested, cpus))


def device_slug(name: str) -> str:
    """A file-name form of a device name: ``"NVIDIA H100 80GB HBM3"`` -> ``"nvidia_h100_80gb_hbm3"``."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def train_segment(
    common: Sequence[str], save_folder: str, start_iter: int, stop_iter: int, resume: str | None, batch_size: int
) -> tuple[float, float]:
    """Train from ``start_iter`` to ``stop_iter`` (resuming ``resume`` if given).

    Returns:
        (seconds of the whole ``train.main`` call, seconds of its training iterations).
    """
    argv = [*common, "--max_iter", str(stop_iter), "--save_every", str(stop_iter), "--save_folder", save_folder]
    if resume:
        argv += ["--resume", resume]
    wall = run_train(argv)
    return wall, loop_seconds(os.path.join(save_folder, "train_log.csv"), start_iter, stop_iter, batch_size)


def loop_seconds(log_csv: str, after: int, upto: int, batch_size: int) -> float:
    """Seconds the iterations ``after + 1 .. upto`` took (data wait + step each), from train_log.csv.

    Each row's ``img_per_s`` is ``batch_size`` over that iteration's time, so the time is its inverse times the batch.
    """
    with open(log_csv, encoding="utf-8") as f:
        rates = [float(row["img_per_s"]) for row in csv.DictReader(f) if after < int(row["iter"]) <= upto]
    return sum(batch_size / rate for rate in rates if rate > 0)


def run_file(save_folder: str, suffix: str) -> str:
    """The one file of the run in ``save_folder`` named ``*_{suffix}`` (train.py names them after the model)."""
    found = glob.glob(os.path.join(glob.escape(save_folder), f"*_{suffix}"))
    if len(found) != 1:
        raise SystemExit(f"expected one *_{suffix} in {save_folder}, found {len(found)}")
    return found[0]


def run_train(argv: Sequence[str]) -> float:
    """``train.main(argv)`` in this process; returns its seconds. A failure ends the benchmark."""
    start = time.perf_counter()
    code = train_script.main(list(argv))
    if code:
        raise SystemExit(f"train.py exited with {code}")
    return time.perf_counter() - start


def run_eval(model: str, voc_root: str, folder: str, *flags: str) -> dict[str, Any]:
    """``eval.main`` on ``model`` over ``voc_root``'s test split with ``flags``, writing to ``folder``; returns its
    ``results.json``. A failure ends the benchmark."""
    if eval_script.main(["--trained_model", model, "--voc_root", voc_root, "--save_folder", folder, *flags]):
        raise SystemExit("eval.py failed")
    with open(os.path.join(folder, "results.json"), encoding="utf-8") as f:
        return json.load(f)


def plot_curve(curve: Sequence[dict[str, float]], title: str, path: str) -> bool:
    """Draw mAP over training time to ``path``; False (nothing drawn) where matplotlib is not installed."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot([p["train_s"] for p in curve], [p["mAP"] for p in curve], marker="o")
    ax.set_xlabel("training time (s)")
    ax.set_ylabel("VOC07 mAP (synthetic test split)")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def next_segment(args: argparse.Namespace, pace: float, train_s: float, wall_left: float | None) -> int:
    """Iterations of the next segment: up to the next evaluation, the budget's end or the wall-clock limit
    (``wall_left`` seconds of iterations still fit), at least 10; 0 when no segment should start."""
    seconds = min(args.eval_every_s, args.budget_s - train_s)
    if args.budget_s - train_s < 0.1 * args.eval_every_s:
        return 0
    if wall_left is not None:
        if wall_left < min(seconds, 0.1 * args.eval_every_s) or wall_left * pace < 10:
            return 0
        seconds = min(seconds, wall_left)
    return max(10, int(seconds * pace))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (use --device cpu for the small CPU curve)")
    run_start = time.perf_counter()
    cuda = args.device == "cuda"
    amp = args.amp or ("bf16" if cuda else "none")
    workers = capped_worker_count(args.num_workers)
    work = args.work_dir or tempfile.mkdtemp(prefix="ssd_learn_")
    voc_root = os.path.join(work, "VOCdevkit")
    tag = "cuda_" + device_slug(torch.cuda.get_device_name(0)) if cuda else "cpu"
    out = args.out or str(RESULTS / f"learn_{tag}.json")
    make_voc_dataset(voc_root, num_train=args.num_train, num_test=args.num_test, seed=args.data_seed)
    generate_s = time.perf_counter() - run_start

    save_folder = os.path.join(work, "weights")
    common = [
        "--dataset", "VOC", "--dataset_root", voc_root, "--image_sets", "2007:trainval", "--basenet", "none",
        "--backbone", args.backbone, "--batch_norm", args.batch_norm, "--batch_size", str(args.batch_size),
        "--num_workers", str(workers), "--cuda", str(cuda).lower(), "--amp", amp, "--seed", "0", "--log_every", "50",
        *(args.train_arg or ()),
    ]  # fmt: skip
    log_csv = os.path.join(save_folder, "train_log.csv")
    model = "SSDLite320-MobileNetV3" if args.backbone == "mobilenet_v3_large" else "SSD300"
    machine = machine_info(torch.device(args.device)) | {"cpus_available": available_cpus()}
    record: dict[str, Any] = {
        "what": f"{model} from scratch on data.synthetic, real train.py/eval.py paths, VOC07 mAP on the test split",
        "machine": machine,
        "date": machine["date"][:10],
        "budget_s": args.budget_s,
        "max_wall_s": args.max_wall_s,
        "num_workers": workers,
        "generator": {
            "num_train": args.num_train,
            "num_test": args.num_test,
            "seed": args.data_seed,
            "image_sides_px": "300-500",
            "function": "data.synthetic.make_voc_dataset",
        },
        "train_args": common,
        "curve": [],
        "notes": list(args.note),
    }

    def save(complete: bool, **timings: float) -> None:
        curve = record["curve"]
        record.update({k: round(v, 2) for k, v in timings.items()})
        record["wall_s"] = round(time.perf_counter() - run_start, 2)
        record["final_mAP"] = curve[-1]["mAP"] if curve else None
        record["median_img_per_s"] = median_img_per_s(log_csv, skip=5)
        record["complete"] = complete
        write_json(record, out)

    train_s = startup_s = eval_s = 0.0
    save(False, generate_s=generate_s, startup_s=startup_s, train_s=train_s, eval_s=eval_s)
    iteration, segment, overhead = 0, args.first_segment, 0.0
    while segment:
        resume = run_file(save_folder, "last.ckpt") if iteration else None
        wall, seconds = train_segment(common, save_folder, iteration, iteration + segment, resume, args.batch_size)
        train_s, startup_s, iteration = train_s + seconds, startup_s + wall - seconds, iteration + segment
        eval_start = time.perf_counter()
        weights = run_file(save_folder, f"{iteration}.pth")
        results = run_eval(weights, voc_root, os.path.join(work, "eval"), "--cuda", str(cuda).lower())
        mAP = float(results["mAP"] or 0.0)
        eval_s += time.perf_counter() - eval_start
        overhead = max(overhead, wall - seconds + time.perf_counter() - eval_start)
        record["curve"].append({"train_s": round(train_s, 1), "iter": iteration, "mAP": mAP})
        print(f"[learn] {train_s:7.1f} s  iter {iteration:6d}  mAP {mAP:.4f}", flush=True)
        save(False, generate_s=generate_s, startup_s=startup_s, train_s=train_s, eval_s=eval_s)
        wall_left = None
        if args.max_wall_s is not None:
            wall_left = args.max_wall_s - (time.perf_counter() - run_start) - overhead
        segment = next_segment(args, segment / max(seconds, 1e-9), train_s, wall_left)

    save(True, generate_s=generate_s, startup_s=startup_s, train_s=train_s, eval_s=eval_s)
    title = f"{model}{' BN' if model == 'SSD300' else ''} from scratch, {record['machine'].get('gpu', 'CPU')}"
    if not plot_curve(record["curve"], title, out.replace(".json", ".png")):
        print("matplotlib is not installed: no PNG of the curve")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
