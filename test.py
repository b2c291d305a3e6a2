"""Detect objects in pictures with a trained SSD; save annotated copies and the detections as JSON.

    python test.py --trained_model weights/ssd300_mAP_77.43_v2.pth --save_folder demo/ dog.jpg pictures/

The model runs as it was trained: size, prior config and class names come from the sidecar ``<stem>.json`` beside
the weights (or a full checkpoint); a bare classic ``.pth`` takes them from ``--dataset`` (default VOC),
``--size`` and ``--classes``. The script prints the model and class list it uses.

Writes ``SAVE_FOLDER/<image stem>_det.jpg`` per picture and ``SAVE_FOLDER/detections.json``:
``[{"image": path, "width": w, "height": h, "detections": [{"label", "score", "box": [x1, y1, x2, y2]}]}]`` with
the detections scoring at least ``--visual_threshold``, boxes in 0-based pixels clipped to the image.
A picture that cannot be read is skipped with one warning line; the others are still written, and the exit code
is 1. The same inference is a Python call: ``utils.inference.detect_images``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from torch import nn

from data.common import read_image
from data.voc0712 import IMAGE_EXTENSIONS
from utils.checkpoint import CheckpointError
from utils.cli import fail, str2bool
from utils.inference import Detection, detect_images, draw_detections, load_detector

PROG = "test.py"
DETECT_CONF_THRESH = 0.01  # the test-time Detect default; a lower --visual_threshold lowers it


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Single Shot MultiBox Detector: detect and draw")
    parser.add_argument("images", nargs="+", help="image files or folders of images")
    parser.add_argument("--trained_model", default=os.path.join("weights", "ssd300_mAP_77.43_v2.pth"))
    parser.add_argument("--size", type=int, choices=(300, 512), default=None, help="default: the weights'")
    parser.add_argument(
        "--dataset",
        type=str.upper,
        choices=("VOC", "COCO"),
        default=None,
        help="priors and class names for weights without a sidecar (default VOC)",
    )
    parser.add_argument("--classes", default=None, help="text file with one class name per line")
    parser.add_argument("--visual_threshold", type=float, default=0.6, help="draw and report scores >= this")
    parser.add_argument("--cuda", type=str2bool, default=None, help="true/false (default: use CUDA if available)")
    parser.add_argument("--save_folder", default="detections/", help="where annotated images and JSON go")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--top_k", type=int, default=200, help="detections kept per class before thresholding")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """ValueError for flag values no run could use."""
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be at least 1, got {args.batch_size}")
    if not 0.0 <= args.visual_threshold <= 1.0:
        raise ValueError(f"--visual_threshold must be in [0, 1], got {args.visual_threshold}")
    if args.top_k < 1:
        raise ValueError(f"--top_k must be at least 1, got {args.top_k}")


def collect_images(paths: Sequence[str]) -> list[str]:
    """Files named directly, plus the pictures (by extension, sorted) of each named folder."""
    extensions = tuple({ext.lower() for ext in IMAGE_EXTENSIONS})
    found: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.lower().endswith(extensions))
            if not names:
                raise ValueError(f"folder {path} holds no pictures ({', '.join(sorted(extensions))})")
            found += [os.path.join(path, n) for n in names]
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise ValueError(f"no such image file or folder: {path}")
    return found


def detection_record(path: str, img: np.ndarray, dets: list[Detection], names: Sequence[str]) -> dict[str, Any]:
    """One entry of detections.json."""
    h, w = img.shape[:2]
    return {
        "image": path,
        "width": int(w),
        "height": int(h),
        "detections": [{"label": names[c], "score": s, "box": box} for c, s, box in dets],
    }


def read_pictures(paths: Sequence[str]) -> tuple[list[str], list[np.ndarray], list[str]]:
    """``(paths read, BGR images, paths skipped)``; each skipped picture gets one warning line on stderr."""
    good, images, skipped = [], [], []
    for path in paths:
        try:
            images.append(read_image(path))
            good.append(path)
        except (OSError, ValueError) as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            print(f"{PROG}: warning: skipping {path}: {reason}", file=sys.stderr)
            skipped.append(path)
    return good, images, skipped


def detect_and_save(
    net: nn.Module, paths: Sequence[str], names: Sequence[str], args: argparse.Namespace
) -> tuple[list[dict[str, Any]], list[str]]:
    """Detect in every picture, write its annotated copy; returns the detections.json records and the skipped."""
    records, skipped = [], []
    for start in range(0, len(paths), args.batch_size):
        chunk, images, bad = read_pictures(paths[start : start + args.batch_size])
        skipped += bad
        for path, img, dets in zip(chunk, images, detect_images(net, images, args.visual_threshold, args.batch_size)):
            out = os.path.join(args.save_folder, f"{os.path.splitext(os.path.basename(path))[0]}_det.jpg")
            if not cv2.imwrite(out, draw_detections(img, dets, names)):
                raise OSError(f"cannot write {out}")
            records.append(detection_record(path, img, dets, names))
            print(f"{path}: {len(dets)} detection(s) >= {args.visual_threshold} -> {out}")
    return records, skipped


def run(args: argparse.Namespace) -> tuple[list[dict[str, Any]], list[str]]:
    """Detect on every picture of ``args.images``; write annotated copies and detections.json.

    Returns:
        the detections.json records and the paths skipped as unreadable.
    """
    paths = collect_images(args.images)
    net, facts, description = load_detector(
        args.trained_model,
        dataset=args.dataset,
        size=args.size,
        classes=args.classes,
        cuda=args.cuda,
        top_k=args.top_k,
        conf_thresh=min(DETECT_CONF_THRESH, args.visual_threshold),
    )
    print(description)
    os.makedirs(args.save_folder, exist_ok=True)
    records, skipped = detect_and_save(net, paths, facts.class_names, args)
    json_path = os.path.join(args.save_folder, "detections.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(records, f, indent=2)
    print(f"wrote {json_path}: {len(records)} picture(s), {len(skipped)} skipped as unreadable")
    return records, skipped


def main(argv: Sequence[str] | None = None) -> int:
    """Returns 0, or 1 when a picture was skipped; exits 2 with one line on stderr for a user error."""
    args = build_parser().parse_args(argv)
    try:
        check_args(args)
        _, skipped = run(args)
    except (CheckpointError, ValueError, OSError) as exc:
        fail(PROG, str(exc))
    return 1 if skipped else 0


if __name__ == "__main__":
    raise SystemExit(main())
