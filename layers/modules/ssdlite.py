"""SSDLite's parts (MobileNetV2 paper, section 6.2) on a MobileNetV3-Large backbone (MobileNetV3 paper, section 6.3).

The layout is the one torchvision's ``ssdlite320_mobilenet_v3_large`` trains from scratch, so its COCO weights fit:
the backbone is torchvision's own ``mobilenet_v3_large`` with the reduced tail (the last stage at half width),
BatchNorm eps 0.001 and momentum 0.03 throughout. Six sources: the expansion (1x1 conv) output of the first block
that goes from stride 16 to 32 ("C4", 672 channels, 20x20 at 320 px), the backbone's last conv (480 channels,
10x10), and four extra blocks (1x1 to half width, 3x3 depthwise stride 2, 1x1 to 512, 256, 256, 128 channels).
Each source has a loc and a conf head: a 3x3 depthwise conv + BN + ReLU6, then a 1x1 conv with bias.

Module names, and so state_dict keys: the backbone keeps torchvision's ``features`` indices (``{i}.block.{j}``);
an extra block is ``reduce`` / ``depthwise`` / ``project``, a head ``depthwise`` / ``pointwise``; each conv + BN
+ ReLU6 unit holds the conv at ``0`` and the BatchNorm at ``1``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from functools import partial

from torch import Tensor, nn
from torchvision.models import mobilenet_v3_large

BN_EPS: float = 0.001
BN_MOMENTUM: float = 0.03
INIT_STD: float = 0.03  # every conv of a from-scratch SSDLite starts as normal(0, 0.03), biases at zero
EXTRA_CHANNELS: tuple[int, ...] = (512, 256, 256, 128)
# channels of the six sources: C4's expansion, the last backbone conv, then the extras
SOURCE_CHANNELS: tuple[int, ...] = (672, 480, *EXTRA_CHANNELS)


def source_sizes(size: int) -> tuple[int, ...]:
    """Sides of the six source maps for a ``size``x``size`` input: every stride-2 layer maps a side n to
    ceil(n / 2); C4 is at stride 16, the backbone's end at 32, then each extra block halves again."""
    sides = []
    side = size
    for halving in range(1, 10):
        side = (side + 1) // 2
        if halving >= 4:
            sides.append(side)
    return tuple(sides)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    """BatchNorm with SSDLite's eps and momentum."""
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def conv_bn_relu6(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, depthwise: bool = False
) -> nn.Sequential:
    """A bias-free conv (padding keeps the size at stride 1), BatchNorm and ReLU6: keys ``0.*`` and ``1.*``."""
    conv = nn.Conv2d(
        in_channels, out_channels, kernel, stride=stride, padding=(kernel - 1) // 2,
        groups=in_channels if depthwise else 1, bias=False,
    )  # fmt: skip
    return nn.Sequential(conv, batch_norm(out_channels), nn.ReLU6(inplace=True))


class MobileNetV3Backbone(nn.Sequential):
    """torchvision's ``mobilenet_v3_large`` feature layers (reduced tail), cut for SSDLite.

    The layers keep torchvision's indices (``0`` the stem, ``1``–``15`` the inverted residual blocks, ``16`` the
    last 1x1 conv), so a torchvision MobileNetV3-Large ``features.*`` state dict of the same width loads as is.
    ``c4_index`` is the last block of stride 2; it has no residual connection, so it may be run in two parts.
    """

    def __init__(self) -> None:
        features = mobilenet_v3_large(
            weights=None, norm_layer=partial(nn.BatchNorm2d, eps=BN_EPS, momentum=BN_MOMENTUM), reduced_tail=True
        ).features
        super().__init__(*features)
        strided = [i for i, layer in enumerate(self) if hasattr(layer, "block") and _depthwise_stride(layer) > 1]
        self.c4_index = strided[-1]
        if self[self.c4_index].use_res_connect:
            raise ValueError(f"MobileNetV3 block {self.c4_index} has a residual connection: it cannot be tapped")

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # type: ignore[override]
        """x (Tensor[B, 3, H, W]) → (C4 expansion Tensor[B, 672, H/16, W/16], last conv Tensor[B, 480, H/32, W/32])."""
        layers = list(self)
        for layer in layers[: self.c4_index]:
            x = layer(x)
        c4_block = layers[self.c4_index].block
        c4 = c4_block[0](x)
        x = c4_block[1:](c4)
        for layer in layers[self.c4_index + 1 :]:
            x = layer(x)
        return c4, x


def _depthwise_stride(block: nn.Module) -> int:
    return max(m.stride[0] for m in block.modules() if isinstance(m, nn.Conv2d))


def extra_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """1x1 to half of ``out_channels``, 3x3 depthwise stride 2, 1x1 to ``out_channels``; each with BN and ReLU6."""
    middle = out_channels // 2
    return nn.Sequential(
        OrderedDict(
            reduce=conv_bn_relu6(in_channels, middle, 1),
            depthwise=conv_bn_relu6(middle, middle, 3, stride=2, depthwise=True),
            project=conv_bn_relu6(middle, out_channels, 1),
        )
    )


def ssdlite_extras(in_channels: int = SOURCE_CHANNELS[1]) -> nn.ModuleList:
    """The four extra blocks after the backbone (each halves the map): ``extras.{k}``."""
    channels = (in_channels, *EXTRA_CHANNELS)
    return nn.ModuleList(extra_block(c_in, c_out) for c_in, c_out in zip(channels[:-1], channels[1:]))


def prediction_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """One head of one source: 3x3 depthwise conv + BN + ReLU6, then a 1x1 conv with bias to ``out_channels``."""
    return nn.Sequential(
        OrderedDict(
            depthwise=conv_bn_relu6(in_channels, in_channels, 3, depthwise=True),
            pointwise=nn.Conv2d(in_channels, out_channels, 1),
        )
    )


def ssdlite_heads(
    source_channels: Sequence[int], boxes: Sequence[int], num_classes: int
) -> tuple[nn.ModuleList, nn.ModuleList]:
    """Per source, a loc head to ``boxes·4`` channels and a conf head to ``boxes·num_classes``."""
    loc = [prediction_block(c, n * 4) for c, n in zip(source_channels, boxes)]
    conf = [prediction_block(c, n * num_classes) for c, n in zip(source_channels, boxes)]
    return nn.ModuleList(loc), nn.ModuleList(conf)


def normal_init(module: nn.Module, std: float = INIT_STD) -> None:
    """Every conv under ``module`` to normal(0, std) weights and zero bias, as torchvision starts SSDLite."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.normal_(layer.weight, mean=0.0, std=std)
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
