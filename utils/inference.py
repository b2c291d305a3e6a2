"""Run a detector on BGR images and turn its output into pixel boxes; draw them.

    from utils.inference import detect_images, load_detector     # load_detector is utils.checkpoint.load_model
    model = load_detector("weights/ssd300_VOC_120000.pth")        # architecture, priors, classes from the weights
    dets = detect_images(model, [cv2.imread("dog.jpg")], conf_thresh=0.5)
    for class_index, score, (x1, y1, x2, y2) in dets[0]:
        print(model.facts.class_names[class_index], score, x1, y1, x2, y2)

Class indices index the class *names* (VOC_CLASSES, a ``--classes`` file…): the model's class ``c`` (0 is
background) is reported as ``c - 1``. Boxes are ``(x1, y1, x2, y2)`` in 0-based pixels — the relative box times the
image width/height, as the classic test script computed them — clipped to the image, ``[0, w-1] × [0, h-1]``.
"""

from __future__ import annotations

import colorsys
from collections.abc import Sequence
from typing import NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from data.transforms import CLASSIC_PREPROCESSING, Preprocessing
from utils.checkpoint import load_model

Detection = tuple[int, float, list[float]]  # (class index into the names, score, [x1, y1, x2, y2] pixels)


load_detector = load_model  # the one front door, under the name this module has always offered


class DetectionArrays(NamedTuple):
    """Detections of one image as arrays, sorted by score descending."""

    labels: np.ndarray  # int64 [n], index into the class names
    scores: np.ndarray  # float32 [n]
    boxes: np.ndarray  # float32 [n, 4], (x1, y1, x2, y2) pixels


def model_input_size(net: nn.Module) -> int:
    """The square input side (300, 512, 320) the network was built for."""
    size = getattr(net, "size", None)
    if size is None:
        cfg = getattr(net, "cfg", None)
        size = cfg["min_dim"] if cfg is not None else None
    if size is None:
        raise ValueError("cannot tell the input size of the model: it has neither .size nor .cfg['min_dim']")
    return int(size)


def model_preprocessing(net: nn.Module) -> Preprocessing:
    """How pictures become the model's input: its own record (from its facts), else the classic VGG16 one."""
    return getattr(net, "preprocessing", None) or CLASSIC_PREPROCESSING


def model_device(net: nn.Module) -> torch.device:
    return next(net.parameters()).device


def preprocess_batch(images_bgr: Sequence[np.ndarray], size: int, preprocessing: Preprocessing) -> Tensor:
    """BGR uint8 images ``[H_i, W_i, 3]`` → network input ``Tensor[B, 3, size, size]``."""
    return torch.stack([preprocessing(img, size) for img in images_bgr])


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
    """Forward ``x (Tensor[B, 3, S, S])`` through ``net`` (a Detector, or a test-phase network) on its device →
    per-image arrays."""
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
) -> list[list[Detection]]:
    """Detect objects in BGR uint8 images ``[H, W, 3]`` (as ``cv2.imread`` gives them).

    The images go through the model's preprocessing (its facts'; for a classic network resize, minus mean, RGB —
    what the published weights expect) in batches of ``batch_size`` on the device of ``net``: a ``Detector`` (what
    ``load_detector`` returns) or a network in the "test" phase.
    Returns, per image, a list of ``(class_index, score, [x1, y1, x2, y2])`` sorted by score descending, where
    ``class_index`` indexes the class names (the model's class ``c`` is ``c - 1``: background is not a name) and
    the box is in 0-based pixels clipped to ``[0, w-1] × [0, h-1]``. Only ``score >= conf_thresh`` is kept.
    """
    size, preprocessing = model_input_size(net), model_preprocessing(net)
    results: list[list[Detection]] = []
    for start in range(0, len(images_bgr), batch_size):
        chunk = images_bgr[start : start + batch_size]
        x = preprocess_batch(chunk, size, preprocessing)
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
