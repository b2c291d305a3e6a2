"""Error analysis: hand-built pictures whose TIDE errors, oracle gains, confusion and AP by size are worked out here."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

from utils.evaluation.analysis import ERROR_TYPES, analyse, base_aps, match_split, mean_ap, worst_cases
from utils.evaluation.voc import ImageDetections, ImageTruth, evaluate_voc

NAMES = ["cat", "dog"]
CAT, DOG = 0, 1


def truth(rows: list[tuple[int, list[float], bool]]) -> ImageTruth:
    """``[(label, 1-based box, difficult), ...]`` → ImageTruth."""
    return ImageTruth(
        np.array([r[1] for r in rows], np.float64).reshape(-1, 4),
        np.array([r[0] for r in rows], np.int64),
        np.array([r[2] for r in rows], bool),
    )


def dets(rows: list[tuple[int, float, list[float]]]) -> ImageDetections:
    """``[(label, score, 1-based box), ...]`` → ImageDetections."""
    return ImageDetections(
        np.array([r[0] for r in rows], np.int64).reshape(-1),
        np.array([r[1] for r in rows], np.float64).reshape(-1),
        np.array([r[2] for r in rows], np.float64).reshape(-1, 4),
    )


# One picture, 100x100 objects (IoU of a box shifted by 50 px: 5000 / 15000 = 1/3):
#   G0 cat (1,1)      D1 cat .9 exact: TP;  D2 cat .8 exact: dupl
#   G1 dog (201,1)    D3 cat .7 exact: cls (G1 free: fixing makes it a dog TP)
#   G2 dog (1,201)    D4 dog .3 shifted to IoU 1/3: loc
#   G3 cat (201,201)  D5 dog .5 shifted to IoU 1/3 with it, none with a dog: both; G3 is missed
#   G4 cat (401,1)    D7 cat .2 exact: TP
#   D6 cat .4 and D8 cat .35 on empty background: bkg
# Ranked: cat D1 T, D2 F, D3 F, D6 F, D8 F, D7 T (3 positives); dog D5 F, D4 F (2 positives).
TIDE_TRUTH = truth([
    (CAT, [1, 1, 100, 100], False),
    (DOG, [201, 1, 300, 100], False),
    (DOG, [1, 201, 100, 300], False),
    (CAT, [201, 201, 300, 300], False),
    (CAT, [401, 1, 500, 100], False),
])  # fmt: skip
TIDE_DETS = dets([
    (CAT, 0.9, [1, 1, 100, 100]),
    (CAT, 0.8, [1, 1, 100, 100]),
    (CAT, 0.7, [201, 1, 300, 100]),
    (DOG, 0.3, [51, 201, 150, 300]),
    (DOG, 0.5, [251, 201, 350, 300]),
    (CAT, 0.4, [401, 401, 450, 450]),
    (CAT, 0.2, [401, 1, 500, 100]),
    (CAT, 0.35, [451, 451, 500, 500]),
])  # fmt: skip


def test_tide_counts_and_oracle_gains_by_hand_area_ap() -> None:
    errors = analyse([TIDE_DETS], [TIDE_TRUTH], NAMES, use_07_metric=False)["errors"]
    assert list(errors) == list(ERROR_TYPES)
    counts = {kind: (e["count"], e["per_class"]["cat"]["count"], e["per_class"]["dog"]["count"])
              for kind, e in errors.items()}  # fmt: skip
    assert counts == {"cls": (1, 1, 0), "loc": (1, 0, 1), "both": (1, 0, 1), "dupl": (1, 1, 0), "bkg": (2, 2, 0),
                      "miss": (1, 1, 0)}  # fmt: skip
    # Base: cat AP = 1/3 * 1 + 1/3 * 2/6 = 4/9 (miss: G3), dog 0 → mAP 2/9.
    # cls: cat loses D3 (7/15), dog gains a TP at .7 ahead of its two FPs (1/2) → 29/60.
    # loc: D4 becomes a dog TP behind D5 (1/2 * 1/2 = 1/4) → 25/72.  both: D5 removed, dog stays 0.
    # dupl: D2 removed, cat 1/3 + 1/3 * 2/5 = 7/15.  bkg: D6, D8 removed, cat 1/3 + 1/3 * 2/4 = 1/2.
    # miss: G3 leaves the positives, cat 1/2 * 1 + 1/2 * 2/6 = 2/3.
    want = {
        "cls": (29 / 60, 7 / 15, 1 / 2),
        "loc": (25 / 72, 4 / 9, 1 / 4),
        "both": (2 / 9, 4 / 9, 0.0),
        "dupl": (7 / 30, 7 / 15, 0.0),
        "bkg": (1 / 4, 1 / 2, 0.0),
        "miss": (1 / 3, 2 / 3, 0.0),
    }
    for kind, (mean, cat, dog) in want.items():
        e = errors[kind]
        assert e["delta_map"] == pytest.approx(mean - 2 / 9, abs=1e-12), kind
        assert e["per_class"]["cat"]["delta_ap"] == pytest.approx(cat - 4 / 9, abs=1e-12), kind
        assert e["per_class"]["dog"]["delta_ap"] == pytest.approx(dog, abs=1e-12), kind


def test_tide_voc07_base_equals_evaluate_voc_and_gains_by_hand() -> None:
    analysis = analyse([TIDE_DETS], [TIDE_TRUTH], NAMES, use_07_metric=True)
    base = evaluate_voc([TIDE_DETS], [TIDE_TRUTH], NAMES, use_07_metric=True).mean_ap
    # cat 11-point: recall 1/3 reached at precision 1 (t = 0..0.3), 2/3 at 1/3 (t = 0.4..0.6) → 5/11; dog 0.
    assert base == pytest.approx(5 / 22, abs=1e-12)
    errors = analysis["errors"]
    # miss: 2 positives → 1 for t <= 0.5, 1/3 for t = 0.6..1 → 23/33.  bkg: 1 for t <= 0.3, 1/2 for 0.4..0.6 → 1/2.
    assert errors["miss"]["delta_map"] == pytest.approx(23 / 66 - 5 / 22, abs=1e-12)
    assert errors["bkg"]["delta_map"] == pytest.approx(1 / 4 - 5 / 22, abs=1e-12)
    assert json.loads(json.dumps(analysis)) == analysis  # eval.py writes it into results.json as it is


def test_base_map_is_evaluate_voc_exactly_on_a_random_split() -> None:
    rng = np.random.default_rng(0)
    detections, truths = [], []
    for _ in range(20):
        n, d = int(rng.integers(0, 5)), int(rng.integers(0, 30))
        corner = rng.uniform(1, 200, (n, 2))
        boxes = np.concatenate([corner, corner + rng.uniform(5, 100, (n, 2))], 1)
        truths.append(ImageTruth(boxes, rng.integers(0, 3, n), rng.random(n) < 0.2))
        near = boxes[rng.integers(0, n, d)] + rng.normal(0, 10, (d, 4)) if n else rng.uniform(1, 200, (d, 4))
        near = np.concatenate([near[:, :2], np.maximum(near[:, 2:], near[:, :2] + 1)], 1)
        detections.append(ImageDetections(rng.integers(0, 3, d), rng.random(d).round(2), near))
    names = ["a", "b", "c"]
    for use_07_metric in (True, False):
        result = evaluate_voc(detections, truths, names, use_07_metric)
        m = match_split(detections, truths, len(names))
        assert int(m.tp.sum()) > 10 and int(m.ignored.sum()) > 0  # the case exercises matching and difficult
        errors = analyse(detections, truths, names, use_07_metric)["errors"]
        for kind in ERROR_TYPES:  # every gain is measured from evaluate_voc's own mAP, never from a rounded one
            fixed = errors[kind]["delta_map"] + result.mean_ap
            assert errors[kind]["delta_map"] >= 0.0 and fixed <= 1.0
        assert m.tp.sum() + m.ignored.sum() + sum(errors[k]["count"] for k in ERROR_TYPES[:5]) == len(m.tp)
        assert mean_ap(base_aps(m, use_07_metric)) == result.mean_ap


def test_difficult_objects_are_ignored_never_missed() -> None:
    picture = truth([(CAT, [1, 1, 100, 100], True)])
    found = dets([(CAT, 0.9, [1, 1, 100, 100]), (DOG, 0.8, [1, 1, 100, 100])])
    analysis = analyse([found], [picture], NAMES)
    errors = analysis["errors"]
    # the cat box is ignored as the devkit ignores it; difficult objects take no part in typing: the dog box is bkg
    assert {k: e["count"] for k, e in errors.items()} == {"cls": 0, "loc": 0, "both": 0, "dupl": 0, "bkg": 1, "miss": 0}
    assert errors["bkg"]["delta_map"] is None  # no class has a non-difficult object: no mAP
    assert errors["bkg"]["per_class"]["cat"]["delta_ap"] is None
    assert analysis["confusion"]["counts"] == [[0, 0, 0], [0, 0, 0], [0, 0, 0]]


def test_confusion_matrix_of_the_tide_picture() -> None:
    conf = analyse([TIDE_DETS], [TIDE_TRUTH], NAMES, score_thresh=0.3)["confusion"]
    assert conf["rows"] == ["cat", "dog", "background"] and conf["columns"] == ["cat", "dog", "missed"]
    assert conf["score"] == 0.3 and conf["iou"] == 0.5
    # >= 0.3, by score: D1 takes G0; D2 finds G0 taken (background); D3 takes the dog G1; D5, D6, D8, D4 reach no
    # object at IoU 0.5 (background); D7 (.2) is below the score, so G2 (dog), G3 and G4 (cats) are missed.
    assert conf["counts"] == [[1, 0, 2], [1, 0, 1], [3, 2, 0]]


def test_confusion_takes_the_best_free_object_of_any_class() -> None:
    picture = truth([(CAT, [1, 1, 100, 100], False), (DOG, [11, 1, 110, 100], False)])
    # the dog box covers the dog better (IoU 1) than the cat (IoU 9000 / 11000), the later cat box takes the cat
    found = dets([(DOG, 0.9, [11, 1, 110, 100]), (CAT, 0.8, [11, 1, 110, 100]), (CAT, 0.7, [11, 1, 110, 100])])
    assert analyse([found], [picture], NAMES)["confusion"]["counts"] == [[1, 0, 0], [0, 1, 0], [1, 0, 0]]


def test_ap_by_size_equals_evaluate_voc_restricted_by_hand() -> None:
    picture = truth([
        (CAT, [1, 1, 20, 20], False),  # area 400: small
        (CAT, [101, 101, 300, 300], False),  # 40000: large
        (DOG, [1, 101, 50, 150], False),  # 2500: medium
    ])  # fmt: skip
    found = [
        (CAT, 0.9, [1, 1, 20, 20]),  # TP on the small cat
        (CAT, 0.5, [141, 101, 340, 300]),  # TP on the large cat (IoU 2/3)
        (DOG, 0.8, [1, 101, 50, 150]),  # TP on the medium dog
        (CAT, 0.7, [401, 401, 410, 410]),  # small false positive
        (CAT, 0.8, [301, 301, 500, 500]),  # large false positive
    ]
    sizes = analyse([dets(found)], [picture], NAMES, use_07_metric=False)["ap_by_size"]
    assert sizes["limits"] == [32**2, 96**2]
    # by hand: objects of other sizes become difficult, false positives of other sizes are dropped
    restricted = {
        "small": ([True, False, False], [0, 1, 2, 3]),
        "medium": ([False, False, True], [0, 1, 2]),
        "large": ([False, True, False], [0, 1, 2, 4]),
    }
    for size, (kept, rows) in restricted.items():
        hand = ImageTruth(picture.boxes, picture.labels, ~np.array(kept))
        want = evaluate_voc([dets([found[i] for i in rows])], [hand], NAMES, use_07_metric=False)
        assert sizes[size]["mAP"] == want.mean_ap and sizes[size]["ap"] == want.aps, size
    # small: cat .9 T, .7 F → 1; medium: dog 1, no medium cat; large: cat .9 ignored, .8 F, .5 T → 1/2
    assert [sizes[s]["mAP"] for s in ("small", "medium", "large")] == [1.0, 1.0, 0.5]
    assert sizes["medium"]["ap"] == {"cat": None, "dog": 1.0} and sizes["large"]["ap"]["dog"] is None


def test_worst_cases_list_top_false_positives_then_largest_misses() -> None:
    cases = worst_cases([TIDE_DETS], [TIDE_TRUTH], NAMES, limit=4)
    assert [(c["error"], c["score"]) for c in cases] == [("dupl", 0.8), ("cls", 0.7), ("both", 0.5), ("miss", None)]
    assert cases[1]["truth_label"] == DOG and cases[1]["truth_box"] == [201.0, 1.0, 300.0, 100.0]
    assert cases[3] == {"error": "miss", "image": 0, "label": None, "score": None, "box": None, "truth_label": CAT,
                        "truth_box": [201.0, 201.0, 300.0, 300.0]}  # fmt: skip
    from utils.evaluation.analysis_plots import _caption

    assert _caption(cases[1], NAMES) == ("cls: cat 0.70", "picture 0, object: dog")  # a position without a name
    assert _caption({**cases[3], "picture": "000123"}, NAMES) == ("miss: cat", "000123, no detection")


def test_plots_write_files_and_need_matplotlib(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("matplotlib")
    from utils.evaluation.analysis_plots import draw_confusion, draw_errors, draw_worst

    analysis = analyse([TIDE_DETS], [TIDE_TRUTH], NAMES)
    cases = worst_cases([TIDE_DETS], [TIDE_TRUTH], NAMES)
    paths = [str(tmp_path / name) for name in ("errors.png", "confusion.png", "worst.jpg")]
    draw_errors(analysis, paths[0])
    draw_confusion(analysis, paths[1])
    draw_worst(cases, lambda i: np.full((520, 520, 3), 90, np.uint8), NAMES, paths[2])
    for path in paths:
        with open(path, "rb") as f:
            head = f.read(4)
        assert head in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb"), path
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError):
        draw_errors(analysis, paths[0])
