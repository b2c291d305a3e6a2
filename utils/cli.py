"""Small helpers shared by the scripts' command lines: boolean flags, class lists, one-line fatal errors."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
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


def resolve_class_names(
    classes: str | os.PathLike[str] | Sequence[str] | None = None,
    dataset: str | None = None,
    num_classes: int | None = None,
    model: str = "the model",
) -> tuple[list[str], str]:
    """The class names a script uses, and where they came from (for the line it prints).

    In order: ``classes`` (a ``--classes`` file, or the names themselves), else ``dataset``'s list (VOC or COCO),
    else — when ``num_classes`` (background included) is known — VOC's list for 21 and COCO's for 81, else VOC's.

    Raises:
        ValueError: names whose count does not fit ``num_classes``, or a count that is neither 21 nor 81 with no
            names given (the message asks for ``--classes``); ``model`` names the weights in the message.
        FileNotFoundError: no such class file.
    """
    if classes is not None and isinstance(classes, (str, os.PathLike)):
        names, where = read_class_names(classes), f"--classes {os.fspath(classes)}"
    elif classes is not None:
        names, where = [str(n) for n in classes], "the given class names"
    elif dataset is not None:
        names, where = dataset_class_names(dataset), f"the {dataset.upper()} class list"
    elif num_classes in (None, 21, 81):
        key = "COCO" if num_classes == 81 else "VOC"
        names, where = dataset_class_names(key), f"the {key} class list"
    else:
        raise ValueError(
            f"{model} scores {num_classes - 1} classes (+ background), not VOC's 20 or COCO's 80: "
            "name them with --classes FILE (one name per line)"
        )
    if num_classes is not None and len(names) + 1 != num_classes:
        raise ValueError(
            f"{model} scores {num_classes - 1} classes (+ background) but {where} names {len(names)}: "
            "give its class list with --classes FILE"
        )
    return names, where


def available_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1
