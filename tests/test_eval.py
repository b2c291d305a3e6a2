"""eval.py: the devkit AP and matching on hand-computed cases, and the script end to end."""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from benchmarks.repo import load_script
from ssd import build_ssd

ev = load_script("eval")


# ----------------------------------------------------------------------------- voc_ap
def test_voc_ap_full_recall_both_metrics() -> None:
    # 3 positives; detections by score: TP FP TP FP TP
    #   rec  = 1/3, 1/3, 2/3, 2/3, 1
    #   prec = 1,   1/2, 2/3, 1/2, 3/5
    rec = np.array([1, 1, 2, 2, 3]) / 3
    prec = np.array([1, 1 / 2, 2 / 3, 1 / 2, 3 / 5])
    # VOC07, 11 points t = 0, .1, …, 1: max precision at recall >= t
    #   t = 0 … 0.3 (4 points): 1;  t = 0.4 … 0.6 (3): 2/3;  t = 0.7 … 1.0 (4): 3/5
    #   AP = (4 + 3·2/3 + 4·3/5) / 11 = 8.4 / 11
    assert ev.voc_ap(rec, prec, use_07_metric=True) == pytest.approx(8.4 / 11)
    # area: envelope 1 on (0, 1/3], 2/3 on (1/3, 2/3], 3/5 on (2/3, 1]
    #   AP = 1/3 + 2/9 + 1/5 = 34/45
    assert ev.voc_ap(rec, prec, use_07_metric=False) == pytest.approx(34 / 45)


def test_voc_ap_partial_recall_both_metrics() -> None:
    # 4 positives; TP TP FP: rec = 1/4, 1/2, 1/2; prec = 1, 1, 2/3
    rec, prec = np.array([0.25, 0.5, 0.5]), np.array([1.0, 1.0, 2 / 3])
    # VOC07: t = 0 … 0.5 (6 points) reach precision 1, t >= 0.6 is never reached (0): 6/11
    assert ev.voc_ap(rec, prec, True) == pytest.approx(6 / 11)
    # area: 1 on (0, 1/2], nothing beyond: 0.5
    assert ev.voc_ap(rec, prec, False) == pytest.approx(0.5)
    assert ev.voc_ap(np.zeros(0), np.zeros(0), True) == 0.0
    assert ev.voc_ap(np.zeros(0), np.zeros(0), False) == 0.0


def test_devkit_iou_uses_inclusive_widths() -> None:
    # [1,1,10,10] is 10x10 = 100 pixels, [1,1,20,10] is 20x10 = 200; intersection 100, union 200 → exactly 0.5
    # (without the +1: 81 / 171 = 0.47)
    gt = np.array([[1.0, 1.0, 20.0, 10.0], [30.0, 30.0, 40.0, 40.0], [4.0, 1.0, 13.0, 10.0]])
    np.testing.assert_allclose(ev.devkit_iou(np.array([1.0, 1.0, 10.0, 10.0]), gt), [0.5, 0.0, 70 / 130])


# ----------------------------------------------------------------------------- voc_eval on a tiny VOC split
def _xml(objects: list[tuple[str, list[int], int | None]]) -> str:
    body = ""
    for name, (x1, y1, x2, y2), difficult in objects:
        diff = f"<difficult>{difficult}</difficult>" if difficult is not None else ""
        body += (
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>{diff}"
            f"<bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    return f"<annotation><size><width>60</width><height>60</height><depth>3</depth></size>{body}</annotation>"


@pytest.fixture()
def tiny_split(tmp_path: Path) -> tuple[str, str]:
    ann = tmp_path / "Annotations"
    ann.mkdir()
    (ann / "a.xml").write_text(
        _xml([("dog", [1, 1, 10, 10], 0), ("dog", [21, 21, 30, 30], 1), ("cat", [1, 1, 10, 10], None)])
    )
    (ann / "b.xml").write_text(_xml([("dog", [1, 1, 20, 10], 0)]))
    c_objects = [("dog", [1, 1, 10, 10], 1), ("dog", [4, 1, 13, 10], 0), ("bird", [5, 5, 9, 9], 1)]
    (ann / "c.xml").write_text(_xml(c_objects))
    split = tmp_path / "test.txt"
    split.write_text("a\nb\nc\n")
    return str(ann / "{}.xml"), str(split)


# dog detections (1-based), listed out of score order on purpose; by descending score:
#   0.95 a [1,1,10,10]   IoU 1 with a's dog                          → TP
#   0.90 b [1,1,10,10]   IoU exactly 0.5 with b's dog (+1 widths)    → TP
#   0.80 a [1,1,10,10]   same box again, already matched            → FP
#   0.70 a [21,21,30,30] a's difficult dog                           → ignored
#   0.60 c [1,1,10,10]   best IoU (1) is c's difficult dog, though
#                        the other dog has IoU 70/130 ≥ 0.5          → ignored
#   0.50 c [4,1,13,10]   c's non-difficult dog                       → TP
#   0.40 b [40,40,50,50] no overlap                                  → FP
DOG_DETECTIONS = """\
b 0.400000 40 40 50 50
c 0.600000 1 1 10 10
a 0.950000 1 1 10 10
a 0.700000 21 21 30 30
b 0.900000 1 1 10 10
c 0.500000 4 1 13 10
a 0.800000 1 1 10 10
"""


def test_voc_eval_devkit_rules(tmp_path: Path, tiny_split: tuple[str, str]) -> None:
    annopath, imageset = tiny_split
    (tmp_path / "det_dog.txt").write_text(DOG_DETECTIONS)
    for cls in ("cat", "bird"):
        (tmp_path / f"det_{cls}.txt").write_text("")
    detpath, cache = str(tmp_path / "det_{}.txt"), str(tmp_path / "cache")

    # npos = 3 (a, b, c's non-difficult dogs); tp = 1 1 0 0 0 1 0, fp = 0 0 1 0 0 0 1
    #   rec  = 1/3, 2/3, 2/3, 2/3, 2/3, 1,   1
    #   prec = 1,   1,   2/3, 2/3, 2/3, 3/4, 3/5
    rec, prec, ap07 = ev.voc_eval(detpath, annopath, imageset, "dog", cache, 0.5, True)
    np.testing.assert_allclose(rec, np.array([1, 2, 2, 2, 2, 3, 3]) / 3)
    np.testing.assert_allclose(prec, [1, 1, 2 / 3, 2 / 3, 2 / 3, 3 / 4, 3 / 5])
    # VOC07: t = 0 … 0.6 (7 points) → 1; t = 0.7 … 1 (4 points) → 3/4: (7 + 3) / 11
    assert ap07 == pytest.approx(10 / 11)
    # area: 1 on (0, 2/3], 3/4 on (2/3, 1]: 2/3 + 1/4
    assert ev.voc_eval(detpath, annopath, imageset, "dog", cache, 0.5, False)[2] == pytest.approx(11 / 12)

    # cat: one object (no <difficult> tag means not difficult), no detections → AP 0
    assert ev.voc_eval(detpath, annopath, imageset, "cat", cache)[2] == 0.0
    # bird: only a difficult object → no AP at all
    assert ev.voc_eval(detpath, annopath, imageset, "bird", cache)[2] is None


def test_annotation_cache_keyed_by_split_and_file_times(tmp_path: Path, tiny_split: tuple[str, str]) -> None:
    annopath, imageset = tiny_split
    cache = tmp_path / "cache"
    first = ev.load_annotations(annopath, imageset, str(cache))
    assert first["c"][0] == {"name": "dog", "difficult": True, "bbox": [1.0, 1.0, 10.0, 10.0]}
    assert len(list(cache.iterdir())) == 1
    assert ev.load_annotations(annopath, imageset, str(cache)) == first  # unchanged files: the cache answers
    assert len(list(cache.iterdir())) == 1
    xml = tmp_path / "Annotations" / "a.xml"
    xml.write_text(_xml([]))
    os.utime(xml, ns=(xml.stat().st_atime_ns, xml.stat().st_mtime_ns + 10**9))  # an edit after the cache
    edited = ev.load_annotations(annopath, imageset, str(cache))
    assert edited["a"] == [] and edited["b"] == first["b"]
    other = tmp_path / "val.txt"
    other.write_text("a\n")
    assert ev.load_annotations(annopath, str(other), str(cache)) == {"a": []}
    assert len(list(cache.iterdir())) == 3


def test_detection_in_unknown_image_is_an_error(tiny_split: tuple[str, str]) -> None:
    gt = {"a": (np.zeros((0, 4)), np.zeros(0, dtype=bool))}
    with pytest.raises(ValueError, match="'zz'"):
        ev.match_detections(["zz"], np.zeros((1, 4)), gt)


def test_parse_rec_errors_name_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotation><object>")
    with pytest.raises(ValueError, match="bad.xml"):
        ev.parse_rec(str(bad))


# ----------------------------------------------------------------------------- the script on a tiny VOC root
# image id → (width, height, [(class, [xmin, ymin, xmax, ymax] 1-based, difficult)])
TINY_VOC = {
    "a": (120, 80, [("dog", [11, 21, 60, 70], 0), ("cat", [70, 10, 110, 50], 0), ("dog", [5, 5, 20, 20], 1)]),
    "b": (90, 100, [("person", [1, 1, 90, 100], 0)]),  # the whole image: 0-based [0, 0, 89, 99]
}
TINY_CLASSES = ["dog", "cat", "person", "bird"]  # no bird anywhere: its AP is null
ANALYSIS_KEYS = ("errors", "confusion", "ap_by_size")
ANALYSIS_PICTURES = ("errors.png", "confusion.png", "worst.jpg")


def _voc_xml(width: int, height: int, objects: list[tuple[str, list[int], int]]) -> str:
    size = f"<width>{width}</width><height>{height}</height>"
    return _xml(objects).replace("<width>60</width><height>60</height>", size)


@pytest.fixture()
def voc_root(tmp_path: Path) -> Path:
    devkit = tmp_path / "VOCdevkit" / "VOC2007"
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (devkit / sub).mkdir(parents=True)
    for image_id, (w, h, objects) in TINY_VOC.items():
        (devkit / "Annotations" / f"{image_id}.xml").write_text(_voc_xml(w, h, objects))
        cv2.imwrite(str(devkit / "JPEGImages" / f"{image_id}.jpg"), np.full((h, w, 3), 127, np.uint8))
    (devkit / "ImageSets" / "Main" / "test.txt").write_text("".join(f"{i}\n" for i in TINY_VOC))
    return tmp_path / "VOCdevkit"


@pytest.fixture()
def fake_weights(tmp_path: Path) -> Path:
    """A readable weights file; the tests that use it replace the model with an oracle."""
    path = tmp_path / "fake.pth"
    torch.save({"dummy": torch.zeros(1)}, path)
    return path


class OracleSSD(nn.Module):
    """Stand-in for the loaded model that returns prepared ``[C, K, 5]`` detections for the images in dataset order."""

    size = 300

    def __init__(self, per_image: list[Tensor]) -> None:
        from data.transforms import CLASSIC_PREPROCESSING
        from layers import Detect

        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))
        self.queue = list(per_image)
        self.preprocessing = CLASSIC_PREPROCESSING
        self.detect = Detect(2)
        self.description = "model: an oracle"

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([self.queue.pop(0) for _ in range(x.shape[0])])


def _voc_oracle(names: list[str]) -> OracleSSD:
    """Every ground-truth box (difficult ones too) at score 0.9, as a model trained on
    ``VOCAnnotationTransform``'s ``(pixel - 1) / size`` targets predicts it; plus one false positive at 0.1."""
    per_image = []
    for w, h, objects in TINY_VOC.values():
        dets = torch.zeros(len(names) + 1, 4, 5)
        for k, (name, (x1, y1, x2, y2), _) in enumerate(objects):
            dets[names.index(name) + 1, k] = torch.tensor([0.9, (x1 - 1) / w, (y1 - 1) / h, (x2 - 1) / w, (y2 - 1) / h])
        per_image.append(dets)
    per_image[1][1, 3] = torch.tensor([0.1, 0.0, 0.0, 0.1, 0.1])
    return OracleSSD(per_image)


def _use_oracle(monkeypatch: pytest.MonkeyPatch, names: list[str], oracle, dataset: str = "VOC") -> None:
    """The fake weights stand for a model of ``names`` answering as ``oracle()``."""
    from data import get_config
    from utils.checkpoint import ModelFacts

    facts = ModelFacts(300, False, tuple(names), get_config(dataset, 300), dataset)

    def load_model(*args, **kwargs):
        model = oracle()
        model.facts = facts
        return model

    monkeypatch.setattr(ev, "load_model", load_model)


@pytest.mark.parametrize("use_07", ["true", "false"])
def test_voc_oracle_scores_one(
    tmp_path: Path,
    voc_root: Path,
    fake_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    use_07: str,
) -> None:
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(TINY_CLASSES))
    _use_oracle(monkeypatch, TINY_CLASSES, lambda: _voc_oracle(TINY_CLASSES))
    out = tmp_path / "eval"
    argv = ["--voc_root", str(voc_root), "--trained_model", str(fake_weights), "--classes", str(classes)]
    argv += ["--save_folder", str(out), "--num_workers", "0", "--batch_size", "1", "--use_07_metric", use_07]
    argv += ["--write_devkit_files", "true", "--cuda", "false"]  # the files are kept: no --cleanup true
    assert ev.main(argv) == 0

    results = json.loads((out / "results.json").read_text())
    assert {k: results[k] for k in ("mAP", "ap", "metric", "num_images")} == {
        "mAP": pytest.approx(1.0),
        "ap": {"dog": pytest.approx(1.0), "cat": pytest.approx(1.0), "person": pytest.approx(1.0), "bird": None},
        "metric": "voc07" if use_07 == "true" else "voc10",
        "num_images": 2,
    }
    stdout = capsys.readouterr().out
    assert "AP for dog = 1.0000" in stdout and "Mean AP = 1.0000" in stdout
    assert (out / "pr_curves.png").stat().st_size > 0
    # devkit files: 1-based boxes; the whole-image person comes back as [1, 1, 90, 100]
    person = (out / "results" / "comp4_det_test_person.txt").read_text().split()
    assert person[:2] == ["b", "0.900000"]
    np.testing.assert_allclose([float(v) for v in person[2:]], [1, 1, 90, 100], atol=1e-3)
    dog_lines = (out / "results" / "comp4_det_test_dog.txt").read_text().splitlines()
    assert len(dog_lines) == 3 and dog_lines[-1].startswith("b 0.100000")


def test_voc_cleanup_removes_detection_files(
    tmp_path: Path, voc_root: Path, fake_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(TINY_CLASSES))
    _use_oracle(monkeypatch, TINY_CLASSES, lambda: _voc_oracle(TINY_CLASSES))
    out = tmp_path / "eval"
    argv = ["--voc_root", str(voc_root), "--trained_model", str(fake_weights), "--classes", str(classes)]
    argv += ["--save_folder", str(out), "--num_workers", "0", "--write_devkit_files", "--cleanup", "true"]
    assert ev.main(argv) == 0
    assert not (out / "results").exists() and (out / "results.json").is_file()


def test_split_aliases_name_the_same_split(
    tmp_path: Path, voc_root: Path, fake_weights: Path, monkeypatch: pytest.MonkeyPatch, fail_line: Callable[..., str]
) -> None:
    """--year/--set_type are --image_sets YEAR:SET; giving both ways at once is a user error."""
    _use_oracle(monkeypatch, TINY_CLASSES, lambda: _voc_oracle(TINY_CLASSES))
    argv = ["--voc_root", str(voc_root), "--trained_model", str(fake_weights), "--num_workers", "0"]
    assert ev.main(argv + ["--year", "2007", "--set_type", "test", "--save_folder", str(tmp_path / "a")]) == 0
    assert ev.main(argv + ["--image_sets", "2007:test", "--save_folder", str(tmp_path / "b")]) == 0
    a, b = ((tmp_path / d / "results.json").read_text() for d in "ab")
    assert a == b and json.loads(a)["num_images"] == 2
    err = fail_line(ev.main, argv + ["--image_sets", "2007:test", "--year", "2007"])
    assert "--image_sets or as --year/--set_type, not both" in err


def _confused_oracle(names: list[str]) -> OracleSSD:
    """``_voc_oracle`` with picture a's cat predicted as a dog, at 0.8: a classification error."""
    oracle = _voc_oracle(names)
    cat, dog = names.index("cat") + 1, names.index("dog") + 1
    box = oracle.queue[0][cat, 1, 1:].clone()
    oracle.queue[0][cat, 1] = 0.0
    oracle.queue[0][dog, 1] = torch.cat([torch.tensor([0.8]), box])
    return oracle


@pytest.fixture
def confused_argv(tmp_path: Path, voc_root: Path, fake_weights: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """eval.py's command line on the tiny VOC set, its network replaced by the confused oracle."""
    _use_oracle(monkeypatch, TINY_CLASSES, lambda: _confused_oracle(TINY_CLASSES))
    classes = tmp_path / "classes.txt"
    classes.write_text("\n".join(TINY_CLASSES))
    argv = ["--voc_root", str(voc_root), "--trained_model", str(fake_weights), "--classes", str(classes)]
    return argv + ["--num_workers", "0", "--batch_size", "2", "--cuda", "false"]


def test_voc_analysis_explains_the_lost_map(
    tmp_path: Path, confused_argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "eval"
    assert ev.main(confused_argv + ["--save_folder", str(out), "--analysis_score", "0.05"]) == 0
    results = json.loads((out / "results.json").read_text())
    # dog: TP 0.9 (a), the cat box 0.8, nothing near 0.1 (b) → AP 1; cat: no detection → AP 0; person AP 1
    assert results["mAP"] == pytest.approx(2 / 3)
    errors = results["errors"]
    assert {k: v["count"] for k, v in errors.items()} == {"cls": 1, "loc": 0, "both": 0, "dupl": 0, "bkg": 1, "miss": 0}
    # fixed, the cls error is the cat's true positive: cat AP 0 → 1, mAP + 1/3; the bkg error costs nothing
    assert errors["cls"]["delta_map"] == pytest.approx(1 / 3) and errors["bkg"]["delta_map"] == pytest.approx(0.0)
    assert errors["cls"]["per_class"]["dog"]["count"] == 1
    assert errors["cls"]["per_class"]["cat"]["delta_ap"] == pytest.approx(1.0)
    assert "mAP gained by fixing each error type alone: cls 0.3333" in capsys.readouterr().out
    # rows dog, cat, person, bird, background; columns dog, cat, person, bird, missed (score >= 0.05; the
    # difficult dog's detection is ignored)
    confusion = results["confusion"]
    assert confusion["score"] == 0.05 and confusion["rows"][-1] == "background" and confusion["columns"][-1] == "missed"
    assert confusion["counts"] == [
        [1, 0, 0, 0, 0],
        [1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0],
        [1, 0, 0, 0, 0],
    ]
    # every object is medium (40² to 95² pixels); the 0.1 dog box (10 x 11) is small, so ignored there
    sizes = results["ap_by_size"]
    assert sizes["medium"]["mAP"] == pytest.approx(2 / 3) and sizes["small"]["mAP"] is None
    assert sizes["large"]["mAP"] is None and sizes["limits"] == [32**2, 96**2]
    for name in ANALYSIS_PICTURES:
        assert (out / name).stat().st_size > 0, name
    assert cv2.imread(str(out / "worst.jpg")).shape[2] == 3

    # into the same folder: the previous run's analysis pictures do not stay behind as if they were this run's
    assert ev.main(confused_argv + ["--save_folder", str(out), "--analysis", "false"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"mAP", "ap", "metric", "num_images"} and results["mAP"] == pytest.approx(2 / 3)
    assert (out / "pr_curves.png").is_file() and not any((out / name).exists() for name in ANALYSIS_PICTURES)


def test_analysis_without_matplotlib_writes_the_numbers(
    tmp_path: Path, confused_argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # importing it raises ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    out = tmp_path / "eval"
    assert ev.main(confused_argv + ["--save_folder", str(out)]) == 0
    assert set(ANALYSIS_KEYS) <= set(json.loads((out / "results.json").read_text()))
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pr_curves.png, errors.png, confusion.png not drawn" in err[0], err
    assert (out / "worst.jpg").is_file() and not (out / "errors.png").exists()


def test_missing_roots_exit_clearly(
    tmp_path: Path, fake_weights: Path, monkeypatch: pytest.MonkeyPatch, fail_line: Callable[..., str]
) -> None:
    _use_oracle(monkeypatch, TINY_CLASSES, lambda: _voc_oracle(TINY_CLASSES))
    common = ["--trained_model", str(fake_weights), "--save_folder", str(tmp_path / "out")]
    err = fail_line(ev.main, ["--voc_root", str(tmp_path / "nowhere")] + common)
    assert "VOC root not found" in err and "nowhere" in err
    (tmp_path / "empty").mkdir()
    err = fail_line(ev.main, ["--voc_root", str(tmp_path / "empty"), "--year", "2012"] + common)
    assert "VOC2012" in err and "test.txt" in err
    err = fail_line(ev.main, ["--dataset", "COCO", "--coco_root", str(tmp_path / "nococo")] + common)
    assert "COCO root not found" in err and "nococo" in err
    err = fail_line(ev.main, ["--dataset", "COCO", "--coco_root", str(tmp_path / "empty")] + common)
    assert "instances_val2014.json" in err


def test_unknown_class_exits_clearly(
    tmp_path: Path, voc_root: Path, fake_weights: Path, monkeypatch: pytest.MonkeyPatch, fail_line: Callable[..., str]
) -> None:
    _use_oracle(monkeypatch, ["dog", "cat"], lambda: _voc_oracle(TINY_CLASSES))
    argv = ["--voc_root", str(voc_root), "--trained_model", str(fake_weights)]
    err = fail_line(ev.main, argv + ["--save_folder", str(tmp_path / "out")])
    assert "b.xml" in err and "class 'person'" in err and "not in the class list" in err


def test_ctrl_c_exits_130_in_one_line_and_leaves_no_previous_results(
    tmp_path: Path, voc_root: Path, fake_weights: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A run cut short must not leave the previous run's results.json as if it were its own."""
    _use_oracle(monkeypatch, TINY_CLASSES, lambda: _voc_oracle(TINY_CLASSES))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(ev, "run_inference", interrupted)
    out = tmp_path / "eval"
    out.mkdir()
    (out / "results.json").write_text('{"mAP": 0.9, "metric": "voc07"}')
    argv = ["--voc_root", str(voc_root), "--trained_model", str(fake_weights), "--save_folder", str(out)]
    assert ev.main(argv + ["--num_workers", "0", "--cuda", "false"]) == 130
    assert capsys.readouterr().err == "eval.py: interrupted\n"
    assert not (out / "results.json").exists()


def test_missing_checkpoint_exits_clearly(tmp_path: Path, voc_root: Path, fail_line: Callable[..., str]) -> None:
    argv = ["--voc_root", str(voc_root), "--trained_model", str(tmp_path / "none.pth")]
    err = fail_line(ev.main, argv + ["--save_folder", str(tmp_path / "out")])
    assert "checkpoint not found" in err and "none.pth" in err


@pytest.mark.slow
def test_checkpoint_from_other_num_classes_names_keys(
    tmp_path: Path, voc_root: Path, fail_line: Callable[..., str]
) -> None:
    weights = tmp_path / "ssd300_3.pth"
    torch.save(build_ssd("train", 300, 3).state_dict(), weights)
    argv = ["--voc_root", str(voc_root), "--trained_model", str(weights), "--save_folder", str(tmp_path / "out")]
    err = fail_line(ev.main, argv)  # VOC: 20 classes + background
    assert str(weights) in err and "scores 2 classes" in err and "--classes" in err
    from data import VOC_CLASSES

    (tmp_path / "voc.txt").write_text("\n".join(VOC_CLASSES))
    err = fail_line(ev.main, argv + ["--classes", str(tmp_path / "voc.txt")])
    assert str(weights) in err and "scores 2 classes" in err and "voc.txt names 20" in err


# ----------------------------------------------------------------------------- COCO
COCO_CAT_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]  # 80, as COCO
# image id → (file, width, height, [(category id, [x, y, w, h])])
TINY_COCO = {
    42: ("a.jpg", 200, 150, [(1, [10.0, 20.0, 60.0, 50.0]), (90, [100.0, 30.0, 80.0, 100.0])]),
    7: ("b.jpg", 120, 160, [(13, [0.0, 0.0, 120.0, 160.0])]),
}


@pytest.fixture()
def coco_root(tmp_path: Path) -> Path:
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "images" / "val2014").mkdir(parents=True)
    images, annotations = [], []
    for image_id, (name, w, h, objects) in TINY_COCO.items():
        cv2.imwrite(str(root / "images" / "val2014" / name), np.full((h, w, 3), 90, np.uint8))
        images.append({"id": image_id, "file_name": name, "width": w, "height": h})
        for cat, box in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat, "bbox": box,
                                "area": box[2] * box[3], "iscrowd": 0})  # fmt: skip
    categories = [{"id": c, "name": f"class{c}", "supercategory": "thing"} for c in COCO_CAT_IDS]
    data = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(data))
    return root


def _coco_oracle() -> OracleSSD:
    per_image = []
    for image_id in sorted(TINY_COCO):  # eval goes through the images in id order
        _, w, h, objects = TINY_COCO[image_id]
        dets = torch.zeros(81, 2, 5)
        for k, (cat, (x, y, bw, bh)) in enumerate(objects):
            dets[COCO_CAT_IDS.index(cat) + 1, k] = torch.tensor([0.8, x / w, y / h, (x + bw) / w, (y + bh) / h])
        per_image.append(dets)
    return OracleSSD(per_image)


def test_coco_oracle_scores_one(
    tmp_path: Path, coco_root: Path, fake_weights: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _use_oracle(monkeypatch, [f"class{c}" for c in COCO_CAT_IDS], _coco_oracle, dataset="COCO")
    out = tmp_path / "eval"
    argv = ["--dataset", "COCO", "--coco_root", str(coco_root), "--trained_model", str(fake_weights)]
    assert ev.main(argv + ["--save_folder", str(out), "--num_workers", "0", "--batch_size", "2"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"AP", "AP50", "AP75", "APs", "APm", "APl", "metric", "num_images", *ANALYSIS_KEYS}
    assert results["metric"] == "coco" and results["num_images"] == 2
    assert results["AP"] == pytest.approx(1.0) and results["AP50"] == pytest.approx(1.0)
    # the analysis reads pycocotools' boxes: every detection a true positive, objects sized by box area
    assert all(v["count"] == 0 for v in results["errors"].values())
    sizes = results["ap_by_size"]
    assert sizes["small"]["mAP"] is None and sizes["large"]["ap"]["class13"] == pytest.approx(1.0)  # 120 x 160
    assert sizes["medium"]["ap"]["class1"] == pytest.approx(1.0) and sizes["medium"]["mAP"] == pytest.approx(1.0)
    confusion = np.array(results["confusion"]["counts"])
    assert confusion.trace() == 3 and confusion.sum() == 3
    assert all((out / name).stat().st_size > 0 for name in ANALYSIS_PICTURES)
    dets = json.loads((out / "detections_val2014_ssd300_results.json").read_text())
    by_image = sorted((d["image_id"], d["category_id"], d["bbox"], d["score"]) for d in dets)
    assert by_image == [
        (7, 13, pytest.approx([0.0, 0.0, 120.0, 160.0], abs=0.02), pytest.approx(0.8)),
        (42, 1, pytest.approx([10.0, 20.0, 60.0, 50.0], abs=0.02), pytest.approx(0.8)),
        (42, 90, pytest.approx([100.0, 30.0, 80.0, 100.0], abs=0.02), pytest.approx(0.8)),
    ]


def test_coco_split_without_ground_truth_skips_the_analysis(
    tmp_path: Path,
    coco_root: Path,
    fake_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    ann_file = coco_root / "annotations" / "instances_val2014.json"
    data = json.loads(ann_file.read_text())
    del data["annotations"]  # as a test split's file
    ann_file.write_text(json.dumps(data))
    _use_oracle(monkeypatch, [f"class{c}" for c in COCO_CAT_IDS], _coco_oracle, dataset="COCO")
    out = tmp_path / "eval"
    argv = ["--dataset", "COCO", "--coco_root", str(coco_root), "--trained_model", str(fake_weights)]
    assert ev.main(argv + ["--save_folder", str(out), "--num_workers", "0", "--batch_size", "2"]) == 0
    assert "error analysis skipped: the split has no ground truth" in capsys.readouterr().out
    assert not (out / "results.json").exists() and not any((out / name).exists() for name in ANALYSIS_PICTURES)


def test_a_coco_split_with_only_crowd_regions_has_no_ground_truth(
    tmp_path: Path, coco_root: Path, fake_weights: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """Crowd regions are not objects to find: nothing to score against, as for a split without annotations."""
    ann_file = coco_root / "annotations" / "instances_val2014.json"
    data = json.loads(ann_file.read_text())
    data["annotations"] = [{**ann, "iscrowd": 1} for ann in data["annotations"]]
    ann_file.write_text(json.dumps(data))
    _use_oracle(monkeypatch, [f"class{c}" for c in COCO_CAT_IDS], _coco_oracle, dataset="COCO")
    out = tmp_path / "eval"
    argv = ["--dataset", "COCO", "--coco_root", str(coco_root), "--trained_model", str(fake_weights)]
    assert ev.main(argv + ["--save_folder", str(out), "--num_workers", "0", "--analysis", "false"]) == 0
    assert "val2014 has no annotations" in capsys.readouterr().out and not (out / "results.json").exists()


# ----------------------------------------------------------------------------- end to end on synthetic data
@pytest.mark.slow
def test_end_to_end_on_synthetic_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from data import VOC_CLASSES
    from data.synthetic import make_voc_dataset

    root = make_voc_dataset(tmp_path / "synthetic", num_train=0, num_test=3, seed=0)
    torch.manual_seed(0)
    sd = build_ssd("train", 300, 21).state_dict()
    weights = tmp_path / "ssd300_VOC_10.pth"
    torch.save(sd, weights)
    out = tmp_path / "eval"
    argv = ["--voc_root", root, "--trained_model", str(weights), "--save_folder", str(out), "--cuda", "false"]
    argv += ["--num_workers", "0", "--batch_size", "2", "--top_k", "20"]
    assert ev.main(argv) == 0

    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"mAP", "ap", "metric", "num_images", *ANALYSIS_KEYS}
    assert results["metric"] == "voc07" and results["num_images"] == 3
    assert list(results["ap"]) == list(VOC_CLASSES)
    annotations = ev.load_annotations(
        str(Path(root, "VOC2007", "Annotations", "{}.xml")),
        str(Path(root, "VOC2007", "ImageSets", "Main", "test.txt")),
        str(out / "annotations_cache"),
    )
    present = {o["name"] for objs in annotations.values() for o in objs if not o["difficult"]}
    assert present, "the synthetic test split should hold objects"
    assert {c for c, ap in results["ap"].items() if ap is not None} == present
    valid = [ap for ap in results["ap"].values() if ap is not None]
    assert all(0.0 <= ap <= 1.0 for ap in valid)
    assert math.isfinite(results["mAP"]) and results["mAP"] == pytest.approx(sum(valid) / len(valid))
    stdout = capsys.readouterr().out
    assert stdout.count("AP for ") == 20 and "Mean AP = " in stdout
    assert (out / "pr_curves.png").is_file() and not (out / "results").exists()

    # a full training checkpoint (train.py's *_last.ckpt) evaluates the same, here with the area metric
    ckpt = tmp_path / "ssd300_VOC_last.ckpt"
    torch.save({"model": sd, "iteration": 10, "class_names": list(VOC_CLASSES), "num_classes": 21}, ckpt)
    argv[argv.index(str(weights))] = str(ckpt)
    assert ev.main(argv + ["--use_07_metric", "false", "--save_folder", str(tmp_path / "eval10")]) == 0
    results10 = json.loads((tmp_path / "eval10" / "results.json").read_text())
    assert results10["metric"] == "voc10" and math.isfinite(results10["mAP"])


# ----------------------------------------------------------------------------- ground truth validated as in training
@pytest.mark.parametrize(
    ("edit", "expected"),
    [
        (("<xmin>11</xmin>", "<xmin>90</xmin>"), "xmax < xmin"),  # an inverted box
        (("<width>120</width>", "<width>240</width>"), "<size> says 240x80 but the image is 120x80"),
        (("<ymax>70</ymax>", "<ymax>abc</ymax>"), "<ymax> is 'abc', expected a number"),
        (("<difficult>0</difficult>", "<difficult>true</difficult>"), "<difficult> is 'true', expected a number"),
        (("<difficult>0</difficult>", "<difficult>2</difficult>"), "<difficult> is 2, expected 0 or 1"),
    ],
)
def test_broken_ground_truth_stops_with_the_file_and_field(
    tmp_path: Path,
    voc_root: Path,
    fake_weights: Path,
    monkeypatch: pytest.MonkeyPatch,
    fail_line: Callable[..., str],
    edit: tuple[str, str],
    expected: str,
) -> None:
    xml = voc_root / "VOC2007" / "Annotations" / "a.xml"
    text = xml.read_text()
    assert edit[0] in text
    xml.write_text(text.replace(edit[0], edit[1], 1))
    _use_oracle(monkeypatch, TINY_CLASSES, lambda: _voc_oracle(TINY_CLASSES))
    argv = ["--voc_root", str(voc_root), "--trained_model", str(fake_weights), "--save_folder", str(tmp_path / "o")]
    err = fail_line(ev.main, argv + ["--num_workers", "0"])
    assert str(xml) in err and expected in err
    assert not (tmp_path / "o" / "results.json").exists()
