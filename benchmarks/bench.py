"""Speed of our SSD300 against torchvision's ssd300_vgg16 (21 classes), measured in one run.

    python benchmarks/bench.py --device cpu  --out benchmarks/results/cpu_<date>.json
    python benchmarks/bench.py --device cuda --out benchmarks/results/<gpu>_<date>.json [--amp bf16] [--channels_last]
    python benchmarks/bench.py --summarize benchmarks/results/cpu_<date>.json   # Markdown table for the README

Cases, each for ours and torchvision with the same device, batch, precision and switches (see benchmarks/README.md):
  raw         the raw network (ours ``predict``; torchvision backbone + head) on a normalised batch
  end_to_end  images in [0, 1] -> detections at conf 0.01, NMS 0.45, top_k 200 (realistic score statistics)
  postprocess the post-processing alone, on precomputed network outputs
  train       one SGD step: forward, loss with matching, backward, update, on a device-resident batch
  match       target matching alone (ours: ``match_batch`` on the padded batch)
  loss        matching + loss forward + backward on precomputed outputs; also the classic per-image loop
  onnx        the exported graph (network + decoding) in onnxruntime beside PyTorch (CPU only)
Figures are medians after warm-up, the implementations taking turns call by call, synchronised on CUDA.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import workloads as W  # noqa: E402
from benchmarks.timing import machine_info, median_ms, time_interleaved, write_json  # noqa: E402

CASES = ("raw", "end_to_end", "postprocess", "train", "match", "loss", "onnx")
LIGHT_CASES = ("postprocess", "match", "loss")  # no network: cheap, so timed more often
DEFAULTS = {
    "cpu": {"batch_sizes": "1,8", "warmup": 1, "iters": 3, "light_warmup": 2, "light_iters": 10},
    "cuda": {"batch_sizes": "1,8,32", "warmup": 10, "iters": 50, "light_warmup": 10, "light_iters": 100},
}
SCORE_TARGET = 150.0  # mean (prior, class) pairs per image above conf 0.01 after calibration
CALIBRATION_BATCH = 8
NOTES_CPU_CONTENTION = (
    "CPU run on a machine shared with other jobs: absolute figures vary with their load; the ratios come from "
    "the same run with the implementations taking turns call by call, and are what counts."
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="SSD300 speed: ours vs torchvision ssd300_vgg16.")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--batch_sizes", default=None, help="comma-separated; default 1,8 on cpu, 1,8,32 on cuda")
    parser.add_argument("--amp", choices=tuple(W.AMP_DTYPES), default="none")
    parser.add_argument("--channels_last", action="store_true")
    parser.add_argument("--compile", action="store_true", help="torch.compile both raw networks")
    parser.add_argument("--compile_mode", default="default", help="torch.compile mode, e.g. reduce-overhead")
    parser.add_argument("--warmup", type=int, default=None, help="untimed calls per network case")
    parser.add_argument("--iters", type=int, default=None, help="timed calls per network case (median reported)")
    parser.add_argument("--light_warmup", type=int, default=None, help="untimed calls, postprocess/match/loss")
    parser.add_argument("--light_iters", type=int, default=None, help="timed calls, postprocess/match/loss")
    parser.add_argument("--cases", default=",".join(CASES), help=f"comma-separated subset of {','.join(CASES)}")
    parser.add_argument("--onnx_batch_sizes", default="1,8")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch intra-op threads (and onnxruntime's); default: torch's choice"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON file to write (e.g. benchmarks/results/cpu_DATE.json)")
    parser.add_argument("--note", action="append", default=[], help="a line for the JSON's notes (repeatable)")
    args = parser.parse_args(argv)
    for key, value in DEFAULTS[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",")]
    args.onnx_batch_sizes = [int(b) for b in str(args.onnx_batch_sizes).split(",")]
    args.cases = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; expected some of {list(CASES)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    return args


# -------------------------------------------------------------------------------------------- measuring


def measure(
    case: str, batch: int, fns: dict[str, Callable[[], Any]], device: torch.device, warmup: int, iters: int
) -> list[dict[str, Any]]:
    """Time ``fns`` (implementation name -> call) and return one record per implementation."""
    times = time_interleaved(fns, device, warmup, iters)
    records = []
    for impl, seconds in times.items():
        ms = median_ms(seconds)
        records.append(
            {
                "case": case,
                "batch": batch,
                "impl": impl,
                "median_ms": round(ms, 4),
                "img_per_s": round(batch / ms * 1e3, 2),
                "iters": len(seconds),
                "min_ms": round(min(seconds) * 1e3, 4),
                "max_ms": round(max(seconds) * 1e3, 4),
            }
        )
        print(f"  {case:<11} batch {batch:>3}  {impl:<12} {ms:10.2f} ms {batch / ms * 1e3:10.1f} img/s", flush=True)
    return records


def score_statistics(ours: Any, tv: Any, images: torch.Tensor, settings: W.Settings) -> dict[str, Any]:
    """Calibrate both models' background bias (see ``workloads``) and report what passes the threshold."""
    x = W.normalise(images, settings)
    with torch.inference_mode():
        ours_logits = ours.predict(x)[1]
        tv_logits = W.torchvision_raw(tv, x)["cls_logits"]
    stats: dict[str, Any] = {
        "method": (
            "random weights give a near-uniform softmax (~0.048 per class: all 8732 priors of every class would pass "
            "0.01), so for each model one constant is added to the background logit bias of every conf conv, found "
            f"by bisection on a calibration batch of {images.shape[0]} seeded images so that on average "
            f"{SCORE_TARGET:g} (prior, class) pairs per image score above 0.01 (fp32)"
        ),
        "target_candidates_per_image": SCORE_TARGET,
    }
    for name, model, logits in (("ours", ours, ours_logits), ("torchvision", tv, tv_logits)):
        before = W.candidates_per_image(logits)
        shift = W.calibrate_background(model, logits, SCORE_TARGET)
        stats[name] = {
            "background_bias_added": round(shift, 4),
            "candidates_per_image_before": before,
            "candidates_per_image": W.candidates_per_image(logits, shift),
        }
    with torch.inference_mode(), settings.autocast():
        detections = ours(x)
        tv_detections = tv(list(images))
    stats["ours"]["detections_per_image"] = float((detections[..., 0] > 0).sum()) / images.shape[0]
    stats["torchvision"]["detections_per_image"] = sum(len(d["boxes"]) for d in tv_detections) / images.shape[0]
    return stats


def run_inference_cases(args: argparse.Namespace, settings: W.Settings, result: dict[str, Any]) -> None:
    """raw, end_to_end, postprocess (and the score calibration they need)."""
    ours = W.build_ours("test", settings, args.seed)
    tv = W.build_torchvision(False, settings, args.seed)
    pool = W.make_images(max(args.batch_sizes + [CALIBRATION_BATCH]), settings.device, args.seed)
    result["score_statistics"] = score_statistics(ours, tv, pool[:CALIBRATION_BATCH], settings)
    W.compile_networks(ours, tv, settings)
    for batch in args.batch_sizes:
        images = pool[:batch]
        if "raw" in args.cases:
            fns = W.raw_fns(ours, tv, W.normalise(images, settings), settings)
            result["results"] += measure("raw", batch, fns, settings.device, args.warmup, args.iters)
        if "end_to_end" in args.cases:
            fns = W.end_to_end_fns(ours, tv, images, settings)
            result["results"] += measure("end_to_end", batch, fns, settings.device, args.warmup, args.iters)
        if "postprocess" in args.cases:
            fns = W.postprocess_fns(ours, tv, images, settings)
            result["results"] += measure(
                "postprocess", batch, fns, settings.device, args.light_warmup, args.light_iters
            )


def run_training_cases(args: argparse.Namespace, settings: W.Settings, result: dict[str, Any]) -> None:
    """train, match, loss."""
    pool = W.make_images(max(args.batch_sizes), settings.device, args.seed)
    targets = W.make_targets(max(args.batch_sizes), settings.device, args.seed)
    tv = W.build_torchvision(True, settings, args.seed)
    ours = W.build_ours("train", settings, args.seed) if "train" in args.cases else None
    if ours is not None:
        W.compile_networks(ours, tv, settings)
    priors = W.default_priors(settings.device)
    for batch in args.batch_sizes:
        images, batch_targets = pool[:batch], targets[:batch]
        if "train" in args.cases:
            fns = W.train_fns(ours, tv, images, batch_targets, settings)
            result["results"] += measure("train", batch, fns, settings.device, args.warmup, args.iters)
        if "match" in args.cases:
            fns = W.match_fns(tv, priors, images, batch_targets)
            result["results"] += measure("match", batch, fns, settings.device, args.light_warmup, args.light_iters)
        if "loss" in args.cases:
            fns = W.loss_fns(tv, priors, images, batch_targets, args.seed)
            result["results"] += measure("loss", batch, fns, settings.device, args.light_warmup, args.light_iters)


def run_onnx_case(args: argparse.Namespace, result: dict[str, Any]) -> None:
    """The exported graph in onnxruntime beside the same graph in PyTorch, fp32 on the CPU."""
    from benchmarks.bench_onnx import exported_session, max_abs_diff, onnx_fns

    net = W.build_ours("test", W.Settings(torch.device("cpu")), args.seed)  # uncompiled, fp32, on the CPU
    with tempfile.TemporaryDirectory() as folder:
        session = exported_session(net, folder)
        for batch in args.onnx_batch_sizes:
            x = W.normalise(W.make_images(batch, torch.device("cpu"), args.seed), W.Settings(torch.device("cpu")))
            records = measure("onnx", batch, onnx_fns(net, session, x), torch.device("cpu"), args.warmup, args.iters)
            boxes, scores = max_abs_diff(net, session, x)
            for record in records:
                record.update(max_abs_diff_boxes=boxes, max_abs_diff_scores=scores)
            result["results"] += records


# ---------------------------------------------------------------------------------------------- reporting


def ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each (case, batch): how many times faster ours is than each other implementation (time / our time)."""
    out = []
    keys = sorted({(r["case"], r["batch"]) for r in records}, key=lambda k: (CASES.index(k[0]), k[1]))
    for case, batch in keys:
        row = {r["impl"]: r["median_ms"] for r in records if r["case"] == case and r["batch"] == batch}
        for impl, ms in row.items():
            if impl != "ours" and "ours" in row:
                out.append({"case": case, "batch": batch, "versus": impl, "ours_speedup": round(ms / row["ours"], 3)})
    return out


def check_targets(records: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    """The issue's targets that this run can judge, each with the measured value."""

    def ms(case: str, batch: int, impl: str) -> float | None:
        found = [r["median_ms"] for r in records if (r["case"], r["batch"], r["impl"]) == (case, batch, impl)]
        return found[0] if found else None

    def ips(case: str, batch: int, impl: str = "ours") -> float | None:
        t = ms(case, batch, impl)
        return None if t is None else batch / t * 1e3

    checks = []

    def add(name: str, value: float | None, goal: str, met: Callable[[float], bool]) -> None:
        if value is not None:
            checks.append({"target": name, "value": round(value, 3), "goal": goal, "met": bool(met(value))})

    if device == "cpu":
        tv, ours = ms("end_to_end", 8, "torchvision"), ms("end_to_end", 8, "ours")
        add("end_to_end batch 8: torchvision time / ours", tv / ours if tv and ours else None, ">= 1", lambda v: v >= 1)
        classic, ours_loss = ms("loss", 8, "classic"), ms("loss", 8, "ours")
        add(
            "matching + loss fwd/bwd batch 8: classic loop time / ours",
            classic / ours_loss if classic and ours_loss else None,
            ">= 3",
            lambda v: v >= 3,
        )
    else:
        e2e, raw = ips("end_to_end", 32), ips("raw", 32)
        add(
            "end_to_end batch 32 img/s / our raw img/s",
            e2e / raw if e2e and raw else None,
            ">= 0.8",
            lambda v: v >= 0.8,
        )
        add("end_to_end batch 1 img/s", ips("end_to_end", 1), ">= 300", lambda v: v >= 300)
        tv_train, train = ips("train", 32, "torchvision"), ips("train", 32)
        add(
            "train batch 32: ours img/s / torchvision",
            train / tv_train if train and tv_train else None,
            ">= 3",
            lambda v: v >= 3,
        )
        add("match batch 32 ms", ms("match", 32, "ours"), "<= 1", lambda v: v <= 1)
    return checks


def format_table(records: list[dict[str, Any]]) -> str:
    """One line per (case, batch, implementation): median ms, img/s, and how many times faster ours is."""
    ours_ms = {(r["case"], r["batch"]): r["median_ms"] for r in records if r["impl"] == "ours"}
    lines = [f"{'case':<12}{'batch':>6}  {'impl':<12}{'median ms':>12}{'img/s':>11}{'ours faster':>13}"]
    for r in records:
        mine = ours_ms.get((r["case"], r["batch"]))
        speedup = f"{r['median_ms'] / mine:.2f}x" if mine and r["impl"] != "ours" else ""
        lines.append(
            f"{r['case']:<12}{r['batch']:>6}  {r['impl']:<12}{r['median_ms']:>12.2f}{r['img_per_s']:>11.1f}"
            f"{speedup:>13}"
        )
    return "\n".join(lines)


def markdown_summary(result: dict[str, Any]) -> str:
    """A Markdown table of a result JSON: per case and batch, ours and the others in img/s, and our speed-up."""
    by_key: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in result["results"]:
        by_key.setdefault((r["case"], r["batch"]), {})[r["impl"]] = r
    lines = ["| case | batch | ours ms | ours img/s | other | other ms | other img/s | ours faster |", "|" + "---|" * 8]
    for (case, batch), impls in sorted(by_key.items(), key=lambda kv: (CASES.index(kv[0][0]), kv[0][1])):
        ours = impls.get("ours")
        for name, other in impls.items():
            if name == "ours" or ours is None:
                continue
            lines.append(
                f"| {case} | {batch} | {ours['median_ms']:.1f} | {ours['img_per_s']:.1f} | {name} | "
                f"{other['median_ms']:.1f} | {other['img_per_s']:.1f} | {other['median_ms'] / ours['median_ms']:.2f}x |"
            )
    return "\n".join(lines)


def settings_dict(args: argparse.Namespace) -> dict[str, Any]:
    return {
        key: getattr(args, key)
        for key in (
            "device",
            "batch_sizes",
            "amp",
            "channels_last",
            "compile",
            "compile_mode",
            "warmup",
            "iters",
            "light_warmup",
            "light_iters",
            "cases",
            "onnx_batch_sizes",
            "threads",
            "seed",
        )
    } | {
        "conf_thresh": W.CONF_THRESH,
        "nms_thresh": W.NMS_THRESH,
        "top_k": W.TOP_K,
        "num_classes": W.NUM_CLASSES,
        "torchvision_model": "ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21, topk_candidates=200)",
        "targets_per_image": "1-10 random boxes (5-80% side), labels 0-19, seeded",
        "optimizer": "SGD lr 1e-3 momentum 0.9 weight_decay 5e-4 (both); GradScaler with fp16",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All selected cases; returns the JSON document."""
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = torch.device(args.device)
        settings = W.Settings(device, args.amp, args.channels_last, args.compile, args.compile_mode)
        result: dict[str, Any] = {"machine": machine_info(device), "settings": settings_dict(args), "results": []}
        if {"raw", "end_to_end", "postprocess"} & set(args.cases):
            run_inference_cases(args, settings, result)
        if {"train", "match", "loss"} & set(args.cases):
            run_training_cases(args, settings, result)
        if "onnx" in args.cases and args.device == "cpu":
            run_onnx_case(args, result)
    finally:
        torch.set_num_threads(threads)
    result["ratios"] = ratios(result["results"])
    result["targets"] = check_targets(result["results"], args.device)
    result["notes"] = list(args.note) + ([NOTES_CPU_CONTENTION] if args.device == "cpu" else [])
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    if argv is None:
        argv = sys.argv[1:]
    if len(argv) == 2 and argv[0] == "--summarize":  # print the Markdown table of a committed result
        with open(argv[1], encoding="utf-8") as f:
            result = json.load(f)
        print(markdown_summary(result))
        return result
    args = parse_args(argv)
    result = run(args)
    print(format_table(result["results"]))
    for check in result["targets"]:
        verdict = "met" if check["met"] else "MISSED"
        print(f"target {check['target']}: {check['value']} (goal {check['goal']}) {verdict}")
    if args.out:
        write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
