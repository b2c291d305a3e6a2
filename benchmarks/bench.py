"""Speed of our SSD300 against torchvision's ssd300_vgg16 (21 classes), measured in one run; with ``--backbone
mobilenet_v3_large``, of our SSDLite320 against torchvision's ssdlite320_mobilenet_v3_large (``benchmarks/lite.py``).

    python benchmarks/bench.py --device cpu  --out benchmarks/results/cpu_<date>.json
    python benchmarks/bench.py --backbone mobilenet_v3_large --out benchmarks/results/lite_cpu_<date>.json
    python benchmarks/bench.py --device cuda --out benchmarks/results/<gpu>_<date>.json [--amp bf16] [--channels_last]
    python benchmarks/bench.py --summarize benchmarks/results/cpu_<date>.json   # Markdown table for the README

Cases, each for ours and torchvision with the same device, batch, precision and switches (see benchmarks/README.md):
  raw         the raw network (ours ``predict``; torchvision backbone + head) on a normalised batch
  end_to_end  images in [0, 1] -> detections at conf 0.01, NMS 0.45, top_k 200, in each score regime
  postprocess the post-processing alone on the same precomputed outputs of our network, in each score regime:
              ours (softmax + Detect), the previous Detect, torchvision's postprocess_detections
  train       one SGD step: forward, loss with matching, backward, update, on a device-resident batch
  match       target matching alone (ours: ``match_batch`` on the padded batch)
  loss        matching + loss forward + backward on precomputed outputs; also the classic per-image loop
  onnx        the exported graph (network + decoding) in onnxruntime beside PyTorch (CPU only)
Score regimes (``--regime``): "dense", where nearly every (prior, class) pair scores above 0.01 as with an untrained
or early checkpoint, and "sparse", about 150 pairs per image as with a trained detector (see ``workloads``).
In the dense regime the JSON also holds the peak memory of one Detect call on the CPU (torch.profiler) and the
bound on torchvision's GPU NMS mask that Detect's chunking keeps at batch 32 (COCO and VOC).
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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repository's packages import

from benchmarks import lite  # noqa: E402
from benchmarks import workloads as W  # noqa: E402
from benchmarks.bench_onnx import exported_session, max_abs_diff, onnx_fns  # noqa: E402
from benchmarks.previous_detect import PreviousDetect  # noqa: E402
from benchmarks.timing import (  # noqa: E402
    add_common_flags,
    machine_info,
    median_ms,
    peak_cpu_memory_bytes,
    time_interleaved,
    torch_threads,
    write_json,
)
from layers.functions.detection import NMS_MASK_BYTES, max_boxes_per_nms, nms_chunk_sizes, nms_mask_bytes  # noqa: E402

CASES = ("raw", "end_to_end", "postprocess", "train", "match", "loss", "onnx")
LIGHT_CASES = ("postprocess", "match", "loss")  # no network: cheap, so timed more often
DEFAULTS = {
    "cpu": {"batch_sizes": "1,8", "warmup": 1, "iters": 3, "light_warmup": 2, "light_iters": 10},
    "cuda": {"batch_sizes": "1,8,32", "warmup": 10, "iters": 50, "light_warmup": 10, "light_iters": 100},
}
REGIMES = ("dense", "sparse")
# (regime, case, other implementation, least ratio of its time to ours) at batch 8 on the CPU
CPU_SPEEDUP_TARGETS = (
    ("dense", "postprocess", "previous", 5.0),
    ("dense", "postprocess", "torchvision", 2.0),
    ("dense", "end_to_end", "torchvision", 0.97),
    ("sparse", "postprocess", "torchvision", 2.0),
    ("sparse", "end_to_end", "torchvision", 1.0),
)
CALIBRATION_BATCH = 8
MIB = 2**20
NOTES_CPU_CONTENTION = (
    "CPU times vary with whatever else the machine runs (its load average at the start is under machine): the "
    "ratios come from the same run with the implementations taking turns call by call, and are what counts."
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="SSD300 speed: ours vs torchvision ssd300_vgg16.")
    parser.add_argument(
        "--backbone", choices=("vgg16", lite.ARCHITECTURE), default="vgg16",
        help="vgg16: SSD300 vs ssd300_vgg16; mobilenet_v3_large: SSDLite320 vs ssdlite320_mobilenet_v3_large",
    )  # fmt: skip
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
    parser.add_argument(
        "--cases", default=None,
        help=f"comma-separated subset of {','.join(CASES)} (vgg16, default all) or of {','.join(lite.CASES)}",
    )  # fmt: skip
    parser.add_argument("--video_weights", default=None, help="mobilenet_v3_large: the video case's model file")
    parser.add_argument(
        "--regime", choices=(*REGIMES, "both"), default="both", help="score regime of end_to_end and postprocess"
    )
    parser.add_argument(
        "--no_previous", action="store_true", help="leave the previous Detect out of the postprocess case"
    )
    parser.add_argument("--onnx_batch_sizes", default="1,8")
    add_common_flags(parser)
    args = parser.parse_args(argv)
    for key, value in DEFAULTS[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.batch_sizes = [int(b) for b in str(args.batch_sizes).split(",")]
    args.onnx_batch_sizes = [int(b) for b in str(args.onnx_batch_sizes).split(",")]
    known = lite.CASES if args.backbone == lite.ARCHITECTURE else CASES
    args.cases = [c.strip() for c in (args.cases or ",".join(known)).split(",") if c.strip()]
    args.regimes = list(REGIMES) if args.regime == "both" else [args.regime]
    unknown = sorted(set(args.cases) - set(known))
    if unknown:
        parser.error(f"unknown cases {unknown}; expected some of {list(known)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but torch.cuda.is_available() is False")
    return args


# -------------------------------------------------------------------------------------------- measuring


def measure(
    case: str,
    batch: int,
    fns: dict[str, Callable[[], Any]],
    device: torch.device,
    warmup: int,
    iters: int,
    regime: str | None = None,
) -> list[dict[str, Any]]:
    """Time ``fns`` (implementation name -> call) and return one record per implementation."""
    times = time_interleaved(fns, device, warmup, iters)
    records = []
    label = case if regime is None else f"{case} {regime}"
    for impl, seconds in times.items():
        ms = median_ms(seconds)
        records.append(
            {
                "case": case,
                **({} if regime is None else {"regime": regime}),
                "batch": batch,
                "impl": impl,
                "median_ms": round(ms, 4),
                "img_per_s": round(batch / ms * 1e3, 2),
                "iters": len(seconds),
                "min_ms": round(min(seconds) * 1e3, 4),
                "max_ms": round(max(seconds) * 1e3, 4),
            }
        )
        print(f"  {label:<18} batch {batch:>3}  {impl:<12} {ms:10.2f} ms {batch / ms * 1e3:10.1f} img/s", flush=True)
    return records


def regime_statistics(
    ours: Any, tv: Any, outputs: tuple[torch.Tensor, torch.Tensor], tv_head: dict[str, torch.Tensor], regime: str
) -> tuple[dict[str, W.Adjustment], dict[str, Any]]:
    """Each model's logit adjustment for a regime, its candidates per image before and after, and the detections
    per image its own post-processing then gives, on the calibration batch (fp32 outputs).

    Args:
        outputs: our (loc Tensor[B, P, 4], logits Tensor[B, P, C]); tv_head: torchvision's raw outputs.
    Returns:
        the adjustment per model ("ours", "torchvision"), and the statistics for the JSON.
    """
    loc, logits = outputs
    tv_logits = tv_head["cls_logits"]
    adjust, stats = W.regime_adjustments(regime, {"ours": logits, "torchvision": tv_logits})
    batch = loc.shape[0]
    with torch.inference_mode():
        scores = torch.softmax(W.adjusted_logits(logits, adjust["ours"]), -1)
        detections = ours.detect(loc, scores, ours.priors)
        tv_adjusted = {**tv_head, "cls_logits": W.adjusted_logits(tv_logits, adjust["torchvision"])}
        anchors = W.torchvision_anchors(tv, loc.new_zeros(batch, 3, W.SIZE, W.SIZE))
        tv_detections = tv.postprocess_detections(tv_adjusted, anchors, [(W.SIZE, W.SIZE)] * batch)
    stats["ours"]["detections_per_image"] = float((detections[..., 0] > 0).sum()) / batch
    stats["torchvision"]["detections_per_image"] = sum(len(d["boxes"]) for d in tv_detections) / batch
    return adjust, stats


def detect_memory(ours: Any, loc: torch.Tensor, logits: torch.Tensor, previous: bool) -> dict[str, Any]:
    """Peak memory of one Detect call on the CPU (torch.profiler), dense regime, and the GPU NMS mask bound.

    Args:
        loc (Tensor[B, P, 4]), logits (Tensor[B, P, C]): our outputs with the dense regime's adjustment.
    """
    loc, scores, priors = loc.float().cpu(), torch.softmax(logits.float().cpu(), -1), ours.priors.cpu()
    detects = {"ours": ours.detect}
    if previous:
        detects["previous"] = PreviousDetect(W.NUM_CLASSES, 0, W.TOP_K, W.CONF_THRESH, W.NMS_THRESH)
    memory: dict[str, Any] = {"batch": loc.shape[0], "method": "torch.profiler(profile_memory=True), CPU, fp32"}
    for name, detect in detects.items():
        with torch.inference_mode():
            memory[f"{name}_peak_mib"] = round(peak_cpu_memory_bytes(lambda d=detect: d(loc, scores, priors)) / MIB, 2)
    memory["gpu_nms_mask"] = [nms_mask_bound(32, 81), nms_mask_bound(32, 21)]
    return memory


def nms_mask_bound(batch: int, num_classes: int, top_k: int = W.TOP_K) -> dict[str, Any]:
    """Analytic size of torchvision's GPU NMS mask when every class of every image has ``top_k`` candidates:
    in one call over all of them, and in Detect's chunks (computed by its own chunking)."""
    boxes = batch * (num_classes - 1) * top_k
    group = torch.arange(batch * (num_classes - 1)).repeat_interleave(top_k)  # sorted, ``top_k`` per group
    sizes = nms_chunk_sizes(group, max_boxes_per_nms(torch.device("cuda")), top_k)
    return {
        "batch": batch,
        "num_classes": num_classes,
        "top_k": top_k,
        "boxes": boxes,
        "one_call_mask_mib": round(nms_mask_bytes(boxes) / MIB, 1),
        "calls": len(sizes),
        "largest_call_boxes": max(sizes),
        "largest_call_mask_mib": round(nms_mask_bytes(max(sizes)) / MIB, 1),
        "bound_mib": NMS_MASK_BYTES / MIB,
    }


def run_inference_cases(args: argparse.Namespace, settings: W.Settings, result: dict[str, Any]) -> None:
    """raw, then end_to_end and postprocess in each score regime (with the calibration they need)."""
    ours = W.build_ours("test", settings, args.seed)
    tv = W.build_torchvision(False, settings, args.seed)
    pool = W.make_images(max(args.batch_sizes + [CALIBRATION_BATCH]), settings.device, args.seed)
    with torch.inference_mode():  # fp32: calibration, statistics, and (cast) the postprocess case's inputs
        loc, logits = ours.predict(W.normalise(pool, settings))
        tv_head = W.torchvision_raw(tv, W.normalise(pool[:CALIBRATION_BATCH], settings))
    calibration = (loc[:CALIBRATION_BATCH], logits[:CALIBRATION_BATCH])
    amp_dtype = settings.amp_dtype or torch.float32  # what the network gives under autocast
    result["score_statistics"] = {
        "method": (
            "per model and regime, its conf convs' weights and biases are multiplied by logit_scale (dense) or its "
            "background bias raised by background_bias_added (sparse), the value found by bisection on the fp32 "
            f"logits of a calibration batch of {CALIBRATION_BATCH} seeded images so that on average the regime's "
            "number of (prior, non-background class) pairs per image score above 0.01"
        ),
    }
    W.compile_networks(ours, tv, settings)
    if "raw" in args.cases:
        for batch in args.batch_sizes:
            fns = W.raw_fns(ours, tv, W.normalise(pool[:batch], settings), settings)
            result["results"] += measure("raw", batch, fns, settings.device, args.warmup, args.iters)
    for regime in args.regimes:
        adjust, result["score_statistics"][regime] = regime_statistics(ours, tv, calibration, tv_head, regime)
        regime_logits = W.adjusted_logits(logits, adjust["ours"])
        if regime == "dense" and "postprocess" in args.cases:
            result["detect_memory"] = detect_memory(
                ours, *(t[:CALIBRATION_BATCH] for t in (loc, regime_logits)), previous=not args.no_previous
            )
        with W.adjusted_head(ours, adjust["ours"]), W.adjusted_head(tv, adjust["torchvision"]):
            for batch in args.batch_sizes:
                if "end_to_end" in args.cases:
                    fns = W.end_to_end_fns(ours, tv, pool[:batch], settings)
                    result["results"] += measure(
                        "end_to_end", batch, fns, settings.device, args.warmup, args.iters, regime
                    )
                if "postprocess" in args.cases:
                    outputs = (t[:batch].to(amp_dtype) for t in (loc, regime_logits))
                    fns = W.postprocess_fns(ours, tv, *outputs, settings, previous=not args.no_previous)
                    result["results"] += measure(
                        "postprocess", batch, fns, settings.device, args.light_warmup, args.light_iters, regime
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


def _key(record: dict[str, Any]) -> tuple[str, str, int]:
    """(case, regime or "", batch): what the implementations of one measurement share."""
    return record["case"], record.get("regime", ""), record["batch"]


def _order(key: tuple[str, str, int]) -> tuple[int, str, int]:
    return CASES.index(key[0]), key[1], key[2]


def _label(case: str, regime: str) -> str:
    return f"{case} ({regime})" if regime else case


def ratios(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each (case, regime, batch): how many times faster ours is than each other implementation."""
    out = []
    for key in sorted({_key(r) for r in records}, key=_order):
        case, regime, batch = key
        row = {r["impl"]: r["median_ms"] for r in records if _key(r) == key}
        for impl, ms in row.items():
            if impl != "ours" and "ours" in row:
                ratio = {"case": case, **({"regime": regime} if regime else {}), "batch": batch, "versus": impl}
                out.append(ratio | {"ours_speedup": round(ms / row["ours"], 3)})
    return out


def check_targets(records: list[dict[str, Any]], device: str) -> list[dict[str, Any]]:
    """The targets that this run can judge, each with the measured value.

    Records without a regime (runs before score regimes existed) count as the sparse regime.
    """

    def ms(case: str, batch: int, impl: str, regime: str | None = None) -> float | None:
        for r in records:
            found = r.get("regime")
            if (r["case"], r["batch"], r["impl"]) == (case, batch, impl) and (
                found == regime or (found is None and regime == "sparse")
            ):
                return r["median_ms"]
        return None

    def ips(case: str, batch: int, impl: str = "ours", regime: str | None = None) -> float | None:
        t = ms(case, batch, impl, regime)
        return None if t is None else batch / t * 1e3

    checks = []

    def add(name: str, value: float | None, goal: float) -> None:
        if value is not None:
            checks.append({"target": name, "value": round(value, 3), "goal": f">= {goal:g}", "met": value >= goal})

    def speedup(case: str, batch: int, other: str, regime: str | None = None) -> float | None:
        theirs, mine = ms(case, batch, other, regime), ms(case, batch, "ours", regime)
        return theirs / mine if theirs and mine else None

    if device == "cpu":
        for regime, case, other, goal in CPU_SPEEDUP_TARGETS:
            add(f"{regime} {case} batch 8: {other} time / ours", speedup(case, 8, other, regime), goal)
        add("matching + loss fwd/bwd batch 8: classic loop time / ours", speedup("loss", 8, "classic"), 3)
    else:
        e2e, raw = ips("end_to_end", 32, regime="sparse"), ips("raw", 32)
        add("sparse end_to_end batch 32 img/s / our raw img/s", e2e / raw if e2e and raw else None, 0.8)
        add("sparse end_to_end batch 1 img/s", ips("end_to_end", 1, regime="sparse"), 300)
        tv_train, train = ips("train", 32, "torchvision"), ips("train", 32)
        add("train batch 32: ours img/s / torchvision", train / tv_train if train and tv_train else None, 3)
        match = ms("match", 32, "ours")
        if match is not None:
            checks.append({"target": "match batch 32 ms", "value": round(match, 3), "goal": "<= 1", "met": match <= 1})
    return checks


def format_table(records: list[dict[str, Any]]) -> str:
    """One line per (case, regime, batch, implementation): median ms, img/s, and how many times faster ours is."""
    ours_ms = {_key(r): r["median_ms"] for r in records if r["impl"] == "ours"}
    lines = [f"{'case':<22}{'batch':>6}  {'impl':<12}{'median ms':>12}{'img/s':>11}{'ours faster':>13}"]
    for r in records:
        mine = ours_ms.get(_key(r))
        speedup = f"{r['median_ms'] / mine:.2f}x" if mine and r["impl"] != "ours" else ""
        lines.append(
            f"{_label(r['case'], r.get('regime', '')):<22}{r['batch']:>6}  {r['impl']:<12}{r['median_ms']:>12.2f}"
            f"{r['img_per_s']:>11.1f}{speedup:>13}"
        )
    return "\n".join(lines)


def markdown_summary(result: dict[str, Any]) -> str:
    """A Markdown table of a result JSON: per case (and regime) and batch, ours and the others, our speed-up."""
    by_key: dict[tuple[str, str, int], dict[str, dict[str, Any]]] = {}
    for r in result["results"]:
        by_key.setdefault(_key(r), {})[r["impl"]] = r
    lines = ["| case | batch | ours ms | ours img/s | other | other ms | other img/s | ours faster |", "|" + "---|" * 8]
    for (case, regime, batch), impls in sorted(by_key.items(), key=lambda kv: _order(kv[0])):
        ours = impls.get("ours")
        for name, other in impls.items():
            if name == "ours" or ours is None:
                continue
            lines.append(
                f"| {_label(case, regime)} | {batch} | {ours['median_ms']:.1f} | {ours['img_per_s']:.1f} | {name} | "
                f"{other['median_ms']:.1f} | {other['img_per_s']:.1f} | {other['median_ms'] / ours['median_ms']:.2f}x |"
            )
    return "\n".join(lines)


def settings_dict(args: argparse.Namespace) -> dict[str, Any]:
    if args.backbone == lite.ARCHITECTURE:
        return lite_settings_dict(args)
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
            "regimes",
            "no_previous",
            "onnx_batch_sizes",
            "threads",
            "seed",
        )
    } | {
        "conf_thresh": W.CONF_THRESH,
        "nms_thresh": W.NMS_THRESH,
        "top_k": W.TOP_K,
        "num_classes": W.NUM_CLASSES,
        "regime_candidates_per_image": {regime: round(n, 1) for regime, n in W.REGIME_CANDIDATES.items()},
        "cudnn_benchmark": args.device == "cuda",
        "torchvision_model": "ssd300_vgg16(weights=None, weights_backbone=None, num_classes=21, topk_candidates=200)",
        "targets_per_image": "1-10 random boxes (5-80% side), labels 0-19, seeded",
        "optimizer": "SGD lr 1e-3 momentum 0.9 weight_decay 5e-4 (both); GradScaler with fp16",
    }


def lite_settings_dict(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("backbone", "device", "batch_sizes", "warmup", "iters", "light_warmup", "light_iters", "cases", "regimes")
    return {key: getattr(args, key) for key in (*keys, "threads", "seed")} | {
        "conf_thresh": lite.CONF_THRESH,
        "nms_thresh": lite.NMS_THRESH,
        "top_k": lite.TOP_K,
        "num_classes": lite.NUM_CLASSES,
        "regime_candidates_per_image": {regime: round(n, 1) for regime, n in lite.REGIME_CANDIDATES.items()},
        "torchvision_model": "ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=21)",
        "input": "Tensor[B, 3, 320, 320] in [-1, 1], the same for both",
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    """All selected cases; returns the JSON document. On CUDA with training's settings (cuDNN autotuning)."""
    cudnn_benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = args.device == "cuda"
    try:
        with torch_threads(args.threads):
            device = torch.device(args.device)
            settings = W.Settings(device, args.amp, args.channels_last, args.compile, args.compile_mode)
            result: dict[str, Any] = {"machine": machine_info(device), "settings": settings_dict(args), "results": []}
            if args.backbone == lite.ARCHITECTURE:
                args.calibration_batch = CALIBRATION_BATCH
                lite.run_cases(args, result, measure)
            elif {"raw", "end_to_end", "postprocess"} & set(args.cases):
                run_inference_cases(args, settings, result)
            if {"train", "match", "loss"} & set(args.cases) and args.backbone == "vgg16":
                run_training_cases(args, settings, result)
            if "onnx" in args.cases and args.device == "cpu" and args.backbone == "vgg16":
                run_onnx_case(args, result)
    finally:
        torch.backends.cudnn.benchmark = cudnn_benchmark
    result["ratios"] = ratios(result["results"])
    if args.backbone == lite.ARCHITECTURE:
        result["targets"] = lite.check_targets(result["results"], result.get("video")) if args.device == "cpu" else []
    else:
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
