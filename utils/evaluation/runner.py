"""Run a test-phase SSD over a detection dataset's pictures: the inference loop eval.py and validation share."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from data.transforms import CLASSIC_PREPROCESSING, Preprocessing
from utils.cli import autocast, available_cpus
from utils.evaluation.voc import ImageDetections, ImageTruth
from utils.inference import DetectionArrays, detect_batch


def default_workers(limit: int = 4) -> int:
    """DataLoader workers for inference: one per CPU the process may use but one (for the main process), at most
    ``limit``."""
    return max(0, min(limit, available_cpus() - 1))


def select_subset(num_images: int, count: int | None, seed: int = 0) -> np.ndarray:
    """The pictures a run with ``--num_images count`` evaluates: a seeded sample, in dataset order (all when
    ``count`` is None or not smaller than ``num_images``)."""
    if count is None or count >= num_images:
        return np.arange(num_images)
    if count < 1:
        raise ValueError(f"the number of pictures to evaluate must be at least 1, got {count}")
    return np.sort(np.random.default_rng(seed).choice(num_images, size=count, replace=False))


class EvalPictures(Dataset):
    """Pictures of a detection dataset ready for the network, with their VOC ground truth.

    Args:
        dataset: a VOCDetection or COCODetection (``pull_image``; VOC also ``pull_objects``).
        indices: which of its pictures, in order.
        size: the network's input side.
        with_truth: read the picture's ground truth (``pull_objects``, validated against the picture's size).
        preprocessing: the model's (its facts').
    Item ``i`` → ``(input Tensor[3, size, size], (height, width), ImageTruth | None, None)``, or
    ``(None, None, None, message)`` when the picture or its annotation is broken, so that the main process can
    stop with the file named whatever worker read it.
    """

    def __init__(
        self,
        dataset: Any,
        indices: Sequence[int],
        size: int,
        with_truth: bool,
        preprocessing: Preprocessing = CLASSIC_PREPROCESSING,
    ) -> None:
        self.dataset, self.indices, self.size = dataset, list(indices), size
        self.with_truth, self.preprocessing = with_truth, preprocessing

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Tensor | None, tuple[int, int] | None, ImageTruth | None, str | None]:
        index = int(self.indices[i])
        try:
            img = self.dataset.pull_image(index)
            height, width = img.shape[:2]
            truth = ImageTruth(*self.dataset.pull_objects(index, (width, height))) if self.with_truth else None
        except (FileNotFoundError, ValueError) as err:
            return None, None, None, str(err)
        return self.preprocessing(img, self.size), (int(height), int(width)), truth, None


def _collate(batch: list[tuple[Any, ...]]) -> tuple[list[Any], ...]:
    return tuple(list(column) for column in zip(*batch))


def run_inference(
    net: nn.Module,
    pictures: EvalPictures,
    batch_size: int,
    num_workers: int,
    conf_thresh: float,
    inclusive: bool = True,
    amp: str = "none",
    progress: bool = True,
) -> tuple[list[DetectionArrays], list[ImageTruth | None]]:
    """Detections (0-based pixel boxes, see ``utils.inference.detections_to_arrays``) and ground truth of every
    picture, in order. A broken picture or annotation raises ValueError naming the file."""
    device = next(net.parameters()).device
    loader = DataLoader(
        pictures,
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=_collate,
        pin_memory=device.type == "cuda",
        generator=torch.Generator(),  # its own stream: the workers' base seed is not drawn from the global RNG
    )
    detections: list[DetectionArrays] = []
    truths: list[ImageTruth | None] = []
    start = time.perf_counter()
    for inputs, sizes, batch_truths, errors in loader:
        broken = next((e for e in errors if e is not None), None)
        if broken is not None:
            raise ValueError(broken)
        x = torch.stack(inputs)  # detect_batch moves it to the device (channels_last on CUDA)
        with autocast(device, amp):
            detections += detect_batch(net, x, sizes, conf_thresh, inclusive)
        truths += batch_truths
    elapsed = time.perf_counter() - start
    if progress:
        rate = len(detections) / max(elapsed, 1e-9)
        print(f"detected {len(detections)} pictures in {elapsed:.1f} s ({rate:.1f} img/s)", flush=True)
    return detections, truths


def to_devkit(detections: Sequence[DetectionArrays]) -> list[ImageDetections]:
    """0-based pixel detections → the devkit's 1-based ones (``utils.evaluation.voc.ImageDetections``)."""

    return [ImageDetections(d.labels, d.scores, d.boxes.astype(np.float64) + 1.0) for d in detections]
