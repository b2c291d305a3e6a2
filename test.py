"""Detect objects in pictures with a trained SSD; save annotated copies and the detections as JSON.

    python test.py --trained_model weights/ssd300_mAP_77.43_v2.pth --save_folder demo/ dog.jpg pictures/

Writes ``SAVE_FOLDER/<image stem>_det.jpg`` per picture and ``SAVE_FOLDER/detections.json``:
``[{"image": path, "width": w, "height": h, "detections": [{"label", "score", "box": [x1, y1, x2, y2]}]}]`` with
the detections scoring at least ``--visual_threshold``, boxes in 0-based pixels clipped to the image.
The same inference is a Python call: ``utils.inference.detect_images``.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from data.common import read_image
from utils.checkpoint import CheckpointError, describe_state_dict, model_from_state_dict, read_checkpoint
from utils.cli import dataset_class_names, fail, read_class_names, str2bool
from utils.inference import Detection, choose_device, detect_images, draw_detections

PROG = "test.py"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".jp2")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Single Shot MultiBox Detector: detect and draw")
    parser.add_argument("images", nargs="+", help="image files or folders of images")
    parser.add_argument("--trained_model", default=os.path.join("weights", "ssd300_mAP_77.43_v2.pth"))
    parser.add_argument("--size", type=int, choices=(300, 512), default=None, help="default: the checkpoint's")
    parser.add_argument(
        "--dataset", type=str.upper, choices=("VOC", "COCO"), default=None, help="class names (default: inferred)"
    )
    parser.add_argument("--classes", default=None, help="text file with one class name per line")
    parser.add_argument("--visual_threshold", type=float, default=0.6, help="draw and report scores >= this")
    parser.add_argument("--cuda", type=str2bool, default=None, help="true/false (default: use CUDA if available)")
    parser.add_argument("--save_folder", default="detections/", help="where annotated images and JSON go")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--top_k", type=int, default=200, help="detections kept per class before thresholding")
    return parser


def collect_images(paths: Sequence[str]) -> list[str]:
    """Image files named directly, plus the image files (by extension, sorted) of each named folder."""
    found: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.lower().endswith(IMAGE_EXTENSIONS))
            if not names:
                raise ValueError(f"folder {path} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            found += [os.path.join(path, n) for n in names]
        elif os.path.isfile(path):
            if not cv2.haveImageReader(path):
                raise ValueError(f"not an image (no decoder recognises it): {path}")
            found.append(path)
        else:
            raise ValueError(f"no such image file or folder: {path}")
    return found


def choose_class_names(args: argparse.Namespace, num_classes: int, meta: dict[str, Any]) -> list[str]:
    """``--classes`` file, else ``--dataset``'s list, else the checkpoint's recorded names, else VOC/COCO by size."""
    if args.classes:
        return read_class_names(args.classes)
    if args.dataset:
        return dataset_class_names(args.dataset)
    recorded = meta.get("class_names")
    if isinstance(recorded, (list, tuple)) and len(recorded) == num_classes - 1:
        return [str(n) for n in recorded]
    return dataset_class_names("COCO" if num_classes == 81 else "VOC")


def detection_record(path: str, img: np.ndarray, dets: list[Detection], names: Sequence[str]) -> dict[str, Any]:
    """One entry of detections.json."""
    h, w = img.shape[:2]
    return {
        "image": path,
        "width": int(w),
        "height": int(h),
        "detections": [{"label": names[c], "score": s, "box": box} for c, s, box in dets],
    }


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Detect on every image of ``args.images``; write annotated copies and detections.json. Returns the JSON."""
    device = choose_device(args.cuda)
    paths = collect_images(args.images)
    sd, meta = read_checkpoint(args.trained_model)
    names = choose_class_names(args, describe_state_dict(sd)[1], meta)
    try:
        net = model_from_state_dict(sd, "test", args.size, len(names) + 1, source=args.trained_model, top_k=args.top_k)
    except CheckpointError as exc:
        if args.classes or args.dataset:
            raise
        raise CheckpointError(f"{exc} (name its classes with --classes FILE or --dataset)") from exc
    net = net.to(device)
    os.makedirs(args.save_folder, exist_ok=True)
    records = []
    for start in range(0, len(paths), args.batch_size):
        chunk = paths[start : start + args.batch_size]
        images = [read_image(p) for p in chunk]
        for path, img, dets in zip(chunk, images, detect_images(net, images, args.visual_threshold, args.batch_size)):
            out = os.path.join(args.save_folder, f"{os.path.splitext(os.path.basename(path))[0]}_det.jpg")
            if not cv2.imwrite(out, draw_detections(img, dets, names)):
                raise ValueError(f"cannot write {out}")
            records.append(detection_record(path, img, dets, names))
            print(f"{path}: {len(dets)} detection(s) >= {args.visual_threshold} -> {out}")
    json_path = os.path.join(args.save_folder, "detections.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(records, f, indent=2)
    print(f"wrote {json_path}")
    return records


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        run(args)
    except (CheckpointError, ValueError, OSError) as exc:
        fail(PROG, str(exc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
