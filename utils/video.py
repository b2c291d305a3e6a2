"""Detect objects in a video file or a live camera: an annotated video and one JSON line per frame.

    from utils.video import annotate_video
    summary = annotate_video(net, "street.mp4", "out/street_det", facts.class_names, visual_threshold=0.6)
    # out/street_det.mp4 (or .avi) and out/street_det.jsonl:
    # {"frame": 0, "time": 0.0, "detections": [{"label": "car", "score": 0.91, "box": [x1, y1, x2, y2]}]}

Frames go through :func:`utils.inference.detect_images` in batches, on the device of the model, and are drawn with
:func:`utils.inference.draw_detections`. A live run shows a window with the frame rate where a display exists and
stops on ``q`` in it, on Ctrl-C or after ``max_frames``; the writer and the JSON lines file are closed either way.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterable, Iterator, Sequence
from typing import IO, Any, NamedTuple

import cv2
import numpy as np
from torch import nn

from utils.inference import Detection, detect_images, draw_detections

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv")
# (fourcc, extension) tried in order: MPEG-4 in .mp4 where the OpenCV build can write it, else Motion JPEG in .avi
WRITER_FORMATS: tuple[tuple[str, str], ...] = (("mp4v", ".mp4"), ("MJPG", ".avi"))
DEFAULT_FPS = 30.0  # for a source that does not report its frame rate (many webcams)
WINDOW_TITLE = "SSD detections (q to stop)"


class VideoReadError(OSError):
    """A video file or camera that cannot be opened, or gives no frame."""


class StreamSummary(NamedTuple):
    """What :func:`annotate_video` wrote."""

    frames: int  # frames annotated and written
    video_path: str
    jsonl_path: str
    stopped: str  # "end" (source exhausted or max_frames), "q" (key in the window) or "interrupt" (Ctrl-C)


def is_video(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a video file, by its extension (any case)."""
    return os.fspath(path).lower().endswith(VIDEO_EXTENSIONS)


def source_name(source: int | str) -> str:
    """``camera0`` for a camera index, the file stem for a path: the stem of the output files."""
    if isinstance(source, int):
        return f"camera{source}"
    return os.path.splitext(os.path.basename(source))[0]


def open_capture(source: int | str) -> cv2.VideoCapture:
    """An opened ``cv2.VideoCapture`` on a camera index or a video file; :class:`VideoReadError` if it will not open."""
    if isinstance(source, str) and not os.path.isfile(source):
        raise VideoReadError(f"{source}: no such video file")
    cap = cv2.VideoCapture(source)
    if not cap.isOpened():
        cap.release()
        if isinstance(source, int):
            raise VideoReadError(f"camera {source}: cannot open it (no such camera, or another program holds it)")
        raise VideoReadError(f"{source}: cannot open it as a video (unknown format or damaged file)")
    return cap


def capture_fps(cap: cv2.VideoCapture) -> float:
    """The frame rate the source reports, or :data:`DEFAULT_FPS` when it reports none (0, NaN or absurd)."""
    fps = float(cap.get(cv2.CAP_PROP_FPS))
    return fps if 0.0 < fps <= 1000.0 else DEFAULT_FPS


def camera_frames(source: int | str | cv2.VideoCapture, max_frames: int = 0) -> Iterator[np.ndarray]:
    """BGR frames ``[H, W, 3]`` one per step, until the stream ends or ``max_frames`` (0: no limit) were given.

    ``source`` is a camera index, a video path or an opened capture; a capture this function opened is released
    when the generator finishes or is closed, one passed in is left to the caller.
    """
    owned = not isinstance(source, cv2.VideoCapture)
    cap = open_capture(source) if owned else source
    try:
        count = 0
        while max_frames <= 0 or count < max_frames:
            ok, frame = cap.read()
            if not ok or frame is None:
                return
            count += 1
            yield frame
    finally:
        if owned:
            cap.release()


def open_writer(path_stem: str, fps: float, size: tuple[int, int]) -> tuple[cv2.VideoWriter, str]:
    """A video writer for frames of ``size = (width, height)`` at ``path_stem`` + ``.mp4`` (mp4v), or ``.avi``
    (MJPG) when this OpenCV build cannot write the former. Returns the opened writer and its path; OSError if none
    opens."""
    for fourcc, ext in WRITER_FORMATS:
        path = path_stem + ext
        writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*fourcc), fps, size)
        if writer.isOpened():
            return writer, path
        writer.release()
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            os.remove(path)
    tried = ", ".join(f"{ext} ({fourcc})" for fourcc, ext in WRITER_FORMATS)
    raise OSError(f"cannot write a video at {path_stem}: this OpenCV build opens none of {tried}")


def detection_dicts(detections: Sequence[Detection], class_names: Sequence[str]) -> list[dict[str, Any]]:
    """``(class_index, score, box)`` tuples → ``[{"label", "score", "box"}]`` as the JSON outputs hold them."""
    return [{"label": class_names[c], "score": s, "box": box} for c, s, box in detections]


class LiveWindow:
    """A window showing annotated frames with the measured frame rate; :meth:`show` is False once ``q`` is pressed.

    :func:`display_available` tells whether to make one. An OpenCV build without a GUI (``opencv-python-headless``)
    raises ``cv2.error`` on the first frame: the window then turns itself off with one warning line, and the run
    goes on writing its files.
    """

    def __init__(self, title: str = WINDOW_TITLE) -> None:
        self.title = title
        self.enabled = True
        self._last: float | None = None
        self.fps = 0.0

    def show(self, frame: np.ndarray) -> bool:
        """Show ``frame [H, W, 3]`` with the frame rate drawn on it; False when the user pressed ``q``."""
        if not self.enabled:
            return True
        now = time.perf_counter()
        if self._last is not None and now > self._last:
            rate = 1.0 / (now - self._last)
            self.fps = rate if self.fps == 0.0 else 0.9 * self.fps + 0.1 * rate  # smoothed, readable
        self._last = now
        shown = frame.copy()
        cv2.putText(shown, f"{self.fps:.1f} fps", (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 0), 2, cv2.LINE_AA)
        try:
            cv2.imshow(self.title, shown)
            key = cv2.waitKey(1) & 0xFF
        except cv2.error as exc:
            self.enabled = False
            reason = " ".join(str(exc).split())[:160]
            print(f"warning: no window ({reason}); writing the files only", file=sys.stderr)
            return True
        return key != ord("q")

    def close(self) -> None:
        if self.enabled and self._last is not None:
            try:
                cv2.destroyWindow(self.title)
                cv2.waitKey(1)
            except cv2.error:
                pass


def display_available() -> bool:
    """Whether a window can be shown: Windows and macOS always, elsewhere when DISPLAY or WAYLAND_DISPLAY is set."""
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def annotate_stream(
    net: nn.Module,
    frames: Iterable[np.ndarray],
    class_names: Sequence[str],
    writer: cv2.VideoWriter,
    jsonl_file: IO[str],
    visual_threshold: float = 0.6,
    batch_size: int = 8,
    fps: float = DEFAULT_FPS,
    window: LiveWindow | None = None,
) -> tuple[int, str]:
    """Detect in ``frames`` (BGR ``[H, W, 3]``, all one size) ``batch_size`` at a time; write each annotated frame
    to ``writer`` and one JSON line ``{"frame": i, "time": i / fps, "detections": [...]}`` to ``jsonl_file``.

    ``q`` in ``window`` stops after the frame it was pressed on. Ctrl-C stops at once: frames read but not yet
    written are dropped, so the video and the lines stay one to one.

    Returns:
        the number of frames written, and why the stream stopped: "end", "q" or "interrupt".
    """
    sink = _FrameSink(writer, jsonl_file, class_names, fps, window)
    batch: list[np.ndarray] = []
    try:
        for frame in frames:
            batch.append(frame)
            if len(batch) == batch_size:
                if not sink.write_batch(net, batch, visual_threshold):
                    return sink.count, "q"
                batch = []
        if batch and not sink.write_batch(net, batch, visual_threshold):
            return sink.count, "q"
    except KeyboardInterrupt:
        return sink.count, "interrupt"
    return sink.count, "end"


class _FrameSink:
    """Where annotated frames go: the video writer, the JSON lines file and the window; counts what it wrote."""

    def __init__(
        self,
        writer: cv2.VideoWriter,
        jsonl_file: IO[str],
        class_names: Sequence[str],
        fps: float,
        window: LiveWindow | None,
    ) -> None:
        self.writer, self.jsonl_file, self.class_names = writer, jsonl_file, class_names
        self.fps, self.window = fps, window
        self.count = 0

    def write_batch(self, net: nn.Module, batch: list[np.ndarray], visual_threshold: float) -> bool:
        """Detect in ``batch``, draw and write each frame; False when ``q`` was pressed in the window."""
        detections = detect_images(net, batch, visual_threshold, len(batch))
        annotated = [draw_detections(frame, dets, self.class_names) for frame, dets in zip(batch, detections)]
        for picture, dets in zip(annotated, detections):
            self.writer.write(picture)
            line = {
                "frame": self.count,
                "time": round(self.count / self.fps, 6),
                "detections": detection_dicts(dets, self.class_names),
            }
            self.jsonl_file.write(json.dumps(line) + "\n")
            self.count += 1
            if self.window is not None and not self.window.show(picture):
                return False
        return True


def annotate_video(
    net: nn.Module,
    source: int | str,
    out_stem: str,
    class_names: Sequence[str],
    visual_threshold: float = 0.6,
    batch_size: int = 8,
    max_frames: int = 0,
    show: bool = False,
) -> StreamSummary:
    """Annotate a video file or camera ``source`` into ``out_stem`` + ``.mp4``/``.avi`` and ``out_stem.jsonl``.

    ``max_frames`` > 0 stops after that many frames; ``show`` opens a :class:`LiveWindow` (``q`` stops). The
    source is released and both files are closed however the run ends. A source that cannot be opened or gives
    no frame is a :class:`VideoReadError`, and nothing is written.
    """
    cap = open_capture(source)
    try:
        fps = capture_fps(cap)
        frames = camera_frames(cap, max_frames)
        first = next(frames, None)
        if first is None:
            raise VideoReadError(f"{'camera ' if isinstance(source, int) else ''}{source}: gives no frame")
        height, width = first.shape[:2]
        writer, video_path = open_writer(out_stem, fps, (width, height))
        jsonl_path = out_stem + ".jsonl"
        window = LiveWindow() if show else None
        try:
            with open(jsonl_path, "w", encoding="utf-8") as jsonl_file:
                written, stopped = annotate_stream(
                    net,
                    _chain(first, frames),
                    class_names,
                    writer,
                    jsonl_file,
                    visual_threshold,
                    batch_size,
                    fps,
                    window,
                )
        finally:
            writer.release()
            if window is not None:
                window.close()
    finally:
        cap.release()
    return StreamSummary(written, video_path, jsonl_path, stopped)


def _chain(first: np.ndarray, rest: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
    yield first
    yield from rest
