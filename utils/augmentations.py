"""SSD training augmentation: the classic ssd.pytorch pipeline with its bugs fixed, fused for speed.

The steps, in the classic order: ConvertFromInts, ToAbsoluteCoords, PhotometricDistort (brightness ±32;
contrast ×0.5–1.5 before or after the HSV changes; saturation ×0.5–1.5; hue ±18°; a random channel order;
each with probability 1/2), Expand (probability 1/2: the image placed at random on a canvas ×1–4 its size filled
with the mean), RandomSampleCrop, RandomMirror, ToPercentCoords, Resize, SubtractMeans.

What differs from the classic:
- Crop modes are the paper's {whole image, min IoU 0.1, 0.3, 0.5, 0.7, 0.9, any patch} and a crop is accepted
  when at least one ground-truth box has IoU ≥ the mode's minimum with it (Caffe's rule; the classic condition
  ``overlap.min() < min_iou and max_iou < overlap.max()`` never rejects). As before, up to 50 trials per mode,
  a trial must also keep at least one box centre, and a mode with no accepted trial is drawn again.
- The crop's left/top are uniform on [0, free space] (the classic's ``uniform(width - w)`` draws from
  [1, width − w], a one-pixel slip).
- Pixel values are clipped to 0–255 after each photometric step, boxes are clipped to the image and boxes without
  positive area are dropped (labels with them).
- The mode choice works on NumPy 2 (the classic ``random.choice`` over a ragged array raises) and all randomness
  comes from one ``numpy.random.Generator`` (training builds one per image from ``(seed, epoch, index)``:
  ``utils.training.data.SeededTransform``).

Speed: ``SSDAugmentation`` draws every random parameter first (with the same samplers as the classic-named parts
below) and then renders only what the output needs: the colour changes run on the part of the image that lands in
the crop (8-bit input goes through one 256-entry lookup table for brightness/contrast), the expanded canvas is
built only inside the crop, the mirror and channel swap act on the resized 300×300 result, and the 50 crop
trials are tested at once. Composed with one Generator, the parts (which apply each step literally, as the
classic does) give the same output as ``SSDAugmentation`` for the same seed — tests check it — so the fused path
keeps the output distribution of the classic pipeline with the corrected rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from data.config import MEANS
from data.transforms import BaseTransform, Preprocessing, base_transform, ensure_bgr, preprocess

__all__ = [
    "CHANNEL_ORDERS",
    "CROP_MODES",
    "BaseTransform",
    "Compose",
    "ConvertFromInts",
    "Expand",
    "ExpandParams",
    "PhotometricDistort",
    "PhotometricParams",
    "RandomMirror",
    "RandomSampleCrop",
    "RECIPES",
    "Resize",
    "SSDAugmentation",
    "SubtractMeans",
    "ToAbsoluteCoords",
    "ToPercentCoords",
    "base_transform",
    "crop_boxes",
    "distort_colours",
    "make_rng",
    "model_augmentation",
    "preprocess",
    "sample_crop",
    "sample_expand",
    "sample_mirror",
    "sample_photometric",
]

RngLike = np.random.Generator | int | None
CropMode = tuple[float, float] | None

# None: keep the whole image; (min IoU, max IoU) otherwise; (-inf, inf) is "any patch".
CROP_MODES: tuple[CropMode, ...] = (
    None,
    (0.1, math.inf),
    (0.3, math.inf),
    (0.5, math.inf),
    (0.7, math.inf),
    (0.9, math.inf),
    (-math.inf, math.inf),
)
CHANNEL_ORDERS: tuple[tuple[int, int, int], ...] = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))
MAX_CROP_TRIALS = 50
MIN_CROP_SCALE = 0.3
CROP_ASPECT_RANGE = (0.5, 2.0)
# The optional steps each architecture's training recipe draws (``data.config.ARCHITECTURES`` names): VGG16 the
# classic pipeline; SSDLite the mirror alone. torchvision's SSDLite reference adds the IoU crop for its 660-epoch
# COCO schedule, but in short runs it halves what the light model learns: on train.py's gate (300 synthetic
# pictures, 150 iterations at batch 16) VOC07 mAP 0.19 and 0.19 with it, 0.47 and 0.48 without (seeds 0 and 1).
RECIPES: dict[str, dict[str, bool]] = {
    "vgg16": {"photometric": True, "expand": True, "crop": True},
    "mobilenet_v3_large": {"photometric": False, "expand": False, "crop": False},
}


def make_rng(rng: RngLike = None) -> np.random.Generator:
    """A Generator as given, seeded from an int, or fresh from OS entropy for None."""
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


# ---------------------------------------------------------------------------------------------------- samplers


@dataclass(frozen=True)
class PhotometricParams:
    """One draw of PhotometricDistort; ``None`` means the step is skipped."""

    brightness: float | None = None  # added to every channel
    contrast: float | None = None  # multiplies every channel
    contrast_first: bool = True  # contrast before the HSV changes (True) or after them, as the classic
    saturation: float | None = None  # multiplies the HSV saturation
    hue: float | None = None  # degrees added to the HSV hue
    channel_order: tuple[int, int, int] | None = None  # new channel c = old channel channel_order[c]


def sample_photometric(rng: np.random.Generator) -> PhotometricParams:
    """Draw the classic PhotometricDistort parameters (each step on with probability 1/2)."""
    u = rng.random(11)  # one call: Generator calls cost more than the numbers
    return PhotometricParams(
        brightness=float(-32.0 + 64.0 * u[1]) if u[0] < 0.5 else None,
        contrast=float(0.5 + u[4]) if u[3] < 0.5 else None,
        contrast_first=bool(u[2] < 0.5),
        saturation=float(0.5 + u[6]) if u[5] < 0.5 else None,
        hue=float(-18.0 + 36.0 * u[8]) if u[7] < 0.5 else None,
        channel_order=CHANNEL_ORDERS[min(int(u[10] * 6), 5)] if u[9] < 0.5 else None,
    )


@dataclass(frozen=True)
class ExpandParams:
    """Canvas size and the top-left corner (pixels) at which the image is pasted into it."""

    width: int
    height: int
    left: int
    top: int


def sample_expand(rng: np.random.Generator, width: int, height: int, max_ratio: float = 4.0) -> ExpandParams | None:
    """Draw the classic Expand: None with probability 1/2, else a canvas ×U(1, max_ratio) the image size."""
    u = rng.random(4)
    if u[0] < 0.5:
        return None
    ratio = 1.0 + (max_ratio - 1.0) * u[1]
    left = u[2] * (width * ratio - width)
    top = u[3] * (height * ratio - height)
    return ExpandParams(int(width * ratio), int(height * ratio), int(left), int(top))


def _iou(rects: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of rects ``[T, 4]`` with boxes ``[N, 4]`` (x1, y1, x2, y2) → ``[T, N]``."""
    lt = np.maximum(rects[:, None, :2], boxes[None, :, :2])
    rb = np.minimum(rects[:, None, 2:], boxes[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_r = (rects[:, 2] - rects[:, 0]) * (rects[:, 3] - rects[:, 1])
    area_b = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area_r[:, None] + area_b[None, :] - inter)


def _centres_inside(rects: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Whether each box centre lies strictly inside each rect: rects ``[T, 4]``, boxes ``[N, 4]`` → ``[T, N]``."""
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2.0
    after_lt = (rects[:, None, :2] < centres[None]).all(axis=2)
    before_rb = (centres[None] < rects[:, None, 2:]).all(axis=2)
    return after_lt & before_rb


def sample_crop(
    rng: np.random.Generator,
    width: int,
    height: int,
    boxes: np.ndarray,
    modes: Sequence[CropMode] = CROP_MODES,
    max_trials: int = MAX_CROP_TRIALS,
    max_rounds: int = 1000,
) -> tuple[np.ndarray | None, CropMode]:
    """Draw the crop of RandomSampleCrop for an image of ``width``×``height`` holding ``boxes`` (pixels).

    A mode is drawn uniformly; "whole image" returns ``(None, None)``. Otherwise up to ``max_trials`` rects of
    side U(0.3, 1)·image with aspect h/w in [0.5, 2] are tried, all at once, and the first one accepted is taken
    (the same law as trying them one after another). A rect is accepted when some box has IoU in
    [min, max] with it (Caffe's rule) and some box centre lies inside it. When no trial passes, a mode is drawn
    again, as the classic does.

    Args:
        boxes (np.ndarray[N, 4]): absolute (x1, y1, x2, y2); N may be 0 (then only "any patch" can crop).
    Returns:
        (rect, mode): rect as int ``np.ndarray[4]`` (x1, y1, x2, y2), pixel edges, or None for the whole image.
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    feasible = [m for m in modes if m is None or len(boxes) or m[0] == -math.inf]
    for _ in range(max_rounds):
        mode = modes[int(rng.integers(len(modes)))]
        if mode is None or not feasible:
            return None, None
        if mode not in feasible:  # an IoU constraint with no box to meet it: the classic redraws
            continue
        u = rng.random((4, max_trials), dtype=np.float32)
        w = width * (MIN_CROP_SCALE + (1.0 - MIN_CROP_SCALE) * u[0])
        h = height * (MIN_CROP_SCALE + (1.0 - MIN_CROP_SCALE) * u[1])
        left = u[2] * (width - w)
        top = u[3] * (height - h)
        rects = np.floor(np.stack([left, top, left + w, top + h], axis=1))
        aspect = h / w
        ok = (aspect >= CROP_ASPECT_RANGE[0]) & (aspect <= CROP_ASPECT_RANGE[1])
        ok &= (rects[:, 2] > rects[:, 0]) & (rects[:, 3] > rects[:, 1])
        if len(boxes):
            iou = _iou(rects, boxes)
            ok &= ((iou >= mode[0]) & (iou <= mode[1])).any(axis=1)
            ok &= _centres_inside(rects, boxes).any(axis=1)
        hits = np.flatnonzero(ok)
        if hits.size:
            return rects[hits[0]].astype(np.int64), mode
    return None, None


def crop_boxes(boxes: np.ndarray, labels: np.ndarray, rect: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the boxes whose centres lie strictly inside ``rect``, clip them to it and shift them into its frame.

    Args:
        boxes (np.ndarray[N, 4]): absolute (x1, y1, x2, y2). labels (np.ndarray[N]). rect (np.ndarray[4]) ints.
    Returns:
        (boxes [K, 4], labels [K]) in the crop's pixel frame.
    """
    keep = _centres_inside(rect[None].astype(np.float32), boxes)[0]
    kept = boxes[keep].astype(np.float32)  # a copy
    origin = rect[:2].astype(np.float32)
    kept[:, :2] = np.maximum(kept[:, :2], origin) - origin
    kept[:, 2:] = np.minimum(kept[:, 2:], rect[2:].astype(np.float32)) - origin
    return kept, labels[keep]


def sample_mirror(rng: np.random.Generator) -> bool:
    """Draw RandomMirror: True (flip left-right) with probability 1/2."""
    return bool(rng.random() < 0.5)


# ------------------------------------------------------------------------------- the fused, fast colour step


def _tone(values: np.ndarray, brightness: float | None, contrast: float | None) -> np.ndarray:
    """Brightness then contrast, each clipped to [0, 255], in place on a float32 array."""
    if brightness is not None:
        values += np.float32(brightness)
        np.clip(values, 0.0, 255.0, out=values)
    if contrast is not None:
        values *= np.float32(contrast)
        np.clip(values, 0.0, 255.0, out=values)
    return values


def _shift_hsv(image: np.ndarray, saturation: float | None, hue: float | None) -> np.ndarray:
    """Scale HSV saturation and rotate hue of a float32 BGR image in [0, 255]; result clipped to [0, 255]."""
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV)
    # cv2 arithmetic with a per-channel scalar: NumPy broadcasting over a last axis of 3 is several times slower.
    if saturation is not None:
        cv2.multiply(hsv, (1.0, saturation, 1.0, 1.0), dst=hsv)
    if hue is not None:
        cv2.add(hsv, (hue, 0.0, 0.0, 0.0), dst=hsv)
        channel = hsv[:, :, 0]
        np.subtract(channel, np.float32(360.0), out=channel, where=channel > 360.0)
        np.add(channel, np.float32(360.0), out=channel, where=channel < 0.0)
    image = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)
    return np.clip(image, 0.0, 255.0, out=image)


def distort_colours(image: np.ndarray, params: PhotometricParams) -> np.ndarray:
    """PhotometricDistort without its channel swap: HxWx3 (uint8 or float) → new float32 HxWx3 in [0, 255]."""
    colour = params.saturation is not None or params.hue is not None
    contrast_before = params.contrast if (params.contrast_first or not colour) else None
    if image.dtype == np.uint8 and (params.brightness is not None or contrast_before is not None):
        # Pointwise steps on 8-bit input: one 256-entry table, same float32 arithmetic as on the image itself.
        table = _tone(np.arange(256, dtype=np.float32), params.brightness, contrast_before)
        out = cv2.LUT(image, table)
    else:
        out = _tone(image.astype(np.float32), params.brightness, contrast_before)
    if colour:
        out = _shift_hsv(out, params.saturation, params.hue)
        if not params.contrast_first:
            out = _tone(out, None, params.contrast)
    return out


# --------------------------------------------------------------------------------------------- SSDAugmentation


class SSDAugmentation:
    """The SSD training augmentation, ``(img, boxes, labels) -> (img, boxes, labels)``.

    Args:
        size: output side in pixels. mean: BGR mean, used to fill the expanded canvas and subtracted at the end.
        rng: a ``numpy.random.Generator``, an int seed, or None (fresh entropy).
        std: BGR divisor applied after the mean (None: none, the classic input).
        photometric, expand, crop: whether the colour distortion, the zoom-out (Expand) and the IoU crop are drawn
            (a step left out draws nothing); the mirror is always drawn.
    Call args:
        img (np.ndarray[H, W, 3]): BGR, uint8 (fast path) or float. boxes (np.ndarray[N, 4]): (x1, y1, x2, y2)
        relative to the image, in [0, 1]. labels (np.ndarray[N]).
    Returns:
        img (np.ndarray[size, size, 3]) float32 BGR, ``(pixel - mean) / std`` with pixels in [0, 255],
        boxes (np.ndarray[K, 4]) float32 in [0, 1] with positive width and height, labels (np.ndarray[K]).
    """

    def __init__(
        self,
        size: int = 300,
        mean: Sequence[float] = MEANS,
        rng: RngLike = None,
        std: Sequence[float] | None = None,
        photometric: bool = True,
        expand: bool = True,
        crop: bool = True,
    ) -> None:
        self.size = int(size)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.ones(3, dtype=np.float32) if std is None else np.asarray(std, dtype=np.float32)
        self.rng = make_rng(rng)
        self.photometric = bool(photometric)
        self.expand = bool(expand)
        self.crop = bool(crop)

    def __call__(
        self, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        img = ensure_bgr(img)
        height, width = img.shape[:2]
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4) * np.float32([width, height, width, height])
        labels = np.asarray(labels)
        # Every draw first, in the order the literal parts make them, so both give the same result for a seed.
        photo = sample_photometric(self.rng) if self.photometric else PhotometricParams()
        expand = (sample_expand(self.rng, width, height) if self.expand else None) or ExpandParams(width, height, 0, 0)
        boxes += np.float32([expand.left, expand.top, expand.left, expand.top])
        rect, _ = sample_crop(self.rng, expand.width, expand.height, boxes) if self.crop else (None, None)
        if rect is None:
            rect = np.array([0, 0, expand.width, expand.height])
        else:
            boxes, labels = crop_boxes(boxes, labels, rect)
        mirror = sample_mirror(self.rng)

        image = self._render(img, photo, expand, rect, mirror)
        crop_w, crop_h = float(rect[2] - rect[0]), float(rect[3] - rect[1])
        if mirror:
            boxes[:, 0::2] = crop_w - boxes[:, 2::-2]
        boxes /= np.float32([crop_w, crop_h, crop_w, crop_h])
        return (image, *_keep_valid(boxes, labels))

    def _render(
        self, img: np.ndarray, photo: PhotometricParams, expand: ExpandParams, rect: np.ndarray, mirror: bool
    ) -> np.ndarray:
        """The output image ``[size, size, 3]`` float32, BGR ``(pixel - mean) / std``, for the drawn parameters."""
        order = photo.channel_order or (0, 1, 2)
        # The channel swap commutes with the resize, so it comes last, on size×size pixels, fused with the mean
        # subtraction and the std division into one cv2.transform; the canvas is therefore filled with the mean
        # swapped back.
        fill = np.empty(3, dtype=np.float32)
        fill[list(order)] = self.mean
        resized = cv2.resize(_render_crop(img, photo, expand, rect, fill), (self.size, self.size))
        if mirror:  # also commutes with the resize
            resized = cv2.flip(resized, 1)
        swap_and_centre = np.zeros((3, 4), dtype=np.float32)
        swap_and_centre[np.arange(3), list(order)] = 1.0 / self.std
        swap_and_centre[:, 3] = -self.mean / self.std
        return cv2.transform(resized, swap_and_centre)


def model_augmentation(
    architecture: str, size: int, preprocessing: Preprocessing, rng: RngLike = None
) -> SSDAugmentation:
    """The training augmentation of a model: its architecture's recipe (``RECIPES``) at input ``size``, ending in
    its ``preprocessing`` (BGR out, ``(pixel - mean) / std``; the dataset turns it to RGB)."""
    if architecture not in RECIPES:
        raise ValueError(f"no augmentation recipe for architecture {architecture!r}: expected one of {list(RECIPES)}")
    mean, std = preprocessing.mean, preprocessing.std
    return SSDAugmentation(size, mean, rng=rng, std=std, **RECIPES[architecture])


def _render_crop(
    img: np.ndarray, photo: PhotometricParams, expand: ExpandParams, rect: np.ndarray, fill: np.ndarray
) -> np.ndarray:
    """The crop ``rect`` of the (virtual) expanded canvas, colour-distorted: float32 ``[h, w, 3]``."""
    height, width = img.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in rect)
    # The part of the image inside the crop, in image coordinates; only it goes through the colour steps.
    sx1, sy1 = max(x1 - expand.left, 0), max(y1 - expand.top, 0)
    sx2, sy2 = min(x2 - expand.left, width), min(y2 - expand.top, height)
    if sx2 <= sx1 or sy2 <= sy1:  # the crop misses the image: all canvas
        canvas = np.empty((y2 - y1, x2 - x1, 3), dtype=np.float32)
        canvas[:, :] = fill
        return canvas
    patch = distort_colours(img[sy1:sy2, sx1:sx2], photo)
    top, left = expand.top + sy1 - y1, expand.left + sx1 - x1
    bottom, right = (y2 - y1) - top - (sy2 - sy1), (x2 - x1) - left - (sx2 - sx1)
    if top == left == bottom == right == 0:
        return patch
    return cv2.copyMakeBorder(patch, top, bottom, left, right, cv2.BORDER_CONSTANT, value=fill.tolist())


def _keep_valid(boxes: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Clip relative boxes ``[N, 4]`` to [0, 1] and drop those without positive area (and their labels)."""
    boxes = np.clip(boxes, 0.0, 1.0)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if keep.all():
        return boxes, labels
    return boxes[keep], labels[keep]


# ------------------------------------------------------------------------- the classic-named parts, literally

Sample = tuple[np.ndarray, np.ndarray | None, np.ndarray | None]


class Compose:
    """Apply transforms in turn to ``(img, boxes, labels)``."""

    def __init__(self, transforms: Sequence[Callable[..., Sample]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, img: np.ndarray, boxes: np.ndarray | None = None, labels: np.ndarray | None = None) -> Sample:
        for transform in self.transforms:
            img, boxes, labels = transform(img, boxes, labels)
        return img, boxes, labels


class ConvertFromInts:
    def __call__(self, img: np.ndarray, boxes: np.ndarray | None = None, labels: np.ndarray | None = None) -> Sample:
        return img.astype(np.float32), boxes, labels


class ToAbsoluteCoords:
    def __call__(self, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray | None = None) -> Sample:
        height, width = img.shape[:2]
        return img, np.asarray(boxes, np.float32) * np.float32([width, height, width, height]), labels


class ToPercentCoords:
    def __call__(self, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray | None = None) -> Sample:
        height, width = img.shape[:2]
        return img, np.asarray(boxes, np.float32) / np.float32([width, height, width, height]), labels


class PhotometricDistort:
    """Brightness, contrast, HSV saturation and hue, channel swap — the classic steps, each clipped to [0, 255]."""

    def __init__(self, rng: RngLike = None) -> None:
        self.rng = make_rng(rng)

    def __call__(self, img: np.ndarray, boxes: np.ndarray | None = None, labels: np.ndarray | None = None) -> Sample:
        p = sample_photometric(self.rng)
        im = _tone(img.astype(np.float32), p.brightness, p.contrast if p.contrast_first else None)
        hsv = cv2.cvtColor(im, cv2.COLOR_BGR2HSV)
        if p.saturation is not None:
            hsv[:, :, 1] *= p.saturation
        if p.hue is not None:
            hsv[:, :, 0] += p.hue
            hsv[:, :, 0][hsv[:, :, 0] > 360.0] -= 360.0
            hsv[:, :, 0][hsv[:, :, 0] < 0.0] += 360.0
        im = np.clip(cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR), 0.0, 255.0)
        im = _tone(im, None, None if p.contrast_first else p.contrast)
        if p.channel_order is not None:
            im = im[:, :, p.channel_order]
        return im, boxes, labels


class Expand:
    """With probability 1/2, paste the image at random on a mean-filled canvas ×1–4 its size."""

    def __init__(self, mean: Sequence[float] = MEANS, rng: RngLike = None) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)
        self.rng = make_rng(rng)

    def __call__(self, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray | None = None) -> Sample:
        height, width = img.shape[:2]
        p = sample_expand(self.rng, width, height)
        if p is None:
            return img, boxes, labels
        canvas = np.empty((p.height, p.width, img.shape[2]), dtype=img.dtype)
        canvas[...] = self.mean
        canvas[p.top : p.top + height, p.left : p.left + width] = img
        return canvas, boxes + np.float32([p.left, p.top, p.left, p.top]), labels


class RandomSampleCrop:
    """Crop as ``sample_crop`` draws it; keep the boxes whose centres fall inside."""

    def __init__(self, rng: RngLike = None, modes: Sequence[CropMode] = CROP_MODES) -> None:
        self.rng = make_rng(rng)
        self.modes = tuple(modes)

    def __call__(self, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> Sample:
        height, width = img.shape[:2]
        rect, _ = sample_crop(self.rng, width, height, boxes, self.modes)
        if rect is None:
            return img, boxes, labels
        boxes, labels = crop_boxes(boxes, np.asarray(labels), rect)
        return img[rect[1] : rect[3], rect[0] : rect[2]], boxes, labels


class RandomMirror:
    def __init__(self, rng: RngLike = None) -> None:
        self.rng = make_rng(rng)

    def __call__(self, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray | None = None) -> Sample:
        if not sample_mirror(self.rng):
            return img, boxes, labels
        boxes = np.array(boxes, dtype=np.float32)
        boxes[:, 0::2] = img.shape[1] - boxes[:, 2::-2]
        return img[:, ::-1], boxes, labels


class Resize:
    def __init__(self, size: int = 300) -> None:
        self.size = int(size)

    def __call__(self, img: np.ndarray, boxes: np.ndarray | None = None, labels: np.ndarray | None = None) -> Sample:
        return cv2.resize(np.ascontiguousarray(img), (self.size, self.size)), boxes, labels


class SubtractMeans:
    def __init__(self, mean: Sequence[float] = MEANS) -> None:
        self.mean = np.asarray(mean, dtype=np.float32)

    def __call__(self, img: np.ndarray, boxes: np.ndarray | None = None, labels: np.ndarray | None = None) -> Sample:
        return img.astype(np.float32) - self.mean, boxes, labels
