"""User-changeable prior ("default box") configs: the ``--prior_config`` JSON file and the record kept with weights.

A prior config file holds, per source feature map (6 for SSD300 and SSDLite320, 7 for SSD512), the square prior size
``min_sizes``, the larger square's partner ``max_sizes`` (that square has side ``sqrt(min * max)``) and the extra
``aspect_ratios`` (each ratio r >= 1 adds the boxes r:1 and 1:r), in the network's input pixels::

    {"min_sizes": [30, 60, 111, 162, 213, 264],
     "max_sizes": [60, 111, 162, 213, 264, 315],
     "aspect_ratios": [[2], [2, 3], [2, 3], [2, 3], [2], [2]]}

Feature maps, steps, variance and clip are fixed by the input size; a file may repeat them (``min_dim`` too) when
they equal the fixed values. A weights sidecar records ``clip`` as true (the classic: every value clamped to [0, 1]),
false, or "sizes" (widths and heights only, as torchvision's SSD300 has them). Boxes per location follow from the
ratios (2 + 2 * len(ratios)), so other ratios give the model other heads: weights trained with them must be loaded
with the same config (``prior_config_dict`` is what a weights sidecar records, ``prior_config_from_dict`` reads it
back).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

USER_KEYS: tuple[str, ...] = ("min_sizes", "max_sizes", "aspect_ratios")
FIXED_KEYS: tuple[str, ...] = ("feature_maps", "steps", "variance", "clip", "min_dim")
# What a weights sidecar records: everything PriorBox and the box coder need.
PRIOR_KEYS: tuple[str, ...] = ("feature_maps", "steps", "min_sizes", "max_sizes", "aspect_ratios", "variance", "clip",
                               "min_dim")  # fmt: skip


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _sizes(value: Any, field: str, count: int, source: str) -> tuple[float, ...]:
    """A list of ``count`` positive numbers, or ValueError naming ``source`` and ``field``."""
    if not isinstance(value, (list, tuple)) or len(value) != count:
        got = f"{len(value)} entries" if isinstance(value, (list, tuple)) else repr(value)
        raise ValueError(f"{source}: {field} must list {count} numbers (one per source feature map), got {got}")
    for k, v in enumerate(value):
        if not _is_number(v) or v <= 0:
            raise ValueError(f"{source}: {field}[{k}] is {v!r}, expected a positive number (pixels)")
    return tuple(value)


def _ratios(value: Any, count: int, source: str) -> tuple[tuple[float, ...], ...]:
    """``count`` lists of aspect ratios >= 1, or ValueError naming ``source`` and the entry."""
    if not isinstance(value, (list, tuple)) or len(value) != count:
        got = f"{len(value)} entries" if isinstance(value, (list, tuple)) else repr(value)
        raise ValueError(
            f"{source}: aspect_ratios must hold {count} lists (one per source feature map, e.g. [2] or [2, 3]), "
            f"got {got}"
        )
    for k, ratios in enumerate(value):
        if not isinstance(ratios, (list, tuple)):
            raise ValueError(f"{source}: aspect_ratios[{k}] is {ratios!r}, expected a list of numbers >= 1")
        for j, r in enumerate(ratios):
            if not _is_number(r) or r < 1:
                raise ValueError(
                    f"{source}: aspect_ratios[{k}][{j}] is {r!r}, expected a number >= 1 (r adds the boxes r:1 and 1:r)"
                )
    return tuple(tuple(ratios) for ratios in value)


def _check_user_fields(fields: Mapping[str, Any], count: int, source: str) -> dict[str, Any]:
    """Validated ``min_sizes``, ``max_sizes`` and ``aspect_ratios`` for ``count`` source maps."""
    min_sizes = _sizes(fields["min_sizes"], "min_sizes", count, source)
    max_sizes = _sizes(fields["max_sizes"], "max_sizes", count, source)
    for k, (low, high) in enumerate(zip(min_sizes, max_sizes)):
        if high <= low:
            raise ValueError(f"{source}: max_sizes[{k}] = {high!r} must be greater than min_sizes[{k}] = {low!r}")
    return {"min_sizes": min_sizes, "max_sizes": max_sizes,
            "aspect_ratios": _ratios(fields["aspect_ratios"], count, source)}  # fmt: skip


def _plain(value: Any) -> Any:
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def _same(a: Any, b: Any) -> bool:
    """Equality that treats tuples and lists alike (JSON gives lists, the configs hold tuples)."""
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return a == b


def _check_fixed(fields: Mapping[str, Any], base_cfg: Mapping[str, Any], keys: Sequence[str], source: str) -> None:
    size = base_cfg["min_dim"]
    for key in keys:
        if key in fields and not _same(fields[key], base_cfg[key]):
            expected = json.dumps(prior_config_dict(base_cfg)[key])
            raise ValueError(
                f"{source}: {key} is {json.dumps(fields[key])}, but SSD{size} fixes it to {expected} "
                "(only min_sizes, max_sizes and aspect_ratios can change)"
            )


def _full_config(base_cfg: Mapping[str, Any], user: Mapping[str, Any]) -> dict[str, Any]:
    cfg = dict(base_cfg)
    cfg.update(user)
    same_priors = all(_same(cfg[key], base_cfg[key]) for key in PRIOR_KEYS)
    cfg["name"] = base_cfg.get("name", "custom") if same_priors else "custom"
    return cfg


def load_prior_config(path: str | os.PathLike, size: int, base_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """Read a ``--prior_config`` JSON file and return the full config to build SSD``size`` with.

    Args:
        path: JSON object with ``min_sizes``, ``max_sizes`` and ``aspect_ratios`` (see the module docstring).
        size: the input size, 300, 512 or 320 (must equal ``base_cfg["min_dim"]``).
        base_cfg: the dataset's config of that size (e.g. ``get_config("VOC", 300)``): it gives every other key.
    Returns:
        a plain dict with every key of ``base_cfg``, the three prior fields replaced and ``name`` "custom".
    Raises:
        FileNotFoundError: no such file. ValueError (one line naming the file and the field): not JSON, a missing
        or unknown field, wrong lengths, a size that is not a positive number, max <= min, a ratio below 1.
    """
    if int(base_cfg["min_dim"]) != int(size):
        raise ValueError(f"base config {base_cfg.get('name')!r} is for SSD{base_cfg['min_dim']}, not SSD{size}")
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"prior config not found: {path}") from None
    except (IsADirectoryError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read the prior config ({err})") from None
    try:
        fields = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(fields, dict):
        raise ValueError(f"{path}: expected a JSON object with min_sizes, max_sizes and aspect_ratios")
    unknown = sorted(set(fields) - set(USER_KEYS) - set(FIXED_KEYS))
    if unknown:
        raise ValueError(
            f"{path}: unknown field {unknown[0]!r} (expected min_sizes, max_sizes, aspect_ratios; "
            f"{', '.join(FIXED_KEYS)} may be repeated when they equal SSD{size}'s)"
        )
    missing = [key for key in USER_KEYS if key not in fields]
    if missing:
        raise ValueError(f"{path}: missing field {missing[0]!r} (a prior config lists {', '.join(USER_KEYS)})")
    _check_fixed(fields, base_cfg, FIXED_KEYS, str(path))
    user = _check_user_fields(fields, len(base_cfg["feature_maps"]), str(path))
    cfg = _full_config(base_cfg, user)
    cfg["name"] = "custom"
    return cfg


def prior_config_dict(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON-able prior part of a config (``PRIOR_KEYS``, tuples as lists), as a weights sidecar records it."""
    return {key: _plain(cfg[key]) for key in PRIOR_KEYS}


def prior_config_from_dict(
    d: Mapping[str, Any], base_cfg: Mapping[str, Any], source: str = "prior config"
) -> dict[str, Any]:
    """The inverse of ``prior_config_dict``: the full config for a recorded prior config, validated.

    Args:
        d: a mapping with every key of ``PRIOR_KEYS``. base_cfg: the dataset's config of the model's size (it
            gives the solver keys; feature maps, steps and min_dim must equal its own).
        source: names the record in messages (e.g. the sidecar's path).
    Returns:
        a plain dict with every key of ``base_cfg``; ``name`` is the base's when the priors equal its own,
        "custom" otherwise.
    Raises:
        ValueError (one line naming ``source`` and the field).
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"{source}: expected a prior config object, got {type(d).__name__}")
    missing = [key for key in PRIOR_KEYS if key not in d]
    if missing:
        raise ValueError(f"{source}: the prior config has no {missing[0]!r} (expected {', '.join(PRIOR_KEYS)})")
    _check_fixed(d, base_cfg, ("feature_maps", "steps", "min_dim"), source)
    variance = d["variance"]
    pair = isinstance(variance, (list, tuple)) and len(variance) == 2
    if not pair or not all(_is_number(v) and v > 0 for v in variance):
        raise ValueError(f"{source}: variance is {variance!r}, expected two positive numbers")
    if not isinstance(d["clip"], bool) and d["clip"] != "sizes":  # "sizes": widths and heights only (PriorBox)
        raise ValueError(f'{source}: clip is {d["clip"]!r}, expected true, false or "sizes"')
    user = _check_user_fields(d, len(base_cfg["feature_maps"]), source)
    return _full_config(base_cfg, {**user, "variance": tuple(variance), "clip": d["clip"]})


def save_prior_config(path: str | os.PathLike, cfg: Mapping[str, Any]) -> None:
    """Write the user part of ``cfg`` (and its ``min_dim``) as a file ``load_prior_config`` reads."""
    record = prior_config_dict(cfg)
    fields = {key: record[key] for key in USER_KEYS}
    fields["min_dim"] = record["min_dim"]
    lines = ",\n".join(f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in fields.items())
    Path(path).write_text("{\n" + lines + "\n}\n", encoding="utf-8")
