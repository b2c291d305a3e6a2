import math

import pytest

from data.config import coco, coco512, get_config, voc, voc512
from layers.functions.prior_box import boxes_per_location

KEYS = {"num_classes", "lr_steps", "max_iter", "feature_maps", "min_dim", "steps", "min_sizes", "max_sizes",
        "aspect_ratios", "variance", "clip", "name"}  # fmt: skip


@pytest.mark.parametrize("cfg", [voc, coco, voc512, coco512])
def test_configs_have_classic_keys_and_are_read_only(cfg):
    assert KEYS <= set(cfg)
    with pytest.raises(TypeError):
        cfg["num_classes"] = 3


def test_config_numbers():
    assert voc["num_classes"] == 21 and coco["num_classes"] == 81
    assert voc["lr_steps"] == (80000, 100000, 120000) and voc["max_iter"] == 120000
    assert coco["lr_steps"] == (280000, 360000, 400000) and coco512["max_iter"] == 400000
    assert voc512["min_sizes"][0] == pytest.approx(35.84) and coco512["max_sizes"][-1] == pytest.approx(542.72)
    total = sum(f * f * n for f, n in zip(voc512["feature_maps"], boxes_per_location(voc512["aspect_ratios"])))
    assert total == 24564
    assert math.isclose(voc["variance"][1], 0.2) and voc["clip"] is True


def test_get_config():
    assert get_config("voc", 300) is voc
    assert get_config("COCO", 512) is coco512
    with pytest.raises(ValueError, match="VOC or COCO"):
        get_config("imagenet", 300)
    with pytest.raises(ValueError):
        get_config("VOC", 400)
