"""Evaluate a trained SSD: VOC mAP by the official devkit's rules, or COCO AP with pycocotools.

    python eval.py --trained_model weights/ssd300_VOC_120000.pth --dataset_root ~/data/VOCdevkit
    python eval.py --dataset COCO --trained_model weights/ssd300_COCO_400000.pth --dataset_root ~/data/coco

VOC writes ``SAVE_FOLDER/results.json`` = ``{"mAP", "ap": {class: AP or null}, "metric": "voc07"|"voc10",
"num_images"}`` and ``pr_curves.png``; ``--write_devkit_files true`` also writes the per-class detection files in
the devkit's format (``results/comp4_det_{set}_{class}.txt``; ``--cleanup`` removes them again). COCO writes the
detections in COCO result format and ``results.json`` = ``{"AP", "AP50", "AP75", "APs", "APm", "APl", "metric":
"coco", "num_images"}``. The metric itself lives in ``utils.evaluation`` (see ``utils/evaluation/voc.py`` for the
devkit's matching rules), shared with validation during training.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from data import VOCAnnotationTransform, VOCDetection
from data.config import COCO_ROOT, VOC_ROOT
from utils.checkpoint import CheckpointError, ModelFacts, model_from_facts, read_checkpoint, resolve_facts
from utils.cli import fail, str2bool
from utils.evaluation.coco import evaluate_coco
from utils.evaluation.devkit import load_annotations, parse_rec, voc_eval, write_devkit_files
from utils.evaluation.plots import plot_pr_curves
from utils.evaluation.runner import EvalPictures, default_workers, run_inference, select_subset, to_devkit
from utils.evaluation.voc import devkit_iou, evaluate_voc, match_detections, voc_ap
from utils.inference import choose_device, prepare_for_device

PROG = "eval.py"
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
    p.add_argument("--size", type=int, choices=(300, 512), default=None, help="default: the checkpoint's")
    p.add_argument("--set_type", default=None, help="split: test (VOC) / val2014 (COCO) by default")
    p.add_argument("--year", default="2007")
    p.add_argument("--num_images", type=int, default=None, help="evaluate a seeded subset of this many pictures")
    p.add_argument("--confidence_threshold", type=float, default=0.01)
    p.add_argument("--top_k", type=int, default=200)
    p.add_argument("--nms_threshold", type=float, default=0.45)
    p.add_argument("--cuda", type=str2bool, default=None, help="true/false (default: CUDA if available)")
    p.add_argument("--amp", choices=("none", "fp16", "bf16"), default="none", help="mixed precision on CUDA")
    p.add_argument("--save_folder", default="eval/")
    p.add_argument("--write_devkit_files", type=str2bool, default=False, help="also write the devkit's result files")
    p.add_argument("--cleanup", type=str2bool, nargs="?", const=True, default=True, help="remove the devkit files")
    p.add_argument("--use_07_metric", type=str2bool, default=True, help="VOC07 11-point AP (false: area, VOC10+)")
    p.add_argument("--classes", default=None, help="text file with one class name per line")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--num_workers", type=int, default=None, help="DataLoader workers (default: from the CPUs)")
    return p


def check_flags(args: argparse.Namespace) -> None:
    """Reject flag values that would give an empty or wrong result, before any work."""
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be at least 1, got {args.batch_size}")
    if args.top_k < 1:
        raise ValueError(f"--top_k must be at least 1, got {args.top_k}")
    if args.num_images is not None and args.num_images < 1:
        raise ValueError(f"--num_images must be at least 1, got {args.num_images}")
    if args.num_workers is not None and args.num_workers < 0:
        raise ValueError(f"--num_workers must be 0 or more, got {args.num_workers}")
    if not 0.0 <= args.confidence_threshold <= 1.0:
        raise ValueError(f"--confidence_threshold must be in [0, 1], got {args.confidence_threshold}")
    if not 0.0 < args.nms_threshold <= 1.0:
        raise ValueError(f"--nms_threshold must be in (0, 1], got {args.nms_threshold}")


# ----------------------------------------------------------------------------- model
def model_facts(args: argparse.Namespace, sd: Mapping[str, Tensor], meta: Mapping[str, Any]) -> ModelFacts:
    """The model the weights are run as: their sidecar's (or checkpoint's) facts, checked against the flags; for a
    bare ``.pth``, priors from ``--dataset``/``--size`` and classes from ``--classes`` or the dataset. Printed."""
    facts, line = resolve_facts(args.trained_model, sd, meta, args.dataset, args.size, args.classes)
    print(line)
    return facts


def build_eval_model(args: argparse.Namespace, facts: ModelFacts, sd: Mapping[str, Tensor]) -> torch.nn.Module:
    """The test-phase SSD of ``facts`` loaded strictly from ``sd``, on the chosen device."""
    device = choose_device(args.cuda)
    detect_kwargs = {"top_k": args.top_k, "conf_thresh": args.confidence_threshold, "nms_thresh": args.nms_threshold}
    return prepare_for_device(model_from_facts(facts, sd, "test", source=args.trained_model, **detect_kwargs), device)


# ----------------------------------------------------------------------------- VOC
def evaluate_voc_split(args: argparse.Namespace) -> dict[str, Any]:
    root = args.dataset_root or VOC_ROOT
    set_type = args.set_type or "test"
    if not os.path.isdir(root):
        raise ValueError(f"VOC root not found: {root} (set --dataset_root or SSD_DATA_ROOT)")
    choose_device(args.cuda)  # fail early on --cuda true without CUDA
    dataset = VOCDetection(root, [(args.year, set_type)], skip_bad=False)
    sd, meta = read_checkpoint(args.trained_model)
    facts = model_facts(args, sd, meta)
    names = list(facts.class_names)
    dataset.target_transform = VOCAnnotationTransform(class_to_ind=names, keep_difficult=True)
    indices = select_subset(len(dataset), args.num_images)
    for index in indices:  # every annotation is read and validated before the long part starts
        dataset.pull_objects(int(index))
    net = build_eval_model(args, facts, sd)
    pictures = EvalPictures(dataset, indices, net.size, with_truth=True)
    workers = default_workers() if args.num_workers is None else args.num_workers
    dets, truths = run_inference(net, pictures, args.batch_size, workers, args.confidence_threshold, amp=args.amp)
    dets = to_devkit(dets)
    result = evaluate_voc(dets, truths, names, args.use_07_metric)
    for name, ap in result.aps.items():
        print(f"AP for {name} = {ap:.4f}" if ap is not None else f"AP for {name} = null (no non-difficult objects)")
    mean_ap = result.mean_ap
    print(f"Mean AP = {mean_ap:.4f}" if mean_ap is not None else "Mean AP = null (no ground truth in the split)")
    try:
        plot_pr_curves(result.per_class, os.path.join(args.save_folder, "pr_curves.png"))
    except ImportError as err:  # matplotlib is optional: the numbers are the result
        print(f"{PROG}: warning: pr_curves.png not drawn ({err})", file=sys.stderr)
    if args.write_devkit_files:
        write_devkit_results(args, dets, [dataset.ids[i][1] for i in indices], names, set_type)
    metric = "voc07" if args.use_07_metric else "voc10"
    return {"mAP": mean_ap, "ap": result.aps, "metric": metric, "num_images": len(indices)}


def write_devkit_results(
    args: argparse.Namespace, dets: Sequence[Any], image_ids: Sequence[str], names: Sequence[str], set_type: str
) -> None:
    folder = os.path.join(args.save_folder, "results")
    paths = write_devkit_files(dets, image_ids, names, os.path.join(folder, f"comp4_det_{set_type}_{{}}.txt"))
    if not args.cleanup:
        print(f"wrote {len(paths)} devkit result files to {folder}")
        return
    for path in paths:
        os.remove(path)
    if not os.listdir(folder):
        os.rmdir(folder)


# ----------------------------------------------------------------------------- COCO
def evaluate_coco_split(args: argparse.Namespace) -> dict[str, Any] | None:
    from data import COCODetection
    from utils.evaluation.coco import coco_results

    root = args.dataset_root or COCO_ROOT
    set_type = args.set_type or "val2014"
    if not os.path.isdir(root):
        raise ValueError(f"COCO root not found: {root} (set --dataset_root or SSD_DATA_ROOT)")
    choose_device(args.cuda)
    dataset = COCODetection(root, image_set=set_type, skip_bad=False)
    sd, meta = read_checkpoint(args.trained_model)
    facts = model_facts(args, sd, meta)
    names = list(facts.class_names)
    by_name = dict(zip(dataset.class_names, dataset.category_ids))
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"unknown class(es) {', '.join(unknown)}: not categories of {root}/annotations")
    net = build_eval_model(args, facts, sd)
    indices = select_subset(len(dataset), args.num_images)
    pictures = EvalPictures(dataset, indices, net.size, with_truth=False)
    workers = default_workers() if args.num_workers is None else args.num_workers
    dets, _ = run_inference(
        net, pictures, args.batch_size, workers, args.confidence_threshold, inclusive=False, amp=args.amp
    )
    image_ids = [dataset.ids[i] for i in indices]
    results = coco_results(dets, image_ids, [by_name[n] for n in names])
    det_file = os.path.join(args.save_folder, f"detections_{set_type}_ssd{net.size}_results.json")
    with open(det_file, "w", encoding="utf-8") as f:
        json.dump(results, f)
    print(f"wrote {len(results)} detections in COCO result format to {det_file}")
    if not dataset.coco.getAnnIds():
        print(f"{set_type} has no annotations (a test split?): submit {det_file} to the evaluation server")
        return None
    summary = evaluate_coco(dataset.coco, results, image_ids)
    print("  ".join(f"{k} = {v:.4f}" for k, v in summary.items()))
    return {**summary, "metric": "coco", "num_images": len(image_ids)}


# ----------------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_flags(args)
        os.makedirs(args.save_folder, exist_ok=True)
        results = evaluate_coco_split(args) if args.dataset == "COCO" else evaluate_voc_split(args)
    except (CheckpointError, ValueError, OSError, ImportError) as exc:
        fail(PROG, str(exc))
    if results is not None:
        path = os.path.join(args.save_folder, "results.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
