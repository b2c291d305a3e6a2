"""The light model in the speed benchmark: our SSDLite320-MobileNetV3 against torchvision's
``ssdlite320_mobilenet_v3_large`` (random weights, 21 classes), and ``test.py`` on a 640x480 video.

    python benchmarks/bench.py --backbone mobilenet_v3_large --device cpu --out benchmarks/results/lite_cpu_<date>.json

Both detectors see the same input: ``x`` (Tensor[B, 3, 320, 320]), RGB scaled to [-1, 1], which is what our
preprocessing makes of a picture and what torchvision's transform makes of one in [0, 1] (mean 0.5, std 0.5). Both
post-process as torchvision's SSDLite: score 0.001, NMS 0.55, 300 candidates per class, 300 detections per picture,
boxes clipped to the picture.

Cases (``--cases``, a subset of ``CASES``):
  end_to_end   x -> detections: ours the network in its test phase (network + softmax + Detect); torchvision its
               eval forward after the input transform (backbone, head, anchors, postprocess_detections, box
               rescaling), in each score regime
  postprocess  the post-processing alone on the same precomputed outputs of our network, in each score regime:
               ours (softmax + Detect), torchvision's postprocess_detections with our priors as anchors
  video        ``test.py`` on a 640x480 synthetic video written with OpenCV: frames per second of the whole call
               (reading, preprocessing, detection, drawing, writing the annotated video and the JSON lines)
Score regimes as for SSD300 (``benchmarks.workloads``), counted at this model's threshold 0.001: "dense" (90 % of the
(prior, class) pairs pass, as with an untrained model) and "sparse" (150 per picture, as with a trained detector).
A from-scratch SSDLite's activations vanish through its random layers (its logits are about 1e-15 in eval mode, so
no background shift can pick 150 pairs), so both models first take the BatchNorm statistics of the calibration batch
(:func:`calibrate_batch_norm`): their activations then have a trained network's scale, and their logits a spread.
The video's model is ``--video_weights`` when given, else our random model with its background bias raised to the
sparse regime on the video's own frames, saved with its sidecar.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torchvision.models.detection import ssdlite320_mobilenet_v3_large
from torchvision.models.detection.image_list import ImageList

from benchmarks import workloads as W
from benchmarks.repo import load_script
from data import VOC_CLASSES, get_config
from data.synthetic import make_image
from ssd import DetectionNet, build_ssd, postprocess
from utils.checkpoint import ModelFacts, write_sidecar
from utils.video import open_writer

ARCHITECTURE = "mobilenet_v3_large"
SIZE = 320
NUM_CLASSES = W.NUM_CLASSES
CONF_THRESH, NMS_THRESH, TOP_K = 0.001, 0.55, 300
NUM_PRIORS = 3234
REGIME_CANDIDATES = {"sparse": 150.0, "dense": 0.9 * NUM_PRIORS * (NUM_CLASSES - 1)}
CASES = ("end_to_end", "postprocess", "video")
VIDEO_SIZE = (640, 480)  # width, height
VIDEO_FRAMES = 120
VIDEO_SCENES = 12  # distinct synthetic pictures, each held for VIDEO_FRAMES / VIDEO_SCENES frames
VIDEO_FPS_GOAL = 10.0
# (regime, case, other implementation, least ratio of its time to ours) at batch 1 and 8 on the CPU
CPU_SPEEDUP_TARGETS = tuple(
    (regime, "end_to_end", "torchvision", 1.0, batch) for regime in ("dense", "sparse") for batch in (1, 8)
)


# ------------------------------------------------------------------------------------------------- models


def build_ours(device: torch.device, seed: int = 0) -> DetectionNet:
    """Our SSDLite320 (random weights, seeded, 21 classes, its post-processing defaults) in eval mode."""
    torch.manual_seed(seed)
    net = build_ssd("test", SIZE, NUM_CLASSES, get_config("VOC", SIZE), architecture=ARCHITECTURE)
    return net.to(device).eval()


def build_torchvision(device: torch.device, seed: int = 0) -> nn.Module:
    """torchvision's ssdlite320_mobilenet_v3_large (random weights, seeded, 21 classes, its defaults: score 0.001,
    NMS 0.55, 300 candidates per class and detections per picture) in eval mode."""
    torch.manual_seed(seed)
    model = ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=NUM_CLASSES)
    return model.to(device).eval()


def calibrate_batch_norm(model: nn.Module, run: Callable[[], Any]) -> None:
    """Set every BatchNorm's running statistics to those of one call of ``run`` (the model in train mode, no
    gradients), then put ``model`` back in eval mode."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # a cumulative average: one call gives that call's statistics
    model.train()
    try:
        with torch.no_grad():
            run()
    finally:
        for norm, momentum in zip(norms, momenta):
            norm.momentum = momentum
        model.eval()


def make_inputs(batch: int, device: torch.device, seed: int = 0) -> Tensor:
    """Tensor[B, 3, 320, 320]: seeded pictures as both models take them, RGB in [-1, 1]."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, SIZE, SIZE, generator=gen) * 2.0 - 1.0).to(device)


def torchvision_raw(model: nn.Module, x: Tensor) -> tuple[list[Tensor], dict[str, Tensor]]:
    """torchvision's network on x (Tensor[B, 3, 320, 320]) → (feature maps, {bbox_regression [B, P, 4],
    cls_logits [B, P, C]})."""
    features = list(model.backbone(x).values())
    return features, model.head(features)


def torchvision_detect(model: nn.Module, x: Tensor) -> list[dict[str, Tensor]]:
    """torchvision's eval forward after its input transform: network, anchors, ``postprocess_detections`` and the
    rescaling of boxes to the pictures' sizes (here the input's own). x (Tensor[B, 3, 320, 320]) in [-1, 1]."""
    sizes = [(SIZE, SIZE)] * x.shape[0]
    features, head = torchvision_raw(model, x)
    anchors = model.anchor_generator(ImageList(x, sizes), features)
    detections = model.postprocess_detections(head, anchors, sizes)
    return model.transform.postprocess(detections, sizes, sizes)


# ------------------------------------------------------------------------------------------ score regimes


def regime_statistics(
    ours: DetectionNet, tv: nn.Module, x: Tensor, regime: str
) -> tuple[dict[str, W.Adjustment], dict[str, Any]]:
    """Each model's logit adjustment for ``regime`` on the calibration batch x, and the statistics for the JSON
    (candidates per picture before and after, detections per picture its own post-processing then gives)."""
    with torch.inference_mode():
        loc, logits = ours.predict(x)
        _, tv_head = torchvision_raw(tv, x)
    logits_by_model = {"ours": logits, "torchvision": tv_head["cls_logits"]}
    adjust, stats = W.regime_adjustments(regime, logits_by_model, CONF_THRESH, REGIME_CANDIDATES)
    batch = x.shape[0]
    with torch.inference_mode():
        with W.adjusted_head(ours, adjust["ours"]):
            detections = ours(x)
        with W.adjusted_head(tv, adjust["torchvision"]):
            tv_detections = torchvision_detect(tv, x)
    stats["ours"]["detections_per_image"] = float((detections[..., 0] > 0).sum()) / batch
    stats["torchvision"]["detections_per_image"] = sum(len(d["boxes"]) for d in tv_detections) / batch
    return adjust, stats


# ------------------------------------------------------------------------------------- one call per case


def end_to_end_fns(ours: DetectionNet, tv: nn.Module, x: Tensor) -> dict[str, Callable[[], Any]]:
    """x (Tensor[B, 3, 320, 320]) → detections, each model its own way."""

    @torch.inference_mode()
    def run_ours() -> Tensor:
        return ours(x)

    @torch.inference_mode()
    def run_tv() -> Any:
        return torchvision_detect(tv, x)

    return {"ours": run_ours, "torchvision": run_tv}


def postprocess_fns(ours: DetectionNet, tv: nn.Module, loc: Tensor, logits: Tensor) -> dict[str, Callable[[], Any]]:
    """Post-processing alone on our network's outputs loc (Tensor[B, P, 4]) and logits (Tensor[B, P, C]): our
    softmax + Detect, torchvision's postprocess_detections with our priors as anchors (pixels of 320x320)."""
    batch = loc.shape[0]
    head = {"bbox_regression": loc, "cls_logits": logits}
    anchors = [W.anchors_from_priors(ours.priors, SIZE)] * batch
    sizes = [(SIZE, SIZE)] * batch

    @torch.inference_mode()
    def run_ours() -> Tensor:
        return postprocess(loc, logits, ours.priors, ours.detect, ours.variance)

    @torch.inference_mode()
    def run_tv() -> Any:
        return tv.postprocess_detections(head, anchors, sizes)

    return {"ours": run_ours, "torchvision": run_tv}


def run_cases(args: argparse.Namespace, result: dict[str, Any], measure: Callable[..., list[dict]]) -> None:
    """end_to_end and postprocess in each regime, batch by batch, then the video; records go to
    ``result["results"]``, the regimes' statistics to ``result["score_statistics"]``, the video to
    ``result["video"]``. ``measure`` is bench.py's (case, batch, fns, device, warmup, iters, regime)."""
    device = torch.device(args.device)
    ours, tv = build_ours(device, args.seed), build_torchvision(device, args.seed)
    calibration = max(2, args.calibration_batch)  # BatchNorm statistics of the 1x1 maps need two pictures
    pool = make_inputs(max(args.batch_sizes + [calibration]), device, args.seed)
    calibrate_batch_norm(ours, lambda: ours.predict(pool[:calibration]))
    calibrate_batch_norm(tv, lambda: torchvision_raw(tv, pool[:calibration]))
    result["score_statistics"] = {
        "method": (
            "as for SSD300 (benchmarks/workloads.py), counted at score 0.001 on a calibration batch of "
            f"{calibration} seeded inputs, after both models took that batch's BatchNorm statistics"
        ),
    }
    for regime in args.regimes if {"end_to_end", "postprocess"} & set(args.cases) else []:
        adjust, result["score_statistics"][regime] = regime_statistics(ours, tv, pool[:calibration], regime)
        with W.adjusted_head(ours, adjust["ours"]), W.adjusted_head(tv, adjust["torchvision"]):
            for batch in args.batch_sizes:
                x = pool[:batch]
                if "end_to_end" in args.cases:
                    fns = end_to_end_fns(ours, tv, x)
                    result["results"] += measure("end_to_end", batch, fns, device, args.warmup, args.iters, regime)
                if "postprocess" in args.cases:
                    with torch.inference_mode():
                        loc, logits = ours.predict(x)
                    fns = postprocess_fns(ours, tv, loc, logits)
                    result["results"] += measure(
                        "postprocess", batch, fns, device, args.light_warmup, args.light_iters, regime
                    )
    if "video" in args.cases:
        result["video"] = video_case(args.video_weights, args.seed, args.device)
        print(f"  video {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}: {result['video']['fps']:.1f} frames/s", flush=True)


def check_targets(records: list[dict[str, Any]], video: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The light model's CPU goals this run can judge, each with the measured value."""
    ms = {(r["case"], r.get("regime"), r["batch"], r["impl"]): r["median_ms"] for r in records}
    checks = []
    for regime, case, other, goal, batch in CPU_SPEEDUP_TARGETS:
        theirs, mine = ms.get((case, regime, batch, other)), ms.get((case, regime, batch, "ours"))
        if theirs and mine:
            value = theirs / mine
            name = f"{regime} {case} batch {batch}: {other} time / ours"
            checks.append({"target": name, "value": round(value, 3), "goal": f">= {goal:g}", "met": value >= goal})
    if video:
        name = f"test.py on a {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]} video: frames per second"
        fps = video["fps"]
        checks.append({"target": name, "value": fps, "goal": f">= {VIDEO_FPS_GOAL:g}", "met": fps >= VIDEO_FPS_GOAL})
    return checks


# ------------------------------------------------------------------------------------------------- video


def video_frames(seed: int = 0) -> list[np.ndarray]:
    """``VIDEO_SCENES`` synthetic 640x480 BGR pictures (``data.synthetic``, one to three objects each)."""
    rng = np.random.default_rng(seed)
    width, height = VIDEO_SIZE
    return [make_image(rng, width, height, max_objects=3, empty_prob=0.0)[0] for _ in range(VIDEO_SCENES)]


def write_video(path: str, scenes: list[np.ndarray], frames: int = VIDEO_FRAMES, fps: float = 30.0) -> str:
    """Write ``frames`` frames of ``scenes`` (each held for an equal share) to ``path`` (MPEG-4, else MJPG .avi)."""
    writer, written = open_writer(os.path.splitext(path)[0], fps, VIDEO_SIZE)
    try:
        for i in range(frames):
            writer.write(scenes[i * len(scenes) // frames])
    finally:
        writer.release()
    return written


def sparse_model(folder: str, scenes: list[np.ndarray], seed: int = 0) -> str:
    """Our random model with the BatchNorm statistics of ``scenes`` and its background bias raised so that about
    150 (prior, class) pairs per frame pass 0.001, as a trained detector's do; saved as
    ``folder/ssdlite320_sparse.pth`` + sidecar."""
    net = build_ours(torch.device("cpu"), seed)
    x = torch.stack([net.preprocessing(frame, SIZE) for frame in scenes])
    calibrate_batch_norm(net, lambda: net.predict(x))
    with torch.inference_mode():
        _, logits = net.predict(x)
    adjustment = W.regime_adjustment("sparse", logits, CONF_THRESH, REGIME_CANDIDATES)
    path = os.path.join(folder, "ssdlite320_sparse.pth")
    with W.adjusted_head(net, adjustment):
        torch.save(net.state_dict(), path)
    write_sidecar(path, ModelFacts.from_model(net, VOC_CLASSES, "VOC"))
    return path


def video_case(weights: str | None, seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Frames per second of ``test.py`` (in this process, its default batch and threshold) on a 640x480 video."""
    test_script = load_script("test")
    with tempfile.TemporaryDirectory() as folder:
        scenes = video_frames(seed)
        video = write_video(os.path.join(folder, "synthetic.mp4"), scenes)
        model = weights or sparse_model(folder, scenes, seed)
        argv = ["--trained_model", model, "--save_folder", os.path.join(folder, "out"), video]
        argv += ["--cuda", "true" if device == "cuda" else "false"]
        start = time.perf_counter()
        code = test_script.main(argv)
        seconds = time.perf_counter() - start
        stem = os.path.splitext(os.path.basename(video))[0]
        with open(os.path.join(folder, "out", f"{stem}_det.jsonl"), encoding="utf-8") as f:
            frames = sum(1 for _ in f)
    if code not in (0, None):
        raise RuntimeError(f"test.py on the video exited {code}")
    return {
        "command": "test.py --trained_model MODEL --save_folder OUT VIDEO (in-process, defaults otherwise)",
        "video": f"{VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}, {VIDEO_FRAMES} frames of {VIDEO_SCENES} synthetic pictures",
        "model": weights or "random SSDLite320 weights, the frames' BatchNorm statistics, the sparse regime",
        "frames": frames,
        "seconds": round(seconds, 3),
        "fps": round(frames / seconds, 2),
    }
