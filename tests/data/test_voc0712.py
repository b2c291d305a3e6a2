"""VOC reading: exact normalised boxes from hand-written XML, difficult both ways, custom classes, image sets."""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET

import cv2
import numpy as np
import pytest
import torch

import data
from data import (
    VOC_CLASSES,
    BaseTransform,
    VOCAnnotationTransform,
    VOCDetection,
    detection_collate,
    load_class_names,
)
from tests.data.voc_files import annotation_xml, write_image_set, write_sample


def test_voc_classes_classic_order() -> None:
    assert len(VOC_CLASSES) == 20 and len(set(VOC_CLASSES)) == 20
    assert VOC_CLASSES[0] == "aeroplane" and VOC_CLASSES[-1] == "tvmonitor"
    assert VOC_CLASSES.index("diningtable") == 10 and VOC_CLASSES.index("person") == 14


def test_data_exports_exactly_spec_list() -> None:
    spec = {
        "VOC_CLASSES", "VOC_ROOT", "VOCDetection", "VOCAnnotationTransform", "COCO_CLASSES", "COCO_ROOT",
        "COCODetection", "detection_collate", "BaseTransform", "preprocess", "voc", "coco", "voc512", "coco512",
        "get_config", "MEANS",
    }  # fmt: skip
    assert set(data.__all__) == spec | {"load_class_names"}
    assert all(hasattr(data, name) for name in data.__all__)


def test_annotation_transform_exact_values() -> None:
    xml = annotation_xml([("dog", 11, 21, 110, 60, 0), ("Cat ", 1, 1, 200, 100, 1)], 200, 100)
    rows = VOCAnnotationTransform()(ET.fromstring(xml), 200, 100)
    # (pixel − 1) / size; the difficult cat is dropped by default
    assert rows == [[10 / 200, 20 / 100, 109 / 200, 59 / 100, VOC_CLASSES.index("dog")]]
    rows = VOCAnnotationTransform(keep_difficult=True)(ET.fromstring(xml), 200, 100)
    assert rows[1] == [0.0, 0.0, 199 / 200, 99 / 100, VOC_CLASSES.index("cat")]  # name matched ignoring case/space


def test_annotation_transform_custom_classes(tmp_path) -> None:
    (tmp_path / "classes.txt").write_text("apple\n\n  Banana  \ncherry\n")
    names = load_class_names(tmp_path / "classes.txt")
    assert names == ["apple", "Banana", "cherry"]
    xml = annotation_xml([("banana", 5, 5, 9, 9, 0), ("cherry", 1, 1, 3, 3, 0)], 10, 10)
    by_sequence = VOCAnnotationTransform(names)(ET.fromstring(xml), 10, 10)
    by_mapping = VOCAnnotationTransform({n: i for i, n in enumerate(names)})(ET.fromstring(xml), 10, 10)
    assert by_sequence == by_mapping == [[0.4, 0.4, 0.8, 0.8, 1], [0.0, 0.0, 0.2, 0.2, 2]]
    assert VOCAnnotationTransform(names).class_names == ["apple", "Banana", "cherry"]


def test_dataset_items_and_targets(tmp_path) -> None:
    write_sample(tmp_path, "a", [("dog", 11, 21, 110, 60, 0), ("cat", 1, 1, 50, 50, 1)])
    write_sample(tmp_path, "b", [("person", 101, 51, 200, 100, 0)])
    write_image_set(tmp_path, ["a", "b"])
    ds = VOCDetection(str(tmp_path), image_sets=[("2007", "trainval")])
    assert len(ds) == 2 and ds.ids[1] == (str(tmp_path / "VOC2007"), "b")
    img, target = ds[0]
    assert img.shape == (3, 100, 200) and img.dtype == torch.float32
    np.testing.assert_allclose(target, [[0.05, 0.2, 0.545, 0.59, 11]], rtol=1e-6)
    assert target.dtype == np.float32
    bgr = cv2.imread(str(tmp_path / "VOC2007" / "JPEGImages" / "a.jpg"))
    np.testing.assert_array_equal(ds.pull_image(0), bgr)
    np.testing.assert_array_equal(img.numpy(), bgr[:, :, ::-1].transpose(2, 0, 1))  # RGB, CHW
    assert ds.pull_anno(0) == ("a", [[10.0, 20.0, 109.0, 59.0, 11]])
    _, _, height, width = ds.pull_item(1)
    assert (height, width) == (100, 200)
    assert ds.pull_tensor(0).shape == (1, 100, 200, 3)


def test_difficult_both_ways(tmp_path) -> None:
    write_sample(tmp_path, "a", [("dog", 11, 21, 110, 60, 0), ("cat", 1, 1, 50, 50, 1)])
    write_image_set(tmp_path, ["a"])
    keep = VOCDetection(tmp_path, [("2007", "trainval")], target_transform=VOCAnnotationTransform(keep_difficult=True))
    assert keep[0][1].shape == (2, 5)
    assert keep.pull_anno(0)[1][1] == [0.0, 0.0, 49.0, 49.0, VOC_CLASSES.index("cat")]
    drop = VOCDetection(tmp_path, [("2007", "trainval")])
    assert drop[0][1].shape == (1, 5) and len(drop.pull_anno(0)[1]) == 1


def test_custom_class_dataset(tmp_path) -> None:
    write_sample(tmp_path, "a", [("widget", 1, 1, 100, 50, 0), ("gizmo", 101, 51, 200, 100, 0)])
    write_image_set(tmp_path, ["a"])
    names = ["gizmo", "widget"]
    ds = VOCDetection(tmp_path, [("2007", "trainval")], target_transform=VOCAnnotationTransform(names))
    assert ds.class_names == names
    np.testing.assert_allclose(ds[0][1][:, 4], [1, 0])


def test_image_sets_subsets_and_missing(tmp_path, caplog) -> None:
    write_sample(tmp_path, "a", [("dog", 1, 1, 9, 9, 0)])
    write_sample(tmp_path, "b", [("dog", 1, 1, 9, 9, 0)], year="2012")
    write_image_set(tmp_path, ["a"], "trainval")
    write_image_set(tmp_path, ["a", "a"], "test")
    write_image_set(tmp_path, ["b"], "trainval", year="2012")
    assert len(VOCDetection(tmp_path)) == 2  # default: 2007 + 2012 trainval
    assert len(VOCDetection(tmp_path, [("2007", "test")])) == 2
    with caplog.at_level(logging.WARNING, logger="data"):
        ds = VOCDetection(tmp_path, [("2007", "trainval"), ("2010", "trainval"), ("2012", "val")])
    assert len(ds) == 1
    assert "VOC2010" in caplog.text and "val.txt" in caplog.text
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nowhere")):
        VOCDetection(tmp_path / "nowhere", [("2007", "trainval")])


def test_with_base_transform_and_collate(tmp_path) -> None:
    image = np.zeros((100, 200, 3), np.uint8)
    image[:, :, 0] = 200  # blue in BGR
    write_sample(tmp_path, "a", [("dog", 11, 21, 110, 60, 0)], image=image)
    write_sample(tmp_path, "b", [], image=image)
    write_image_set(tmp_path, ["a", "b"])
    ds = VOCDetection(tmp_path, [("2007", "trainval")], transform=BaseTransform(300, (104, 117, 123)))
    img, target = ds[0]
    assert img.shape == (3, 300, 300)
    np.testing.assert_allclose(img[:, 150, 150].numpy(), [-123, -117, 200 - 104], atol=1.5)  # RGB after the flip
    np.testing.assert_allclose(target, [[0.05, 0.2, 0.545, 0.59, 11]], rtol=1e-6)
    images, targets = detection_collate([ds[0], ds[1]])
    assert images.shape == (2, 3, 300, 300)
    assert [t.shape for t in targets] == [(1, 5), (0, 5)] and targets[0].dtype == torch.float32


def test_load_class_names_errors(tmp_path) -> None:
    (tmp_path / "dup.txt").write_text("a\nb\nA\n")
    with pytest.raises(ValueError, match=r"dup.txt:3: class 'A' repeats line 1"):
        load_class_names(tmp_path / "dup.txt")
    (tmp_path / "empty.txt").write_text("\n  \n")
    with pytest.raises(ValueError, match="no class names"):
        load_class_names(tmp_path / "empty.txt")
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        load_class_names(tmp_path / "missing.txt")


def test_class_names_are_kept_as_written(tmp_path) -> None:
    """Matching ignores case and surrounding spaces, but the names a model records are the file's."""
    (tmp_path / "classes.txt").write_text("Car\n  car/Truck \nperson\n")
    names = load_class_names(tmp_path / "classes.txt")
    assert names == ["Car", "car/Truck", "person"]
    transform = VOCAnnotationTransform(names)
    assert transform.class_names == names
    assert VOCAnnotationTransform({" Car": 0, "car/Truck": 1, "person": 2}).class_names == names
    write_sample(tmp_path, "a", [("car", 1, 1, 10, 10, 0), ("CAR/TRUCK ", 11, 11, 20, 20, 0)])
    write_image_set(tmp_path, ["a"])
    ds = VOCDetection(tmp_path, [("2007", "trainval")], target_transform=transform)
    assert ds.class_names == load_class_names(tmp_path / "classes.txt")  # the same file passes again later
    np.testing.assert_allclose(ds[0][1][:, 4], [0, 1])


def test_a_class_file_that_is_not_utf8(tmp_path) -> None:
    path = tmp_path / "classes.txt"
    path.write_bytes("car\ncafé\n".encode("latin-1"))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: not UTF-8 text \(line 2: byte 0xe9\)"):
        load_class_names(path)
    path.write_bytes("\ufeffcar\nbus\n".encode())  # a byte-order mark, as some Windows editors write
    assert load_class_names(path) == ["car", "bus"]


@pytest.mark.parametrize("bad_id", ["../outside", "sub/a", "sub\\a", "/etc/passwd", "..", "."])
def test_image_set_ids_must_be_plain_names(tmp_path, bad_id) -> None:
    """An id with a path in it would read an .xml/.jpg pair outside the dataset root."""
    write_sample(tmp_path, "a", [("dog", 1, 1, 9, 9, 0)])
    set_file = tmp_path / "VOC2007" / "ImageSets" / "Main" / "trainval.txt"
    set_file.parent.mkdir(parents=True)
    set_file.write_text(f"a\n\n{bad_id} 1\n")
    where = re.escape(f"{set_file}:3: image id {bad_id!r}")
    with pytest.raises(ValueError, match=rf"^{where} is not a plain file name"):
        VOCDetection(tmp_path, [("2007", "trainval")])


def test_picture_extensions_in_any_case_and_each_annotation_parsed_once(tmp_path, monkeypatch) -> None:
    """A custom dataset's pictures may be .BMP, .Png, .JPEG…; the dataset reads each XML file once."""
    for image_id, ext in (("a", ".BMP"), ("b", ".Png"), ("c", ".jpeg")):
        image_path, _ = write_sample(tmp_path, image_id, [("dog", 2, 2, 20, 10, 0)], width=30, height=20)
        picture = cv2.imread(str(image_path))
        image_path.unlink()
        cv2.imwrite(str(image_path.with_suffix(ext)), picture)
    write_image_set(tmp_path, ["a", "b", "c"])
    parsed = []
    real = data.voc0712.read_voc_xml
    monkeypatch.setattr(data.voc0712, "read_voc_xml", lambda path: parsed.append(path) or real(path))
    dataset = VOCDetection(tmp_path, [("2007", "trainval")], skip_bad=False)
    for index in range(3):
        assert dataset.pull_image(index).shape == (20, 30, 3)
        dataset.pull_objects(index, (30, 20))
        _, target = dataset[index]
        np.testing.assert_allclose(target, [[1 / 30, 1 / 20, 19 / 30, 9 / 20, VOC_CLASSES.index("dog")]], rtol=1e-6)
    assert len(parsed) == 3  # pull_objects and __getitem__ share the one parse
