"""Model and solver configurations (SSD300/SSD512 on VOC and COCO), pixel means and dataset roots.

Every number a model or a script needs lives here, once. The dicts are read-only mappings so that a
script cannot change a default for everybody else by accident; copy one with ``dict(cfg)`` to edit it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

# BGR order, as the images are read by OpenCV and as the published weights expect.
MEANS: tuple[int, int, int] = (104, 117, 123)

# Computing these strings is all that happens at import time: no file is read.
DATA_ROOT: str = os.path.expanduser(os.environ.get("SSD_DATA_ROOT", os.path.join("~", "data")))
VOC_ROOT: str = os.path.join(DATA_ROOT, "VOCdevkit")
COCO_ROOT: str = os.path.join(DATA_ROOT, "coco")

_SSD300_MAPS = {
    "feature_maps": (38, 19, 10, 5, 3, 1),
    "min_dim": 300,
    "steps": (8, 16, 32, 64, 100, 300),
    "aspect_ratios": ((2,), (2, 3), (2, 3), (2, 3), (2,), (2,)),
    "variance": (0.1, 0.2),
    "clip": True,
}

_SSD512_MAPS = {
    "feature_maps": (64, 32, 16, 8, 4, 2, 1),
    "min_dim": 512,
    "steps": (8, 16, 32, 64, 128, 256, 512),
    "aspect_ratios": ((2,), (2, 3), (2, 3), (2, 3), (2, 3), (2,), (2,)),
    "variance": (0.1, 0.2),
    "clip": True,
}

# SSDLite320, the default boxes of torchvision's DefaultBoxGenerator([[2, 3]] * 6, min_ratio=0.2, max_ratio=0.95).
# Scales s_k = 0.2 + 0.15·k for the six maps, then 1.0: min_sizes are s_k·320, max_sizes s_(k+1)·320. Centres sit
# on each map's own grid, (j + 0.5) / f, so a step is 320 / f: the 3x3 map's is not a whole number of pixels.
_SSDLITE320_MAPS = {
    "feature_maps": (20, 10, 5, 3, 2, 1),
    "min_dim": 320,
    "steps": (16, 32, 64, 320 / 3, 160, 320),
    "min_sizes": (64, 112, 160, 208, 256, 304),
    "max_sizes": (112, 160, 208, 256, 304, 320),
    "aspect_ratios": ((2, 3),) * 6,
    "variance": (0.1, 0.2),
    "clip": True,
}

_VOC_SOLVER = {"num_classes": 21, "lr_steps": (80000, 100000, 120000), "max_iter": 120000}
_COCO_SOLVER = {"num_classes": 81, "lr_steps": (280000, 360000, 400000), "max_iter": 400000}


def _frozen(**entries: Any) -> Mapping[str, Any]:
    return MappingProxyType(dict(entries))


voc: Mapping[str, Any] = _frozen(
    **_VOC_SOLVER,
    **_SSD300_MAPS,
    min_sizes=(30, 60, 111, 162, 213, 264),
    max_sizes=(60, 111, 162, 213, 264, 315),
    name="VOC",
)

coco: Mapping[str, Any] = _frozen(
    **_COCO_SOLVER,
    **_SSD300_MAPS,
    min_sizes=(21, 45, 99, 153, 207, 261),
    max_sizes=(45, 99, 153, 207, 261, 315),
    name="COCO",
)

voc512: Mapping[str, Any] = _frozen(
    **_VOC_SOLVER,
    **_SSD512_MAPS,
    min_sizes=(35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8),
    max_sizes=(76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6),
    name="VOC512",
)

coco512: Mapping[str, Any] = _frozen(
    **_COCO_SOLVER,
    **_SSD512_MAPS,
    min_sizes=(20.48, 51.2, 133.12, 215.04, 296.96, 378.88, 460.8),
    max_sizes=(51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72),
    name="COCO512",
)

# SSDLite320's solver keys are SSD300's: placeholders, the schedule comes from train.py's flags.
voc320: Mapping[str, Any] = _frozen(**_VOC_SOLVER, **_SSDLITE320_MAPS, name="VOC320")

coco320: Mapping[str, Any] = _frozen(**_COCO_SOLVER, **_SSDLITE320_MAPS, name="COCO320")

_CONFIGS: dict[tuple[str, int], Mapping[str, Any]] = {
    ("VOC", 300): voc,
    ("COCO", 300): coco,
    ("VOC", 512): voc512,
    ("COCO", 512): coco512,
    ("VOC", 320): voc320,
    ("COCO", 320): coco320,
}


# The architectures a model's facts may name, as data: the input sizes each builds, the default size, how a BGR
# picture becomes its input (``(pixel - input_mean) / input_std`` per BGR channel, then RGB), and the defaults of its
# test-time post-processing (``layers.Detect``). ``ssd.build_ssd`` maps each name to its network.
ARCHITECTURES: Mapping[str, Mapping[str, Any]] = MappingProxyType(
    {
        "vgg16": _frozen(
            sizes=(300, 512),
            default_size=300,
            input_mean=MEANS,
            input_std=(1.0, 1.0, 1.0),
            postprocess=_frozen(top_k=200, conf_thresh=0.01, nms_thresh=0.45, keep_top_k=None),
        ),
        "mobilenet_v3_large": _frozen(
            sizes=(320,),
            default_size=320,
            input_mean=(127.5, 127.5, 127.5),  # RGB scaled to [-1, 1]
            input_std=(127.5, 127.5, 127.5),
            # torchvision's SSDLite post-processing, boxes clipped to the picture before NMS as it does
            postprocess=_frozen(top_k=300, conf_thresh=0.001, nms_thresh=0.55, keep_top_k=300, clip_boxes=True),
        ),
    }
)
DEFAULT_ARCHITECTURE = "vgg16"


def get_architecture(name: str) -> Mapping[str, Any]:
    """The entry of ``ARCHITECTURES`` for ``name``; ValueError naming the known ones otherwise."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}: expected one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]


def get_config(dataset: str, size: int = 300) -> Mapping[str, Any]:
    """The config for ``dataset`` ("VOC" or "COCO", any case) at input ``size`` (300 or 512; 320 for SSDLite)."""
    key = (str(dataset).upper(), int(size))
    if key not in _CONFIGS:
        raise ValueError(
            f"no SSD config for dataset={dataset!r}, size={size!r}: expected dataset VOC or COCO and size 300, 512 "
            "or 320"
        )
    return _CONFIGS[key]


# The splits each script opens when --image_sets is not given: VOC as "year:set" pairs, COCO as split names.
VOC_TRAIN_SETS: tuple[tuple[str, str], ...] = (("2007", "trainval"), ("2012", "trainval"))
DEFAULT_IMAGE_SETS: Mapping[str, Mapping[str, str]] = MappingProxyType(
    {
        "VOC": _frozen(train=",".join(f"{year}:{name}" for year, name in VOC_TRAIN_SETS), eval="2007:test"),
        "COCO": _frozen(train="train2014", eval="val2014"),
    }
)


def default_image_sets(dataset: str, role: str) -> str:
    """The ``--image_sets`` value of ``dataset`` ("VOC"/"COCO") for ``role`` ("train": training and inspection,
    "eval": evaluation and validation)."""
    return DEFAULT_IMAGE_SETS[str(dataset).upper()][role]
