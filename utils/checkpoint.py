"""Reading SSD weights files, the model facts recorded beside them, and building the model that fits both.

A weights file is any of:
- a plain ``state_dict`` (what ``train.py`` saves as ``ssd{size}_{dataset}_{iter}.pth``, and the published
  ``ssd300_mAP_77.43_v2.pth``),
- a full training checkpoint, a dict whose ``"model"`` entry is the state_dict (``ssd{size}_{dataset}_last.ckpt``),
- either of these saved from a ``DistributedDataParallel`` (``module.``) or ``torch.compile`` (``_orig_mod.``) model.

Model facts (:class:`ModelFacts`: input size, BatchNorm, class names, the whole prior config) travel with the
weights: in a sidecar ``<stem>.json`` beside ``<stem>.pth``, and under ``"model_facts"`` in a full checkpoint.
A sidecar also records the SHA-256 of the weights it describes (:func:`weights_digest`, of the tensors, so a
``.pth`` and the ``_last.ckpt`` of the same weights agree): a sidecar beside other weights is an error on load,
and a writer never replaces a sidecar that describes another file's weights.
:func:`resolve_facts` is the one place that decides which model a script runs: the recorded facts first (flags
that contradict them are errors), else, for a bare classic ``.pth``, the dataset's priors and class list.

Everything is read with ``weights_only=True`` on the CPU. Errors are :class:`CheckpointError`, whose message is one
line naming the file, so scripts can print it and exit non-zero.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from data.config import ARCHITECTURES, DEFAULT_ARCHITECTURE, get_architecture, get_config
from data.priors import PRIOR_KEYS, prior_config_dict, prior_config_from_dict
from data.transforms import Preprocessing
from ssd import DetectionNet, Detector, build_ssd
from utils.cli import resolve_class_names
from utils.training.state import atomic_write_text

# number of loc/conf heads (sources) → input size
_SIZE_BY_SOURCES: dict[int, int] = {6: 300, 7: 512}
_SIZE_BY_SOURCES_INV: dict[int, int] = {size: maps for maps, size in _SIZE_BY_SOURCES.items()}
_WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")
_MAX_LISTED = 16  # SSD512 with another num_classes mismatches 14 conf tensors: list them all
_MAX_NAMES_SHOWN = 20  # the class list printed with the model description

FACTS_FORMAT = "ssd-model"
FACTS_VERSION = 2  # 2 added architecture and preprocessing; a version-1 record is a VGG16 with the classic mean
FACTS_KEY = "model_facts"  # where a full training checkpoint keeps them
DIGEST_KEY = "weights_sha256"  # the sidecar's digest of its weights; sidecars written before it have none
WEIGHTS_EXTENSIONS = (".pth", ".pt", ".ckpt")  # weights files a sidecar <stem>.json can describe
FACTS_PRIOR_KEYS: tuple[str, ...] = ("name", *PRIOR_KEYS)  # a recorded prior config: the priors and their name
_BACKGROUND_NAMES = ("background", "__background__")
# the prior-config names of data.config → (dataset, size), for checkpoints that record only the name
_KNOWN_CONFIGS: dict[str, tuple[str, int]] = {
    "VOC": ("VOC", 300), "COCO": ("COCO", 300), "VOC512": ("VOC", 512), "COCO512": ("COCO", 512),
}  # fmt: skip


class CheckpointError(ValueError):
    """A weights file is missing, unreadable, or does not fit the requested model."""


# ------------------------------------------------------------------------------------------ model facts


class _FieldError(ValueError):
    def __init__(self, name: str, expected: str, got: Any) -> None:
        super().__init__(f"field {name!r}: expected {expected}, got {got!r}")


def _prior_config(cfg: Any, size: int, dataset: str | None, source: str) -> Mapping[str, Any]:
    """Validate a recorded prior config (``data.priors``) → a read-only mapping of ``FACTS_PRIOR_KEYS`` (tuples).

    ``name`` is the dataset config's ("VOC", "COCO512", …) when the priors equal it, "custom" otherwise.
    """
    if not isinstance(cfg, Mapping):
        raise _FieldError("prior_config", "an object", cfg)
    base_dataset = (dataset or _KNOWN_CONFIGS.get(str(cfg.get("name")), ("VOC",))[0]).upper()
    base = get_config(base_dataset if base_dataset in ("VOC", "COCO") else "VOC", size)
    full = prior_config_from_dict(cfg, base, f"{source}: prior_config")
    return MappingProxyType({key: full[key] for key in FACTS_PRIOR_KEYS})


def _class_names(names: Any) -> tuple[str, ...]:
    if isinstance(names, (str, bytes)) or not isinstance(names, Sequence) or not names:
        raise _FieldError("class_names", "a non-empty list of names (background excluded)", names)
    if not all(isinstance(n, str) and n.strip() == n and n for n in names):
        raise _FieldError("class_names", "names without surrounding spaces", names)
    background = [n for n in names if n.lower() in _BACKGROUND_NAMES]
    if background:
        raise _FieldError("class_names", "the object classes only (background is implicit class 0)", background[0])
    lowered = [n.lower() for n in names]
    repeated = sorted({n for n in names if lowered.count(n.lower()) > 1})
    if repeated:
        raise _FieldError("class_names", "distinct names", f"{repeated[0]} repeated")
    return tuple(names)


def _check_architecture(architecture: Any) -> str:
    if not isinstance(architecture, str) or architecture not in ARCHITECTURES:
        raise _FieldError("architecture", f"one of {', '.join(ARCHITECTURES)}", architecture)
    return architecture


def _check_size(size: Any, architecture: str = DEFAULT_ARCHITECTURE) -> int:
    sizes = get_architecture(architecture)["sizes"]
    if isinstance(size, bool) or size not in sizes:
        raise _FieldError("size", f"{' or '.join(map(str, sizes))} for {architecture}", size)
    return int(size)


def _preprocessing(record: Any, architecture: str) -> Preprocessing:
    if record is None:
        return Preprocessing.of_architecture(get_architecture(architecture))
    if isinstance(record, Preprocessing):
        return record
    try:
        return Preprocessing.from_dict(record)
    except ValueError as err:
        raise _FieldError("preprocessing", "{mean: [b, g, r], std: [b, g, r]}", f"{record!r} ({err})") from None


def _validated_fields(
    size: Any,
    batch_norm: Any,
    class_names: Any,
    prior_config: Any,
    dataset: Any,
    architecture: Any,
    preprocessing: Any,
    where: str,
    source: str,
) -> dict[str, Any]:
    """Every field of :class:`ModelFacts` checked and normalised (tuples, a read-only prior config, the
    architecture's preprocessing when None). The one place facts are validated.

    Raises:
        CheckpointError: ``where: field 'NAME': expected …, got …`` (a prior config's error names ``source``).
    """
    try:
        architecture = _check_architecture(architecture)
        size = _check_size(size, architecture)
        if not isinstance(batch_norm, bool):
            raise _FieldError("batch_norm", "true or false", batch_norm)
        if dataset is not None and not isinstance(dataset, str):
            raise _FieldError("dataset", "a name or null", dataset)
        fields = {
            "size": size,
            "batch_norm": batch_norm,
            "class_names": _class_names(class_names),
            "dataset": dataset,
            "architecture": architecture,
            "preprocessing": _preprocessing(preprocessing, architecture),
        }
    except _FieldError as err:
        raise CheckpointError(f"{where}: {err}") from None
    try:
        fields["prior_config"] = _prior_config(prior_config, size, dataset, source)
    except _FieldError as err:
        raise CheckpointError(f"{where}: {err}") from None
    except ValueError as err:  # data.priors names the file and the field
        raise CheckpointError(str(err)) from None
    return fields


@dataclass(frozen=True)
class ModelFacts:
    """What a trained SSD needs to run as it was trained.

    Args:
        size: input side (300 or 512 for vgg16, 320 for mobilenet_v3_large).
        batch_norm: BatchNorm after every backbone and extra conv (always true for mobilenet_v3_large).
        class_names: the object classes in label order (background, class 0, is implicit), as written (matched
            ignoring case).
        prior_config: the prior-box config (``FACTS_PRIOR_KEYS`` of a ``data.config`` dict); heads have
            ``2 + 2·len(ratios)`` boxes per location.
        dataset: "VOC" or "COCO" (the layout it was trained on), or None when unknown.
        architecture: a ``data.config.ARCHITECTURES`` name (default vgg16, the classic model).
        preprocessing: how a BGR picture becomes the network's input (default: the architecture's).
    Raises:
        CheckpointError: a field of the wrong type or value.
    """

    size: int
    batch_norm: bool
    class_names: tuple[str, ...]
    prior_config: Mapping[str, Any] = field(repr=False)
    dataset: str | None = None
    architecture: str = DEFAULT_ARCHITECTURE
    preprocessing: Preprocessing = None  # type: ignore[assignment]  # None: the architecture's

    def __post_init__(self) -> None:
        fields = _validated_fields(
            self.size, self.batch_norm, self.class_names, self.prior_config, self.dataset, self.architecture,
            self.preprocessing, where="invalid model facts", source="invalid model facts",
        )  # fmt: skip
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    def __deepcopy__(self, memo: dict[int, Any]) -> ModelFacts:
        return self  # immutable (its prior config is a read-only mapping, which deepcopy cannot copy)

    @property
    def num_classes(self) -> int:
        """Classes the model scores, background included."""
        return len(self.class_names) + 1

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready record (lists, not tuples); :meth:`from_dict` reads it back."""
        return {
            "format": FACTS_FORMAT,
            "version": FACTS_VERSION,
            "architecture": self.architecture,
            "preprocessing": self.preprocessing.to_dict(),
            "size": self.size,
            "num_classes": self.num_classes,
            "batch_norm": self.batch_norm,
            "dataset": self.dataset,
            "class_names": list(self.class_names),
            "prior_config": {"name": self.prior_config["name"], **prior_config_dict(self.prior_config)},
        }

    @classmethod
    def from_dict(cls, d: Any, source: str) -> ModelFacts:
        """Validate a record written by :meth:`to_dict`; ``source`` names its file in the one-line error."""
        where = f"{source}: not a valid SSD model description"
        try:
            if not isinstance(d, Mapping):
                raise _FieldError("(top level)", "an object", type(d).__name__)
            if d.get("format") != FACTS_FORMAT:
                raise _FieldError("format", repr(FACTS_FORMAT), d.get("format"))
            version = d.get("version")
            if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FACTS_VERSION:
                raise _FieldError("version", f"{FACTS_VERSION} (a newer version needs newer code)", version)
            for key in ("size", "batch_norm", "class_names", "prior_config"):
                if key not in d:
                    raise _FieldError(key, "a value", "nothing")
        except _FieldError as err:
            raise CheckpointError(f"{where}: {err}") from None
        fields = _validated_fields(
            d["size"], d["batch_norm"], d["class_names"], d["prior_config"], d.get("dataset"),
            d.get("architecture", DEFAULT_ARCHITECTURE), d.get("preprocessing"), where=where, source=source,
        )  # fmt: skip
        num_classes = len(fields["class_names"]) + 1
        if "num_classes" in d and d["num_classes"] != num_classes:
            expected = f"{num_classes} (the class names plus background)"
            raise CheckpointError(f"{where}: {_FieldError('num_classes', expected, d['num_classes'])}")
        facts = object.__new__(cls)  # the fields are validated: build without validating them a second time
        for name, value in fields.items():
            object.__setattr__(facts, name, value)
        return facts

    @classmethod
    def from_model(cls, net: DetectionNet, class_names: Sequence[str], dataset: str | None = None) -> ModelFacts:
        """The facts of a built network (architecture, size, BatchNorm, prior config, preprocessing) with its
        class names."""
        return cls(
            int(net.size), bool(net.batch_norm), tuple(class_names), net.cfg, dataset, net.architecture,
            net.preprocessing,
        )  # fmt: skip

    @property
    def postprocess(self) -> Mapping[str, Any]:
        """The architecture's post-processing defaults (``layers.Detect`` keywords)."""
        return get_architecture(self.architecture)["postprocess"]


def sidecar_path(weights_path: str | os.PathLike[str]) -> str:
    """``weights/ssd300_VOC_5000.pth`` → ``weights/ssd300_VOC_5000.json``."""
    return os.path.splitext(os.fspath(weights_path))[0] + ".json"


def weights_digest(state_dict: Mapping[str, Tensor]) -> str:
    """SHA-256 (hex) of a state_dict: each tensor's name, dtype, shape and bytes, in sorted name order.

    It depends on the tensors only, not on the file that holds them: a ``.pth`` and a ``_last.ckpt`` of the same
    weights (or a ``module.``-prefixed copy, once read) agree. About 0.1 s for SSD300's 105 MB on one CPU core.
    """
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach().to("cpu").contiguous()
        digest.update(f"{key}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(memoryview(tensor.reshape(-1).view(torch.uint8).numpy()))
    return digest.hexdigest()


def write_sidecar(
    weights_path: str | os.PathLike[str],
    facts: ModelFacts,
    weights: Mapping[str, Tensor] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Write ``facts`` beside ``weights_path`` atomically; returns the path.

    Args:
        weights: the state_dict the facts describe; its :func:`weights_digest` is recorded, which ties the
            sidecar to those weights (every writer of the project passes it).
        extra: further JSON values under keys of their own (a fine-tuned model's ``finetuned_from``); readers of
            the facts ignore them.
    Raises:
        CheckpointError: the sidecar there describes another weights file's weights
            (:func:`check_sidecar_owner`); nothing is written.
        ValueError: an ``extra`` key that the facts use.
    """
    path = sidecar_path(weights_path)
    record = facts.to_dict()
    clash = sorted(set(extra or ()) & {*record, DIGEST_KEY})
    if clash:
        raise ValueError(f"sidecar {path}: extra key {clash[0]!r} is a key of the model facts")
    record.update(extra or {})
    if weights is not None:
        record[DIGEST_KEY] = weights_digest(weights)
        check_sidecar_owner(weights_path, record[DIGEST_KEY])
    atomic_write_text(path, json.dumps(record, indent=2) + "\n")
    return path


def read_sidecar(weights_path: str | os.PathLike[str]) -> ModelFacts | None:
    """The facts in ``<stem>.json`` beside ``weights_path``; None when there is no such file."""
    record = read_sidecar_record(weights_path)
    return None if record is None else record[0]


def read_sidecar_record(weights_path: str | os.PathLike[str]) -> tuple[ModelFacts, str | None] | None:
    """The facts in ``<stem>.json`` beside ``weights_path`` and the digest of the weights they were written for
    (None in a sidecar written before digests were recorded); None when there is no such file."""
    path = sidecar_path(weights_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            record = json.load(f)
    except (OSError, UnicodeDecodeError) as err:
        raise CheckpointError(f"cannot read the model description {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: not valid JSON ({err.msg} at line {err.lineno})") from None
    facts = ModelFacts.from_dict(record, path)
    digest = record.get(DIGEST_KEY)
    if digest is not None and not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)):
        raise CheckpointError(
            f"{path}: not a valid SSD model description: field {DIGEST_KEY!r}: expected 64 hex digits, got {digest!r}"
        )
    return facts, digest


def check_sidecar_owner(weights_path: str | os.PathLike[str], digest: str) -> None:
    """Refuse to replace the sidecar of ``weights_path`` (whose weights have ``digest``) when it belongs to another
    weights file: a ``.pth``/``.pt``/``.ckpt`` of the same stem whose weights differ and which the sidecar names
    by its digest (or which it may describe, for a sidecar without one). Without such a file, or for the same
    weights, the sidecar may be replaced.

    Raises:
        CheckpointError naming the sidecar and the weights it belongs to.
    """
    path = sidecar_path(weights_path)
    try:
        record = read_sidecar_record(weights_path)
    except CheckpointError:  # an unreadable sidecar describes nothing: replacing it loses nothing
        return
    if record is None or record[1] == digest:
        return
    target = os.path.abspath(weights_path)
    for sibling in (os.path.splitext(os.fspath(weights_path))[0] + ext for ext in WEIGHTS_EXTENSIONS):
        if os.path.abspath(sibling) == target or not os.path.isfile(sibling):
            continue
        try:
            theirs = weights_digest(read_checkpoint(sibling)[0])
        except CheckpointError:  # not weights we could break
            continue
        if theirs != digest and record[1] in (None, theirs):
            raise CheckpointError(
                f"refusing to replace {path}: it describes the weights in {sibling}, not those written to "
                f"{os.fspath(weights_path)}; write to another name"
            )


def facts_from_meta(meta: Mapping[str, Any], source: str = "checkpoint") -> ModelFacts | None:
    """The facts a full training checkpoint records (its ``"model_facts"`` entry); None when it holds none."""
    if FACTS_KEY in meta:
        return ModelFacts.from_dict(meta[FACTS_KEY], f"{source} ({FACTS_KEY})")
    return None


def same_priors(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """Whether two prior configs give the same default boxes (their names aside)."""
    return prior_config_dict(a) == prior_config_dict(b)


def describe_facts(facts: ModelFacts, names_from: str) -> str:
    """One line for the scripts to print, e.g. ``model: SSD300 VOC priors, 20 classes from x.json (aeroplane, …)``."""
    names = list(facts.class_names)
    shown = ", ".join(names[:_MAX_NAMES_SHOWN])
    if len(names) > _MAX_NAMES_SHOWN:
        shown += f", … (+{len(names) - _MAX_NAMES_SHOWN} more)"
    return (
        f"model: {model_name(facts)} {facts.prior_config['name']} priors, {len(names)} classes "
        f"from {names_from} ({shown})"
    )


def model_name(facts: ModelFacts) -> str:
    """``SSD300``, ``SSD512 BatchNorm``, ``SSDLite320-MobileNetV3``: the model as people call it."""
    if facts.architecture == "mobilenet_v3_large":
        return f"SSDLite{facts.size}-MobileNetV3"
    return f"SSD{facts.size}{' BatchNorm' if facts.batch_norm else ''}"


# ------------------------------------------------------------------------------------------ weights files


def _strip_prefixes(sd: Mapping[str, Tensor]) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        for prefix in _WRAPPER_PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        out[key] = value
    return out


def _unreadable_reason(exc: BaseException) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in our words (torch's message advises an unsafe load)."""
    text = str(exc)
    blocked = re.search(r"GLOBAL ([\w.]+)", text)
    if blocked:
        return (
            f"it refers to the Python object {blocked.group(1)}, which a weights file never holds "
            "(only tensors, numbers, strings and containers are read)"
        )
    if isinstance(exc, pickle.UnpicklingError):
        return "its content is not a saved dictionary of tensors"
    if isinstance(exc, EOFError):
        return "the file ends early (truncated)"
    if "zip archive" in text or "central directory" in text:
        return "the archive is truncated or corrupt"
    return f"{type(exc).__name__} while unpickling"


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read ``path`` → ``(state_dict, meta)``.

    ``meta`` holds the non-model entries of a full training checkpoint (``model_facts``, ``optimizer``,
    ``iteration``, … as ``train.py`` records them), and is empty for a plain state_dict.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means a corrupt or foreign file
        raise CheckpointError(f"{path} is not a readable weights file: {_unreadable_reason(exc)}") from None
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

    size: 300 with 6 loc heads, 512 with 7; num_classes: the first conf head's outputs over the first loc head's
    boxes (``loc.0`` has ``boxes·4`` outputs); batch_norm: some key ends in ``running_mean``.
    """
    if "conf.0.weight" not in sd or "loc.0.weight" not in sd:
        hint = " (this looks like a backbone-only file such as vgg16_reducedfc.pth)" if "0.weight" in sd else ""
        raise CheckpointError(f"not an SSD state_dict: no 'loc.0.weight'/'conf.0.weight' keys{hint}")
    heads = {key.split(".")[1] for key in sd if key.startswith("loc.") and key.endswith(".weight")}
    if len(heads) not in _SIZE_BY_SOURCES:
        raise CheckpointError(f"SSD state_dict with {len(heads)} loc heads; expected 6 (SSD300) or 7 (SSD512)")
    batch_norm = any(key.endswith("running_mean") for key in sd)
    boxes = max(int(sd["loc.0.weight"].shape[0]) // 4, 1)
    return _SIZE_BY_SOURCES[len(heads)], int(sd["conf.0.weight"].shape[0]) // boxes, batch_norm


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


# ------------------------------------------------------------------------------------------ which model to run


def _dataset_key(dataset: str | None) -> str | None:
    if dataset is None:
        return None
    key = str(dataset).upper()
    if key not in ("VOC", "COCO"):
        raise CheckpointError(f"unknown dataset {dataset!r}: expected VOC or COCO")
    return key


def _check_flags(
    facts: ModelFacts, where: str, dataset: str | None, size: int | None, classes: Sequence[str] | None
) -> None:
    """Flags may repeat the recorded facts, never contradict them."""
    if size is not None and int(size) != facts.size:
        raise CheckpointError(f"--size {size} contradicts {where}, which records an SSD{facts.size} model")
    if dataset is not None:
        recorded = facts.dataset.upper() if facts.dataset else None
        differs = (
            recorded != dataset if recorded else not same_priors(get_config(dataset, facts.size), facts.prior_config)
        )
        if differs:
            what = f"dataset {recorded}" if recorded else f"{facts.prior_config['name']} priors"
            raise CheckpointError(f"--dataset {dataset} contradicts {where}, which records {what}; drop --dataset")
    if classes is not None and [n.lower() for n in classes] != [n.lower() for n in facts.class_names]:
        diff = next(
            (i for i, pair in enumerate(zip(classes, facts.class_names)) if pair[0].lower() != pair[1].lower()), None
        )
        detail = (
            f"name {diff + 1} is {classes[diff]!r}, recorded {facts.class_names[diff]!r}"
            if diff is not None
            else f"{len(classes)} names, recorded {len(facts.class_names)}"
        )
        raise CheckpointError(f"--classes contradicts the class names {where} records ({detail}); drop --classes")


def resolve_facts(
    path: str | os.PathLike[str],
    sd: Mapping[str, Tensor],
    meta: Mapping[str, Any],
    dataset: str | None = None,
    size: int | None = None,
    classes: str | os.PathLike[str] | Sequence[str] | None = None,
) -> tuple[ModelFacts, str]:
    """Decide which model the weights at ``path`` (already read: ``sd``, ``meta``) are run as.

    The recorded facts come first: the sidecar ``<stem>.json``, else the checkpoint's ``model_facts``; a
    ``--size``, ``--classes`` (file or names) or ``--dataset`` that contradicts them is a CheckpointError.
    A bare ``.pth`` (nothing recorded): size from the heads (6 → 300, 7 → 512); the prior config of ``dataset``
    (default VOC) at that size — never chosen by the class count; class names from ``classes``, else the
    dataset's list, else VOC's for 21 outputs or COCO's for 81 (see :func:`utils.cli.resolve_class_names`).

    Returns:
        the facts, and one line describing them for the scripts to print.
    Raises:
        CheckpointError: contradicting flags, an invalid sidecar, or a size the heads do not have.
        ValueError / FileNotFoundError: a bad or missing class list, or names that do not fit the class count.
    """
    source = os.fspath(path)
    dataset = _dataset_key(dataset)
    where = sidecar_path(source)
    record = read_sidecar_record(source)
    if record is not None:
        facts = record[0]
        check_sidecar_fits(source, sd, *record)
    else:
        where = source
        facts = facts_from_meta(meta, source)
    if facts is not None:
        names = None if classes is None else resolve_class_names(classes)[0]
        _check_flags(facts, where, dataset, size, names)
        return facts, describe_facts(facts, where)
    return _bare_facts(source, sd, dataset, size, classes)


def check_sidecar_fits(source: str, sd: Mapping[str, Tensor], facts: ModelFacts, digest: str | None) -> None:
    """The sidecar of the weights file ``source`` (whose state_dict is ``sd``) was written for these weights: its
    digest, when it records one, is theirs, and its class list has as many names as the class head scores.

    Raises:
        CheckpointError naming both files.
    """
    where = sidecar_path(source)
    if digest is not None and weights_digest(sd) != digest:
        raise CheckpointError(
            f"{where} describes other weights than {source} (the weights digest it records differs): the two files "
            "do not belong together; put the weights' own sidecar beside them, or remove it and name the model with "
            "--dataset/--size/--classes"
        )
    scored = _scored_classes(sd)
    if scored is not None and scored[0] != facts.num_classes:
        count, key = scored
        raise CheckpointError(
            f"{where} lists {len(facts.class_names)} classes but {source} scores {count - 1} (+ background; its class "
            f"head {key} has {tuple(sd[key].shape)[0]} outputs): the sidecar does not belong to these weights"
        )


def _scored_classes(sd: Mapping[str, Tensor]) -> tuple[int, str] | None:
    """``(classes scored, background included; the key of the first class head's output conv)`` read from the
    first loc and conf heads (``boxes·4`` and ``boxes·classes`` outputs); None when the heads are not there."""
    heads = []
    for prefix in ("loc.0.", "conf.0."):
        convs = [k for k, v in sd.items() if k.startswith(prefix) and k.endswith("weight") and v.dim() == 4]
        if not convs:
            return None
        heads.append(convs[-1])  # a separable head's pointwise conv comes after its depthwise one
    boxes = int(sd[heads[0]].shape[0]) // 4
    outputs = int(sd[heads[1]].shape[0])
    if boxes == 0 or outputs % boxes:
        return None
    return outputs // boxes, heads[1]


def _bare_facts(
    source: str,
    sd: Mapping[str, Tensor],
    dataset: str | None,
    size: int | None,
    classes: str | os.PathLike[str] | Sequence[str] | None,
) -> tuple[ModelFacts, str]:
    found_size, found_classes, batch_norm = describe_state_dict(sd)
    if size is not None and int(size) != found_size:
        raise CheckpointError(
            f"--size {size} contradicts {source}, which holds an SSD{found_size} "
            f"({_SIZE_BY_SOURCES_INV[found_size]} heads)"
        )
    names, names_from = resolve_class_names(classes, dataset, found_classes, model=source)
    prior = get_config(dataset or "VOC", found_size)
    facts = ModelFacts(found_size, batch_norm, tuple(names), prior, dataset)
    return facts, describe_facts(facts, names_from)


# ------------------------------------------------------------------------------------------ building the model


def build_from_facts(facts: ModelFacts, phase: str = "test", **detect_kwargs: Any) -> DetectionNet:
    """The untrained network ``facts`` describe (architecture, size, classes, priors, BatchNorm, preprocessing).

    ``detect_kwargs`` go to ``layers.Detect``; unset ones take the architecture's defaults.
    """
    net = build_ssd(
        phase, facts.size, facts.num_classes, cfg=dict(facts.prior_config), batch_norm=facts.batch_norm,
        architecture=facts.architecture, **detect_kwargs,
    )  # fmt: skip
    net.preprocessing = facts.preprocessing
    return net


def load_model(
    path: str | os.PathLike[str],
    dataset: str | None = None,
    size: int | None = None,
    classes: str | os.PathLike[str] | Sequence[str] | None = None,
    device: torch.device | str | None = None,
    num_classes: int | None = None,
    **detect_kwargs: Any,
) -> Detector:
    """The front door: any weights file the project reads → the model it was trained as, ready to detect.

    The facts come from the weights (sidecar ``<stem>.json`` or a checkpoint's ``model_facts``) or, for a bare
    classic ``.pth``, from ``dataset`` / ``size`` / ``classes`` (see :func:`resolve_facts`; a flag that contradicts
    recorded facts, or a ``num_classes`` other than the weights', is a CheckpointError). The state_dict is loaded
    strictly (a misfit names the keys).

    Args:
        detect_kwargs: ``layers.Detect`` settings (``top_k``, ``conf_thresh``, ``nms_thresh``, ``keep_top_k``);
            None or unset: the architecture's defaults.
        device: where the model runs (default CPU); on CUDA channels_last, cuDNN autotuning on.
    Returns:
        an ``ssd.Detector`` in eval mode: ``model(x)`` gives detections ``[B, C, top_k, 5]``; ``model.facts`` the
        facts, ``model.description`` the line the scripts print, ``model.net`` the network (classic state_dict).
    """
    source = os.fspath(path)
    sd, meta = read_checkpoint(source)
    facts, description = resolve_facts(source, sd, meta, dataset=dataset, size=size, classes=classes)
    if num_classes is not None and int(num_classes) != facts.num_classes:
        raise CheckpointError(f"{num_classes} classes asked for, but {source} scores {facts.num_classes}")
    net = build_from_facts(facts, "test", **{k: v for k, v in detect_kwargs.items() if v is not None})
    report = fit_report(net.state_dict(), sd)
    if report:
        what = f"{model_name(facts)} with {facts.num_classes} classes and {facts.prior_config['name']} priors"
        raise CheckpointError(f"checkpoint {source} does not fit {what}: {report}")
    net.load_state_dict(sd, strict=True)
    model = Detector(net, facts=facts, description=description).eval()
    return place_model(model, torch.device(device) if device is not None else torch.device("cpu"))


def place_model(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` on ``device``; on CUDA channels_last, with cuDNN picking its fastest kernels for the fixed size."""
    model = model.to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        model = model.to(memory_format=torch.channels_last)
    return model
