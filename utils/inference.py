"""Run a test-phase SSD on BGR images and turn its output into pixel boxes; draw them.

    from utils.inference import detect_images, load_detector
    net, facts, _ = load_detector("weights/ssd300_VOC_120000.pth")   # size, priors and classes from the weights
    dets = detect_images(net, [cv2.imread("dog.jpg")], conf_thresh=0.5)
    for class_index, score, (x1, y1, x2, y2) in dets[0]:
        print(facts.class_names[class_index], score, x1, y1, x2, y2)

Class indices index the class *names* (VOC_CLASSES, a ``--classes`` file…): the model's class ``c`` (0 is
background) is reported as ``c - 1``. Boxes are ``(x1, y1, x2, y2)`` in 0-based pixels — the relative box times the
image width/height, as the classic test script computed them — clipped to the image, ``[0, w-1] × [0, h-1]``.
"""

from __future__ import annotations

import colorsys
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from data.config import MEANS
from data.transforms import preprocess
from utils.checkpoint import ModelFacts, model_from_facts, read_checkpoint, resolve_facts

if TYPE_CHECKING:
    from ssd import SSD

Detection = tuple[int, float, list[float]]  # (class index into the names, score, [x1, y1, x2, y2] pixels)


class DetectionArrays(NamedTuple):
    """Detections of one image as arrays, sorted by score descending."""

    labels: np.ndarray  # int64 [n], index into the class names
    scores: np.ndarray  # float32 [n]
    boxes: np.ndarray  # float32 [n, 4], (x1, y1, x2, y2) pixels


def model_input_size(net: nn.Module) -> int:
    """The square input side (300 or 512) the SSD was built for."""
    size = getattr(net, "size", None)
    if size is None:
        cfg = getattr(net, "cfg", None)
        size = cfg["min_dim"] if cfg is not None else None
    if size is None:
        raise ValueError("cannot tell the input size of the model: it has neither .size nor .cfg['min_dim']")
    return int(size)


def choose_device(cuda: bool | None) -> torch.device:
    """``--cuda`` → device: None means CUDA when available; True without CUDA is a ValueError."""
    if cuda is None:
        cuda = torch.cuda.is_available()
    if cuda and not torch.cuda.is_available():
        raise ValueError("--cuda true but no CUDA device is available (use --cuda false)")
    return torch.device("cuda" if cuda else "cpu")


def load_detector(
    path: str | os.PathLike[str],
    dataset: str | None = None,
    size: int | None = None,
    classes: str | os.PathLike[str] | Sequence[str] | None = None,
    cuda: bool | None = None,
    **detect_kwargs: Any,
) -> tuple[SSD, ModelFacts, str]:
    """A weights file → the test-phase SSD it was trained as, on the chosen device, ready for :func:`detect_images`.

    The model facts come from the weights (sidecar or checkpoint) or, for a bare ``.pth``, from ``dataset`` /
    ``size`` / ``classes`` (see :func:`utils.checkpoint.resolve_facts`; flags that contradict recorded facts are
    a ``CheckpointError``). ``detect_kwargs`` go to ``Detect`` (``top_k``, ``conf_thresh``, …).

    Returns:
        the model, its facts (``facts.class_names`` names the class indices :func:`detect_images` reports), and
        the one-line description the scripts print.
    """
    device = choose_device(cuda)
    sd, meta = read_checkpoint(path)
    facts, description = resolve_facts(path, sd, meta, dataset=dataset, size=size, classes=classes)
    net = model_from_facts(facts, sd, "test", source=os.fspath(path), **detect_kwargs)
    return prepare_for_device(net, device), facts, description


def prepare_for_device(net: SSD, device: torch.device) -> SSD:
    """``net`` on ``device``; on CUDA channels_last, with cuDNN picking its fastest kernels for the fixed size."""
    net = net.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        net = net.to(memory_format=torch.channels_last)
    return net


def model_device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def preprocess_batch(images_bgr: Sequence[np.ndarray], size: int, mean: Sequence[float] = MEANS) -> Tensor:
    """BGR uint8 images ``[H_i, W_i, 3]`` → network input ``Tensor[B, 3, size, size]`` (RGB minus mean)."""
    return torch.stack([preprocess(img, size, mean=mean) for img in images_bgr])


def detections_to_arrays(
    dets: Tensor, image_sizes: Sequence[tuple[int, int]], conf_thresh: float = 0.01, inclusive: bool = True
) -> list[DetectionArrays]:
    """Test-phase output → per-image arrays in pixels, sorted by score descending.

    Args:
        dets (Tensor[B, C, K, 5]): rows ``(score, x1, y1, x2, y2)`` in relative coordinates, class 0 background.
        image_sizes: ``(height, width)`` of each image.
        conf_thresh: keep rows with ``score >= conf_thresh`` (zero-padded rows are never kept).
        inclusive: clip to ``[0, w-1]`` (0-based pixel indices, VOC) or, if False, to ``[0, w]`` (continuous
            extent, COCO).
    Returns:
        B tuples ``(labels [n] = class - 1, scores [n], boxes [n, 4])``.
    """
    dets = dets.detach().float().cpu()
    hw = torch.as_tensor(image_sizes, dtype=torch.float32).reshape(-1, 2)  # [B, 2]
    scale = torch.stack([hw[:, 1], hw[:, 0], hw[:, 1], hw[:, 0]], dim=1)[:, None, None, :]  # [B, 1, 1, 4]
    upper = scale - 1.0 if inclusive else scale
    boxes = torch.minimum((dets[..., 1:] * scale).clamp(min=0.0), upper)  # [B, C, K, 4]
    scores = dets[..., 0]  # [B, C, K]
    keep = (scores >= conf_thresh) & (scores > 0)
    keep[:, 0] = False  # background
    img, cls, row = keep.nonzero(as_tuple=True)
    sel_scores = scores[img, cls, row].numpy()
    sel_boxes = boxes[img, cls, row].numpy()
    img_np, cls_np = img.numpy(), cls.numpy()
    order = np.lexsort((-sel_scores, img_np))  # by image, then score descending
    bounds = np.searchsorted(img_np[order], np.arange(dets.shape[0] + 1))
    out = []
    for b in range(dets.shape[0]):
        idx = order[bounds[b] : bounds[b + 1]]
        out.append(DetectionArrays(cls_np[idx].astype(np.int64) - 1, sel_scores[idx], sel_boxes[idx]))
    return out


@torch.no_grad()
def detect_batch(
    net: nn.Module, x: Tensor, image_sizes: Sequence[tuple[int, int]], conf_thresh: float = 0.01, inclusive: bool = True
) -> list[DetectionArrays]:
    """Forward ``x (Tensor[B, 3, S, S])`` through the test-phase ``net`` on its device → per-image arrays."""
    device = model_device(net)
    x = x.to(device, non_blocking=True)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    dets = net(x)
    return detections_to_arrays(dets, image_sizes, conf_thresh, inclusive)


def detect_images(
    net: nn.Module,
    images_bgr: Sequence[np.ndarray],
    conf_thresh: float = 0.01,
    batch_size: int = 8,
    mean: Sequence[float] = MEANS,
) -> list[list[Detection]]:
    """Detect objects in BGR uint8 images ``[H, W, 3]`` (as ``cv2.imread`` gives them).

    The images go through ``preprocess`` (resize, minus mean, RGB — what the published weights expect) in
    batches of ``batch_size`` on the device of ``net``, which must be in the "test" phase.
    Returns, per image, a list of ``(class_index, score, [x1, y1, x2, y2])`` sorted by score descending, where
    ``class_index`` indexes the class names (the model's class ``c`` is ``c - 1``: background is not a name) and
    the box is in 0-based pixels clipped to ``[0, w-1] × [0, h-1]``. Only ``score >= conf_thresh`` is kept.
    """
    size = model_input_size(net)
    results: list[list[Detection]] = []
    for start in range(0, len(images_bgr), batch_size):
        chunk = images_bgr[start : start + batch_size]
        x = preprocess_batch(chunk, size, mean)
        arrays = detect_batch(net, x, [img.shape[:2] for img in chunk], conf_thresh)
        results.extend([(int(c), float(s), [float(v) for v in box]) for c, s, box in zip(*a)] for a in arrays)
    return results


def class_color(class_index: int) -> tuple[int, int, int]:
    """A bright BGR colour per class, stable across runs (golden-ratio hue steps)."""
    hue = (class_index * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 1.0)
    return int(b * 255), int(g * 255), int(r * 255)


def draw_detections(
    img_bgr: np.ndarray, detections: Sequence[Detection], class_names: Sequence[str], thickness: int = 2
) -> np.ndarray:
    """Copy of ``img_bgr [H, W, 3]`` with each ``(class_index, score, box)`` drawn as a box and a
    ``"name: 0.87"`` label; the best-scoring detections are drawn last, on top."""
    out = np.ascontiguousarray(img_bgr).copy()
    font, font_scale = cv2.FONT_HERSHEY_SIMPLEX, 0.5
    for class_index, score, box in sorted(detections, key=lambda d: d[1]):
        color = class_color(class_index)
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        cv2.rectangle(out, (x1, y1), (x2, y2), color, thickness)
        name = class_names[class_index] if 0 <= class_index < len(class_names) else str(class_index)
        text = f"{name}: {score:.2f}"
        (tw, th), baseline = cv2.getTextSize(text, font, font_scale, 1)
        ty = y1 - 2 if y1 - th - baseline - 2 >= 0 else y1 + th + 2  # keep the label inside the image
        cv2.rectangle(out, (x1, ty - th - 2), (x1 + tw + 2, ty + baseline - 2), color, cv2.FILLED)
        luma = 0.114 * color[0] + 0.587 * color[1] + 0.299 * color[2]
        ink = (0, 0, 0) if luma > 140 else (255, 255, 255)
        cv2.putText(out, text, (x1 + 1, ty - 2), font, font_scale, ink, 1, cv2.LINE_AA)
    return out
