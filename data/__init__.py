"""Datasets, configs and input transforms."""

from data.config import COCO_ROOT, MEANS, VOC_ROOT, coco, coco512, get_config, voc, voc512

__all__ = ["COCO_ROOT", "MEANS", "VOC_ROOT", "coco", "coco512", "get_config", "voc", "voc512"]
