"""Which flags a resumed run takes from its checkpoint and which from the command line: a rule per flag.

- ``MODEL``: what the weights are (dataset, backbone, size, classes, priors, BatchNorm) and which part of them
  stays frozen. Taken from the checkpoint; a flag given with another value is an error.
- ``DATA_ORDER``: what fixes the batches (seed, global batch size, image sets). Taken from the checkpoint unless
  given; a different value is allowed, with a note that the run no longer continues exactly.
- ``SOLVER``: the optimisation recipe (lr, schedule, momentum, ..., precision, length). Taken from the checkpoint
  unless given; a given value rebuilds the schedule from the restored state.
- ``COMMAND_LINE``: locations, the machine, logging and validation. Always from the command line (or its
  defaults), never inherited: a moved run writes where it is told.
- ``START_ONLY``: how a new run starts (``--finetune`` and its ``--class_map``). Never taken from the checkpoint;
  train.py refuses them with ``--resume`` (the checkpoint's extra state records where the run started).

Every flag of train.py's parser has exactly one rule (a test checks it), so a new flag cannot fall through.
Flags with a checkpoint rule default to None in the parser, so "given" means "not None".
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

MODEL = ("dataset", "backbone", "size", "batch_norm", "classes", "prior_config", "freeze")
DATA_ORDER = ("seed", "batch_size", "image_sets")
SOLVER = (
    "lr", "momentum", "weight_decay", "schedule", "gamma", "lr_steps", "warmup", "clip_grad", "max_iter", "amp",
)  # fmt: skip
COMMAND_LINE = (
    "dataset_root", "save_folder", "resume", "start_iter", "overwrite", "basenet", "cuda", "num_workers",
    "visdom", "visdom_server", "visdom_port", "tensorboard", "log_every", "save_every", "eval_every", "eval_sets",
    "eval_images",
)  # fmt: skip
START_ONLY = ("finetune", "class_map")
RULES: dict[str, str] = {
    **dict.fromkeys(MODEL, "model"),
    **dict.fromkeys(DATA_ORDER, "data_order"),
    **dict.fromkeys(SOLVER, "solver"),
    **dict.fromkeys(COMMAND_LINE, "command_line"),
    **dict.fromkeys(START_ONLY, "start_only"),
}


def merge_resumed_args(args: argparse.Namespace, recorded: Mapping[str, Any], source: str) -> list[str]:
    """Complete ``args`` (flags not given are None) from a checkpoint's recorded args, by the rules above.

    Returns:
        lines saying what was taken from where, and notes (a changed data order).
    Raises:
        ValueError: a MODEL flag that contradicts the checkpoint (one line naming the flag and both values).
    """
    taken, changed_order, notes = [], [], []
    for name, rule in RULES.items():
        given = getattr(args, name, None)
        if rule in ("command_line", "start_only") or name not in recorded:
            continue
        # Files: what a given one holds is checked against the recorded model. The recorded class list names the
        # dataset's labels when none is given; the recorded priors need no file.
        if name == "prior_config" or (name == "classes" and given is not None):
            continue
        old = recorded[name]
        if given is None:
            setattr(args, name, old)
            taken.append(name)
        elif rule == "model" and not _same(given, old):
            raise ValueError(f"--{name} {given} contradicts {source}, which was trained with --{name} {old}")
        elif rule == "data_order" and not _same(given, old):
            changed_order.append(f"--{name} {old} -> {given}")
    if taken:
        notes.append(f"from {source}: " + ", ".join(f"--{n} {_show(getattr(args, n))}" for n in taken))
    if changed_order:
        notes.append(
            "the data order changed (" + "; ".join(changed_order) + "): this resume is no longer an exact "
            "continuation of the recorded run"
        )
    return notes


def solver_changed(args: argparse.Namespace, recorded: Mapping[str, Any]) -> list[str]:
    """The SOLVER flags whose value differs from the checkpoint's."""
    return [name for name in SOLVER if name in recorded and not _same(getattr(args, name), recorded[name])]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (list, tuple)) or isinstance(b, (list, tuple)):
        return list(a or []) == list(b or [])
    return a == b


def _show(value: Any) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)
