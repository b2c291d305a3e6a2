"""Build ``vgg16_reducedfc.pth`` from torchvision's ImageNet VGG16 state dict.

    python -m weights.convert_vgg16 --src vgg16-397923af.pth --out weights/vgg16_reducedfc.pth

The result loads with ``net.vgg.load_state_dict(...)`` (keys ``"{i}.weight"``/``"{i}.bias"`` at the classic
ModuleList indices) and expects this codebase's input: RGB 0–255 minus MEANS, i.e. R−123, G−117, B−104.

- conv1_1 … conv5_3 keep their torchvision indices (``features.i`` → ``i``).
- fc6 ``[4096, 25088]`` viewed as ``[4096, 512, 7, 7]`` is decimated to conv6 ``[1024, 512, 3, 3]`` (every 4th
  output, spatial stride 3); fc7 ``[4096, 4096]`` to conv7 ``[1024, 1024, 1, 1]`` (every 4th output and input).
  This is the atrous conversion of DeepLab/SSD: conv6 then runs with dilation 6 over the stride-1 pool5.
- torchvision's normalisation ``x_tv = (x_rgb / 255 − mean) / std`` is folded into conv1_1. With our input
  ``x = x_rgb − m`` we have ``x_tv = x / (255·std) + d`` where ``d_c = (m_c / 255 − mean_c) / std_c``, so
  ``W' = W / (255·std_c)`` and ``b' = b + Σ_{c,k} W[:, c, k]·d_c``. Interior pixels match exactly; the zero-padded
  border differs (zero in our space is not zero in torchvision's).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from data.config import MEANS
from utils.cli import run_main

# features.i of torchvision's vgg16 that are convolutions; our vgg ModuleList uses the same indices.
VGG16_CONV_INDICES: tuple[int, ...] = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)
CONV6_INDEX = 31
CONV7_INDEX = 33
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)  # RGB, for inputs in [0, 1]
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
OUR_MEAN_RGB: tuple[float, float, float] = tuple(float(m) for m in reversed(MEANS))  # (123, 117, 104)


class ConversionError(ValueError):
    """The source file is not a torchvision VGG16 state dict."""


def decimate_fc6(weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """fc6 ``weight [4096, 25088]``, ``bias [4096]`` → conv6 ``weight [1024, 512, 3, 3]``, ``bias [1024]``."""
    w = weight.reshape(4096, 512, 7, 7)[::4, :, ::3, ::3]
    return w.contiguous().clone(), bias[::4].contiguous().clone()


def decimate_fc7(weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
    """fc7 ``weight [4096, 4096]``, ``bias [4096]`` → conv7 ``weight [1024, 1024, 1, 1]``, ``bias [1024]``."""
    w = weight[::4, ::4].reshape(1024, 1024, 1, 1)
    return w.contiguous().clone(), bias[::4].contiguous().clone()


def fold_normalization(
    weight: Tensor,
    bias: Tensor,
    our_mean: Sequence[float] = OUR_MEAN_RGB,
    tv_mean: Sequence[float] = IMAGENET_MEAN,
    tv_std: Sequence[float] = IMAGENET_STD,
) -> tuple[Tensor, Tensor]:
    """Fold torchvision's input normalisation into conv1_1 (``weight [64, 3, 3, 3]``, ``bias [64]``).

    Returns ``(W', b')`` such that ``conv(W', x_rgb − our_mean) + b' == conv(W, (x_rgb/255 − tv_mean)/tv_std) + b``
    away from the zero-padded border. Computed in float64 and returned in the input dtype.
    """
    w = weight.double()
    m = torch.tensor(our_mean, dtype=torch.float64)
    mu = torch.tensor(tv_mean, dtype=torch.float64)
    sd = torch.tensor(tv_std, dtype=torch.float64)
    scale = 1.0 / (255.0 * sd)  # [3]
    offset = (m / 255.0 - mu) / sd  # [3]: x_tv at x_ours == 0
    new_w = w * scale.view(1, 3, 1, 1)
    new_b = bias.double() + (w * offset.view(1, 3, 1, 1)).sum(dim=(1, 2, 3))
    return new_w.to(weight.dtype), new_b.to(bias.dtype)


def _require(sd: Mapping[str, Tensor], key: str, shape: tuple[int, ...]) -> Tensor:
    if key not in sd:
        raise ConversionError(f"expected torchvision VGG16 key {key!r}, which is missing")
    t = sd[key]
    if tuple(t.shape) != shape:
        raise ConversionError(f"{key}: expected shape {list(shape)}, got {list(t.shape)}")
    return t


def convert_vgg16(tv_state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """torchvision ``vgg16().state_dict()`` → reduced-fc state dict for ``net.vgg`` (keys ``"{i}.weight"``)."""
    out: dict[str, Tensor] = {}
    for i in VGG16_CONV_INDICES:
        w, b = tv_state.get(f"features.{i}.weight"), tv_state.get(f"features.{i}.bias")
        if w is None or b is None or w.dim() != 4:
            raise ConversionError(f"expected a conv layer at features.{i} of torchvision's vgg16 (is this VGG16?)")
        out[f"{i}.weight"], out[f"{i}.bias"] = w.clone(), b.clone()
    out["0.weight"], out["0.bias"] = fold_normalization(out["0.weight"], out["0.bias"])
    out[f"{CONV6_INDEX}.weight"], out[f"{CONV6_INDEX}.bias"] = decimate_fc6(
        _require(tv_state, "classifier.0.weight", (4096, 25088)), _require(tv_state, "classifier.0.bias", (4096,))
    )
    out[f"{CONV7_INDEX}.weight"], out[f"{CONV7_INDEX}.bias"] = decimate_fc7(
        _require(tv_state, "classifier.3.weight", (4096, 4096)), _require(tv_state, "classifier.3.bias", (4096,))
    )
    return out


def load_torchvision_state(path: str) -> dict[str, Tensor]:
    """Read a torchvision VGG16 weights file (``weights_only=True``); accepts ``{"state_dict": ...}`` wrappers."""
    if not os.path.isfile(path):
        raise ConversionError(f"no such file: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # any unpickling failure means a corrupt or foreign file
        raise ConversionError(f"cannot read {path} as a PyTorch weights file: {exc}") from exc
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise ConversionError(f"{path}: expected a state dict, got {type(obj).__name__}")
    return dict(obj)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Convert torchvision's ImageNet VGG16 to SSD's vgg16_reducedfc.pth")
    parser.add_argument("--src", default="vgg16-397923af.pth", help="torchvision vgg16 ImageNet state dict")
    parser.add_argument("--out", default=os.path.join("weights", "vgg16_reducedfc.pth"))
    args = parser.parse_args(argv)
    return run_main("convert_vgg16", lambda: convert(args), user_errors=(ConversionError,))


def convert(args: argparse.Namespace) -> int:
    converted = convert_vgg16(load_torchvision_state(args.src))
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(converted, args.out)
    print(f"wrote {args.out} ({len(converted)} tensors); load it with net.vgg.load_state_dict(torch.load(...))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
