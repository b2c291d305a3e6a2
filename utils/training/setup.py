"""Building a training run: its dataset, the model facts it records, weights to start from, the optimizer and
schedule (fresh or restored), and the guard that keeps a new run out of another run's folder."""

from __future__ import annotations

import argparse
import os
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from data import get_config
from data.config import DEFAULT_ARCHITECTURE
from data.priors import load_prior_config
from data.splits import open_split, split_parts
from utils.augmentations import model_augmentation
from utils.checkpoint import (
    ModelFacts,
    build_from_facts,
    facts_from_meta,
    fit_report,
    model_name,
    read_checkpoint,
    same_priors,
)
from utils.cli import read_class_names
from utils.training.engine import Session, TrainError, say
from utils.training.finetune import (
    FINETUNED_FROM,
    FinetuneSource,
    apply_finetune,
    finetune_facts,
    freeze,
    plan_finetune,
    read_source,
    trainable_parameters,
)
from utils.training.resume import solver_changed
from utils.training.runtime import Runtime
from utils.training.schedule import WarmupSchedule, build_schedule
from utils.training.state import restore_rng_state, run_files

DEFAULT_BASENET = os.path.join("weights", "vgg16_reducedfc.pth")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def model_facts(
    args: argparse.Namespace, class_names: Sequence[str], source: FinetuneSource | None = None
) -> ModelFacts:
    """Architecture, size, priors, BatchNorm and classes of the model this run trains (recorded beside every .pth);
    its preprocessing is the architecture's. A fine-tune (``source``) keeps the source's model, priors and
    preprocessing, with the new classes (and ``--prior_config``'s priors when given)."""
    cfg: Mapping[str, Any] = get_config(args.dataset, args.size)
    if source is not None:
        cfg = {**cfg, **source.facts.prior_config}
    if args.prior_config:
        cfg = load_prior_config(args.prior_config, args.size, cfg)
    if source is not None:
        return finetune_facts(source, class_names, args.dataset, cfg)
    architecture = getattr(args, "backbone", DEFAULT_ARCHITECTURE)
    return ModelFacts(args.size, bool(args.batch_norm), tuple(class_names), cfg, args.dataset, architecture)


def open_dataset(args: argparse.Namespace, transform: Any, image_sets: str, validation: bool = False) -> Any:
    """The run's split ``image_sets`` (``data.splits.open_split``) with ``transform``, its classes from
    ``--classes`` (VOC layout) or the data. For training, bad samples are skipped and difficult objects left out;
    for ``validation`` it reads as eval.py does: difficult objects kept, and a broken file is an error."""
    names = read_class_names(args.classes) if args.classes else None
    split = open_split(args.dataset, args.dataset_root, image_sets, transform, names, validation)
    empty = [part for part in split_parts(split) if not getattr(part, "has_ground_truth", True)]
    if empty and not validation:  # it would train to the end at loss 0
        raise TrainError(f"COCO split {empty[0].image_set} of {args.dataset_root} has no annotations to train on (a "
                         "test split?): choose annotated splits with --image_sets")  # fmt: skip
    return split


def check_annotation_classes(base: Any, classes_file: str) -> None:
    """Every object in the annotations is in ``--classes``: a wrong class list deserves a clear stop, not a skip
    per picture. Unreadable annotations are left to the dataset, which skips them. The annotations read here are
    kept by the dataset, so training does not parse them again."""
    known = {name.lower() for name in base.class_names}
    for index in range(len(base)):
        try:
            anno = base.annotation(index)
        except (OSError, ValueError):
            continue
        unknown = sorted({name for name, _, _ in anno.objects if name.lower() not in known})
        if unknown:
            raise TrainError(
                f"{anno.path} has objects of class {', '.join(map(repr, unknown))}, which --classes {classes_file} "
                f"({len(known)} names) does not list"
            )


def load_weights(net: nn.Module, args: argparse.Namespace, state: Mapping[str, Tensor]) -> None:
    """The resumed state_dict, or the basenet into ``net.vgg``, or nothing (``--basenet none``; the only choice for
    the mobilenet_v3_large backbone, which train.py checks)."""
    if args.resume:
        report = fit_report(net.state_dict(), state)
        if report:
            raise TrainError(f"checkpoint {args.resume} does not fit the model being trained: {report}")
        net.load_state_dict(state)
    elif args.basenet.lower() == "none":
        if not args.batch_norm and net.architecture == DEFAULT_ARCHITECTURE:
            warnings.warn(
                "--basenet none: the VGG16 backbone starts from random weights; the classic model trains poorly "
                "that way (consider --batch_norm true)",
                UserWarning,
                stacklevel=2,
            )
    else:
        path = _find_file(args.basenet)
        if not os.path.isfile(path):
            raise TrainError(
                f"base network weights {path} not found: download vgg16_reducedfc.pth as weights/README.md "
                "explains, or build it from torchvision's VGG16 with `python -m weights.convert_vgg16`, or pass "
                "--basenet none to start from random weights"
            )
        vgg_state, _ = read_checkpoint(path)
        report = fit_report(net.vgg.state_dict(), vgg_state)
        if report:
            raise TrainError(f"base network {path} does not fit the {'VGG16-BN' if args.batch_norm else 'VGG16'} "
                             f"backbone: {report}")  # fmt: skip
        net.vgg.load_state_dict(vgg_state)


def finetune_source(args: argparse.Namespace) -> FinetuneSource | None:
    """The model ``--finetune`` starts from, its architecture, size and BatchNorm set in ``args``; None without it.

    Raises:
        TrainError: ``--finetune`` with ``--resume`` or an explicit ``--basenet``, ``--class_map`` without it, or a
            ``--backbone``/``--size``/``--batch_norm`` that contradicts the source.
        ValueError: an unreadable or non-SSD source file (one line naming it).
    """
    if args.finetune is None:
        if args.class_map is not None:
            raise TrainError("--class_map maps the new classes to those of a --finetune model: give --finetune too")
        return None
    if args.resume:
        raise TrainError(f"--finetune starts a new run; --resume {args.resume} continues one: drop one of them")
    if args.basenet is not None:
        raise TrainError(f"--finetune {args.finetune} starts from the whole model, no base network is read: "
                         f"drop --basenet {args.basenet}")  # fmt: skip
    source = read_source(_find_file(args.finetune))
    f = source.facts
    for name, value in (("backbone", f.architecture), ("size", f.size), ("batch_norm", f.batch_norm)):
        given = getattr(args, name, None)
        if given is not None and given != value:
            raise TrainError(f"--{name} {given} contradicts --finetune {args.finetune}, which holds an "
                             f"{model_name(f)} (a fine-tune keeps it): drop --{name}")  # fmt: skip
        setattr(args, name, value)
    args.basenet = "none"
    return source


def start_from_source(
    net: nn.Module, args: argparse.Namespace, rt: Runtime, facts: ModelFacts, source: FinetuneSource
) -> dict[str, Any]:
    """Load ``source`` into ``net`` (a new model of ``facts``), print what was loaded; returns the record of it."""
    plan = plan_finetune(source, facts, args.class_map)
    for line in apply_finetune(net, plan).lines():
        say(rt, line)
    return plan.record()


def _find_file(path: str) -> str:
    """``path`` as given, or relative to this repository when it is not found from the working directory."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    beside = os.path.join(REPO, path)
    return beside if os.path.exists(beside) else path


def build_session(
    args: argparse.Namespace,
    rt: Runtime,
    facts: ModelFacts,
    state: Mapping[str, Tensor],
    meta: Mapping[str, Any],
    source: FinetuneSource | None = None,
) -> Session:
    """Model, optimizer and schedule, from scratch, a basenet, a model to fine-tune (``source``), a state_dict or a
    full checkpoint. The ``--freeze`` part of the model stays out of the optimizer."""
    torch.manual_seed(args.seed)
    net = build_from_facts(facts, "train")
    finetuned = start_from_source(net, args, rt, facts, source) if source is not None else None
    if finetuned is None:
        load_weights(net, args, state)
    net.to(rt.device)
    # MobileNetV3's depthwise convs train about a quarter faster channels_last on the CPU too (oneDNN)
    if rt.device.type == "cuda" or facts.architecture != DEFAULT_ARCHITECTURE:
        net = net.to(memory_format=torch.channels_last)
    if rt.distributed and args.batch_norm and rt.device.type == "cuda":
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    freeze(net, args.freeze)  # before DDP, which reduces the gradients of the parameters that require them then
    model = net
    if rt.distributed:
        device_ids = [rt.local_rank] if rt.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
    optimizer = torch.optim.SGD(
        trainable_parameters(net), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay
    )
    scheduler = build_schedule(optimizer, args.schedule, args.warmup, args.lr_steps, args.gamma, args.max_iter)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=args.amp == "fp16")
    s = Session(args, rt, net, model, optimizer, scheduler, scaler, facts)
    if "optimizer" in meta:
        optimizer.load_state_dict(meta["optimizer"])
        scheduler.load_state_dict(meta["scheduler"])
        if meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        s.iteration = int(meta["iteration"])
        s.extra = dict(meta.get("extra", {}))
        restore_rng_state(meta["rng"])
        changed = solver_changed(args, meta["args"])
        if changed:
            s.scheduler = rebuild_schedule(optimizer, args, s.iteration)
            say(rt, "solver flags given on resume: " + ", ".join(f"--{n} {getattr(args, n)}" for n in changed))
    else:
        s.iteration = args.start_iter
    if finetuned is not None:
        s.extra[FINETUNED_FROM] = finetuned
    s.scheduler.jump_to(s.iteration)
    return s


def rebuild_schedule(optimizer: torch.optim.Optimizer, args: argparse.Namespace, iteration: int) -> WarmupSchedule:
    """A new schedule with the command line's solver flags, continuing at ``iteration`` from the restored state."""
    for group in optimizer.param_groups:
        group.update(initial_lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    return build_schedule(
        optimizer, args.schedule, args.warmup, args.lr_steps, args.gamma, args.max_iter, last_epoch=iteration
    )


def resumed_facts(args: argparse.Namespace, meta: Mapping[str, Any], fresh: ModelFacts) -> ModelFacts:
    """A resumed run's model is the checkpoint's: class names and priors given by flags must agree with it."""
    recorded = facts_from_meta(meta, args.resume) if meta else None
    if recorded is None:
        return fresh
    if args.classes and [n.lower() for n in fresh.class_names] != [n.lower() for n in recorded.class_names]:
        raise TrainError(f"--classes {args.classes} lists other classes than {args.resume} was trained with")
    if args.prior_config and not same_priors(fresh.prior_config, recorded.prior_config):
        raise TrainError(f"--prior_config {args.prior_config} differs from the priors {args.resume} was trained with")
    return recorded


def guard_save_folder(args: argparse.Namespace) -> None:
    """``--save_folder`` is a folder this process may write (or one it may make), checked before any work; and a new
    run (no ``--resume``) never overwrites another run's files unless ``--overwrite true``: weights, sidecars,
    checkpoints, logs, plots and TensorBoard events of a model of any name (``state.is_run_file``)."""
    folder = args.save_folder
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):  # where os.makedirs will start
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        what = "" if existing == os.path.abspath(folder) else f": {existing}"
        raise TrainError(f"--save_folder {folder}{what} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise TrainError(f"--save_folder {folder}: cannot write in {existing} (permission denied)")
    taken = [] if args.resume or args.overwrite else run_files(folder)
    if taken:
        shown = ", ".join(taken[:4]) + (f", … (+{len(taken) - 4} more)" if len(taken) > 4 else "")
        raise TrainError(
            f"--save_folder {folder} holds another run ({shown}): continue it with --resume, choose another "
            "--save_folder, or pass --overwrite true to replace it"
        )


def augmentation(facts: ModelFacts, rng: Any) -> Any:
    """The training augmentation of the model ``facts`` describe (``utils.augmentations.model_augmentation``)."""
    return model_augmentation(facts.architecture, facts.size, facts.preprocessing, rng)
