"""What the scripts' command lines share: one boolean style, the device and worker flags, the AMP dtype map, class
lists, and one exit contract (:func:`run_main`): a user error is one line on stderr and exit 2, Ctrl-C exits 130
without a traceback."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import torch

from data import COCO_CLASSES, VOC_CLASSES, load_class_names

EXIT_USER_ERROR = 2
EXIT_SIGINT = 130  # the shell's code for a process ended by SIGINT (128 + 2)
EXIT_SIGTERM = 143
# The exceptions a script reports as a user error: a bad value, a missing, unreadable or unwritable file, a missing
# optional package. Library code raises them with a message that names the file and the problem.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, ImportError)
AMP_DTYPES: dict[str, torch.dtype | None] = {"none": None, "fp16": torch.float16, "bf16": torch.bfloat16}

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


def fail(prog: str, message: str, code: int = EXIT_USER_ERROR) -> NoReturn:
    """Print ``prog: error: message`` as one line on stderr and exit with ``code`` (``SystemExit``, as argparse)."""
    print(f"{prog}: error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(code)


def run_main(prog: str, work: Callable[[], int], user_errors: tuple[type[BaseException], ...] = ()) -> int:
    """The exit contract every script's ``main`` keeps: ``work()``'s code (0 done, 1 inputs skipped, 130/143 after
    a signal); a user error (:data:`USER_ERRORS` or ``user_errors``) → one line on stderr and ``SystemExit(2)``;
    Ctrl-C → one line and 130, no traceback."""
    try:
        return work()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return EXIT_SIGINT
    except (*USER_ERRORS, *user_errors) as err:
        fail(prog, str(err) or type(err).__name__)


def add_bool(parser: argparse.ArgumentParser, *names: str, default: bool | None, help: str) -> None:  # noqa: A002
    """A boolean flag in the one style of every script: ``--flag`` alone means true, ``--flag true|false``."""
    parser.add_argument(*names, type=str2bool, nargs="?", const=True, default=default, help=f"{help} (true/false)")


def workers_arg(text: str) -> int | str:
    """argparse ``type`` of ``--num_workers``: a count, or ``auto`` (sized from the CPUs the process may use)."""
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers or 'auto', got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected 0 or more workers, or 'auto', got {value}")
    return value


def add_device_flags(
    parser: argparse.ArgumentParser, workers_default: str | None = None, workers_help: str = ""
) -> None:
    """``--cuda`` (default: CUDA when available), ``--amp none|fp16|bf16`` and, for a script with DataLoader
    workers (``workers_default`` given), ``--num_workers N|auto``."""
    add_bool(parser, "--cuda", default=None, help="run on the GPU (default: when one is available)")
    parser.add_argument("--amp", choices=tuple(AMP_DTYPES), default=None, help="mixed precision on CUDA (default none)")
    if workers_default is not None:
        parser.add_argument("--num_workers", type=workers_arg, default=workers_default, help=workers_help)


def choose_device(cuda: bool | None) -> torch.device:
    """``--cuda`` → device: None means CUDA when available; True without CUDA is a ValueError."""
    if cuda is None:
        cuda = torch.cuda.is_available()
    if cuda and not torch.cuda.is_available():
        raise ValueError("--cuda true but no CUDA device is available (use --cuda false)")
    return torch.device("cuda" if cuda else "cpu")


def autocast(device: torch.device, amp: str | None) -> Any:
    """The autocast context of ``--amp`` on ``device`` (disabled for none)."""
    dtype = AMP_DTYPES[amp or "none"]
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def read_class_names(path: str | os.PathLike[str]) -> list[str]:
    """Class names from a text file, one per line (``data.load_class_names``: errors name the file and line)."""
    return load_class_names(path)


def dataset_class_names(dataset: str) -> list[str]:
    """``VOC_CLASSES`` or ``COCO_CLASSES`` for ``dataset`` ("VOC"/"COCO", any case)."""
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
