"""Turn torchvision's SSD detectors into this project's models: weights, class rows and the model facts.

    python -m weights.convert_torchvision --model ssdlite320_mobilenet_v3_large --out weights/ssdlite320_coco.pth
    python -m weights.convert_torchvision --model ssd300_vgg16 --weights ssd300_vgg16_coco-b556d3b4.pth \\
        --out weights/ssd300_coco_torchvision.pth

``OUT.pth`` is our state_dict and ``OUT.json`` its sidecar (architecture, size, priors, class names), so
eval.py, test.py and the loaders run the model without flags. Without ``--weights`` torchvision's weights API
downloads its COCO weights.

- ``ssdlite320_mobilenet_v3_large`` → ``build_ssd(..., architecture="mobilenet_v3_large")``: the backbone keeps
  torchvision's MobileNetV3 indices (its ``features.0`` / ``features.1`` split at C4 is undone), the extras and
  heads take readable names (``layers.modules.ssdlite``). Same default boxes (``get_config("COCO", 320)``).
- ``ssd300_vgg16`` → the classic VGG16 SSD300: ``backbone.features.{i}`` is ``vgg.{i}``, ``backbone.extra.0``
  (conv5, pool5, conv6, conv7) continues the ``vgg`` indices, ``extra.1``–``extra.4`` are the classic ``extras``,
  ``scale_weight`` is ``L2Norm.weight``. Its default boxes (scales 0.07 … 1.05, steps 8 … 300) are those of
  ``get_config("COCO", 300)`` but for the clamp: torchvision clamps widths and heights only, so the 10x10 map's
  last row and column keep their centres at 1.013, where the classic clamp moves them to 1.0; the sidecar records
  ``clip: "sizes"``. Its input (RGB minus 123.0, 117.0, 104.0 in 0–255 units) is ours within 0.001.
- Heads: both flatten a head's channels as anchor·K + k, as ours do. A 91-class COCO model (torchvision's class
  index is the COCO category id, 0 background, 10 ids unused) keeps 81 rows per anchor: background, then the 80
  categories in ``data.COCO_CLASSES`` order (``data.coco.COCO_CATEGORY_IDS``). The unused ids' scores drop out of
  the softmax, which shifts the others only by what those scores held. A model with any other class count keeps
  its rows as they are; ``--classes`` names them.
- Post-processing is the architecture's (``data.config.ARCHITECTURES``): SSDLite's equals torchvision's (score
  0.001, NMS 0.55, 300 per picture, boxes clipped before NMS); VGG16's is the classic one (200 per class,
  score 0.01, NMS 0.45), where torchvision keeps 400 candidates per class, 200 per picture and clips.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable, Mapping, Sequence

from torch import Tensor, nn

from data import COCO_CLASSES
from data.coco import COCO_CATEGORY_IDS
from data.config import get_config
from ssd import VGG16_LAYERS, DetectionNet, build_ssd
from utils.checkpoint import ModelFacts, fit_report, read_checkpoint, write_sidecar
from utils.cli import read_class_names, run_main
from utils.training.finetune import keep_class_rows
from utils.training.state import atomic_save

PROG = "convert_torchvision"
ARCHITECTURES: dict[str, tuple[str, int]] = {  # torchvision model → (our architecture, input size)
    "ssd300_vgg16": ("vgg16", 300),
    "ssdlite320_mobilenet_v3_large": ("mobilenet_v3_large", 320),
}
TORCHVISION_COCO_CLASSES = 91  # background and the category ids 1–90, of which COCO uses 80
# torchvision's weights API: model name → its weights enum in torchvision.models.detection
_WEIGHTS = {
    "ssd300_vgg16": "SSD300_VGG16_Weights",
    "ssdlite320_mobilenet_v3_large": "SSDLite320_MobileNet_V3_Large_Weights",
}
_LITE_PARTS = ("reduce", "depthwise", "project")  # the three units of an SSDLite extra block
_HEAD_PARTS = ("depthwise", "pointwise")  # the two units of an SSDLite head
_HEADS = {"regression_head": "loc", "classification_head": "conf"}


class ConversionError(ValueError):
    """The weights are not those of the torchvision model named."""


def coco_rows() -> list[int]:
    """torchvision's class indices of our 81 COCO classes, in our order: background, then the 80 category ids."""
    return [0, *COCO_CATEGORY_IDS]


def from_torchvision(source: nn.Module | Mapping[str, Tensor], model_name: str) -> tuple[dict[str, Tensor], int]:
    """Our state_dict for a torchvision ``ssd300_vgg16`` or ``ssdlite320_mobilenet_v3_large``.

    Args:
        source: the torchvision model, or its ``state_dict()``.
        model_name: one of ``ARCHITECTURES``.
    Returns:
        the state_dict of ``build_ssd(..., num_classes, architecture=ARCHITECTURES[model_name][0])``, and
        ``num_classes`` (background included): 81 for a 91-class source (COCO's rows in our order), the source's
        own count otherwise.
    Raises:
        ConversionError: a key that the model does not have, or a head of an unexpected shape.
    """
    return _coco_rows_kept(_renamed(source, model_name))


def _coco_rows_kept(state: dict[str, Tensor]) -> tuple[dict[str, Tensor], int]:
    """``state`` (our keys) with only COCO's 81 class rows if it scores torchvision's 91, and its class count."""
    num_classes = _num_classes(state)
    if num_classes == TORCHVISION_COCO_CLASSES:
        try:
            keep_class_rows(state, num_classes, coco_rows())
        except ValueError as err:
            raise ConversionError(str(err)) from None
        num_classes = len(coco_rows())
    return state, num_classes


def _renamed(source: nn.Module | Mapping[str, Tensor], model_name: str) -> dict[str, Tensor]:
    """The source's tensors (copies) under our keys."""
    if model_name not in ARCHITECTURES:
        raise ConversionError(f"unknown model {model_name!r}: expected one of {', '.join(ARCHITECTURES)}")
    state = source.state_dict() if isinstance(source, nn.Module) else dict(source)
    rename = _vgg_key if model_name == "ssd300_vgg16" else _lite_key_function(state)
    ours: dict[str, Tensor] = {}
    for key, value in state.items():
        new_key = rename(key)
        if new_key is None:
            raise ConversionError(f"{key!r} is not a key of torchvision's {model_name}")
        ours[new_key] = value.detach().clone()
    return ours


def _num_classes(state: Mapping[str, Tensor]) -> int:
    """Classes scored by the conf heads: the first conf head's outputs over the first loc head's boxes."""
    loc, conf = (_class_tensor(state, head, 0, "bias") for head in ("loc", "conf"))
    if loc is None or conf is None:
        raise ConversionError("no first loc and conf head (head.regression_head / head.classification_head)")
    boxes = loc.shape[0] // 4
    if boxes == 0 or loc.shape[0] % 4 or conf.shape[0] % boxes:
        raise ConversionError(f"heads of {loc.shape[0]} and {conf.shape[0]} outputs do not fit boxes of 4 offsets")
    return conf.shape[0] // boxes


def _class_tensor(state: Mapping[str, Tensor], head: str, index: int, kind: str) -> Tensor | None:
    """The last conv's ``kind`` ("weight" or "bias") of head ``index``: ``{head}.{i}.{kind}`` or, in SSDLite,
    ``{head}.{i}.pointwise.{kind}``."""
    return state.get(f"{head}.{index}.{kind}", state.get(f"{head}.{index}.pointwise.{kind}"))


def _vgg_key(key: str) -> str | None:
    """torchvision ssd300_vgg16 key → ours (None: not a key of that model)."""
    pool4 = _vgg_pool4_index()
    if key == "backbone.scale_weight":
        return "L2Norm.weight"
    patterns: list[tuple[str, Callable[[re.Match[str]], str]]] = [
        (r"backbone\.features\.(\d+)\.(weight|bias)", lambda m: f"vgg.{m[1]}.{m[2]}"),
        # extra.0 runs pool4 … conv5_3 (7 layers), then pool5/conv6/conv7 as one Sequential
        (r"backbone\.extra\.0\.7\.(\d+)\.(weight|bias)", lambda m: f"vgg.{pool4 + 7 + int(m[1])}.{m[2]}"),
        (r"backbone\.extra\.0\.([0-6])\.(weight|bias)", lambda m: f"vgg.{pool4 + int(m[1])}.{m[2]}"),
        # extra.k (k >= 1) holds conv, ReLU, conv, ReLU: the classic extras 2(k-1) and 2(k-1)+1
        (r"backbone\.extra\.([1-9])\.([02])\.(weight|bias)",
         lambda m: f"extras.{2 * int(m[1]) - 2 + int(m[2]) // 2}.{m[3]}"),
        (r"head\.(regression_head|classification_head)\.module_list\.(\d+)\.(weight|bias)",
         lambda m: f"{_HEADS[m[1]]}.{m[2]}.{m[3]}"),
    ]  # fmt: skip
    return _rename(key, patterns)


def _vgg_pool4_index() -> int:
    """Index of pool4 in our ``vgg`` list (and torchvision's ``features``): a conv and its ReLU per channel entry."""
    index, pools = 0, 0
    for entry in VGG16_LAYERS:
        if isinstance(entry, str):
            pools += 1
            if pools == 4:
                return index
            index += 1
        else:
            index += 2
    raise AssertionError("VGG16_LAYERS has no fourth pooling layer")


def _lite_key_function(state: Mapping[str, Tensor]) -> Callable[[str], str | None]:
    """The key renaming of torchvision's ssdlite320_mobilenet_v3_large, whose C4 split is read from ``state``."""
    first_part = [int(k.split(".")[3]) for k in state if k.startswith("backbone.features.0.")]
    c4 = max(first_part, default=0)  # the last layer of features.0 is C4's expansion conv
    patterns: list[tuple[str, Callable[[re.Match[str]], str]]] = [
        (r"backbone\.features\.0\.(\d+)\.(.+)",
         lambda m: f"backbone.{m[1]}.{m[2]}" if int(m[1]) < c4 else f"backbone.{c4}.block.0.{m[2]}"),
        # features.1.0 is C4's block[1:], a slice that keeps the block's own indices
        (r"backbone\.features\.1\.0\.(\d+)\.(.+)", lambda m: f"backbone.{c4}.block.{m[1]}.{m[2]}"),
        (r"backbone\.features\.1\.(\d+)\.(.+)", lambda m: f"backbone.{c4 + int(m[1])}.{m[2]}"),
        (r"backbone\.extra\.(\d+)\.([0-2])\.(.+)", lambda m: f"extras.{m[1]}.{_LITE_PARTS[int(m[2])]}.{m[3]}"),
        (r"head\.(regression_head|classification_head)\.module_list\.(\d+)\.([01])\.(.+)",
         lambda m: f"{_HEADS[m[1]]}.{m[2]}.{_HEAD_PARTS[int(m[3])]}.{m[4]}"),
    ]  # fmt: skip
    return lambda key: _rename(key, patterns)


def _rename(key: str, patterns: Sequence[tuple[str, Callable[[re.Match[str]], str]]]) -> str | None:
    for pattern, new in patterns:
        match = re.fullmatch(pattern, key)
        if match:
            return new(match)
    return None


def build_converted(
    source: nn.Module | Mapping[str, Tensor], model_name: str, class_names: Sequence[str] | None = None
) -> tuple[DetectionNet, ModelFacts]:
    """Our test-phase network holding the torchvision model's weights (loaded strictly), and its facts.

    Args:
        source, model_name: as :func:`from_torchvision`.
        class_names: the object classes in label order; default ``COCO_CLASSES`` for a 91-class source.
    Raises:
        ConversionError: the weights do not fit, or the class names do not count the source's classes.
    """
    renamed = _renamed(source, model_name)
    coco = _num_classes(renamed) == TORCHVISION_COCO_CLASSES
    state, num_classes = _coco_rows_kept(renamed)
    architecture, size = ARCHITECTURES[model_name]
    if class_names is None and not coco:
        raise ConversionError(f"the model scores {num_classes - 1} classes, not COCO's 80: name them with --classes")
    names = list(COCO_CLASSES) if class_names is None else list(class_names)
    if len(names) != num_classes - 1:
        raise ConversionError(f"{len(names)} class names for a model that scores {num_classes - 1} classes")
    net = build_ssd("test", size, num_classes, torchvision_priors(model_name), architecture=architecture)
    problems = fit_report(net.state_dict(), state)
    if problems:
        raise ConversionError(f"the converted {model_name} weights do not fit our model: {problems}")
    net.load_state_dict(state)
    return net.eval(), ModelFacts.from_model(net, names, "COCO" if coco else None)


def torchvision_priors(model_name: str) -> dict[str, object]:
    """The default boxes of torchvision's ``model_name`` as our prior config: COCO's of its size, with the clamp of
    box sizes only for SSD300 (SSDLite320's centres all lie inside the picture, where both clamps agree)."""
    architecture, size = ARCHITECTURES[model_name]
    cfg = dict(get_config("COCO", size))
    if architecture == "vgg16":
        cfg["clip"] = "sizes"
    return cfg


def torchvision_weights(model_name: str) -> dict[str, Tensor]:
    """torchvision's COCO weights for ``model_name``, through its weights API (a download, cached by torch.hub)."""
    from torchvision.models import detection

    weights = getattr(detection, _WEIGHTS[model_name]).DEFAULT
    return dict(weights.get_state_dict(progress=True, check_hash=True))


def convert(args: argparse.Namespace) -> int:
    if args.weights is None:
        state = torchvision_weights(args.model)
    else:
        state, _ = read_checkpoint(args.weights)
    names = read_class_names(args.classes) if args.classes else None
    net, facts = build_converted(state, args.model, names)
    state = net.state_dict()
    atomic_save(state, args.out)
    sidecar = write_sidecar(args.out, facts, state)
    print(f"wrote {args.out} and {sidecar}: {args.model} as {facts.architecture}, {len(facts.class_names)} classes")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=PROG, description="Convert a torchvision SSD detector to our format")
    parser.add_argument("--model", required=True, choices=tuple(ARCHITECTURES), help="the torchvision model")
    parser.add_argument("--weights", default=None, help="its state_dict file (default: torchvision's COCO weights)")
    parser.add_argument("--classes", default=None, help="class names, one per line (default: COCO's 80)")
    parser.add_argument("--out", required=True, help="OUT.pth; the model facts go to OUT.json")
    args = parser.parse_args(argv)
    return run_main(PROG, lambda: convert(args))


if __name__ == "__main__":
    sys.exit(main())
