"""The devkit's file formats: per-class detection files (``comp4_det_{set}_{class}.txt``) and the classic
``voc_eval`` helper that scores one of them against a split's XML annotations (cached)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from data.voc0712 import read_image_set, read_voc_xml, voc_objects
from utils.evaluation.voc import ClassResult, ImageDetections, eval_class
from utils.training.state import atomic_write_text

Annotations = dict[str, list[dict[str, Any]]]  # image id → objects {"name", "difficult", "bbox" 1-based}


def parse_rec(filename: str) -> list[dict[str, Any]]:
    """Objects of a VOC XML file: ``{"name", "difficult": bool, "bbox": [x1, y1, x2, y2]}`` in 1-based pixels."""
    return [
        {"name": name, "difficult": difficult, "bbox": list(box)}
        for name, box, difficult in voc_objects(read_voc_xml(filename), filename)
    ]


def annotation_cache_path(cachedir: str, annopath: str, imagesetfile: str, image_ids: Sequence[str]) -> str:
    """Cache file keyed by the dataset path, the split and the modification time and size of every file it
    summarises, so that an edited annotation or split is read again."""
    h = hashlib.sha1(f"{os.path.abspath(annopath)}|{os.path.abspath(imagesetfile)}".encode())
    for path in (imagesetfile, *(annopath.format(i) for i in image_ids)):
        try:
            st = os.stat(path)
            h.update(f"{path}|{st.st_mtime_ns}|{st.st_size}\n".encode())
        except OSError:
            h.update(f"{path}|missing\n".encode())
    name = os.path.splitext(os.path.basename(imagesetfile))[0]
    return os.path.join(cachedir, f"annots_{name}_{h.hexdigest()[:16]}.json")


def load_annotations(annopath: str, imagesetfile: str, cachedir: str) -> Annotations:
    """Objects of every image of the split, read from ``annopath.format(image_id)`` or the cache in ``cachedir``."""
    image_ids = read_image_set(imagesetfile)
    cache = annotation_cache_path(cachedir, annopath, imagesetfile, image_ids) if cachedir else ""
    if cache and os.path.isfile(cache):
        with open(cache, encoding="utf-8") as f:
            return json.load(f)
    annotations = {image_id: parse_rec(annopath.format(image_id)) for image_id in image_ids}
    if cache:
        os.makedirs(cachedir, exist_ok=True)
        atomic_write_text(cache, json.dumps(annotations))
    return annotations


def class_ground_truth(
    annotations: Annotations, image_ids: Sequence[str], classname: str
) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], int]:
    """Per image, the boxes ``[n, 4]`` and difficult flags of ``classname``; and the non-difficult count."""
    gt, npos = {}, 0
    for image_id in image_ids:
        objs = [o for o in annotations[image_id] if o["name"].lower() == classname.lower()]
        boxes = np.array([o["bbox"] for o in objs], dtype=np.float64).reshape(-1, 4)
        difficult = np.array([bool(o["difficult"]) for o in objs], dtype=bool)
        gt[image_id] = (boxes, difficult)
        npos += int((~difficult).sum())
    return gt, npos


def read_detections(path: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """A devkit detection file (``id score x1 y1 x2 y2`` per line) → ids ``[D]``, scores ``[D]``, boxes ``[D, 4]``."""
    with open(path, encoding="utf-8") as f:
        rows = [line.split() for line in f if line.strip()]
    ids = [r[0] for r in rows]
    scores = np.array([float(r[1]) for r in rows], dtype=np.float64)
    boxes = np.array([[float(v) for v in r[2:6]] for r in rows], dtype=np.float64).reshape(-1, 4)
    return ids, scores, boxes


def voc_eval(
    detpath: str,
    annopath: str,
    imagesetfile: str,
    classname: str,
    cachedir: str,
    ovthresh: float = 0.5,
    use_07_metric: bool = True,
    annotations: Annotations | None = None,
) -> ClassResult:
    """The classic helper: ``rec, prec, ap`` of one class with the devkit's rules.

    Args:
        detpath: ``detpath.format(classname)`` is the class's detection file (``id score x1 y1 x2 y2``, 1-based).
        annopath: ``annopath.format(image_id)`` is an image's XML annotation.
        imagesetfile: the split's list of image ids.
        cachedir: where the parsed annotations are cached ("" for no cache).
        annotations: already loaded annotations (skips the cache).
    Returns:
        recall ``[D]``, precision ``[D]`` (descending score order) and AP (None without non-difficult ground truth).
    """
    if annotations is None:
        annotations = load_annotations(annopath, imagesetfile, cachedir)
    image_ids = read_image_set(imagesetfile)
    gt, npos = class_ground_truth(annotations, image_ids, classname)
    ids, scores, boxes = read_detections(detpath.format(classname))
    return eval_class(ids, scores, boxes, gt, npos, ovthresh, use_07_metric)


def write_devkit_files(
    detections: Sequence[ImageDetections], image_ids: Sequence[str], names: Sequence[str], template: str
) -> list[str]:
    """One devkit file per class: ``id score x1 y1 x2 y2`` lines, boxes 1-based as given.

    Returns:
        the paths, in the order of ``names``: ``template.format(stem)``, where the stem is the class name (the
        devkit's file names) or, for a name holding characters a file name cannot (``/``, ``\\``, ``:`` ...),
        that name with them replaced by ``_``; a stem another class already has (ignoring case, as some disks
        do) gets ``_LABEL`` appended.
    """
    os.makedirs(os.path.dirname(template) or ".", exist_ok=True)
    paths = [template.format(stem) for stem in _file_stems(names)]
    for label, path in enumerate(paths):
        lines = []
        for image_id, dets in zip(image_ids, detections):
            keep = dets.labels == label
            for s, (x1, y1, x2, y2) in zip(dets.scores[keep], np.asarray(dets.boxes, np.float64)[keep]):
                lines.append(f"{image_id} {s:.6f} {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f}\n")
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(lines)
    return paths


_UNSAFE_IN_FILE_NAMES = re.compile(r'[/\\:*?"<>|\x00-\x1f\x7f]')


def _file_stems(names: Sequence[str]) -> list[str]:
    """Distinct file-name-safe stems for the class ``names`` (see :func:`write_devkit_files`)."""
    safe = [_UNSAFE_IN_FILE_NAMES.sub("_", name) for name in names]
    stems: dict[int, str] = {}
    taken: set[str] = set()
    # names that need no change claim their stem first: the devkit's file names stay as it expects them
    for label in sorted(range(len(names)), key=lambda k: safe[k] != names[k]):
        stem, suffix = safe[label], label
        while stem.casefold() in taken:
            stem, suffix = f"{safe[label]}_{suffix}", suffix + 1
        taken.add(stem.casefold())
        stems[label] = stem
    return [stems[label] for label in range(len(names))]
