"""Training state on disk: the names of the files a run writes, atomic writes (torch objects, text, bytes) and
RNG states that load with ``torch.load(..., weights_only=True)``."""

from __future__ import annotations

import contextlib
import os
import random
import re
import tempfile
from collections.abc import Callable
from typing import Any, BinaryIO

import numpy as np
import torch

# What a training run writes into its save folder besides its weights (see is_run_file).
TRAIN_LOG = "train_log.csv"
EVAL_LOG = "eval_log.csv"
LOSS_PLOT = "loss.png"
TENSORBOARD_DIR = "tensorboard"
RUN_LOGS = (TRAIN_LOG, EVAL_LOG, LOSS_PLOT, TENSORBOARD_DIR)
# {stem}_{iteration}.pth and .json, {stem}_best.pth and .json, {stem}_last.ckpt, for any model stem: ssd300_VOC,
# ssd512_COCO, ssdlite320_VOC ...
_RUN_WEIGHTS = re.compile(r"[A-Za-z]+\d+_[A-Za-z0-9]+_(?:(?:\d+|best)\.(?:pth|json)|last\.ckpt)")


def is_run_file(name: str) -> bool:
    """Whether ``name``, a file or folder in a save folder, is one a training run writes, for a model of any name:
    ``{stem}_{iteration}.pth`` with its ``.json`` sidecar, ``{stem}_best.pth`` / ``.json``, ``{stem}_last.ckpt``
    (stems such as ``ssd300_VOC`` or ``ssdlite320_COCO``), and the logs of :data:`RUN_LOGS`."""
    return name in RUN_LOGS or _RUN_WEIGHTS.fullmatch(name) is not None


def run_files(folder: str) -> list[str]:
    """The names in ``folder`` that a training run writes (:func:`is_run_file`), sorted; [] when there is no such
    folder. Other files (a base network, exported models, notes) are not listed."""
    if not os.path.isdir(folder):
        return []
    return sorted(name for name in os.listdir(folder) if is_run_file(name))


def atomic_save(obj: Any, path: str) -> None:
    """``torch.save(obj, path)`` so that ``path`` is either the old file or the complete new one.

    The data goes to a hidden temporary file in the same folder, is flushed and fsynced, then renamed over
    ``path`` (``os.replace`` is atomic on POSIX and Windows). If saving fails the temporary file is removed; a
    process killed mid-write leaves at most a ``.*.tmp`` file beside an intact ``path``, which the next save of
    ``path`` removes once its writer is gone.
    """
    _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_text(path: str, text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` as :func:`atomic_save` writes, byte for byte (no newline translation)."""
    atomic_write_bytes(path, text.encode(encoding))


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` as :func:`atomic_save` writes."""
    _atomic_write(path, lambda f: f.write(data))


def _atomic_write(path: str, write: Callable[[BinaryIO], Any]) -> None:
    """``write(f)`` into a temporary file beside ``path``, fsync, then ``os.replace`` it over ``path``.

    Raises:
        OSError naming ``path`` (a full disk, an unwritable or missing folder), whatever file the system call
        was about: the temporary file is an internal detail.
    """
    try:
        _write_and_replace(path, write)
    except OSError as err:
        named = _naming(err, path)
        if named is err:
            raise
        raise named from err


def _naming(err: OSError, path: str) -> OSError:
    """``err`` with ``path`` as its file name, unless it already names a file other than a temporary one of
    ``path``, e.g. the missing folder (``[Errno 28] No space left on device: 'PATH'``)."""
    named = err.filename is not None and not os.path.basename(str(err.filename)).startswith(_temp_prefix(path))
    if named or err.errno is None:
        return err
    return type(err)(err.errno, err.strerror, path)


def _write_and_replace(path: str, write: Callable[[BinaryIO], Any]) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(prefix=f"{_temp_prefix(path)}{os.getpid()}.", suffix=".tmp", dir=folder)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes the file private; these are ordinary files
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def _temp_prefix(path: str) -> str:
    return f".{os.path.basename(path)}."


def remove_stale_temporaries(path: str) -> list[str]:
    """Remove the temporary files an interrupted save of ``path`` left (``.NAME.PID.*.tmp`` whose process PID is
    gone); returns their paths. A temporary file of a live writer is left alone."""
    folder = os.path.dirname(os.path.abspath(path))
    prefix = _temp_prefix(path)
    removed = []
    for name in os.listdir(folder):
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(folder, name))
            removed.append(os.path.join(folder, name))
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(folder: str) -> None:
    """Make the rename durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def capture_rng_state(cuda: bool = False) -> dict[str, Any]:
    """The Python, NumPy, torch (and CUDA) global RNG states as plain lists, numbers and tensors."""
    version, internal, gauss_next = random.getstate()
    np_state = np.random.get_state(legacy=False)  # noqa: NPY002 - saving the legacy global RNG
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.from_numpy(np_state["state"]["key"].astype(np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
    }
    if cuda and torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state` (the CUDA states only where CUDA is available)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss_next"]))
    npy = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        {
            "bit_generator": npy["bit_generator"],
            "state": {"key": npy["key"].numpy().astype(np.uint32), "pos": npy["pos"]},
            "has_gauss": npy["has_gauss"],
            "gauss": npy["gauss"],
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)
