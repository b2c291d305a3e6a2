"""SSD: Single Shot MultiBox Detector (Liu et al., ECCV 2016) with a VGG16 backbone, at 300 or 512 pixels.

The module layout (and so every state_dict key and shape) is that of the classic ssd.pytorch port, so its
published weights load unchanged: ``vgg.{i}``, ``L2Norm.weight``, ``extras.{i}``, ``loc.{i}``, ``conf.{i}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data.config import get_config
from layers import Detect, L2Norm, PriorBox
from layers.functions.prior_box import boxes_per_location

# VGG16 conv layers: channels, "M" = 2x2 max-pool, "C" = the same with ceil_mode (38x38 maps at 300 px).
VGG16_LAYERS: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "C", 512, 512, 512, "M", 512, 512, 512,
)  # fmt: skip
CONV4_3 = 10  # conv4_3 is the tenth conv: its ReLU output is the first source

# Extra layers as (out_channels, kernel, stride, padding); they alternate 1x1 and 3x3, every second is a source.
EXTRAS: dict[int, tuple[tuple[int, int, int, int], ...]] = {
    300: ((256, 1, 1, 0), (512, 3, 2, 1), (128, 1, 1, 0), (256, 3, 2, 1),
          (128, 1, 1, 0), (256, 3, 1, 0), (128, 1, 1, 0), (256, 3, 1, 0)),
    512: ((256, 1, 1, 0), (512, 3, 2, 1), (128, 1, 1, 0), (256, 3, 2, 1), (128, 1, 1, 0), (256, 3, 2, 1),
          (128, 1, 1, 0), (256, 3, 2, 1), (128, 1, 1, 0), (256, 4, 1, 1)),
}  # fmt: skip

PHASES = ("train", "test")


class SSD(nn.Module):
    """Single Shot MultiBox Detector.

    Args:
        phase: "train" (forward returns raw predictions) or "test" (forward returns detections).
        size: input side, 300 or 512.
        base: VGG16 layers through conv7; extras: the extra feature layers; head: (loc convs, conf convs).
        num_classes: classes including background.
        cfg: the prior-box config (``data.config``).
        source_index: index in ``base`` of conv4_3's ReLU.
        detect: the test-time post-processing.
    """

    def __init__(
        self,
        phase: str,
        size: int,
        base: nn.ModuleList,
        extras: nn.ModuleList,
        head: tuple[nn.ModuleList, nn.ModuleList],
        num_classes: int,
        cfg: Mapping[str, Any],
        source_index: int,
        detect: Detect,
    ) -> None:
        super().__init__()
        self.phase = phase
        self.size = size
        self.num_classes = num_classes
        self.cfg = cfg
        self.source_index = source_index
        self.vgg = base
        self.L2Norm = L2Norm(512, 20)
        self.extras = extras
        self.loc, self.conf = head
        self.detect = detect
        self.register_buffer("priors", PriorBox(cfg).forward(), persistent=False)

    @property
    def batch_norm(self) -> bool:
        return _is_bn(self.vgg)

    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Raw network outputs.

        Args:
            x (Tensor[B, 3, size, size]): RGB images minus MEANS.
        Returns:
            loc (Tensor[B, P, 4]): offsets; conf (Tensor[B, P, C]): class logits.
        """
        sources = self._sources(x)
        batch = x.shape[0]
        loc = torch.cat([head(s).permute(0, 2, 3, 1).reshape(batch, -1) for s, head in zip(sources, self.loc)], 1)
        conf = torch.cat([head(s).permute(0, 2, 3, 1).reshape(batch, -1) for s, head in zip(sources, self.conf)], 1)
        return loc.view(batch, -1, 4), conf.view(batch, -1, self.num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor] | Tensor:
        """
        Args:
            x (Tensor[B, 3, size, size]): RGB images minus MEANS (see ``data.preprocess``).
        Returns:
            train: (loc Tensor[B, P, 4], conf Tensor[B, P, C] logits, priors Tensor[P, 4]);
            test: detections Tensor[B, C, top_k, 5], rows (score, x1, y1, x2, y2) relative to the image.
        """
        loc, conf = self.predict(x)
        if self.phase == "test":
            return self.detect(loc, F.softmax(conf.float(), dim=-1), self.priors)
        return loc, conf, self.priors

    def _sources(self, x: Tensor) -> list[Tensor]:
        """The feature maps the heads look at: conv4_3 (L2-normalised), conv7, then every second extra."""
        for layer in self.vgg[: self.source_index + 1]:
            x = layer(x)
        sources = [self.L2Norm(x)]
        for layer in self.vgg[self.source_index + 1 :]:
            x = layer(x)
        sources.append(x)
        for k, layer in enumerate(self.extras):
            x = F.relu(layer(x), inplace=True)
            if k % 2 == 1:
                sources.append(x)
        return sources


def vgg(layers: Sequence[int | str], in_channels: int = 3, batch_norm: bool = False) -> tuple[list[nn.Module], int]:
    """VGG16 through conv7 (fc6/fc7 as dilated convolutions).

    Returns:
        the layers, and the index of conv4_3's ReLU (the first source).
    """
    modules: list[nn.Module] = []
    source_index = -1
    num_convs = 0
    for v in layers:
        if v == "M":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2))
        elif v == "C":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
        else:
            modules += _conv_block(nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1), batch_norm)
            in_channels = int(v)
            num_convs += 1
            if num_convs == CONV4_3:
                source_index = len(modules) - 1
    modules.append(nn.MaxPool2d(kernel_size=3, stride=1, padding=1))  # pool5
    modules += _conv_block(nn.Conv2d(in_channels, 1024, kernel_size=3, padding=6, dilation=6), batch_norm)  # conv6
    modules += _conv_block(nn.Conv2d(1024, 1024, kernel_size=1), batch_norm)  # conv7
    return modules, source_index


def add_extras(size: int, in_channels: int = 1024, batch_norm: bool = False) -> list[nn.Module]:
    """The extra feature layers after conv7 (ReLU is applied in ``SSD._sources``)."""
    modules: list[nn.Module] = []
    for out_channels, kernel, stride, padding in EXTRAS[size]:
        conv = nn.Conv2d(in_channels, out_channels, kernel_size=kernel, stride=stride, padding=padding)
        modules.append(nn.Sequential(conv, nn.BatchNorm2d(out_channels)) if batch_norm else conv)
        in_channels = out_channels
    return modules


def multibox(
    source_channels: Sequence[int], boxes: Sequence[int], num_classes: int
) -> tuple[nn.ModuleList, nn.ModuleList]:
    """One 3x3 conv per source for the offsets (boxes*4) and one for the class scores (boxes*num_classes)."""
    loc = [nn.Conv2d(c, n * 4, kernel_size=3, padding=1) for c, n in zip(source_channels, boxes)]
    conf = [nn.Conv2d(c, n * num_classes, kernel_size=3, padding=1) for c, n in zip(source_channels, boxes)]
    return nn.ModuleList(loc), nn.ModuleList(conf)


def build_ssd(
    phase: str,
    size: int = 300,
    num_classes: int = 21,
    cfg: Mapping[str, Any] | None = None,
    batch_norm: bool = False,
    **detect_kwargs: Any,
) -> SSD:
    """Build SSD300 or SSD512 with the classic port's module layout.

    Args:
        phase: "train" or "test".
        size: 300 or 512.
        num_classes: classes including background (21 for VOC, 81 for COCO).
        cfg: prior-box config; by default COCO's of that size when num_classes is 81, VOC's otherwise.
        batch_norm: BatchNorm after every backbone and extra conv (for training from scratch).
        detect_kwargs: passed to :class:`layers.Detect` (top_k, conf_thresh, nms_thresh, keep_top_k, bkg_label).
    Returns:
        an SSD whose new layers (extras and heads) are Xavier-initialised, as the classic training did.
    """
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    if size not in EXTRAS:
        raise ValueError(f"size must be 300 or 512, got {size!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be at least 2, got {num_classes}")
    if cfg is None:
        cfg = get_config("COCO" if num_classes == 81 else "VOC", size)
    if cfg["min_dim"] != size or len(cfg["feature_maps"]) != len(EXTRAS[size]) // 2 + 2:
        raise ValueError(f"config {cfg.get('name')!r} (min_dim {cfg['min_dim']}) does not fit SSD{size}")

    base, source_index = vgg(VGG16_LAYERS, 3, batch_norm)
    extras = add_extras(size, 1024, batch_norm)
    extra_channels = [_out_channels(m) for m in extras[1::2]]
    head = multibox([512, 1024, *extra_channels], boxes_per_location(cfg["aspect_ratios"]), num_classes)
    detect_kwargs.setdefault("variance", cfg["variance"])
    detect = Detect(num_classes, **detect_kwargs)
    net = SSD(phase, size, nn.ModuleList(base), nn.ModuleList(extras), head, num_classes, cfg, source_index, detect)
    for module in (net.extras, net.loc, net.conf):
        module.apply(xavier_init)
    return net


def xavier_init(module: nn.Module) -> None:
    """Xavier-uniform weights and zero bias for a conv; BatchNorm starts as identity."""
    if isinstance(module, nn.Conv2d):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def _conv_block(conv: nn.Conv2d, batch_norm: bool) -> list[nn.Module]:
    if batch_norm:
        return [conv, nn.BatchNorm2d(conv.out_channels), nn.ReLU(inplace=True)]
    return [conv, nn.ReLU(inplace=True)]


def _out_channels(module: nn.Module) -> int:
    conv = module[0] if isinstance(module, nn.Sequential) else module
    return int(conv.out_channels)


def _is_bn(base: nn.ModuleList) -> bool:
    return any(isinstance(m, nn.BatchNorm2d) for m in base)
