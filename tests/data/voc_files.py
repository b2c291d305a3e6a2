"""Builders of tiny VOC folders for the data tests: each test writes exactly the files it talks about."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

# (name, xmin, ymin, xmax, ymax, difficult) in 1-based VOC pixels, or a raw "<object>...</object>" string.
VocObject = tuple[str, float, float, float, float, int] | str


def annotation_xml(objects: Sequence[VocObject], width: int | None, height: int | None) -> str:
    """A VOC annotation; ``width=None`` leaves out ``<size>``."""
    parts = ["<annotation><folder>VOC2007</folder><filename>x.jpg</filename>"]
    if width is not None:
        parts.append(f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>")
    for obj in objects:
        if isinstance(obj, str):
            parts.append(obj)
            continue
        name, x1, y1, x2, y2, difficult = obj
        parts.append(
            f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{difficult}</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
        )
    parts.append("</annotation>")
    return "".join(parts)


def write_sample(
    root: Path,
    image_id: str,
    objects: Sequence[VocObject],
    width: int = 200,
    height: int = 100,
    year: str = "2007",
    image: np.ndarray | None = None,
    size_tag: bool = True,
) -> tuple[Path, Path]:
    """Write ``JPEGImages/ID.jpg`` (a noise image unless given) and ``Annotations/ID.xml``; returns both paths."""
    year_root = root / f"VOC{year}"
    (year_root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (year_root / "Annotations").mkdir(parents=True, exist_ok=True)
    if image is None:
        image = np.random.default_rng(len(image_id)).integers(0, 256, (height, width, 3), dtype=np.uint8)
    image_path = year_root / "JPEGImages" / f"{image_id}.jpg"
    cv2.imwrite(str(image_path), image)
    xml_path = year_root / "Annotations" / f"{image_id}.xml"
    xml_path.write_text(annotation_xml(objects, width if size_tag else None, height))
    return image_path, xml_path


def write_image_set(root: Path, ids: Sequence[str], split: str = "trainval", year: str = "2007") -> Path:
    path = root / f"VOC{year}" / "ImageSets" / "Main" / f"{split}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{i}\n" for i in ids))
    return path
