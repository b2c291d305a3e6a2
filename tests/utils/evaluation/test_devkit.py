"""The devkit's per-class detection files: one file per class, whatever characters the class names hold."""

from __future__ import annotations

import os

import numpy as np

from data import VOC_CLASSES
from utils.evaluation.devkit import write_devkit_files
from utils.evaluation.voc import ImageDetections


def one_detection_per_class(count: int) -> ImageDetections:
    """Class k scores 0.5 + k / 100 with the box (k + 1, 1, k + 10, 10)."""
    labels = np.arange(count, dtype=np.int64)
    boxes = np.stack([labels + 1.0, np.ones(count), labels + 10.0, np.full(count, 10.0)], axis=1)
    return ImageDetections(labels, 0.5 + labels / 100.0, boxes)


def test_voc_names_give_the_devkit_file_names(tmp_path) -> None:
    template = str(tmp_path / "results" / "comp4_det_test_{}.txt")
    paths = write_devkit_files([one_detection_per_class(20)], ["000001"], VOC_CLASSES, template)
    assert paths == [template.format(name) for name in VOC_CLASSES]
    assert open(paths[14]).read() == "000001 0.640000 15.00 1.00 24.00 10.00\n"  # person


def test_names_holding_path_characters_get_distinct_safe_files(tmp_path) -> None:
    names = ["car_truck", "car/truck", "dog", "CAR\\TRUCK", "a:b*?", "x/../../y"]
    template = str(tmp_path / "comp4_det_test_{}.txt")
    paths = write_devkit_files([one_detection_per_class(len(names))], ["img"], names, template)
    stems = [os.path.basename(p)[len("comp4_det_test_") : -len(".txt")] for p in paths]
    # a name that needs no change keeps it; the others have their unsafe characters replaced, and one that would
    # reuse another's file (case ignored, as on Windows and macOS disks) gets its label as a suffix
    assert stems == ["car_truck", "car_truck_1", "dog", "CAR_TRUCK_3", "a_b__", "x_.._.._y"]
    assert sorted(os.listdir(tmp_path)) == sorted(os.path.basename(p) for p in paths)
    for label, path in enumerate(paths):
        score = 0.5 + label / 100.0
        assert open(path).read() == f"img {score:.6f} {label + 1:.2f} 1.00 {label + 10:.2f} 10.00\n"
