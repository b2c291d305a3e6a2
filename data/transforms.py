"""Test-time input transforms: the classic ``BaseTransform`` and ``preprocess``, the one path into the network.

The network expects what the classic training pipeline produced: a BGR image resized to size×size,
minus ``MEANS`` (BGR), then channels reversed to RGB, as float32 CHW. ``BaseTransform`` stops before the channel
flip (the dataset does it, as the classic does); ``preprocess`` does the whole thing for inference.

These live in ``data`` (where the classic kept ``BaseTransform``) rather than in ``utils.augmentations`` so that
``data`` never imports ``utils``: ``utils.augmentations`` imports ``data.config`` and re-exports these two.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from data.config import MEANS


def ensure_bgr(image: np.ndarray) -> np.ndarray:
    """Any 2-D grayscale, HxWx1, HxWx3 or HxWx4 (BGRA) image as a 3-channel BGR image (HxWx3, same dtype)."""
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    raise ValueError(f"expected an HxW, HxWx1, HxWx3 or HxWx4 image, got an array of shape {image.shape}")


def base_transform(image: np.ndarray, size: int, mean: Sequence[float] = MEANS) -> np.ndarray:
    """Resize a BGR image (HxWx3, any dtype) to size×size and subtract ``mean``.

    Returns:
        np.ndarray[size, size, 3] float32, BGR minus mean. As the classic, an 8-bit image is resized before the
        cast to float, so the numbers equal those the published weights were evaluated with.
    """
    resized = cv2.resize(ensure_bgr(image), (size, size))
    return np.subtract(resized, np.asarray(mean, dtype=np.float32), dtype=np.float32)


class BaseTransform:
    """The classic test-time transform: ``(img, boxes, labels) -> (img HWC float32 BGR − mean, boxes, labels)``.

    Boxes and labels pass through unchanged (they are relative coordinates, which resizing does not change).
    """

    def __init__(self, size: int, mean: Sequence[float] = MEANS) -> None:
        self.size = int(size)
        self.mean = np.asarray(mean, dtype=np.float32)

    def __call__(
        self, img: np.ndarray, boxes: np.ndarray | None = None, labels: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        return base_transform(img, self.size, self.mean), boxes, labels


def preprocess(img_bgr: np.ndarray, size: int, mean: Sequence[float] = MEANS) -> torch.Tensor:
    """A BGR image (HxWx3 uint8, as cv2.imread gives) as the network input ``Tensor[3, size, size]`` float32.

    Resize, minus mean (BGR), channels reversed to RGB, CHW: exactly the classic training input.
    """
    bgr = base_transform(img_bgr, size, mean)
    return torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1)))
