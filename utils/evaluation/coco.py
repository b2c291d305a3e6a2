"""COCO AP (pycocotools, imported when used) for detections held in memory."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Sequence
from typing import Any

import numpy as np

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
