"""Every bad-input case: a clear error naming the file (evaluation path) or a logged, counted skip
(training path) — never a silent crash, never a wrong box. The policy table is data/README.md."""

from __future__ import annotations

import json
import logging

import cv2
import numpy as np
import pytest

from data import VOC_CLASSES, COCODetection, VOCAnnotationTransform, VOCDetection, detection_collate
from tests.data.voc_files import write_image_set, write_sample
from utils.augmentations import SSDAugmentation

DOG = VOC_CLASSES.index("dog")


def two_sample_set(tmp_path, objects_a=(("dog", 11, 21, 110, 60, 0),), **kwargs):
    """Sample "bad" (written with ``objects_a`` and ``kwargs``) then a good sample "good"; returns (xml, jpg) of bad."""
    image_path, xml_path = write_sample(tmp_path, "bad", list(objects_a), **kwargs)
    write_sample(tmp_path, "good", [("cat", 1, 1, 50, 50, 0)])
    write_image_set(tmp_path, ["bad", "good"])
    return image_path, xml_path


def assert_skipped_and_raised(tmp_path, caplog, error: type[Exception], pattern: str, path) -> None:
    """Training path: item 0 is skipped (logged with the file, counted); evaluation path: ``error`` naming it."""
    train = VOCDetection(tmp_path, [("2007", "trainval")])
    with caplog.at_level(logging.WARNING, logger="data"):
        _, target = train[0]
        train[0]  # a second visit: no second log line, no second count
    np.testing.assert_allclose(target[:, 4], [VOC_CLASSES.index("cat")])  # the next good sample
    assert train.bad_items == 1 and 0 in train.bad_reasons
    assert caplog.text.count(str(path)) == 1
    with pytest.raises(error, match=pattern):
        train.pull_item(0)
    with pytest.raises(error, match=pattern):
        VOCDetection(tmp_path, [("2007", "trainval")], skip_bad=False)[0]


def test_corrupt_jpeg(tmp_path, caplog) -> None:
    image_path, _ = two_sample_set(tmp_path)
    image_path.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg" * 10)
    assert_skipped_and_raised(tmp_path, caplog, ValueError, "cannot decode", image_path)
    with pytest.raises(ValueError, match="bad.jpg"):
        VOCDetection(tmp_path, [("2007", "trainval")]).pull_image(0)


def test_truncated_jpeg(tmp_path, caplog) -> None:
    image_path, _ = two_sample_set(tmp_path)
    raw = image_path.read_bytes()
    image_path.write_bytes(raw[: len(raw) * 2 // 3])
    assert cv2.imread(str(image_path)) is not None  # cv2 alone would accept it, greying the missing rows
    assert_skipped_and_raised(tmp_path, caplog, ValueError, "truncated JPEG", image_path)


def test_empty_image_file(tmp_path, caplog) -> None:
    image_path, _ = two_sample_set(tmp_path)
    image_path.write_bytes(b"")
    assert_skipped_and_raised(tmp_path, caplog, ValueError, "empty image file", image_path)


def test_missing_image(tmp_path, caplog) -> None:
    image_path, _ = two_sample_set(tmp_path)
    image_path.unlink()
    assert_skipped_and_raised(tmp_path, caplog, FileNotFoundError, "image not found", image_path)


def test_missing_xml(tmp_path, caplog) -> None:
    _, xml_path = two_sample_set(tmp_path)
    xml_path.unlink()
    assert_skipped_and_raised(tmp_path, caplog, FileNotFoundError, "annotation not found", xml_path)
    with pytest.raises(FileNotFoundError, match="bad.xml"):
        VOCDetection(tmp_path, [("2007", "trainval")]).pull_anno(0)


def test_malformed_xml(tmp_path, caplog) -> None:
    _, xml_path = two_sample_set(tmp_path)
    xml_path.write_text("<annotation><object><name>dog</name>")
    assert_skipped_and_raised(tmp_path, caplog, ValueError, "not valid XML", xml_path)


def test_xml_without_bndbox(tmp_path, caplog) -> None:
    _, xml_path = two_sample_set(tmp_path, objects_a=["<object><name>dog</name><difficult>0</difficult></object>"])
    assert_skipped_and_raised(tmp_path, caplog, ValueError, r"object 0 \(dog\) has no <bndbox>", xml_path)
    with pytest.raises(ValueError, match="bad.xml: object 0"):
        VOCDetection(tmp_path, [("2007", "trainval")]).pull_anno(0)


def test_xml_with_non_numeric_coordinate(tmp_path, caplog) -> None:
    obj = "<object><name>dog</name><bndbox><xmin>1</xmin><ymin>a</ymin><xmax>9</xmax><ymax>9</ymax></bndbox></object>"
    _, xml_path = two_sample_set(tmp_path, objects_a=[obj])
    assert_skipped_and_raised(tmp_path, caplog, ValueError, "<ymin> is 'a', expected a number", xml_path)


def test_xml_without_size_uses_the_image(tmp_path) -> None:
    two_sample_set(tmp_path, size_tag=False)
    ds = VOCDetection(tmp_path, [("2007", "trainval")], skip_bad=False)
    np.testing.assert_allclose(ds[0][1], [[0.05, 0.2, 0.545, 0.59, DOG]], rtol=1e-6)


def test_xml_size_disagreeing_with_the_image(tmp_path, caplog) -> None:
    _, xml_path = two_sample_set(tmp_path)
    xml_path.write_text(xml_path.read_text().replace("<width>200</width>", "<width>300</width>"))
    assert_skipped_and_raised(tmp_path, caplog, ValueError, "<size> says 300x100 but the image is 200x100", xml_path)


def test_unknown_class(tmp_path, caplog) -> None:
    _, xml_path = two_sample_set(tmp_path, objects_a=[("dragon", 11, 21, 110, 60, 0)])
    assert_skipped_and_raised(tmp_path, caplog, ValueError, "class 'dragon', which is not in the class list", xml_path)
    with pytest.raises(ValueError, match="dragon"):
        VOCDetection(tmp_path, [("2007", "trainval")]).pull_anno(0)


def test_boxes_outside_the_image_are_clipped_and_logged(tmp_path, caplog) -> None:
    two_sample_set(tmp_path, objects_a=[("dog", -9, 21, 250, 60, 0), ("dog", 11, 21, 110, 160, 0)])
    ds = VOCDetection(tmp_path, [("2007", "trainval")], skip_bad=False)
    with caplog.at_level(logging.WARNING, logger="data"):
        target = ds[0][1]
    np.testing.assert_allclose(target[:, :4], [[0.0, 0.2, 199 / 200, 0.59], [0.05, 0.2, 0.545, 0.99]], rtol=1e-6)
    assert caplog.text.count("clipped") == 2 and "bad.xml: object 1" in caplog.text
    assert ds.pull_anno(0)[1][0] == [-10.0, 20.0, 249.0, 59.0, DOG]  # evaluation sees the file as written


def test_degenerate_boxes_are_dropped_and_logged(tmp_path, caplog) -> None:
    objects = [("dog", 50, 21, 40, 60, 0), ("dog", 11, 21, 110, 60, 0), ("dog", 11, 30, 110, 30, 0)]
    objects += [("dog", 210, 21, 250, 60, 0)]  # entirely right of the 200-pixel-wide image
    two_sample_set(tmp_path, objects_a=objects)
    ds = VOCDetection(tmp_path, [("2007", "trainval")], skip_bad=False)
    with caplog.at_level(logging.WARNING, logger="data"):
        target = ds[0][1]
    np.testing.assert_allclose(target, [[0.05, 0.2, 0.545, 0.59, DOG]], rtol=1e-6)
    assert caplog.text.count("dropped") == 3
    with pytest.raises(ValueError, match=r"bad.xml: object 0 has xmax < xmin"):
        ds.pull_anno(0)  # evaluation never loses a box silently


def test_grayscale_and_four_channel_images(tmp_path) -> None:
    gray = np.tile(np.arange(200, dtype=np.uint8), (100, 1))
    rgba = np.dstack([np.full((100, 200, 3), (10, 20, 30), np.uint8), np.full((100, 200), 77, np.uint8)])
    cases = {"gray_jpg": (".jpg", gray), "gray_png": (".png", gray), "rgba_png": (".png", rgba)}
    ids = []
    for image_id, (ext, pixels) in cases.items():
        image_path, _ = write_sample(tmp_path, image_id, [("dog", 11, 21, 110, 60, 0)])
        image_path.unlink()  # replace the JPEG by the case's file (found by its extension)
        cv2.imwrite(str(image_path.with_suffix(ext)), pixels)
        ids.append(image_id)
    write_image_set(tmp_path, ids)
    ds = VOCDetection(tmp_path, [("2007", "trainval")], skip_bad=False)
    for i in range(3):
        image = ds.pull_image(i)
        assert image.shape == (100, 200, 3) and image.dtype == np.uint8
        assert ds[i][0].shape == (3, 100, 200)
    np.testing.assert_array_equal(ds.pull_image(1)[:, :, 0], gray)  # PNG is lossless: B = G = R = gray
    np.testing.assert_array_equal(ds.pull_image(1)[:, :, 2], gray)
    np.testing.assert_array_equal(ds.pull_image(2)[0, 0], (10, 20, 30))  # alpha dropped


def test_all_objects_difficult(tmp_path) -> None:
    two_sample_set(tmp_path, objects_a=[("dog", 11, 21, 110, 60, 1), ("dog", 1, 1, 50, 50, 1)])
    train = VOCDetection(tmp_path, [("2007", "trainval")], transform=SSDAugmentation(300, rng=0), skip_bad=False)
    images, targets = detection_collate([train[0] for _ in range(20)])  # a background-only sample, every time
    assert images.shape == (20, 3, 300, 300) and all(t.shape == (0, 5) for t in targets)
    assert train.pull_anno(0) == ("bad", [])
    keep = VOCDetection(tmp_path, [("2007", "trainval")], target_transform=VOCAnnotationTransform(keep_difficult=True))
    assert len(keep.pull_anno(0)[1]) == 2


def test_empty_image_set_file(tmp_path, caplog) -> None:
    write_sample(tmp_path, "a", [("dog", 11, 21, 110, 60, 0)])
    write_image_set(tmp_path, ["a"], "trainval")
    write_image_set(tmp_path, [], "test")
    with caplog.at_level(logging.WARNING, logger="data"):
        assert len(VOCDetection(tmp_path, [("2007", "trainval"), ("2007", "test")])) == 1
    assert "test.txt is empty" in caplog.text
    with pytest.raises(ValueError, match=f"no images for VOC0712 under {tmp_path}"):
        VOCDetection(tmp_path, [("2007", "test")])


def test_every_sample_bad(tmp_path) -> None:
    image_path, _ = write_sample(tmp_path, "a", [("dog", 11, 21, 110, 60, 0)])
    image_path.unlink()
    write_image_set(tmp_path, ["a"])
    with pytest.raises(ValueError, match="all 1 samples are bad"):
        VOCDetection(tmp_path, [("2007", "trainval")])[0]


def test_coco_bad_samples(tmp_path, caplog) -> None:
    split = tmp_path / "images" / "val2014"
    split.mkdir(parents=True)
    for name in ("ok.jpg", "small.jpg"):
        cv2.imwrite(str(split / name), np.zeros((40, 50, 3), np.uint8))
    (split / "corrupt.jpg").write_bytes(b"garbage")
    images = [
        {"id": 1, "width": 50, "height": 40, "file_name": "corrupt.jpg"},
        {"id": 2, "width": 80, "height": 40, "file_name": "small.jpg"},  # the json disagrees with the file
        {"id": 3, "width": 50, "height": 40, "file_name": "ok.jpg"},
        {"id": 4, "width": 50, "height": 40, "file_name": "missing.jpg"},
    ]
    anns = [
        {"id": 1, "image_id": 3, "category_id": 1, "bbox": [5, 5, 10, 10], "iscrowd": 0},
        {"id": 2, "image_id": 3, "category_id": 1, "bbox": [60, 5, 10, 10], "iscrowd": 0},  # outside: dropped
    ]
    (tmp_path / "annotations").mkdir()
    content = {"images": images, "annotations": anns, "categories": [{"id": 1, "name": "person"}]}
    (tmp_path / "annotations" / "instances_val2014.json").write_text(json.dumps(content))
    ds = COCODetection(tmp_path, "val2014")
    with caplog.at_level(logging.WARNING, logger="data"):
        np.testing.assert_allclose(ds[0][1], [[0.1, 0.125, 0.3, 0.375, 0]])  # 0 and 1 bad: item 2 comes back
        # 3 missing: wraps round past 0 and 1 (known bad, not retried) to 2
        np.testing.assert_allclose(ds[3][1], [[0.1, 0.125, 0.3, 0.375, 0]])
    assert ds.bad_items == 3 and "corrupt.jpg" in caplog.text and "no area inside the image" in caplog.text
    for index, error, pattern in [
        (0, ValueError, "corrupt.jpg"),
        (1, ValueError, "says 80x40 but the image is 50x40"),
        (3, FileNotFoundError, "missing.jpg"),
    ]:
        with pytest.raises(error, match=pattern):
            ds.pull_item(index)
    (tmp_path / "annotations" / "instances_val2014.json").write_text("{not json")
    with pytest.raises(ValueError, match="not a COCO instances file"):
        COCODetection(tmp_path, "val2014")
