"""eval.py: the devkit AP and matching on hand-computed cases, and the script end to end."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str) -> ModuleType:
    """Import a top-level script by path (``test`` would otherwise be the stdlib package)."""
    if name in sys.modules and getattr(sys.modules[name], "__file__", None) == str(ROOT / f"{name}.py"):
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


ev = _load("eval")


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


def test_annotation_cache_keyed_by_split(tmp_path: Path, tiny_split: tuple[str, str]) -> None:
    annopath, imageset = tiny_split
    cache = tmp_path / "cache"
    first = ev.load_annotations(annopath, imageset, str(cache))
    assert first["c"][0] == {"name": "dog", "difficult": True, "bbox": [1.0, 1.0, 10.0, 10.0]}
    assert len(list(cache.iterdir())) == 1
    (tmp_path / "Annotations" / "a.xml").write_text(_xml([]))  # the cache is what is read now
    assert ev.load_annotations(annopath, imageset, str(cache)) == first
    other = tmp_path / "val.txt"
    other.write_text("a\n")
    assert ev.load_annotations(annopath, str(other), str(cache)) == {"a": []}
    assert len(list(cache.iterdir())) == 2


def test_detection_in_unknown_image_is_an_error(tiny_split: tuple[str, str]) -> None:
    gt = {"a": (np.zeros((0, 4)), np.zeros(0, dtype=bool))}
    with pytest.raises(ValueError, match="'zz'"):
        ev.match_detections(["zz"], np.zeros((1, 4)), gt)


def test_parse_rec_errors_name_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.xml"
    bad.write_text("<annotation><object>")
    with pytest.raises(ValueError, match="bad.xml"):
        ev.parse_rec(str(bad))
