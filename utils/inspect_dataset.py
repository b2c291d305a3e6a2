"""Know your data: counts, box statistics, pictures, and how well a prior config covers the ground truth.

    python -m utils.inspect_dataset --dataset VOC --dataset_root DIR --image_sets 2007:trainval \\
        [--classes FILE] [--size 300] [--prior_config FILE] --save_folder DIR [--augment] [--suggest]

The dataset is read through the training dataset classes (VOC: every object, difficult ones included), so a
picture training would skip is listed here with the reason. Written to ``--save_folder``:
- ``summary.json`` (also printed as a table): pictures, objects and difficult objects per class, skipped pictures,
  box statistics and ``prior_fit``: the share of the objects training matches (non-difficult) whose best prior
  has IoU >= 0.5, overall, per class and per COCO size bucket (measured in the network's input pixels);
- ``boxes.png``: histograms of box width, height, aspect ratio and scale, relative and in the network's pixels;
- ``gallery.jpg``: seeded pictures with their ground truth (difficult boxes dashed), with ``--augment`` beside
  the same pictures after the training augmentation;
- ``prior_fit.jpg``: the worst-covered objects (green) with their best prior (red), in the network's frame;
- with ``--suggest``: ``suggested_prior_config.json`` (for ``--prior_config``) fitted to the data's box sizes and
  shapes, and ``summary.json["suggest"]`` with the fit before and after.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from data import COCO_ROOT, VOC_ROOT, VOCAnnotationTransform, get_config
from data.common import targets_array
from data.config import ARCHITECTURES, DEFAULT_ARCHITECTURE, default_image_sets, get_architecture
from data.priors import load_prior_config, prior_config_dict, save_prior_config
from data.splits import open_split, split_class_names, split_parts
from data.transforms import Preprocessing
from layers import PriorBox, point_form
from layers.box_utils import batched_jaccard
from utils.augmentations import model_augmentation
from utils.cli import add_bool, fail, resolve_class_names, run_main
from utils.evaluation.analysis import SIZE_LIMITS

PROG = "inspect_dataset"
THRESHOLD = 0.5  # the matching threshold of training (MultiBoxLoss overlap_thresh)
TILE = 300  # side of a gallery tile in pixels
WORST = 12  # objects shown in prior_fit.jpg


class InspectError(Exception):
    """A problem the user can fix; ``main`` prints it as one line and exits 2."""


# ----------------------------------------------------------------------------------------------- reading


@dataclass
class Inventory:
    """Every readable picture's objects, as training sees them (relative boxes, clipped, empty ones dropped).

    ``refs[m]`` = (dataset part, index) of picture m; ``sizes`` [M, 2] (width, height) in pixels; per object:
    ``boxes`` [N, 4] float32 (x1, y1, x2, y2) relative, ``labels`` [N], ``difficult`` [N] bool, ``picture`` [N].
    """

    class_names: list[str]
    listed: int = 0
    refs: list[tuple[int, int]] = field(default_factory=list)
    sizes: np.ndarray = field(default_factory=lambda: np.zeros((0, 2), np.int64))
    boxes: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    difficult: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    picture: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    skipped: list[dict[str, str]] = field(default_factory=list)


def open_datasets(args: argparse.Namespace) -> tuple[list[Any], list[str]]:
    """The dataset parts (one per COCO split; one VOCDetection for all VOC sets) and the class names, read as for
    scoring: every object, difficult ones included."""
    names = resolve_class_names(args.classes, dataset="VOC")[0] if args.dataset == "VOC" else None
    try:
        split = open_split(args.dataset, args.dataset_root, args.image_sets, class_names=names, validation=True)
    except (OSError, ValueError) as err:
        raise InspectError(str(err)) from err
    return split_parts(split), split_class_names(split)


def _sample_file(part: Any, index: int) -> str:
    if hasattr(part, "coco"):
        return str(Path(part.image_dir, part.coco.imgs[part.ids[index]]["file_name"]))
    year_root, image_id = part.ids[index]
    return os.path.join(year_root, "Annotations", f"{image_id}.xml")


def _difficult_flags(part: Any, index: int, target: np.ndarray, width: int, height: int) -> np.ndarray:
    """Which rows of ``target`` (read with keep_difficult) are difficult: bool [n]. COCO has none.

    The rows without the difficult objects are a subsequence of all rows (the same transform drops them), so a
    walk through both marks the rest.
    """
    flags = np.zeros(len(target), dtype=bool)
    transform = getattr(part, "target_transform", None)
    if not isinstance(transform, VOCAnnotationTransform):
        return flags
    anno = part.annotation(index)  # already parsed by pull_item
    easy_transform = VOCAnnotationTransform(transform.class_to_ind, keep_difficult=False)
    easy = targets_array(easy_transform(anno.objects, width, height, source=anno.path))
    j = 0
    for k, row in enumerate(target):
        if j < len(easy) and np.array_equal(row, easy[j]):
            j += 1
        else:
            flags[k] = True
    return flags


def read_inventory(parts: Sequence[Any], class_names: list[str]) -> Inventory:
    """Read every picture of every part with ``pull_item`` (which raises on bad input: recorded in ``skipped``)."""
    from tqdm import tqdm

    inv = Inventory(class_names, listed=sum(len(part) for part in parts))
    sizes, boxes, labels, difficult, picture = [], [], [], [], []
    progress = tqdm(total=inv.listed, desc="reading", unit="img", disable=None, file=sys.stderr)
    for p, part in enumerate(parts):
        for index in range(len(part)):
            progress.update()
            try:
                _, target, height, width = part.pull_item(index)
                flags = _difficult_flags(part, index, target, width, height)
            except (FileNotFoundError, ValueError) as err:
                inv.skipped.append({"file": _sample_file(part, index), "reason": " ".join(str(err).split())})
                continue
            picture.append(np.full(len(target), len(inv.refs)))
            inv.refs.append((p, index))
            sizes.append((width, height))
            boxes.append(target[:, :4])
            labels.append(target[:, 4].astype(np.int64))
            difficult.append(flags)
    progress.close()
    if inv.refs:
        inv.sizes = np.asarray(sizes, dtype=np.int64)
        inv.boxes = np.concatenate(boxes).astype(np.float32)
        inv.labels, inv.difficult = np.concatenate(labels), np.concatenate(difficult)
        inv.picture = np.concatenate(picture).astype(np.int64)
    return inv


# ----------------------------------------------------------------------------------------------- statistics


def _share(hits: np.ndarray) -> float | None:
    return round(float(hits.mean()), 4) if hits.size else None


def _quantiles(values: np.ndarray) -> dict[str, float] | None:
    if not values.size:
        return None
    levels = (0, 5, 25, 50, 75, 95, 100)
    return {f"p{q}": round(float(v), 4) for q, v in zip(levels, np.percentile(values, levels))}


def box_shapes(boxes: np.ndarray, size: int) -> dict[str, np.ndarray]:
    """Relative width/height, network-pixel width/height/scale sqrt(w*h) and aspect w/h of boxes [N, 4]."""
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return {
        "width_rel": w,
        "height_rel": h,
        "width_px": w * size,
        "height_px": h * size,
        "scale_px": np.sqrt(w * h) * size,
        "aspect": w / np.maximum(h, 1e-9),
    }


def count_summary(inv: Inventory, size: int) -> dict[str, Any]:
    """Pictures, objects and difficult objects per class, skipped pictures, picture sizes and box quantiles."""
    per_class = np.bincount(inv.labels, minlength=len(inv.class_names))
    hard = np.bincount(inv.labels[inv.difficult], minlength=len(inv.class_names))
    with_objects = np.unique(inv.picture).size
    return {
        "pictures": len(inv.refs),
        "pictures_listed": inv.listed,
        "pictures_without_objects": len(inv.refs) - with_objects,
        "objects": int(inv.labels.size),
        "objects_per_class": {name: int(n) for name, n in zip(inv.class_names, per_class)},
        "difficult": {
            "total": int(inv.difficult.sum()),
            "per_class": {name: int(n) for name, n in zip(inv.class_names, hard)},
        },
        "pictures_skipped": len(inv.skipped),
        "skipped": inv.skipped,
        "picture_size": {"width": _quantiles(inv.sizes[:, 0]), "height": _quantiles(inv.sizes[:, 1])},
        "boxes": {
            "note": "relative to the picture; _px in the network's input pixels (picture resized to size x size)",
            **{key: _quantiles(values) for key, values in box_shapes(inv.boxes, size).items()},
        },
    }


# ----------------------------------------------------------------------------------------------- prior fit


def best_priors(truths: Tensor, priors: Tensor, chunk: int = 512) -> tuple[Tensor, Tensor, Tensor]:
    """Each truth's best prior by IoU, and how many priors reach the threshold.

    Args:
        truths (Tensor[N, 4]): point form, relative. priors (Tensor[P, 4]): center-size form, as PriorBox gives.
    Returns:
        best IoU (Tensor[N]), best prior index (Tensor[N] int64), priors with IoU >= THRESHOLD (Tensor[N] int64).
    """
    corners = point_form(priors)
    best, index, positives = [], [], []
    for start in range(0, truths.shape[0], chunk):  # chunks keep the [n, P] IoU matrix small
        iou = batched_jaccard(truths[None, start : start + chunk], corners)[0]  # in place: faster than jaccard
        value, arg = iou.max(dim=1)
        best.append(value)
        index.append(arg)
        positives.append((iou >= THRESHOLD).sum(dim=1))
    if not best:
        return torch.zeros(0), torch.zeros(0, dtype=torch.int64), torch.zeros(0, dtype=torch.int64)
    return torch.cat(best), torch.cat(index), torch.cat(positives)


def fit_share(boxes: np.ndarray, cfg: Mapping[str, Any]) -> float:
    """The share of boxes [N, 4] (relative point form) whose best prior of ``cfg`` has IoU >= THRESHOLD."""
    best, _, _ = best_priors(torch.from_numpy(boxes), PriorBox(cfg).forward())
    return float((best >= THRESHOLD).float().mean()) if best.numel() else 0.0


def size_buckets(boxes: np.ndarray, size: int) -> np.ndarray:
    """0 small, 1 medium, 2 large: COCO's area limits on the area in network pixels (relative area * size^2)."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) * size * size
    return np.digitize(area, SIZE_LIMITS)


@dataclass
class PriorFit:
    """The prior fit of the counted (non-difficult) objects: ``objects`` indexes into the inventory."""

    summary: dict[str, Any]
    objects: np.ndarray  # [n] inventory indices
    best_iou: np.ndarray  # [n]
    best_prior: np.ndarray  # [n] indices into priors
    priors: Tensor  # [P, 4] center-size


def prior_fit(inv: Inventory, cfg: Mapping[str, Any]) -> PriorFit:
    size = int(cfg["min_dim"])
    objects = np.flatnonzero(~inv.difficult)
    boxes, labels = inv.boxes[objects], inv.labels[objects]
    priors = PriorBox(cfg).forward()
    best, index, positives = (t.numpy() for t in best_priors(torch.from_numpy(boxes), priors))
    hit = best >= THRESHOLD
    per_class = {name: _share(hit[labels == k]) for k, name in enumerate(inv.class_names)}
    buckets = size_buckets(boxes, size)
    names = ("small", "medium", "large")
    per_size = {name: _share(hit[buckets == k]) for k, name in enumerate(names)}
    poor_classes = {name: share for name, share in per_class.items() if share is not None and share < 0.5}
    poor_sizes = {name: share for name, share in per_size.items() if share is not None and share < 0.5}
    summary = {
        "threshold": THRESHOLD,
        "counted": "non-difficult objects (those training matches)",
        "objects": int(objects.size),
        "priors": int(priors.shape[0]),
        "overall": _share(hit),
        "mean_best_iou": _share(best),
        "mean_positive_priors": _share(positives.astype(np.float64)),
        "per_class": per_class,
        "per_size": per_size,
        "objects_per_size": {name: int((buckets == k).sum()) for k, name in enumerate(names)},
        "size_rule": f"area in the network's input pixels (relative area x {size}^2): small < 32^2, "
        "medium < 96^2, large otherwise",
        "poorly_covered": {"classes": poor_classes, "sizes": poor_sizes},
    }
    return PriorFit(summary, objects, best, index, priors)


# ----------------------------------------------------------------------------------------------- suggestion


def _kmeans_1d(values: np.ndarray, k: int, iterations: int = 30) -> np.ndarray:
    """Cluster centres [<= k] of 1-D ``values``, started at quantiles."""
    centres = np.unique(np.quantile(values, (np.arange(k) + 0.5) / k))
    for _ in range(iterations):
        nearest = np.abs(values[:, None] - centres[None]).argmin(axis=1)
        centres = np.array([values[nearest == j].mean() for j in range(len(centres)) if (nearest == j).any()])
    return centres


def _nice_ratio(r: float) -> float | int:
    """A ratio as users write it: the classic 2 or 3 when within 10 %, else one decimal (whole numbers from 10)."""
    for classic in (2, 3):
        if abs(r / classic - 1) < 0.1:
            return classic
    value = round(r, 1) if r < 10 else round(r)
    return int(value) if value == int(value) else value


def ratio_candidates(aspect: np.ndarray, current: Sequence[Sequence[float]]) -> list[list[list[float]]]:
    """Aspect-ratio lists per map to try: the current ones, 1–3 clusters of the data's shapes, and current + one.

    A ratio r >= 1 gives the priors r:1 and 1:r, so the data's shapes are folded onto r = max(w/h, h/w).
    """
    n_maps = len(current)
    folded = np.abs(np.log(np.clip(aspect, 1e-3, 1e3)))
    candidates = [[list(r) for r in current]]
    for k in (1, 2, 3):
        ratios = sorted({_nice_ratio(math.exp(c)) for c in _kmeans_1d(folded, k) if math.exp(c) >= 1.25})
        candidates.append([list(ratios)] * n_maps)
        if k == 1 and ratios:
            candidates.append([sorted(set(r) | set(ratios)) for r in current])
    unique = []
    for cand in candidates:
        if cand not in unique:
            unique.append(cand)
    return unique


def size_candidates(scale: np.ndarray, cfg: Mapping[str, Any]) -> list[tuple[list[float], list[float]]]:
    """(min_sizes, max_sizes) to try: the current ones, and edges at quantiles or geometric steps of the data's
    scales sqrt(w*h) in network pixels (map k gets [edge k, edge k+1]; edges grow by at least 15 %)."""
    n_maps = len(cfg["feature_maps"])
    low, high = np.quantile(scale, (0.02, 0.98))
    quantile_edges = np.quantile(scale, np.linspace(0.02, 0.98, n_maps + 1))
    geometric_edges = np.geomspace(max(low, 1.0), max(high, low * 1.15**n_maps, 1.0), n_maps + 1)
    candidates = [(list(cfg["min_sizes"]), list(cfg["max_sizes"]))]
    for edges in (quantile_edges, geometric_edges):
        edges = np.maximum(edges, 1.0)
        for k in range(1, n_maps + 1):
            edges[k] = max(edges[k], edges[k - 1] * 1.15)
        edges = [round(float(e), 1) for e in edges]
        candidates.append((edges[:-1], edges[1:]))
    return candidates


def suggest_config(inv: Inventory, cfg: Mapping[str, Any], seed: int, sample: int = 2000) -> dict[str, Any]:
    """The candidate prior config with the best fit on (a seeded sample of) the non-difficult boxes.

    Candidates combine ``size_candidates`` and ``ratio_candidates``; among those within half a point of the best
    fit the one with the fewest priors wins (more priors cost time and add negatives).
    """
    boxes = inv.boxes[~inv.difficult]
    if len(boxes) > sample:
        boxes = boxes[np.random.default_rng(seed).choice(len(boxes), sample, replace=False)]
    shapes = box_shapes(boxes, int(cfg["min_dim"]))
    scored = []
    for min_sizes, max_sizes in size_candidates(shapes["scale_px"], cfg):
        for ratios in ratio_candidates(shapes["aspect"], cfg["aspect_ratios"]):
            candidate = {
                **cfg,
                "min_sizes": tuple(min_sizes),
                "max_sizes": tuple(max_sizes),
                "aspect_ratios": tuple(tuple(r) for r in ratios),
                "name": "custom",
            }
            priors = sum(f * f * (2 + 2 * len(r)) for f, r in zip(cfg["feature_maps"], ratios))
            scored.append((fit_share(boxes, candidate), priors, candidate))
    best_fit = max(fit for fit, _, _ in scored)
    return min((item for item in scored if item[0] >= best_fit - 0.005), key=lambda item: item[1])[2]


# ----------------------------------------------------------------------------------------------- pictures


def _colour(label: int) -> tuple[int, int, int]:
    hue = np.uint8([[[(label * 37) % 180, 220, 230]]])
    return tuple(int(c) for c in cv2.cvtColor(hue, cv2.COLOR_HSV2BGR)[0, 0])


def _dashed_rectangle(img: np.ndarray, p1: tuple[int, int], p2: tuple[int, int], colour: Any, dash: int = 6) -> None:
    (x1, y1), (x2, y2) = p1, p2
    for a, b in (((x1, y1), (x2, y1)), ((x2, y1), (x2, y2)), ((x2, y2), (x1, y2)), ((x1, y2), (x1, y1))):
        length = max(abs(b[0] - a[0]), abs(b[1] - a[1]))
        for s in range(0, length, 2 * dash):
            t0, t1 = s / max(length, 1), min(s + dash, length) / max(length, 1)
            q0 = (round(a[0] + (b[0] - a[0]) * t0), round(a[1] + (b[1] - a[1]) * t0))
            q1 = (round(a[0] + (b[0] - a[0]) * t1), round(a[1] + (b[1] - a[1]) * t1))
            cv2.line(img, q0, q1, colour, 2)


def _caption(img: np.ndarray, text: str, x: int, y: int, colour: Any = (255, 255, 255)) -> None:
    (w, h), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.4, 1)
    y = max(y, h + base)
    cv2.rectangle(img, (x, y - h - base), (x + w + 2, y), (0, 0, 0), -1)
    cv2.putText(img, text, (x + 1, y - base), cv2.FONT_HERSHEY_SIMPLEX, 0.4, colour, 1, cv2.LINE_AA)


def _letterbox(img: np.ndarray) -> tuple[np.ndarray, float]:
    """``img`` scaled to fit a TILE x TILE tile (top-left, dark border); returns the tile and the scale."""
    height, width = img.shape[:2]
    scale = TILE / max(width, height)
    shown = cv2.resize(img, (max(1, round(width * scale)), max(1, round(height * scale))))
    tile = np.full((TILE, TILE, 3), 40, np.uint8)
    tile[: shown.shape[0], : shown.shape[1]] = shown
    return tile, scale


def draw_tile(
    img: np.ndarray, boxes: np.ndarray, labels: np.ndarray, difficult: np.ndarray, names: Sequence[str], title: str
) -> np.ndarray:
    """A TILE x TILE picture (letterboxed) with boxes [n, 4] relative drawn: class colour, dashed when difficult."""
    tile, scale = _letterbox(img)
    frame = np.array([img.shape[1], img.shape[0]] * 2) * scale
    for box, label, hard in zip(boxes, labels, difficult):
        p1, p2 = _corners(box * frame)
        colour = _colour(int(label))
        if hard:
            _dashed_rectangle(tile, p1, p2, colour)
        else:
            cv2.rectangle(tile, p1, p2, colour, 2)
        _caption(tile, names[int(label)] + (" (difficult)" if hard else ""), p1[0], p1[1], colour)
    _caption(tile, title, 0, TILE - 2)
    return tile


def grid(tiles: Sequence[np.ndarray], columns: int, gap: int = 4) -> np.ndarray:
    """Tiles of one size in rows of ``columns``, on a dark background."""
    rows = max(1, math.ceil(len(tiles) / columns))
    th, tw = tiles[0].shape[:2]
    canvas = np.full((rows * (th + gap) + gap, columns * (tw + gap) + gap, 3), 20, np.uint8)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, columns)
        canvas[gap + r * (th + gap) : gap + r * (th + gap) + th, gap + c * (tw + gap) : gap + c * (tw + gap) + tw] = (
            tile
        )
    return canvas


def _picture(parts: Sequence[Any], inv: Inventory, m: int) -> tuple[np.ndarray, str]:
    p, index = inv.refs[m]
    image_id = parts[p].ids[index]
    return parts[p].pull_image(index), str(image_id[1] if isinstance(image_id, tuple) else image_id)


def draw_gallery(
    parts: Sequence[Any], inv: Inventory, count: int, seed: int, augment: bool, size: int, backbone: str = "vgg16"
) -> np.ndarray:
    """``count`` seeded pictures with ground truth; with ``augment`` each beside the output of the ``backbone``'s
    training augmentation (``utils.augmentations.model_augmentation``)."""
    chosen = np.sort(np.random.default_rng(seed).choice(len(inv.refs), min(count, len(inv.refs)), replace=False))
    pre = Preprocessing.of_architecture(get_architecture(backbone))
    augmentation = model_augmentation(backbone, size, pre, rng=seed) if augment else None
    tiles = []
    for m in chosen:
        img, name = _picture(parts, inv, int(m))
        mine = np.flatnonzero(inv.picture == m)
        labels, hard = inv.labels[mine], inv.difficult[mine]
        tiles.append(draw_tile(img, inv.boxes[mine], labels, hard, inv.class_names, name))
        if augmentation is not None:
            out, boxes, kept = augmentation(img, inv.boxes[mine], np.arange(len(mine)))
            out = np.clip(out * np.float32(pre.std) + np.float32(pre.mean), 0, 255).astype(np.uint8)
            kept = kept.astype(np.int64)
            tiles.append(draw_tile(out, boxes, labels[kept], hard[kept], inv.class_names, f"{name} augmented"))
    return grid(tiles, 4)


def draw_worst(parts: Sequence[Any], inv: Inventory, fit: PriorFit, size: int) -> np.ndarray:
    """The WORST lowest-IoU objects: ground truth (green) and best prior (red) in the network's frame, cropped."""
    tiles = []
    pad = size // 2  # priors may reach past the picture
    for k in np.argsort(fit.best_iou, kind="stable")[:WORST]:
        obj = int(fit.objects[k])
        img, name = _picture(parts, inv, int(inv.picture[obj]))
        frame = cv2.copyMakeBorder(cv2.resize(img, (size, size)), pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
        truth = inv.boxes[obj] * size + pad
        prior = point_form(fit.priors[int(fit.best_prior[k])]).numpy() * size + pad
        union = np.concatenate((np.minimum(truth[:2], prior[:2]), np.maximum(truth[2:], prior[2:])))
        margin = max(16.0, 0.3 * float((union[2:] - union[:2]).max()))
        x1, y1 = (max(0, int(v - margin)) for v in union[:2])
        x2, y2 = (min(size + 2 * pad, int(v + margin)) for v in union[2:])
        tile, scale = _letterbox(frame[y1:y2, x1:x2])
        origin = np.array([x1, y1, x1, y1])
        cv2.rectangle(tile, *_corners((truth - origin) * scale), (0, 220, 0), 2)
        cv2.rectangle(tile, *_corners((prior - origin) * scale), (0, 0, 255), 2)
        label = inv.class_names[int(inv.labels[obj])]
        _caption(tile, f"{label}: best prior IoU {fit.best_iou[k]:.2f}", 0, 14)
        _caption(tile, f"{name}  green: object, red: best prior", 0, TILE - 2)
        tiles.append(tile)
    if not tiles:
        tiles.append(np.full((TILE, TILE, 3), 40, np.uint8))
        _caption(tiles[0], "no objects to fit", 0, TILE // 2)
    return grid(tiles, 4)


def _corners(box: np.ndarray) -> tuple[tuple[int, int], tuple[int, int]]:
    return (int(round(box[0])), int(round(box[1]))), (int(round(box[2])), int(round(box[3])))


def plot_boxes(inv: Inventory, fit: PriorFit, cfg: Mapping[str, Any], path: str) -> None:
    """Histograms of box width, height, aspect and scale (relative and in network pixels) and of best-prior IoU."""
    from matplotlib.figure import Figure  # lazy: only this tool needs matplotlib; Figure needs no global backend

    size = int(cfg["min_dim"])
    shapes = box_shapes(inv.boxes, size)
    original = np.divide(
        shapes["width_rel"] * inv.sizes[inv.picture, 0],
        shapes["height_rel"] * inv.sizes[inv.picture, 1],
        out=np.ones_like(shapes["width_rel"]),
        where=shapes["height_rel"] > 0,
    )
    log_bins = np.geomspace(1 / 16, 16, 41)
    panels = [
        ("width (relative)", shapes["width_rel"], np.linspace(0, 1, 41), None),
        ("height (relative)", shapes["height_rel"], np.linspace(0, 1, 41), None),
        ("aspect w/h in the picture", original, log_bins, None),
        ("best prior IoU (non-difficult)", fit.best_iou, np.linspace(0, 1, 41), [THRESHOLD]),
        (f"width (pixels at {size})", shapes["width_px"], np.linspace(0, size, 41), None),
        (f"height (pixels at {size})", shapes["height_px"], np.linspace(0, size, 41), None),
        (
            f"aspect w/h at {size}x{size} (lines: prior ratios)",
            shapes["aspect"],
            log_bins,
            sorted({v for r in cfg["aspect_ratios"] for x in r for v in (x, 1 / x)} | {1.0}),
        ),
        (
            f"scale sqrt(w*h) (pixels at {size}; lines: min_sizes)",
            shapes["scale_px"],
            np.linspace(0, size, 41),
            list(cfg["min_sizes"]),
        ),
    ]
    fig = Figure(figsize=(16, 7))
    fig.subplots_adjust(left=0.04, right=0.99, bottom=0.05, top=0.9, wspace=0.2, hspace=0.3)
    for k, (title, values, bins, lines) in enumerate(panels):
        ax = fig.add_subplot(2, 4, k + 1)
        ax.hist(np.clip(values, bins[0], bins[-1]), bins=bins, color="tab:blue")
        if bins is log_bins:
            ax.set_xscale("log")
        for x in lines or []:
            ax.axvline(x, color="tab:red", lw=0.8)
        ax.set_title(title, fontsize=9)
    fig.suptitle(f"{inv.boxes.shape[0]} boxes in {len(inv.refs)} pictures")
    fig.savefig(path, dpi=80)


# ----------------------------------------------------------------------------------------------- report


def print_table(summary: Mapping[str, Any]) -> None:
    fit = summary["prior_fit"]
    names = list(summary["objects_per_class"])
    width = max([len("class"), *map(len, names)])
    print(f"{'class':<{width}}  {'objects':>8}  {'difficult':>9}  {'prior fit':>9}")
    for name in names:
        share = fit["per_class"][name]
        shown = "-" if share is None else f"{100 * share:.1f}%"
        difficult = summary["difficult"]["per_class"][name]
        print(f"{name:<{width}}  {summary['objects_per_class'][name]:>8}  {difficult:>9}  {shown:>9}")
    overall = "-" if fit["overall"] is None else f"{100 * fit['overall']:.1f}%"
    print(f"{'total':<{width}}  {summary['objects']:>8}  {summary['difficult']['total']:>9}  {overall:>9}")
    sizes = ", ".join(f"{k} {'-' if v is None else f'{100 * v:.1f}%'}" for k, v in fit["per_size"].items())
    print(f"pictures: {summary['pictures']} read, {summary['pictures_skipped']} skipped; prior fit by size: {sizes}")
    for item in summary["skipped"][:10]:
        print(f"skipped {item['file']}: {item['reason']}")
    suggest = summary.get("suggest", {})
    if "after" in suggest:
        print(f"suggested priors ({suggest['file']}): fit {suggest['before']} -> {suggest['after']}")


def suggestion(inv: Inventory, cfg: Mapping[str, Any], fit: PriorFit, path: Path, seed: int) -> dict[str, Any]:
    """Write the suggested prior config to ``path``; returns the fit before and after, and the config."""
    if not fit.objects.size:
        return {"skipped": "no non-difficult objects to fit priors to"}
    before = fit.summary["overall"]
    suggested = suggest_config(inv, cfg, seed)
    after = prior_fit(inv, suggested).summary["overall"]
    if after < before:  # the sample misled the choice: keep the config in use
        suggested, after = cfg, before
    save_prior_config(path, suggested)
    fields = prior_config_dict(suggested)
    return {
        "before": before,
        "after": after,
        "priors": {"before": fit.summary["priors"], "after": int(PriorBox(suggested).forward().shape[0])},
        "config": {key: fields[key] for key in ("min_sizes", "max_sizes", "aspect_ratios")},
        "file": str(path),
    }


def inspect(args: argparse.Namespace) -> dict[str, Any]:
    parts, class_names = open_datasets(args)
    base = get_config(args.dataset, args.size)
    try:
        cfg = load_prior_config(args.prior_config, args.size, base) if args.prior_config else dict(base)
    except (OSError, ValueError) as err:
        raise InspectError(str(err)) from err
    inv = read_inventory(parts, class_names)
    out = Path(args.save_folder)
    out.mkdir(parents=True, exist_ok=True)
    summary = {
        "dataset": args.dataset,
        "dataset_root": str(args.dataset_root),
        "image_sets": args.image_sets,
        "backbone": args.backbone,
        "size": args.size,
        "prior_config": {"name": cfg["name"], "file": args.prior_config, **prior_config_dict(cfg)},
        **count_summary(inv, args.size),
    }
    fit = prior_fit(inv, cfg)
    summary["prior_fit"] = fit.summary
    if args.suggest:
        summary["suggest"] = suggestion(inv, cfg, fit, out / "suggested_prior_config.json", args.seed)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n", encoding="utf-8")
    if inv.refs:
        plot_boxes(inv, fit, cfg, str(out / "boxes.png"))
        if args.num_gallery > 0:
            cv2.imwrite(
                str(out / "gallery.jpg"),
                draw_gallery(parts, inv, args.num_gallery, args.seed, args.augment, args.size, args.backbone),
            )
        cv2.imwrite(str(out / "prior_fit.jpg"), draw_worst(parts, inv, fit, args.size))
    return summary


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Inspect a detection dataset and the fit of a prior config.")
    p.add_argument("--dataset", default="VOC", type=str.upper, choices=["VOC", "COCO"], help="VOC or COCO layout")
    p.add_argument("--dataset_root", default=None, help=f"dataset root (default {VOC_ROOT} or {COCO_ROOT})")
    p.add_argument(
        "--image_sets",
        default=None,
        help="VOC: year:set pairs (default 2007:trainval,2012:trainval); COCO: splits (default train2014)",
    )
    p.add_argument("--classes", default=None, help="text file of class names, one per line (custom VOC dataset)")
    p.add_argument("--backbone", default=DEFAULT_ARCHITECTURE, choices=list(ARCHITECTURES), help="the model's backbone")
    p.add_argument("--size", default=None, type=int, help="input size: 300 (default) or 512 for vgg16, 320 for "
                                                          "mobilenet_v3_large (its priors)")  # fmt: skip
    p.add_argument("--prior_config", default=None, help="prior config JSON (default: the dataset's priors)")
    p.add_argument("--save_folder", default="inspect/", help="where summary.json and the pictures go")
    add_bool(p, "--augment", default=False, help="show each gallery picture after the training augmentation too")
    add_bool(p, "--suggest", default=False, help="propose a prior config fitted to the data")
    p.add_argument("--num_gallery", default=8, type=int, help="pictures in gallery.jpg (0: none)")
    p.add_argument("--seed", default=0, type=int, help="seed of the gallery's choice and augmentation")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Returns 0; a user error is one line on stderr and exit 2; no readable picture at all exits 1."""
    args = build_parser().parse_args(argv)
    return run_main(PROG, lambda: run(args), user_errors=(InspectError,))


def run(args: argparse.Namespace) -> int:
    if args.dataset_root is None:
        args.dataset_root = VOC_ROOT if args.dataset == "VOC" else COCO_ROOT
    if args.image_sets is None:
        args.image_sets = default_image_sets(args.dataset, "train")
    if args.classes and args.dataset == "COCO":
        raise InspectError("--classes applies to VOC-layout datasets; a COCO json names its own categories")
    if args.num_gallery < 0:
        raise InspectError(f"--num_gallery must be 0 or more, got {args.num_gallery}")
    sizes = get_architecture(args.backbone)["sizes"]
    args.size = get_architecture(args.backbone)["default_size"] if args.size is None else args.size
    if args.size not in sizes:
        raise InspectError(f"--size {args.size} does not fit --backbone {args.backbone}: expected "
                           f"{' or '.join(map(str, sizes))}")  # fmt: skip
    summary = inspect(args)
    print_table(summary)
    if not summary["pictures"]:
        fail(
            PROG,
            f"no readable picture among {summary['pictures_listed']}: see the reasons in "
            f"{Path(args.save_folder, 'summary.json')}",
            code=1,
        )
    print(f"wrote {args.save_folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
