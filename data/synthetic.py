"""Synthetic detection data in VOC layout: drawn, textured objects of a few VOC classes on textured backgrounds.

    python -m data.synthetic --out DIR [--num_train 200] [--num_test 50] [--seed 0] [--classes car,sheep]
        [--min_size 300] [--max_size 500] [--min_scale 0.1] [--max_scale 0.95] [--max_objects 5]
        [--empty_prob 0.1] [--difficult_prob 0.1]

makes DIR a VOC root (``DIR/VOC2007/{Annotations, JPEGImages, ImageSets/Main/{trainval,test}.txt}``) that
``VOCDetection(DIR, [("2007", "trainval")])`` reads and ``eval.py --voc_root DIR`` scores. It is the README's demo
data and the data of the end-to-end tests. The same seed gives the same files (byte for byte, for one OpenCV).

Generator settings (``make_image`` / ``make_voc_dataset`` arguments in brackets):
- Image size: width and height uniform integers in [300, 500] [min_size, max_size]; JPEG quality 90.
- Background: a smooth, low-saturation colour field (a 3×3 to 6×6 grid of muted tones, cubic-upsampled), Gaussian
  pixel noise (σ 8), and 2–6 faint grey lines. Textured, never flat, but never saturated: objects stand out.
- Objects per image: none with probability 0.1 [empty_prob], else 1 to 5 [max_objects], uniform.
- Classes: each has its own shape, colour and texture, the same in every image (``SHAPES``):
  car = red rectangle with horizontal stripes, boat = blue triangle (apex up), sheep = white ellipse with
  speckles, bottle = yellow diamond with vertical stripes, person = green plus sign, tvmonitor = purple square
  frame around a dark screen. Labels are indices into ``VOC_CLASSES``.
- Size: the box's longer side is s·min(width, height) with s log-uniform in [0.1, 0.95] [scale_range] (small to
  image-filling);
  aspect ratio (w/h) log-uniform in [0.5, 2] around the class's own (1.6 for car, 0.5 for bottle and person).
- Placement: uniform inside the image; a new object (drawn on top) may overlap an earlier one up to IoU 0.35 and
  hide at most 35 % of its box; 20 tries, else the object is left out.
- Difficult: probability 0.1 [difficult_prob]; such an object is drawn faded (35 % opacity) and marked
  ``<difficult>1</difficult>``.
- Boxes are the tight pixel extent of the drawn shape, 0-based inclusive ``[x1, y1, x2, y2]``; the XML holds them
  1-based (VOC), so ``VOCDetection.pull_anno`` gives back exactly the boxes ``make_image`` returned.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np

from data.voc0712 import VOC_CLASSES


@dataclass(frozen=True)
class Shape:
    kind: str  # rectangle, triangle, ellipse, diamond, plus, frame
    colour: tuple[int, int, int]  # BGR
    texture: str  # hstripes, vstripes, speckle, plain
    aspect: float  # typical w/h


SHAPES: dict[str, Shape] = {
    "car": Shape("rectangle", (40, 40, 210), "hstripes", 1.6),
    "boat": Shape("triangle", (200, 90, 20), "plain", 1.2),
    "sheep": Shape("ellipse", (235, 235, 235), "speckle", 1.3),
    "bottle": Shape("diamond", (20, 210, 230), "vstripes", 0.5),
    "person": Shape("plus", (40, 170, 40), "plain", 0.5),
    "tvmonitor": Shape("frame", (160, 40, 170), "plain", 1.0),
}
SYNTHETIC_CLASSES: tuple[str, ...] = tuple(SHAPES)

MIN_SCALE, MAX_SCALE = 0.1, 0.95
MAX_IOU = 0.35
FADED_OPACITY = 0.35


def _background(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Muted smooth colour field + pixel noise + faint lines: uint8 ``[height, width, 3]``."""
    grid_h, grid_w = rng.integers(3, 7, size=2)
    tones = rng.uniform(70.0, 190.0, size=(grid_h, grid_w, 3)).astype(np.float32)
    tones = 0.7 * tones.mean(axis=2, keepdims=True) + 0.3 * tones  # low saturation
    field = cv2.resize(tones, (width, height), interpolation=cv2.INTER_CUBIC)
    field += rng.standard_normal((height, width, 3), dtype=np.float32) * 8.0
    image = np.clip(field, 0, 255).astype(np.uint8)
    for _ in range(int(rng.integers(2, 7))):
        p1 = (int(rng.integers(width)), int(rng.integers(height)))
        p2 = (int(rng.integers(width)), int(rng.integers(height)))
        grey = int(rng.integers(90, 170))
        cv2.line(image, p1, p2, (grey, grey, grey), int(rng.integers(1, 3)))
    return image


def _mask(kind: str, w: int, h: int) -> np.ndarray:
    """The shape filling a ``w``×``h`` box, as a uint8 mask ``[h, w]`` (255 inside)."""
    mask = np.zeros((h, w), dtype=np.uint8)
    if kind == "rectangle":
        mask[:] = 255
    elif kind == "triangle":
        cv2.fillPoly(mask, [np.array([[0, h - 1], [w - 1, h - 1], [(w - 1) // 2, 0]], np.int32)], 255)
    elif kind == "ellipse":
        cv2.ellipse(mask, (((w - 1) / 2, (h - 1) / 2), (w - 1, h - 1), 0.0), 255, -1)
    elif kind == "diamond":
        pts = [[(w - 1) // 2, 0], [w - 1, (h - 1) // 2], [(w - 1) // 2, h - 1], [0, (h - 1) // 2]]
        cv2.fillPoly(mask, [np.array(pts, np.int32)], 255)
    elif kind == "plus":
        bar_w, bar_h = max(w // 3, 1), max(h // 3, 1)
        mask[:, (w - bar_w) // 2 : (w - bar_w) // 2 + bar_w] = 255
        mask[(h - bar_h) // 2 : (h - bar_h) // 2 + bar_h, :] = 255
    elif kind == "frame":
        mask[:] = 255
    else:
        raise ValueError(f"unknown shape kind {kind!r}")
    return mask


def _texture(rng: np.random.Generator, shape: Shape, w: int, h: int) -> np.ndarray:
    """The object's colour with its class texture: float32 ``[h, w, 3]``."""
    colour = np.asarray(shape.colour, dtype=np.float32)
    shade = np.ones((h, w), dtype=np.float32)
    if shape.texture == "hstripes":
        period = max(4, h // 6)
        shade[(np.arange(h) // (period // 2)) % 2 == 1, :] = 0.7
    elif shape.texture == "vstripes":
        period = max(4, w // 5)
        shade[:, (np.arange(w) // (period // 2)) % 2 == 1] = 0.7
    elif shape.texture == "speckle":
        shade -= 0.35 * (rng.random((h, w), dtype=np.float32) < 0.08)
    patch = shade[:, :, None] * colour + rng.standard_normal((h, w, 3), dtype=np.float32) * 6.0
    if shape.kind == "frame":  # a dark screen inside a coloured border
        border_w, border_h = max(2, w // 6), max(2, h // 6)
        patch[border_h : h - border_h, border_w : w - border_w] = (30.0, 30.0, 30.0)
    return patch


def _fits(box: np.ndarray, others: list[np.ndarray]) -> bool:
    """Whether ``box`` (drawn on top) keeps IoU ≤ MAX_IOU with every earlier box and hides at most MAX_IOU of any.

    Boxes are 0-based inclusive pixels ``[4]``.
    """
    if not others:
        return True
    earlier = np.stack(others)
    lt = np.maximum(box[:2], earlier[:, :2])
    rb = np.minimum(box[2:], earlier[:, 2:])
    inter = np.prod(np.clip(rb - lt + 1, 0, None), axis=1)
    area = np.prod(box[2:] - box[:2] + 1)
    areas = np.prod(earlier[:, 2:] - earlier[:, :2] + 1, axis=1)
    iou = inter / (area + areas - inter)
    return bool((iou <= MAX_IOU).all() and (inter / areas <= MAX_IOU).all())


def _draw_size(
    rng: np.random.Generator, shape: Shape, width: int, height: int, scale_range: tuple[float, float]
) -> tuple[int, int]:
    """Box width and height: longer side log-uniform in ``scale_range``·min side, aspect around the class's."""
    side = np.exp(rng.uniform(np.log(scale_range[0]), np.log(scale_range[1]))) * min(width, height)
    aspect = shape.aspect * np.exp(rng.uniform(np.log(0.5), np.log(2.0)))
    w, h = (side, side / aspect) if aspect >= 1 else (side * aspect, side)
    return int(np.clip(round(w), 8, width - 2)), int(np.clip(round(h), 8, height - 2))


def make_image(
    rng: np.random.Generator,
    width: int,
    height: int,
    classes: Sequence[str] = SYNTHETIC_CLASSES,
    max_objects: int = 5,
    empty_prob: float = 0.1,
    difficult_prob: float = 0.1,
    scale_range: tuple[float, float] = (MIN_SCALE, MAX_SCALE),
) -> tuple[np.ndarray, np.ndarray, list[int], list[bool]]:
    """One synthetic image and its objects, in memory.

    Args:
        rng: the only source of randomness. width, height: image size in pixels (at least 24).
        classes: names from ``SHAPES`` to draw from. max_objects: at most this many objects (at least 1).
        empty_prob, difficult_prob: chance of an image without objects, of an object drawn faded and difficult.
        scale_range: (low, high), 0 < low <= high <= 1: an object's longer side over the image's shorter side.
    Returns:
        img (np.ndarray[height, width, 3]) BGR uint8; boxes (np.ndarray[n, 4]) float32 0-based inclusive pixel
        corners ``(x1, y1, x2, y2)``; labels: n indices into ``VOC_CLASSES``; difficult: n flags. n may be 0.
    """
    unknown = [name for name in classes if name not in SHAPES]
    if unknown:
        raise ValueError(f"no synthetic shape for classes {unknown}; choose from {list(SHAPES)}")
    if not classes or max_objects < 1 or not 0 < scale_range[0] <= scale_range[1] <= 1:
        raise ValueError(
            f"need at least one class, max_objects >= 1 and 0 < low <= high <= 1 for scale_range, got "
            f"{len(classes)} classes, max_objects {max_objects}, scale_range {tuple(scale_range)}"
        )
    image = _background(rng, width, height)
    boxes: list[np.ndarray] = []
    labels: list[int] = []
    difficult: list[bool] = []
    count = 0 if rng.random() < empty_prob else int(rng.integers(1, max_objects + 1))
    for _ in range(count):
        name = classes[int(rng.integers(len(classes)))]
        shape = SHAPES[name]
        w, h = _draw_size(rng, shape, width, height, scale_range)
        for _try in range(20):
            x1, y1 = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
            box = np.array([x1, y1, x1 + w - 1, y1 + h - 1], dtype=np.float32)
            if _fits(box, boxes):
                break
        else:
            continue
        faded = bool(rng.random() < difficult_prob)
        boxes.append(_paint(image, rng, shape, x1, y1, w, h, FADED_OPACITY if faded else 1.0))
        labels.append(VOC_CLASSES.index(name))
        difficult.append(faded)
    box_array = np.stack(boxes) if boxes else np.zeros((0, 4), dtype=np.float32)
    return image, box_array, labels, difficult


def _paint(
    image: np.ndarray, rng: np.random.Generator, shape: Shape, x1: int, y1: int, w: int, h: int, opacity: float
) -> np.ndarray:
    """Draw one object into ``image`` (in place) in the ``w``×``h`` box at ``(x1, y1)``.

    Returns:
        np.ndarray[4] float32: the tight 0-based inclusive box of the pixels drawn.
    """
    mask = _mask(shape.kind, w, h)
    region = image[y1 : y1 + h, x1 : x1 + w]
    texture = _texture(rng, shape, w, h)
    blended = opacity * texture + (1.0 - opacity) * region.astype(np.float32)
    region[...] = np.where(mask[:, :, None] > 0, np.clip(blended, 0, 255).astype(np.uint8), region)
    cols, rows = np.flatnonzero(mask.any(axis=0)), np.flatnonzero(mask.any(axis=1))
    return np.array([x1 + cols[0], y1 + rows[0], x1 + cols[-1], y1 + rows[-1]], dtype=np.float32)


def _annotation_xml(
    image_id: str, width: int, height: int, boxes: np.ndarray, labels: list[int], difficult: list[bool]
) -> str:
    """VOC XML for one image; boxes are 0-based inclusive and written 1-based."""
    objects = []
    for (x1, y1, x2, y2), label, hard in zip(boxes.astype(int), labels, difficult):
        objects.append(
            "\t<object>\n"
            f"\t\t<name>{escape(VOC_CLASSES[label])}</name>\n\t\t<pose>Unspecified</pose>\n"
            f"\t\t<truncated>0</truncated>\n\t\t<difficult>{int(hard)}</difficult>\n"
            f"\t\t<bndbox>\n\t\t\t<xmin>{x1 + 1}</xmin>\n\t\t\t<ymin>{y1 + 1}</ymin>\n"
            f"\t\t\t<xmax>{x2 + 1}</xmax>\n\t\t\t<ymax>{y2 + 1}</ymax>\n\t\t</bndbox>\n"
            "\t</object>\n"
        )
    return (
        "<annotation>\n\t<folder>VOC2007</folder>\n"
        f"\t<filename>{image_id}.jpg</filename>\n"
        "\t<source>\n\t\t<database>SSD synthetic</database>\n\t</source>\n"
        f"\t<size>\n\t\t<width>{width}</width>\n\t\t<height>{height}</height>\n\t\t<depth>3</depth>\n\t</size>\n"
        "\t<segmented>0</segmented>\n" + "".join(objects) + "</annotation>\n"
    )


def make_voc_dataset(
    out: str | os.PathLike,
    num_train: int = 200,
    num_test: int = 50,
    seed: int = 0,
    min_size: int = 300,
    max_size: int = 500,
    **image_kwargs: object,
) -> str:
    """Write a synthetic VOC root at ``out`` (``out/VOC2007/...``) and return ``out`` as a string.

    Train images are ids ``000001``… (image set ``trainval``), test images follow (``test``). Image ``i`` of a
    split depends only on ``(seed, split, i)``, so asking for more images keeps the first ones. ``image_kwargs``
    go to ``make_image`` (classes, max_objects, empty_prob, difficult_prob, scale_range).
    """
    if min(num_train, num_test) < 0 or not 24 <= min_size <= max_size:
        raise ValueError(
            f"need num_train, num_test >= 0 and 24 <= min_size <= max_size, got "
            f"{num_train}, {num_test}, {min_size}, {max_size}"
        )
    year_root = Path(out, "VOC2007")
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (year_root / folder).mkdir(parents=True, exist_ok=True)
    splits = {"trainval": range(num_train), "test": range(num_test)}
    next_id = 1
    for split_code, (split, indices) in enumerate(splits.items()):
        ids = []
        for i in indices:
            rng = np.random.default_rng([seed, split_code, i])
            width, height = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
            image, boxes, labels, difficult = make_image(rng, width, height, **image_kwargs)
            image_id = f"{next_id:06d}"
            next_id += 1
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            if not ok:
                raise RuntimeError(f"JPEG encoding failed for synthetic image {image_id}")
            (year_root / "JPEGImages" / f"{image_id}.jpg").write_bytes(encoded.tobytes())
            xml = _annotation_xml(image_id, width, height, boxes, labels, difficult)
            (year_root / "Annotations" / f"{image_id}.xml").write_text(xml)
            ids.append(image_id)
        (year_root / "ImageSets" / "Main" / f"{split}.txt").write_text("".join(f"{i}\n" for i in ids))
    return str(out)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write a synthetic VOC-layout detection dataset.")
    parser.add_argument("--out", required=True, help="the VOC root to write (DIR/VOC2007/...)")
    parser.add_argument("--num_train", type=int, default=200, help="images in the trainval image set")
    parser.add_argument("--num_test", type=int, default=50, help="images in the test image set")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--classes",
        default=",".join(SYNTHETIC_CLASSES),
        help=f"comma-separated, from {', '.join(SHAPES)} (default all)",
    )
    parser.add_argument("--min_size", type=int, default=300, help="smallest image side in pixels")
    parser.add_argument("--max_size", type=int, default=500, help="largest image side in pixels")
    parser.add_argument("--min_scale", type=float, default=MIN_SCALE, help="smallest object side / image side")
    parser.add_argument("--max_scale", type=float, default=MAX_SCALE, help="largest object side / image side")
    parser.add_argument("--max_objects", type=int, default=5, help="most objects in one image")
    parser.add_argument("--empty_prob", type=float, default=0.1, help="chance of an image without objects")
    parser.add_argument("--difficult_prob", type=float, default=0.1, help="chance of a faded, difficult object")
    args = parser.parse_args(argv)
    classes = tuple(name.strip() for name in args.classes.split(",") if name.strip())
    try:
        root = make_voc_dataset(
            args.out,
            args.num_train,
            args.num_test,
            args.seed,
            args.min_size,
            args.max_size,
            classes=classes,
            max_objects=args.max_objects,
            empty_prob=args.empty_prob,
            difficult_prob=args.difficult_prob,
            scale_range=(args.min_scale, args.max_scale),
        )
    except ValueError as error:
        parser.error(str(error))
    print(f"wrote {args.num_train} trainval + {args.num_test} test images to {os.path.join(root, 'VOC2007')}")


if __name__ == "__main__":
    main()
