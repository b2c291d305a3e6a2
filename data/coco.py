"""MS COCO detection data through pycocotools (imported when a dataset is built, so this module imports without it).

Layout (as data/scripts/COCO2014.sh leaves it): ``root/annotations/instances_{image_set}.json`` and
``root/images/{image_set}/{file_name}``. The 80 categories (ids 1–90 with gaps) become labels 0–79 in id order;
``COCO_CATEGORY_IDS[label]`` (or ``dataset.category_ids[label]``) turns a label back into the id that COCO
result files need. Boxes are ``(x, y, x + w, y + h) / size`` in [0, 1]; crowd regions are left out.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from data.common import DetectionDataset, Transform, logger, read_image, targets_array

_COCO_CATEGORIES: tuple[tuple[int, str], ...] = (
    (1, "person"), (2, "bicycle"), (3, "car"), (4, "motorcycle"), (5, "airplane"), (6, "bus"), (7, "train"),
    (8, "truck"), (9, "boat"), (10, "traffic light"), (11, "fire hydrant"), (13, "stop sign"),
    (14, "parking meter"), (15, "bench"), (16, "bird"), (17, "cat"), (18, "dog"), (19, "horse"), (20, "sheep"),
    (21, "cow"), (22, "elephant"), (23, "bear"), (24, "zebra"), (25, "giraffe"), (27, "backpack"),
    (28, "umbrella"), (31, "handbag"), (32, "tie"), (33, "suitcase"), (34, "frisbee"), (35, "skis"),
    (36, "snowboard"), (37, "sports ball"), (38, "kite"), (39, "baseball bat"), (40, "baseball glove"),
    (41, "skateboard"), (42, "surfboard"), (43, "tennis racket"), (44, "bottle"), (46, "wine glass"), (47, "cup"),
    (48, "fork"), (49, "knife"), (50, "spoon"), (51, "bowl"), (52, "banana"), (53, "apple"), (54, "sandwich"),
    (55, "orange"), (56, "broccoli"), (57, "carrot"), (58, "hot dog"), (59, "pizza"), (60, "donut"), (61, "cake"),
    (62, "chair"), (63, "couch"), (64, "potted plant"), (65, "bed"), (67, "dining table"), (70, "toilet"),
    (72, "tv"), (73, "laptop"), (74, "mouse"), (75, "remote"), (76, "keyboard"), (77, "cell phone"),
    (78, "microwave"), (79, "oven"), (80, "toaster"), (81, "sink"), (82, "refrigerator"), (84, "book"),
    (85, "clock"), (86, "vase"), (87, "scissors"), (88, "teddy bear"), (89, "hair drier"), (90, "toothbrush"),
)  # fmt: skip

COCO_CLASSES: tuple[str, ...] = tuple(name for _, name in _COCO_CATEGORIES)
COCO_CATEGORY_IDS: tuple[int, ...] = tuple(cat_id for cat_id, _ in _COCO_CATEGORIES)  # label → category id


class COCOAnnotationTransform:
    """COCO annotations of one image → ``[[x1, y1, x2, y2, label], ...]`` relative to the image.

    Args:
        category_to_label: category id → label; default the standard 80 (``COCO_CATEGORY_IDS`` order).
    Call args:
        anns: the image's annotation dicts; width, height: image size; source: the file named in messages.

    Crowd regions are left out; boxes are clipped to the image, and boxes without area are dropped and logged.
    A category id not in the mapping raises ValueError.
    """

    def __init__(self, category_to_label: Mapping[int, int] | None = None) -> None:
        if category_to_label is None:
            category_to_label = {cat_id: label for label, cat_id in enumerate(COCO_CATEGORY_IDS)}
        self.category_to_label = dict(category_to_label)

    def __call__(
        self, anns: Sequence[Mapping[str, Any]], width: int, height: int, source: str = "annotation"
    ) -> list[list[float]]:
        rows = []
        for ann in anns:
            if ann.get("iscrowd", 0):
                continue
            label = self.category_to_label.get(ann["category_id"])
            if label is None:
                raise ValueError(f"{source}: annotation {ann.get('id')} has unknown category id {ann['category_id']}")
            x, y, w, h = (float(v) for v in ann["bbox"])
            x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + w, float(width)), min(y + h, float(height))
            if x2 <= x1 or y2 <= y1:
                logger.warning(
                    "%s: annotation %s bbox %s has no area inside the image; dropped",
                    source,
                    ann.get("id"),
                    ann["bbox"],
                )
                continue
            rows.append([x1 / width, y1 / height, x2 / width, y2 / height, label])
        return rows


class COCODetection(DetectionDataset):
    """COCO detection dataset (every image of the split, those without annotations included).

    Args:
        root: the COCO folder (holding annotations/ and images/). image_set: e.g. "train2014", "val2014".
        transform: as for VOCDetection. target_transform: ``(anns, width, height) -> rows``; default
            ``COCOAnnotationTransform`` with this dataset's category mapping.
        skip_bad: ``__getitem__`` skips bad samples (logged once, counted in ``bad_items``) instead of raising.

    Attributes:
        ids: image ids in ascending order. category_ids: label → category id. category_to_label: the inverse.
        class_names: names in label order. num_annotations: how many non-crowd annotations (objects to learn
        from) the file holds; ``has_ground_truth``: whether there is any to score against.
    Every annotation is checked when the dataset is built (a ValueError names the file, the annotation and the
    field): its ``category_id`` among the file's categories, its ``image_id`` among its images, its ``bbox`` four
    finite numbers. A file without ``"annotations"`` (a test split) is a split without ground truth.
    The 80 standard categories always get the standard labels 0–79 (``COCO_CLASSES`` order), also for a json
    holding only some of them; a json with other categories (a custom dataset) gets its ids in ascending order.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        image_set: str = "train2014",
        transform: Transform | None = None,
        target_transform: Any = None,
        dataset_name: str = "MS COCO",
        skip_bad: bool = True,
    ) -> None:
        super().__init__(transform, skip_bad)
        self.root = str(root)
        self.image_set = image_set
        self.name = dataset_name
        ann_file = Path(root, "annotations", f"instances_{image_set}.json")
        self.coco = _load_coco(ann_file)
        self.num_annotations = _check_annotations(self.coco, ann_file)
        self.image_dir = Path(root, "images", image_set)
        self.ids: list[int] = sorted(self.coco.imgs)
        names = {cat["id"]: cat["name"] for cat in self.coco.cats.values()}
        standard = dict(_COCO_CATEGORIES)
        if all(standard.get(cat_id) == name for cat_id, name in names.items()):
            self.category_ids = list(COCO_CATEGORY_IDS)
            self.class_names = list(COCO_CLASSES)
        else:
            self.category_ids = sorted(names)
            self.class_names = [names[cat_id] for cat_id in self.category_ids]
        self.category_to_label = {cat_id: label for label, cat_id in enumerate(self.category_ids)}
        self.target_transform = target_transform or COCOAnnotationTransform(self.category_to_label)

    @property
    def has_ground_truth(self) -> bool:
        """Whether the split has objects to score detections against (a test split has none)."""
        return self.num_annotations > 0

    def _image_path(self, index: int) -> Path:
        return self.image_dir / self.coco.imgs[self.ids[index]]["file_name"]

    def pull_image(self, index: int) -> np.ndarray:
        """The image as read, BGR uint8 ``[H, W, 3]``.

        Raises FileNotFoundError/ValueError naming the file, also when its size differs from the annotation
        file's ``width``/``height`` (the boxes were drawn on another picture): training and scoring alike read
        pictures here.
        """
        path = self._image_path(index)
        img = read_image(path)
        height, width = img.shape[:2]
        info = self.coco.imgs[self.ids[index]]
        if (info.get("width"), info.get("height")) not in ((width, height), (None, None)):
            raise ValueError(
                f"{path}: the annotation file says {info.get('width')}x{info.get('height')} but the image is "
                f"{width}x{height}"
            )
        return img

    def _annotations(self, index: int) -> list[dict]:
        return self.coco.imgToAnns.get(self.ids[index], [])

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        path = self._image_path(index)
        img = self.pull_image(index)
        height, width = img.shape[:2]
        if isinstance(self.target_transform, COCOAnnotationTransform):
            rows = self.target_transform(self._annotations(index), width, height, source=str(path))
        else:
            rows = self.target_transform(self._annotations(index), width, height)
        return img, targets_array(rows)

    def pull_anno(self, index: int) -> tuple[int, list[list[float]]]:
        """``(image id, [[x, y, x + w, y + h, label], ...])`` in pixels, crowd regions left out, nothing clipped."""
        rows = []
        for ann in self._annotations(index):
            if ann.get("iscrowd", 0):
                continue
            if ann["category_id"] not in self.category_to_label:
                raise ValueError(
                    f"annotation {ann.get('id')} of image {self.ids[index]} has unknown category {ann['category_id']}"
                )
            x, y, w, h = (float(v) for v in ann["bbox"])
            rows.append([x, y, x + w, y + h, self.category_to_label[ann["category_id"]]])
        return self.ids[index], rows


def _load_coco(ann_file: Path) -> Any:
    """A pycocotools ``COCO`` index of ``ann_file``, its progress prints silenced."""
    if not ann_file.is_file():
        raise FileNotFoundError(
            f"COCO annotation file not found: {ann_file} (expected ROOT/annotations/instances_SPLIT.json; "
            "fetch COCO with data/scripts/COCO2014.sh)"
        )
    try:
        from pycocotools.coco import COCO  # lazily: only COCO users need pycocotools
    except ImportError as err:
        raise ImportError("COCODetection needs pycocotools: pip install pycocotools") from err
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            coco = COCO(str(ann_file))
        except (ValueError, KeyError, TypeError) as err:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"{ann_file}: not a COCO instances file ({type(err).__name__}: {err})") from None
    # pycocotools reads these keys unguarded (getAnnIds, loadRes): a test split's file has no "annotations"
    for key in ("annotations", "categories"):
        coco.dataset.setdefault(key, [])
    return coco


def _check_annotations(coco: Any, ann_file: Path) -> int:
    """Check every annotation of ``coco`` (read from ``ann_file``) against its own images and categories.

    Returns:
        how many annotations are not crowd regions (the objects training learns from).
    Raises:
        ValueError naming ``ann_file``, the annotation id and the field: a ``category_id`` not among the
        categories, an ``image_id`` not among the images, a ``bbox`` that is not four finite numbers.
    """
    anns = coco.dataset["annotations"]
    if not _all_valid(anns, coco):  # a file as large as COCO's train split is checked in bulk first
        for ann in anns:
            _check_annotation(ann, coco, ann_file)
    return sum(1 for ann in anns if not ann.get("iscrowd", 0))


def _all_valid(anns: Sequence[Mapping[str, Any]], coco: Any) -> bool:
    """True when every annotation's ids are listed and every bbox is four finite numbers (False: look closer)."""
    try:
        listed = {ann.get("category_id") for ann in anns} <= coco.cats.keys()
        listed = listed and {ann.get("image_id") for ann in anns} <= coco.imgs.keys()
        boxes = np.array([ann.get("bbox") for ann in anns])
    except (TypeError, ValueError):  # an unhashable id, ragged boxes
        return False
    return listed and boxes.dtype.kind in "iuf" and boxes.shape == (len(anns), 4) and bool(np.isfinite(boxes).all())


def _check_annotation(ann: Mapping[str, Any], coco: Any, ann_file: Path) -> None:
    """Raise ValueError naming ``ann_file``, the annotation and the field when ``ann`` is not valid."""
    where = f"{ann_file}: annotation {ann.get('id')}"
    if not _listed(ann.get("category_id"), coco.cats):
        raise ValueError(
            f"{where}: category_id {ann.get('category_id')!r} is not among the {len(coco.cats)} categories of the file"
        )
    if not _listed(ann.get("image_id"), coco.imgs):
        raise ValueError(
            f"{where}: image_id {ann.get('image_id')!r} is not among the {len(coco.imgs)} images of the file"
        )
    if not _is_box(ann.get("bbox")):
        raise ValueError(f"{where}: bbox {ann.get('bbox')!r}, expected [x, y, width, height] (four finite numbers)")


def _listed(key: Any, table: Mapping) -> bool:
    try:
        return key in table
    except TypeError:  # an unhashable id (a list) is listed nowhere
        return False


def _is_box(bbox: Any) -> bool:
    return (
        isinstance(bbox, list)
        and len(bbox) == 4
        and all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox)
    )
