"""Datasets, configs and input transforms.

Importing ``data`` reads no file: the datasets open their folders when built, pycocotools is imported only when
a COCODetection is built. Bad input (corrupt images, broken annotations): see data/README.md.
"""

from data.config import COCO_ROOT, MEANS, VOC_ROOT, coco, coco512, get_config, voc, voc512

# isort: split
from data.coco import COCO_CLASSES, COCODetection
from data.common import detection_collate
from data.transforms import BaseTransform, preprocess
from data.voc0712 import VOC_CLASSES, VOCAnnotationTransform, VOCDetection, load_class_names

__all__ = [
    "COCO_CLASSES",
    "COCO_ROOT",
    "MEANS",
    "VOC_CLASSES",
    "VOC_ROOT",
    "BaseTransform",
    "COCODetection",
    "VOCAnnotationTransform",
    "VOCDetection",
    "coco",
    "coco512",
    "detection_collate",
    "get_config",
    "load_class_names",
    "preprocess",
    "voc",
    "voc512",
]
