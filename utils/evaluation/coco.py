"""COCO AP (pycocotools, imported when used) for detections held in memory."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from utils.evaluation.voc import ImageDetections, ImageTruth
from utils.inference import DetectionArrays

COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def coco_results(
    detections: Sequence[DetectionArrays], image_ids: Sequence[int], category_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """Detections (0-based continuous pixel boxes) in COCO result format:
    ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``."""
    out = []
    for image_id, dets in zip(image_ids, detections):
        for label, score, (x1, y1, x2, y2) in zip(dets.labels, dets.scores, dets.boxes.astype(np.float64)):
            out.append(
                {
                    "image_id": int(image_id),
                    "category_id": int(category_ids[label]),
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "score": float(score),
                }
            )
    return out


def devkit_boxes(boxes: np.ndarray) -> np.ndarray:
    """Continuous pixel boxes ``[N, 4]`` (COCO's ``x1, y1, x2, y2``, width ``x2 - x1``) → ``[N, 4]`` in the devkit's
    1-based inclusive convention, ``(x1 + 1, y1 + 1, x2, y2)``: its +1 widths are the continuous ones, so the VOC
    metric's areas and IoUs on them are pycocotools' own."""
    return np.asarray(boxes, np.float64).reshape(-1, 4) + np.array([1.0, 1.0, 0.0, 0.0])


def devkit_detections(detections: Sequence[DetectionArrays]) -> list[ImageDetections]:
    """Detections in continuous 0-based pixels (COCO's clipping) → the devkit's convention (``devkit_boxes``)."""
    return [ImageDetections(d.labels, d.scores, devkit_boxes(d.boxes)) for d in detections]


def coco_truths(coco: Any, image_ids: Sequence[int], label_of: Mapping[int, int]) -> list[ImageTruth]:
    """Ground truth of ``image_ids`` from a pycocotools ``COCO`` index in the devkit's convention (``devkit_boxes``
    of the annotations' ``bbox``, unclipped as pycocotools reads them): labels from ``label_of`` (category id →
    class index; other categories are left out), crowd regions as difficult objects, so that, as in pycocotools,
    a detection on one is ignored and it counts for no recall."""
    truths = []
    for image_id in image_ids:
        anns = [a for a in coco.imgToAnns.get(image_id, []) if a["category_id"] in label_of]
        xywh = np.array([a["bbox"] for a in anns], np.float64).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        labels = np.array([label_of[a["category_id"]] for a in anns], np.int64)
        crowd = np.array([bool(a.get("iscrowd", 0)) for a in anns], bool)
        truths.append(ImageTruth(devkit_boxes(boxes), labels, crowd))
    return truths


def evaluate_coco(coco: Any, results: list[dict[str, Any]], image_ids: Sequence[int], quiet: bool = False) -> dict:
    """COCO box AP of ``results`` against the ground truth index ``coco`` (a pycocotools ``COCO``) on ``image_ids``.

    Returns ``{"AP", "AP50", "AP75", "APs", "APm", "APl"}`` (zeros when there is no detection at all).
    """
    from pycocotools.cocoeval import COCOeval  # lazily: only COCO evaluation needs pycocotools

    if not results:
        return dict.fromkeys(COCO_STATS, 0.0)
    sink = io.StringIO() if quiet else None
    with contextlib.redirect_stdout(sink) if sink else contextlib.nullcontext():
        evaluator = COCOeval(coco, coco.loadRes(json.loads(json.dumps(results))), "bbox")
        evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {k: float(v) for k, v in zip(COCO_STATS, evaluator.stats[: len(COCO_STATS)])}
