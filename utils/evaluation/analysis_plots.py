"""Pictures of the error analysis (``utils.evaluation.analysis``): errors.png, confusion.png (matplotlib, imported
when drawing) and worst.jpg (OpenCV)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from utils.evaluation.analysis import ERROR_TYPES

TILE = 240  # side of a worst.jpg tile in pixels
CAPTION = 34  # height of a tile's caption strip
TRUTH_COLOUR, DETECTION_COLOUR = (0, 200, 0), (0, 0, 255)  # BGR


def draw_errors(analysis: Mapping[str, Any], path: str) -> None:
    """Bar chart of the mAP gained by fixing each TIDE error type alone, each bar labelled with its count."""
    from matplotlib.figure import Figure  # Figure needs no global backend

    errors = analysis["errors"]
    gains = [100.0 * (errors[kind]["delta_map"] or 0.0) for kind in ERROR_TYPES]
    fig = Figure(figsize=(7, 4), layout="constrained")
    ax = fig.add_subplot()
    bars = ax.bar(ERROR_TYPES, gains, color=["#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#7f7f7f", "#1f77b4"])
    ax.bar_label(bars, labels=[f"{errors[kind]['count']}" for kind in ERROR_TYPES], padding=2, fontsize="small")
    ax.set(ylabel="mAP gained, points", title="mAP gained by fixing each error type alone (count on each bar)")
    ax.set_ylim(0, max(gains + [1.0]) * 1.15)
    ax.grid(axis="y", alpha=0.3)
    fig.savefig(path, dpi=100)


def draw_confusion(analysis: Mapping[str, Any], path: str) -> None:
    """The confusion matrix normalised by row (ground-truth class), counts written in the cells when few classes."""
    from matplotlib.figure import Figure

    conf = analysis["confusion"]
    counts = np.asarray(conf["counts"], np.float64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    side = 3.0 + 0.35 * len(conf["rows"])
    fig = Figure(figsize=(side + 1.0, side), layout="constrained")
    ax = fig.add_subplot()
    image = ax.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="share of the row")
    ax.set_xticks(range(len(conf["columns"])), conf["columns"], rotation=90, fontsize="small")
    ax.set_yticks(range(len(conf["rows"])), conf["rows"], fontsize="small")
    ax.set(
        xlabel="predicted", ylabel="ground truth", title=f"confusion at score >= {conf['score']:g}, IoU {conf['iou']:g}"
    )
    if len(conf["rows"]) <= 30:
        for (r, c), n in np.ndenumerate(counts.astype(np.int64)):
            if n:
                ink = "white" if shares[r, c] > 0.5 else "black"
                ax.text(c, r, str(n), ha="center", va="center", fontsize="x-small", color=ink)
    fig.savefig(path, dpi=100)


def draw_worst(
    cases: Sequence[Mapping[str, Any]],
    pull_image: Callable[[int], np.ndarray],
    class_names: Sequence[str],
    path: str,
    columns: int = 4,
) -> None:
    """A grid of crops, one per case of ``analysis.worst_cases``: the object in green, the detection in red, and a
    caption with the error type, classes, score and the case's ``"picture"`` name (its position when it has none).
    ``pull_image(i)`` gives picture ``i`` as BGR ``[H, W, 3]``."""
    from utils.inspect_dataset import grid  # that tool imports torch: only this picture needs its grid

    tiles = [_case_tile(case, pull_image(int(case["image"])), class_names) for case in cases]
    if not tiles:
        tile = np.full((TILE + CAPTION, TILE, 3), 40, np.uint8)
        _text(tile, "no false positives or missed objects", (6, TILE // 2))
        tiles.append(tile)
    if not cv2.imwrite(path, grid(tiles, min(columns, len(tiles)))):
        raise OSError(f"could not write {path}")


def _case_tile(case: Mapping[str, Any], img: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    """``TILE + CAPTION`` x ``TILE`` picture: a crop around the case's boxes, scaled to fit, boxes and caption drawn."""
    boxes = [np.asarray(b, np.float64) - 1.0 for b in (case["truth_box"], case["box"]) if b is not None]  # 0-based
    union = np.concatenate([np.min([b[:2] for b in boxes], 0), np.max([b[2:] for b in boxes], 0)])
    margin = max(16.0, 0.25 * float((union[2:] - union[:2]).max()))
    height, width = img.shape[:2]
    x1, y1 = (int(np.clip(v - margin, 0, n - 1)) for v, n in zip(union[:2], (width, height)))
    x2, y2 = (int(np.clip(v + margin, 0, n - 1)) + 1 for v, n in zip(union[2:], (width, height)))
    x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
    crop = img[y1:y2, x1:x2]
    scale = TILE / max(crop.shape[:2])
    shown = cv2.resize(crop, (max(1, round(crop.shape[1] * scale)), max(1, round(crop.shape[0] * scale))))
    tile = np.full((TILE + CAPTION, TILE, 3), 40, np.uint8)
    tile[CAPTION : CAPTION + shown.shape[0], : shown.shape[1]] = shown
    origin = np.array([x1, y1, x1, y1], np.float64)
    for box, colour in ((case["truth_box"], TRUTH_COLOUR), (case["box"], DETECTION_COLOUR)):
        if box is not None:
            p = (np.asarray(box, np.float64) - 1.0 - origin) * scale + np.array([0, CAPTION, 0, CAPTION])
            cv2.rectangle(tile, (round(p[0]), round(p[1])), (round(p[2]), round(p[3])), colour, 2)
    top, bottom = _caption(case, class_names)
    _text(tile, top, (4, 14))
    _text(tile, bottom, (4, 29))
    return tile


def _caption(case: Mapping[str, Any], class_names: Sequence[str]) -> tuple[str, str]:
    """Two caption lines: the error and detection, then the object involved."""
    truth = class_names[case["truth_label"]] if case["truth_label"] is not None else None
    picture = case.get("picture", f"picture {case['image']}")  # eval.py adds the dataset's name of the picture
    if case["label"] is None:
        return f"miss: {truth}", f"{picture}, no detection"
    top = f"{case['error']}: {class_names[case['label']]} {case['score']:.2f}"
    return top, f"{picture}, " + (f"object: {truth}" if truth else "no object near")


def _text(img: np.ndarray, text: str, at: tuple[int, int]) -> None:
    cv2.putText(img, text, at, cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
