"""Why a detector loses AP: TIDE's error types, a confusion matrix and AP by object size, on the VOC metric's data.

Everything reads one devkit matching of the split (``match_split``), done with NumPy: each detection takes the
highest-IoU ground truth of its class in its picture (difficult ones included; IoU with +1 widths on 1-based
pixels), and among the detections, in the devkit's order (class, then descending score), taking the same object at
IoU >= 0.5 the first is the true positive and the rest are false positives; on a difficult object they are ignored.
That is ``utils.evaluation.voc``'s loop exactly, so the base mAP here equals ``evaluate_voc``'s.

Errors (TIDE, Bolya et al., ECCV 2020; t_f = 0.5, t_b = 0.1). Every false positive gets one type, tested in the
order of TIDE's own code so that the numbers read like TIDE's: with s its best IoU with an object of its class, o its
best IoU with an object of another class (difficult objects take no part, as TIDE's ignore regions):
``loc`` t_b <= s < t_f; else ``cls`` o >= t_f; else ``dupl`` s >= t_f (that object was taken by a higher-scoring
detection); else ``bkg`` max(s, o) < t_b; else ``both`` (t_b <= o < t_f). So a box on an object of another class
that also touches one of its own class at t_b <= IoU < t_f counts as loc, and a second box on a taken object that
also covers another class's object at t_f counts as cls. ``miss``: a non-difficult object no detection matched and
no cls or loc error points at. Errors are counted under the detection's class (miss: the object's).

Oracles, each type fixed alone, as TIDE: a cls error takes the object's class and a loc error the object's box and
becomes a true positive when that object is free, i.e. unmatched and this is the highest-scoring cls or loc error
pointing at it (one pool for both types, so no object is recovered twice); otherwise, and for both, dupl and bkg,
the detection is removed. Fixing miss takes the missed objects out of the positives (a class left with none then
has AP 0). ``delta_map`` is the mAP so fixed minus the base mAP, both over the classes with non-difficult objects.

Object size is the devkit's area ``(x2 - x1 + 1) * (y2 - y1 + 1)`` in original (1-based, inclusive) pixels, split
by COCO's limits: small < 32², 32² <= medium < 96², large >= 96². For one size, objects of other sizes are ignored
like difficult ones, and so are false positives whose own box is of another size (COCO's rule).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import groupby
from typing import Any

import numpy as np

from utils.evaluation.voc import ImageDetections, ImageTruth, voc_ap

T_F, T_B = 0.5, 0.1  # TIDE's foreground and background IoU
ERROR_TYPES = ("cls", "loc", "both", "dupl", "bkg", "miss")
FALSE_POSITIVE_TYPES = ERROR_TYPES[:5]
CLS, LOC, BOTH, DUPL, BKG = range(5)  # codes of Matching.error
SIZE_LIMITS = (32**2, 96**2)  # COCO's area limits
SIZES = {"small": (0.0, SIZE_LIMITS[0]), "medium": SIZE_LIMITS, "large": (SIZE_LIMITS[1], np.inf)}


@dataclass(frozen=True)
class Matching:
    """The devkit matching of a split and the TIDE type of each error.

    Detections ``[D]`` are in the devkit's order (class ascending, then score descending, ties in picture order);
    ground truth ``[G]`` in picture order. Boxes are 1-based pixels. Index -1 means "none".
    """

    det_image: np.ndarray  # int64 [D] picture index
    det_label: np.ndarray  # int64 [D]
    det_score: np.ndarray  # float64 [D]
    det_box: np.ndarray  # float64 [D, 4]
    det_index: np.ndarray  # int64 [D] position in the pictures' detections laid end to end
    target: np.ndarray  # int64 [D] the devkit's pick: highest-IoU object of the detection's class, difficult included
    target_iou: np.ndarray  # float64 [D] its IoU (-1 without an object of that class)
    tp: np.ndarray  # bool [D]
    ignored: np.ndarray  # bool [D] on a difficult object
    error: np.ndarray  # int64 [D] CLS..BKG for a false positive, -1 otherwise
    error_truth: np.ndarray  # int64 [D] the object the error involves (-1 for bkg)
    winner: np.ndarray  # bool [D] a cls/loc error that becomes a true positive when fixed
    gt_image: np.ndarray  # int64 [G]
    gt_label: np.ndarray  # int64 [G]
    gt_box: np.ndarray  # float64 [G, 4]
    gt_difficult: np.ndarray  # bool [G]
    gt_matched: np.ndarray  # bool [G] taken by a true positive
    gt_missed: np.ndarray  # bool [G] TIDE's miss
    pair_det: np.ndarray  # int64 [P] every (detection, object) pair of a picture: the detection
    pair_gt: np.ndarray  # int64 [P] the object
    pair_iou: np.ndarray  # float64 [P] their devkit IoU
    num_classes: int


def area(boxes: np.ndarray) -> np.ndarray:
    """Devkit area ``(x2 - x1 + 1) * (y2 - y1 + 1)`` of 1-based inclusive pixel boxes ``[N, 4]`` → ``[N]``."""
    return (boxes[:, 2] - boxes[:, 0] + 1.0) * (boxes[:, 3] - boxes[:, 1] + 1.0)


def pair_iou(boxes: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Devkit IoU of row-aligned boxes ``[P, 4]`` and ``[P, 4]`` → ``[P]``: ``devkit_iou``'s arithmetic in the same
    order, so every value is bit for bit the devkit's."""
    iw = np.minimum(gt[:, 2], boxes[:, 2]) - np.maximum(gt[:, 0], boxes[:, 0]) + 1.0
    ih = np.minimum(gt[:, 3], boxes[:, 3]) - np.maximum(gt[:, 1], boxes[:, 1]) + 1.0
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    return inter / (area(boxes) + area(gt) - inter)


def _cat(parts: list[Any], dtype: Any, width: int | None = None) -> np.ndarray:
    """Arrays laid end to end as ``dtype`` (rows of ``width`` when given); no parts give an empty array."""
    shape = (-1,) if width is None else (-1, width)
    empty = np.zeros((0,) if width is None else (0, width), dtype)
    return np.concatenate([np.asarray(p, dtype).reshape(shape) for p in parts] + [empty])


def _flatten(detections: Sequence[ImageDetections], truths: Sequence[ImageTruth], num_classes: int) -> tuple:
    """Detections and ground truth laid end to end in picture order, labels outside the classes dropped (as
    ``evaluate_voc`` never looks at them) → (image, label, score, box), position, (image, label, box, difficult)."""
    if len(detections) != len(truths):
        raise ValueError(f"{len(detections)} pictures of detections but {len(truths)} of ground truth")
    det_image = _cat([np.full(len(d.labels), i) for i, d in enumerate(detections)], np.int64)
    det_label = _cat([d.labels for d in detections], np.int64)
    det_score = _cat([d.scores for d in detections], np.float64)
    det_box = _cat([d.boxes for d in detections], np.float64, 4)
    gt_image = _cat([np.full(len(t.labels), i) for i, t in enumerate(truths)], np.int64)
    gt_label = _cat([t.labels for t in truths], np.int64)
    gt_box = _cat([t.boxes for t in truths], np.float64, 4)
    gt_difficult = _cat([t.difficult for t in truths], bool)
    keep = np.flatnonzero((det_label >= 0) & (det_label < num_classes))
    mine = (gt_label >= 0) & (gt_label < num_classes)
    dets = (det_image[keep], det_label[keep], det_score[keep], det_box[keep])
    return dets, keep, (gt_image[mine], gt_label[mine], gt_box[mine], gt_difficult[mine])


def _pairs(det_image: np.ndarray, gt_image: np.ndarray, num_images: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (detection ``[D]``, object ``[G]``) pair of the same picture, grouped by detection → two ``[P]``."""
    gt_count = np.bincount(gt_image, minlength=num_images)
    gt_start = np.cumsum(gt_count) - gt_count  # ground truth is in picture order
    per_det = gt_count[det_image]
    seg_start = np.cumsum(per_det) - per_det
    pair_det = np.repeat(np.arange(len(det_image)), per_det)
    pair_gt = np.repeat(gt_start[det_image] - seg_start, per_det) + np.arange(len(pair_det))
    return pair_det, pair_gt


def _best_object(
    values: np.ndarray, pair_det: np.ndarray, pair_gt: np.ndarray, num_det: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per detection, the largest of its pairs' ``values [P]`` (< 0: not a candidate) and the object of the first
    pair holding it, as ``np.argmax`` picks → best ``[D]`` (-1 where none), object ``[D]`` (-1 where none)."""
    best = np.full(num_det, -1.0)
    starts = np.flatnonzero(np.r_[True, pair_det[1:] != pair_det[:-1]]) if len(pair_det) else np.zeros(0, np.int64)
    if len(starts):
        best[pair_det[starts]] = np.maximum.reduceat(values, starts)
    at = np.flatnonzero((values >= 0) & (values == best[pair_det]))
    first = at[np.r_[True, pair_det[at][1:] != pair_det[at][:-1]]] if len(at) else at
    gt = np.full(num_det, -1, np.int64)
    gt[pair_det[first]] = pair_gt[first]
    return np.where(gt >= 0, best, -1.0), gt


def _devkit_flags(target: np.ndarray, target_iou: np.ndarray, hard: np.ndarray) -> tuple[np.ndarray, ...]:
    """The devkit's verdicts from each detection's pick (detections ``[D]`` in the devkit's order): the first
    detection on a free object at IoU >= t_f is a true positive, any on a ``hard [G]`` (difficult) one is ignored.
    → tp ``[D]``, ignored ``[D]``, matched ``[G]`` (bool)."""
    hit = target_iou >= T_F
    on = np.where(hit, target, 0)
    ignored = hit & hard[on] if len(hard) else np.zeros(len(target), bool)
    candidates = np.flatnonzero(hit & ~ignored)
    _, first = np.unique(target[candidates], return_index=True)
    tp = np.zeros(len(target), bool)
    tp[candidates[first]] = True
    matched = np.zeros(len(hard), bool)
    matched[target[candidates[first]]] = True
    return tp, ignored, matched


def _classify(
    same: tuple[np.ndarray, np.ndarray], other: tuple[np.ndarray, np.ndarray], false_pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """TIDE's type of each false positive from its best (IoU ``[D]``, object ``[D]``) among non-difficult objects of
    its class (``same``) and of other classes (``other``) → error ``[D]`` (-1 if not a false positive), the object
    involved ``[D]``."""
    (s, s_gt), (o, o_gt) = same, other
    loc = (s >= T_B) & (s < T_F)
    cls = ~loc & (o >= T_F)
    dupl = ~loc & ~cls & (s >= T_F)
    bkg = ~loc & ~cls & ~dupl & (np.maximum(s, o) < T_B)
    error = np.select([loc, cls, dupl, bkg], [LOC, CLS, DUPL, BKG], BOTH)
    error = np.where(false_pos, error, -1)
    truth = np.select([error == LOC, error == CLS, error == DUPL, error == BOTH], [s_gt, o_gt, s_gt, o_gt], -1)
    return error, truth


def _fix_winners(
    error: np.ndarray, truth: np.ndarray, matched: np.ndarray, score: np.ndarray, index: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """TIDE's BestGTMatch: per free object, the highest-scoring cls or loc error pointing at it (ties: the earlier
    detection) → winner ``[D]`` bool, usable ``[G]`` bool (some cls/loc error points at it)."""
    fixable = np.flatnonzero((error == CLS) | (error == LOC))
    fixable = fixable[~matched[truth[fixable]]]
    order = fixable[np.lexsort((index[fixable], -score[fixable], truth[fixable]))]
    _, first = np.unique(truth[order], return_index=True)
    winner = np.zeros(len(error), bool)
    winner[order[first]] = True
    usable = np.zeros(len(matched), bool)
    usable[truth[fixable]] = True
    return winner, usable


def match_split(detections: Sequence[ImageDetections], truths: Sequence[ImageTruth], num_classes: int) -> Matching:
    """Match a split once, as the devkit does, and type its errors (see the module docstring)."""
    (image, label, score, box), index, (gt_image, gt_label, gt_box, gt_difficult) = _flatten(
        detections, truths, num_classes
    )
    order = np.lexsort((-score, label))  # evaluate_voc's order: per class, a stable sort by descending score
    image, label, score, box, index = image[order], label[order], score[order], box[order], index[order]
    pair_det, pair_gt = _pairs(image, gt_image, len(truths))
    ious = pair_iou(box[pair_det], gt_box[pair_gt])
    same_class = label[pair_det] == gt_label[pair_gt]
    easy = ~gt_difficult[pair_gt]
    num = len(label)
    target_iou, target = _best_object(np.where(same_class, ious, -1.0), pair_det, pair_gt, num)
    tp, ignored, matched = _devkit_flags(target, target_iou, gt_difficult)
    same = _best_object(np.where(same_class & easy, ious, -1.0), pair_det, pair_gt, num)
    other = _best_object(np.where(~same_class & easy, ious, -1.0), pair_det, pair_gt, num)
    error, truth = _classify(same, other, ~tp & ~ignored)
    winner, usable = _fix_winners(error, truth, matched, score, index)
    missed = ~gt_difficult & ~matched & ~usable
    return Matching(
        image, label, score, box, index, target, target_iou, tp, ignored, error, truth, winner,
        gt_image, gt_label, gt_box, gt_difficult, matched, missed, pair_det, pair_gt, ious, num_classes,
    )  # fmt: skip


# ----------------------------------------------------------------------------- AP from recorded flags
def class_aps(
    label: np.ndarray, tp: np.ndarray, fp: np.ndarray, npos: np.ndarray, valid: np.ndarray, use_07_metric: bool
) -> list[float | None]:
    """AP per class from flags ``tp, fp [K]`` of detections sorted by class ``label [K]`` then descending score, and
    positives ``npos [C]``: ``eval_class``'s arithmetic; None where not ``valid [C]``, 0 where no positive is left."""
    bounds = np.searchsorted(label, np.arange(len(npos) + 1))
    aps: list[float | None] = []
    for c in range(len(npos)):
        if not valid[c]:
            aps.append(None)
            continue
        if npos[c] == 0:
            aps.append(0.0)
            continue
        t = np.cumsum(tp[bounds[c] : bounds[c + 1]].astype(np.float64))
        f = np.cumsum(fp[bounds[c] : bounds[c + 1]].astype(np.float64))
        rec = t / int(npos[c])
        prec = t / np.maximum(t + f, np.finfo(np.float64).eps)
        aps.append(voc_ap(rec, prec, use_07_metric))
    return aps


def mean_ap(aps: Sequence[float | None]) -> float | None:
    """Mean over the classes with an AP, as ``evaluate_voc`` takes it."""
    valid = [ap for ap in aps if ap is not None]
    return float(np.mean(valid)) if valid else None


def _positives(m: Matching, hard: np.ndarray) -> np.ndarray:
    return np.bincount(m.gt_label[~hard], minlength=m.num_classes)


def base_aps(m: Matching, use_07_metric: bool) -> list[float | None]:
    """The devkit's AP per class (equal to ``evaluate_voc``'s)."""
    npos = _positives(m, m.gt_difficult)
    fp = ~m.tp & ~m.ignored
    return class_aps(m.det_label, m.tp, fp, npos, npos > 0, use_07_metric)


def oracle_aps(m: Matching, kind: str, use_07_metric: bool) -> list[float | None]:
    """AP per class with every error of type ``kind`` fixed by TIDE's oracle (see the module docstring)."""
    npos = _positives(m, m.gt_difficult)
    valid = npos > 0
    tp, fp, label, keep = m.tp.copy(), ~m.tp & ~m.ignored, m.det_label, np.ones(len(m.tp), bool)
    if kind == "miss":
        npos = npos - np.bincount(m.gt_label[m.gt_missed], minlength=m.num_classes)
        return class_aps(label, tp, fp, npos, valid, use_07_metric)
    code = FALSE_POSITIVE_TYPES.index(kind)
    mine = m.error == code
    keep &= ~mine | m.winner
    tp |= mine & m.winner
    fp &= ~(mine & m.winner)
    if kind == "cls":  # the fixed detections join their object's class, in its score order
        moved = np.flatnonzero(mine & m.winner)
        label = label.copy()
        label[moved] = m.gt_label[m.error_truth[moved]]
        order = np.lexsort((m.det_index, -m.det_score, label))
        keep, label, tp, fp = keep[order], label[order], tp[order], fp[order]
    return class_aps(label[keep], tp[keep], fp[keep], npos, valid, use_07_metric)


# ----------------------------------------------------------------------------- the three analyses
def tide_errors(m: Matching, class_names: Sequence[str], use_07_metric: bool) -> dict[str, Any]:
    """``{type: {"count", "delta_map", "per_class": {name: {"count", "delta_ap"}}}}`` for TIDE's six types."""
    base = base_aps(m, use_07_metric)
    base_map = mean_ap(base)
    out: dict[str, Any] = {}
    for kind in ERROR_TYPES:
        if kind == "miss":
            counts = np.bincount(m.gt_label[m.gt_missed], minlength=m.num_classes)
        else:
            counts = np.bincount(m.det_label[m.error == FALSE_POSITIVE_TYPES.index(kind)], minlength=m.num_classes)
        fixed = oracle_aps(m, kind, use_07_metric)
        fixed_map = mean_ap(fixed)
        out[kind] = {
            "count": int(counts.sum()),
            "delta_map": None if base_map is None or fixed_map is None else fixed_map - base_map,
            "per_class": {
                name: {"count": int(counts[c]), "delta_ap": None if base[c] is None else fixed[c] - base[c]}
                for c, name in enumerate(class_names)
            },
        }
    return out


def confusion(m: Matching, class_names: Sequence[str], score_thresh: float) -> dict[str, Any]:
    """Ground-truth class (+ background) × predicted class (+ missed) counts at IoU t_f for detections scoring at
    least ``score_thresh``: each, by descending score, takes the highest-IoU object not yet taken, of any class (a
    difficult one: the detection is ignored; difficult objects are never taken nor missed)."""
    num = m.num_classes
    counts = np.zeros((num + 1, num + 1), np.int64)
    chosen = m.det_score >= score_thresh
    rank = np.full(len(chosen), -1, np.int64)
    by_score = np.flatnonzero(chosen)[np.lexsort((m.det_index[chosen], -m.det_score[chosen]))]
    rank[by_score] = np.arange(len(by_score))
    near = np.flatnonzero((m.pair_iou >= T_F) & chosen[m.pair_det])
    near = near[np.lexsort((m.pair_gt[near], -m.pair_iou[near], rank[m.pair_det[near]]))]
    taken = np.zeros(len(m.gt_label), bool)
    outcome = np.full(len(chosen), -1, np.int64)  # object taken; -1 none (background); -2 ignored
    difficult = m.gt_difficult.tolist()
    pairs = zip(m.pair_det[near].tolist(), m.pair_gt[near].tolist())
    for det, group in groupby(pairs, key=lambda p: p[0]):  # greedy in score order: each pick depends on the last
        for _, gt in group:
            if difficult[gt]:
                outcome[det] = -2
                break
            if not taken[gt]:
                taken[gt], outcome[det] = True, gt
                break
    hit = chosen & (outcome >= 0)
    np.add.at(counts, (m.gt_label[outcome[hit]], m.det_label[hit]), 1)
    np.add.at(counts, (num, m.det_label[chosen & (outcome == -1)]), 1)
    np.add.at(counts, (m.gt_label[~taken & ~m.gt_difficult], num), 1)
    return {
        "score": float(score_thresh),
        "iou": T_F,
        "rows": [*class_names, "background"],
        "columns": [*class_names, "missed"],
        "counts": counts.tolist(),
    }


def ap_by_size(m: Matching, class_names: Sequence[str], use_07_metric: bool) -> dict[str, Any]:
    """``{"small"|"medium"|"large": {"mAP", "ap": {name: AP}}, "limits"}`` by COCO's area limits (module docstring)."""
    out: dict[str, Any] = {}
    gt_area, det_area = area(m.gt_box), area(m.det_box)
    for size, (low, high) in SIZES.items():
        hard = m.gt_difficult | (gt_area < low) | (gt_area >= high)
        tp, ignored, _ = _devkit_flags(m.target, m.target_iou, hard)
        fp = ~tp & ~ignored & (det_area >= low) & (det_area < high)
        npos = _positives(m, hard)
        aps = class_aps(m.det_label, tp, fp, npos, npos > 0, use_07_metric)
        out[size] = {"mAP": mean_ap(aps), "ap": dict(zip(class_names, aps))}
    out["limits"] = list(SIZE_LIMITS)
    return out


def analyse(
    detections: Sequence[ImageDetections],
    truths: Sequence[ImageTruth],
    class_names: Sequence[str],
    use_07_metric: bool = True,
    score_thresh: float = 0.3,
) -> dict[str, Any]:
    """TIDE errors, confusion matrix and AP by size of a split (pictures paired by position), JSON-ready:
    ``{"errors": ..., "confusion": ..., "ap_by_size": ...}`` (see the module docstring for the rules)."""
    m = match_split(detections, truths, len(class_names))
    return {
        "errors": tide_errors(m, class_names, use_07_metric),
        "confusion": confusion(m, class_names, score_thresh),
        "ap_by_size": ap_by_size(m, class_names, use_07_metric),
    }


def worst_cases(
    detections: Sequence[ImageDetections],
    truths: Sequence[ImageTruth],
    class_names: Sequence[str],
    limit: int = 8,
) -> list[dict[str, Any]]:
    """The highest-scoring false positives and the largest missed objects, ``limit`` in all (half each when both
    have enough), as JSON-ready dicts ``{"error", "image", "label", "score", "box", "truth_label", "truth_box"}``:
    boxes 1-based pixels; a miss has no detection (label, score, box None), a bkg error no object."""
    m = match_split(detections, truths, len(class_names))
    false_pos = np.flatnonzero(m.error >= 0)
    false_pos = false_pos[np.lexsort((m.det_index[false_pos], -m.det_score[false_pos]))]
    missed = np.flatnonzero(m.gt_missed)
    missed = missed[np.argsort(-area(m.gt_box[missed]), kind="stable")]
    num_missed = min(len(missed), max(limit // 2, limit - len(false_pos)))
    num_fp = min(len(false_pos), limit - num_missed)
    cases = [_case(m, FALSE_POSITIVE_TYPES[m.error[d]], int(d), int(m.error_truth[d])) for d in false_pos[:num_fp]]
    return cases + [_case(m, "miss", -1, int(g)) for g in missed[:num_missed]]


def _case(m: Matching, error: str, det: int, gt: int) -> dict[str, Any]:
    """One worst case as plain values: detection ``det`` and object ``gt`` (-1: none)."""
    return {
        "error": error,
        "image": int(m.det_image[det] if det >= 0 else m.gt_image[gt]),
        "label": int(m.det_label[det]) if det >= 0 else None,
        "score": float(m.det_score[det]) if det >= 0 else None,
        "box": m.det_box[det].tolist() if det >= 0 else None,
        "truth_label": int(m.gt_label[gt]) if gt >= 0 else None,
        "truth_box": m.gt_box[gt].tolist() if gt >= 0 else None,
    }
