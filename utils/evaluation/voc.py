"""The PASCAL VOC devkit metric (``VOCevaldet.m``), on detections and ground truth held in memory.

Matching follows the devkit, not the classic ssd.pytorch script: 1-based pixel coordinates for ground truth and
detections alike, IoU with +1 widths, and each detection (by descending score) takes the single highest-IoU ground
truth of its class in its image, difficult ones included: IoU >= 0.5 with a difficult box is ignored, with an
unmatched box is a true positive, anything else a false positive. Difficult boxes do not count towards recall; a
class without non-difficult ground truth gets a null AP and stays out of the mean.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

import numpy as np


class ImageTruth(NamedTuple):
    """Ground truth of one picture (every object, difficult ones included)."""

    boxes: np.ndarray  # float64 [n, 4], (x1, y1, x2, y2) 1-based pixels
    labels: np.ndarray  # int64 [n], index into the class names
    difficult: np.ndarray  # bool [n]


class ImageDetections(NamedTuple):
    """Detections of one picture."""

    labels: np.ndarray  # int64 [d], index into the class names
    scores: np.ndarray  # float [d]
    boxes: np.ndarray  # float [d, 4], (x1, y1, x2, y2) 1-based pixels


class ClassResult(NamedTuple):
    recall: np.ndarray  # [D], detections in descending score order
    precision: np.ndarray  # [D]
    ap: float | None  # None without non-difficult ground truth


class VOCResult(NamedTuple):
    mean_ap: float | None  # mean over the classes whose AP is not None
    per_class: dict[str, ClassResult]

    @property
    def aps(self) -> dict[str, float | None]:
        return {name: r.ap for name, r in self.per_class.items()}


def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool = True) -> float:
    """Average precision from a precision/recall curve (detections in descending score order).

    VOC07: the mean over the 11 recalls ``np.arange(0., 1.1, 0.1)`` of the best precision at recall >= t (0 when
    the recall never reaches t). VOC2010+: the area under the curve made monotonically decreasing.
    """
    rec, prec = np.asarray(rec, dtype=np.float64), np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            reached = rec >= t
            ap += (prec[reached].max() if reached.any() else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def devkit_iou(box: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of one box ``[4]`` with boxes ``[n, 4]`` (inclusive 1-based pixels: width = x2 - x1 + 1) → ``[n]``."""
    iw = np.minimum(gt[:, 2], box[2]) - np.maximum(gt[:, 0], box[0]) + 1.0
    ih = np.minimum(gt[:, 3], box[3]) - np.maximum(gt[:, 1], box[1]) + 1.0
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_box = (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
    area_gt = (gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0)
    return inter / (area_box + area_gt - inter)


def match_detections(
    image_ids: Sequence[str],
    boxes: np.ndarray,
    gt: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ovthresh: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Devkit matching of one class's detections, already in descending score order.

    Args:
        image_ids: image of each detection ``[D]``; boxes: ``[D, 4]`` 1-based pixels.
        gt: image id → (ground-truth boxes ``[n, 4]`` 1-based, difficult flags ``[n]`` bool) of this class.
    Returns:
        tp, fp: float ``[D]`` 0/1 flags (both 0 for a detection ignored on a difficult box).
    """
    tp, fp = np.zeros(len(image_ids)), np.zeros(len(image_ids))
    matched = {image_id: np.zeros(len(difficult), dtype=bool) for image_id, (_, difficult) in gt.items()}
    for d, image_id in enumerate(image_ids):
        if image_id not in gt:
            raise ValueError(f"detection for image {image_id!r}, which is not in the image set")
        gt_boxes, difficult = gt[image_id]
        overlaps = devkit_iou(boxes[d], gt_boxes) if len(gt_boxes) else np.zeros(0)
        j = int(np.argmax(overlaps)) if len(overlaps) else -1
        if j < 0 or overlaps[j] < ovthresh:
            fp[d] = 1.0
        elif difficult[j]:
            continue
        elif not matched[image_id][j]:
            tp[d], matched[image_id][j] = 1.0, True
        else:
            fp[d] = 1.0
    return tp, fp


def eval_class(
    image_ids: Sequence[str],
    scores: np.ndarray,
    boxes: np.ndarray,
    gt: Mapping[str, tuple[np.ndarray, np.ndarray]],
    npos: int,
    ovthresh: float = 0.5,
    use_07_metric: bool = True,
) -> ClassResult:
    """Recall ``[D]``, precision ``[D]`` and AP of one class's detections (any order); AP is None when npos is 0."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp, fp = match_detections([image_ids[i] for i in order], np.asarray(boxes, np.float64)[order], gt, ovthresh)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    if npos == 0:
        return ClassResult(np.zeros_like(tp), np.zeros_like(tp), None)
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return ClassResult(rec, prec, voc_ap(rec, prec, use_07_metric))


def evaluate_voc(
    detections: Sequence[ImageDetections],
    truths: Sequence[ImageTruth],
    class_names: Sequence[str],
    use_07_metric: bool = True,
    ovthresh: float = 0.5,
) -> VOCResult:
    """AP per class and their mean over a split, pictures paired by position in ``detections`` and ``truths``."""
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} pictures of detections but {len(truths)} of ground truth")
    per_class = {}
    keys = [str(i) for i in range(len(truths))]
    for label, name in enumerate(class_names):
        gt, npos = {}, 0
        for key, truth in zip(keys, truths):
            mine = truth.labels == label
            gt[key] = (truth.boxes[mine], truth.difficult[mine])
            npos += int((~truth.difficult[mine]).sum())
        ids, scores, boxes = [], [], []
        for key, dets in zip(keys, detections):
            mine = dets.labels == label
            ids += [key] * int(mine.sum())
            scores.append(np.asarray(dets.scores, np.float64)[mine])
            boxes.append(np.asarray(dets.boxes, np.float64)[mine].reshape(-1, 4))
        scores_all = np.concatenate(scores) if scores else np.zeros(0)
        boxes_all = np.concatenate(boxes) if boxes else np.zeros((0, 4))
        per_class[name] = eval_class(ids, scores_all, boxes_all, gt, npos, ovthresh, use_07_metric)
    valid = [r.ap for r in per_class.values() if r.ap is not None]
    return VOCResult(float(np.mean(valid)) if valid else None, per_class)
