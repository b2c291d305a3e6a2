"""Reading SSD weights files and building the model that fits them.

A weights file is any of:
- a plain ``state_dict`` (what ``train.py`` saves as ``ssd{size}_{dataset}_{iter}.pth``, and the published
  ``ssd300_mAP_77.43_v2.pth``),
- a full training checkpoint, a dict whose ``"model"`` entry is the state_dict (``ssd{size}_{dataset}_last.ckpt``),
- either of these saved from a ``DistributedDataParallel`` (``module.``) or ``torch.compile`` (``_orig_mod.``) model.

Everything is read with ``weights_only=True`` on the CPU. Errors are :class:`CheckpointError`, whose message is one
line naming the file, so scripts can print it and exit non-zero.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

if TYPE_CHECKING:
    from ssd import SSD

# number of loc/conf heads (sources) → input size
_SIZE_BY_SOURCES: dict[int, int] = {6: 300, 7: 512}
_WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")
_MAX_LISTED = 16  # SSD512 with another num_classes mismatches 14 conf tensors: list them all


class CheckpointError(ValueError):
    """A weights file is missing, unreadable, or does not fit the requested model."""


def _strip_prefixes(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read ``path`` → ``(state_dict, meta)``.

    ``meta`` holds the non-model entries of a full training checkpoint (``num_classes``, ``class_names``, ``size``,
    ``batch_norm``, … as ``train.py`` records them), and is empty for a plain state_dict.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means a corrupt or foreign file
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"cannot read checkpoint {path}: {first_line}") from exc
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path}: expected a state_dict (a dict of tensors), got {type(obj).__name__}")
    meta: dict[str, Any] = {}
    for entry in ("model", "state_dict", "model_state_dict"):
        if isinstance(obj.get(entry), Mapping):
            meta = {k: v for k, v in obj.items() if k != entry}
            obj = obj[entry]
            break
    non_tensors = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if non_tensors:
        raise CheckpointError(
            f"checkpoint {path}: expected a state_dict or a training checkpoint with a 'model' entry; "
            f"entries {_listing(non_tensors)} are not tensors"
        )
    return _strip_prefixes(obj), meta


def load_state_dict_file(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """Read the model ``state_dict`` from a weights file (plain, full training checkpoint, or DDP-prefixed)."""
    return read_checkpoint(path)[0]


def describe_state_dict(sd: Mapping[str, Tensor]) -> tuple[int, int, bool]:
    """Infer ``(size, num_classes, batch_norm)`` of the SSD that produced ``sd``.

    size: 300 with 6 loc heads, 512 with 7; num_classes: ``conf.0.weight.shape[0] // 4`` (4 default boxes per
    location at the first source in both sizes); batch_norm: some key ends in ``running_mean``.
    """
    if "conf.0.weight" not in sd or "loc.0.weight" not in sd:
        hint = " (this looks like a backbone-only file such as vgg16_reducedfc.pth)" if "0.weight" in sd else ""
        raise CheckpointError(f"not an SSD state_dict: no 'loc.0.weight'/'conf.0.weight' keys{hint}")
    heads = {key.split(".")[1] for key in sd if key.startswith("loc.") and key.endswith(".weight")}
    if len(heads) not in _SIZE_BY_SOURCES:
        raise CheckpointError(f"SSD state_dict with {len(heads)} loc heads; expected 6 (SSD300) or 7 (SSD512)")
    batch_norm = any(key.endswith("running_mean") for key in sd)
    return _SIZE_BY_SOURCES[len(heads)], int(sd["conf.0.weight"].shape[0]) // 4, batch_norm


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else "")


def fit_report(model_sd: Mapping[str, Tensor], sd: Mapping[str, Tensor]) -> str:
    """One-line description of how ``sd`` differs from ``model_sd``; empty when it loads strictly."""
    problems = []
    mismatched = [
        f"{k} checkpoint {list(sd[k].shape)} vs model {list(v.shape)}"
        for k, v in model_sd.items()
        if k in sd and sd[k].shape != v.shape
    ]
    missing = [k for k in model_sd if k not in sd]
    unexpected = [k for k in sd if k not in model_sd]
    if mismatched:
        problems.append(f"shape mismatch: {_listing(mismatched)}")
    if missing:
        problems.append(f"missing keys: {_listing(missing)}")
    if unexpected:
        problems.append(f"unexpected keys: {_listing(unexpected)}")
    return "; ".join(problems)


def model_from_state_dict(
    sd: Mapping[str, Tensor],
    phase: str = "test",
    size: int | None = None,
    num_classes: int | None = None,
    source: str = "state_dict",
    **detect_kwargs: Any,
) -> SSD:
    """Build the SSD that fits ``sd`` and load it strictly; see :func:`load_model`. ``source`` names the file in
    errors."""
    from ssd import build_ssd  # scripts → ssd; imported here so this module stays light

    found_size, found_classes, batch_norm = describe_state_dict(sd)
    size = found_size if size is None else int(size)
    num_classes = found_classes if num_classes is None else int(num_classes)
    net = build_ssd(phase, size=size, num_classes=num_classes, batch_norm=batch_norm, **detect_kwargs)
    report = fit_report(net.state_dict(), sd)
    if report:
        raise CheckpointError(
            f"checkpoint {source} (SSD{found_size}, {found_classes} classes) does not fit "
            f"SSD{size} with {num_classes} classes: {report}"
        )
    net.load_state_dict(sd, strict=True)
    if phase == "test":
        net.eval()
    return net


def load_model(
    path: str | os.PathLike[str],
    phase: str = "test",
    size: int | None = None,
    num_classes: int | None = None,
    **detect_kwargs: Any,
) -> SSD:
    """Build the SSD that fits the weights file ``path`` and load it strictly.

    ``size`` and ``num_classes`` default to what the file holds (see :func:`describe_state_dict`); when given
    and different, the strict load fails with a :class:`CheckpointError` naming the keys and shapes. BatchNorm is
    recognised from the keys. ``detect_kwargs`` go to ``Detect`` (``top_k``, ``conf_thresh``, ``nms_thresh``,
    ``keep_top_k``). The model is returned on the CPU, in eval mode for phase "test".
    """
    sd = load_state_dict_file(path)
    return model_from_state_dict(sd, phase, size, num_classes, source=os.fspath(path), **detect_kwargs)
