"""Test-time input transforms: the classic ``BaseTransform`` and ``preprocess``, the one path into the network.

The network expects what the classic training pipeline produced: a BGR image resized to size×size,
minus ``MEANS`` (BGR), then channels reversed to RGB, as float32 CHW. ``BaseTransform`` stops before the channel
flip (the dataset does it, as the classic does); ``preprocess`` does the whole thing for inference.

These live in ``data`` (where the classic kept ``BaseTransform``) rather than in ``utils.augmentations`` so that
``data`` never imports ``utils``: ``utils.augmentations`` imports ``data.config`` and re-exports these two.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

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


def preprocess(
    img_bgr: np.ndarray, size: int, mean: Sequence[float] = MEANS, std: Sequence[float] | None = None
) -> torch.Tensor:
    """A BGR image (HxWx3 uint8, as cv2.imread gives) as the network input ``Tensor[3, size, size]`` float32.

    Resize, minus mean (BGR), divided by ``std`` (BGR; None: not scaled), channels reversed to RGB, CHW. With the
    defaults this is exactly the classic training input.
    """
    bgr = base_transform(img_bgr, size, mean)
    if std is not None and any(float(s) != 1.0 for s in std):
        bgr = bgr / np.asarray(std, dtype=np.float32)
    return torch.from_numpy(np.ascontiguousarray(bgr[:, :, ::-1].transpose(2, 0, 1)))


@dataclass(frozen=True)
class Preprocessing:
    """How a BGR picture becomes network input: resized to size×size, ``(pixel − mean) / std`` per channel (both
    in BGR order, pixel units), channels reversed to RGB, CHW float32. A model fact: see ``data.config.ARCHITECTURES``.
    """

    mean: tuple[float, float, float] = tuple(float(m) for m in MEANS)  # type: ignore[assignment]
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        for name in ("mean", "std"):
            values = getattr(self, name)
            if isinstance(values, (str, bytes)) or len(values) != 3:
                raise ValueError(f"preprocessing {name}: expected 3 numbers (B, G, R), got {values!r}")
            object.__setattr__(self, name, tuple(float(v) for v in values))
        if any(not s > 0 for s in self.std):
            raise ValueError(f"preprocessing std: expected positive numbers, got {list(self.std)}")

    def __call__(self, img_bgr: np.ndarray, size: int) -> torch.Tensor:
        """``img_bgr`` (HxWx3 uint8) → ``Tensor[3, size, size]`` float32."""
        return preprocess(img_bgr, size, self.mean, self.std)

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std), "order": "bgr"}

    @classmethod
    def from_dict(cls, d: Any) -> Preprocessing:
        """Read :meth:`to_dict`'s record; ValueError naming the field otherwise."""
        if not isinstance(d, Mapping) or d.get("order", "bgr") != "bgr":
            expected = '{"mean": [b, g, r], "std": [b, g, r], "order": "bgr"}'
            raise ValueError(f"preprocessing: expected {expected}, got {d!r}")
        try:
            return cls(tuple(d["mean"]), tuple(d.get("std", (1.0, 1.0, 1.0))))
        except (KeyError, TypeError) as err:
            raise ValueError(f"preprocessing: expected mean and std lists, got {d!r} ({err})") from None

    @classmethod
    def of_architecture(cls, arch: Mapping[str, Any]) -> Preprocessing:
        """The preprocessing an ``ARCHITECTURES`` entry names."""
        return cls(tuple(arch["input_mean"]), tuple(arch["input_std"]))


CLASSIC_PREPROCESSING = Preprocessing()
