"""SSD: Single Shot MultiBox Detector (Liu et al., ECCV 2016) with a VGG16 backbone, at 300 or 512 pixels.

The module layout (and so every state_dict key and shape) is that of the classic ssd.pytorch port, so its
published weights load unchanged: ``vgg.{i}``, ``L2Norm.weight``, ``extras.{i}``, ``loc.{i}``, ``conf.{i}``.

Every architecture is a :class:`DetectionNet`: feature maps, one loc and one conf head per map, the priors. Its
post-processing is :func:`postprocess`, the one test head: a classic test-phase ``SSD`` runs it in ``forward``, and
:class:`Detector` (what ``utils.checkpoint.load_model`` returns) runs it around a network of either phase.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from data.config import DEFAULT_ARCHITECTURE, get_architecture, get_config
from data.transforms import Preprocessing
from layers import Detect, L2Norm, PriorBox
from layers.box_utils import decode
from layers.functions.prior_box import boxes_per_location
from layers.modules.ssdlite import (
    SOURCE_CHANNELS,
    MobileNetV3Backbone,
    normal_init,
    source_sizes,
    ssdlite_extras,
    ssdlite_heads,
)

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


def postprocess(
    loc: Tensor, conf: Tensor, priors: Tensor, detect: Detect | None, variance: Sequence[float]
) -> Tensor | tuple[Tensor, Tensor]:
    """The test head: raw outputs → detections, or decoded boxes and class probabilities.

    Args:
        loc (Tensor[B, P, 4]): offsets; conf (Tensor[B, P, C]): class logits; priors (Tensor[P, 4]) (cx, cy, w, h).
        detect: the per-class NMS; None returns what the exported graph computes.
        variance: the encoding variances (``detect`` carries its own).
    Returns:
        with ``detect``: Tensor[B, C, top_k, 5], rows (score, x1, y1, x2, y2) relative to the image;
        without: boxes Tensor[B, P, 4] (x1, y1, x2, y2) relative, scores Tensor[B, P, C] softmax probabilities.
        Both in float32, also under autocast.
    """
    scores = F.softmax(conf.float(), dim=-1)
    if detect is None:
        return decode(loc.float(), priors, tuple(variance)), scores
    return detect(loc, scores, priors)


class DetectionNet(nn.Module):
    """What every SSD architecture shares: priors, the per-source heads' flattening, and the phase.

    A subclass registers its layers and the ``loc`` / ``conf`` head lists and defines :meth:`sources`.

    Args:
        phase: "train" (forward returns raw predictions) or "test" (forward returns detections).
        size: input side.
        num_classes: classes including background.
        cfg: the prior-box config (``data.config``).
        detect: the test-time post-processing.
        preprocessing: how a BGR picture becomes this network's input.
        architecture: the ``data.config.ARCHITECTURES`` name.
    """

    loc: nn.ModuleList
    conf: nn.ModuleList

    def __init__(
        self,
        phase: str,
        size: int,
        num_classes: int,
        cfg: Mapping[str, Any],
        detect: Detect,
        preprocessing: Preprocessing,
        architecture: str,
    ) -> None:
        super().__init__()
        self.phase = phase
        self.size = size
        self.num_classes = num_classes
        self.cfg = cfg
        self.detect = detect
        self.preprocessing = preprocessing
        self.architecture = architecture
        self.register_buffer("priors", PriorBox(cfg).forward(), persistent=False)

    @property
    def variance(self) -> tuple[float, float]:
        return tuple(float(v) for v in self.cfg["variance"])  # type: ignore[return-value]

    def sources(self, x: Tensor) -> list[Tensor]:
        """The feature maps the heads look at, largest first."""
        raise NotImplementedError

    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Raw network outputs.

        Args:
            x (Tensor[B, 3, size, size]): pictures as ``preprocessing`` makes them.
        Returns:
            loc (Tensor[B, P, 4]): offsets; conf (Tensor[B, P, C]): class logits.
        """
        sources = self.sources(x)
        batch = x.shape[0]
        loc = torch.cat([head(s).permute(0, 2, 3, 1).reshape(batch, -1) for s, head in zip(sources, self.loc)], 1)
        conf = torch.cat([head(s).permute(0, 2, 3, 1).reshape(batch, -1) for s, head in zip(sources, self.conf)], 1)
        return loc.view(batch, -1, 4), conf.view(batch, -1, self.num_classes)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor] | Tensor:
        """
        Args:
            x (Tensor[B, 3, size, size]): pictures as ``preprocessing`` makes them (see ``data.preprocess``).
        Returns:
            train: (loc Tensor[B, P, 4], conf Tensor[B, P, C] logits, priors Tensor[P, 4]);
            test: detections Tensor[B, C, top_k, 5], rows (score, x1, y1, x2, y2) relative to the image.
        """
        loc, conf = self.predict(x)
        if self.phase == "test":
            return postprocess(loc, conf, self.priors, self.detect, self.variance)
        return loc, conf, self.priors


class SSD(DetectionNet):
    """Single Shot MultiBox Detector with the classic VGG16 backbone.

    Args:
        phase: "train" or "test".
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
        arch = get_architecture("vgg16")
        super().__init__(phase, size, num_classes, cfg, detect, Preprocessing.of_architecture(arch), "vgg16")
        self.source_index = source_index
        self.vgg = base
        self.L2Norm = L2Norm(512, 20)
        self.extras = extras
        self.loc, self.conf = head

    @property
    def batch_norm(self) -> bool:
        return _is_bn(self.vgg)

    def sources(self, x: Tensor) -> list[Tensor]:
        """conv4_3 (L2-normalised), conv7, then every second extra."""
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


class SSDLite(DetectionNet):
    """SSDLite with torchvision's MobileNetV3-Large backbone, at 320 pixels (``layers.modules.ssdlite``).

    state_dict keys: ``backbone.{i}.*`` (torchvision's ``mobilenet_v3_large`` features, reduced tail),
    ``extras.{k}.{reduce,depthwise,project}.*``, ``loc.{i}.{depthwise,pointwise}.*``, ``conf.{i}.{depthwise,
    pointwise}.*``; every conv but the heads' pointwise ones is followed by BatchNorm.

    Args:
        phase: "train" or "test".
        size: input side, 320.
        backbone: the MobileNetV3 feature layers; extras: the four extra blocks; head: (loc heads, conf heads).
        num_classes: classes including background.
        cfg: the prior-box config (``data.config``).
        detect: the test-time post-processing.
    """

    def __init__(
        self,
        phase: str,
        size: int,
        backbone: MobileNetV3Backbone,
        extras: nn.ModuleList,
        head: tuple[nn.ModuleList, nn.ModuleList],
        num_classes: int,
        cfg: Mapping[str, Any],
        detect: Detect,
    ) -> None:
        arch = get_architecture("mobilenet_v3_large")
        preprocessing = Preprocessing.of_architecture(arch)
        super().__init__(phase, size, num_classes, cfg, detect, preprocessing, "mobilenet_v3_large")
        self.backbone = backbone
        self.extras = extras
        self.loc, self.conf = head

    @property
    def batch_norm(self) -> bool:
        return True

    def sources(self, x: Tensor) -> list[Tensor]:
        """C4's expansion, the backbone's last conv, then each extra block's output."""
        c4, x = self.backbone(x)
        sources = [c4, x]
        for block in self.extras:
            x = block(x)
            sources.append(x)
        return sources


class Detector(nn.Module):
    """A detection network with its post-processing attached: what ``utils.checkpoint.load_model`` returns, and
    what validation, eval, test, video and export run.

    Args:
        net: a :class:`DetectionNet` in either phase; its parameters are shared, not copied.
        detect: the per-class NMS (default ``net.detect``), or None for decoded boxes and probabilities (the
            exported graph).
        facts: the model facts it was built from (``utils.checkpoint.ModelFacts``), or None.
        description: the one line the scripts print about the model.
    ``state_dict()`` / ``load_state_dict()`` are the network's, in the classic layout.
    """

    def __init__(
        self, net: DetectionNet, detect: Detect | None | str = "net", facts: Any = None, description: str = ""
    ) -> None:
        super().__init__()
        self.net = net
        self.detect = net.detect if isinstance(detect, str) else detect
        self.facts = facts
        self.description = description

    def forward(self, x: Tensor) -> Tensor | tuple[Tensor, Tensor]:
        """x (Tensor[B, 3, size, size]) → see :func:`postprocess`."""
        loc, conf = self.net.predict(x)
        return postprocess(loc, conf, self.net.priors, self.detect, self.net.variance)

    @property
    def size(self) -> int:
        return int(self.net.size)

    @property
    def num_classes(self) -> int:
        return int(self.net.num_classes)

    @property
    def priors(self) -> Tensor:
        return self.net.priors

    @property
    def cfg(self) -> Mapping[str, Any]:
        return self.net.cfg

    @property
    def preprocessing(self) -> Preprocessing:
        return self.net.preprocessing

    def state_dict(self, *args: Any, **kwargs: Any) -> dict[str, Any]:  # type: ignore[override]
        return self.net.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        return self.net.load_state_dict(state_dict, strict=strict, assign=assign)


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
    """The extra feature layers after conv7 (ReLU is applied in ``SSD.sources``)."""
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
    size: int | None = 300,
    num_classes: int = 21,
    cfg: Mapping[str, Any] | None = None,
    batch_norm: bool = False,
    architecture: str = DEFAULT_ARCHITECTURE,
    **detect_kwargs: Any,
) -> DetectionNet:
    """Build an SSD network; for VGG16 (the default) SSD300 or SSD512 with the classic port's module layout.

    Args:
        phase: "train" or "test".
        size: input side: 300 or 512 for vgg16 (None: the architecture's default size).
        num_classes: classes including background (21 for VOC, 81 for COCO).
        cfg: prior-box config; by default COCO's of that size when num_classes is 81, VOC's otherwise (a convenience
            for Python callers: the scripts and loaders always pass the config the model was trained with).
        batch_norm: BatchNorm after every backbone and extra conv (for training VGG16 from scratch).
        architecture: a ``data.config.ARCHITECTURES`` name.
        detect_kwargs: passed to :class:`layers.Detect` (top_k, conf_thresh, nms_thresh, keep_top_k, bkg_label);
            unset ones take the architecture's post-processing defaults.
    Returns:
        the network; for VGG16 its new layers (extras and heads) are Xavier-initialised, as the classic training did.
    """
    arch = get_architecture(architecture)
    size = int(arch["default_size"] if size is None else size)
    if phase not in PHASES:
        raise ValueError(f"phase must be one of {PHASES}, got {phase!r}")
    if size not in arch["sizes"]:
        raise ValueError(f"size must be {' or '.join(map(str, arch['sizes']))} for {architecture}, got {size!r}")
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background and must be at least 2, got {num_classes}")
    if cfg is None:
        cfg = get_config("COCO" if num_classes == 81 else "VOC", size)
    for key, value in arch["postprocess"].items():
        detect_kwargs.setdefault(key, value)
    detect_kwargs.setdefault("variance", cfg["variance"])
    detect = Detect(num_classes, **detect_kwargs)
    return _BUILDERS[architecture](phase, size, num_classes, cfg, batch_norm, detect)


def _build_vgg(
    phase: str, size: int, num_classes: int, cfg: Mapping[str, Any], batch_norm: bool, detect: Detect
) -> SSD:
    if cfg["min_dim"] != size or len(cfg["feature_maps"]) != len(EXTRAS[size]) // 2 + 2:
        raise ValueError(f"config {cfg.get('name')!r} (min_dim {cfg['min_dim']}) does not fit SSD{size}")
    base, source_index = vgg(VGG16_LAYERS, 3, batch_norm)
    extras = add_extras(size, 1024, batch_norm)
    extra_channels = [_out_channels(m) for m in extras[1::2]]
    head = multibox([512, 1024, *extra_channels], boxes_per_location(cfg["aspect_ratios"]), num_classes)
    net = SSD(phase, size, nn.ModuleList(base), nn.ModuleList(extras), head, num_classes, cfg, source_index, detect)
    for module in (net.extras, net.loc, net.conf):
        module.apply(xavier_init)
    return net


def _build_mobilenet(
    phase: str, size: int, num_classes: int, cfg: Mapping[str, Any], batch_norm: bool, detect: Detect
) -> SSDLite:
    """SSDLite320-MobileNetV3-Large, every conv normal(0, 0.03) as torchvision starts it from scratch; it always
    has BatchNorm, whatever ``batch_norm`` says."""
    maps = source_sizes(size)
    if cfg["min_dim"] != size or tuple(cfg["feature_maps"]) != maps:
        raise ValueError(
            f"config {cfg.get('name')!r} (min_dim {cfg['min_dim']}, feature maps {list(cfg['feature_maps'])}) does "
            f"not fit SSDLite{size} (feature maps {list(maps)})"
        )
    head = ssdlite_heads(SOURCE_CHANNELS, boxes_per_location(cfg["aspect_ratios"]), num_classes)
    net = SSDLite(phase, size, MobileNetV3Backbone(), ssdlite_extras(), head, num_classes, cfg, detect)
    normal_init(net)
    return net


_BUILDERS = {"vgg16": _build_vgg, "mobilenet_v3_large": _build_mobilenet}


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
