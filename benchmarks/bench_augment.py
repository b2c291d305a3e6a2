# ruff: noqa: NPY002 -- the baseline reproduces the classic code, which draws from the legacy global RNG.
"""Throughput of the SSD training augmentation against the classic algorithm, one process, CPU.

    python benchmarks/bench_augment.py [--images 300] [--repeats 5] [--out benchmarks/results/augment_cpu.json]

Input: 500×375 BGR uint8 images (textured noise) with 2 boxes, as a VOC image reaches the transform. The baseline
is a faithful re-implementation of the classic ssd.pytorch pipeline (global ``np.random``, float32 image from the
first step, full expanded canvas, one crop trial at a time) with only what it needs to run and to be comparable:
the corrected crop rule (some box with IoU ≥ the mode's minimum), the 0.5 mode, and a mode choice that works on
NumPy 2. For reference it also times the classic exactly as it is (its never-rejecting crop condition, no 0.5
mode). All run on the same images, in alternating passes so that load from other processes hits them alike; the
script reports medians over the passes of ms/image and images/s, the ratios, the load average, and the machine.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repository's packages import

from benchmarks.timing import add_common_flags, machine_info, median_ms, time_interleaved, write_json  # noqa: E402
from data.config import MEANS  # noqa: E402
from utils.augmentations import SSDAugmentation  # noqa: E402

# ------------------------------------------------------------------------------- classic algorithm (baseline)


def _jaccard_numpy(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    inter_wh = np.clip(np.minimum(box_a[:, 2:], box_b[2:]) - np.maximum(box_a[:, :2], box_b[:2]), 0, np.inf)
    inter = inter_wh[:, 0] * inter_wh[:, 1]
    area_a = (box_a[:, 2] - box_a[:, 0]) * (box_a[:, 3] - box_a[:, 1])
    area_b = (box_b[2] - box_b[0]) * (box_b[3] - box_b[1])
    return inter / (area_a + area_b - inter)


class ClassicAugmentation:
    """The classic SSDAugmentation step by step (ConvertFromInts … SubtractMeans).

    ``corrected=True``: Caffe's crop rule and the paper's modes (0.5 included); False: the classic as it is.
    """

    perms = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))

    def __init__(self, size: int = 300, mean: tuple[int, int, int] = MEANS, corrected: bool = True) -> None:
        self.size = size
        self.mean = mean
        self.corrected = corrected
        self.modes = (None, (0.1, None), (0.3, None), (0.7, None), (0.9, None), (None, None))
        if corrected:
            self.modes = self.modes[:3] + ((0.5, None),) + self.modes[3:]

    def __call__(self, image, boxes, labels):
        image = image.astype(np.float32)  # ConvertFromInts
        height, width, _ = image.shape  # ToAbsoluteCoords
        boxes = boxes.copy()
        boxes[:, 0] *= width
        boxes[:, 2] *= width
        boxes[:, 1] *= height
        boxes[:, 3] *= height
        image = self.photometric(image)
        image, boxes = self.expand(image, boxes)
        image, boxes, labels = self.crop(image, boxes, labels)
        image, boxes = self.mirror(image, boxes)
        height, width, _ = image.shape  # ToPercentCoords
        boxes[:, 0] /= width
        boxes[:, 2] /= width
        boxes[:, 1] /= height
        boxes[:, 3] /= height
        image = cv2.resize(image, (self.size, self.size))  # Resize
        image = image.astype(np.float32)  # SubtractMeans
        image -= np.array(self.mean, dtype=np.float32)
        return image, boxes, labels

    def photometric(self, image):
        im = image.copy()
        if np.random.randint(2):  # RandomBrightness
            im += np.random.uniform(-32, 32)
        contrast_first = np.random.randint(2)
        if contrast_first:
            im = self.contrast(im)
        im = cv2.cvtColor(im, cv2.COLOR_BGR2HSV)
        if np.random.randint(2):  # RandomSaturation
            im[:, :, 1] *= np.random.uniform(0.5, 1.5)
        if np.random.randint(2):  # RandomHue
            im[:, :, 0] += np.random.uniform(-18.0, 18.0)
            im[:, :, 0][im[:, :, 0] > 360.0] -= 360.0
            im[:, :, 0][im[:, :, 0] < 0.0] += 360.0
        im = cv2.cvtColor(im, cv2.COLOR_HSV2BGR)
        if not contrast_first:
            im = self.contrast(im)
        if np.random.randint(2):  # RandomLightingNoise
            im = im[:, :, self.perms[np.random.randint(len(self.perms))]]
        return im

    @staticmethod
    def contrast(im):
        if np.random.randint(2):
            im *= np.random.uniform(0.5, 1.5)
        return im

    def expand(self, image, boxes):
        if np.random.randint(2):
            return image, boxes
        height, width, depth = image.shape
        ratio = np.random.uniform(1, 4)
        left = np.random.uniform(0, width * ratio - width)
        top = np.random.uniform(0, height * ratio - height)
        expand_image = np.zeros((int(height * ratio), int(width * ratio), depth), dtype=image.dtype)
        expand_image[:, :, :] = self.mean
        expand_image[int(top) : int(top + height), int(left) : int(left + width)] = image
        boxes = boxes.copy()
        boxes[:, :2] += (int(left), int(top))
        boxes[:, 2:] += (int(left), int(top))
        return expand_image, boxes

    def crop(self, image, boxes, labels):
        height, width, _ = image.shape
        while True:
            mode = self.modes[np.random.randint(len(self.modes))]  # random.choice fails on NumPy 2
            if mode is None:
                return image, boxes, labels
            min_iou, max_iou = mode
            min_iou = float("-inf") if min_iou is None else min_iou
            max_iou = float("inf") if max_iou is None else max_iou
            for _ in range(50):
                w = np.random.uniform(0.3 * width, width)
                h = np.random.uniform(0.3 * height, height)
                if h / w < 0.5 or h / w > 2:
                    continue
                left = np.random.uniform(width - w)
                top = np.random.uniform(height - h)
                rect = np.array([int(left), int(top), int(left + w), int(top + h)])
                overlap = _jaccard_numpy(boxes, rect)
                if self.corrected and not ((overlap >= min_iou) & (overlap <= max_iou)).any():
                    continue
                if not self.corrected and overlap.min() < min_iou and max_iou < overlap.max():  # never true
                    continue
                current_image = image[rect[1] : rect[3], rect[0] : rect[2], :]
                centers = (boxes[:, :2] + boxes[:, 2:]) / 2.0
                m1 = (rect[0] < centers[:, 0]) * (rect[1] < centers[:, 1])
                m2 = (rect[2] > centers[:, 0]) * (rect[3] > centers[:, 1])
                mask = m1 * m2
                if not mask.any():
                    continue
                current_boxes = boxes[mask, :].copy()
                current_labels = labels[mask]
                current_boxes[:, :2] = np.maximum(current_boxes[:, :2], rect[:2])
                current_boxes[:, :2] -= rect[:2]
                current_boxes[:, 2:] = np.minimum(current_boxes[:, 2:], rect[2:])
                current_boxes[:, 2:] -= rect[:2]
                return current_image, current_boxes, current_labels

    @staticmethod
    def mirror(image, boxes):
        _, width, _ = image.shape
        if np.random.randint(2):
            image = image[:, ::-1]
            boxes = boxes.copy()
            boxes[:, 0::2] = width - boxes[:, 2::-2]
        return image, boxes


# ----------------------------------------------------------------------------------------------- measurement


def make_inputs(count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``count`` 500×375 textured BGR images, each with 2 boxes (relative coordinates) and labels."""
    rng = np.random.default_rng(seed)
    base = cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (500, 375), interpolation=cv2.INTER_CUBIC)
    inputs = []
    for _ in range(count):
        noise = rng.integers(-20, 21, base.shape, dtype=np.int16)
        image = np.clip(base.astype(np.int16) + noise, 0, 255).astype(np.uint8)
        x1, y1 = rng.uniform(0.0, 0.5, 2), rng.uniform(0.0, 0.5, 2)
        w, h = rng.uniform(0.1, 0.5, 2), rng.uniform(0.1, 0.5, 2)
        boxes = np.stack([x1, y1, x1 + w, y1 + h], axis=1)
        inputs.append((image, boxes, np.array([3.0, 11.0])))
    return inputs


def apply_all(transform: Callable[..., Any], inputs: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> None:
    for image, boxes, labels in inputs:
        transform(image, boxes, labels)


def time_passes(transforms: dict[str, Callable[..., Any]], inputs, repeats: int) -> dict[str, list[float]]:
    """Seconds per image of each transform over ``repeats`` passes each, the transforms taking turns pass by pass.

    One warm-up pass over a tenth of the inputs first.
    """
    for transform in transforms.values():
        apply_all(transform, inputs[: max(1, len(inputs) // 10)])
    passes = {name: partial(apply_all, transform, inputs) for name, transform in transforms.items()}
    times = time_interleaved(passes, torch.device("cpu"), warmup=0, iters=repeats)
    return {name: [t / len(inputs) for t in pass_times] for name, pass_times in times.items()}


def main(argv: list[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    add_common_flags(parser, ("out", "note", "seed"), out="benchmarks/results/augment_cpu.json")
    args = parser.parse_args(argv)

    cv2.setNumThreads(1)  # one process, one thread: the DataLoader-worker setting
    inputs = make_inputs(args.images, args.seed)
    np.random.seed(args.seed)
    transforms = {
        "classic_as_is": ClassicAugmentation(corrected=False),
        "classic_corrected": ClassicAugmentation(corrected=True),
        "ours": SSDAugmentation(rng=args.seed),
    }
    load_before = os.getloadavg()
    times = time_passes(transforms, inputs, args.repeats)
    ms = {name: median_ms(t) for name, t in times.items()}
    result = {
        "benchmark": "SSDAugmentation(300) vs the classic algorithm, 500x375 uint8 BGR images with 2 boxes",
        "images": args.images,
        "passes": args.repeats,
        "processes": 1,
        "cv2_threads": 1,
        "ms_per_image": {name: round(v, 4) for name, v in ms.items()},
        "images_per_s": {name: round(1e3 / v, 1) for name, v in ms.items()},
        "ours_over_classic_corrected": round(ms["ours"] / ms["classic_corrected"], 4),
        "ours_over_classic_as_is": round(ms["ours"] / ms["classic_as_is"], 4),
        "load_average_1min": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "machine": machine_info(torch.device("cpu"))
        | {"logical_cores": os.cpu_count(), "numpy": np.__version__, "opencv": cv2.__version__},
        "notes": list(args.note),
    }
    for name, v in ms.items():
        print(f"{name:18s} {v:7.3f} ms/image  {1e3 / v:6.0f} img/s")
    print(f"ours / classic (corrected rule): {result['ours_over_classic_corrected']:.3f}")
    print(f"ours / classic (as it is):       {result['ours_over_classic_as_is']:.3f}")
    print(f"load average (1 min) before/after: {result['load_average_1min']} on {os.cpu_count()} logical cores")
    write_json(result, args.out)
    return result


if __name__ == "__main__":
    main()
