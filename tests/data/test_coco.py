"""COCO reading over a tiny generated instances json: labels, normalised boxes, crowd, images without annotations."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks.repo import REPO_ROOT
from data import COCO_CLASSES, COCODetection, detection_collate
from data.coco import COCO_CATEGORY_IDS
from utils.augmentations import SSDAugmentation


def test_coco_classes_and_ids() -> None:
    assert len(COCO_CLASSES) == 80 and len(set(COCO_CLASSES)) == 80
    assert len(COCO_CATEGORY_IDS) == 80 and list(COCO_CATEGORY_IDS) == sorted(set(COCO_CATEGORY_IDS))
    assert COCO_CATEGORY_IDS[0] == 1 and COCO_CATEGORY_IDS[-1] == 90
    named = dict(zip(COCO_CATEGORY_IDS, COCO_CLASSES))
    assert named[1] == "person" and named[4] == "motorcycle" and named[5] == "airplane" and named[63] == "couch"
    assert named[72] == "tv" and named[89] == "hair drier" and named[90] == "toothbrush"
    assert all(name == name.strip().lower() for name in COCO_CLASSES)


def write_coco(root: Path, categories: list[dict], split: str = "val2014") -> None:
    """Three images: 0001 (two boxes and a crowd region), 0002 (no annotation), 0003 (one box)."""
    image_dir = root / "images" / split
    image_dir.mkdir(parents=True)
    images = [(1, 200, 100), (2, 64, 48), (3, 50, 40)]
    for image_id, width, height in images:
        pixels = np.full((height, width, 3), 40 * image_id, np.uint8)
        cv2.imwrite(str(image_dir / f"COCO_{split}_{image_id:012d}.jpg"), pixels)
    first, second = categories[0]["id"], categories[-1]["id"]
    annotations = [
        {"id": 10, "image_id": 1, "category_id": first, "bbox": [20, 10, 100, 50], "iscrowd": 0, "area": 5000},
        {"id": 11, "image_id": 1, "category_id": second, "bbox": [150, 50, 80, 80], "iscrowd": 0, "area": 1},
        {"id": 12, "image_id": 1, "category_id": first, "bbox": [0, 0, 200, 100], "iscrowd": 1, "area": 1},
        {"id": 13, "image_id": 3, "category_id": second, "bbox": [5.5, 4, 10, 20], "iscrowd": 0, "area": 200},
    ]
    content = {
        "images": [{"id": i, "width": w, "height": h, "file_name": f"COCO_{split}_{i:012d}.jpg"} for i, w, h in images],
        "annotations": annotations,
        "categories": categories,
    }
    (root / "annotations").mkdir()
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(content))


STANDARD = [{"id": 18, "name": "dog", "supercategory": "animal"}, {"id": 90, "name": "toothbrush"}]


def test_labels_boxes_and_empty_images(tmp_path) -> None:
    write_coco(tmp_path, STANDARD)
    ds = COCODetection(str(tmp_path), image_set="val2014")
    assert len(ds) == 3 and ds.ids == [1, 2, 3]
    dog, brush = COCO_CLASSES.index("dog"), COCO_CLASSES.index("toothbrush")
    assert (dog, brush) == (16, 79) and ds.category_ids[dog] == 18 and ds.category_to_label[90] == 79
    img, target = ds[0]
    assert img.shape == (3, 100, 200)
    # [x, y, x + w, y + h] / size; the second box is clipped at the image edge; the crowd region is left out
    np.testing.assert_allclose(target, [[0.1, 0.1, 0.6, 0.6, dog], [0.75, 0.5, 1.0, 1.0, brush]], rtol=1e-6)
    assert ds[1][1].shape == (0, 5)  # no annotations
    np.testing.assert_allclose(ds[2][1], [[0.11, 0.1, 0.31, 0.6, brush]], rtol=1e-6)
    assert ds.pull_anno(0) == (1, [[20.0, 10.0, 120.0, 60.0, dog], [150.0, 50.0, 230.0, 130.0, brush]])
    assert ds.pull_anno(1) == (2, [])
    assert ds.pull_image(2).shape == (40, 50, 3)


def test_custom_categories_take_sorted_ids(tmp_path) -> None:
    write_coco(tmp_path, [{"id": 7, "name": "gadget"}, {"id": 3, "name": "widget"}])
    ds = COCODetection(tmp_path, image_set="val2014")
    assert ds.category_ids == [3, 7] and ds.class_names == ["widget", "gadget"]
    np.testing.assert_allclose(ds[0][1][:, 4], [1, 0])


def test_with_augmentation_and_collate(tmp_path) -> None:
    write_coco(tmp_path, STANDARD)
    ds = COCODetection(tmp_path, image_set="val2014", transform=SSDAugmentation(300, rng=0))
    images, targets = detection_collate([ds[i] for i in range(3)])
    assert images.shape == (3, 3, 300, 300)
    assert targets[1].shape == (0, 5)
    for t in targets:
        assert ((t[:, :4] >= 0) & (t[:, :4] <= 1)).all()


def test_missing_annotation_file(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="instances_train2014.json"):
        COCODetection(tmp_path)


def test_module_imports_without_pycocotools(tmp_path, monkeypatch) -> None:
    code = "import sys; sys.modules['pycocotools'] = None; import data, data.coco; print('imported')"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120)
    assert done.stdout.strip() == "imported", done.stderr
    write_coco(tmp_path, STANDARD)
    monkeypatch.setitem(sys.modules, "pycocotools", None)
    monkeypatch.setitem(sys.modules, "pycocotools.coco", None)
    with pytest.raises(ImportError, match="pip install pycocotools"):
        COCODetection(tmp_path, image_set="val2014")


def rewrite_json(root: Path, edit, split: str = "val2014") -> Path:
    """Apply ``edit(content)`` to the instances json ``write_coco`` left; returns its path."""
    path = root / "annotations" / f"instances_{split}.json"
    content = json.loads(path.read_text())
    edit(content)
    path.write_text(json.dumps(content))
    return path


@pytest.mark.parametrize("skip_bad", [True, False])  # training and evaluation alike
def test_an_unknown_category_id_is_an_error_when_opened(tmp_path, skip_bad) -> None:
    write_coco(tmp_path, STANDARD)
    path = re.escape(str(rewrite_json(tmp_path, lambda c: c["annotations"][3].update(category_id=12))))
    with pytest.raises(ValueError, match=rf"^{path}: annotation 13: category_id 12 is not among the 2 categories"):
        COCODetection(tmp_path, "val2014", skip_bad=skip_bad)


def test_an_annotation_of_an_unlisted_image_is_an_error(tmp_path) -> None:
    write_coco(tmp_path, STANDARD)
    path = re.escape(str(rewrite_json(tmp_path, lambda c: c["annotations"][1].update(image_id=99))))
    with pytest.raises(ValueError, match=rf"^{path}: annotation 11: image_id 99 is not among the 3 images"):
        COCODetection(tmp_path, "val2014")


@pytest.mark.parametrize("bbox", [None, [1, 2, 3], [1, 2, "x", 4], [1, 2, float("nan"), 4]])
def test_a_malformed_bbox_is_an_error(tmp_path, bbox) -> None:
    write_coco(tmp_path, STANDARD)

    def set_bbox(content: dict) -> None:
        first = content["annotations"][0]
        first.pop("bbox")
        if bbox is not None:
            first["bbox"] = bbox

    path = re.escape(str(rewrite_json(tmp_path, set_bbox)))
    with pytest.raises(ValueError, match=rf"^{path}: annotation 10: bbox .*expected \[x, y, width, height\]"):
        COCODetection(tmp_path, "val2014")


def test_json_size_is_checked_wherever_a_picture_is_read(tmp_path) -> None:
    from utils.evaluation.runner import EvalPictures

    write_coco(tmp_path, STANDARD)
    rewrite_json(tmp_path, lambda c: c["images"][2].update(width=60))  # the picture is 50x40
    ds = COCODetection(tmp_path, "val2014", skip_bad=False)
    for read in (ds.pull_image, ds.pull_item, ds.__getitem__):
        with pytest.raises(ValueError, match=r"COCO_val2014_000000000003.jpg: .*says 60x40 but the image is 50x40"):
            read(2)
    *_, message = EvalPictures(ds, [2], 300, with_truth=False)[0]  # what eval.py and validation read
    assert message is not None and "says 60x40 but the image is 50x40" in message


def test_how_much_ground_truth_a_split_has(tmp_path) -> None:
    write_coco(tmp_path, STANDARD)
    ds = COCODetection(tmp_path, "val2014")
    assert ds.num_annotations == 3 and ds.has_ground_truth  # the crowd region is not counted
    rewrite_json(tmp_path, lambda c: c.update(annotations=c["annotations"][2:3]))  # only the crowd region
    ds = COCODetection(tmp_path, "val2014")
    assert ds.num_annotations == 0 and not ds.has_ground_truth
    rewrite_json(tmp_path, lambda c: c.pop("annotations"))  # a test split: images only
    ds = COCODetection(tmp_path, "val2014")
    assert ds.num_annotations == 0 and not ds.has_ground_truth
    assert ds.coco.getAnnIds() == [] and ds.pull_anno(0) == (1, [])  # pycocotools raised KeyError here
    assert ds[0][1].shape == (0, 5)
