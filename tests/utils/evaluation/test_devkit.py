"""The devkit's per-class detection files (one file per class, whatever characters the class names hold) and the
classic helper's split and annotation cache."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest

from data import VOC_CLASSES
from utils.evaluation.devkit import load_annotations, write_devkit_files
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


def test_the_classic_helper_reads_image_sets_as_the_datasets_do(tmp_path) -> None:
    """Ids are plain names: one holding a folder would read annotations outside the dataset."""
    (tmp_path / "test.txt").write_text("a\n../../outside\n")
    with pytest.raises(ValueError, match="test.txt:2: image id '../../outside' is not a plain file name"):
        load_annotations(str(tmp_path / "{}.xml"), str(tmp_path / "test.txt"), "")


def test_a_failed_cache_write_leaves_no_temporary_file(tmp_path, monkeypatch) -> None:
    (tmp_path / "a.xml").write_text(
        "<annotation><size><width>60</width><height>60</height></size><object><name>dog</name>"
        "<difficult>0</difficult><bndbox><xmin>1</xmin><ymin>2</ymin><xmax>30</xmax><ymax>40</ymax></bndbox>"
        "</object></annotation>"
    )
    (tmp_path / "test.txt").write_text("a\n")
    cache = tmp_path / "cache"
    args = (str(tmp_path / "{}.xml"), str(tmp_path / "test.txt"), str(cache))

    def failing_replace(src, dst) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="Input/output error: .*annots_test_"):
        load_annotations(*args)
    monkeypatch.undo()
    assert os.listdir(cache) == []
    expected = {"a": [{"name": "dog", "difficult": False, "bbox": [1, 2, 30, 40]}]}
    assert load_annotations(*args) == expected and len(os.listdir(cache)) == 1
    assert load_annotations(*args) == expected  # from the cache
