"""Export SSD for deployment: ONNX with the box decoding in the graph, and the one post-step (NMS) in NumPy.

    python -m utils.export --trained_model weights/ssd300_VOC_120000.pth --out ssd300.onnx
    python -m utils.export --trained_model weights/ssd300_mAP_77.43_v2.pth --dataset VOC --out ssd300.onnx
    python -m utils.export --trained_model none --num_classes 21 --out ssd300_random.onnx   # random weights

The model is built as it was trained, from the facts recorded beside the weights (``utils.checkpoint``); a bare
classic ``.pth`` takes the prior config of ``--dataset`` (default VOC). The facts are written beside the exported
file too (``ssd300.json``: size, class names, prior config, the digest of the weights), so a deployment knows what
the outputs mean; a ``.json`` there that describes another model's ``.pth`` is never replaced (exit 2: choose
another ``--out``). Both files are written atomically. The caller's model is left as it was: a copy is exported,
on the CPU.

The graph takes ``input [B, 3, size, size]`` (float32; the pictures as the model's preprocessing makes them — for
VGG16 RGB minus MEANS, exactly what ``data.preprocess`` makes; B is a dynamic axis) and returns

- ``boxes [B, P, 4]``: decoded boxes (x1, y1, x2, y2) relative to the image (the priors are baked in),
- ``scores [B, P, C]``: softmax class probabilities, class 0 = background.

NMS is left out of the graph (ONNX NonMaxSuppression differs between runtimes and would fix the output layout);
:func:`detections_from_outputs` turns the two outputs into the ``[B, C, top_k, 5]`` detections that
``layers.Detect`` returns, with the same rules (per class: scores above ``conf_thresh``, the ``top_k`` best, NMS).
"""

from __future__ import annotations

import argparse
import copy
import io
import os
import sys
import warnings
from collections.abc import Sequence
from types import MappingProxyType

import numpy as np
import torch
from torch import nn

from data.config import get_config
from ssd import Detector, build_ssd
from utils.checkpoint import WEIGHTS_EXTENSIONS, check_sidecar_owner, load_model, weights_digest, write_sidecar
from utils.cli import add_bool, run_main
from utils.training.state import atomic_write_bytes

PROG = "export"
OPSET = 17
FORMATS = ("onnx",)


def decoded(net: nn.Module) -> nn.Module:
    """``net`` (a Detector or a network) with decoding and softmax as its head: what the exported graph computes.

    Returns:
        an ``ssd.Detector`` without NMS: ``x (Tensor[B, 3, size, size])`` → boxes (Tensor[B, P, 4]) relative
        (x1, y1, x2, y2), scores (Tensor[B, P, C]) softmax probabilities.
    """
    inner = net.net if isinstance(net, Detector) else net
    return Detector(inner, detect=None, facts=getattr(net, "facts", None))


def _cpu_copy(net: nn.Module) -> nn.Module:
    """A CPU copy of ``net`` in eval mode; ``net`` itself keeps its device, mode and parameters."""
    cfg = getattr(net, "cfg", None)
    shared = {id(cfg): cfg} if isinstance(cfg, MappingProxyType) else {}
    return copy.deepcopy(net, memo=shared).cpu().eval()  # a read-only config is shared: it cannot be copied


def export_onnx(net: nn.Module, out: str | os.PathLike[str], opset: int = OPSET) -> str:
    """Write ``net`` (an ``ssd.Detector`` or a network) with decoding and softmax as ONNX to ``out`` (atomically),
    batch axis dynamic.

    ``net`` is not changed: a CPU copy in eval mode is exported.

    Returns:
        the path written.
    """
    model = decoded(_cpu_copy(net)).eval()
    example = torch.zeros(2, 3, net.size, net.size)
    out = os.fspath(out)
    graph = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # the legacy exporter says it is legacy
        torch.onnx.export(
            model,
            (example,),
            graph,
            input_names=["input"],
            output_names=["boxes", "scores"],
            dynamic_axes={"input": {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}},
            opset_version=opset,
            dynamo=False,  # the TorchScript exporter: fast, and needs no onnxscript
        )
    atomic_write_bytes(out, graph.getvalue())
    return out


def onnx_session(path: str | os.PathLike[str], threads: int | None = None):  # -> onnxruntime.InferenceSession
    """An onnxruntime CPU session for an exported model (``threads``: intra-op threads, default all)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    return ort.InferenceSession(os.fspath(path), options, providers=["CPUExecutionProvider"])


def run_onnx(session, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (ndarray[B, 3, size, size] float32) -> boxes (ndarray[B, P, 4]), scores (ndarray[B, P, C])."""
    boxes, scores = session.run(["boxes", "scores"], {"input": np.ascontiguousarray(x, dtype=np.float32)})
    return boxes, scores


# ------------------------------------------------------------------------------------- the NMS post-step


def nms_numpy(boxes: np.ndarray, scores: np.ndarray, overlap: float) -> np.ndarray:
    """Greedy NMS, as ``torchvision.ops.nms``: a box is dropped when its IoU with a kept better box exceeds
    ``overlap``.

    Args:
        boxes (ndarray[N, 4]): (x1, y1, x2, y2); scores (ndarray[N]).
    Returns:
        ndarray[K] int64: indices of the kept boxes, best first.
    """
    boxes = boxes.astype(np.float64)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size:  # one pass per kept box: greedy NMS is sequential by nature
        best, rest = order[0], order[1:]
        keep.append(best)
        top_left = np.maximum(boxes[best, :2], boxes[rest, :2])
        bottom_right = np.minimum(boxes[best, 2:], boxes[rest, 2:])
        inter = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
        iou = inter / np.maximum(areas[best] + areas[rest] - inter, np.finfo(np.float64).tiny)
        order = rest[iou <= overlap]
    return np.asarray(keep, dtype=np.int64)


def detections_from_outputs(
    boxes: np.ndarray,
    scores: np.ndarray,
    conf_thresh: float = 0.01,
    nms_thresh: float = 0.45,
    top_k: int = 200,
    background: int = 0,
) -> np.ndarray:
    """The exported model's outputs -> detections laid out as ``layers.Detect`` returns them.

    Per image and class: scores above ``conf_thresh``; the ``top_k`` best of those go through NMS (the cut
    comes first); survivors fill the rows, best first. All (image, class) groups go through one NMS, shifted
    apart so that boxes of different groups never overlap.

    Args:
        boxes (ndarray[B, P, 4]): decoded (x1, y1, x2, y2); scores (ndarray[B, P, C]): probabilities.
    Returns:
        ndarray[B, C, top_k, 5] float32: rows (score, x1, y1, x2, y2), zero where unused and for the background.
    """
    batch, _, num_classes = scores.shape
    per_class = scores.transpose(0, 2, 1).copy()  # [B, C, P]
    per_class[:, background] = 0.0
    k = min(top_k, per_class.shape[2])
    top_idx = np.argpartition(-per_class, k - 1, axis=2)[..., :k]
    top_scores = np.take_along_axis(per_class, top_idx, axis=2)  # [B, C, k], unordered
    b, c, j = np.nonzero(top_scores > conf_thresh)
    out = np.zeros((batch, num_classes, top_k, 5), dtype=np.float32)
    if b.size == 0:
        return out
    cand_boxes = boxes[b, top_idx[b, c, j]].astype(np.float64)
    cand_scores = top_scores[b, c, j]
    group = b * num_classes + c
    span = cand_boxes.max() - cand_boxes.min() + 1.0
    keep = nms_numpy(cand_boxes + (group * span)[:, None], cand_scores, nms_thresh)
    keep = keep[np.argsort(group[keep], kind="stable")]  # by group, best first within a group
    sorted_groups = group[keep]
    rank = np.arange(keep.size) - np.searchsorted(sorted_groups, sorted_groups, side="left")
    out[b[keep], c[keep], rank, 0] = cand_scores[keep]
    out[b[keep], c[keep], rank, 1:] = cand_boxes[keep]
    return out


# --------------------------------------------------------------------------------------------- command line


def _model_to_export(args: argparse.Namespace) -> nn.Module:
    """The model to export: a weights file through the front door (``utils.checkpoint.load_model``), or random
    weights for ``none`` (the priors of ``--dataset``, as for weights without a sidecar, never of the class count)."""
    if args.trained_model.lower() == "none":
        size = args.size or 300
        cfg = get_config(args.dataset or "VOC", size)
        return Detector(build_ssd("test", size, args.num_classes or 21, cfg)).eval()
    model = load_model(args.trained_model, args.dataset, args.size, args.classes, num_classes=args.num_classes)
    print(model.description)
    return model


def check_against_torch(net: nn.Module, path: str, batch: int = 2, seed: int = 0) -> tuple[float, float]:
    """Max abs difference of (boxes, scores) between onnxruntime and PyTorch (a CPU copy of ``net``) on a seeded
    random batch."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(batch, 3, net.size, net.size, generator=gen) * 255 - 128
    with torch.no_grad():
        ref_boxes, ref_scores = decoded(_cpu_copy(net)).eval()(x)
    boxes, scores = run_onnx(onnx_session(path), x.numpy())
    return float(np.abs(boxes - ref_boxes.numpy()).max()), float(np.abs(scores - ref_scores.numpy()).max())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m utils.export", description="Export SSD (network + box decoding + softmax) for deployment."
    )
    parser.add_argument("--trained_model", required=True, help="weights file, or 'none' for random weights")
    parser.add_argument(
        "--size", type=int, default=None, choices=(300, 320, 512), help="default: the weights' (300 for none)"
    )
    parser.add_argument("--dataset", type=str.upper, default=None, choices=("VOC", "COCO"),
                        help="prior config for weights without a sidecar (default VOC)")  # fmt: skip
    parser.add_argument("--classes", default=None, help="class names (one per line) for weights without a sidecar")
    parser.add_argument("--num_classes", type=int, default=None, help="default: from the weights (21 for none)")
    parser.add_argument("--format", default="onnx", choices=FORMATS)
    parser.add_argument("--out", required=True, help="output file, e.g. model.onnx")
    parser.add_argument("--opset", type=int, default=OPSET)
    add_bool(parser, "--check", default=True, help="compare onnxruntime with PyTorch on a random batch of 2")
    args = parser.parse_args(argv)
    if args.opset < OPSET:
        parser.error(f"--opset must be at least {OPSET}, got {args.opset}")

    return run_main(PROG, lambda: export(args))


def export(args: argparse.Namespace) -> int:
    if os.path.splitext(args.out)[1].lower() in (*WEIGHTS_EXTENSIONS, ".json"):
        raise ValueError(f"--out {args.out}: expected an ONNX file name such as model.onnx, not a weights or sidecar "
                         "name")  # fmt: skip
    net = _model_to_export(args)
    weights = net.net.state_dict() if net.facts is not None else None
    if weights is not None:  # before anything is written
        check_sidecar_owner(args.out, weights_digest(weights))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    export_onnx(net, args.out, args.opset)
    print(
        f"wrote {args.out}: input [B,3,{net.size},{net.size}] -> boxes [B,{net.priors.shape[0]},4], "
        f"scores [B,{net.priors.shape[0]},{net.num_classes}]"
    )
    if net.facts is not None:
        print(f"wrote {write_sidecar(args.out, net.facts, weights)}: the model facts (size, class names, priors)")
    if args.check:
        box_diff, score_diff = check_against_torch(net, args.out)
        print(f"onnxruntime vs PyTorch, max abs diff: boxes {box_diff:.2e}, scores {score_diff:.2e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
