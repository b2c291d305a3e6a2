"""weights/convert_vgg16.py on a randomly initialised torchvision VGG16."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.models import vgg16

from ssd import build_ssd
from weights.convert_vgg16 import (
    CONV6_INDEX,
    CONV7_INDEX,
    IMAGENET_MEAN,
    IMAGENET_STD,
    OUR_MEAN_RGB,
    VGG16_CONV_INDICES,
    ConversionError,
    convert_vgg16,
    main,
)


@pytest.fixture(scope="module")
def tv_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = vgg16(weights=None).state_dict()
    # torchvision initialises conv biases to zero: make them random so the bias folding is exercised.
    for i in VGG16_CONV_INDICES:
        state[f"features.{i}.bias"].normal_(0, 0.1)
    state["classifier.0.bias"].normal_(0, 0.1)
    state["classifier.3.bias"].normal_(0, 0.1)
    return state


@pytest.fixture(scope="module")
def converted(tv_state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return convert_vgg16(tv_state)


def test_keys_and_shapes(converted: dict[str, torch.Tensor], tv_state: dict[str, torch.Tensor]) -> None:
    expected = {f"{i}.{p}" for i in (*VGG16_CONV_INDICES, CONV6_INDEX, CONV7_INDEX) for p in ("weight", "bias")}
    assert set(converted) == expected
    assert converted["31.weight"].shape == (1024, 512, 3, 3)
    assert converted["31.bias"].shape == (1024,)
    assert converted["33.weight"].shape == (1024, 1024, 1, 1)
    assert converted["33.bias"].shape == (1024,)
    for i in VGG16_CONV_INDICES[1:]:  # conv1_2 … conv5_3 are copied unchanged
        assert torch.equal(converted[f"{i}.weight"], tv_state[f"features.{i}.weight"])
        assert torch.equal(converted[f"{i}.bias"], tv_state[f"features.{i}.bias"])


def test_fc6_decimation_indices(converted: dict[str, torch.Tensor], tv_state: dict[str, torch.Tensor]) -> None:
    fc6 = tv_state["classifier.0.weight"].view(4096, 512, 7, 7)
    conv6 = converted["31.weight"]
    # output o of conv6 is fc6 output 4*o; tap (ky, kx) is the fc6 position (3*ky, 3*kx) of the 7x7 grid.
    for o, c, ky, kx in [(0, 0, 0, 0), (1, 5, 1, 2), (1023, 511, 2, 2), (250, 100, 2, 0)]:
        assert conv6[o, c, ky, kx] == fc6[4 * o, c, 3 * ky, 3 * kx]
    # the flattened fc6 input index is c*49 + y*7 + x (torchvision flattens [512, 7, 7] in C, H, W order)
    flat = tv_state["classifier.0.weight"]
    assert conv6[7, 3, 1, 2] == flat[28, 3 * 49 + 3 * 7 + 6]
    assert torch.equal(converted["31.bias"], tv_state["classifier.0.bias"][::4])


def test_fc7_decimation_indices(converted: dict[str, torch.Tensor], tv_state: dict[str, torch.Tensor]) -> None:
    fc7 = tv_state["classifier.3.weight"]
    conv7 = converted["33.weight"]
    for o, c in [(0, 0), (3, 7), (1023, 1023), (512, 2)]:
        assert conv7[o, c, 0, 0] == fc7[4 * o, 4 * c]
    assert torch.equal(converted["33.bias"], tv_state["classifier.3.bias"][::4])


def test_folded_conv1_1_matches_torchvision_on_interior(
    converted: dict[str, torch.Tensor], tv_state: dict[str, torch.Tensor]
) -> None:
    gen = torch.Generator().manual_seed(1)
    rgb = torch.randint(0, 256, (1, 3, 24, 32), generator=gen).double()  # raw RGB pixels 0..255
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float64).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float64).view(1, 3, 1, 1)
    x_tv = (rgb / 255.0 - mean) / std
    x_ours = rgb - torch.tensor(OUR_MEAN_RGB, dtype=torch.float64).view(1, 3, 1, 1)
    assert OUR_MEAN_RGB == (123.0, 117.0, 104.0)

    y_tv = F.conv2d(x_tv, tv_state["features.0.weight"].double(), tv_state["features.0.bias"].double(), padding=1)
    y_ours = F.conv2d(x_ours, converted["0.weight"].double(), converted["0.bias"].double(), padding=1)
    interior = (slice(None), slice(None), slice(1, -1), slice(1, -1))
    scale = y_tv[interior].abs().max()
    # weights are float32, so agreement is to float32 precision relative to the output scale
    torch.testing.assert_close(y_ours[interior], y_tv[interior], rtol=0, atol=1e-5 * float(scale))
    # the border differs: zero padding in our space is not zero in torchvision's
    assert not torch.allclose(y_ours[..., 0, :], y_tv[..., 0, :], rtol=0, atol=1e-5 * float(scale))


def test_loads_into_ssd_vgg(converted: dict[str, torch.Tensor]) -> None:
    net = build_ssd("train", 300, 21)
    net.vgg.load_state_dict(converted)  # strict: same keys and shapes as the classic vgg16_reducedfc.pth


def test_cli_roundtrip(tmp_path, tv_state: dict[str, torch.Tensor], converted: dict[str, torch.Tensor]) -> None:
    src, out = tmp_path / "vgg16.pth", tmp_path / "sub" / "vgg16_reducedfc.pth"
    torch.save(tv_state, src)
    assert main(["--src", str(src), "--out", str(out)]) == 0
    loaded = torch.load(out, weights_only=True)
    assert set(loaded) == set(converted)
    assert torch.equal(loaded["31.weight"], converted["31.weight"])


def test_cli_errors(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit, match="2"):
        main(["--src", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "o.pth")])
    assert "missing.pth" in capsys.readouterr().err
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(SystemExit, match="2"):
        main(["--src", str(bad), "--out", str(tmp_path / "o.pth")])
    assert "bad.pth" in capsys.readouterr().err
    with pytest.raises(ConversionError, match="features.0"):
        convert_vgg16({"0.weight": torch.zeros(64, 3, 3, 3)})
