"""COCO ground truth and detections in the devkit's convention: pycocotools' IoUs and areas unchanged."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from utils.evaluation.analysis import area
from utils.evaluation.coco import coco_truths, devkit_boxes, devkit_detections
from utils.evaluation.voc import devkit_iou
from utils.inference import DetectionArrays


def test_devkit_boxes_keep_pycocotools_ious_and_areas() -> None:
    mask = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 50, (6, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.5, 40, (6, 2))], axis=1)  # continuous x1, y1, x2, y2
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    expected = mask.iou(xywh.tolist(), xywh.tolist(), [0] * len(xywh))
    converted = devkit_boxes(boxes)
    ious = np.stack([devkit_iou(box, converted) for box in converted])
    np.testing.assert_allclose(ious, expected, rtol=1e-12)
    np.testing.assert_allclose(area(converted), xywh[:, 2] * xywh[:, 3], rtol=1e-12)
    # [0, 0, 10, 10] and [5, 0, 15, 10]: 50 / 150; as the devkit writes them, [1, 1, 10, 10] and [6, 1, 15, 10]
    dets = devkit_detections(
        [DetectionArrays(np.array([0, 1]), np.array([0.9, 0.5]), np.array([[0, 0, 10, 10], [5, 0, 15, 10.0]]))]
    )
    np.testing.assert_array_equal(dets[0].boxes, [[1, 1, 10, 10], [6, 1, 15, 10]])
    assert devkit_iou(dets[0].boxes[0], dets[0].boxes[1:])[0] == pytest.approx(1 / 3)


def test_coco_truths_map_categories_and_ignore_crowds() -> None:
    anns = [
        {"category_id": 5, "bbox": [0, 0, 10, 10], "iscrowd": 0},
        {"category_id": 7, "bbox": [5, 0, 10, 10], "iscrowd": 1},
        {"category_id": 99, "bbox": [1, 1, 2, 2], "iscrowd": 0},  # a category the model does not name
    ]
    coco = SimpleNamespace(imgToAnns={42: anns})
    truths = coco_truths(coco, [42, 7], {5: 1, 7: 0})
    np.testing.assert_array_equal(truths[0].boxes, [[1, 1, 10, 10], [6, 1, 15, 10]])
    np.testing.assert_array_equal(truths[0].labels, [1, 0])
    np.testing.assert_array_equal(truths[0].difficult, [False, True])
    assert truths[1].boxes.shape == (0, 4) and truths[1].labels.shape == (0,) and truths[1].difficult.shape == (0,)
