"""Which pictures a script reads: one vocabulary for splits and one function that opens them.

Every script names its splits with ``--dataset_root`` and ``--image_sets``: VOC-layout data as ``year:set`` pairs
(``2007:trainval,2012:trainval``), COCO-format data as split names (``train2014,val2014``, each
``annotations/instances_{split}.json``). :func:`open_split` opens them for training, validation, evaluation and
inspection alike.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from torch.utils.data import ConcatDataset, Dataset

from data.coco import COCODetection
from data.common import Transform
from data.voc0712 import VOCAnnotationTransform, VOCDetection

DATASETS = ("VOC", "COCO")


def parse_image_sets(dataset: str, text: str) -> list[tuple[str, str]] | list[str]:
    """``--image_sets`` → VOC ``[("2007", "trainval"), ...]`` or COCO ``["train2014", ...]``.

    Raises:
        ValueError: an empty list, or a VOC item that is not a ``year:set`` pair.
    """
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise ValueError(f"--image_sets is empty: {text!r}")
    if dataset_key(dataset) == "COCO":
        return items
    pairs = []
    for item in items:
        year, _, name = (part.strip() for part in item.partition(":"))
        if not year or not name:
            raise ValueError(f"--image_sets expects year:set pairs like 2007:trainval, got {item!r}")
        pairs.append((year, name))
    return pairs


def dataset_key(dataset: str) -> str:
    """The dataset name in capitals ("voc" → "VOC"); ValueError unless VOC or COCO."""
    key = str(dataset).upper()
    if key not in DATASETS:
        raise ValueError(f"unknown dataset {dataset!r}: expected VOC or COCO")
    return key


def open_split(
    dataset: str,
    root: str,
    image_sets: str,
    transform: Transform | None = None,
    class_names: Sequence[str] | None = None,
    validation: bool = False,
) -> Dataset:
    """The pictures of ``image_sets`` under ``root``.

    Args:
        dataset: "VOC" (VOC layout) or "COCO" (COCO format).
        root: the VOCdevkit or COCO folder.
        image_sets: ``--image_sets`` (see :func:`parse_image_sets`).
        transform: the dataset's transform (``SSDAugmentation`` for training, None to read pictures as they are).
        class_names: VOC layout: the class list, in label order (default VOC's); COCO takes its categories.
        validation: read for scoring (difficult objects kept, a broken file is an error) rather than for training
            (difficult objects left out, broken samples skipped and logged).
    Returns:
        a VOCDetection, a COCODetection, or a ConcatDataset of COCODetections (several COCO splits).
    Raises:
        FileNotFoundError / ValueError naming the root and the problem.
    """
    key = dataset_key(dataset)
    if not os.path.isdir(root):
        raise FileNotFoundError(
            f"{key} root not found: {root} (pass --dataset_root or set SSD_DATA_ROOT; fetch the data with "
            "data/scripts/*.sh, or generate a demo set with `python -m data.synthetic --out DIR`)"
        )
    sets = parse_image_sets(key, image_sets)
    try:
        if key == "COCO":
            parts = [COCODetection(root, name, transform, skip_bad=not validation) for name in sets]
            return parts[0] if len(parts) == 1 else ConcatDataset(parts)
        target = VOCAnnotationTransform(class_to_ind=class_names, keep_difficult=validation)
        return VOCDetection(root, sets, transform, target, skip_bad=not validation)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"cannot open the {key} dataset at {root}: {err}") from None
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"cannot open the {key} dataset at {root}: {err}") from None


def split_parts(split: Dataset) -> list[Any]:
    """The VOCDetection / COCODetection parts of what :func:`open_split` returned."""
    return list(split.datasets) if isinstance(split, ConcatDataset) else [split]


def split_class_names(split: Dataset) -> list[str]:
    """The class names of an opened split, in label order, as written."""
    return list(split_parts(split)[0].class_names)
