"""The light model through train.py: its recipe as defaults, its flags' errors, exact resume, its file names, and
the whole journey (train → eval → test on pictures and a video → export → inspect) with no flag repeated."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import train
from tests.argv import train_argv
from utils.training.log import read_log

pytestmark = pytest.mark.usefixtures("one_thread")
LITE = ("--backbone", "mobilenet_v3_large")


def _parse(*argv: str):
    return train.resolve_defaults(train.build_parser().parse_args(list(argv)))


def _argv(root: str, folder: Path, *extra: str) -> list[str]:
    """The shared tiny CPU run, made the light model's at batch 2 (the last of a repeated flag wins)."""
    return train_argv(root, folder, *LITE, "--image_sets", "2007:trainval", "--batch_size", "2", *extra, seed=5)


def test_the_light_models_defaults_are_its_recipe() -> None:
    args = _parse(*LITE)
    assert (args.size, args.batch_norm, args.basenet, args.schedule) == (320, True, "none", "cosine")
    assert (args.lr, args.momentum, args.weight_decay, args.warmup, args.clip_grad) == (0.05, 0.9, 4e-5, 50, 0.0)
    given = _parse(*LITE, "--lr", "0.01", "--schedule", "multistep", "--warmup", "0", "--basenet", "NONE")
    assert (given.lr, given.schedule, given.warmup) == (0.01, "multistep", 0)
    classic = _parse()
    assert (classic.backbone, classic.size, classic.schedule, classic.weight_decay) == ("vgg16", 300, "multistep", 5e-4)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        ((*LITE, "--size", "300"), "--size 300 does not fit --backbone mobilenet_v3_large: expected 320"),
        (("--size", "320"), "--size 320 does not fit --backbone vgg16: expected 300 or 512"),
        ((*LITE, "--basenet", "weights/vgg16_reducedfc.pth"), "a VGG16 base network does not fit"),
        ((*LITE, "--batch_norm", "false"), "always has BatchNorm"),
    ],
)
def test_flags_the_light_model_cannot_take_are_one_line(argv, words, tmp_path, fail_line) -> None:
    line = fail_line(train.main, [*argv, "--dataset_root", str(tmp_path), "--save_folder", str(tmp_path / "w")])
    assert line.startswith("train.py: error: ") and words in line


def test_the_light_model_resumes_exactly_with_its_cosine_schedule(tiny_voc, tmp_path) -> None:
    """2 iterations in one go == 1, stop, --resume _last.ckpt (no other flag), 1 more: losses, rates, weights."""
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    schedule = ("--warmup", "1", "--save_every", "100")
    assert train.main(_argv(tiny_voc, whole, "--max_iter", "2", *schedule)) == 0
    assert train.main(_argv(tiny_voc, parts, "--max_iter", "1", *schedule)) == 0
    last = parts / "ssdlite320_VOC_last.ckpt"
    where = ["--dataset_root", tiny_voc, "--save_folder", str(parts), "--num_workers", "0", "--cuda", "false"]
    assert train.main(["--resume", str(last), "--max_iter", "2", *where]) == 0

    logs = [read_log(str(folder / "train_log.csv")) for folder in (whole, parts)]
    assert logs[0]["loss_c"] == logs[1]["loss_c"] and all(math.isfinite(v) for v in logs[0]["loss_l"])
    # warm-up 1, then the cosine from 0.05 to 0 over the one iteration left: 0.05 at step 1
    assert logs[0]["lr"] == logs[1]["lr"] == pytest.approx([0.05, 0.05])
    final = [torch.load(folder / "ssdlite320_VOC_2.pth", weights_only=True) for folder in (whole, parts)]
    assert all(torch.equal(final[0][k], final[1][k]) for k in final[0])
    ckpt = torch.load(last, weights_only=True)
    assert ckpt["scheduler"]["max_iters"] == 2 and ckpt["args"]["schedule"] == "cosine"
    assert ckpt["model_facts"]["architecture"] == "mobilenet_v3_large"
    assert sorted(p.name for p in parts.glob("ssdlite320_*")) == [
        "ssdlite320_VOC_1.json", "ssdlite320_VOC_1.pth", "ssdlite320_VOC_2.json", "ssdlite320_VOC_2.pth",
        "ssdlite320_VOC_last.ckpt",
    ]  # fmt: skip


def test_a_resume_keeps_the_backbone_of_its_checkpoint(tiny_voc, tmp_path, fail_line) -> None:
    folder = tmp_path / "w"
    assert train.main(_argv(tiny_voc, folder, "--max_iter", "1")) == 0
    resume = ["--resume", str(folder / "ssdlite320_VOC_last.ckpt"), "--backbone", "vgg16", "--max_iter", "2"]
    line = fail_line(train.main, [*resume, "--dataset_root", tiny_voc, "--save_folder", str(folder)])
    assert "--backbone vgg16 contradicts" in line and "mobilenet_v3_large" in line


def _video(path: Path, frames: int = 3) -> Path:
    """A tiny synthetic MJPG video of ``frames`` 320x240 frames."""
    from data.synthetic import make_image

    rng = np.random.default_rng(0)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (320, 240))
    for _ in range(frames):
        writer.write(make_image(rng, 320, 240, max_objects=2, empty_prob=0.0)[0])
    writer.release()
    return path


@pytest.mark.slow
def test_the_light_model_journey_needs_no_flag_after_training(tiny_voc, tmp_path, scripts) -> None:
    """train → eval → test (a picture and a video) → export (onnxruntime equals PyTorch) → inspect."""
    weights = tmp_path / "w"
    assert train.main(_argv(tiny_voc, weights, "--max_iter", "2")) == 0
    model = weights / "ssdlite320_VOC_2.pth"
    sidecar = json.loads(model.with_suffix(".json").read_text())
    assert (sidecar["architecture"], sidecar["size"], sidecar["preprocessing"]["std"]) == (
        "mobilenet_v3_large", 320, [127.5] * 3,
    )  # fmt: skip

    out = tmp_path / "eval"
    argv = ["--trained_model", str(model), "--dataset_root", tiny_voc, "--save_folder", str(out), "--num_workers", "0"]
    assert scripts.eval.main([*argv, "--cuda", "false"]) == 0
    assert json.loads((out / "results.json").read_text())["num_images"] == 1

    picture = next(Path(tiny_voc, "VOC2007", "JPEGImages").glob("*.jpg"))
    video = _video(tmp_path / "clip.avi")
    det = tmp_path / "det"
    argv = ["--trained_model", str(model), "--save_folder", str(det), "--visual_threshold", "0", "--cuda", "false"]
    assert scripts.test.main([*argv, str(picture), str(video)]) == 0
    assert json.loads((det / "detections.json").read_text())[0]["detections"]  # the threshold 0 keeps some
    assert len((det / "clip_det.jsonl").read_text().splitlines()) == 3

    from utils.checkpoint import load_model
    from utils.export import decoded, onnx_session, run_onnx
    from utils.export import main as export_main

    onnx = tmp_path / "lite.onnx"
    assert export_main(["--trained_model", str(model), "--out", str(onnx), "--check", "false"]) == 0
    net = load_model(model)
    x = net.preprocessing(cv2.imread(str(picture)), 320).unsqueeze(0)  # RGB in [-1, 1]
    assert -1.0 <= float(x.min()) < 0.0 < float(x.max()) <= 1.0
    with torch.no_grad():
        boxes, scores = decoded(net).eval()(x)
    ort_boxes, ort_scores = run_onnx(onnx_session(onnx), x.numpy())
    np.testing.assert_allclose(ort_boxes, boxes.numpy(), atol=1e-4)
    np.testing.assert_allclose(ort_scores, scores.numpy(), atol=1e-5)

    from utils import inspect_dataset

    shown = tmp_path / "inspect"
    argv = [*LITE, "--dataset_root", tiny_voc, "--image_sets", "2007:trainval", "--save_folder", str(shown)]
    assert inspect_dataset.main([*argv, "--num_gallery", "2", "--augment"]) == 0
    summary = json.loads((shown / "summary.json").read_text())
    assert (summary["backbone"], summary["size"], summary["prior_fit"]["priors"]) == ("mobilenet_v3_large", 320, 3234)
    assert summary["prior_config"]["name"] == "VOC320" and (shown / "gallery.jpg").is_file()
