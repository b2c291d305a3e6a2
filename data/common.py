"""What the VOC and COCO datasets share: image reading, skip-and-count of bad samples, the transform step, collate.

Bad input policy (data/README.md): loading errors are ``FileNotFoundError`` (missing file) or ``ValueError``
(unreadable content), both naming the file. ``__getitem__`` — the training path — skips such a sample when
``skip_bad`` is True: it logs the file and the reason once, counts it in ``bad_items`` and returns the next good
sample. ``pull_item``/``pull_image``/``pull_anno`` — the evaluation path — always raise.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

logger = logging.getLogger("data")

Transform = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray, np.ndarray]]


class AllSamplesBad(ValueError):
    """Every sample of a dataset failed to load: training cannot go on."""


def _jpeg_is_truncated(raw: bytes) -> bool:
    """A JPEG whose last scan (SOS marker FFDA) is not followed by an end-of-image marker (FFD9).

    cv2 decodes such a file without an error (the missing rows come out grey), so it must be caught here.
    Entropy-coded data never holds FF D9 (FF bytes are stuffed), and an EXIF thumbnail's FFD9 comes before the
    main scan, so the test has no false alarms on complete files.
    """
    return raw.rfind(b"\xff\xd9") < raw.rfind(b"\xff\xda")


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as BGR uint8 ``[H, W, 3]``; grayscale and 4-channel (alpha) files become 3-channel BGR.

    Raises:
        FileNotFoundError: no such file. ValueError: empty, truncated JPEG, or not decodable — naming the file.
    """
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"image not found: {path}") from None
    except IsADirectoryError:
        raise ValueError(f"{path}: is a directory, expected an image file") from None
    if not raw:
        raise ValueError(f"{path}: empty image file")
    if raw[:2] == b"\xff\xd8" and _jpeg_is_truncated(raw):
        raise ValueError(f"{path}: truncated JPEG (no end-of-image marker after the last scan)")
    # IMREAD_COLOR: grayscale → 3 channels, alpha dropped, 16-bit → 8-bit, as cv2.imread does in the classic.
    image = cv2.imdecode(np.frombuffer(raw, dtype=np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: cannot decode the image (corrupt file or unsupported format)")
    return image


def targets_array(rows: Sequence[Sequence[float]] | np.ndarray) -> np.ndarray:
    """Target rows ``[[x1, y1, x2, y2, label], ...]`` as float32 ``[n, 5]`` (``[0, 5]`` when there are none)."""
    return np.asarray(rows, dtype=np.float32).reshape(-1, 5)


def image_tensor(img_bgr: np.ndarray) -> torch.Tensor:
    """HxWx3 BGR array → ``Tensor[3, H, W]`` float32 RGB (the classic flips the transform's BGR output)."""
    rgb = cv2.cvtColor(np.ascontiguousarray(img_bgr, dtype=np.float32), cv2.COLOR_BGR2RGB)
    return torch.from_numpy(rgb).permute(2, 0, 1)


class DetectionDataset(Dataset):
    """Base of VOCDetection and COCODetection: ``ids``, the transform step and skip-and-count of bad samples.

    Subclasses implement ``_load(index) -> (img BGR uint8 [H, W, 3], target float32 [n, 5])`` (relative boxes),
    raising FileNotFoundError/ValueError for bad input.
    """

    ids: list
    name: str

    def __init__(self, transform: Transform | None, skip_bad: bool) -> None:
        self.transform = transform
        self.skip_bad = skip_bad
        self.bad_reasons: dict[int, str] = {}  # index → why it was skipped (this process only)

    @property
    def bad_items(self) -> int:
        """How many distinct bad samples ``__getitem__`` has skipped in this process (each worker counts its own)."""
        return len(self.bad_reasons)

    def __len__(self) -> int:
        return len(self.ids)

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def pull_image(self, index: int) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, index: int) -> tuple[torch.Tensor, np.ndarray]:
        """Returns (img ``Tensor[3, H, W]`` float32 RGB, target ``np.ndarray[n, 5]`` float32)."""
        img, target = self._load_or_skip(index)
        return self._apply_transform(img, target)

    def pull_item(self, index: int) -> tuple[torch.Tensor, np.ndarray, int, int]:
        """Like ``__getitem__`` plus the original height and width, and never skips: bad input raises."""
        img, target = self._load(index)
        height, width = img.shape[:2]
        return (*self._apply_transform(img, target), height, width)

    def pull_tensor(self, index: int) -> torch.Tensor:
        """The raw BGR image as a float tensor ``[1, H, W, 3]`` (the classic's shape)."""
        return torch.from_numpy(self.pull_image(index).astype(np.float32)).unsqueeze_(0)

    def _load_or_skip(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not self.skip_bad:
            return self._load(index)
        for offset in range(len(self)):
            candidate = (index + offset) % len(self)
            if candidate in self.bad_reasons:
                continue
            try:
                return self._load(candidate)
            except (FileNotFoundError, ValueError) as err:
                self.bad_reasons[candidate] = str(err)
                logger.warning(
                    "%s: skipping bad sample %d (%d skipped so far): %s", self.name, candidate, self.bad_items, err
                )
        first = next(iter(self.bad_reasons.values()))
        raise AllSamplesBad(f"{self.name}: all {len(self)} samples are bad; the first: {first}")

    def _apply_transform(self, img: np.ndarray, target: np.ndarray) -> tuple[torch.Tensor, np.ndarray]:
        if self.transform is not None:
            img, boxes, labels = self.transform(img, target[:, :4], target[:, 4])
            target = np.hstack((np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.float32)[:, None]))
        return image_tensor(img), target


def detection_collate(
    batch: Sequence[tuple[torch.Tensor, np.ndarray | torch.Tensor]],
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Stack images (they share a size after the transform) and keep targets as a list (their lengths differ).

    Args:
        batch: B samples ``(img Tensor[3, H, W], target [n_i, 5])``.
    Returns:
        images ``Tensor[B, 3, H, W]``, targets: B float32 tensors ``[n_i, 5]`` (x1, y1, x2, y2, label).
    """
    images = torch.stack([sample[0] for sample in batch], 0)
    targets = [torch.as_tensor(sample[1], dtype=torch.float32).reshape(-1, 5) for sample in batch]
    return images, targets
