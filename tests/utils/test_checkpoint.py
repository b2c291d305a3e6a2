"""utils/checkpoint.py: reading weights files, model facts beside them, strict loading with clear errors."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import pytest
import torch

from data import COCO_CLASSES, VOC_CLASSES
from data.config import coco, get_config, voc, voc512
from layers import PriorBox
from ssd import build_ssd
from utils.checkpoint import (
    CheckpointError,
    ModelFacts,
    build_from_facts,
    describe_state_dict,
    facts_from_meta,
    fit_report,
    load_model,
    load_state_dict_file,
    read_checkpoint,
    read_sidecar,
    resolve_facts,
    sidecar_path,
    weights_digest,
    write_sidecar,
)


@pytest.fixture(scope="module")
def sd3() -> dict[str, torch.Tensor]:
    """State dict of an SSD300 with 3 classes (background + 2)."""
    torch.manual_seed(0)
    return build_ssd("train", 300, 3).state_dict()


@pytest.fixture(scope="module")
def sd3_file(tmp_path_factory: pytest.TempPathFactory, sd3: dict[str, torch.Tensor]) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "ssd300_3.pth"
    torch.save(sd3, path)
    return path


def _fake_sd(num_heads: int, num_classes: int, bn: bool = False) -> dict[str, torch.Tensor]:
    sd = {"vgg.0.weight": torch.zeros(64, 3, 3, 3), "L2Norm.weight": torch.zeros(512)}
    for i in range(num_heads):
        boxes = 4 if i in (0, num_heads - 2, num_heads - 1) else 6
        sd[f"loc.{i}.weight"] = torch.zeros(boxes * 4, 8, 3, 3)
        sd[f"loc.{i}.bias"] = torch.zeros(boxes * 4)
        sd[f"conf.{i}.weight"] = torch.zeros(boxes * num_classes, 8, 3, 3)
    if bn:
        sd["vgg.1.running_mean"] = torch.zeros(64)
    return sd


def test_describe_state_dict() -> None:
    assert describe_state_dict(_fake_sd(6, 21)) == (300, 21, False)
    assert describe_state_dict(_fake_sd(7, 81)) == (512, 81, False)
    assert describe_state_dict(_fake_sd(6, 3, bn=True)) == (300, 3, True)
    with pytest.raises(CheckpointError, match="backbone"):
        describe_state_dict({"0.weight": torch.zeros(64, 3, 3, 3)})  # a vgg16_reducedfc.pth
    with pytest.raises(CheckpointError, match="5 loc heads"):
        describe_state_dict(_fake_sd(5, 21))


def test_describe_real_models(sd3: dict[str, torch.Tensor]) -> None:
    assert describe_state_dict(sd3) == (300, 3, False)
    assert describe_state_dict(build_ssd("train", 512, 21, batch_norm=True).state_dict()) == (512, 21, True)


def test_plain_full_and_ddp_files(tmp_path: Path, sd3: dict[str, torch.Tensor], sd3_file: Path) -> None:
    plain = load_state_dict_file(sd3_file)
    assert plain.keys() == sd3.keys()
    assert all(torch.equal(plain[k], sd3[k]) for k in sd3)

    full = tmp_path / "ssd300_VOC_last.ckpt"
    torch.save({"model": sd3, "optimizer": {"state": {}}, "iteration": 7, "class_names": ["a", "b"]}, full)
    sd, meta = read_checkpoint(full)
    assert sd.keys() == sd3.keys()
    assert meta["iteration"] == 7 and meta["class_names"] == ["a", "b"] and "model" not in meta

    ddp = tmp_path / "ddp.pth"
    torch.save({f"module.{k}": v for k, v in sd3.items()}, ddp)
    assert load_state_dict_file(ddp).keys() == sd3.keys()


def test_missing_corrupt_and_foreign_files(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found: .*nothing.pth"):
        load_state_dict_file(tmp_path / "nothing.pth")
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"\x80\x02garbage")
    with pytest.raises(CheckpointError, match="corrupt.pth is not a readable weights file"):
        load_state_dict_file(corrupt)
    foreign = tmp_path / "foreign.pth"
    torch.save([1, 2, 3], foreign)
    with pytest.raises(CheckpointError, match="foreign.pth.*got list"):
        load_state_dict_file(foreign)
    mixed = tmp_path / "mixed.pth"
    torch.save({"a": torch.zeros(1), "epoch": 3}, mixed)
    with pytest.raises(CheckpointError, match="epoch"):
        load_state_dict_file(mixed)


def test_load_model_infers_size_and_classes(sd3: dict[str, torch.Tensor], sd3_file: Path) -> None:
    net = load_model(sd3_file, classes=["a", "b"], top_k=50)
    assert (net.size, net.num_classes, net.training, net.facts.class_names) == (300, 3, False, ("a", "b"))
    assert all(torch.equal(net.state_dict()[k], sd3[k]) for k in sd3)
    with torch.no_grad():
        out = net(torch.zeros(1, 3, 300, 300))
    assert out.shape == (1, 3, 50, 5)


def test_load_model_other_num_classes_is_one_line(sd3_file: Path) -> None:
    with pytest.raises(CheckpointError) as info:
        load_model(sd3_file, classes=["a", "b"], num_classes=21)
    message = str(info.value)
    assert "\n" not in message
    assert str(sd3_file) in message and "scores 3" in message and "21 classes" in message
    with pytest.raises(ValueError, match="scores 2 classes .* but the VOC class list names 20"):
        load_model(sd3_file, dataset="VOC")


def test_load_model_bn_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "bn.pth"
    torch.save(build_ssd("train", 300, 4, batch_norm=True).state_dict(), path)
    net = load_model(path, classes=["a", "b", "c"])
    assert net.facts.batch_norm and net.net.batch_norm and net.num_classes == 4


def test_fit_report_lists_missing_and_unexpected() -> None:
    model = {"a": torch.zeros(2), "b": torch.zeros(3)}
    assert fit_report(model, {"a": torch.zeros(2), "b": torch.zeros(3)}) == ""
    report = fit_report(model, {"a": torch.zeros(2), "c": torch.zeros(1)})
    assert report == "missing keys: b; unexpected keys: c"
    many = fit_report({}, {f"k{i}": torch.zeros(1) for i in range(20)})
    assert "(+4 more)" in many


class _Exploit:
    """Unpickling this runs a shell command that creates ``marker``: a weights file must never do that."""

    def __init__(self, marker: Path) -> None:
        self.command = f"touch '{marker}'"

    def __reduce__(self) -> tuple:
        return (os.system, (self.command,))


def test_malicious_and_broken_files_fail_safely(tmp_path: Path, sd3_file: Path) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"conf.0.weight": _Exploit(marker)}, protocol=2)
    pickle.loads(payload)  # the exploit works when unpickled unsafely
    assert marker.exists()
    marker.unlink()
    legacy = tmp_path / "legacy_pickle.pth"
    legacy.write_bytes(payload)
    archive = tmp_path / "zip_pickle.pth"
    torch.save({"conf.0.weight": _Exploit(marker)}, archive)
    random_bytes = tmp_path / "random.pth"
    random_bytes.write_bytes(bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist()))
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(sd3_file.read_bytes()[:100_000])
    for path in (legacy, archive, random_bytes, truncated):
        with pytest.raises(CheckpointError) as info:
            read_checkpoint(path)
        message = str(info.value)
        assert message.startswith(f"{path} is not a readable weights file: ")
        assert "\n" not in message and "weights_only" not in message
        assert not marker.exists()
    with pytest.raises(CheckpointError, match="Python object [a-z]+.system"):
        read_checkpoint(legacy)
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(truncated)


# ----------------------------------------------------------------------------------------- model facts

CUSTOM_RATIOS = dict(voc, aspect_ratios=((2, 3),) * 6, name="custom")  # 6 boxes everywhere: other heads


def test_sidecar_round_trip_is_atomic_json(tmp_path: Path) -> None:
    facts = ModelFacts(512, True, ("cat", "dog"), voc512, "VOC")
    assert facts.num_classes == 3 and facts.prior_config["name"] == "VOC512"
    weights = tmp_path / "ssd512_VOC_100.pth"
    assert sidecar_path(weights) == str(tmp_path / "ssd512_VOC_100.json")
    assert read_sidecar(weights) is None
    written = write_sidecar(weights, facts)
    record = json.loads(Path(written).read_text())
    assert record["format"] == "ssd-model" and record["version"] == 2 and record["num_classes"] == 3
    assert record["architecture"] == "vgg16" and record["preprocessing"]["mean"] == [104.0, 117.0, 123.0]
    assert record["class_names"] == ["cat", "dog"] and record["batch_norm"] is True and record["dataset"] == "VOC"
    assert record["prior_config"]["min_sizes"] == [35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8]
    assert record["prior_config"]["name"] == "VOC512" and record["prior_config"]["clip"] is True
    assert read_sidecar(weights) == facts
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ssd512_VOC_100.json"]  # no temporary file left
    # a sidecar written before architecture and preprocessing were recorded: VGG16 with the classic mean
    old = {k: v for k, v in record.items() if k not in ("architecture", "preprocessing")} | {"version": 1}
    Path(written).write_text(json.dumps(old))
    assert read_sidecar(weights) == facts and facts.preprocessing.std == (1.0, 1.0, 1.0)
    custom = ModelFacts(300, False, ("a",), CUSTOM_RATIOS)
    write_sidecar(weights, custom)
    assert read_sidecar(weights) == custom and read_sidecar(weights).prior_config["aspect_ratios"][0] == (2, 3)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"size": 416}, "'size': expected 300 or 512 for vgg16, got 416"),
        ({"version": 3}, "'version'"),
        ({"architecture": "resnet50"}, "'architecture': expected one of vgg16, mobilenet_v3_large"),
        ({"format": "yolo"}, "'format'"),
        ({"class_names": ["__Background__", "cat"]}, "background is implicit"),
        ({"num_classes": 21}, "'num_classes'"),
        ({"prior_config": dict(voc512)}, "prior_config"),
    ],
)
def test_invalid_sidecar_is_one_line_naming_file_and_field(tmp_path: Path, change: dict, field: str) -> None:
    weights = tmp_path / "m.pth"
    record = ModelFacts(300, False, ("cat",), voc).to_dict()
    record.update(
        {k: (v if not isinstance(v, dict) else json.loads(json.dumps(v, default=list))) for k, v in change.items()}
    )
    Path(sidecar_path(weights)).write_text(json.dumps(record))
    with pytest.raises(CheckpointError) as info:
        read_sidecar(weights)
    message = str(info.value)
    assert message.startswith(str(tmp_path / "m.json")) and field in message and "\n" not in message
    Path(sidecar_path(weights)).write_text("{not json")
    with pytest.raises(CheckpointError, match="m.json: not valid JSON"):
        read_sidecar(weights)


def test_full_checkpoint_carries_the_facts(tmp_path: Path, sd3: dict[str, torch.Tensor]) -> None:
    facts = ModelFacts(300, False, ("circle", "square"), voc, "VOC")
    path = tmp_path / "ssd300_VOC_last.ckpt"
    torch.save({"model": sd3, "iteration": 3, "model_facts": facts.to_dict()}, path)
    sd, meta = read_checkpoint(path)
    assert facts_from_meta(meta) == facts
    assert resolve_facts(path, sd, meta)[0] == facts
    assert facts_from_meta({"iteration": 3}) is None


def test_files_written_before_architecture_was_recorded_still_load(tmp_path: Path, sd3: dict) -> None:
    """A _last.ckpt as train.py wrote it before (version-1 facts, and the flat copies of them it no longer writes)
    and a .pth + version-1 sidecar load as the VGG16 model with the classic preprocessing."""
    facts = ModelFacts(300, False, ("circle", "square"), voc, "VOC")
    old = {k: v for k, v in facts.to_dict().items() if k not in ("architecture", "preprocessing")} | {"version": 1}
    flat = {"size": 300, "num_classes": 3, "config": "VOC", "class_names": ["circle", "square"], "batch_norm": False}
    ckpt = tmp_path / "ssd300_VOC_last.ckpt"
    torch.save({"model": sd3, "iteration": 3, "model_facts": old, **flat}, ckpt)
    weights = tmp_path / "ssd300_VOC_3.pth"
    torch.save(sd3, weights)
    (tmp_path / "ssd300_VOC_3.json").write_text(json.dumps(old))
    for path in (ckpt, weights):
        model = load_model(path)
        assert model.facts == facts and model.facts.architecture == "vgg16"
        assert model.preprocessing.mean == (104.0, 117.0, 123.0) and model.preprocessing.std == (1.0, 1.0, 1.0)
        assert all(torch.equal(model.state_dict()[k], v) for k, v in sd3.items())


def test_bare_pth_priors_come_from_the_dataset_never_the_class_count(tmp_path: Path) -> None:
    torch.manual_seed(0)
    sd = build_ssd("train", 300, 81, cfg=voc).state_dict()
    path = tmp_path / "bare81.pth"
    names = [f"thing{i}" for i in range(80)]
    facts, line = resolve_facts(path, sd, {}, dataset="VOC", classes=names)
    assert facts.prior_config["name"] == "VOC" and facts.class_names == tuple(names) and facts.dataset == "VOC"
    assert line.startswith("model: SSD300 VOC priors, 80 classes from the given class names (thing0, thing1")
    net = build_from_facts(facts)
    net.load_state_dict(sd)
    assert torch.equal(net.priors, PriorBox(voc).forward())
    assert not torch.equal(net.priors, PriorBox(coco).forward())  # what the class count alone would pick
    # no --dataset: VOC's priors too, with COCO's names for 81 outputs; --dataset COCO: COCO's
    facts, line = resolve_facts(path, sd, {})
    assert facts.prior_config["name"] == "VOC" and facts.class_names == tuple(COCO_CLASSES)
    assert "80 classes from the COCO class list" in line
    assert resolve_facts(path, sd, {}, dataset="coco")[0].prior_config["name"] == "COCO"
    with pytest.raises(ValueError, match="scores 80 classes .* but the VOC class list names 20"):
        resolve_facts(path, sd, {}, dataset="VOC")
    with pytest.raises(CheckpointError, match="--size 512 contradicts .*bare81.pth, which holds an SSD300"):
        resolve_facts(path, sd, {}, size=512)


def test_bare_pth_with_unknown_count_asks_for_classes(sd3: dict[str, torch.Tensor], sd3_file: Path) -> None:
    with pytest.raises(ValueError, match="scores 2 classes .*--classes FILE"):
        resolve_facts(sd3_file, sd3, {})
    facts, _ = resolve_facts(sd3_file, sd3, {}, classes=["a", "b"])
    assert facts.num_classes == 3 and facts.prior_config["name"] == "VOC"


def test_custom_aspect_ratios_rebuild_from_the_sidecar_without_flags(tmp_path: Path) -> None:
    torch.manual_seed(0)
    trained = build_ssd("train", 300, 3, cfg=CUSTOM_RATIOS)
    path = tmp_path / "ssd300_VOC_10.pth"
    torch.save(trained.state_dict(), path)
    write_sidecar(path, ModelFacts.from_model(trained, ["circle", "square"], "VOC"))
    net = load_model(path)
    assert net.net.loc[0].out_channels == 6 * 4 and net.priors.shape == (11640, 4)
    assert torch.equal(net.priors, PriorBox(CUSTOM_RATIOS).forward())
    assert all(torch.equal(net.state_dict()[k], v) for k, v in trained.state_dict().items())
    facts, line = resolve_facts(path, *read_checkpoint(path), dataset="VOC", size=300, classes=["circle", "square"])
    assert facts.prior_config["name"] == "custom" and f"from {tmp_path / 'ssd300_VOC_10.json'}" in line


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"size": 512}, "--size 512 contradicts .*m.json, which records an SSD300 model"),
        ({"dataset": "COCO"}, "--dataset COCO contradicts .*m.json, which records dataset VOC"),
        ({"classes": ["circle", "triangle"]}, "--classes contradicts .*name 2 is 'triangle', recorded 'square'"),
        ({"classes": ["circle"]}, "--classes contradicts .*1 names, recorded 2"),
    ],
)
def test_flags_contradicting_the_sidecar(
    tmp_path: Path, sd3: dict[str, torch.Tensor], flags: dict, message: str
) -> None:
    path = tmp_path / "m.pth"
    write_sidecar(path, ModelFacts(300, False, ("circle", "square"), voc, "VOC"))
    with pytest.raises(CheckpointError, match=message) as info:
        resolve_facts(path, sd3, {}, **flags)
    assert "\n" not in str(info.value)
    resolve_facts(path, sd3, {}, size=300, dataset="voc", classes=["circle", "square"])  # repeating them is fine


def test_sidecar_without_dataset_checks_the_priors(tmp_path: Path, sd3: dict[str, torch.Tensor]) -> None:
    path = tmp_path / "m.pth"
    write_sidecar(path, ModelFacts(300, False, ("circle", "square"), get_config("COCO", 300)))
    assert resolve_facts(path, sd3, {}, dataset="COCO")[0].prior_config["name"] == "COCO"
    with pytest.raises(CheckpointError, match="--dataset VOC contradicts .*COCO priors"):
        resolve_facts(path, sd3, {}, dataset="VOC")


def test_a_sidecar_listing_another_class_count_names_both_files(tmp_path: Path, sd3_file: Path) -> None:
    """Said before anything else, --classes or not: the fix is the sidecar, not a class list."""
    path = tmp_path / "ssd300_3.pth"
    path.write_bytes(sd3_file.read_bytes())
    write_sidecar(path, ModelFacts(300, False, VOC_CLASSES, voc))  # no digest, as sidecars written before them
    for classes in (None, ["circle", "square"]):
        with pytest.raises(CheckpointError) as info:
            load_model(path, classes=classes)
        message = str(info.value)
        assert message.startswith(f"{tmp_path / 'ssd300_3.json'} lists 20 classes but {path} scores 2")
        assert "conf.0.weight" in message and "--classes" not in message and "\n" not in message


def test_a_sidecar_with_other_priors_names_the_keys(tmp_path: Path, sd3_file: Path) -> None:
    path = tmp_path / "ssd300_3.pth"
    path.write_bytes(sd3_file.read_bytes())
    write_sidecar(path, ModelFacts(300, False, ("circle", "square"), CUSTOM_RATIOS))
    with pytest.raises(CheckpointError, match="does not fit SSD300 with 3 classes and custom priors: .*loc.0.weight"):
        load_model(path)


def _changed(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``sd`` with one number changed."""
    other = dict(sd)
    other["L2Norm.weight"] = sd["L2Norm.weight"].clone()
    other["L2Norm.weight"][0] += 1
    return other


def test_a_sidecar_records_the_digest_of_its_weights_and_is_checked_on_load(tmp_path: Path) -> None:
    sd3 = _fake_sd(6, 3)  # the heads of an SSD300 with 2 classes: all the checks read
    path, sidecar = tmp_path / "m.pth", tmp_path / "m.json"
    torch.save(sd3, path)
    facts = ModelFacts(300, False, ("circle", "square"), voc, "VOC")
    write_sidecar(path, facts, sd3)
    record = json.loads(sidecar.read_text())
    assert record["weights_sha256"] == weights_digest(sd3) and len(record["weights_sha256"]) == 64
    assert weights_digest(_changed(sd3)) != weights_digest(sd3)
    # the tensors decide, not the file: a full checkpoint of the same weights, saved from DDP, agrees
    torch.save({"model": {f"module.{k}": v for k, v in sd3.items()}, "iteration": 1}, tmp_path / "m_last.ckpt")
    assert weights_digest(read_checkpoint(tmp_path / "m_last.ckpt")[0]) == record["weights_sha256"]
    assert resolve_facts(path, *read_checkpoint(path))[0] == facts
    torch.save(_changed(sd3), path)  # other weights of the same shapes beside the sidecar
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    message = str(info.value)
    assert message.startswith(f"{sidecar} describes other weights than {path}") and "\n" not in message
    del record["weights_sha256"]  # a sidecar written before digests were recorded still loads
    sidecar.write_text(json.dumps(record))
    assert resolve_facts(path, *read_checkpoint(path))[0] == facts
    sidecar.write_text(json.dumps(record | {"weights_sha256": "abc"}))
    with pytest.raises(CheckpointError, match="m.json: .*'weights_sha256': expected 64 hex digits"):
        read_sidecar(path)


def test_a_writer_never_replaces_the_sidecar_of_another_weights_file(tmp_path: Path) -> None:
    sd3 = _fake_sd(6, 3)
    weights, sidecar = tmp_path / "m.pth", tmp_path / "m.json"
    torch.save(sd3, weights)
    facts = ModelFacts(300, False, ("circle", "square"), voc, "VOC")
    write_sidecar(weights, facts, sd3)
    before = sidecar.read_bytes()
    other, other_facts = _changed(sd3), ModelFacts(300, False, ("cat", "dog"), voc, "VOC")
    for _ in range(2):  # with its digest, then as written before digests: taken for the weights beside it
        with pytest.raises(CheckpointError) as info:
            write_sidecar(tmp_path / "m.onnx", other_facts, other)
        assert str(info.value).startswith(f"refusing to replace {sidecar}: it describes the weights in {weights}")
        assert sidecar.read_bytes() == before
        sidecar.write_text(json.dumps({k: v for k, v in json.loads(before).items() if k != "weights_sha256"}))
        before = sidecar.read_bytes()
    write_sidecar(tmp_path / "m.onnx", facts, sd3)  # the same weights: their sidecar, now with the digest
    assert json.loads(sidecar.read_text())["weights_sha256"] == weights_digest(sd3)
    torch.save(other, weights)  # what train.py does at each save: the weights first, then their sidecar
    write_sidecar(weights, other_facts, other)
    assert read_sidecar(weights) == other_facts
