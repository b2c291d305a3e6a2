"""Small helpers shared by the scripts' command lines: boolean flags, class lists, one-line fatal errors."""

from __future__ import annotations

import argparse
import os
import sys
from typing import NoReturn

_TRUE = {"true", "yes", "y", "1", "on"}
_FALSE = {"false", "no", "n", "0", "off"}


def str2bool(value: str | bool) -> bool:
    """argparse ``type`` for booleans given as true/false (also yes/no, 1/0, on/off)."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def fail(prog: str, message: str, code: int = 2) -> NoReturn:
    """Print ``prog: error: message`` as one line on stderr and exit with ``code``."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(code)


def read_class_names(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a text file, one per line (``data.load_class_names``: errors name the file and line)."""
    from data import load_class_names

    return load_class_names(path)


def dataset_class_names(dataset: str) -> list[str]:
    """``VOC_CLASSES`` or ``COCO_CLASSES`` for ``dataset`` ("VOC"/"COCO", any case)."""
    from data import COCO_CLASSES, VOC_CLASSES

    key = dataset.upper()
    if key not in ("VOC", "COCO"):
        raise ValueError(f"unknown dataset {dataset!r}: expected VOC or COCO")
    return list(VOC_CLASSES if key == "VOC" else COCO_CLASSES)
