"""ONNX export: onnxruntime reproduces PyTorch's decoded boxes and scores; the NumPy NMS step matches Detect."""

from __future__ import annotations

import argparse
import os

import numpy as np
import pytest
import torch
from torchvision.ops import nms as tv_nms

from data.config import get_config
from layers import Detect, PriorBox
from layers.box_utils import decode
from ssd import build_ssd
from utils import export

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, str]:
    """A seeded random SSD300 saved as a state_dict and exported through the command line."""
    folder = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    net = build_ssd("test").eval()
    weights = folder / "ssd300.pth"
    torch.save(net.state_dict(), weights)
    out = folder / "ssd300.onnx"
    assert export.main(["--trained_model", str(weights), "--size", "300", "--out", str(out), "--check", "false"]) == 0
    return net, str(out)


@pytest.mark.parametrize("batch", [1, 3])
def test_onnxruntime_matches_pytorch_with_a_dynamic_batch(exported, batch: int) -> None:
    net, path = exported
    x = torch.rand(batch, 3, 300, 300, generator=torch.Generator().manual_seed(batch)) * 255 - 120
    with torch.no_grad():
        boxes, scores = export.decoded(net)(x)
    ort_boxes, ort_scores = export.run_onnx(export.onnx_session(path), x.numpy())
    assert ort_boxes.shape == (batch, 8732, 4) and ort_scores.shape == (batch, 8732, 21)
    assert np.abs(ort_boxes - boxes.numpy()).max() <= 1e-4
    assert np.abs(ort_scores - scores.numpy()).max() <= 1e-4
    np.testing.assert_allclose(ort_scores.sum(-1), 1.0, atol=1e-5)


def test_decoded_ssd_is_decode_of_predict_plus_softmax() -> None:
    torch.manual_seed(1)
    net = build_ssd("test").eval()
    x = torch.randn(1, 3, 300, 300)
    with torch.no_grad():
        loc, conf = net.predict(x)
        boxes, scores = export.decoded(net)(x)
    torch.testing.assert_close(boxes, decode(loc, net.priors))
    torch.testing.assert_close(scores, conf.softmax(-1))


def test_nms_numpy_keeps_what_torchvision_keeps() -> None:
    gen = torch.Generator().manual_seed(0)
    xy = torch.rand(300, 2, generator=gen)
    boxes = torch.cat((xy, xy + 0.05 + 0.3 * torch.rand(300, 2, generator=gen)), 1)
    scores = torch.rand(300, generator=gen)
    expected = tv_nms(boxes.double(), scores.double(), 0.45).numpy()
    np.testing.assert_array_equal(export.nms_numpy(boxes.numpy(), scores.numpy(), 0.45), expected)


def test_detections_from_outputs_equal_detect() -> None:
    gen = torch.Generator().manual_seed(0)
    batch, num_priors, num_classes, top_k = 2, 400, 4, 50
    centres, sizes = torch.rand(num_priors, 2, generator=gen), 0.05 + 0.3 * torch.rand(num_priors, 2, generator=gen)
    priors = torch.cat((centres, sizes), 1)
    loc = 0.5 * torch.randn(batch, num_priors, 4, generator=gen)
    probs = (3 * torch.randn(batch, num_priors, num_classes, generator=gen)).softmax(-1)
    expected = Detect(num_classes, 0, top_k, 0.1, 0.45)(loc, probs, priors).numpy()
    got = export.detections_from_outputs(decode(loc, priors).numpy(), probs.numpy(), 0.1, 0.45, top_k)
    assert got.shape == expected.shape == (batch, num_classes, top_k, 5)
    assert (expected[..., 0] > 0).sum() > 20  # a real test: many detections
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_detections_from_outputs_with_nothing_above_threshold() -> None:
    scores = np.full((1, 10, 3), 1 / 3, dtype=np.float32)
    out = export.detections_from_outputs(np.zeros((1, 10, 4), np.float32), scores, conf_thresh=0.5, top_k=5)
    assert out.shape == (1, 3, 5, 5) and not out.any()


def test_cli_fails_with_one_line_for_a_missing_file(tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        export.main(["--trained_model", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "m.onnx")])
    assert exc.value.code != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "missing.pth" in err[0]
    assert not (tmp_path / "m.onnx").exists()


DEVICES = [
    "cpu",
    pytest.param(
        "cuda",
        marks=[pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")],
    ),
]


@pytest.mark.parametrize("device", DEVICES)
def test_export_leaves_the_callers_model_as_it_was(monkeypatch: pytest.MonkeyPatch, tmp_path, device: str) -> None:
    """export_onnx hands ONNX a CPU copy in eval mode; the caller's model keeps device, mode and parameters."""
    exported = []
    monkeypatch.setattr(torch.onnx, "export", lambda model, *args, **kwargs: exported.append(model))
    torch.manual_seed(2)
    net = build_ssd("train", 300, 3).to(device).train()
    net.vgg[0].eval()  # a mixed state must survive too
    before = {k: (v.clone(), v.data_ptr()) for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]

    export.export_onnx(net, tmp_path / "m.onnx")

    assert [m.training for m in net.modules()] == modes and net.phase == "train"
    for key, value in net.state_dict().items():
        assert value.device.type == device and value.data_ptr() == before[key][1]
        assert torch.equal(value, before[key][0])
    assert net.priors.device.type == device
    (model,) = exported
    assert not any(m.training for m in model.modules())
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert model.net is not net


def test_cli_builds_from_the_sidecar_and_writes_it_beside_the_export(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Custom aspect ratios recorded beside the weights give the exported graph their priors, without flags."""
    from data.config import voc
    from layers import PriorBox
    from utils.checkpoint import ModelFacts, read_sidecar, write_sidecar

    exported = []
    monkeypatch.setattr(torch.onnx, "export", lambda model, *args, **kwargs: exported.append(model))
    cfg = dict(voc, aspect_ratios=((2, 3),) * 6, name="custom")
    torch.manual_seed(3)
    trained = build_ssd("train", 300, 3, cfg=cfg)
    weights = tmp_path / "ssd300_VOC_20.pth"
    torch.save(trained.state_dict(), weights)
    facts = ModelFacts.from_model(trained, ["circle", "square"], "VOC")
    write_sidecar(weights, facts)
    out = tmp_path / "deploy" / "ssd300.onnx"
    assert export.main(["--trained_model", str(weights), "--out", str(out), "--check", "false"]) == 0
    (model,) = exported
    assert torch.equal(model.priors, PriorBox(cfg).forward()) and model.priors.shape == (11640, 4)
    assert read_sidecar(out) == facts


def test_export_never_replaces_the_sidecar_of_another_models_weights(
    monkeypatch: pytest.MonkeyPatch, tmp_path, fail_line
) -> None:
    """``--out deploy/m.onnx`` beside another model's ``deploy/m.pth``: its ``m.json`` is that model's (its digest
    says so); the export stops before writing anything. An ``--out`` named like weights is refused too."""
    from data.config import voc
    from utils.checkpoint import ModelFacts, read_sidecar, write_sidecar

    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: None)
    torch.manual_seed(0)
    state = build_ssd("train", 300, 3).state_dict()
    other = dict(state, **{"L2Norm.weight": state["L2Norm.weight"] + 1})
    (tmp_path / "deploy").mkdir()
    theirs, mine = tmp_path / "deploy" / "m.pth", tmp_path / "mine.pth"
    torch.save(state, theirs)
    write_sidecar(theirs, ModelFacts(300, False, ("circle", "square"), voc, "VOC"), state)
    torch.save(other, mine)
    write_sidecar(mine, ModelFacts(300, False, ("cat", "dog"), voc, "VOC"), other)
    before = (tmp_path / "deploy" / "m.json").read_bytes()
    line = fail_line(export.main, ["--trained_model", str(mine), "--out", str(tmp_path / "deploy" / "m.onnx")])
    assert line.startswith(f"export: error: refusing to replace {tmp_path / 'deploy' / 'm.json'}: it describes the "
                           f"weights in {theirs}")  # fmt: skip
    assert (tmp_path / "deploy" / "m.json").read_bytes() == before
    assert sorted(p.name for p in (tmp_path / "deploy").iterdir()) == ["m.json", "m.pth"]
    line = fail_line(export.main, ["--trained_model", str(mine), "--out", str(theirs)])
    assert f"--out {theirs}: expected an ONNX file name" in line
    assert read_sidecar(theirs).class_names == ("circle", "square") and theirs.read_bytes()[:2] == b"PK"


def test_an_unwritable_out_is_one_line_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path, fail_line) -> None:
    import errno
    import tempfile

    monkeypatch.setattr(torch.onnx, "export", lambda *args, **kwargs: None)
    (tmp_path / "file").write_text("not a folder")
    base = ["--trained_model", "none", "--check", "false", "--out"]
    assert str(tmp_path / "file") in fail_line(export.main, [*base, str(tmp_path / "file" / "m.onnx")])

    def permission_denied(*args, dir: str, **kwargs):  # noqa: A002 - tempfile's name
        raise PermissionError(errno.EACCES, "Permission denied", os.path.join(dir, ".m.onnx.1.tmp"))

    monkeypatch.setattr(tempfile, "mkstemp", permission_denied)
    line = fail_line(export.main, [*base, str(tmp_path / "m.onnx")])
    assert line == f"export: error: [Errno 13] Permission denied: {str(tmp_path / 'm.onnx')!r}"


def test_random_weights_take_the_priors_of_dataset_not_of_the_class_count() -> None:
    def priors(dataset: str | None) -> torch.Tensor:
        args = argparse.Namespace(trained_model="none", size=None, num_classes=81, dataset=dataset)
        return export._model_to_export(args).net.priors

    assert torch.equal(priors(None), PriorBox(get_config("VOC", 300)).forward())  # 81 classes, no --dataset: VOC's
    assert torch.equal(priors("COCO"), PriorBox(get_config("COCO", 300)).forward())
