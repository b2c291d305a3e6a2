"""Train SSD300/SSD512 on VOC, COCO or a custom dataset in VOC or COCO layout.

    python train.py --dataset VOC --dataset_root ~/data/VOCdevkit             # the classic recipe
    python train.py --resume weights/ssd300_VOC_last.ckpt                      # continue exactly
    torchrun --nproc_per_node 4 train.py --dataset VOC                         # DDP, --batch_size is global
    python train.py --batch_norm true --basenet none                           # from scratch (BN variant)

Iteration-based: the data stream is endless, the learning rate steps at the config's ``lr_steps`` by ``--gamma``
after an optional linear ``--warmup``. Outputs in ``--save_folder``: ``ssd{size}_{dataset}_{iter}.pth`` (the
model's state_dict, classic format) with its ``.json`` sidecar (size, priors, BatchNorm, class names) every
``--save_every`` iterations and at the end, ``ssd{size}_{dataset}_last.ckpt`` (everything needed to continue
exactly, written atomically), ``train_log.csv``, ``loss.png`` and, with ``--eval_every``, ``eval_log.csv`` and
``ssd{size}_{dataset}_best.pth``. The engine lives in ``utils/training/``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from data import COCO_ROOT, MEANS, VOC_ROOT, detection_collate, get_config
from layers import MultiBoxLoss
from ssd import build_ssd
from utils.checkpoint import CheckpointError, ModelFacts, facts_from_meta, fit_report, read_checkpoint, same_priors
from utils.cli import read_class_names, str2bool
from utils.training import hooks
from utils.training.data import EpochIndexedDataset, SeededTransform, batches_per_epoch, iterate_batches
from utils.training.engine import Session, Stopped, TrainError, run_loop, say
from utils.training.log import TrainLog, plot_loss
from utils.training.resume import merge_resumed_args, solver_changed
from utils.training.runtime import Runtime, StopRequest, setup_runtime, shared_seed, worker_count
from utils.training.schedule import WarmupMultiStepLR

PROG = "train.py"
DEFAULT_BASENET = os.path.join("weights", "vgg16_reducedfc.pth")
MAX_NONFINITE_STEPS = 5  # a run of this many non-finite losses in a row stops training
# The plain model keeps the classic recipe. The BatchNorm model trained from scratch adds a linear warm-up as a
# guard; benchmarks/results/bn_solver_sweep_cpu.json holds the measurement behind lr 1e-3 without clipping.
CLASSIC_DEFAULTS = {"lr": 1e-3, "warmup": 0, "clip_grad": 0.0}
BN_DEFAULTS = {"lr": 1e-3, "warmup": 300, "clip_grad": 0.0}
# Defaults of the flags a resumed run may take from its checkpoint (their parser default is None).
DEFAULTS = {
    "dataset": "VOC", "size": 300, "batch_norm": False, "batch_size": 32, "momentum": 0.9, "weight_decay": 5e-4,
    "gamma": 0.1, "amp": "none",
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Single Shot MultiBox Detector training")
    add = p.add_argument
    add("--dataset", type=str.upper, choices=["VOC", "COCO"], help="VOC or COCO (default VOC)")
    add("--dataset_root", default=None, help=f"dataset root (default {VOC_ROOT} or {COCO_ROOT})")
    add("--size", type=int, choices=[300, 512], help="input size: SSD300 (default) or SSD512")
    add("--basenet", default=None, help=f"VGG16 weights (default {DEFAULT_BASENET}; 'none': random init)")
    add("--batch_size", type=int, help="global batch size, split across DDP ranks (default 32)")
    add("--resume", default=None, help="a _last.ckpt continues exactly; a .pth loads weights, starts at --start_iter")
    add("--start_iter", default=0, type=int, help="first iteration when resuming from a .pth")
    add("--max_iter", type=int, help="iterations in all (default: the config's max_iter)")
    add("--overwrite", default=False, type=str2bool, help="let a new run replace another run's files")
    add("--num_workers", default="4", type=_workers, help="DataLoader workers per process, or 'auto'")
    add("--cuda", default=torch.cuda.is_available(), type=str2bool, help="train on the GPU (default: if available)")
    add("--lr", "--learning-rate", dest="lr", type=float, help="base learning rate (default 1e-3)")
    add("--momentum", type=float, help="SGD momentum (default 0.9)")
    add("--weight_decay", type=float, help="SGD weight decay (default 5e-4)")
    add("--gamma", type=float, help="lr factor at each lr step (default 0.1)")
    add("--lr_steps", type=_int_list, help="comma-separated iterations where the lr drops (default: the config's)")
    add("--warmup", type=int, help="linear lr warm-up iterations (default 0; 300 with --batch_norm)")
    add("--clip_grad", type=float, help="clip the gradient norm to this (default 0: off)")
    add("--visdom", default=False, type=str2bool, help="live loss plots on a visdom server")
    add("--visdom_server", default="http://localhost", help="visdom server address")
    add("--visdom_port", default=8097, type=int, help="visdom server port")
    add("--save_folder", default="weights/", help="where checkpoints and the logs go")
    add("--save_every", default=5000, type=int, help="save a .pth and the _last.ckpt every N iterations")
    add("--log_every", default=10, type=int, help="print a log line every N iterations")
    add("--classes", default=None, help="text file of class names, one per line (custom VOC-layout dataset)")
    add("--image_sets", default=None, help="VOC: year:set pairs (default 2007:trainval,2012:trainval); COCO: splits")
    add("--prior_config", default=None, help="JSON file of min_sizes, max_sizes, aspect_ratios per source map")
    add("--seed", type=int, help="random seed (default: drawn and recorded)")
    add("--amp", choices=["none", "fp16", "bf16"], help="mixed precision (autocast; default none)")
    add("--batch_norm", type=str2bool, help="the VGG16-BN variant, for training from scratch (default false)")
    add("--eval_every", default=0, type=int, help="validate every N iterations (0: never)")
    add("--eval_sets", default=None, help="validation split (VOC default 2007:test; COCO default val2014)")
    add("--eval_images", default=None, type=int, help="validate on a fixed seeded subset of this many pictures")
    return p


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of workers or 'auto', got {text!r}") from None


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the flags not given (None) with their defaults, some of which depend on others."""
    for name, value in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    for name, value in (BN_DEFAULTS if args.batch_norm else CLASSIC_DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    cfg = get_config(args.dataset, args.size)
    if args.max_iter is None:
        args.max_iter = int(cfg["max_iter"])
    if args.lr_steps is None:
        args.lr_steps = [int(s) for s in cfg["lr_steps"]]
    if args.dataset_root is None:
        args.dataset_root = VOC_ROOT if args.dataset == "VOC" else COCO_ROOT
    if args.image_sets is None:
        args.image_sets = "2007:trainval,2012:trainval" if args.dataset == "VOC" else "train2014"
    if args.eval_sets is None:
        args.eval_sets = "2007:test" if args.dataset == "VOC" else "val2014"
    if args.basenet is None:
        args.basenet = "none" if args.batch_norm else DEFAULT_BASENET
    return args


def check_args(args: argparse.Namespace, world_size: int) -> None:
    if args.batch_size < 1 or args.batch_size % world_size:
        raise TrainError(f"--batch_size {args.batch_size} must be a positive multiple of the {world_size} processes")
    for name in ("max_iter", "save_every", "log_every"):
        if getattr(args, name) < 1:
            raise TrainError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.eval_every < 0 or (args.eval_images is not None and args.eval_images < 1):
        raise TrainError("--eval_every must be 0 or more and --eval_images at least 1")
    if args.num_workers != "auto" and args.num_workers < 0:
        raise TrainError(f"--num_workers must be 0 or more, or auto, got {args.num_workers}")
    if args.lr <= 0 or args.start_iter < 0:
        raise TrainError("--lr must be positive and --start_iter 0 or more")
    if args.cuda and not torch.cuda.is_available():
        raise TrainError("--cuda true but CUDA is not available on this machine")
    if args.classes is not None and args.dataset != "VOC":
        raise TrainError("--classes applies to VOC-layout datasets; a COCO-format dataset names its categories")


# ----------------------------------------------------------------------------------------------- model & data


def model_facts(args: argparse.Namespace, class_names: Sequence[str]) -> ModelFacts:
    """Size, priors, BatchNorm and classes of the model this run trains (recorded beside every .pth)."""
    cfg: Mapping[str, Any] = get_config(args.dataset, args.size)
    if args.prior_config:
        from data.priors import load_prior_config

        cfg = load_prior_config(args.prior_config, args.size, cfg)
    return ModelFacts(args.size, bool(args.batch_norm), tuple(class_names), cfg, args.dataset)


def open_dataset(args: argparse.Namespace, transform: Any, image_sets: str, keep_difficult: bool = False) -> Any:
    """The dataset of ``image_sets`` (VOC ``year:set`` pairs, or COCO splits) with ``transform``."""
    if not os.path.isdir(args.dataset_root):
        raise TrainError(
            f"dataset root {args.dataset_root} not found: pass --dataset_root (or set SSD_DATA_ROOT), fetch the data "
            "with data/scripts/*.sh, or generate a demo set with `python -m data.synthetic --out DIR`"
        )
    from data import COCODetection, VOCAnnotationTransform, VOCDetection

    try:
        if args.dataset == "COCO":
            parts = [COCODetection(args.dataset_root, s.strip(), transform) for s in image_sets.split(",") if s.strip()]
            return parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)
        pairs = [tuple(item.strip().partition(":")[::2]) for item in image_sets.split(",") if item.strip()]
        if not all(year and name for year, name in pairs):
            raise ValueError(f"image sets are year:set pairs like 2007:trainval, got {image_sets!r}")
        names = read_class_names(args.classes) if args.classes else None
        target = VOCAnnotationTransform(class_to_ind=names, keep_difficult=keep_difficult)
        skip_bad = transform is not None  # validation, like eval.py, stops on a broken file
        return VOCDetection(args.dataset_root, pairs, transform, target, skip_bad=skip_bad)
    except (OSError, ValueError, RuntimeError, KeyError, ImportError) as err:
        raise TrainError(f"cannot open the {args.dataset} dataset at {args.dataset_root}: {err}") from err


def dataset_class_names(dataset: Any) -> list[str]:
    first = dataset.datasets[0] if isinstance(dataset, torch.utils.data.ConcatDataset) else dataset
    return list(first.class_names)


def check_annotation_classes(base: Any, classes_file: str) -> None:
    """Every object in the annotations is in ``--classes``: a wrong class list deserves a clear stop, not a skip
    per picture. Unreadable annotations are left to the dataset, which skips them."""
    from data.voc0712 import read_voc_xml, voc_objects

    known = {name.lower() for name in base.class_names}
    for index in range(len(base)):
        path = base._annopath % base.ids[index]
        try:
            names = {name for name, _, _ in voc_objects(read_voc_xml(path), path)}
        except (OSError, ValueError):
            continue
        unknown = sorted(n for n in names if n.lower() not in known)
        if unknown:
            raise TrainError(
                f"{path} has objects of class {', '.join(map(repr, unknown))}, which --classes {classes_file} "
                f"({len(known)} names) does not list"
            )


def load_weights(net: nn.Module, args: argparse.Namespace, state: Mapping[str, Tensor]) -> None:
    """The resumed state_dict, or the basenet into ``net.vgg``, or nothing (``--basenet none``)."""
    if args.resume:
        report = fit_report(net.state_dict(), state)
        if report:
            raise TrainError(f"checkpoint {args.resume} does not fit the model being trained: {report}")
        net.load_state_dict(state)
    elif args.basenet.lower() == "none":
        if not args.batch_norm:
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


def _find_file(path: str) -> str:
    """``path`` as given, or relative to this repository when it is not found from the working directory."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    beside = os.path.join(os.path.dirname(os.path.abspath(__file__)), path)
    return beside if os.path.exists(beside) else path


def build_session(
    args: argparse.Namespace, rt: Runtime, facts: ModelFacts, state: Mapping[str, Tensor], meta: Mapping[str, Any]
) -> Session:
    """Model, optimizer and schedule, from scratch, a basenet, a state_dict or a full checkpoint."""
    torch.manual_seed(args.seed)
    net = build_ssd("train", args.size, facts.num_classes, cfg=facts.prior_config, batch_norm=args.batch_norm)
    load_weights(net, args, state)
    net.to(rt.device)
    if rt.device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    model = net
    if rt.distributed:
        if args.batch_norm and rt.device.type == "cuda":
            net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
        device_ids = [rt.local_rank] if rt.device.type == "cuda" else None
        model = nn.parallel.DistributedDataParallel(net, device_ids=device_ids)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    scheduler = WarmupMultiStepLR(optimizer, args.lr_steps, args.gamma, args.warmup)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=args.amp == "fp16")
    s = Session(args, rt, net, model, optimizer, scheduler, scaler, facts)
    if "optimizer" in meta:
        optimizer.load_state_dict(meta["optimizer"])
        scheduler.load_state_dict(meta["scheduler"])
        if meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        s.iteration = int(meta["iteration"])
        s.extra = dict(meta.get("extra", {}))
        from utils.training.state import restore_rng_state

        restore_rng_state(meta["rng"])
        changed = solver_changed(args, meta["args"])
        if changed:
            s.scheduler = rebuild_schedule(optimizer, args, s.iteration)
            say(rt, "solver flags given on resume: " + ", ".join(f"--{n} {getattr(args, n)}" for n in changed))
    else:
        s.iteration = args.start_iter
    s.scheduler.jump_to(s.iteration)
    return s


def rebuild_schedule(optimizer: torch.optim.Optimizer, args: argparse.Namespace, iteration: int) -> WarmupMultiStepLR:
    """A new schedule with the command line's solver flags, continuing at ``iteration`` from the restored state."""
    for group in optimizer.param_groups:
        group.update(initial_lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    return WarmupMultiStepLR(optimizer, args.lr_steps, args.gamma, args.warmup, last_epoch=iteration)


# ----------------------------------------------------------------------------------------------- the run


def configure(args: argparse.Namespace, rt: Runtime) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read ``--resume``, complete ``args`` by the resume rules and the defaults; returns ``(state, meta)``."""
    state, meta = {}, {}
    if args.resume:
        state, meta = read_checkpoint(args.resume)
    if "args" in meta and "optimizer" in meta:
        for note in merge_resumed_args(args, meta["args"], args.resume):
            say(rt, note)
        if args.start_iter:
            warnings.warn(f"--start_iter is ignored: {args.resume} continues at its iteration {meta['iteration']}",
                          UserWarning, stacklevel=2)  # fmt: skip
    elif meta:
        meta = {}  # a checkpoint without training state: its weights only, like a .pth
    resolve_defaults(args)
    check_args(args, rt.world_size)
    args.seed = shared_seed(args.seed, rt)
    return state, meta


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
    """A new run never overwrites another run's checkpoint or log unless ``--overwrite true``."""
    if args.resume or args.overwrite or not os.path.isdir(args.save_folder):
        return
    taken = sorted(n for n in os.listdir(args.save_folder) if n.endswith("_last.ckpt") or n == "train_log.csv")
    if taken:
        raise TrainError(
            f"--save_folder {args.save_folder} holds another run ({', '.join(taken)}): continue it with --resume, "
            "choose another --save_folder, or pass --overwrite true to replace it"
        )


def train(args: argparse.Namespace, rt: Runtime) -> None:
    state, meta = configure(args, rt)
    guard_save_folder(args)
    transform = SeededTransform(partial(_augmentation, args.size), args.seed)
    base = open_dataset(args, transform, args.image_sets)
    if args.classes:
        check_annotation_classes(base, args.classes)
    facts = resumed_facts(args, meta, model_facts(args, dataset_class_names(base)))
    dataset = EpochIndexedDataset(base, transform)
    per_rank = args.batch_size // rt.world_size
    if batches_per_epoch(len(dataset), per_rank, rt.world_size) == 0:
        raise TrainError(f"the dataset has {len(dataset)} images, fewer than one batch of {args.batch_size}: "
                         "lower --batch_size or add images")  # fmt: skip
    s = build_session(args, rt, facts, state, meta)
    if s.iteration >= args.max_iter:
        raise TrainError(f"nothing to do: training starts at iteration {s.iteration} and --max_iter is {args.max_iter}")
    if rt.is_main:
        os.makedirs(args.save_folder, exist_ok=True)
    workers = worker_count(args.num_workers)
    batches = iterate_batches(dataset, start_iter=s.iteration, batch_size=per_rank, seed=args.seed,
                              collate_fn=detection_collate, rank=rt.rank, world_size=rt.world_size,
                              num_workers=workers, pin_memory=rt.device.type == "cuda")  # fmt: skip
    criterion = MultiBoxLoss(facts.num_classes, 0.5, True, 0, True, 3, 0.5, False)
    log = TrainLog(os.path.join(args.save_folder, "train_log.csv"), start_iter=s.iteration) if rt.is_main else None
    after_step = hooks.build(s, lambda sets: open_dataset(args, None, sets, keep_difficult=True))
    say(rt, f"training SSD{args.size}{'-BN' if args.batch_norm else ''} on {args.dataset} ({len(dataset)} images, "
            f"{len(facts.class_names)} classes, {facts.prior_config['name']} priors) from iteration {s.iteration} to "
            f"{args.max_iter}: batch {args.batch_size} on {rt.world_size} x {rt.device.type}, {workers} workers, "
            f"lr {args.lr:g}, seed {args.seed}")  # fmt: skip
    stop = StopRequest()
    stop.install()
    try:
        run_loop(s, batches, criterion, stop, log, after_step, MAX_NONFINITE_STEPS)
    finally:
        stop.restore()
        batches.close()
        if log is not None:
            log.close()
        hooks.close(after_step)
        if rt.is_main:
            _plot(args.save_folder)


def _augmentation(size: int, rng: Any) -> Any:
    from utils.augmentations import SSDAugmentation

    return SSDAugmentation(size, MEANS, rng=rng)


def _plot(folder: str) -> None:
    try:
        plot_loss(os.path.join(folder, "train_log.csv"), os.path.join(folder, "loss.png"))
    except Exception as err:  # noqa: BLE001 - a missing matplotlib must not fail a finished training
        warnings.warn(f"could not draw loss.png: {err}", UserWarning, stacklevel=2)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and train. Returns 0 when finished, 2 for a user error (one line on stderr), 130/143 when
    stopped by SIGINT/SIGTERM after saving."""
    args = build_parser().parse_args(argv)
    rt = setup_runtime(args.cuda and torch.cuda.is_available())
    try:
        train(args, rt)
    except (TrainError, CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    except Stopped as stopped:
        return stopped.code
    finally:
        if rt.distributed and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
