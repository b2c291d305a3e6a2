"""Train SSD300/SSD512 on VOC, COCO or a custom VOC-layout dataset (SPEC §6).

    python train.py --dataset VOC --dataset_root ~/data/VOCdevkit             # the classic recipe
    python train.py --resume weights/ssd300_VOC_last.ckpt                      # continue exactly
    torchrun --nproc_per_node 4 train.py --dataset VOC                         # DDP, --batch_size is global
    python train.py --batch_norm true --basenet none                           # from scratch (BN variant)

Iteration-based: the data stream is endless (a DataLoader per epoch), the learning rate steps at the config's
``lr_steps`` by ``--gamma`` after an optional linear ``--warmup``. Outputs in ``--save_folder``:
``ssd{size}_{dataset}_{iter}.pth`` (the model's state_dict, classic format) every ``--save_every`` iterations and at
the end, ``ssd{size}_{dataset}_last.ckpt`` (everything needed to continue exactly, written atomically),
``train_log.csv`` and ``loss.png``.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from tqdm import tqdm

from data import COCO_ROOT, MEANS, VOC_ROOT, detection_collate, get_config
from layers import MultiBoxLoss
from ssd import build_ssd
from utils.checkpoint import CheckpointError, fit_report, read_checkpoint
from utils.cli import dataset_class_names, read_class_names, str2bool
from utils.training.data import EpochIndexedDataset, SeededTransform, batches_per_epoch, iterate_batches
from utils.training.log import TrainLog, plot_loss
from utils.training.runtime import Runtime, StopRequest, parameter_digest, setup_runtime, shared_seed, stop_agreed
from utils.training.schedule import WarmupMultiStepLR
from utils.training.state import atomic_save, capture_rng_state, restore_rng_state
from utils.training.visdom_plot import VisdomLossPlot

PROG = "train.py"
DEFAULT_BASENET = os.path.join("weights", "vgg16_reducedfc.pth")
MAX_NONFINITE_STEPS = 5  # a run of this many non-finite losses in a row stops training
# Solver defaults of the classic model and of the BatchNorm model trained from scratch (issue 6). Measured on a fixed
# batch from random weights (benchmarks/bn_solver_sweep.py -> benchmarks/results/bn_solver_sweep_cpu.json, loss
# after 25 steps from 32.6): BN at lr 1e-3 reaches 1.35, at 2e-3 only 9.26 (a spike at step 19; 7.34 with a 10-step
# warm-up); clipping the gradient norm at 10 (norms are 250-500) slows it to 9.5-9.9, at 100 to 2.13. The plain model
# at 1e-3 diverges (31.7 -> 42 -> 33.9). So BN keeps lr 1e-3 and no clipping, and adds a warm-up as a guard.
CLASSIC_DEFAULTS = {"lr": 1e-3, "warmup": 0, "clip_grad": 0.0}
BN_DEFAULTS = {"lr": 1e-3, "warmup": 300, "clip_grad": 0.0}
# Args a resumed run takes from the command line rather than from the checkpoint: they describe the machine.
MACHINE_ARGS = {"resume", "start_iter", "cuda", "num_workers", "visdom", "visdom_server", "visdom_port", "log_every"}


class TrainError(Exception):
    """A problem the user can fix (missing file, bad flag); ``main`` prints it as one line and exits 2."""


# ----------------------------------------------------------------------------------------------- arguments


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=PROG, description="Single Shot MultiBox Detector training")
    p.add_argument("--dataset", default="VOC", type=str.upper, choices=["VOC", "COCO"], help="VOC or COCO")
    p.add_argument("--dataset_root", default=None, help=f"dataset root (default {VOC_ROOT} or {COCO_ROOT})")
    p.add_argument("--size", default=300, type=int, choices=[300, 512], help="input size: SSD300 or SSD512")
    p.add_argument(
        "--basenet",
        default=None,
        help=f"VGG16 weights for the backbone (default {DEFAULT_BASENET}; under --batch_norm true: none); "
        "'none' starts from random weights",
    )
    p.add_argument("--batch_size", default=32, type=int, help="global batch size (split across DDP ranks)")
    p.add_argument(
        "--resume",
        default=None,
        type=str,
        help="a _last.ckpt continues exactly; a .pth state_dict loads weights and starts at --start_iter",
    )
    p.add_argument("--start_iter", default=0, type=int, help="first iteration when resuming from a .pth")
    p.add_argument("--max_iter", default=None, type=int, help="iterations in all (default: the config's max_iter)")
    p.add_argument("--num_workers", default=4, type=int, help="DataLoader workers per process")
    p.add_argument(
        "--cuda",
        default=torch.cuda.is_available(),
        type=str2bool,
        help="train on the GPU (default: true when CUDA is available)",
    )
    p.add_argument(
        "--lr",
        "--learning-rate",
        dest="lr",
        default=None,
        type=float,
        help=f"base learning rate (default {CLASSIC_DEFAULTS['lr']:g}, also with --batch_norm)",
    )
    p.add_argument("--momentum", default=0.9, type=float, help="SGD momentum")
    p.add_argument("--weight_decay", default=5e-4, type=float, help="SGD weight decay")
    p.add_argument("--gamma", default=0.1, type=float, help="lr factor at each of the config's lr_steps")
    p.add_argument(
        "--lr_steps",
        default=None,
        type=_int_list,
        help="comma-separated iterations where the lr drops (default: the config's lr_steps)",
    )
    p.add_argument(
        "--warmup",
        default=None,
        type=int,
        help=f"linear lr warm-up iterations (default {CLASSIC_DEFAULTS['warmup']}; "
        f"{BN_DEFAULTS['warmup']} with --batch_norm)",
    )
    p.add_argument(
        "--clip_grad",
        default=None,
        type=float,
        help="clip the gradient norm to this (default 0: off; SSD's norms are in the hundreds early on)",
    )
    p.add_argument("--visdom", default=False, type=str2bool, help="live loss plots on a visdom server")
    p.add_argument("--visdom_server", default="http://localhost", help="visdom server address")
    p.add_argument("--visdom_port", default=8097, type=int, help="visdom server port")
    p.add_argument("--save_folder", default="weights/", help="where checkpoints and the training log go")
    p.add_argument("--save_every", default=5000, type=int, help="save a .pth and the _last.ckpt every N iterations")
    p.add_argument("--log_every", default=10, type=int, help="print a log line every N iterations")
    p.add_argument("--classes", default=None, help="text file of class names, one per line (custom VOC dataset)")
    p.add_argument(
        "--image_sets",
        default=None,
        help="VOC: year:set pairs (default 2007:trainval,2012:trainval); COCO: splits (default train2014)",
    )
    p.add_argument("--seed", default=None, type=int, help="random seed (default: drawn and recorded)")
    p.add_argument("--amp", default="none", choices=["none", "fp16", "bf16"], help="mixed precision (autocast)")
    p.add_argument("--batch_norm", default=False, type=str2bool, help="the VGG16-BN variant, for training from scratch")
    return p


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def explicit_args(argv: Sequence[str] | None) -> set[str]:
    """The destinations the command line sets explicitly (parsed again with every default suppressed)."""
    quiet = build_parser()
    for action in quiet._actions:
        action.default = argparse.SUPPRESS
    return set(vars(quiet.parse_args(argv)))


def resolve_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """Fill the defaults that depend on other flags (dataset, size, batch_norm)."""
    cfg = get_config(args.dataset, args.size)
    variant = BN_DEFAULTS if args.batch_norm else CLASSIC_DEFAULTS
    for name, value in variant.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.max_iter is None:
        args.max_iter = int(cfg["max_iter"])
    if args.lr_steps is None:
        args.lr_steps = [int(s) for s in cfg["lr_steps"]]
    if args.dataset_root is None:
        args.dataset_root = VOC_ROOT if args.dataset == "VOC" else COCO_ROOT
    if args.image_sets is None:
        args.image_sets = "2007:trainval,2012:trainval" if args.dataset == "VOC" else "train2014"
    if args.basenet is None:
        args.basenet = "none" if args.batch_norm else DEFAULT_BASENET
    return args


def check_args(args: argparse.Namespace, world_size: int) -> None:
    if args.batch_size < 1 or args.batch_size % world_size:
        raise TrainError(f"--batch_size {args.batch_size} must be a positive multiple of the {world_size} processes")
    for name in ("max_iter", "save_every", "log_every"):
        if getattr(args, name) < 1:
            raise TrainError(f"--{name} must be at least 1, got {getattr(args, name)}")
    if args.cuda and not torch.cuda.is_available():
        raise TrainError("--cuda true but CUDA is not available on this machine")
    if args.classes is not None and args.dataset != "VOC":
        raise TrainError("--classes applies to VOC-layout datasets; COCO has its 80 classes")


# ----------------------------------------------------------------------------------------------- model & data


def load_basenet(net: nn.Module, path: str) -> None:
    """Load VGG16 weights into ``net.vgg`` (``vgg16_reducedfc.pth``: keys ``0.weight`` ... ``33.bias``)."""
    if not os.path.isfile(path):
        raise TrainError(
            f"base network weights {path} not found: download vgg16_reducedfc.pth as weights/README.md explains, "
            "or build it from torchvision's VGG16 with `python -m weights.convert_vgg16`, "
            "or pass --basenet none to start from random weights"
        )
    try:
        state, _ = read_checkpoint(path)
    except CheckpointError as err:
        raise TrainError(str(err)) from err
    report = fit_report(net.vgg.state_dict(), state)
    if report:
        raise TrainError(f"base network {path} does not fit the {_describe_vgg(net)} backbone: {report}")
    net.vgg.load_state_dict(state)


def _describe_vgg(net: nn.Module) -> str:
    return "VGG16-BN" if any(isinstance(m, nn.BatchNorm2d) for m in net.vgg) else "VGG16"


def class_names_for(args: argparse.Namespace) -> list[str]:
    try:
        return read_class_names(args.classes) if args.classes else dataset_class_names(args.dataset)
    except ValueError as err:
        raise TrainError(str(err)) from err


def build_dataset(args: argparse.Namespace, class_names: list[str], seed: int) -> EpochIndexedDataset:
    """The training set with the SSD augmentation, reseeded per (epoch, image) -- see utils/train_data.py."""
    from utils.augmentations import SSDAugmentation

    if not os.path.isdir(args.dataset_root):
        raise TrainError(
            f"dataset root {args.dataset_root} not found: pass --dataset_root (or set SSD_DATA_ROOT), fetch the data "
            "with data/scripts/*.sh, or generate a demo set with `python -m data.synthetic --out DIR`"
        )
    transform = SeededTransform(partial(SSDAugmentation, args.size, MEANS), seed)
    try:
        base = _open_dataset(args, class_names, transform)
    except (OSError, ValueError, RuntimeError, KeyError, ImportError) as err:
        raise TrainError(f"cannot open the {args.dataset} dataset at {args.dataset_root}: {err}") from err
    if len(base) == 0:
        raise TrainError(f"the {args.dataset} image sets {args.image_sets} under {args.dataset_root} list no images")
    if args.classes:
        check_voc_classes(base.ids, class_names, args.classes)
    return EpochIndexedDataset(base, transform)


def check_voc_classes(ids: Sequence[tuple[str, str]], class_names: Sequence[str], classes_file: str) -> None:
    """Every object name in the annotations of ``ids`` (``(VOCyyyy folder, image id)``) is in ``--classes``.

    The dataset would skip such images one by one with a warning; a wrong class list deserves a clear stop.
    Unreadable annotations are left to the dataset, which skips them.
    """
    known = {name.lower() for name in class_names}
    for year_root, image_id in ids:
        path = os.path.join(year_root, "Annotations", f"{image_id}.xml")
        try:
            names = [(obj.findtext("name") or "").strip() for obj in ET.parse(path).getroot().iter("object")]
        except (OSError, ET.ParseError):
            continue
        unknown = sorted({n for n in names if n.lower() not in known})
        if unknown:
            raise TrainError(
                f"{path} has objects of class {', '.join(map(repr, unknown))}, which --classes {classes_file} "
                f"({len(class_names)} names) does not list"
            )


def _open_dataset(args: argparse.Namespace, class_names: list[str], transform: SeededTransform) -> Any:
    if args.dataset == "COCO":
        from data import COCODetection

        sets = [s.strip() for s in args.image_sets.split(",") if s.strip()]
        parts = [COCODetection(args.dataset_root, image_set=s, transform=transform) for s in sets]
        return parts[0] if len(parts) == 1 else torch.utils.data.ConcatDataset(parts)
    from data import VOCAnnotationTransform, VOCDetection

    image_sets = []
    for item in args.image_sets.split(","):
        year, _, name = item.strip().partition(":")
        if not year or not name:
            raise ValueError(f"--image_sets expects year:set pairs like 2007:trainval, got {item!r}")
        image_sets.append((year, name))
    target_transform = VOCAnnotationTransform(class_to_ind={name: i for i, name in enumerate(class_names)})
    return VOCDetection(
        args.dataset_root, image_sets=image_sets, transform=transform, target_transform=target_transform
    )


# ----------------------------------------------------------------------------------------------- checkpoints


@dataclass
class Session:
    """Everything the loop updates and a checkpoint records."""

    args: argparse.Namespace
    rt: Runtime
    net: nn.Module  # the bare SSD (not the DDP wrapper)
    model: nn.Module  # what the loop calls: the SSD or its DDP wrapper
    optimizer: torch.optim.Optimizer
    scheduler: WarmupMultiStepLR
    scaler: torch.amp.GradScaler
    class_names: list[str]
    config_name: str
    iteration: int = 0
    saved: set[str] = field(default_factory=set)

    def prefix(self) -> str:
        return os.path.join(self.args.save_folder, f"ssd{self.args.size}_{self.args.dataset}")

    def checkpoint(self) -> dict[str, Any]:
        """The full training state as plain containers, numbers, strings and tensors (``weights_only`` loads it)."""
        return {
            "model": _cpu_state(self.net),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "iteration": self.iteration,
            "rng": capture_rng_state(cuda=self.rt.device.type == "cuda"),
            "args": dict(vars(self.args)),
            "size": self.args.size,
            "num_classes": len(self.class_names) + 1,
            "config": self.config_name,
            "class_names": list(self.class_names),
            "batch_norm": bool(self.args.batch_norm),
            "world_size": self.rt.world_size,
        }

    def save(self) -> None:
        """Write ``..._{iteration}.pth`` and ``..._last.ckpt`` for the current iteration (rank 0 only)."""
        if not self.rt.is_main:
            return
        pth = f"{self.prefix()}_{self.iteration}.pth"
        if pth not in self.saved:
            atomic_save(_cpu_state(self.net), pth)
            self.saved.add(pth)
        atomic_save(self.checkpoint(), f"{self.prefix()}_last.ckpt")


def _cpu_state(net: nn.Module) -> dict[str, Tensor]:
    """The state_dict on the CPU in the default memory format (the classic, device-free file format)."""
    return {k: v.detach().to("cpu").contiguous() for k, v in net.state_dict().items()}


def read_resume(path: str) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """``(state_dict, meta)`` of ``--resume``; ``meta`` is empty for a plain state_dict."""
    try:
        return read_checkpoint(path)
    except CheckpointError as err:
        raise TrainError(str(err)) from err


def is_full_checkpoint(meta: Mapping[str, Any]) -> bool:
    return all(key in meta for key in ("optimizer", "scheduler", "iteration", "args"))


def merge_resumed_args(args: argparse.Namespace, explicit: set[str], meta: Mapping[str, Any]) -> None:
    """A full checkpoint's args are the defaults of the resumed run; flags given on the command line win."""
    for name, value in meta["args"].items():
        if name in MACHINE_ARGS or name in explicit or not hasattr(args, name):
            continue
        setattr(args, name, value)
    for name in ("size", "batch_norm"):
        if getattr(args, name) != meta.get(name, getattr(args, name)):
            raise TrainError(
                f"--resume {args.resume} holds an SSD{meta['size']} (batch_norm={meta['batch_norm']}) model, "
                f"but --{name} {getattr(args, name)} was given"
            )


def load_model_state(net: nn.Module, state: Mapping[str, Tensor], source: str) -> None:
    report = fit_report(net.state_dict(), state)
    if report:
        raise TrainError(f"checkpoint {source} does not fit the model being trained: {report}")
    net.load_state_dict(state)


# ----------------------------------------------------------------------------------------------- the loop


@dataclass
class StepResult:
    loss_l: float  # averaged over the ranks
    loss_c: float
    finite: bool


def train_step(s: Session, criterion: nn.Module, images: Tensor, targets: list[Tensor]) -> StepResult:
    """One SGD step on ``images [B, 3, size, size]`` and ``targets`` (B tensors ``[n_i, 5]``).

    The losses and a "non-finite" flag are all-reduced in one collective, so every DDP rank takes the same
    decision: a non-finite loss anywhere skips the update everywhere.
    """
    args, rt = s.args, s.rt
    amp_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(args.amp)
    with torch.autocast(rt.device.type, dtype=amp_dtype, enabled=amp_dtype is not None):
        loc, conf, priors = s.model(images)
    loss_l, loss_c = criterion((loc.float(), conf.float(), priors.float()), targets)
    loss = loss_l + loss_c
    stats = torch.stack([loss_l.detach(), loss_c.detach()]).float()
    flag = torch.where(torch.isfinite(stats).all(), 0.0, 1.0).reshape(1)
    stats = torch.cat([stats, flag])
    if rt.distributed:
        dist.all_reduce(stats)
    loss_l_v, loss_c_v, nonfinite = stats.tolist()
    s.optimizer.zero_grad(set_to_none=True)
    if nonfinite == 0:
        s.scaler.scale(loss).backward()
        if args.clip_grad > 0:
            s.scaler.unscale_(s.optimizer)
            nn.utils.clip_grad_norm_(s.net.parameters(), args.clip_grad)
        s.scaler.step(s.optimizer)
        s.scaler.update()
    # The rate is a closed form of the iteration: move it on whether or not the optimizer stepped (a skipped
    # step, or fp16 overflow), without the scheduler's "step() before optimizer.step()" warning.
    s.scheduler.jump_to(s.scheduler.last_epoch + 1)
    n = rt.world_size
    return StepResult(loss_l_v / n, loss_c_v / n, nonfinite == 0)


def run_loop(s: Session, batches: Iterator[Any], criterion: nn.Module, stop: StopRequest) -> None:
    """Train from ``s.iteration`` to ``--max_iter``, logging, plotting and saving on the way."""
    args, rt = s.args, s.rt
    log = TrainLog(os.path.join(args.save_folder, "train_log.csv"), start_iter=s.iteration) if rt.is_main else None
    plot = VisdomLossPlot(args.visdom_server, args.visdom_port) if args.visdom and rt.is_main else None
    # The bar is for terminals; logs and CI get the --log_every lines instead of carriage-return noise.
    bar = tqdm(
        total=args.max_iter,
        initial=s.iteration,
        disable=not (rt.is_main and sys.stderr.isatty()),
        dynamic_ncols=True,
        mininterval=1.0,
        desc="train",
    )
    nonfinite_run = 0
    try:
        while s.iteration < args.max_iter:
            tick = time.perf_counter()
            images, targets = next(batches)
            images = images.to(rt.device, non_blocking=True)
            if rt.device.type == "cuda":
                images = images.contiguous(memory_format=torch.channels_last)
            targets = [t.to(rt.device, non_blocking=True) for t in targets]
            lr = s.optimizer.param_groups[0]["lr"]
            result = train_step(s, criterion, images, targets)
            s.iteration += 1
            img_per_s = args.batch_size / max(time.perf_counter() - tick, 1e-9)
            nonfinite_run = _check_finite(result, nonfinite_run, s.iteration)
            if log is not None and result.finite:
                log.write(s.iteration, result.loss_l, result.loss_c, lr, img_per_s)
            if plot is not None and result.finite:
                plot.update(s.iteration, result.loss_l, result.loss_c)
            _report(bar, s, result, lr, img_per_s)
            if stop_agreed(rt, stop.signum is not None):
                s.save()
                signame = signal.Signals(stop.signum).name if stop.signum else "a signal on another rank"
                _say(
                    rt,
                    f"stopped by {signame} at iteration {s.iteration}; saved {s.prefix()}_{s.iteration}.pth "
                    f"and {s.prefix()}_last.ckpt (continue with --resume)",
                )
                return
            if s.iteration % args.save_every == 0 or s.iteration == args.max_iter:
                s.save()
    finally:
        bar.close()
        if log is not None:
            log.close()


def _check_finite(result: StepResult, run: int, iteration: int) -> int:
    """Count non-finite losses in a row; warn for each, stop with a clear error after MAX_NONFINITE_STEPS."""
    if result.finite:
        return 0
    run += 1
    warnings.warn(
        f"iteration {iteration}: non-finite loss (loc {result.loss_l}, conf {result.loss_c}); "
        f"step skipped ({run} in a row)",
        RuntimeWarning,
        stacklevel=2,
    )
    if run >= MAX_NONFINITE_STEPS:
        raise TrainError(
            f"the loss was not finite for {run} iterations in a row (up to iteration {iteration}): "
            "lower --lr, use --warmup or --clip_grad, or check the dataset's boxes"
        )
    return run


def _report(bar: tqdm, s: Session, r: StepResult, lr: float, img_per_s: float) -> None:
    bar.set_postfix(
        loss_l=f"{r.loss_l:.3f}", loss_c=f"{r.loss_c:.3f}", lr=f"{lr:.1e}", img_s=f"{img_per_s:.1f}", refresh=False
    )
    bar.update(1)
    if s.rt.is_main and (s.iteration % s.args.log_every == 0 or s.iteration == s.args.max_iter):
        _say(
            s.rt,
            f"iter {s.iteration:>7d}/{s.args.max_iter} | loss {r.loss_l + r.loss_c:.4f} "
            f"(loc {r.loss_l:.4f}, conf {r.loss_c:.4f}) | lr {lr:.2e} | {img_per_s:.1f} img/s",
        )


def _say(rt: Runtime, message: str) -> None:
    if rt.is_main:
        tqdm.write(message, file=sys.stdout)
        sys.stdout.flush()


def check_ranks_agree(s: Session) -> None:
    """Under DDP, gather every rank's parameter digest and report whether they are identical."""
    if not s.rt.distributed:
        return
    digests: list[str | None] = [None] * s.rt.world_size
    dist.all_gather_object(digests, parameter_digest(s.net))
    if len(set(digests)) == 1:
        _say(s.rt, f"parameters identical on all {s.rt.world_size} ranks (sha256 {digests[0]})")
    elif s.rt.is_main:
        warnings.warn(f"parameters differ between ranks: {digests}", RuntimeWarning, stacklevel=2)


# ----------------------------------------------------------------------------------------------- setup


def configure(args: argparse.Namespace, explicit: set[str], meta: Mapping[str, Any], rt: Runtime) -> None:
    """Complete ``args``: a full checkpoint's args first, then the defaults, then a seed shared by all ranks."""
    if is_full_checkpoint(meta):
        merge_resumed_args(args, explicit, meta)
        if "start_iter" in explicit:
            warnings.warn(
                f"--start_iter is ignored: {args.resume} continues at its iteration {meta['iteration']}",
                UserWarning,
                stacklevel=2,
            )
    resolve_defaults(args)
    check_args(args, rt.world_size)
    args.seed = shared_seed(args.seed, rt)


def build_session(
    args: argparse.Namespace, rt: Runtime, class_names: list[str], state: Mapping[str, Tensor], meta: Mapping[str, Any]
) -> Session:
    """Model, optimizer and schedule, from scratch, a basenet, a state_dict or a full checkpoint."""
    full = is_full_checkpoint(meta)
    cfg = get_config(args.dataset, args.size)
    torch.manual_seed(args.seed)
    net = build_ssd("train", args.size, len(class_names) + 1, cfg=cfg, batch_norm=args.batch_norm)
    if args.resume:
        load_model_state(net, state, args.resume)
    elif args.basenet.lower() == "none":
        if not args.batch_norm:
            warnings.warn(
                "--basenet none: the VGG16 backbone starts from random weights; the classic model "
                "trains poorly that way (consider --batch_norm true)",
                UserWarning,
                stacklevel=2,
            )
    else:
        load_basenet(net, _find_file(args.basenet))
    net.to(rt.device)
    if rt.device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    model = _wrap_ddp(net, args, rt)
    optimizer = torch.optim.SGD(net.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.weight_decay)
    scheduler = WarmupMultiStepLR(optimizer, args.lr_steps, args.gamma, args.warmup)
    scaler = torch.amp.GradScaler(rt.device.type, enabled=args.amp == "fp16")
    s = Session(args, rt, net, model, optimizer, scheduler, scaler, class_names, str(cfg["name"]))
    if full:
        optimizer.load_state_dict(meta["optimizer"])
        scheduler.load_state_dict(meta["scheduler"])
        if meta.get("scaler"):
            scaler.load_state_dict(meta["scaler"])
        s.iteration = int(meta["iteration"])
        restore_rng_state(meta["rng"])
        apply_solver_args(s)
    else:
        s.iteration = args.start_iter
        scheduler.jump_to(args.start_iter)
    return s


def apply_solver_args(s: Session) -> None:
    """Make the solver flags win over the restored optimizer/scheduler state (``--resume X.ckpt --lr 1e-4``).

    Without such flags the values equal the checkpoint's and the rate is the same closed form, so an exact
    resume stays exact.
    """
    args, scheduler = s.args, s.scheduler
    scheduler.base_lrs = [float(args.lr)] * len(s.optimizer.param_groups)
    scheduler.milestones = sorted(int(m) for m in args.lr_steps)
    scheduler.gamma = float(args.gamma)
    scheduler.warmup_iters = int(args.warmup)
    for group in s.optimizer.param_groups:
        group["momentum"], group["weight_decay"] = args.momentum, args.weight_decay
    scheduler.jump_to(s.iteration)


def _wrap_ddp(net: nn.Module, args: argparse.Namespace, rt: Runtime) -> nn.Module:
    if not rt.distributed:
        return net
    if args.batch_norm and rt.device.type == "cuda":
        net = nn.SyncBatchNorm.convert_sync_batchnorm(net)
    device_ids = [rt.local_rank] if rt.device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(net, device_ids=device_ids)


def _find_file(path: str) -> str:
    """``path`` as given, or relative to this repository when it is not found from the working directory."""
    if os.path.exists(path) or os.path.isabs(path):
        return path
    beside = os.path.join(os.path.dirname(os.path.abspath(__file__)), path)
    return beside if os.path.exists(beside) else path


def train(args: argparse.Namespace, explicit: set[str], rt: Runtime) -> None:
    state, meta = read_resume(args.resume) if args.resume else ({}, {})
    configure(args, explicit, meta, rt)
    class_names = class_names_for(args)
    dataset = build_dataset(args, class_names, args.seed)
    per_rank = args.batch_size // rt.world_size
    if batches_per_epoch(len(dataset), per_rank, rt.world_size) == 0:
        raise TrainError(
            f"the dataset has {len(dataset)} images, fewer than one batch of {args.batch_size}: "
            "lower --batch_size or add images"
        )
    s = build_session(args, rt, class_names, state, meta)
    if s.iteration >= args.max_iter:
        raise TrainError(f"nothing to do: training starts at iteration {s.iteration} and --max_iter is {args.max_iter}")
    if rt.is_main:
        os.makedirs(args.save_folder, exist_ok=True)
    batches = iterate_batches(
        dataset,
        start_iter=s.iteration,
        batch_size=per_rank,
        seed=args.seed,
        collate_fn=detection_collate,
        rank=rt.rank,
        world_size=rt.world_size,
        num_workers=args.num_workers,
        pin_memory=rt.device.type == "cuda",
    )
    criterion = MultiBoxLoss(
        len(s.class_names) + 1, 0.5, True, 0, True, 3, 0.5, False, use_gpu=rt.device.type == "cuda"
    )
    _say(
        rt,
        f"training SSD{args.size}{'-BN' if args.batch_norm else ''} on {args.dataset} ({len(dataset)} images, "
        f"{len(s.class_names)} classes) from iteration {s.iteration} to {args.max_iter}: batch {args.batch_size} "
        f"on {rt.world_size} x {rt.device.type}, lr {args.lr:g}, seed {args.seed}",
    )
    stop = StopRequest()
    stop.install()
    try:
        run_loop(s, batches, criterion, stop)
    finally:
        stop.restore()
        batches.close()
    check_ranks_agree(s)
    if rt.is_main:
        _plot(args.save_folder)


def _plot(folder: str) -> None:
    try:
        plot_loss(os.path.join(folder, "train_log.csv"), os.path.join(folder, "loss.png"))
    except Exception as err:  # noqa: BLE001 - a missing matplotlib must not fail a finished training
        warnings.warn(f"could not draw loss.png: {err}", UserWarning, stacklevel=2)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and train; returns 0, or exits 2 with one line on stderr for a user error."""
    parser = build_parser()
    args = parser.parse_args(argv)
    explicit = explicit_args(argv)
    rt = setup_runtime(args.cuda and torch.cuda.is_available())
    try:
        train(args, explicit, rt)
    except TrainError as err:
        print(f"{PROG}: error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    finally:
        if rt.distributed and dist.is_initialized():
            dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
