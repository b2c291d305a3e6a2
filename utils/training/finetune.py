"""Fine-tuning: a new model, with its own classes, that starts from a trained detector's weights.

    source = read_source("weights/ssd300_mAP_77.43_v2.pth")          # any weights file the project reads
    facts = finetune_facts(source, ["car", "person", "widget"], "VOC")  # the source's model, the new classes
    plan = plan_finetune(source, facts, class_map={"widget": "bottle"})
    net = build_from_facts(facts, "train")
    report = apply_finetune(net, plan)                                  # report.lines(): what was loaded

Every tensor whose name and shape fit is loaded. A class head (``conf.{i}.weight`` / ``.bias``, or SSDLite's
``conf.{i}.pointwise.*``) lays its output channels out as ``anchor · C + k``; its rows for the background and for
every new class the source also scores (names matched ignoring case and surrounding spaces, or through a class
map) are copied from the source's rows of that class, anchor by anchor, and the other rows keep their fresh
initialisation. The box-regression heads (``loc.*``) are loaded only when both models have the same priors.
``freeze(net, "backbone")`` keeps the backbone as loaded (weights and BatchNorm statistics) while the rest trains.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from data.config import get_config
from layers.functions.prior_box import boxes_per_location
from utils.checkpoint import (
    ModelFacts,
    describe_state_dict,
    facts_from_meta,
    model_name,
    read_checkpoint,
    read_sidecar,
    resolve_facts,
    same_priors,
)

FINETUNED_FROM = "finetuned_from"  # where a fine-tuned model's files record the source and the classes kept
FREEZE_CHOICES = ("none", "backbone")
# the backbone of each architecture: the module attribute whose parameters and BatchNorm statistics freeze keeps
BACKBONES = {"vgg16": "vgg", "mobilenet_v3_large": "backbone"}
CLASS_HEAD_KEY = re.compile(r"conf\.(\d+)\.(pointwise\.)?(weight|bias)")
LOC_HEAD_PREFIX = "loc."
_MAX_NAMED = 6  # keys named per line of the report
_BACKGROUND = "background"


# ------------------------------------------------------------------------------------------ class-head rows


def class_rows(rows: int, num_classes: int, classes: Sequence[int], key: str = "class head") -> Tensor:
    """The output channels of a class head that score ``classes``, anchor by anchor.

    Args:
        rows: the head's output channels, ``anchors · num_classes`` (channel ``a · num_classes + k`` scores class
            ``k`` for anchor ``a``).
        classes: class indices (0 = background), in the order wanted.
        key: names the tensor in the error.
    Returns:
        LongTensor[anchors · len(classes)]: at position ``a · len(classes) + j``, the channel
        ``a · num_classes + classes[j]``.
    Raises:
        ValueError: ``rows`` is not a multiple of ``num_classes``.
    """
    if num_classes < 1 or rows % num_classes:
        raise ValueError(f"{key} has {rows} outputs, not a multiple of {num_classes} classes")
    anchors = torch.arange(rows // num_classes)[:, None] * num_classes
    return (anchors + torch.as_tensor(list(classes), dtype=torch.long)[None, :]).reshape(-1)


def keep_class_rows(state: dict[str, Tensor], num_classes: int, kept: Sequence[int]) -> None:
    """Keep, in place, the rows of every class head in ``state`` that score the classes ``kept``, in that order
    (a head of ``anchors · num_classes`` outputs becomes one of ``anchors · len(kept)``)."""
    for key in [k for k in state if CLASS_HEAD_KEY.fullmatch(k)]:
        index = class_rows(state[key].shape[0], num_classes, kept, key)
        state[key] = state[key][index].clone()


# ------------------------------------------------------------------------------------------ the source


@dataclass(frozen=True, eq=False)
class FinetuneSource:
    """A trained detector to start from.

    Args:
        path: the weights file.
        state: its state_dict (read with ``weights_only=True``).
        facts: its model facts (architecture, size, BatchNorm, priors, preprocessing; recorded, or for a bare
            classic ``.pth`` the VOC priors, COCO's for 81 classes).
        class_names: the classes it scores, in label order; None when the file names none (a bare ``.pth`` that
            scores neither VOC's 20 nor COCO's 80 classes: its facts then hold numbers in their place).
    """

    path: str
    state: Mapping[str, Tensor] = field(repr=False)
    facts: ModelFacts
    class_names: tuple[str, ...] | None

    @property
    def num_classes(self) -> int:
        """Classes the source scores, background included."""
        return self.facts.num_classes


def read_source(path: str | os.PathLike[str]) -> FinetuneSource:
    """Read a weights file to fine-tune from: a ``.pth`` with or without sidecar, a ``_best.pth``, a ``_last.ckpt``,
    the published VOC model, a converted torchvision model.

    Raises:
        ValueError (``utils.checkpoint.CheckpointError``): a missing, unreadable or non-SSD file (one line naming it).
    """
    source = os.fspath(path)
    state, meta = read_checkpoint(source)
    if read_sidecar(source) is not None or facts_from_meta(meta, source) is not None:
        facts, _ = resolve_facts(source, state, meta)
        return FinetuneSource(source, state, facts, facts.class_names)
    size, num_classes, batch_norm = describe_state_dict(state)
    if num_classes in (21, 81):  # the classic port's VOC and COCO models
        facts, _ = resolve_facts(source, state, meta, dataset="COCO" if num_classes == 81 else "VOC")
        return FinetuneSource(source, state, facts, facts.class_names)
    numbers = tuple(str(k) for k in range(1, num_classes))
    facts = ModelFacts(size, batch_norm, numbers, get_config("VOC", size), None)
    return FinetuneSource(source, state, facts, None)


def finetune_facts(
    source: FinetuneSource,
    class_names: Sequence[str],
    dataset: str | None,
    prior_config: Mapping[str, Any] | None = None,
) -> ModelFacts:
    """The facts of the model a fine-tune trains: the source's architecture, size, BatchNorm, preprocessing and
    (unless ``prior_config`` is given) priors, with the new ``class_names``."""
    f = source.facts
    cfg = f.prior_config if prior_config is None else prior_config
    return ModelFacts(f.size, f.batch_norm, tuple(class_names), cfg, dataset, f.architecture, f.preprocessing)


def read_class_map(path: str | os.PathLike[str]) -> dict[str, str]:
    """A ``--class_map`` file: a JSON object, new class name → the source's class name.

    Raises:
        FileNotFoundError, ValueError: one line naming the file.
    """
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"class map not found: {os.fspath(path)}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot read the class map {os.fspath(path)}: {err}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{os.fspath(path)}: not valid JSON ({err.msg} at line {err.lineno})") from None
    if not isinstance(record, dict) or not all(isinstance(v, str) and v.strip() for v in record.values()):
        raise ValueError(f"{os.fspath(path)}: expected a JSON object of new class name -> source class name")
    return {str(k): v for k, v in record.items()}


# ------------------------------------------------------------------------------------------ the plan


@dataclass(frozen=True)
class FinetunePlan:
    """What a fine-tune copies: the source, the new model's facts, and the class rows each new class takes.

    ``rows`` pairs (new class index, source class index) for the background (0, 0) and every class whose rows are
    copied; ``kept`` maps each such new class name to the source's name; ``new`` lists the classes that start
    afresh.
    """

    source: FinetuneSource
    target: ModelFacts
    rows: tuple[tuple[int, int], ...]
    kept: Mapping[str, str]
    new: tuple[str, ...]

    @property
    def same_priors(self) -> bool:
        return same_priors(self.source.facts.prior_config, self.target.prior_config)

    def record(self) -> dict[str, Any]:
        """What the new model's files record about where it started (plain JSON values)."""
        return {"source": self.source.path, "kept": dict(self.kept), "new": list(self.new)}


def _key(name: str) -> str:
    return name.strip().lower()


def plan_finetune(
    source: FinetuneSource | str | os.PathLike[str],
    target: ModelFacts,
    class_map: Mapping[str, str] | str | os.PathLike[str] | None = None,
) -> FinetunePlan:
    """Match the new model's classes to the source's.

    Args:
        source: a :class:`FinetuneSource` or the path of its weights file.
        target: the facts of the model to train (:func:`finetune_facts`).
        class_map: new class name → the source's class name, for names that differ (a mapping, or the path of a
            JSON file); names are matched ignoring case and surrounding spaces.
    Raises:
        ValueError: a source of another architecture or BatchNorm choice (nothing of it fits), or a class map that
            names a class the new model or the source does not have.
    """
    src = source if isinstance(source, FinetuneSource) else read_source(source)
    sf = src.facts
    if (sf.architecture, sf.batch_norm) != (target.architecture, target.batch_norm):
        raise ValueError(
            f"nothing of {src.path} fits: it holds an {model_name(sf)}, the model to train is an "
            f"{model_name(target)} (a fine-tune keeps the source's architecture and BatchNorm)"
        )
    mapping = _class_map(class_map, src, target)
    source_index = {_key(n): i + 1 for i, n in enumerate(src.class_names or ())}
    rows, kept, new = [(0, 0)], {}, []
    for j, name in enumerate(target.class_names, start=1):
        wanted = mapping.get(_key(name), name)
        i = source_index.get(_key(wanted))
        if i is None:
            new.append(name)
        else:
            rows.append((j, i))
            kept[name] = src.class_names[i - 1]  # type: ignore[index]
    return FinetunePlan(src, target, tuple(rows), kept, tuple(new))


def _class_map(
    class_map: Mapping[str, str] | str | os.PathLike[str] | None, src: FinetuneSource, target: ModelFacts
) -> dict[str, str]:
    """The class map keyed by lowered new names; every entry names a new class and a class of the source."""
    if class_map is None:
        return {}
    where = "the class map"
    if not isinstance(class_map, Mapping):
        where, class_map = f"--class_map {os.fspath(class_map)}", read_class_map(class_map)
    if class_map and src.class_names is None:
        raise ValueError(f"{where} maps class names, but {src.path} records none (no sidecar beside it)")
    new_names = {_key(n) for n in target.class_names}
    source_names = {_key(n) for n in src.class_names or ()}
    for new, old in class_map.items():
        if _key(new) not in new_names:
            raise ValueError(f"{where} maps {new!r}, which is not one of the new model's {len(new_names)} classes")
        if _key(old) not in source_names:
            shown = ", ".join(src.class_names[: _MAX_NAMED * 4])  # type: ignore[index]
            raise ValueError(f"{where} maps {new!r} to {old!r}, which {src.path} does not score ({shown})")
    return {_key(new): old for new, old in class_map.items()}


# ------------------------------------------------------------------------------------------ loading


@dataclass
class FinetuneReport:
    """What :func:`apply_finetune` did: tensors loaded whole, class heads loaded by rows, and what was left
    (reason → keys)."""

    plan: FinetunePlan
    total: int  # tensors in the model
    loaded: list[str] = field(default_factory=list)
    by_rows: list[str] = field(default_factory=list)
    left: dict[str, list[str]] = field(default_factory=dict)

    def leave(self, reason: str, key: str) -> None:
        self.left.setdefault(reason, []).append(key)

    def summary(self) -> str:
        """The one line a run prints."""
        plan = self.plan
        kept = ", ".join([_BACKGROUND, *(_renamed(new, old) for new, old in plan.kept.items())])
        loaded = len(self.loaded) + len(self.by_rows)
        return (
            f"fine-tuning from {plan.source.path}: {loaded} of {self.total} tensors loaded "
            f"({len(self.by_rows)} class heads by rows); classes kept: {kept}; new: {', '.join(plan.new) or 'none'}"
        )

    def lines(self) -> list[str]:
        """The summary, then one line per reason something of the source or the model was not loaded."""
        return [self.summary(), *(f"not loaded ({reason}): {_keys(keys)}" for reason, keys in self.left.items())]


def _renamed(new: str, old: str) -> str:
    return new if _key(new) == _key(old) else f"{new} (from {old})"


def _keys(keys: Sequence[str]) -> str:
    shown = ", ".join(keys[:_MAX_NAMED])
    return f"{shown}, … ({len(keys)} tensors)" if len(keys) > _MAX_NAMED else shown


def apply_finetune(net: nn.Module, plan: FinetunePlan) -> FinetuneReport:
    """Load the source's weights into ``net``, a freshly built network of ``plan.target``, as the module docstring
    says. ``net`` keeps its fresh initialisation wherever nothing is copied.

    Raises:
        ValueError: nothing of the source fits (one line naming the file and why).
    """
    src, model_state = plan.source, net.state_dict()
    source_state, report = src.state, FinetuneReport(plan, len(model_state))
    priors_fit = plan.same_priors
    boxes = _boxes_by_head(src.facts), _boxes_by_head(plan.target)
    updates: dict[str, Tensor] = {}
    for key, value in model_state.items():
        theirs = source_state.get(key)
        if theirs is None:
            report.leave(f"not in {src.path}", key)
        elif key.startswith(LOC_HEAD_PREFIX) and not priors_fit:
            report.leave(f"other priors than {src.path}'s", key)
        elif CLASS_HEAD_KEY.fullmatch(key):
            copied = _copy_rows(key, value, theirs, plan, boxes)
            if isinstance(copied, str):
                report.leave(copied, key)
            else:
                updates[key] = copied
                report.by_rows.append(key)
        elif theirs.shape != value.shape:
            report.leave(f"other shapes in {src.path}", key)
        else:
            updates[key] = theirs
            report.loaded.append(key)
    for key in source_state:
        if key not in model_state:
            report.leave(f"not in the model, from {src.path}", key)
    if not report.loaded and not report.by_rows:
        reasons = "; ".join(f"{reason}: {_keys(keys)}" for reason, keys in report.left.items())
        raise ValueError(f"nothing of {src.path} fits the {model_name(plan.target)} to train ({reasons})")
    with torch.no_grad():
        for key, value in updates.items():
            model_state[key].copy_(value)
    return report


def _boxes_by_head(facts: ModelFacts) -> list[int]:
    return boxes_per_location(facts.prior_config["aspect_ratios"])


def _copy_rows(
    key: str, ours: Tensor, theirs: Tensor, plan: FinetunePlan, boxes: tuple[list[int], list[int]]
) -> Tensor | str:
    """``ours`` (a class head's fresh tensor) with the kept classes' rows of ``theirs``, or why it cannot take them."""
    head = int(CLASS_HEAD_KEY.fullmatch(key)[1])  # type: ignore[index]
    source_boxes, target_boxes = (b[head] if head < len(b) else 0 for b in boxes)
    if source_boxes != target_boxes or theirs.shape[1:] != ours.shape[1:]:
        return f"other boxes per location than {plan.source.path}'s"
    if theirs.shape[0] != source_boxes * plan.source.num_classes:
        return f"{plan.source.path} scores another number of classes than it records"
    new_rows = class_rows(ours.shape[0], plan.target.num_classes, [j for j, _ in plan.rows], key)
    old_rows = class_rows(theirs.shape[0], plan.source.num_classes, [i for _, i in plan.rows], key)
    out = ours.detach().clone()
    out[new_rows] = theirs[old_rows].to(out.dtype)
    return out


# ------------------------------------------------------------------------------------------ freezing


def backbone_of(net: nn.Module) -> nn.Module:
    """The feature extractor of ``net``: VGG16's ``vgg`` (through conv7), SSDLite's MobileNetV3 ``backbone``."""
    architecture = getattr(net, "architecture", None)
    name = BACKBONES.get(architecture)
    if name is None or not hasattr(net, name):
        raise ValueError(f"no known backbone in a {type(net).__name__} of architecture {architecture!r}")
    return getattr(net, name)


def freeze(net: nn.Module, part: str) -> list[nn.Module]:
    """Keep ``part`` of ``net`` as it is while the rest trains: "none", or "backbone" (:func:`backbone_of`; VGG16's
    L2Norm, the extras and the heads still train).

    Its parameters stop requiring gradients (leave them out of the optimizer), and its BatchNorm layers run on
    their running statistics without updating them: they are put in eval mode and stay so through any later
    ``net.train()``. Returns the modules frozen (empty for "none").
    """
    if part not in FREEZE_CHOICES:
        raise ValueError(f"cannot freeze {part!r}: expected one of {', '.join(FREEZE_CHOICES)}")
    if part == "none":
        return []
    backbone = backbone_of(net)
    for parameter in backbone.parameters():
        parameter.requires_grad_(False)
    norms = [m for m in backbone.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.eval()
        norm.register_forward_pre_hook(_stay_in_eval)
    return [backbone]


def _stay_in_eval(module: nn.Module, inputs: Any) -> None:
    """A frozen BatchNorm normalises with its running statistics even after ``net.train()`` (which would update
    them)."""
    module.training = False


def trainable_parameters(net: nn.Module) -> list[nn.Parameter]:
    """The parameters the optimizer updates: those not frozen."""
    return [p for p in net.parameters() if p.requires_grad]
