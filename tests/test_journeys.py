"""A user's journeys with their own data, end to end: train.py → eval.py → test.py with no flag repeated."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import train
from benchmarks.repo import REPO_ROOT
from tests.argv import train_argv

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore:--basenet none:UserWarning")]
ONE_STEP = ("--max_iter", "1")


def test_png_pictures_go_through_train_eval_and_test(tmp_path: Path, one_thread, scripts) -> None:
    from data.synthetic import make_voc_dataset

    root = make_voc_dataset(str(tmp_path / "voc"), num_train=2, num_test=2, seed=3)
    pictures = Path(root, "VOC2007", "JPEGImages")
    for jpg in list(pictures.glob("*.jpg")):
        cv2.imwrite(str(jpg.with_suffix(".png")), cv2.imread(str(jpg)))
        jpg.unlink()
    weights = tmp_path / "w"
    assert train.main(train_argv(root, weights, *ONE_STEP, "--image_sets", "2007:trainval", seed=0)) == 0
    model = weights / "ssd300_VOC_1.pth"
    out = tmp_path / "eval"
    argv = ["--trained_model", str(model), "--dataset_root", root, "--save_folder", str(out), "--num_workers", "0"]
    assert scripts.eval.main(argv + ["--cuda", "false"]) == 0
    assert json.loads((out / "results.json").read_text())["num_images"] == 2
    png = sorted(pictures.glob("*.png"))[-1]
    argv = ["--trained_model", str(model), "--save_folder", str(tmp_path / "det"), "--cuda", "false", str(png)]
    assert scripts.test.main(argv) == 0
    assert json.loads((tmp_path / "det" / "detections.json").read_text())[0]["image"] == str(png)


def test_a_train_py_pth_loads_strictly_into_a_classic_layout_ssd(tmp_path: Path, tiny_voc: str, one_thread) -> None:
    from ssd import build_ssd

    assert train.main(train_argv(tiny_voc, tmp_path / "w", *ONE_STEP, "--image_sets", "2007:trainval", seed=0)) == 0
    state = torch.load(tmp_path / "w" / "ssd300_VOC_1.pth", weights_only=True)
    net = build_ssd("test", 300, 21)
    assert net.load_state_dict(state, strict=True) is not None  # no missing or unexpected keys
    sidecar = json.loads((tmp_path / "w" / "ssd300_VOC_1.json").read_text())
    assert sidecar["size"] == 300 and sidecar["num_classes"] == 21 and sidecar["prior_config"]["name"] == "VOC"


def _coco_dataset(root: Path, split: str, names: list[str], seed: int) -> None:
    """A COCO-format dataset of coloured rectangles with its own categories (ids 10, 20, 30)."""
    rng = np.random.default_rng(seed)
    (root / "images" / split).mkdir(parents=True)
    (root / "annotations").mkdir(exist_ok=True)
    images, annotations = [], []
    for image_id in range(1, 4):
        img = np.full((160, 200, 3), 40, np.uint8)
        name = f"{split}_{image_id}.png"
        for _ in range(2):
            x, y, w, h = (int(v) for v in (rng.integers(0, 100), rng.integers(0, 80), 60, 50))
            label = int(rng.integers(0, len(names)))
            img[y : y + h, x : x + w] = (60 * (label + 1), 200 - 50 * label, 90)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": 10 * (label + 1),
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})  # fmt: skip
        cv2.imwrite(str(root / "images" / split / name), img)
        images.append({"id": image_id, "file_name": name, "width": 200, "height": 160})
    categories = [{"id": 10 * (i + 1), "name": n, "supercategory": "shape"} for i, n in enumerate(names)]
    data = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(data))


def test_a_custom_coco_dataset_trains_evaluates_and_tests(tmp_path: Path, one_thread, scripts) -> None:
    pytest.importorskip("pycocotools")
    names = ["circle", "square", "kite"]
    root = tmp_path / "coco"
    _coco_dataset(root, "mytrain", names, seed=0)
    _coco_dataset(root, "myval", names, seed=1)
    weights = tmp_path / "w"
    argv = train_argv(str(root), weights, *ONE_STEP, "--dataset", "COCO", "--image_sets", "mytrain", seed=0)
    assert train.main(argv) == 0
    model = weights / "ssd300_COCO_1.pth"
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert sidecar["class_names"] == names and sidecar["num_classes"] == 4 and sidecar["dataset"] == "COCO"

    out = tmp_path / "eval"
    argv = ["--trained_model", str(model), "--dataset", "COCO", "--dataset_root", str(root), "--set_type", "myval"]
    assert scripts.eval.main(argv + ["--save_folder", str(out), "--num_workers", "0", "--cuda", "false"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["metric"] == "coco" and results["num_images"] == 3 and 0.0 <= results["AP"] <= 1.0

    picture = root / "images" / "myval" / "myval_1.png"
    argv = ["--trained_model", str(model), "--save_folder", str(tmp_path / "det"), "--visual_threshold", "0.0"]
    assert scripts.test.main(argv + ["--cuda", "false", str(picture)]) == 0
    labels = {d["label"] for d in json.loads((tmp_path / "det" / "detections.json").read_text())[0]["detections"]}
    assert labels and labels <= set(names)
    assert os.path.isfile(tmp_path / "det" / "myval_1_det.jpg")


def test_a_prior_config_model_trains_and_is_rebuilt_without_flags(
    tmp_path: Path, tiny_voc: str, one_thread, scripts
) -> None:
    config = {
        "min_sizes": [30, 60, 111, 162, 213, 264],
        "max_sizes": [60, 111, 162, 213, 264, 315],
        "aspect_ratios": [[2, 3]] * 6,  # 6 boxes per location everywhere: heads unlike the classic layout
    }
    (tmp_path / "priors.json").write_text(json.dumps(config))
    weights = tmp_path / "w"
    priors = ("--prior_config", str(tmp_path / "priors.json"))
    argv = train_argv(tiny_voc, weights, *ONE_STEP, "--image_sets", "2007:trainval", *priors, seed=0)
    assert train.main(argv) == 0
    model = weights / "ssd300_VOC_1.pth"
    recorded = json.loads(model.with_suffix(".json").read_text())["prior_config"]
    assert recorded["aspect_ratios"] == [[2, 3]] * 6 and recorded["name"] == "custom"
    assert torch.load(model, weights_only=True)["loc.0.weight"].shape[0] == 6 * 4

    out = tmp_path / "eval"
    argv = ["--trained_model", str(model), "--dataset_root", tiny_voc, "--save_folder", str(out), "--num_workers", "0"]
    assert scripts.eval.main(argv + ["--cuda", "false"]) == 0
    picture = next(Path(tiny_voc, "VOC2007", "JPEGImages").glob("*.jpg"))
    argv = ["--trained_model", str(model), "--save_folder", str(tmp_path / "det"), "--cuda", "false", str(picture)]
    assert scripts.test.main(argv) == 0

    from utils.checkpoint import load_model

    net = load_model(model)
    assert net.priors.shape[0] == sum(f * f * 6 for f in (38, 19, 10, 5, 3, 1))


def test_train_and_eval_run_without_the_optional_packages(tmp_path: Path, tiny_voc: str) -> None:
    """A bare CUDA image has torch, torchvision, OpenCV and pytest only: no tqdm, matplotlib, visdom, pycocotools."""
    import subprocess
    import textwrap

    weights = tmp_path / "w"
    script = textwrap.dedent(f"""
        import sys
        for name in ("tqdm", "matplotlib", "visdom", "pycocotools"):
            sys.modules[name] = None  # importing it raises ImportError
        import torch, train
        from benchmarks.repo import load_script
        torch.set_num_threads(1)
        assert train.main({train_argv(tiny_voc, weights, *ONE_STEP, "--image_sets", "2007:trainval", seed=0)!r}) == 0
        ev = load_script("eval")
        sys.exit(ev.main(["--trained_model", {str(weights / "ssd300_VOC_1.pth")!r}, "--dataset_root", {tiny_voc!r},
                          "--save_folder", {str(tmp_path / "eval")!r}, "--num_workers", "0", "--cuda", "false"]))
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "pr_curves.png, errors.png, confusion.png not drawn" in proc.stderr
    assert "could not draw loss.png" in proc.stderr
    results = json.loads((tmp_path / "eval" / "results.json").read_text())
    assert results["num_images"] == 1 and "errors" in results and (tmp_path / "eval" / "worst.jpg").is_file()
