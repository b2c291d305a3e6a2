import json
import xml.etree.ElementTree as ET
from collections import Counter

import cv2
import numpy as np
import pytest
import torch

from data import VOC_CLASSES, voc
from data.priors import load_prior_config
from data.synthetic import make_voc_dataset
from layers import PriorBox, jaccard, point_form
from tests.data.test_coco import STANDARD, write_coco
from tests.data.voc_files import write_image_set, write_sample
from utils import inspect_dataset

SIDE = 300  # pictures as large as the network input, so pixel and network frames agree


def run(root, out, *extra):
    argv = ["--dataset", "VOC", "--dataset_root", str(root), "--image_sets", "2007:trainval", "--size", "300",
            "--save_folder", str(out), "--num_gallery", "0", *extra]  # fmt: skip
    assert inspect_dataset.main(argv) == 0
    return json.loads((out / "summary.json").read_text())


def write_dataset(root, pictures):
    """``pictures``: per picture, (name, x1, y1, x2, y2) boxes relative to a SIDE x SIDE picture."""
    ids = []
    for k, boxes in enumerate(pictures):
        # VOC pixels are 1-based: relative = (pixel - 1) / size, so these XML boxes give back exactly ``boxes``.
        objects = [(name, *(v * SIDE + 1 for v in box), 0) for name, *box in boxes]
        write_sample(root, f"{k:04d}", objects, width=SIDE, height=SIDE)
        ids.append(f"{k:04d}")
    write_image_set(root, ids)


def test_counts_files_and_skipped_picture(tmp_path):
    root = make_voc_dataset(tmp_path / "voc", num_train=6, num_test=0, seed=3)
    annotations = sorted((tmp_path / "voc" / "VOC2007" / "Annotations").glob("*.xml"))
    objects = [obj for path in annotations for obj in ET.parse(path).getroot().iter("object")]
    per_class = Counter(obj.findtext("name") for obj in objects)
    difficult = Counter(obj.findtext("name") for obj in objects if obj.findtext("difficult") == "1")
    assert sum(per_class.values()) > 6
    with open(tmp_path / "voc" / "VOC2007" / "ImageSets" / "Main" / "trainval.txt", "a") as f:
        f.write("999999\n")  # listed, but neither picture nor annotation exists

    out = tmp_path / "out"
    summary = run(root, out, "--num_gallery", "3", "--augment", "--suggest", "false")
    assert summary["pictures"] == 6 and summary["pictures_listed"] == 7
    assert summary["objects"] == len(objects)
    assert summary["objects_per_class"] == {name: per_class.get(name, 0) for name in VOC_CLASSES}
    assert summary["difficult"]["total"] == sum(difficult.values())
    assert summary["difficult"]["per_class"] == {name: difficult.get(name, 0) for name in VOC_CLASSES}
    assert summary["pictures_skipped"] == 1
    assert summary["skipped"][0]["file"].endswith("999999.xml") and "not found" in summary["skipped"][0]["reason"]
    assert summary["prior_fit"]["objects"] == len(objects) - sum(difficult.values())
    assert "suggest" not in summary and not (out / "suggested_prior_config.json").exists()

    gallery = cv2.imread(str(out / "gallery.jpg"))
    assert gallery.shape == (2 * (inspect_dataset.TILE + 4) + 4, 4 * (inspect_dataset.TILE + 4) + 4, 3)
    assert cv2.imread(str(out / "prior_fit.jpg")) is not None
    boxes_png = cv2.imread(str(out / "boxes.png"))
    assert boxes_png is not None and boxes_png.shape[1] > 800


def test_boxes_on_priors_fit_completely(tmp_path):
    priors = point_form(PriorBox(voc).forward()).numpy()
    inside = np.flatnonzero((priors[:, :2] >= 0).all(1) & (priors[:, 2:] <= (SIDE - 1) / SIDE).all(1))
    chosen = np.random.default_rng(0).choice(inside, 24, replace=False)
    boxes = [("car" if k % 2 else "boat", *priors[i]) for k, i in enumerate(chosen)]
    write_dataset(tmp_path / "voc", [boxes[k : k + 6] for k in range(0, 24, 6)])

    fit = run(tmp_path / "voc", tmp_path / "out")["prior_fit"]
    assert fit["objects"] == 24 and fit["priors"] == 8732
    assert fit["overall"] == 1.0 and fit["mean_best_iou"] > 0.999
    assert fit["per_class"]["car"] == 1.0 and fit["per_class"]["boat"] == 1.0 and fit["per_class"]["cat"] is None
    assert fit["mean_positive_priors"] >= 1.0
    assert fit["poorly_covered"] == {"classes": {}, "sizes": {}}
    assert sum(fit["objects_per_size"].values()) == 24 and "300^2" in fit["size_rule"]


def test_tiny_boxes_are_poorly_covered(tmp_path):
    rng = np.random.default_rng(1)
    pictures = []
    for _ in range(3):
        corners = rng.uniform(0.1, 0.8, size=(4, 2))
        pictures.append([("bottle", x, y, x + 4 / SIDE, y + 4 / SIDE) for x, y in corners])  # 4 x 4 pixels
    pictures[0].append(("car", 0.2, 0.2, 0.6, 0.6))  # 120 x 120 pixels: a large, well covered object
    write_dataset(tmp_path / "voc", pictures)

    fit = run(tmp_path / "voc", tmp_path / "out")["prior_fit"]
    assert fit["objects"] == 13 and fit["objects_per_size"] == {"small": 12, "medium": 0, "large": 1}
    assert fit["per_class"]["bottle"] == 0.0 and fit["per_class"]["car"] == 1.0
    assert fit["overall"] == pytest.approx(1 / 13, abs=1e-4)
    assert fit["poorly_covered"] == {"classes": {"bottle": 0.0}, "sizes": {"small": 0.0}}
    car = torch.tensor([[0.2, 0.2, 0.6, 0.6]])
    car_positives = int((jaccard(car, point_form(PriorBox(voc).forward())) >= 0.5).sum())
    assert car_positives > 0 and fit["mean_positive_priors"] == pytest.approx(car_positives / 13, abs=1e-4)


def test_suggest_raises_the_fit_of_elongated_boxes(tmp_path):
    rng = np.random.default_rng(2)
    pictures = []
    for k in range(8):
        picture = []
        for _ in range(3):
            w, h = (160, 20) if k % 2 else (20, 160)  # 8:1 and 1:8 in pixels, in the network's frame too
            x, y = rng.uniform(0, SIDE - w - 1), rng.uniform(0, SIDE - h - 1)
            picture.append(("train", x / SIDE, y / SIDE, (x + w) / SIDE, (y + h) / SIDE))
        pictures.append(picture)
    write_dataset(tmp_path / "voc", pictures)

    out = tmp_path / "out"
    summary = run(tmp_path / "voc", out, "--suggest")
    before, after = summary["suggest"]["before"], summary["suggest"]["after"]
    assert before == summary["prior_fit"]["overall"] and before < 0.3
    assert after >= 0.9
    cfg = load_prior_config(out / "suggested_prior_config.json", 300, voc)
    assert [list(r) for r in cfg["aspect_ratios"]] == summary["suggest"]["config"]["aspect_ratios"]
    assert any(7 <= r <= 9 for ratios in cfg["aspect_ratios"] for r in ratios)
    assert summary["suggest"]["priors"]["after"] == PriorBox(cfg).forward().shape[0]

    again = run(tmp_path / "voc", tmp_path / "again", "--prior_config", str(out / "suggested_prior_config.json"))
    assert again["prior_fit"]["overall"] == after and again["prior_config"]["name"] == "custom"


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--prior_config", "{bad}"], "max_sizes[0] = 10 must be greater than min_sizes[0] = 30"),
        (["--image_sets", "2007"], "--image_sets expects year:set pairs"),
        (["--classes", "{missing}"], "class list not found"),
        (["--image_sets", "2012:trainval"], "cannot open the VOC dataset"),
        (["--backbone", "mobilenet_v3_large", "--size", "300"], "--size 300 does not fit --backbone mobilenet_v3"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, extra, message):
    write_dataset(tmp_path / "voc", [[("car", 0.1, 0.1, 0.5, 0.5)]])
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"min_sizes": [30] * 6, "max_sizes": [10] * 6, "aspect_ratios": [[2]] * 6}))
    extra = [arg.format(bad=bad, missing=tmp_path / "none.txt") for arg in extra]
    with pytest.raises(SystemExit) as info:
        run(tmp_path / "voc", tmp_path / "out", *extra)
    err = capsys.readouterr().err
    assert info.value.code == 2 and message in err and err.count("\n") == 1


def test_coco_layout(tmp_path):
    write_coco(tmp_path / "coco", STANDARD, split="val2014")  # 3 pictures; 3 boxes and a crowd region
    argv = ["--dataset", "COCO", "--dataset_root", str(tmp_path / "coco"), "--image_sets", "val2014",
            "--save_folder", str(tmp_path / "out"), "--num_gallery", "2"]  # fmt: skip
    assert inspect_dataset.main(argv) == 0
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["pictures"] == 3 and summary["pictures_without_objects"] == 1 and summary["objects"] == 3
    counts = {name: n for name, n in summary["objects_per_class"].items() if n}
    assert counts == {"dog": 1, "toothbrush": 2} and len(summary["objects_per_class"]) == 80
    assert summary["difficult"]["total"] == 0 and summary["prior_fit"]["objects"] == 3
    assert summary["prior_config"]["name"] == "COCO" and summary["prior_config"]["min_sizes"][0] == 21
    assert cv2.imread(str(tmp_path / "out" / "gallery.jpg")) is not None
    with pytest.raises(SystemExit) as info:
        inspect_dataset.main([*argv, "--classes", "x.txt"])
    assert info.value.code == 2
