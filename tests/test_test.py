"""test.py: annotated images and detections.json from a saved model; clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from benchmarks.repo import REPO_ROOT, load_script
from data.config import voc
from ssd import Detector, build_ssd
from utils.checkpoint import ModelFacts, build_from_facts, load_model, read_checkpoint, write_sidecar
from utils.inference import detect_images

NAMES = ["circle", "square"]


script = load_script("test")


@pytest.fixture(scope="module")
def model_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised SSD300 with 2 classes + background, saved as a plain state_dict."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "ssd300_tiny.pth"
    torch.save(build_ssd("train", 300, len(NAMES) + 1).state_dict(), path)
    return path


@pytest.fixture()
def classes_file(tmp_path: Path) -> Path:
    path = tmp_path / "classes.txt"
    path.write_text("\n".join(NAMES) + "\n")
    return path


def _image(path: Path, h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    cv2.circle(img, (w // 2, h // 2), min(h, w) // 4, (0, 0, 255), -1)
    assert cv2.imwrite(str(path), img)
    return cv2.imread(str(path))


@pytest.mark.slow
def test_writes_annotated_images_and_json(
    tmp_path: Path, model_file: Path, classes_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    images = {"one": _image(folder / "one.jpg", 120, 160, 1), "two": _image(folder / "two.png", 90, 70, 2)}
    (folder / "notes.txt").write_text("not a picture, and not picked from a folder")
    single = tmp_path / "three.jpg"
    images["three"] = _image(single, 50, 60, 3)
    out = tmp_path / "out"
    argv = [str(folder), str(single), "--trained_model", str(model_file), "--classes", str(classes_file)]
    argv += ["--visual_threshold", "0.2", "--save_folder", str(out), "--cuda", "false", "--top_k", "5"]
    assert script.main(argv) == 0

    records = json.loads((out / "detections.json").read_text())
    assert [Path(r["image"]).stem for r in records] == ["one", "two", "three"]
    assert records[2]["image"] == str(single)
    net = load_model(model_file, classes=NAMES, top_k=5)
    for record in records:
        stem = Path(record["image"]).stem
        img = images[stem]
        annotated = cv2.imread(str(out / f"{stem}_det.jpg"))
        assert annotated is not None and annotated.shape == img.shape
        assert (record["width"], record["height"]) == (img.shape[1], img.shape[0])
        expected = detect_images(net, [img], conf_thresh=0.2)[0]
        assert len(record["detections"]) == len(expected) > 0
        for det, (c, score, box) in zip(record["detections"], expected):
            assert set(det) == {"label", "score", "box"}
            assert det["label"] == NAMES[c] and det["score"] == pytest.approx(score) and det["score"] >= 0.2
            assert det["box"] == pytest.approx(box)
            x1, y1, x2, y2 = det["box"]
            assert 0 <= x1 <= x2 <= img.shape[1] - 1 and 0 <= y1 <= y2 <= img.shape[0] - 1
        scores = [d["score"] for d in record["detections"]]
        assert scores == sorted(scores, reverse=True)
    assert "detections.json" in capsys.readouterr().out


@pytest.mark.slow
def test_runs_as_a_script(tmp_path: Path, model_file: Path, classes_file: Path) -> None:
    pic = tmp_path / "pic.jpg"
    _image(pic, 64, 64, 4)
    cmd = [sys.executable, "test.py", str(pic), "--trained_model", str(model_file), "--classes", str(classes_file)]
    cmd += ["--save_folder", str(tmp_path)]
    done = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "pic_det.jpg").is_file() and (tmp_path / "detections.json").is_file()


def test_unreadable_pictures_are_skipped_and_the_rest_written(
    tmp_path: Path, model_file: Path, classes_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "pics"
    folder.mkdir()
    _image(folder / "a_good.jpg", 48, 64, 8)
    (folder / "b_broken.jpg").write_text("hello")
    fake = tmp_path / "fake.png"
    fake.write_bytes(b"")
    out = tmp_path / "out"
    argv = [str(folder), str(fake), "--trained_model", str(model_file), "--classes", str(classes_file)]
    assert script.main(argv + ["--save_folder", str(out), "--cuda", "false", "--visual_threshold", "0.3"]) == 1
    captured = capsys.readouterr()
    warnings = captured.err.strip().splitlines()
    assert len(warnings) == 2
    assert warnings[0].startswith(f"test.py: warning: skipping {folder / 'b_broken.jpg'}: cannot decode")
    assert warnings[1].startswith(f"test.py: warning: skipping {fake}: empty")
    records = json.loads((out / "detections.json").read_text())
    assert [r["image"] for r in records] == [str(folder / "a_good.jpg")] and records[0]["width"] == 64
    assert (out / "a_good_det.jpg").is_file() and not (out / "b_broken_det.jpg").exists()
    assert "1 picture(s), 2 skipped" in captured.out


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--batch_size", "0", "--batch_size must be at least 1, got 0"),
        ("--visual_threshold", "1.5", "--visual_threshold must be in [0, 1], got 1.5"),
        ("--top_k", "0", "--top_k must be at least 1, got 0"),
    ],
)
def test_bad_flag_values_exit_2_with_one_line(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, message: str
) -> None:
    pic = tmp_path / "pic.jpg"
    _image(pic, 40, 40, 9)
    with pytest.raises(SystemExit) as info:
        script.main([str(pic), "--trained_model", str(model_file), flag, value])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == f"test.py: error: {message}"


def test_flags_contradicting_the_sidecar_exit_2(
    tmp_path: Path, model_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    weights = tmp_path / "ssd300_VOC_10.pth"
    weights.write_bytes(model_file.read_bytes())
    write_sidecar(weights, ModelFacts(300, False, NAMES, voc, "VOC"))
    pic = tmp_path / "pic.jpg"
    _image(pic, 40, 40, 10)
    other = tmp_path / "other.txt"
    other.write_text("circle\ntriangle\n")
    for flags, expected in [
        (["--dataset", "COCO"], "--dataset COCO contradicts"),
        (["--classes", str(other)], "--classes contradicts the class names"),
        (["--size", "512"], "--size 512 contradicts"),
    ]:
        with pytest.raises(SystemExit) as info:
            script.main([str(pic), "--trained_model", str(weights), "--save_folder", str(tmp_path), *flags])
        assert info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err and "ssd300_VOC_10.json" in err
    assert not (tmp_path / "detections.json").exists()


def test_custom_classes_on_a_bare_pth_run_with_voc_priors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A VOC-layout model with 80 classes is not a COCO model: the boxes are those of VOC's priors."""
    torch.manual_seed(1)
    trained = build_ssd("train", 300, 81, cfg=voc)
    weights = tmp_path / "ssd300_custom80.pth"
    torch.save(trained.state_dict(), weights)
    names = [f"part{i:02d}" for i in range(80)]
    classes = tmp_path / "classes80.txt"
    classes.write_text("\n".join(names) + "\n")
    pic = tmp_path / "pic.jpg"
    img = _image(pic, 90, 120, 11)
    out = tmp_path / "out"
    argv = [str(pic), "--trained_model", str(weights), "--classes", str(classes), "--save_folder", str(out)]
    assert script.main(argv + ["--visual_threshold", "0.02", "--top_k", "3", "--cuda", "false"]) == 0
    assert "model: SSD300 VOC priors, 80 classes from --classes" in capsys.readouterr().out
    got = json.loads((out / "detections.json").read_text())[0]["detections"]

    facts = ModelFacts(300, False, names, voc)
    net = Detector(build_from_facts(facts, top_k=3, conf_thresh=0.01)).eval()
    net.load_state_dict(read_checkpoint(weights)[0])
    expected = detect_images(net, [img], conf_thresh=0.02)[0]
    assert len(got) == len(expected) > 0
    assert [d["label"] for d in got] == [names[c] for c, _, _ in expected]
    np.testing.assert_allclose([d["box"] for d in got], [box for _, _, box in expected], atol=1e-3)


def test_missing_path_and_empty_folder(tmp_path: Path, model_file: Path, fail_line: Callable[..., str]) -> None:
    err = fail_line(script.main, [str(tmp_path / "nowhere.jpg"), "--trained_model", str(model_file)])
    assert "nowhere.jpg" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    err = fail_line(script.main, [str(empty), "--trained_model", str(model_file)])
    assert "holds no pictures" in err and str(empty) in err


def test_class_names_that_do_not_fit_the_weights(
    tmp_path: Path, model_file: Path, fail_line: Callable[..., str]
) -> None:
    pic = tmp_path / "pic.jpg"
    _image(pic, 40, 40, 5)
    err = fail_line(script.main, [str(pic), "--trained_model", str(model_file), "--dataset", "VOC"])
    assert str(model_file) in err and "scores 2 classes (+ background) but the VOC class list names 20" in err
    # no names given: a 3-class file is not VOC (21) or COCO (81), and the error says how to name its classes
    err = fail_line(script.main, [str(pic), "--trained_model", str(model_file)])
    assert "not VOC's 20 or COCO's 80" in err and "--classes" in err


def test_missing_and_corrupt_checkpoint(tmp_path: Path, fail_line: Callable[..., str]) -> None:
    pic = tmp_path / "pic.jpg"
    _image(pic, 40, 40, 6)
    err = fail_line(script.main, [str(pic), "--trained_model", str(tmp_path / "none.pth")])
    assert "checkpoint not found" in err and "none.pth" in err
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(b"garbage")
    err = fail_line(script.main, [str(pic), "--trained_model", str(corrupt)])
    assert f"{corrupt} is not a readable weights file" in err and "weights_only" not in err


def test_bad_classes_file(tmp_path: Path, model_file: Path, fail_line: Callable[..., str]) -> None:
    pic = tmp_path / "pic.jpg"
    _image(pic, 40, 40, 7)
    dup = tmp_path / "dup.txt"
    dup.write_text("cat\ncat\n")
    err = fail_line(script.main, [str(pic), "--trained_model", str(model_file), "--classes", str(dup)])
    assert "dup.txt" in err and "cat" in err
    background = tmp_path / "background.txt"
    background.write_text("__Background__\ncircle\n")
    err = fail_line(script.main, [str(pic), "--trained_model", str(model_file), "--classes", str(background)])
    assert "background.txt:1" in err and "'__Background__' is implicit (class 0)" in err


def test_output_names_are_unique_per_input() -> None:
    """A picture keeps ``<stem>`` unless another input has that stem; then both are named by their path."""
    names = script.output_names(["photo.jpg", "x.jpg", "x.png", "a/y.jpg", "b/y.jpg", "b/y.jpg", "x_jpg.gif"])
    assert names == {
        "photo.jpg": "photo", "x.jpg": "x_jpg_2", "x.png": "x_png", "a/y.jpg": "a_y_jpg", "b/y.jpg": "b_y_jpg",
        "x_jpg.gif": "x_jpg",  # no stem clash: it keeps its name, and x.jpg's path-name takes a number
    }  # fmt: skip
    assert script.output_names(["Q.jpg", "q.JPG"]) == {"Q.jpg": "Q_jpg", "q.JPG": "q_JPG_2"}  # case-blind disks
    streams = script.stream_outputs(["v/clip.mp4", "w/clip.mp4", "walk.avi", 0], "out")
    assert streams == {"v/clip.mp4": os.path.join("out", "v_clip_mp4_det"),
                       "w/clip.mp4": os.path.join("out", "w_clip_mp4_det"),
                       "walk.avi": os.path.join("out", "walk_det"), 0: os.path.join("out", "camera0_det")}  # fmt: skip


def test_pictures_with_the_same_stem_keep_their_own_outputs(
    tmp_path: Path, model_file: Path, classes_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(script, "detect_images", lambda net, images, *args: [[] for _ in images])  # names only
    for sub in ("a", "b"):
        (tmp_path / sub).mkdir()
    sizes = {"x.jpg": (40, 50), "x.png": (30, 60), "a/y.jpg": (20, 30), "b/y.jpg": (50, 20), "z.jpg": (30, 30)}
    for i, (name, (h, w)) in enumerate(sizes.items()):
        _image(tmp_path / name, h, w, 10 + i)
    argv = [*sizes, "--trained_model", str(model_file), "--classes", str(classes_file), "--save_folder", "out"]
    assert script.main(argv + ["--cuda", "false"]) == 0
    outputs = {"x.jpg": "x_jpg", "x.png": "x_png", "a/y.jpg": "a_y_jpg", "b/y.jpg": "b_y_jpg", "z.jpg": "z"}
    assert sorted(os.listdir("out")) == sorted([f"{n}_det.jpg" for n in outputs.values()] + ["detections.json"])
    for name, stem in outputs.items():
        assert cv2.imread(f"out/{stem}_det.jpg").shape[:2] == sizes[name]
    assert [r["image"] for r in json.loads(Path("out/detections.json").read_text())] == list(sizes)


def test_the_previous_outputs_go_but_never_an_input(tmp_path: Path) -> None:
    for name, content in (("x.jpg", "a picture"), ("x_det.jpg", "an earlier copy, given again"),
                          ("detections.json", "[]"), ("clip_det.jsonl", ""), ("clip_det.mp4", "")):  # fmt: skip
        (tmp_path / name).write_text(content)
    pictures = [str(tmp_path / "x.jpg"), str(tmp_path / "x_det.jpg")]
    script.remove_previous_outputs(pictures, [str(tmp_path / "clip.mp4")], str(tmp_path))
    assert sorted(os.listdir(tmp_path)) == ["x.jpg", "x_det.jpg"]


def test_ctrl_c_exits_130_in_one_line_and_leaves_no_previous_results(
    tmp_path: Path, model_file: Path, classes_file: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    """A run cut short must not leave the previous run's detections.json or annotated copy as if they were its own."""
    pic, out = tmp_path / "pic.jpg", tmp_path / "out"
    _image(pic, 40, 40, 9)
    out.mkdir()
    for name in ("detections.json", "pic_det.jpg"):
        (out / name).write_text("from the previous run")

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(script, "detect_images", interrupted)
    argv = [str(pic), "--trained_model", str(model_file), "--classes", str(classes_file), "--save_folder", str(out)]
    assert script.main(argv + ["--cuda", "false"]) == 130
    assert capsys.readouterr().err == "test.py: interrupted\n"
    assert os.listdir(out) == []
