"""test.py on videos and cameras: an annotated video and one JSON line per frame; the camera path driven by a file."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import Tensor, nn

from benchmarks.repo import load_script
from data.config import voc
from ssd import build_ssd
from utils import video
from utils.checkpoint import ModelFacts, load_model, write_sidecar
from utils.inference import detect_images

NAMES = ["circle", "square"]
W, H, FPS = 64, 48, 10.0


script = load_script("test")


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised SSD300 for 2 classes + background, with its sidecar."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "ssd300_tiny.pth"
    torch.save(build_ssd("train", 300, len(NAMES) + 1).state_dict(), path)
    write_sidecar(path, ModelFacts(300, False, NAMES, voc, "VOC"))
    return path


def _frames(n: int) -> list[np.ndarray]:
    """``n`` BGR frames ``[H, W, 3]``: a red disc moving right over a grey ramp."""
    ramp = np.tile(np.linspace(40, 200, W, dtype=np.uint8)[None, :, None], (H, 1, 3))
    out = []
    for i in range(n):
        frame = ramp.copy()
        cv2.circle(frame, (10 + 8 * i, H // 2), 9, (0, 0, 255), -1)
        out.append(frame)
    return out


def _write_video(path: Path, n: int, fourcc: str = "mp4v") -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), FPS, (W, H))
    assert writer.isOpened()
    for frame in _frames(n):
        writer.write(frame)
    writer.release()
    return path


def _read_video(path: str | Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


def _lines(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


class FixedDetector(nn.Module):
    """A stand-in test-phase SSD: every image gets one "circle" (class 1) at 0.9 in the relative box
    (0.25, 0.25, 0.75, 0.5). Output ``Tensor[B, 3, 1, 5]``. Counts the batch sizes it saw."""

    size = 300

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(1))
        self.batches: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.batches.append(x.shape[0])
        out = torch.zeros(x.shape[0], 3, 1, 5)
        out[:, 1, 0] = torch.tensor([0.9, 0.25, 0.25, 0.75, 0.5])
        return out


EXPECTED_DET = {"label": "circle", "score": pytest.approx(0.9), "box": pytest.approx([16.0, 12.0, 48.0, 24.0])}


@pytest.mark.slow
def test_video_file_gives_annotated_video_and_one_line_per_frame(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clip = _write_video(tmp_path / "clip.mp4", 3)
    out = tmp_path / "out"
    argv = [str(clip), "--trained_model", str(weights), "--save_folder", str(out), "--cuda", "false"]
    assert script.main(argv + ["--visual_threshold", "0.2", "--top_k", "5", "--batch_size", "2"]) == 0

    annotated = _read_video(out / "clip_det.mp4")
    assert len(annotated) == 3 and annotated[0].shape == (H, W, 3)
    lines = _lines(out / "clip_det.jsonl")
    assert [line["frame"] for line in lines] == [0, 1, 2]
    assert [line["time"] for line in lines] == pytest.approx([0.0, 0.1, 0.2])
    net = load_model(weights, top_k=5)
    expected = detect_images(net, _read_video(clip)[:1], conf_thresh=0.2)[0]
    assert len(lines[0]["detections"]) == len(expected) > 0
    for det, (c, score, box) in zip(lines[0]["detections"], expected):
        assert det == {"label": NAMES[c], "score": pytest.approx(score, abs=1e-5), "box": pytest.approx(box, abs=1e-3)}
    for line in lines:
        for det in line["detections"]:
            x1, y1, x2, y2 = det["box"]
            assert det["score"] >= 0.2 and 0 <= x1 <= x2 <= W - 1 and 0 <= y1 <= y2 <= H - 1
    assert not (out / "detections.json").exists()
    assert "clip.mp4: 3 frame(s)" in capsys.readouterr().out


@pytest.mark.slow
def test_camera_read_from_a_file_stops_at_max_frames_and_pictures_alone_go_to_json(
    tmp_path: Path, weights: Path
) -> None:
    clip = _write_video(tmp_path / "cam.avi", 6, fourcc="MJPG")
    pic = tmp_path / "still.jpg"
    assert cv2.imwrite(str(pic), _frames(1)[0])
    out = tmp_path / "out"
    argv = [str(pic), "--camera", str(clip), "--max_frames", "3", "--trained_model", str(weights)]
    assert script.main(argv + ["--save_folder", str(out), "--cuda", "false", "--top_k", "5"]) == 0

    assert len(_lines(out / "cam_det.jsonl")) == 3
    assert len(_read_video(out / "cam_det.mp4")) == 3
    records = json.loads((out / "detections.json").read_text())
    assert [r["image"] for r in records] == [str(pic)]


def test_annotate_video_batches_and_writes_every_frame(tmp_path: Path) -> None:
    clip = _write_video(tmp_path / "walk.mp4", 5)
    net = FixedDetector()
    summary = video.annotate_video(net, str(clip), str(tmp_path / "walk_det"), NAMES, 0.5, batch_size=2)
    assert summary == (5, str(tmp_path / "walk_det.mp4"), str(tmp_path / "walk_det.jsonl"), "end")
    assert net.batches == [2, 2, 1]
    lines = _lines(summary.jsonl_path)
    assert lines[4] == {"frame": 4, "time": pytest.approx(0.4), "detections": [EXPECTED_DET]}
    annotated = _read_video(summary.video_path)
    assert len(annotated) == 5
    # the box edge (x = 16, rows 12..24) is drawn in the circle's class colour, far from the grey source
    source = _read_video(clip)
    assert np.abs(annotated[2][18, 16].astype(int) - source[2][18, 16].astype(int)).max() > 60


def test_camera_frames_stop_at_max_frames_or_the_end(tmp_path: Path) -> None:
    clip = str(_write_video(tmp_path / "six.avi", 6, fourcc="MJPG"))
    assert len(list(video.camera_frames(clip, max_frames=4))) == 4
    assert len(list(video.camera_frames(clip))) == 6
    assert len(list(video.camera_frames(clip, max_frames=10))) == 6
    with pytest.raises(video.VideoReadError, match="none.mp4: no such video file"):
        next(video.camera_frames(str(tmp_path / "none.mp4")))


def test_ctrl_c_stops_cleanly_with_video_and_lines_one_to_one(tmp_path: Path) -> None:
    def interrupted() -> Iterator[np.ndarray]:
        yield from _frames(5)
        raise KeyboardInterrupt

    writer, path = video.open_writer(str(tmp_path / "cut_det"), FPS, (W, H))
    with open(tmp_path / "cut_det.jsonl", "w", encoding="utf-8") as jsonl:
        written, stopped = video.annotate_stream(FixedDetector(), interrupted(), NAMES, writer, jsonl, 0.5, 2, FPS)
    writer.release()
    assert (written, stopped) == (4, "interrupt")  # the fifth frame's batch never filled
    assert len(_lines(tmp_path / "cut_det.jsonl")) == 4 and len(_read_video(path)) == 4


class InterruptedDetector(FixedDetector):
    """Ctrl-C arrives while the second batch is in the network."""

    def forward(self, x: Tensor) -> Tensor:
        if len(self.batches) == 1:
            raise KeyboardInterrupt
        return super().forward(x)


def test_ctrl_c_during_detection_keeps_what_was_written(tmp_path: Path) -> None:
    writer, path = video.open_writer(str(tmp_path / "mid_det"), FPS, (W, H))
    with open(tmp_path / "mid_det.jsonl", "w", encoding="utf-8") as jsonl:
        result = video.annotate_stream(InterruptedDetector(), iter(_frames(7)), NAMES, writer, jsonl, 0.5, 3, FPS)
    writer.release()
    assert result == (3, "interrupt")
    assert [line["frame"] for line in _lines(tmp_path / "mid_det.jsonl")] == [0, 1, 2]
    assert len(_read_video(path)) == 3


def test_q_in_the_window_stops_after_that_frame(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    shown = []
    monkeypatch.setattr(cv2, "imshow", lambda title, frame: shown.append(frame.shape))
    monkeypatch.setattr(cv2, "waitKey", lambda delay: ord("q") if len(shown) == 3 else -1)
    writer, path = video.open_writer(str(tmp_path / "q_det"), FPS, (W, H))
    with open(tmp_path / "q_det.jsonl", "w", encoding="utf-8") as jsonl:
        result = video.annotate_stream(
            FixedDetector(), iter(_frames(6)), NAMES, writer, jsonl, 0.5, 2, FPS, video.LiveWindow()
        )
    writer.release()
    assert result == (3, "q") and shown == [(H, W, 3)] * 3
    assert len(_lines(tmp_path / "q_det.jsonl")) == 3


def test_headless_opencv_falls_back_to_files_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def no_gui(title: str, frame: np.ndarray) -> None:
        raise cv2.error("The function is not implemented. Rebuild the library with GTK+ or Cocoa support")

    monkeypatch.setattr(cv2, "imshow", no_gui)
    window = video.LiveWindow()
    writer, path = video.open_writer(str(tmp_path / "hl_det"), FPS, (W, H))
    with open(tmp_path / "hl_det.jsonl", "w", encoding="utf-8") as jsonl:
        result = video.annotate_stream(FixedDetector(), iter(_frames(3)), NAMES, writer, jsonl, 0.5, 2, FPS, window)
    writer.release()
    assert result == (3, "end") and not window.enabled
    warnings = capsys.readouterr().err.strip().splitlines()
    assert len(warnings) == 1 and "no window" in warnings[0] and "not implemented" in warnings[0]


def test_writer_falls_back_to_mjpg_avi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(video, "WRITER_FORMATS", (("zzzz", ".mp4"), ("MJPG", ".avi")))
    writer, path = video.open_writer(str(tmp_path / "fb_det"), FPS, (W, H))
    for frame in _frames(2):
        writer.write(frame)
    writer.release()
    assert path == str(tmp_path / "fb_det.avi") and not (tmp_path / "fb_det.mp4").exists()
    assert len(_read_video(path)) == 2
    monkeypatch.setattr(video, "WRITER_FORMATS", (("zzzz", ".mp4"),))
    with pytest.raises(OSError, match="opens none of .mp4"):
        video.open_writer(str(tmp_path / "none_det"), FPS, (W, H))


def test_is_video_by_extension() -> None:
    assert [video.is_video(p) for p in ["a.MP4", "b/c.mkv", "d.webm", "e.jpg", "f.mp4.png", "mp4"]] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]


def test_unreadable_video_is_skipped_and_bad_camera_exits_2(
    tmp_path: Path, weights: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all")
    out = tmp_path / "out"
    base = ["--trained_model", str(weights), "--save_folder", str(out), "--cuda", "false"]
    assert script.main([str(broken), *base]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"test.py: warning: skipping {broken}: cannot open it as a video (unknown format or damaged file)"]
    assert not list(out.glob("broken_det*")) and not (out / "detections.json").exists()

    missing = tmp_path / "gone.avi"
    with pytest.raises(SystemExit) as info:
        script.main(["--camera", str(missing), *base])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == f"test.py: error: {missing}: no such video file"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "nothing to detect in: give image or video files or folders, or --camera N"),
        (["--camera", "0", "--max_frames", "-1"], "--max_frames must be 0 (no limit) or more, got -1"),
    ],
)
def test_user_errors_exit_2(weights: Path, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    with pytest.raises(SystemExit) as info:
        script.main([*argv, "--trained_model", str(weights)])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == f"test.py: error: {message}"
