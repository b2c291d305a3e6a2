"""What the speed benchmark runs: models, inputs and targets, and one callable per (case, implementation).

Both detectors see the same images: ``images`` (Tensor[B, 3, 300, 300], RGB in [0, 1]). Our SSD takes them as
``images * 255 - MEANS`` (RGB order); torchvision's ``ssd300_vgg16`` normalises them itself with the same numbers
(mean (0.48235, 0.45882, 0.40784) and std 1/255), so both raw networks get the very same input tensor.

Score regimes: post-processing is timed where an untrained or early checkpoint leaves it -- nearly every (prior,
class) pair above the 0.01 threshold ("dense") -- and where a trained detector does -- tens to hundreds of pairs
per image ("sparse"). Random weights give a fairly flat softmax over the 21 classes, but neither model's spread
of logits lands exactly on either, so each model's class logits are adjusted, the same way for every prior: the
conf convs' weights and biases are multiplied by ``scale`` (a flatter softmax, dense) or the background bias is
raised by ``shift`` (fewer candidates, sparse). :func:`regime_adjustment` finds the value by bisection so that a
regime's number of pairs per image (``REGIME_CANDIDATES``) passes the threshold; :func:`adjusted_head` applies
it to a model for a while.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection import ssd300_vgg16
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_iou

from benchmarks.classic import classic_multibox_loss
from benchmarks.previous_detect import PreviousDetect
from data.config import MEANS, voc
from layers import MultiBoxLoss, PriorBox
from layers.box_utils import match_batch, point_form
from layers.modules.multibox_loss import pad_targets
from ssd import SSD, DetectionNet, build_ssd
from utils.cli import AMP_DTYPES, autocast

SIZE = 300
NUM_CLASSES = 21
CONF_THRESH, NMS_THRESH, TOP_K = 0.01, 0.45, 200
FEATURE_MAPS = (38, 19, 10, 5, 3, 1)
RGB_MEANS = tuple(float(m) for m in reversed(MEANS))
NUM_PRIORS = 8732
# Mean (prior, non-background class) pairs per image scoring above CONF_THRESH in each score regime.
REGIME_CANDIDATES = {"sparse": 150.0, "dense": 0.9 * NUM_PRIORS * (NUM_CLASSES - 1)}


@dataclass(frozen=True)
class Settings:
    """Switches applied to both implementations alike."""

    device: torch.device
    amp: str = "none"
    channels_last: bool = False
    compile: bool = False
    compile_mode: str = "default"

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return AMP_DTYPES[self.amp]

    def autocast(self) -> contextlib.AbstractContextManager:
        """Autocast to the chosen precision (disabled for "none")."""
        return autocast(self.device, self.amp)

    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


# ----------------------------------------------------------------------------------------- inputs and targets


def make_images(batch: int, device: torch.device, seed: int = 0) -> Tensor:
    """Tensor[B, 3, 300, 300]: seeded RGB images in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(batch, 3, SIZE, SIZE, generator=gen).to(device)


def input_means(device: torch.device) -> Tensor:
    """Tensor[1, 3, 1, 1]: the RGB means our network subtracts, on ``device``."""
    return torch.tensor(RGB_MEANS, device=device).view(1, 3, 1, 1)


def normalise(images: Tensor, settings: Settings, means: Tensor | None = None) -> Tensor:
    """images (Tensor[B, 3, H, W]) in [0, 1] -> our network input, ``images * 255 - MEANS`` (RGB).

    ``means`` (from :func:`input_means`) saves building the constant on every call.
    """
    means = input_means(images.device) if means is None else means
    return (images * 255.0 - means).contiguous(memory_format=settings.memory_format())


def make_targets(batch: int, device: torch.device, seed: int = 0, max_boxes: int = 10) -> list[Tensor]:
    """B tensors ``[n_i, 5]`` (x1, y1, x2, y2, label) relative to the image: 1..max_boxes boxes of 5-80% side,
    labels 0..19, seeded."""
    gen = torch.Generator().manual_seed(seed)
    targets = []
    for _ in range(batch):
        n = int(torch.randint(1, max_boxes + 1, (1,), generator=gen))
        wh = 0.05 + 0.75 * torch.rand(n, 2, generator=gen)
        top_left = (1.0 - wh) * torch.rand(n, 2, generator=gen)
        labels = torch.randint(0, NUM_CLASSES - 1, (n, 1), generator=gen).float()
        targets.append(torch.cat((top_left, top_left + wh, labels), 1).to(device))
    return targets


def torchvision_targets(targets: Sequence[Tensor]) -> list[dict[str, Tensor]]:
    """Our targets as torchvision wants them: boxes in pixels of the 300x300 image, labels 1..20."""
    return [{"boxes": t[:, :4] * SIZE, "labels": t[:, 4].long() + 1} for t in targets]


# ------------------------------------------------------------------------------------------------- models


def build_ours(phase: str, settings: Settings, seed: int = 0) -> SSD:
    """Our SSD300 (random weights, seeded) on the device, in train or eval mode as ``phase`` says."""
    torch.manual_seed(seed)
    net = build_ssd(phase, SIZE, NUM_CLASSES, voc, top_k=TOP_K, conf_thresh=CONF_THRESH, nms_thresh=NMS_THRESH)
    net = net.to(settings.device, memory_format=settings.memory_format())
    net.train(phase == "train")
    return net


def build_torchvision(train: bool, settings: Settings, seed: int = 0) -> nn.Module:
    """torchvision's ssd300_vgg16 (random weights, seeded, 21 classes), post-processing set to our test settings:
    score 0.01, NMS 0.45, 200 candidates per class (its default is 400); it keeps 200 detections per image."""
    torch.manual_seed(seed)
    model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=NUM_CLASSES, topk_candidates=TOP_K)
    model.score_thresh, model.nms_thresh = CONF_THRESH, NMS_THRESH
    model = model.to(settings.device, memory_format=settings.memory_format())
    model.train(train)
    return model


def compile_networks(ours: SSD, tv: nn.Module, settings: Settings) -> None:
    """``torch.compile`` the raw networks in place (our ``predict``; torchvision's backbone and head); the
    post-processing, loss and torchvision's transform stay eager. No-op unless ``settings.compile``."""
    if not settings.compile:
        return
    ours.predict = torch.compile(ours.predict, mode=settings.compile_mode)
    tv.backbone = torch.compile(tv.backbone, mode=settings.compile_mode)
    tv.head = torch.compile(tv.head, mode=settings.compile_mode)


def torchvision_raw(model: nn.Module, x: Tensor) -> dict[str, Tensor]:
    """torchvision's raw network (backbone + head) on normalised input x (Tensor[B, 3, 300, 300])
    -> bbox_regression (Tensor[B, P, 4]), cls_logits (Tensor[B, P, C])."""
    return model.head(list(model.backbone(x).values()))


def torchvision_anchors(model: nn.Module, images: Tensor) -> list[Tensor]:
    """torchvision's default boxes for a batch of 300x300 images: B tensors ``[P, 4]`` (x1, y1, x2, y2) in
    pixels. The generator reads only the feature maps' sizes, so empty maps of SSD300's sizes stand in."""
    features = [images.new_zeros(1, 1, f, f) for f in FEATURE_MAPS]
    anchors = model.anchor_generator(ImageList(images[:1], [(SIZE, SIZE)]), features)[0]
    return [anchors] * images.shape[0]


def default_priors(device: torch.device) -> Tensor:
    """SSD300's VOC priors (Tensor[8732, 4], center-size) on ``device``."""
    return PriorBox(voc).forward().to(device)


def conf_convs(model: nn.Module) -> list[nn.Conv2d]:
    """The class-score convs of one of our networks or of torchvision's SSD or SSDLite (all lay channels out as
    anchor * C + class): each head's last conv (an SSDLite head is a depthwise unit, then the 1x1 conv)."""
    heads = model.conf if isinstance(model, DetectionNet) else model.head.classification_head.module_list
    return [[m for m in head.modules() if isinstance(m, nn.Conv2d)][-1] for head in heads]


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)


# ----------------------------------------------------------------------------------------- score regimes


@dataclass(frozen=True)
class Adjustment:
    """A change of every prior's class logits: multiplied by ``scale``, then ``shift`` added to the background."""

    scale: float = 1.0
    shift: float = 0.0


def adjusted_logits(logits: Tensor, adjustment: Adjustment) -> Tensor:
    """logits (Tensor[B, P, C]) changed as :func:`adjusted_head` changes the model's: Tensor[B, P, C]."""
    adjusted = logits * adjustment.scale
    adjusted[..., 0] += adjustment.shift
    return adjusted


def candidates_per_image(logits: Tensor, adjustment: Adjustment = Adjustment(), thresh: float = CONF_THRESH) -> float:
    """Mean number of (prior, non-background class) pairs per image whose softmax score exceeds ``thresh``.

    Args:
        logits (Tensor[B, P, C]): class logits, taken with ``adjustment``.
    """
    scores = F.softmax(adjusted_logits(logits.float(), adjustment), dim=-1)
    return float((scores[..., 1:] > thresh).sum()) / logits.shape[0]


def _bisect(count: Callable[[float], float], target: float, low: float, high: float, steps: int = 40) -> float:
    """A value v with ``count(v)`` about ``target``, for a ``count`` that falls as v grows.

    The bracket [low, high] widens until count(low) > target >= count(high), then halves ``steps`` times.
    """
    while count(low) <= target and low > -1e4:
        low = 2 * low - 1
    while count(high) > target and high < 1e4:
        high = 2 * high + 1
    for _ in range(steps):
        mid = (low + high) / 2
        low, high = (mid, high) if count(mid) > target else (low, mid)
    return high


def background_shift_for(logits: Tensor, target: float, thresh: float = CONF_THRESH) -> float:
    """The background-logit shift that leaves about ``target`` candidates per image above ``thresh``.

    Args:
        logits (Tensor[B, P, C]): class logits of a calibration batch.
    """
    return _bisect(lambda shift: candidates_per_image(logits, Adjustment(shift=shift), thresh), target, -1.0, 1.0)


def logit_scale_for(logits: Tensor, target: float, thresh: float = CONF_THRESH) -> float:
    """The factor on the logits that leaves about ``target`` candidates per image above ``thresh`` (a smaller
    factor flattens the softmax; at 0 every class of every prior scores 1 / C).

    Args:
        logits (Tensor[B, P, C]): class logits of a calibration batch.
    """

    def count(scale: float) -> float:
        return candidates_per_image(logits, Adjustment(scale=max(scale, 0.0)), thresh)

    return _bisect(count, target, 0.0, 1.0)


def regime_adjustment(
    regime: str, logits: Tensor, thresh: float = CONF_THRESH, candidates: dict[str, float] | None = None
) -> Adjustment:
    """How to change a model's class logits (Tensor[B, P, C] of a calibration batch) for a score regime:
    ``candidates[regime]`` pairs per image above ``thresh`` (default: SSD300's ``REGIME_CANDIDATES``)."""
    target = (REGIME_CANDIDATES if candidates is None else candidates)[regime]
    if regime == "dense":
        return Adjustment(scale=logit_scale_for(logits, target, thresh))
    return Adjustment(shift=background_shift_for(logits, target, thresh))


def regime_adjustments(
    regime: str, logits: dict[str, Tensor], thresh: float = CONF_THRESH, candidates: dict[str, float] | None = None
) -> tuple[dict[str, Adjustment], dict[str, Any]]:
    """Each model's adjustment for a score regime (:func:`regime_adjustment`), and the statistics for the JSON: the
    target, and per model the adjustment and its candidates per image before and after.

    Args:
        logits: model name -> its class logits (Tensor[B, P, C]) on a calibration batch.
    """
    targets = REGIME_CANDIDATES if candidates is None else candidates
    adjust = {name: regime_adjustment(regime, model_logits, thresh, targets) for name, model_logits in logits.items()}
    stats: dict[str, Any] = {"target_candidates_per_image": round(targets[regime], 1)}
    for name, model_logits in logits.items():
        stats[name] = {
            "logit_scale": round(adjust[name].scale, 4),
            "background_bias_added": round(adjust[name].shift, 4),
            "candidates_per_image_before": candidates_per_image(model_logits, thresh=thresh),
            "candidates_per_image": candidates_per_image(model_logits, adjust[name], thresh),
        }
    return adjust, stats


@contextlib.contextmanager
def adjusted_head(model: nn.Module, adjustment: Adjustment, num_classes: int = NUM_CLASSES) -> Iterator[None]:
    """Change ``model``'s class logits by ``adjustment`` (through its conf convs) for the duration of the block."""
    convs = conf_convs(_unwrap(model))
    saved = [(conv.weight.detach().clone(), conv.bias.detach().clone()) for conv in convs]
    with torch.no_grad():
        for conv in convs:
            conv.weight.mul_(adjustment.scale)
            conv.bias.mul_(adjustment.scale)
            conv.bias[0::num_classes] += adjustment.shift  # channel a * C + 0 is anchor a's background
    try:
        yield
    finally:
        with torch.no_grad():
            for conv, (weight, bias) in zip(convs, saved):
                conv.weight.copy_(weight)
                conv.bias.copy_(bias)


# ------------------------------------------------------------------------------------- one call per case


def raw_fns(ours: SSD, tv: nn.Module, x: Tensor, settings: Settings) -> dict[str, Callable[[], Any]]:
    """(a) the raw networks on the normalised batch."""

    @torch.inference_mode()
    def run_ours() -> Any:
        with settings.autocast():
            return ours.predict(x)

    @torch.inference_mode()
    def run_tv() -> Any:
        with settings.autocast():
            return torchvision_raw(tv, x)

    return {"ours": run_ours, "torchvision": run_tv}


def end_to_end_fns(ours: SSD, tv: nn.Module, images: Tensor, settings: Settings) -> dict[str, Callable[[], Any]]:
    """(b) images in [0, 1] -> detections: ours normalise + network + Detect; torchvision its whole eval
    forward (transform, network, anchors, per-image post-processing)."""
    image_list = list(images)
    means = input_means(images.device)

    @torch.inference_mode()
    def run_ours() -> Tensor:
        with settings.autocast():
            return ours(normalise(images, settings, means))

    @torch.inference_mode()
    def run_tv() -> Any:
        with settings.autocast():
            return tv(image_list)

    return {"ours": run_ours, "torchvision": run_tv}


def anchors_from_priors(priors: Tensor, size: int = SIZE) -> Tensor:
    """priors (Tensor[P, 4], center-size, relative) -> Tensor[P, 4] (x1, y1, x2, y2) in pixels of the size x size
    image: our default boxes as torchvision's box coder takes anchors."""
    return point_form(priors) * size


def postprocess_fns(
    ours: SSD, tv: nn.Module, loc: Tensor, logits: Tensor, settings: Settings, previous: bool = True
) -> dict[str, Callable[[], Any]]:
    """Post-processing alone, on the same precomputed network outputs for every implementation: our softmax +
    Detect; the previous Detect (:mod:`benchmarks.previous_detect`); torchvision's postprocess_detections
    (softmax, per image and class: threshold, top-k, decoding, NMS, 200 per image) with our priors as anchors.

    Args:
        loc (Tensor[B, P, 4]): offsets; logits (Tensor[B, P, C]): class logits, both from our network.
    """
    batch = loc.shape[0]
    detect = ours.detect
    old = PreviousDetect(NUM_CLASSES, 0, TOP_K, CONF_THRESH, NMS_THRESH) if previous else None
    head = {"bbox_regression": loc, "cls_logits": logits}
    anchors = [anchors_from_priors(ours.priors)] * batch
    sizes = [(SIZE, SIZE)] * batch

    @torch.inference_mode()
    def run_ours() -> Tensor:
        with settings.autocast():
            return detect(loc, F.softmax(logits.float(), dim=-1), ours.priors)

    @torch.inference_mode()
    def run_previous() -> Tensor:
        with settings.autocast():
            return old(loc, F.softmax(logits.float(), dim=-1), ours.priors)

    @torch.inference_mode()
    def run_tv() -> Any:
        with settings.autocast():  # as in its forward: torchvision's NMS casts to float32 under autocast only
            return tv.postprocess_detections(head, anchors, sizes)

    fns = {"ours": run_ours, "torchvision": run_tv}
    return fns | ({"previous": run_previous} if previous else {})


def train_fns(
    ours: SSD, tv: nn.Module, images: Tensor, targets: list[Tensor], settings: Settings
) -> dict[str, Callable[[], Any]]:
    """(c) one SGD step (lr 1e-3, momentum 0.9, weight decay 5e-4): forward, loss with matching, backward, step."""
    x = normalise(images, settings)
    image_list, tv_targets = list(images), torchvision_targets(targets)
    criterion = MultiBoxLoss(NUM_CLASSES, 0.5, True, 0, True, 3, 0.5, False)
    steps = {}
    for name, model in (("ours", ours), ("torchvision", tv)):
        steps[name] = (
            torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4),
            torch.amp.GradScaler(settings.device.type, enabled=settings.amp == "fp16"),
        )

    def step(name: str, loss_fn: Callable[[], Tensor]) -> Tensor:
        optimizer, scaler = steps[name]
        optimizer.zero_grad(set_to_none=True)
        with settings.autocast():
            loss = loss_fn()
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return loss.detach()

    def ours_loss() -> Tensor:
        loss_l, loss_c = criterion(ours(x), targets)
        return loss_l + loss_c

    def tv_loss() -> Tensor:
        return sum(tv(image_list, tv_targets).values())

    return {"ours": lambda: step("ours", ours_loss), "torchvision": lambda: step("torchvision", tv_loss)}


def match_fns(tv: nn.Module, priors: Tensor, images: Tensor, targets: list[Tensor]) -> dict[str, Callable[[], Any]]:
    """(d) target matching alone: ours ``match_batch`` on the padded batch (padding done once, outside);
    torchvision's per-image loop (box_iou, SSDMatcher, encoding of the matched boxes, class targets)."""
    truths, labels, valid = pad_targets(targets, len(targets), images.device)
    anchors = torchvision_anchors(tv, images)
    tv_targets = torchvision_targets(targets)

    @torch.no_grad()
    def run_ours() -> Any:
        return match_batch(0.5, truths, labels, valid, priors, (0.1, 0.2))

    @torch.no_grad()
    def run_tv() -> Any:
        return list(_torchvision_match(tv, anchors, tv_targets))

    return {"ours": run_ours, "torchvision": run_tv}


def _torchvision_match(
    tv: nn.Module, anchors: list[Tensor], targets: list[dict[str, Tensor]]
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """torchvision SSD's matching, image by image, as its forward and compute_loss do it.

    Yields:
        per image: matched index per anchor (Tensor[P]), encoded foreground boxes (Tensor[F, 4]), class
        targets (Tensor[P]).
    """
    for anchors_per_image, target in zip(anchors, targets):
        matched = tv.proposal_matcher(box_iou(target["boxes"], anchors_per_image))
        foreground = torch.where(matched >= 0)[0]
        gt_index = matched[foreground]
        regression = tv.box_coder.encode_single(target["boxes"][gt_index], anchors_per_image[foreground])
        classes = torch.zeros_like(matched)
        classes[foreground] = target["labels"][gt_index]
        yield matched, regression, classes


def loss_fns(
    tv: nn.Module, priors: Tensor, images: Tensor, targets: list[Tensor], seed: int = 0
) -> dict[str, Callable[[], Any]]:
    """Matching + loss forward + backward on precomputed float32 network outputs that require grad: ours
    (batched MultiBoxLoss), the classic per-image loop (:mod:`benchmarks.classic`), torchvision's matching +
    compute_loss. The losses compute in float32 anyway, so no autocast here."""
    batch, num_priors = images.shape[0], priors.shape[0]
    gen = torch.Generator().manual_seed(seed)
    loc = (0.5 * torch.randn(batch, num_priors, 4, generator=gen)).to(images.device).requires_grad_()
    conf = torch.randn(batch, num_priors, NUM_CLASSES, generator=gen).to(images.device).requires_grad_()
    criterion = MultiBoxLoss(NUM_CLASSES, 0.5, True, 0, True, 3, 0.5, False)
    anchors = torchvision_anchors(tv, images)
    tv_targets = torchvision_targets(targets)

    def backward(loss_l: Tensor, loss_c: Tensor) -> None:
        loc.grad = conf.grad = None
        (loss_l + loss_c).backward()

    def run_tv() -> None:
        matched = [m for m, _, _ in _torchvision_match(tv, anchors, tv_targets)]
        losses = tv.compute_loss(tv_targets, {"bbox_regression": loc, "cls_logits": conf}, anchors, matched)
        backward(losses["bbox_regression"], losses["classification"])

    return {
        "ours": lambda: backward(*criterion((loc, conf, priors), targets)),
        "classic": lambda: backward(*classic_multibox_loss((loc, conf, priors), targets)),
        "torchvision": run_tv,
    }
