"""Evaluate a trained SSD: VOC mAP by the official devkit's rules, or COCO AP with pycocotools.

    python eval.py --trained_model weights/ssd300_VOC_120000.pth --dataset_root ~/data/VOCdevkit --image_sets 2007:test
    python eval.py --dataset COCO --trained_model weights/ssd300_COCO_400000.pth --dataset_root ~/data/coco

VOC writes ``SAVE_FOLDER/results.json`` = ``{"mAP", "ap": {class: AP or null}, "metric": "voc07"|"voc10",
"num_images"}`` and ``pr_curves.png``; ``--write_devkit_files true`` also writes the per-class detection files in
the devkit's format (``results/comp4_det_{set}_{class}.txt``; ``--cleanup true`` removes them again). COCO writes the
detections in COCO result format and ``results.json`` = ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "metric":
"coco", "num_images"}``. The metric itself lives in ``utils.evaluation`` (see ``utils/evaluation/voc.py`` for the
devkit's matching rules), shared with validation during training.

``--analysis true`` (the default) adds why the score is what it is (``utils/evaluation/analysis.py``):
``results.json`` gains ``"errors"`` (TIDE's error types with the mAP each costs), ``"confusion"`` (at
``--analysis_score`` and IoU 0.5) and ``"ap_by_size"``, and ``errors.png``, ``confusion.png`` and ``worst.jpg`` are
written. On COCO-format data it reads pycocotools' boxes, scores VOC-style AP at IoU 0.5 by area (the AP50 of
the curve) with crowd regions ignored, and sizes objects by their box area (pycocotools' APs/APm/APl use the
annotation's ``area``, a mask area).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from data.config import COCO_ROOT, VOC_ROOT, default_image_sets
from data.splits import open_split, parse_image_sets, split_parts
from utils.checkpoint import load_model
from utils.cli import add_bool, add_device_flags, choose_device, run_main
from utils.evaluation.analysis import ERROR_TYPES, analyse, worst_cases
from utils.evaluation.analysis_plots import draw_confusion, draw_errors, draw_worst
from utils.evaluation.coco import coco_results, coco_truths, devkit_detections, evaluate_coco
from utils.evaluation.devkit import load_annotations, parse_rec, voc_eval, write_devkit_files
from utils.evaluation.plots import plot_pr_curves
from utils.evaluation.runner import EvalPictures, default_workers, run_inference, select_subset, to_devkit
from utils.evaluation.voc import ImageDetections, ImageTruth, devkit_iou, evaluate_voc, match_detections, voc_ap
from utils.training.state import atomic_write_text

PROG = "eval.py"
PICTURES = ("pr_curves.png", "errors.png", "confusion.png", "worst.jpg")  # what a run may draw in its save folder
# The classic helpers, importable from here as in ssd.pytorch.
__all__ = ["devkit_iou", "load_annotations", "main", "match_detections", "parse_rec", "voc_ap", "voc_eval"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Single Shot MultiBox Detector evaluation")
    p.add_argument("--trained_model", default=os.path.join("weights", "ssd300_mAP_77.43_v2.pth"))
    p.add_argument("--dataset", type=str.upper, choices=("VOC", "COCO"), default="VOC", help="dataset layout")
    p.add_argument(
        "--dataset_root", "--voc_root", "--coco_root", dest="dataset_root", default=None,
        help=f"the VOCdevkit or COCO folder (default {VOC_ROOT} or {COCO_ROOT})",
    )  # fmt: skip
    p.add_argument("--image_sets", default=None, help="VOC: year:set pairs (default 2007:test); COCO: splits (val2014)")
    p.add_argument("--year", default=None, help="VOC year (with --set_type: --image_sets YEAR:SET)")
    p.add_argument("--set_type", default=None, help="split: test (VOC) / val2014 (COCO); an alias of --image_sets")
    p.add_argument("--size", type=int, choices=(300, 320, 512), default=None, help="default: the checkpoint's")
    p.add_argument("--num_images", type=int, default=None, help="evaluate a seeded subset of this many pictures")
    p.add_argument("--confidence_threshold", type=float, default=None, help="default: the model's (0.01 for VGG16)")
    p.add_argument("--top_k", type=int, default=None, help="default: the model's (200 for VGG16)")
    p.add_argument("--nms_threshold", type=float, default=None, help="default: the model's (0.45 for VGG16)")
    add_device_flags(p, "auto", "DataLoader workers, or auto (from the CPUs)")
    p.add_argument("--save_folder", default="eval/")
    add_bool(p, "--write_devkit_files", default=False, help="also write the devkit's result files")
    add_bool(p, "--cleanup", default=False, help="remove the devkit result files after writing them")
    add_bool(p, "--use_07_metric", default=True, help="VOC07 11-point AP (false: area, VOC10+)")
    p.add_argument("--classes", default=None, help="text file with one class name per line")
    p.add_argument("--batch_size", type=int, default=8)
    add_bool(p, "--analysis", default=True, help="error analysis: TIDE errors, confusion, AP by size, worst cases")
    p.add_argument("--analysis_score", type=float, default=0.3, help="the confusion matrix's score threshold")
    return p


def check_flags(args: argparse.Namespace) -> None:
    """Reject flag values that would give an empty or wrong result, before any work."""
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top_k must be at least 1, got {args.top_k}")
    if args.num_images is not None and args.num_images < 1:
        raise ValueError(f"--num_images must be at least 1, got {args.num_images}")
    if args.confidence_threshold is not None and not 0.0 <= args.confidence_threshold <= 1.0:
        raise ValueError(f"--confidence_threshold must be in [0, 1], got {args.confidence_threshold}")
    if args.nms_threshold is not None and not 0.0 < args.nms_threshold <= 1.0:
        raise ValueError(f"--nms_threshold must be in (0, 1], got {args.nms_threshold}")
    if not 0.0 <= args.analysis_score <= 1.0:
        raise ValueError(f"--analysis_score must be in [0, 1], got {args.analysis_score}")
    if args.image_sets is not None and (args.year is not None or args.set_type is not None):
        raise ValueError("give the split either as --image_sets or as --year/--set_type, not both")


def image_sets(args: argparse.Namespace) -> str:
    """``--image_sets``, or its aliases ``--year Y --set_type S`` (VOC ``Y:S``; COCO the split ``S``)."""
    if args.image_sets is not None:
        return args.image_sets
    if args.year is None and args.set_type is None:
        return default_image_sets(args.dataset, "eval")
    if args.dataset == "COCO":
        return args.set_type or default_image_sets("COCO", "eval")
    year, name = default_image_sets("VOC", "eval").split(":")
    return f"{args.year or year}:{args.set_type or name}"


# ----------------------------------------------------------------------------- the run
def evaluate(args: argparse.Namespace) -> int:
    """Load the model, open the split, score it, write the results; returns the exit code."""
    check_flags(args)
    device = choose_device(args.cuda)
    root = args.dataset_root or (COCO_ROOT if args.dataset == "COCO" else VOC_ROOT)
    sets = image_sets(args)
    os.makedirs(args.save_folder, exist_ok=True)
    model = load_model(
        args.trained_model, args.dataset, args.size, args.classes, device=device,
        top_k=args.top_k, conf_thresh=args.confidence_threshold, nms_thresh=args.nms_threshold,
    )  # fmt: skip
    print(model.description)
    names = list(model.facts.class_names)
    split = open_split(args.dataset, root, sets, class_names=names, validation=True)
    score = score_coco if args.dataset == "COCO" else score_voc
    path = os.path.join(args.save_folder, "results.json")
    for name in (path, *(os.path.join(args.save_folder, picture) for picture in PICTURES)):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)  # a run cut short must not leave the previous run's results as if they were its own
    results = score(args, model, split, names, sets)
    if results is not None:
        atomic_write_text(path, json.dumps(results, indent=2))
        print(f"wrote {path}")
    return 0


def detect_split(
    args: argparse.Namespace, model: Any, split: Any, indices: Sequence[int], with_truth: bool, inclusive: bool
) -> tuple[list[Any], list[Any]]:
    """Detections (0-based pixels) and ground truth of the pictures ``indices`` of ``split``."""
    pictures = EvalPictures(split, indices, model.size, with_truth, model.preprocessing)
    workers = default_workers() if args.num_workers == "auto" else args.num_workers
    conf_thresh = model.detect.conf_thresh
    return run_inference(model, pictures, args.batch_size, workers, conf_thresh, inclusive, amp=args.amp or "none")


# ----------------------------------------------------------------------------- VOC
def score_voc(args: argparse.Namespace, model: Any, split: Any, names: Sequence[str], sets: str) -> dict[str, Any]:
    indices = select_subset(len(split), args.num_images)
    for index in indices:  # every annotation is read and validated before the long part starts
        split.pull_objects(int(index))
    dets, truths = detect_split(args, model, split, indices, with_truth=True, inclusive=True)
    dets = to_devkit(dets)
    result = evaluate_voc(dets, truths, names, args.use_07_metric)
    report_voc(result)
    metric = "voc07" if args.use_07_metric else "voc10"
    results = {"mAP": result.mean_ap, "ap": result.aps, "metric": metric, "num_images": len(indices)}
    figures = [("pr_curves.png", partial(plot_pr_curves, result.per_class))]
    if args.analysis:
        found = analyse_split(args, dets, truths, names, args.use_07_metric, split, indices)
        results.update(found)
        figures += analysis_figures(found)
    draw_figures(args.save_folder, figures)
    if args.write_devkit_files:
        image_ids = [split.ids[i][1] for i in indices]
        set_name = "+".join(name for _, name in parse_image_sets("VOC", sets))  # the classic comp4_det_test_*
        write_devkit_results(args, dets, image_ids, names, set_name)
    return results


def report_voc(result: Any) -> None:
    for name, ap in result.aps.items():
        print(f"AP for {name} = {ap:.4f}" if ap is not None else f"AP for {name} = null (no non-difficult objects)")
    mean_ap = result.mean_ap
    print(f"Mean AP = {mean_ap:.4f}" if mean_ap is not None else "Mean AP = null (no ground truth in the split)")


def analyse_split(
    args: argparse.Namespace,
    dets: Sequence[ImageDetections],
    truths: Sequence[ImageTruth],
    names: Sequence[str],
    use_07_metric: bool,
    split: Any,
    indices: Sequence[int],
) -> dict[str, Any]:
    """The error analysis of the pictures ``indices`` of ``split`` (``utils.evaluation.analysis``), scored as
    ``dets`` against ``truths``: ``{"errors", "confusion", "ap_by_size"}`` for results.json; writes worst.jpg."""
    found = analyse(dets, truths, names, use_07_metric, args.analysis_score)
    deltas = {kind: found["errors"][kind]["delta_map"] for kind in ERROR_TYPES}
    gains = "  ".join(f"{kind} " + ("n/a" if d is None else f"{d:.4f}") for kind, d in deltas.items())
    print(f"mAP gained by fixing each error type alone: {gains}")
    cases = worst_cases(dets, truths, names)  # "image": a position in dets, not a dataset index
    for case in cases:  # the caption names the picture as the dataset does: VOC file name, COCO image id
        case["picture"] = picture_name(split.ids[int(indices[case["image"]])])
    draw_worst(cases, lambda i: split.pull_image(int(indices[i])), names, os.path.join(args.save_folder, "worst.jpg"))
    return found


def picture_name(image_id: Any) -> str:
    """A dataset's id of a picture as a user knows it: ``(year folder, name)`` of VOC gives the name."""
    return str(image_id[1] if isinstance(image_id, tuple) else image_id)


def analysis_figures(found: dict[str, Any]) -> list[tuple[str, Callable[[str], None]]]:
    return [("errors.png", partial(draw_errors, found)), ("confusion.png", partial(draw_confusion, found))]


def draw_figures(folder: str, figures: Sequence[tuple[str, Callable[[str], None]]]) -> None:
    """Draw each ``(file name, draw(path))`` into ``folder``; without matplotlib one warning line names the ones
    not drawn."""
    skipped, reason = [], ""
    for name, draw in figures:
        try:
            draw(os.path.join(folder, name))
        except ImportError as err:  # matplotlib is optional: the numbers are the result
            skipped.append(name)
            reason = str(err)
    if skipped:
        print(f"{PROG}: warning: {', '.join(skipped)} not drawn ({reason})", file=sys.stderr)


def write_devkit_results(
    args: argparse.Namespace, dets: Sequence[Any], image_ids: Sequence[str], names: Sequence[str], set_name: str
) -> None:
    """The devkit's per-class files under ``SAVE_FOLDER/results``; removed again with ``--cleanup true``."""
    folder = os.path.join(args.save_folder, "results")
    paths = write_devkit_files(dets, image_ids, names, os.path.join(folder, f"comp4_det_{set_name}_{{}}.txt"))
    if not args.cleanup:
        print(f"wrote {len(paths)} devkit result files to {folder}")
        return
    for path in paths:
        os.remove(path)
    if not os.listdir(folder):
        os.rmdir(folder)


# ----------------------------------------------------------------------------- COCO
def score_coco(
    args: argparse.Namespace, model: Any, split: Any, names: Sequence[str], sets: str
) -> dict[str, Any] | None:
    parts = split_parts(split)
    if len(parts) != 1:
        raise ValueError(f"COCO evaluation scores one split at a time, got {sets!r}")
    dataset = parts[0]
    by_name = dict(zip(dataset.class_names, dataset.category_ids))
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown class(es) {', '.join(unknown)}: not categories of {dataset.root}/annotations")
    indices = select_subset(len(dataset), args.num_images)
    dets, _ = detect_split(args, model, dataset, indices, with_truth=False, inclusive=False)
    image_ids = [dataset.ids[i] for i in indices]
    results = coco_results(dets, image_ids, [by_name[n] for n in names])
    det_file = os.path.join(args.save_folder, f"detections_{dataset.image_set}_ssd{model.size}_results.json")
    atomic_write_text(det_file, json.dumps(results))
    print(f"wrote {len(results)} detections in COCO result format to {det_file}")
    if not dataset.has_ground_truth:
        print(f"{dataset.image_set} has no annotations (a test split?): submit {det_file} to the evaluation server")
        if args.analysis:
            print("error analysis skipped: the split has no ground truth")
        return None
    summary = evaluate_coco(dataset.coco, results, image_ids)
    print("  ".join(f"{k} = {v:.4f}" for k, v in summary.items()))
    scores = {**summary, "metric": "coco", "num_images": len(image_ids)}
    if args.analysis:  # VOC-style AP (area, IoU 0.5) on pycocotools' boxes, crowd regions ignored
        truths = coco_truths(dataset.coco, image_ids, {by_name[n]: k for k, n in enumerate(names)})
        found = analyse_split(args, devkit_detections(dets), truths, names, False, dataset, indices)
        scores.update(found)
        draw_figures(args.save_folder, analysis_figures(found))
    return scores


# ----------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    """Returns 0; a user error is one line on stderr and exit 2; Ctrl-C 130."""
    args = build_parser().parse_args(argv)
    return run_main(PROG, lambda: evaluate(args))


if __name__ == "__main__":
    raise SystemExit(main())
