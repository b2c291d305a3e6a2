"""Evaluate a trained SSD: VOC mAP by the official devkit's rules, or COCO AP with pycocotools.

    python eval.py --trained_model weights/ssd300_VOC_120000.pth --voc_root ~/data/VOCdevkit
    python eval.py --dataset COCO --trained_model weights/ssd300_COCO_400000.pth --coco_root ~/data/coco

VOC writes ``SAVE_FOLDER/results.json`` = ``{"mAP", "ap": {class: AP or null}, "metric": "voc07"|"voc10",
"num_images"}``, ``pr_curves.png`` and, unless ``--cleanup true`` (the default) removes them, the per-class
detection files in the devkit's format (``results/comp4_det_{set}_{class}.txt``). COCO writes the detections in
COCO result format and ``results.json`` = ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "metric": "coco",
"num_images"}``.

Matching follows the devkit (``VOCevaldet.m``), not the classic ssd.pytorch script: 1-based pixel coordinates
for ground truth and detections alike, IoU with +1 widths, and each detection (by descending score) takes the
single highest-IoU ground truth of its class in its image, difficult ones included: IoU >= 0.5 with a difficult
box is ignored, with an unmatched box is a true positive, anything else a false positive. Difficult boxes do not
count towards recall; a class without non-difficult ground truth gets a null AP and stays out of the mean.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from data.common import read_image
from data.config import COCO_ROOT, MEANS, VOC_ROOT
from data.transforms import preprocess
from utils.checkpoint import CheckpointError, describe_state_dict, model_from_state_dict, read_checkpoint
from utils.cli import dataset_class_names, fail, read_class_names, str2bool
from utils.inference import DetectionArrays, choose_device, detect_batch

PROG = "eval.py"
Annotations = dict[str, list[dict[str, Any]]]  # image id → objects {"name", "difficult", "bbox" 1-based}


# ----------------------------------------------------------------------------- VOC devkit metric
def voc_ap(rec: np.ndarray, prec: np.ndarray, use_07_metric: bool = True) -> float:
    """Average precision from a precision/recall curve (detections in descending score order).

    VOC07: the mean over the 11 recalls ``np.arange(0., 1.1, 0.1)`` of the best precision at recall >= t (0 when
    the recall never reaches t). VOC2010+: the area under the curve made monotonically decreasing.
    """
    rec, prec = np.asarray(rec, dtype=np.float64), np.asarray(prec, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            reached = rec >= t
            ap += (prec[reached].max() if reached.any() else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # precision envelope
    i = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[i + 1] - mrec[i]) * mpre[i + 1]))


def devkit_iou(box: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """IoU of one box ``[4]`` with boxes ``[n, 4]`` (inclusive 1-based pixels: width = x2 - x1 + 1) → ``[n]``."""
    iw = np.minimum(gt[:, 2], box[2]) - np.maximum(gt[:, 0], box[0]) + 1.0
    ih = np.minimum(gt[:, 3], box[3]) - np.maximum(gt[:, 1], box[1]) + 1.0
    inter = np.where((iw > 0) & (ih > 0), iw * ih, 0.0)
    area_box = (box[2] - box[0] + 1.0) * (box[3] - box[1] + 1.0)
    area_gt = (gt[:, 2] - gt[:, 0] + 1.0) * (gt[:, 3] - gt[:, 1] + 1.0)
    return inter / (area_box + area_gt - inter)


def match_detections(
    image_ids: Sequence[str],
    boxes: np.ndarray,
    gt: Mapping[str, tuple[np.ndarray, np.ndarray]],
    ovthresh: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Devkit matching of one class's detections, already in descending score order.

    Args:
        image_ids: image of each detection ``[D]``; boxes: ``[D, 4]`` 1-based pixels.
        gt: image id → (ground-truth boxes ``[n, 4]`` 1-based, difficult flags ``[n]`` bool) of this class.
    Returns:
        tp, fp: float ``[D]`` 0/1 flags (both 0 for a detection ignored on a difficult box).
    """
    tp, fp = np.zeros(len(image_ids)), np.zeros(len(image_ids))
    matched = {image_id: np.zeros(len(difficult), dtype=bool) for image_id, (_, difficult) in gt.items()}
    for d, image_id in enumerate(image_ids):
        if image_id not in gt:
            raise ValueError(f"detection for image {image_id!r}, which is not in the image set")
        gt_boxes, difficult = gt[image_id]
        overlaps = devkit_iou(boxes[d], gt_boxes) if len(gt_boxes) else np.zeros(0)
        j = int(np.argmax(overlaps)) if len(overlaps) else -1
        if j < 0 or overlaps[j] < ovthresh:
            fp[d] = 1.0
        elif difficult[j]:
            continue
        elif not matched[image_id][j]:
            tp[d], matched[image_id][j] = 1.0, True
        else:
            fp[d] = 1.0
    return tp, fp


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


def eval_class(
    image_ids: Sequence[str],
    scores: np.ndarray,
    boxes: np.ndarray,
    gt: Mapping[str, tuple[np.ndarray, np.ndarray]],
    npos: int,
    ovthresh: float = 0.5,
    use_07_metric: bool = True,
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """Recall ``[D]``, precision ``[D]`` and AP of one class's detections (any order); AP is None when npos is 0."""
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp, fp = match_detections([image_ids[i] for i in order], np.asarray(boxes, np.float64)[order], gt, ovthresh)
    tp, fp = np.cumsum(tp), np.cumsum(fp)
    if npos == 0:
        return np.zeros_like(tp), np.zeros_like(tp), None
    rec = tp / npos
    prec = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
    return rec, prec, voc_ap(rec, prec, use_07_metric)


def parse_rec(filename: str) -> list[dict[str, Any]]:
    """Objects of a VOC XML file: ``{"name", "difficult": bool, "bbox": [x1, y1, x2, y2]}`` in 1-based pixels."""
    try:
        root = ET.parse(filename).getroot()
    except (ET.ParseError, OSError) as exc:
        raise ValueError(f"cannot read annotation {filename}: {exc}") from exc
    objects = []
    for obj in root.iter("object"):
        bb = obj.find("bndbox")
        name = obj.findtext("name")
        if bb is None or name is None:
            raise ValueError(f"annotation {filename}: an object lacks <name> or <bndbox>")
        coords = [bb.findtext(k) for k in ("xmin", "ymin", "xmax", "ymax")]
        if any(c is None for c in coords):
            raise ValueError(f"annotation {filename}: object {name!r} lacks a box coordinate")
        difficult = obj.findtext("difficult")
        objects.append(
            {
                "name": name.strip(),
                "difficult": bool(int(float(difficult))) if difficult else False,
                "bbox": [float(c) for c in coords],
            }
        )
    return objects


def read_image_set(imagesetfile: str) -> list[str]:
    with open(imagesetfile, encoding="utf-8") as f:
        return [line.split()[0] for line in f if line.strip()]


def annotation_cache_path(cachedir: str, annopath: str, imagesetfile: str) -> str:
    """Cache file keyed by the dataset path and split (and the split file's mtime, so an edited split is re-read)."""
    key = f"{os.path.abspath(annopath)}|{os.path.abspath(imagesetfile)}|{os.path.getmtime(imagesetfile)}"
    digest = hashlib.sha1(key.encode()).hexdigest()[:12]
    name = os.path.splitext(os.path.basename(imagesetfile))[0]
    return os.path.join(cachedir, f"annots_{name}_{digest}.json")


def load_annotations(annopath: str, imagesetfile: str, cachedir: str) -> Annotations:
    """Objects of every image of the split, read from ``annopath.format(image_id)`` or the cache in ``cachedir``."""
    cache = annotation_cache_path(cachedir, annopath, imagesetfile)
    if os.path.isfile(cache):
        with open(cache, encoding="utf-8") as f:
            return json.load(f)
    annotations = {image_id: parse_rec(annopath.format(image_id)) for image_id in read_image_set(imagesetfile)}
    os.makedirs(cachedir, exist_ok=True)
    tmp = f"{cache}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(annotations, f)
    os.replace(tmp, cache)
    return annotations


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
) -> tuple[np.ndarray, np.ndarray, float | None]:
    """The classic helper: ``rec, prec, ap`` of one class with the devkit's rules.

    Args:
        detpath: ``detpath.format(classname)`` is the class's detection file (``id score x1 y1 x2 y2``, 1-based).
        annopath: ``annopath.format(image_id)`` is an image's XML annotation.
        imagesetfile: the split's list of image ids.
        cachedir: where the parsed annotations are cached (keyed by annopath and imagesetfile).
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


# ----------------------------------------------------------------------------- inference
class ImageFiles(Dataset):
    """Images read with OpenCV and preprocessed: item → ``(Tensor[3, size, size], (height, width))``."""

    def __init__(self, paths: Sequence[str], size: int, mean: Sequence[float] = MEANS) -> None:
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise ValueError(f"image not found: {missing[0]}{more}")
        self.paths, self.size, self.mean = list(paths), size, tuple(mean)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> tuple[Tensor, tuple[int, int]]:
        img = read_image(self.paths[index])
        return preprocess(img, self.size, mean=self.mean), (int(img.shape[0]), int(img.shape[1]))


def _collate(batch: list[tuple[Tensor, tuple[int, int]]]) -> tuple[Tensor, list[tuple[int, int]]]:
    return torch.stack([x for x, _ in batch]), [hw for _, hw in batch]


def run_inference(
    net: torch.nn.Module,
    dataset: ImageFiles,
    batch_size: int,
    num_workers: int,
    conf_thresh: float,
    inclusive: bool = True,
) -> list[DetectionArrays]:
    """Detections of every image of ``dataset`` in order (pixel boxes, see ``detections_to_arrays``)."""
    pin = next(net.parameters()).device.type == "cuda"
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=_collate, pin_memory=pin)
    results: list[DetectionArrays] = []
    start = time.perf_counter()
    with tqdm(total=len(dataset), unit="img", desc="detect") as bar:
        for x, sizes in loader:
            results += detect_batch(net, x, sizes, conf_thresh, inclusive)
            bar.update(len(sizes))
    elapsed = time.perf_counter() - start
    print(f"detected {len(results)} images in {elapsed:.1f} s ({len(results) / max(elapsed, 1e-9):.1f} img/s)")
    return results


# ----------------------------------------------------------------------------- VOC
def write_voc_results(
    detections: Sequence[DetectionArrays], image_ids: Sequence[str], names: Sequence[str], template: str
) -> list[str]:
    """One devkit file per class (``template.format(name)``): ``id score x1 y1 x2 y2`` with 1-based boxes."""
    os.makedirs(os.path.dirname(template) or ".", exist_ok=True)
    paths = []
    for label, name in enumerate(names):
        lines = []
        for image_id, dets in zip(image_ids, detections):
            keep = dets.labels == label
            for s, (x1, y1, x2, y2) in zip(dets.scores[keep], dets.boxes[keep].astype(np.float64) + 1.0):
                lines.append(f"{image_id} {s:.6f} {x1:.2f} {y1:.2f} {x2:.2f} {y2:.2f}\n")
        paths.append(template.format(name))
        with open(paths[-1], "w", encoding="utf-8") as f:
            f.writelines(lines)
    return paths


def check_classes(annotations: Annotations, names: Sequence[str], annopath: str) -> None:
    """Every annotated object must be one of the evaluated classes."""
    known = {n.lower() for n in names}  # as VOCAnnotationTransform, names match case-insensitively
    for image_id, objs in annotations.items():
        for obj in objs:
            if obj["name"].lower() not in known:
                raise ValueError(
                    f"unknown class {obj['name']!r} in {annopath.format(image_id)}: not among the {len(names)} "
                    "evaluated classes (pass the right --classes FILE)"
                )


def plot_pr_curves(curves: Mapping[str, tuple[np.ndarray, np.ndarray, float | None]], path: str) -> None:
    """One precision/recall curve per class (with its AP in the legend) to ``path``."""
    from matplotlib.figure import Figure  # lazy: matplotlib is only needed here; Figure needs no global backend

    fig = Figure(figsize=(9, 6), layout="constrained")
    ax = fig.add_subplot()
    for name, (rec, prec, ap) in curves.items():
        if ap is not None:
            ax.plot(np.concatenate(([0.0], rec)), np.concatenate(([1.0], prec)), label=f"{name} ({ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02), title="precision / recall per class")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    fig.savefig(path, dpi=100)


def voc_paths(voc_root: str, year: str, set_type: str) -> tuple[str, str, str]:
    """``(annopath template, imagesetfile, image path template)``; ValueError naming the root when missing."""
    devkit = os.path.join(voc_root, f"VOC{year}")
    imagesetfile = os.path.join(devkit, "ImageSets", "Main", f"{set_type}.txt")
    if not os.path.isdir(voc_root):
        raise ValueError(f"VOC root not found: {voc_root} (set --voc_root or SSD_DATA_ROOT)")
    if not os.path.isfile(imagesetfile):
        raise ValueError(f"VOC root {voc_root} has no VOC{year} split {set_type!r}: {imagesetfile} is missing")
    return (
        os.path.join(devkit, "Annotations", "{}.xml"),
        imagesetfile,
        os.path.join(devkit, "JPEGImages", "{}.jpg"),
    )


def evaluate_voc(args: argparse.Namespace) -> dict[str, Any]:
    set_type = args.set_type or "test"
    annopath, imagesetfile, imgpath = voc_paths(args.voc_root, args.year, set_type)
    choose_device(args.cuda)  # fail early on --cuda true without CUDA
    sd, meta = read_checkpoint(args.trained_model)
    names = class_names_for(args, sd, meta) or dataset_class_names("VOC")
    image_ids = read_image_set(imagesetfile)
    annotations = load_annotations(annopath, imagesetfile, os.path.join(args.save_folder, "annotations_cache"))
    check_classes(annotations, names, annopath)
    net = build_eval_model(args, sd, names)
    dataset = ImageFiles([imgpath.format(i) for i in image_ids], net.size)
    dets = run_inference(net, dataset, args.batch_size, args.num_workers, args.confidence_threshold)

    template = os.path.join(args.save_folder, "results", f"comp4_det_{set_type}_{{}}.txt")
    det_files = write_voc_results(dets, image_ids, names, template)
    curves = {
        name: voc_eval(template, annopath, imagesetfile, name, "", 0.5, args.use_07_metric, annotations)
        for name in names
    }
    aps = {name: ap for name, (_, _, ap) in curves.items()}
    for name, ap in aps.items():
        print(f"AP for {name} = {ap:.4f}" if ap is not None else f"AP for {name} = null (no non-difficult objects)")
    valid = [ap for ap in aps.values() if ap is not None]
    mean_ap = float(np.mean(valid)) if valid else None
    print(f"Mean AP = {mean_ap:.4f}" if mean_ap is not None else "Mean AP = null (no ground truth in the split)")
    plot_pr_curves(curves, os.path.join(args.save_folder, "pr_curves.png"))
    if args.cleanup:
        for path in det_files:
            os.remove(path)
        _remove_if_empty(os.path.dirname(template))
    metric = "voc07" if args.use_07_metric else "voc10"
    return {"mAP": mean_ap, "ap": aps, "metric": metric, "num_images": len(image_ids)}


def _remove_if_empty(folder: str) -> None:
    if os.path.isdir(folder) and not os.listdir(folder):
        os.rmdir(folder)


# ----------------------------------------------------------------------------- COCO
COCO_STATS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def coco_paths(coco_root: str, set_type: str) -> tuple[str, str]:
    """``(annotation file, image folder)``; ValueError naming the root when missing."""
    if not os.path.isdir(coco_root):
        raise ValueError(f"COCO root not found: {coco_root} (set --coco_root or SSD_DATA_ROOT)")
    ann_file = os.path.join(coco_root, "annotations", f"instances_{set_type}.json")
    if not os.path.isfile(ann_file):
        raise ValueError(f"COCO root {coco_root} has no split {set_type!r}: {ann_file} is missing")
    return ann_file, os.path.join(coco_root, "images", set_type)


def coco_results(
    detections: Sequence[DetectionArrays], image_ids: Sequence[int], category_ids: Sequence[int]
) -> list[dict[str, Any]]:
    """Detections in COCO result format: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``."""
    out = []
    for image_id, dets in zip(image_ids, detections):
        for label, score, (x1, y1, x2, y2) in zip(dets.labels, dets.scores, dets.boxes.astype(np.float64)):
            bbox = [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)]
            category = int(category_ids[label])
            out.append(
                {"image_id": int(image_id), "category_id": category, "bbox": bbox, "score": round(float(score), 5)}
            )
    return out


def evaluate_coco(args: argparse.Namespace) -> dict[str, Any] | None:
    from pycocotools.coco import COCO  # lazy: only COCO evaluation needs pycocotools
    from pycocotools.cocoeval import COCOeval

    set_type = args.set_type or "val2014"
    ann_file, image_dir = coco_paths(args.coco_root, set_type)
    choose_device(args.cuda)
    sd, meta = read_checkpoint(args.trained_model)
    coco = COCO(ann_file)
    cats = sorted(coco.loadCats(coco.getCatIds()), key=lambda c: c["id"])
    names = class_names_for(args, sd, meta) or [c["name"] for c in cats]
    by_name = {c["name"]: c["id"] for c in cats}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown class(es) {', '.join(unknown)}: not categories of {ann_file}")
    net = build_eval_model(args, sd, names)
    image_ids = sorted(coco.getImgIds())
    dataset = ImageFiles([os.path.join(image_dir, coco.imgs[i]["file_name"]) for i in image_ids], net.size)
    dets = run_inference(net, dataset, args.batch_size, args.num_workers, args.confidence_threshold, inclusive=False)
    results = coco_results(dets, image_ids, [by_name[n] for n in names])
    det_file = os.path.join(args.save_folder, f"detections_{set_type}_ssd{net.size}_results.json")
    with open(det_file, "w", encoding="utf-8") as f:
        json.dump(results, f)
    print(f"wrote {len(results)} detections in COCO result format to {det_file}")
    if not coco.getAnnIds():
        print(f"{ann_file} has no annotations (a test split?): submit {det_file} to the evaluation server")
        return None
    stats = np.zeros(len(COCO_STATS))
    if results:
        evaluator = COCOeval(coco, coco.loadRes(det_file), "bbox")
        evaluator.params.imgIds = image_ids
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
        stats = evaluator.stats[: len(COCO_STATS)]
    summary = {k: float(v) for k, v in zip(COCO_STATS, stats)}
    print("  ".join(f"{k} = {v:.4f}" for k, v in summary.items()))
    return {**summary, "metric": "coco", "num_images": len(image_ids)}


# ----------------------------------------------------------------------------- main
def class_names_for(args: argparse.Namespace, sd: Mapping[str, Tensor], meta: Mapping[str, Any]) -> list[str] | None:
    """``--classes``, else the names a training checkpoint recorded (when their count fits); None: the dataset's."""
    if args.classes:
        return read_class_names(args.classes)
    recorded = meta.get("class_names")
    if isinstance(recorded, (list, tuple)) and len(recorded) == describe_state_dict(sd)[1] - 1:
        return [str(n) for n in recorded]
    return None


def build_eval_model(args: argparse.Namespace, sd: Mapping[str, Tensor], names: Sequence[str]) -> torch.nn.Module:
    """The test-phase SSD for ``names`` (+ background) loaded strictly from ``sd``, on the chosen device."""
    device = choose_device(args.cuda)
    detect_kwargs = {"top_k": args.top_k, "conf_thresh": args.confidence_threshold, "nms_thresh": args.nms_threshold}
    net = model_from_state_dict(sd, "test", args.size, len(names) + 1, source=args.trained_model, **detect_kwargs)
    return net.to(device)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Single Shot MultiBox Detector evaluation")
    p.add_argument("--trained_model", default=os.path.join("weights", "ssd300_mAP_77.43_v2.pth"))
    p.add_argument("--dataset", type=str.upper, choices=("VOC", "COCO"), default="VOC")
    p.add_argument("--voc_root", default=VOC_ROOT, help="the VOCdevkit folder")
    p.add_argument("--coco_root", default=COCO_ROOT)
    p.add_argument("--size", type=int, choices=(300, 512), default=None, help="default: the checkpoint's")
    p.add_argument("--set_type", default=None, help="split: test (VOC) / val2014 (COCO) by default")
    p.add_argument("--year", default="2007")
    p.add_argument("--confidence_threshold", type=float, default=0.01)
    p.add_argument("--top_k", type=int, default=200)
    p.add_argument("--nms_threshold", type=float, default=0.45)
    p.add_argument("--cuda", type=str2bool, default=None, help="true/false (default: CUDA if available)")
    p.add_argument("--save_folder", default="eval/")
    p.add_argument("--cleanup", type=str2bool, nargs="?", const=True, default=True, help="remove per-class files")
    p.add_argument("--use_07_metric", type=str2bool, default=True, help="VOC07 11-point AP (false: area, VOC10+)")
    p.add_argument("--classes", default=None, help="text file with one class name per line")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--num_workers", type=int, default=2)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        os.makedirs(args.save_folder, exist_ok=True)
        results = evaluate_coco(args) if args.dataset == "COCO" else evaluate_voc(args)
    except (CheckpointError, ValueError, OSError) as exc:
        fail(PROG, str(exc))
    if results is not None:
        path = os.path.join(args.save_folder, "results.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
