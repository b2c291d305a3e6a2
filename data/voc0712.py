"""PASCAL VOC 2007/2012 detection data, and any dataset in VOC layout with its own class list.

Layout: ``ROOT/VOC2007/{Annotations/ID.xml, JPEGImages/ID.jpg, ImageSets/Main/{trainval,test}.txt}``,
the same for VOC2012. Boxes in the XML are 1-based inclusive pixels; targets are ``(pixel − 1) / size``, as the
classic port computes them. Bad input: see data/README.md and data/common.py.
"""

from __future__ import annotations

import logging
import math
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from data.common import DetectionDataset, Transform, read_image, targets_array

logger = logging.getLogger("data")

VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

_CORNERS = ("xmin", "ymin", "xmax", "ymax")
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")  # matched ignoring case (.JPG, .Png, .BMP…)

# (file, object index, what) already logged: a box fixed every epoch is worth one line, not one per epoch.
_reported: set[tuple[str, int, str]] = set()


def load_class_names(path: str | os.PathLike) -> list[str]:
    """Class names from a text file, one per line, in label order; blank lines and surrounding spaces ignored.

    The file is UTF-8 text (a leading byte-order mark, as some Windows editors write, is ignored); names are kept
    as written.

    Raises:
        FileNotFoundError: no such file. ValueError: not UTF-8 text, no names, a name repeated (ignoring case), or
        ``background`` / ``__background__`` listed — with line numbers.
    """
    text = _read_utf8(path, "class list")
    names: list[str] = []
    first_line: dict[str, int] = {}
    for line_no, line in enumerate(text.splitlines(), start=1):
        name = line.strip()
        if not name:
            continue
        if name.lower() in ("background", "__background__"):
            raise ValueError(f"{path}:{line_no}: {name!r} is implicit (class 0): list only the object classes")
        if name.lower() in first_line:
            raise ValueError(f"{path}:{line_no}: class {name!r} repeats line {first_line[name.lower()]}")
        first_line[name.lower()] = line_no
        names.append(name)
    if not names:
        raise ValueError(f"{path}: no class names (expected one name per line)")
    return names


def _read_utf8(path: str | os.PathLike, what: str) -> str:
    """The text of ``path``; FileNotFoundError naming ``what``, ValueError when it is not UTF-8 (with the line)."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} not found: {path}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        offset = err.start + (3 if raw.startswith(b"\xef\xbb\xbf") else 0)
        line_no = raw.count(b"\n", 0, offset) + 1
        raise ValueError(
            f"{path}: not UTF-8 text (line {line_no}: byte 0x{raw[offset]:02x}); save the {what} as UTF-8"
        ) from None


def _name_label_pairs(class_to_ind: Mapping[str, int] | Sequence[str] | None) -> list[tuple[str, int]]:
    """(name as written, less surrounding spaces; label) from a mapping, a sequence of names (label = position)
    or None (VOC_CLASSES)."""
    if class_to_ind is None:
        class_to_ind = VOC_CLASSES
    pairs = class_to_ind.items() if isinstance(class_to_ind, Mapping) else zip(class_to_ind, range(len(class_to_ind)))
    return [(str(name).strip(), int(label)) for name, label in pairs]


def _class_index(class_to_ind: Mapping[str, int] | Sequence[str] | None) -> dict[str, int]:
    """Lower-cased name → label, from a mapping, a sequence of names (label = position) or None (VOC_CLASSES)."""
    index: dict[str, int] = {}
    for name, label in _name_label_pairs(class_to_ind):
        key = name.lower()
        if key in index:
            raise ValueError(f"class {name!r} appears twice in the class list (names are matched ignoring case)")
        index[key] = label
    return index


def _number(text: str | None, what: str, source: str) -> float:
    try:
        value = float(text)  # VOC2012 has a few non-integer coordinates, so not int()
    except (TypeError, ValueError):
        raise ValueError(f"{source}: {what} is {text!r}, expected a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{source}: {what} is {text!r}, expected a finite number")
    return value


def read_voc_xml(path: str | os.PathLike) -> ET.Element:
    """The root of a VOC annotation file; FileNotFoundError / ValueError naming the file."""
    try:
        return ET.parse(path).getroot()
    except FileNotFoundError:
        raise FileNotFoundError(f"annotation not found: {path}") from None
    except ET.ParseError as err:
        raise ValueError(f"{path}: not valid XML ({err})") from None


def voc_objects(xml_root: ET.Element, source: str = "annotation") -> list[tuple[str, tuple[float, ...], bool]]:
    """Every ``<object>`` of a VOC annotation as ``(name, (xmin, ymin, xmax, ymax), difficult)``, as written.

    Coordinates are 1-based pixels. Raises ValueError naming ``source`` and the object: no ``<name>``, no
    ``<bndbox>``, a missing or non-numeric coordinate, a ``<difficult>`` other than 0 or 1.
    """
    objects = []
    for k, obj in enumerate(xml_root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        if not name:
            raise ValueError(f"{source}: object {k} has no <name>")
        difficult = _number(obj.findtext("difficult") or "0", f"object {k} ({name}) <difficult>", source)
        if difficult not in (0.0, 1.0):
            raise ValueError(f"{source}: object {k} ({name}) <difficult> is {difficult:g}, expected 0 or 1")
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise ValueError(f"{source}: object {k} ({name}) has no <bndbox>")
        box = tuple(_number(bndbox.findtext(tag), f"object {k} ({name}) <{tag}>", source) for tag in _CORNERS)
        objects.append((name, box, difficult == 1.0))
    return objects


def parse_voc_objects(
    xml_root: ET.Element | Sequence[tuple[str, tuple[float, ...], bool]],
    class_to_ind: Mapping[str, int],
    source: str = "annotation",
) -> list[tuple[tuple[float, float, float, float], int, bool]]:
    """Every ``<object>`` of a VOC annotation as ``((xmin, ymin, xmax, ymax), label, difficult)``.

    Coordinates are as written (1-based pixels). ``class_to_ind`` maps lower-case names to labels.

    Raises:
        ValueError naming ``source`` and the object: what :func:`voc_objects` rejects, or a name not in the class list.
    """
    objects = []
    named = voc_objects(xml_root, source) if isinstance(xml_root, ET.Element) else xml_root
    for k, (name, box, difficult) in enumerate(named):
        label = class_to_ind.get(name.lower())
        if label is None:
            known = ", ".join(sorted(class_to_ind)[:8])
            raise ValueError(
                f"{source}: object {k} has class {name!r}, which is not in the class list of {len(class_to_ind)} "
                f"({known}{', ...' if len(class_to_ind) > 8 else ''}); give the right list with --classes"
            )
        objects.append((box, label, difficult))
    return objects


def _report(source: str, k: int, what: str, message: str) -> None:
    if (source, k, what) not in _reported:
        _reported.add((source, k, what))
        logger.warning(message)


class VOCAnnotationTransform:
    """VOC XML root → ``[[x1, y1, x2, y2, label], ...]`` relative to the image: ``(pixel − 1) / size``.

    Args:
        class_to_ind: name → label (a mapping, or a sequence of names where the label is the position);
            default ``VOC_CLASSES``. Names are matched ignoring case and surrounding spaces, as the classic;
            ``class_names`` gives them back as written.
        keep_difficult: keep objects marked difficult (the classic default drops them).
    Call args:
        target: the XML root, or its objects as :func:`voc_objects` reads them (what ``VOCDetection.annotation``
            keeps, so that a file is parsed once); width, height: the image size in pixels (the real one: boxes are
            clipped to it). source: the file name used in messages.

    Boxes reaching outside the image are clipped to it; boxes left without area (x2 ≤ x1 or y2 ≤ y1, after
    clipping) are dropped; each is logged once. Structural errors raise ValueError (see ``parse_voc_objects``).
    """

    def __init__(self, class_to_ind: Mapping[str, int] | Sequence[str] | None = None, keep_difficult: bool = False):
        self.class_to_ind = _class_index(class_to_ind)  # lower-cased name → label: what matching reads
        self._written = {name.lower(): name for name, _ in _name_label_pairs(class_to_ind)}
        self.keep_difficult = keep_difficult

    @property
    def class_names(self) -> list[str]:
        """Class names in label order, as given (less surrounding spaces): the names a model records."""
        keys = sorted(self.class_to_ind, key=self.class_to_ind.__getitem__)
        return [self._written.get(key, key) for key in keys]

    def __call__(
        self,
        target: ET.Element | Sequence[tuple[str, tuple[float, ...], bool]],
        width: int,
        height: int,
        source: str | None = None,
    ) -> list[list[float]]:
        if source is None:
            source = (target.findtext("filename") if isinstance(target, ET.Element) else None) or "annotation"
        rows = []
        for k, (box, label, difficult) in enumerate(parse_voc_objects(target, self.class_to_ind, source)):
            if difficult and not self.keep_difficult:
                continue
            box = _clip_to_image(box, width, height, source, k)
            if box is not None:
                x1, y1, x2, y2 = box
                rows.append([(x1 - 1) / width, (y1 - 1) / height, (x2 - 1) / width, (y2 - 1) / height, label])
        return rows


def _clip_to_image(
    box: tuple[float, float, float, float], width: int, height: int, source: str, k: int
) -> tuple[float, float, float, float] | None:
    """Clip a 1-based box to the image [1, width] × [1, height]; None (logged) when no area is left."""
    x1, y1, x2, y2 = box
    clipped = (max(x1, 1.0), max(y1, 1.0), min(x2, float(width)), min(y2, float(height)))
    if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
        _report(
            source,
            k,
            "drop",
            f"{source}: object {k} box {box} has no area inside the {width}x{height} image "
            f"(x2 <= x1 or y2 <= y1); dropped",
        )
        return None
    if clipped != box:
        _report(
            source,
            k,
            "clip",
            f"{source}: object {k} box {box} reaches outside the {width}x{height} image; clipped to {clipped}",
        )
    return clipped


def read_image_set(path: str | os.PathLike) -> list[str]:
    """Image ids of an ImageSets file (UTF-8): the first word of each non-blank line.

    Raises:
        FileNotFoundError: no such file. ValueError naming the file and line: not UTF-8, or an id that is not a
        plain file name (a folder, ``..``, an absolute path), which would read files outside the dataset root.
    """
    ids = []
    for line_no, line in enumerate(_read_utf8(path, "image set file").splitlines(), start=1):
        if not line.strip():
            continue
        image_id = line.split()[0]
        has_path = any(sep in image_id for sep in ("/", "\\", "\0")) or os.path.splitdrive(image_id)[0]
        if has_path or image_id in (".", ".."):
            raise ValueError(
                f"{path}:{line_no}: image id {image_id!r} is not a plain file name (ids name files in Annotations/ "
                "and JPEGImages/, without folders)"
            )
        ids.append(image_id)
    return ids


_DEFAULT_SETS = (("2007", "trainval"), ("2012", "trainval"))


class VOCDetection(DetectionDataset):
    """VOC detection dataset.

    Args:
        root: the VOCdevkit folder (holding VOC2007/, VOC2012/).
        image_sets: (year, split) pairs; a pair whose folder or ImageSets file is missing, or whose file is
            empty, is skipped with a warning; if nothing is left, FileNotFoundError/ValueError naming the root.
        transform: ``(img BGR uint8 [H, W, 3], boxes [n, 4], labels [n]) -> (img, boxes, labels)``,
            e.g. SSDAugmentation or BaseTransform.
        target_transform: XML root → rows; default ``VOCAnnotationTransform()``.
        dataset_name: a name for messages and results.
        skip_bad: ``__getitem__`` skips (logs once, counts in ``bad_items``) bad samples instead of raising.

    ``__getitem__`` → (img ``Tensor[3, H, W]`` float32 RGB, target ``np.ndarray[n, 5]`` float32); without a
    transform the image keeps its size and 0–255 values. ``ids[i]`` is ``(year folder, image id)``, as the classic.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_sets: Sequence[tuple[str, str]] = _DEFAULT_SETS,
        transform: Transform | None = None,
        target_transform: Any = None,
        dataset_name: str = "VOC0712",
        skip_bad: bool = True,
    ) -> None:
        super().__init__(transform, skip_bad)
        self.root = str(root)
        self.image_set = list(image_sets)
        self.target_transform = VOCAnnotationTransform() if target_transform is None else target_transform
        self.name = dataset_name
        self._annopath = os.path.join("%s", "Annotations", "%s.xml")
        self._annotations: dict[int, VOCAnnotation] = {}
        self._pictures: dict[str, dict[str, str]] = {}  # JPEGImages folder → lower-cased file name → file name
        self._imgpath = os.path.join("%s", "JPEGImages", "%s.jpg")
        self.ids: list[tuple[str, str]] = self._collect_ids()

    @property
    def class_names(self) -> list[str]:
        """Class names in label order (those of the target transform, VOC_CLASSES otherwise)."""
        return getattr(self.target_transform, "class_names", list(VOC_CLASSES))

    def _collect_ids(self) -> list[tuple[str, str]]:
        ids: list[tuple[str, str]] = []
        found_any_folder = False
        for year, split in self.image_set:
            year_root = os.path.join(self.root, f"VOC{year}")
            set_file = Path(year_root, "ImageSets", "Main", f"{split}.txt")
            if not os.path.isdir(year_root):
                logger.warning("%s: no folder %s; image set %s/%s skipped", self.name, year_root, year, split)
                continue
            found_any_folder = True
            if not set_file.is_file():
                logger.warning("%s: no image set file %s; skipped", self.name, set_file)
                continue
            names = read_image_set(set_file)
            if not names:
                logger.warning("%s: image set file %s is empty; skipped", self.name, set_file)
            ids += [(year_root, name) for name in names]
        if not ids:
            wanted = ", ".join(f"VOC{year}/ImageSets/Main/{split}.txt" for year, split in self.image_set)
            error = ValueError if found_any_folder else FileNotFoundError
            raise error(
                f"no images for {self.name} under {self.root}: looked for {wanted} (missing or empty). "
                "Point the dataset root at the VOCdevkit folder, or fetch VOC with data/scripts/VOC2007.sh"
            )
        return ids

    def _image_path(self, img_id: tuple[str, str]) -> str:
        """The image file; ``.jpg`` as VOC, else the picture of that id with one of IMAGE_EXTENSIONS in any case
        (custom datasets); the ``.jpg`` path (for the error message) when there is none."""
        path = self._imgpath % img_id
        if os.path.exists(path):
            return path
        folder = os.path.join(img_id[0], "JPEGImages")
        names = self._pictures.get(folder)
        if names is None:  # listed once per folder
            names = {name.lower(): name for name in os.listdir(folder)} if os.path.isdir(folder) else {}
            self._pictures[folder] = names
        found = next((names[key] for ext in IMAGE_EXTENSIONS if (key := f"{img_id[1]}{ext}".lower()) in names), None)
        return os.path.join(folder, found) if found else path

    def annotation_path(self, index: int) -> str:
        """The XML annotation file of picture ``index``."""
        return self._annopath % self.ids[index]

    def annotation(self, index: int) -> VOCAnnotation:
        """The objects and ``<size>`` of picture ``index``'s annotation, parsed once and kept (a process that
        forks DataLoader workers after reading them hands them on). Raises FileNotFoundError / ValueError naming
        the file, as :func:`voc_objects` does."""
        found = self._annotations.get(index)
        if found is None:
            path = self.annotation_path(index)
            xml_root = read_voc_xml(path)
            found = VOCAnnotation(voc_objects(xml_root, path), _recorded_size(xml_root, path), path)
            self._annotations[index] = found
        return found

    def _read_xml(self, index: int) -> tuple[ET.Element, str]:
        path = self.annotation_path(index)
        return read_voc_xml(path), path

    def pull_image(self, index: int) -> np.ndarray:
        """The image as read, BGR uint8 ``[H, W, 3]``. Raises FileNotFoundError/ValueError naming the file."""
        return read_image(self._image_path(self.ids[index]))

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(self.target_transform, VOCAnnotationTransform):  # a user's transform reads the XML root
            xml_root, _ = self._read_xml(index)
            img = self.pull_image(index)
            return img, targets_array(self.target_transform(xml_root, img.shape[1], img.shape[0]))
        anno = self.annotation(index)
        img = self.pull_image(index)
        height, width = img.shape[:2]
        _check_picture_size(anno, width, height)
        return img, targets_array(self.target_transform(anno.objects, width, height, source=anno.path))

    def pull_anno(self, index: int) -> tuple[str, list[list[float]]]:
        """``(image id, [[x1 − 1, y1 − 1, x2 − 1, y2 − 1, label], ...])`` in pixels, as written in the XML.

        Nothing is clipped or dropped (difficult objects follow ``keep_difficult``): a box with xmax < xmin or
        ymax < ymin, like any unreadable annotation, raises ValueError naming the file, so that evaluation never
        loses ground truth silently.
        """
        transform = self.target_transform
        if not isinstance(transform, VOCAnnotationTransform):
            return self.ids[index][1], transform(self._read_xml(index)[0], 1, 1)  # the classic call
        boxes, labels, difficult = self.pull_objects(index)
        keep = np.ones_like(difficult) if transform.keep_difficult else ~difficult
        rows = np.hstack((boxes[keep] - 1.0, labels[keep, None].astype(np.float64)))
        return self.ids[index][1], rows.tolist()

    def pull_objects(
        self, index: int, image_size: tuple[int, int] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every object of image ``index``, difficult ones included, as the VOC devkit reads them.

        Args:
            index: the image.
            image_size: ``(width, height)`` of the picture, when read: a ``<size>`` that disagrees is an error.
        Returns:
            boxes ``float64 [n, 4]`` (x1, y1, x2, y2) in 1-based pixels as written, labels ``int64 [n]``,
            difficult ``bool [n]``.
        Raises:
            FileNotFoundError / ValueError naming the file: what the training path rejects (see data/README.md),
            and any box with xmax < xmin or ymax < ymin (training drops such a box; a metric must not).
        """
        anno = self.annotation(index)
        xml_path = anno.path
        if image_size is not None:
            _check_picture_size(anno, image_size[0], image_size[1])
        class_to_ind = getattr(self.target_transform, "class_to_ind", None) or _class_index(None)
        objects = parse_voc_objects(anno.objects, class_to_ind, xml_path)
        for k, (box, _, _) in enumerate(objects):
            if box[2] < box[0] or box[3] < box[1]:
                raise ValueError(f"{xml_path}: object {k} has xmax < xmin or ymax < ymin: {box}")
        boxes = np.array([box for box, _, _ in objects], dtype=np.float64).reshape(-1, 4)
        labels = np.array([label for _, label, _ in objects], dtype=np.int64)
        difficult = np.array([hard for _, _, hard in objects], dtype=bool)
        return boxes, labels, difficult


class VOCAnnotation(NamedTuple):
    """One parsed annotation file."""

    objects: list[tuple[str, tuple[float, ...], bool]]  # (name, (xmin, ymin, xmax, ymax) 1-based, difficult)
    size: tuple[int, int] | None  # <size> (width, height); None when missing or zero
    path: str


def _recorded_size(xml_root: ET.Element, source: str) -> tuple[int, int] | None:
    """The ``<size>`` of an annotation; None when missing (or zeros, which some tools write)."""
    size = xml_root.find("size")
    if size is None:
        return None
    try:
        xml_w, xml_h = int(float(size.findtext("width") or 0)), int(float(size.findtext("height") or 0))
    except ValueError:
        raise ValueError(f"{source}: <size> is not numeric") from None
    return (xml_w, xml_h) if xml_w > 0 and xml_h > 0 else None


def _check_picture_size(anno: VOCAnnotation, width: int, height: int) -> None:
    """A ``<size>`` that disagrees with the image means the boxes were drawn on another image: ValueError.

    A missing ``<size>`` is fine: the image's own size is used, as the classic.
    """
    if anno.size is not None and anno.size != (width, height):
        xml_w, xml_h = anno.size
        raise ValueError(
            f"{anno.path}: <size> says {xml_w}x{xml_h} but the image is {width}x{height} "
            "(resized or rotated after annotation? the boxes would be wrong)"
        )
