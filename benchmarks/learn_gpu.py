"""Train SSD300 from scratch on a synthetic dataset for a fixed wall-clock budget and record mAP over time.

    python benchmarks/learn_gpu.py                                   # GPU: 5 minutes, BN model, bf16
    python benchmarks/learn_gpu.py --device cpu --budget_s 900 --num_train 400 --num_test 50 --batch_size 8

It goes through the real code paths: ``data.synthetic`` writes a VOC-layout dataset, ``train.main`` trains with
SSDAugmentation and DataLoader workers, and ``eval.main`` measures VOC07 mAP on the synthetic test split. The
training runs in segments that each resume the previous one's full checkpoint exactly (``--resume *_last.ckpt``),
so the model can be evaluated along the way; only the segments' wall time counts towards the budget and the
curve's time axis. Writes a JSON (curve, throughput, settings, machine) and a PNG of the curve.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

import eval as eval_script  # noqa: E402
import train as train_script  # noqa: E402
from benchmarks.timing import cpu_model, write_json  # noqa: E402
from data.synthetic import make_voc_dataset  # noqa: E402

# The recipe measured on an H100 in issue 6 (BN model, 0.90 mAP after 172 s): lr 2e-3, 300 warm-up steps, gradient
# norm clipped at 10. train.py's own BN defaults (lr 1e-3, warm-up 300, no clipping) come from a CPU probe.
GPU_RECIPE = ("--lr=2e-3", "--warmup=300", "--clip_grad=10")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    p.add_argument("--budget_s", type=float, default=300.0, help="training wall-clock budget in seconds")
    p.add_argument("--eval_every_s", type=float, default=60.0, help="training seconds between evaluations")
    p.add_argument("--first_segment", type=int, default=50, help="iterations of the first segment (sets the pace)")
    p.add_argument("--num_train", type=int, default=3500)
    p.add_argument("--num_test", type=int, default=300)
    p.add_argument("--data_seed", type=int, default=0)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--batch_norm", default="true")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), default=None, help="default: bf16 on cuda, none on cpu")
    p.add_argument("--num_workers", type=int, default=None, help="default: CPU cores - 2 (at least 1)")
    p.add_argument("--work_dir", default=None, help="default: a temporary folder")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/learn_<device>.json)")
    p.add_argument(
        "--train_arg",
        action="append",
        default=None,
        help="train.py flag (repeatable), e.g. --train_arg=--lr=4e-3; default: the issue's H100 recipe "
        + " ".join(GPU_RECIPE),
    )
    return p


def machine(device: str) -> dict[str, Any]:
    info = {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch": torch.__version__,
    }
    if device == "cuda":
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def train_segment(common: Sequence[str], save_folder: str, stop_iter: int, resume: str | None) -> float:
    """Train until ``stop_iter`` (resuming ``resume`` if given); returns the segment's wall time in seconds."""
    argv = [*common, "--max_iter", str(stop_iter), "--save_every", str(stop_iter), "--save_folder", save_folder]
    if resume:
        argv += ["--resume", resume]
    start = time.perf_counter()
    code = train_script.main(argv)
    if code:
        raise SystemExit(f"train.py exited with {code}")
    return time.perf_counter() - start


def evaluate(voc_root: str, model: str, eval_dir: str, cuda: bool) -> float:
    argv = ["--trained_model", model, "--voc_root", voc_root, "--save_folder", eval_dir, "--cuda", str(cuda).lower()]
    if eval_script.main(argv):
        raise SystemExit("eval.py failed")
    with open(os.path.join(eval_dir, "results.json"), encoding="utf-8") as f:
        return float(json.load(f)["mAP"] or 0.0)


def mean_img_per_s(log_csv: str, skip: int = 5) -> float:
    """Median training throughput from train_log.csv, after the first ``skip`` rows (warm-up)."""
    with open(log_csv, encoding="utf-8") as f:
        rates = [float(row["img_per_s"]) for row in csv.DictReader(f)][skip:]
    return sorted(rates)[len(rates) // 2] if rates else 0.0


def plot_curve(curve: Sequence[dict[str, float]], title: str, path: str) -> None:
    import matplotlib

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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device here (use --device cpu for the small CPU curve)")
    cuda = args.device == "cuda"
    amp = args.amp or ("bf16" if cuda else "none")
    workers = args.num_workers if args.num_workers is not None else max(1, (os.cpu_count() or 2) - 2)
    work = args.work_dir or tempfile.mkdtemp(prefix="ssd_learn_")
    voc_root = os.path.join(work, "VOCdevkit")
    start = time.perf_counter()
    make_voc_dataset(voc_root, num_train=args.num_train, num_test=args.num_test, seed=args.data_seed)
    generate_s = time.perf_counter() - start

    save_folder = os.path.join(work, "weights")
    common = [
        "--dataset", "VOC", "--dataset_root", voc_root, "--image_sets", "2007:trainval", "--basenet", "none",
        "--batch_norm", args.batch_norm, "--batch_size", str(args.batch_size), "--num_workers", str(workers),
        "--cuda", str(cuda).lower(), "--amp", amp, "--seed", "0", "--log_every", "50",
        *(GPU_RECIPE if args.train_arg is None else args.train_arg),
    ]  # fmt: skip
    last_ckpt = os.path.join(save_folder, "ssd300_VOC_last.ckpt")
    curve: list[dict[str, float]] = []
    train_s, iteration, segment = 0.0, 0, args.first_segment
    while train_s < args.budget_s:
        seconds = train_segment(common, save_folder, iteration + segment, last_ckpt if iteration else None)
        train_s += seconds
        iteration += segment
        mAP = evaluate(
            voc_root, os.path.join(save_folder, f"ssd300_VOC_{iteration}.pth"), os.path.join(work, "eval"), cuda
        )
        curve.append({"train_s": round(train_s, 1), "iter": iteration, "mAP": mAP})
        print(f"[learn] {train_s:7.1f} s  iter {iteration:6d}  mAP {mAP:.4f}", flush=True)
        pace = segment / seconds
        segment = max(10, int(min(args.eval_every_s, args.budget_s - train_s) * pace))
        if args.budget_s - train_s < 0.1 * args.eval_every_s:
            break

    tag = "cuda_" + torch.cuda.get_device_name(0).split()[-1].lower() if cuda else "cpu"
    out = args.out or os.path.join(ROOT, "benchmarks", "results", f"learn_{tag}.json")
    record = {
        "what": "SSD300 from scratch on data.synthetic, real train.py/eval.py paths, VOC07 mAP on the test split",
        "machine": machine(args.device),
        "date": time.strftime("%Y-%m-%d"),
        "budget_s": args.budget_s,
        "generator": {
            "num_train": args.num_train,
            "num_test": args.num_test,
            "seed": args.data_seed,
            "image_sides_px": "300-500",
            "function": "data.synthetic.make_voc_dataset",
        },  # fmt: skip
        "train_args": common,
        "generate_s": round(generate_s, 1),
        "curve": curve,
        "final_mAP": curve[-1]["mAP"] if curve else None,
        "median_img_per_s": mean_img_per_s(os.path.join(save_folder, "train_log.csv")),
    }
    write_json(record, out)
    plot_curve(curve, f"SSD300 BN from scratch, {record['machine'].get('gpu', 'CPU')}", out.replace(".json", ".png"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
