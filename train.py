"""Train SSD300/SSD512 or SSDLite320-MobileNetV3 on VOC, COCO or a custom dataset in VOC or COCO layout.

    python train.py --dataset VOC --dataset_root ~/data/VOCdevkit             # the classic recipe
    python train.py --resume weights/ssd300_VOC_last.ckpt                      # continue exactly
    torchrun --nproc_per_node 4 train.py --dataset VOC                         # DDP, --batch_size is global
    python train.py --batch_norm true --basenet none                           # from scratch (BN variant)
    python train.py --backbone mobilenet_v3_large                              # the light model, from scratch
    python train.py --finetune weights/ssd300_mAP_77.43_v2.pth --classes mine.txt  # your classes from a trained model

Iteration-based: the data stream is endless; after an optional linear ``--warmup`` the learning rate steps at the
config's ``lr_steps`` by ``--gamma`` (``--schedule multistep``, VGG16's default) or follows a cosine to zero at
``--max_iter`` (``--schedule cosine``, the light model's default). Outputs in ``--save_folder``, named
``{stem}`` = ``ssd{size}_{dataset}`` (``ssdlite320_{dataset}`` for the light model): ``{stem}_{iter}.pth`` (the
model's state_dict, classic format) with its ``.json`` sidecar (architecture, size, priors, BatchNorm, class
names) every ``--save_every`` iterations and at the end, ``{stem}_last.ckpt`` (everything needed to continue
exactly, written atomically), ``train_log.csv``, ``loss.png`` and, with ``--eval_every``, ``eval_log.csv`` and
``{stem}_best.pth``. The engine lives in ``utils/training/``.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from functools import partial
from typing import Any

import torch.distributed as dist
from torch import Tensor

from data import COCO_ROOT, VOC_ROOT, detection_collate, get_config
from data.config import ARCHITECTURES, DEFAULT_ARCHITECTURE, default_image_sets, get_architecture
from data.splits import split_class_names
from layers import MultiBoxLoss
from utils.checkpoint import model_name, read_checkpoint
from utils.cli import add_bool, add_device_flags, choose_device, run_main
from utils.training import hooks
from utils.training.data import EpochIndexedDataset, SeededTransform, check_batches_per_epoch, iterate_batches
from utils.training.engine import Stopped, TrainError, run_loop, say
from utils.training.finetune import FREEZE_CHOICES
from utils.training.log import TrainLog, plot_loss
from utils.training.resume import merge_resumed_args
from utils.training.runtime import Runtime, StopRequest, setup_runtime, shared_seed, worker_count
from utils.training.schedule import SCHEDULES
from utils.training.setup import (
    DEFAULT_BASENET,
    augmentation,
    build_session,
    check_annotation_classes,
    finetune_source,
    guard_save_folder,
    model_facts,
    open_dataset,
    resumed_facts,
)
from utils.training.tensorboard_log import require_tensorboard

PROG = "train.py"
MAX_NONFINITE_STEPS = 5  # a run of this many non-finite losses in a row stops training
# The plain model keeps the classic recipe. The BatchNorm model trained from scratch adds a linear warm-up as a
# guard; benchmarks/results/bn_solver_sweep_cpu.json holds the measurement behind lr 1e-3 without clipping.
CLASSIC_DEFAULTS = {"lr": 1e-3, "warmup": 0, "clip_grad": 0.0}
BN_DEFAULTS = {"lr": 1e-3, "warmup": 300, "clip_grad": 0.0}
# The light model from scratch: torchvision's SSDLite reference recipe (SGD momentum 0.9, weight decay 4e-5, linear
# warm-up, cosine to zero) with lr 0.05 whatever the batch size; README "The light model" has the measurement.
LITE_DEFAULTS = {"lr": 0.05, "warmup": 50, "clip_grad": 0.0, "weight_decay": 4e-5, "schedule": "cosine"}
# Defaults of the flags a resumed run may take from its checkpoint (their parser default is None); the size is the
# backbone's default size (300 for vgg16).
DEFAULTS = {
    "dataset": "VOC", "backbone": DEFAULT_ARCHITECTURE, "size": 300, "batch_norm": False, "batch_size": 32,
    "momentum": 0.9, "weight_decay": 5e-4, "gamma": 0.1, "amp": "none", "schedule": "multistep", "freeze": "none",
}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Single Shot MultiBox Detector training")
    add = p.add_argument
    add("--dataset", type=str.upper, choices=["VOC", "COCO"], help="VOC or COCO (default VOC)")
    add("--dataset_root", default=None, help=f"dataset root (default {VOC_ROOT} or {COCO_ROOT})")
    add("--backbone", choices=list(ARCHITECTURES), help="vgg16 (SSD300/512; default) or mobilenet_v3_large")
    add("--size", type=int, help="input size: 300 (default) or 512 for vgg16, 320 for mobilenet_v3_large")
    add("--basenet", default=None, help=f"VGG16 weights (default {DEFAULT_BASENET}; 'none': random init, the only "
                                        "choice for mobilenet_v3_large)")  # fmt: skip
    add("--batch_size", type=int, help="global batch size, split across DDP ranks (default 32)")
    add("--resume", default=None, help="a _last.ckpt continues exactly; a .pth loads weights, starts at --start_iter")
    add("--start_iter", default=0, type=int, help="first iteration when resuming from a .pth")
    add("--max_iter", type=int, help="iterations in all (default: the config's max_iter)")
    add_bool(p, "--overwrite", default=False, help="let a new run replace another run's files")
    add_device_flags(p, "4", "DataLoader workers per process, or 'auto'")
    add("--lr", "--learning-rate", dest="lr", type=float, help="base lr (default 1e-3; 0.05 for mobilenet_v3_large)")
    add("--momentum", type=float, help="SGD momentum (default 0.9)")
    add("--weight_decay", type=float, help="SGD weight decay (default 5e-4; 4e-5 for mobilenet_v3_large)")
    add("--gamma", type=float, help="lr factor at each lr step (default 0.1)")
    add("--schedule", choices=SCHEDULES, help="lr after the warm-up: multistep (vgg16's default) or cosine to 0")
    add("--lr_steps", type=_int_list, help="comma-separated iterations where the lr drops (default: the config's)")
    add("--warmup", type=int, help="linear lr warm-up iterations (default 0; 300 with BN; 50 for mobilenet_v3_large)")
    add("--clip_grad", type=float, help="clip the gradient norm to this (default 0: off)")
    add_bool(p, "--visdom", default=False, help="live loss plots on a visdom server")
    add("--visdom_server", default="http://localhost", help="visdom server address")
    add("--visdom_port", default=8097, type=int, help="visdom server port")
    add_bool(p, "--tensorboard", default=False, help="TensorBoard event files under SAVE_FOLDER/tensorboard/")
    add("--save_folder", default="weights/", help="where checkpoints and the logs go")
    add("--save_every", default=5000, type=int, help="save a .pth and the _last.ckpt every N iterations")
    add("--log_every", default=10, type=int, help="print a log line every N iterations")
    add("--classes", default=None, help="text file of class names, one per line (custom VOC-layout dataset)")
    add("--image_sets", default=None, help="VOC: year:set pairs (default 2007:trainval,2012:trainval); COCO: splits")
    add("--prior_config", default=None, help="JSON file of min_sizes, max_sizes, aspect_ratios per source map")
    add("--seed", type=int, help="random seed (default: drawn and recorded)")
    add_bool(p, "--batch_norm", default=None, help="the VGG16-BN variant, for training from scratch (default false)")
    add("--eval_every", default=0, type=int, help="validate every N iterations (0: never)")
    add("--eval_sets", default=None, help="validation split (VOC default 2007:test; COCO default val2014)")
    add("--eval_images", default=None, type=int, help="validate on a fixed seeded subset of this many pictures")
    add("--finetune", default=None, help="start from this trained model's weights (any weights file; new classes)")
    add("--class_map", default=None, help="with --finetune: JSON file of new class name -> the model's class name")
    add("--freeze", choices=FREEZE_CHOICES, help="keep this part as loaded while the rest trains (default none)")
    return p


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the flags not given (None) with their defaults, some of which depend on others (the backbone decides
    the size, BatchNorm and the solver recipe)."""
    lite = resolve_backbone(args)
    recipe = LITE_DEFAULTS if lite else BN_DEFAULTS if args.batch_norm else CLASSIC_DEFAULTS
    for defaults in (recipe, DEFAULTS):
        for name, value in defaults.items():
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
        args.image_sets = default_image_sets(args.dataset, "train")
    if args.eval_sets is None:
        args.eval_sets = default_image_sets(args.dataset, "eval")
    if args.basenet is None:
        args.basenet = "none" if args.batch_norm else DEFAULT_BASENET
    return args


def resolve_backbone(args: argparse.Namespace) -> bool:
    """Set the backbone, its size and (for the light model) BatchNorm and the base network; True for the light
    model. A size the backbone does not build, or VGG-only flags with the light model, are TrainErrors."""
    if args.backbone is None:
        args.backbone = DEFAULT_ARCHITECTURE
    arch = get_architecture(args.backbone)
    if args.size is None:
        args.size = int(arch["default_size"])
    if args.size not in arch["sizes"]:
        raise TrainError(f"--size {args.size} does not fit --backbone {args.backbone}: expected "
                         f"{' or '.join(map(str, arch['sizes']))}")  # fmt: skip
    if args.backbone == DEFAULT_ARCHITECTURE:
        return False
    if args.basenet is not None and args.basenet.lower() != "none":
        raise TrainError(f"--basenet {args.basenet}: a VGG16 base network does not fit --backbone {args.backbone}, "
                         "which starts from random weights (--basenet none)")  # fmt: skip
    if args.batch_norm is False:
        raise TrainError(f"--batch_norm false: --backbone {args.backbone} always has BatchNorm")
    args.basenet, args.batch_norm = "none", True
    return True


def check_args(args: argparse.Namespace, world_size: int) -> None:
    if args.batch_size < 1 or args.batch_size % world_size:
        raise TrainError(f"--batch_size {args.batch_size} must be a positive multiple of the {world_size} processes")
    for name in ("max_iter", "save_every", "log_every"):
        if getattr(args, name) < 1:
            raise TrainError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.eval_every < 0 or (args.eval_images is not None and args.eval_images < 1):
        raise TrainError("--eval_every must be 0 or more and --eval_images at least 1")
    if args.lr <= 0 or args.start_iter < 0:
        raise TrainError("--lr must be positive and --start_iter 0 or more")
    if args.classes is not None and args.dataset != "VOC":
        raise TrainError("--classes applies to VOC-layout datasets; a COCO-format dataset names its categories")
    if args.tensorboard:
        require_tensorboard()


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


def train(args: argparse.Namespace, rt: Runtime) -> None:
    source = finetune_source(args)
    state, meta = configure(args, rt)
    guard_save_folder(args)
    base = open_dataset(args, None, args.image_sets)
    if args.classes:
        check_annotation_classes(base, args.classes)
    facts = resumed_facts(args, meta, model_facts(args, split_class_names(base), source))
    base.transform = transform = SeededTransform(partial(augmentation, facts), args.seed)
    dataset = EpochIndexedDataset(base, transform)
    per_rank = args.batch_size // rt.world_size
    check_batches_per_epoch(len(dataset), per_rank, rt.world_size)  # before the model is built
    s = build_session(args, rt, facts, state, meta, source)
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
    after_step = hooks.build(s, lambda sets: open_dataset(args, None, sets, validation=True))
    say(rt, f"training {model_name(facts)} on {args.dataset} ({len(dataset)} images, "
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


def _plot(folder: str) -> None:
    try:
        paths = (os.path.join(folder, name) for name in ("train_log.csv", "loss.png", "eval_log.csv"))
        plot_loss(*paths)
    except Exception as err:  # noqa: BLE001 - a missing matplotlib must not fail a finished training
        warnings.warn(f"could not draw loss.png: {err}", UserWarning, stacklevel=2)


def run(args: argparse.Namespace) -> int:
    """Train on the device ``--cuda`` picks; returns 0 when finished, 130/143 when stopped by SIGINT/SIGTERM after
    saving."""
    rt = setup_runtime(choose_device(args.cuda).type == "cuda")
    try:
        train(args, rt)
    except Stopped as stopped:
        return stopped.code
    finally:
        if rt.distributed and dist.is_initialized():
            dist.destroy_process_group()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and train. Returns 0 when finished, 130/143 when stopped by SIGINT/SIGTERM after saving; a
    user error is one line on stderr and exit 2."""
    args = build_parser().parse_args(argv)
    return run_main(PROG, lambda: run(args), user_errors=(TrainError,))


if __name__ == "__main__":
    sys.exit(main())
