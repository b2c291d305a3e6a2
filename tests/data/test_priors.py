import json

import pytest

from data.config import get_config, voc, voc512
from data.priors import (
    PRIOR_KEYS,
    load_prior_config,
    prior_config_dict,
    prior_config_from_dict,
    save_prior_config,
)
from layers.functions.prior_box import PriorBox, boxes_per_location

CLASSIC_300 = {
    "min_sizes": [30, 60, 111, 162, 213, 264],
    "max_sizes": [60, 111, 162, 213, 264, 315],
    "aspect_ratios": [[2], [2, 3], [2, 3], [2, 3], [2], [2]],
}


def write(tmp_path, fields, name="priors.json"):
    path = tmp_path / name
    path.write_text(json.dumps(fields) if not isinstance(fields, str) else fields)
    return path


def test_classic_file_gives_the_classic_priors(tmp_path):
    cfg = load_prior_config(write(tmp_path, CLASSIC_300), 300, voc)
    assert cfg["name"] == "custom"
    assert set(voc) == set(cfg)
    assert cfg["num_classes"] == 21 and cfg["lr_steps"] == voc["lr_steps"]
    assert PriorBox(cfg).forward().equal(PriorBox(voc).forward())


def test_ratios_2_3_everywhere_count(tmp_path):
    fields = dict(CLASSIC_300, aspect_ratios=[[2, 3]] * 6)
    cfg = load_prior_config(write(tmp_path, fields), 300, voc)
    assert boxes_per_location(cfg["aspect_ratios"]) == [6] * 6
    expected = sum(f * f * 6 for f in (38, 19, 10, 5, 3, 1))
    assert expected == 11640
    assert PriorBox(cfg).forward().shape == (expected, 4)


def test_float_sizes_and_ratios_ssd512(tmp_path):
    fields = {"min_sizes": [20.5, 50, 100, 150, 200, 300, 400], "max_sizes": [50, 100, 150, 200, 300, 400, 512.5],
              "aspect_ratios": [[], [1.5], [2, 8], [2.5], [3], [2], [2]]}  # fmt: skip
    cfg = load_prior_config(write(tmp_path, fields), 512, voc512)
    assert cfg["min_sizes"][0] == 20.5 and cfg["aspect_ratios"][2] == (2, 8)
    per_loc = boxes_per_location(cfg["aspect_ratios"])
    assert per_loc == [2, 4, 6, 4, 4, 4, 4]
    expected = sum(f * f * n for f, n in zip(voc512["feature_maps"], per_loc))
    assert PriorBox(cfg).forward().shape == (expected, 4)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"min_sizes": [30, 60, 111, 162, 213]}, "min_sizes must list 6 numbers"),
        ({"max_sizes": [60, 111, 162, 213, 264, 315, 400]}, "max_sizes must list 6 numbers"),
        ({"aspect_ratios": [[2]] * 5}, "aspect_ratios must hold 6 lists"),
        ({"min_sizes": [30, 60, "big", 162, 213, 264]}, "min_sizes[2] is 'big'"),
        ({"min_sizes": [30, 60, 111, 162, True, 264]}, "min_sizes[4] is True"),
        ({"min_sizes": [0, 60, 111, 162, 213, 264]}, "min_sizes[0] is 0"),
        ({"max_sizes": [60, 111, 100, 213, 264, 315]}, "max_sizes[2] = 100 must be greater than min_sizes[2] = 111"),
        ({"max_sizes": [30, 111, 162, 213, 264, 315]}, "max_sizes[0] = 30 must be greater than min_sizes[0] = 30"),
        ({"aspect_ratios": [[2], [2, 0.5], [2], [2], [2], [2]]}, "aspect_ratios[1][1] is 0.5"),
        ({"aspect_ratios": [[2], [2], ["x"], [2], [2], [2]]}, "aspect_ratios[2][0] is 'x'"),
        ({"aspect_ratios": [[2], [2], 3, [2], [2], [2]]}, "aspect_ratios[2] is 3"),
        ({"min_size": [1]}, "unknown field 'min_size'"),
        ({"steps": [8, 16, 32, 64, 128, 300]}, "steps is [8, 16, 32, 64, 128, 300], but SSD300 fixes it"),
        ({"min_dim": 512}, "min_dim is 512, but SSD300 fixes it to 300"),
    ],
)
def test_bad_fields_name_the_file_and_field(tmp_path, change, field):
    path = write(tmp_path, {**CLASSIC_300, **change})
    with pytest.raises(ValueError) as info:
        load_prior_config(path, 300, voc)
    message = str(info.value)
    assert message.startswith(str(path)) and field in message and "\n" not in message


def test_missing_field_bad_json_and_missing_file(tmp_path):
    fields = {key: value for key, value in CLASSIC_300.items() if key != "max_sizes"}
    with pytest.raises(ValueError, match="missing field 'max_sizes'"):
        load_prior_config(write(tmp_path, fields), 300, voc)
    with pytest.raises(ValueError, match="not valid JSON"):
        load_prior_config(write(tmp_path, "{min_sizes: 1"), 300, voc)
    with pytest.raises(ValueError, match="expected a JSON object"):
        load_prior_config(write(tmp_path, "[1, 2]"), 300, voc)
    with pytest.raises(FileNotFoundError, match="nope.json"):
        load_prior_config(tmp_path / "nope.json", 300, voc)
    with pytest.raises(ValueError, match="is for SSD300, not SSD512"):
        load_prior_config(write(tmp_path, CLASSIC_300), 512, voc)


def test_dict_round_trip_and_file_round_trip(tmp_path):
    fields = dict(CLASSIC_300, aspect_ratios=[[2, 8.5]] * 6, min_sizes=[21, 45, 99, 153, 207, 261])
    cfg = load_prior_config(write(tmp_path, fields), 300, voc)
    record = prior_config_dict(cfg)
    assert tuple(record) == PRIOR_KEYS
    assert json.loads(json.dumps(record)) == record
    assert record["aspect_ratios"] == [[2, 8.5]] * 6 and record["variance"] == [0.1, 0.2] and record["clip"] is True
    back = prior_config_from_dict(json.loads(json.dumps(record)), voc)
    assert back["name"] == "custom" and prior_config_dict(back) == record
    assert PriorBox(back).forward().equal(PriorBox(cfg).forward())
    save_prior_config(tmp_path / "saved.json", cfg)
    again = load_prior_config(tmp_path / "saved.json", 300, voc)
    assert prior_config_dict(again) == record


def test_from_dict_keeps_the_base_name_for_its_own_priors_and_validates():
    assert prior_config_from_dict(prior_config_dict(voc), voc)["name"] == "VOC"
    record = prior_config_dict(get_config("VOC", 512))
    with pytest.raises(ValueError, match="sidecar.json: feature_maps is .* SSD300 fixes it"):
        prior_config_from_dict(record, voc, source="sidecar.json")
    record = prior_config_dict(voc)
    del record["clip"]
    with pytest.raises(ValueError, match="has no 'clip'"):
        prior_config_from_dict(record, voc)
    with pytest.raises(ValueError, match="variance is"):
        prior_config_from_dict({**prior_config_dict(voc), "variance": [0.1, 0]}, voc)
    with pytest.raises(ValueError, match="clip is 1"):
        prior_config_from_dict({**prior_config_dict(voc), "clip": 1}, voc)
    with pytest.raises(ValueError, match=r"max_sizes\[5\] = 10"):
        prior_config_from_dict({**prior_config_dict(voc), "max_sizes": [60, 111, 162, 213, 264, 10]}, voc)
