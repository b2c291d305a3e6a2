"""Detect objects in pictures with a trained SSD; save annotated copies and the detections as JSON.

    python test.py --trained_model weights/ssd300_mAP_77.43_v2.pth --save_folder demo/ dog.jpg pictures/

The model runs as it was trained: size, prior config and class names come from the sidecar ``<stem>.json`` beside
the weights (or a full checkpoint); a bare classic ``.pth`` takes them from ``--dataset`` (default VOC),
``--size`` and ``--classes``. The script prints the model and class list it uses.

Writes ``SAVE_FOLDER/<image stem>_det.jpg`` per picture and ``SAVE_FOLDER/detections.json``:
``[{"image": path, "width": w, "height": h, "detections": [{"label", "score", "box": [x1, y1, x2, y2]}]}]`` with
the detections scoring at least ``--visual_threshold``, boxes in 0-based pixels clipped to the image. Inputs whose
stems clash (``x.jpg`` and ``x.png``, ``a/x.jpg`` and ``b/x.jpg``) are named by their path from the folder they
share instead (``x_jpg_det.jpg``, ``a_x_jpg_det.jpg``; see :func:`output_names`), so no output replaces another.
At the start the previous run's outputs of these inputs and its detections.json are removed; detections.json is
written atomically at the end, so a run cut short never leaves an old one behind as if it were its own.
A picture that cannot be read is skipped with one warning line; the others are still written, and the exit code
is 1. The same inference is a Python call: ``utils.inference.detect_images``.

A video file (by extension: ``utils.video.VIDEO_EXTENSIONS``) gives ``SAVE_FOLDER/<stem>_det.mp4`` (``.avi`` where
OpenCV cannot write MPEG-4) and ``SAVE_FOLDER/<stem>_det.jsonl``, one line per frame:
``{"frame": i, "time": seconds, "detections": [...]}``. ``--camera N`` (or a video path, read the same way) writes
``camera<N>_det.*``, shows a window with the frame rate where a display exists, and stops on ``q``, Ctrl-C or
``--max_frames``. detections.json holds still pictures only and is written only when some were given.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np
from torch import nn

from data.common import read_image
from data.voc0712 import IMAGE_EXTENSIONS
from utils.checkpoint import load_model
from utils.cli import EXIT_SIGINT, add_device_flags, autocast, choose_device, run_main
from utils.inference import Detection, detect_images, draw_detections
from utils.training.state import atomic_write_text
from utils.video import (
    VIDEO_EXTENSIONS,
    WRITER_FORMATS,
    VideoReadError,
    annotate_video,
    detection_dicts,
    display_available,
    is_video,
    source_name,
)

PROG = "test.py"
DETECTIONS_JSON = "detections.json"


def camera_source(value: str) -> int | str:
    """``--camera``: an integer is a camera index, anything else a video file or stream URL."""
    try:
        return int(value)
    except ValueError:
        return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Single Shot MultiBox Detector: detect and draw")
    parser.add_argument("images", nargs="*", help="image or video files, or folders of them")
    parser.add_argument("--trained_model", default=os.path.join("weights", "ssd300_mAP_77.43_v2.pth"))
    parser.add_argument("--size", type=int, choices=(300, 320, 512), default=None, help="default: the weights'")
    parser.add_argument(
        "--dataset",
        type=str.upper,
        choices=("VOC", "COCO"),
        default=None,
        help="priors and class names for weights without a sidecar (default VOC)",
    )
    parser.add_argument("--classes", default=None, help="text file with one class name per line")
    parser.add_argument("--visual_threshold", type=float, default=0.6, help="draw and report scores >= this")
    add_device_flags(parser)
    parser.add_argument("--save_folder", default="detections/", help="where annotated images and JSON go")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--top_k", type=int, default=None, help="detections kept per class (default: the model's)")
    parser.add_argument(
        "--camera", type=camera_source, default=None, help="camera index (0: the first) or a video path to read live"
    )
    parser.add_argument(
        "--max_frames", type=int, default=0, help="stop each video or camera after this many frames (0: no limit)"
    )
    return parser


def check_args(args: argparse.Namespace) -> None:
    """ValueError for flag values no run could use."""
    if args.batch_size < 1:
        raise ValueError(f"--batch_size must be at least 1, got {args.batch_size}")
    if not 0.0 <= args.visual_threshold <= 1.0:
        raise ValueError(f"--visual_threshold must be in [0, 1], got {args.visual_threshold}")
    if args.top_k is not None and args.top_k < 1:
        raise ValueError(f"--top_k must be at least 1, got {args.top_k}")
    if args.max_frames < 0:
        raise ValueError(f"--max_frames must be 0 (no limit) or more, got {args.max_frames}")
    if not args.images and args.camera is None:
        raise ValueError("nothing to detect in: give image or video files or folders, or --camera N")


def collect_images(paths: Sequence[str]) -> list[str]:
    """Files named directly, plus the pictures and videos (by extension, sorted) of each named folder."""
    extensions = tuple(IMAGE_EXTENSIONS) + tuple(VIDEO_EXTENSIONS)
    found: list[str] = []
    for path in paths:
        if os.path.isdir(path):
            names = sorted(n for n in os.listdir(path) if n.lower().endswith(extensions))
            if not names:
                raise ValueError(f"folder {path} holds no pictures or videos ({', '.join(sorted(extensions))})")
            found += [os.path.join(path, n) for n in names]
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise ValueError(f"no such image file or folder: {path}")
    return found


def output_names(paths: Sequence[str]) -> dict[str, str]:
    """The name of each input's output files (``SAVE_FOLDER/<name>_det.jpg``; ``<name>_det.mp4`` for a video).

    An input whose stem no other input has keeps it (``photo.jpg`` → ``photo``). Inputs whose stems clash, ignoring
    case as some disks do, are named by their path from the folder they share, separators and dots as ``_``
    (``x.jpg`` and ``x.png`` → ``x_jpg`` and ``x_png``; ``a/x.jpg`` and ``b/x.jpg`` → ``a_x_jpg`` and ``b_x_jpg``);
    a name that is still taken gets ``_2``, ``_3``… in input order. The same file given twice keeps one name.
    """
    files = list(dict.fromkeys(os.path.abspath(p) for p in paths))
    stems = {f: os.path.splitext(os.path.basename(f))[0] for f in files}
    counts = Counter(stem.casefold() for stem in stems.values())
    groups: dict[str, list[str]] = {}
    for f in files:
        if counts[stems[f].casefold()] > 1:
            groups.setdefault(stems[f].casefold(), []).append(f)
    wanted = {f: stems[f] for f in files}
    for group in groups.values():
        common = os.path.commonpath([os.path.dirname(f) for f in group])
        wanted.update({f: re.sub(r"[\\/.:]", "_", os.path.relpath(f, common)) for f in group})
    names: dict[str, str] = {}
    taken: set[str] = set()
    for f in sorted(files, key=lambda f: counts[stems[f].casefold()] > 1):  # plain stems claim their names first
        name, n = wanted[f], 2
        while name.casefold() in taken:
            name, n = f"{wanted[f]}_{n}", n + 1
        taken.add(name.casefold())
        names[f] = name
    return {p: names[os.path.abspath(p)] for p in paths}


def detection_record(path: str, img: np.ndarray, dets: list[Detection], names: Sequence[str]) -> dict[str, Any]:
    """One entry of detections.json."""
    h, w = img.shape[:2]
    return {
        "image": path,
        "width": int(w),
        "height": int(h),
        "detections": detection_dicts(dets, names),
    }


def read_pictures(paths: Sequence[str]) -> tuple[list[str], list[np.ndarray], list[str]]:
    """``(paths read, BGR images, paths skipped)``; each skipped picture gets one warning line on stderr."""
    good, images, skipped = [], [], []
    for path in paths:
        try:
            images.append(read_image(path))
            good.append(path)
        except (OSError, ValueError) as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            print(f"{PROG}: warning: skipping {path}: {reason}", file=sys.stderr)
            skipped.append(path)
    return good, images, skipped


def detect_and_save(
    net: nn.Module, paths: Sequence[str], names: Sequence[str], args: argparse.Namespace, outputs: Mapping[str, str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """Detect in every picture, write its annotated copy to ``outputs[path]``; returns the detections.json records
    and the skipped."""
    records, skipped = [], []
    for start in range(0, len(paths), args.batch_size):
        chunk, images, bad = read_pictures(paths[start : start + args.batch_size])
        skipped += bad
        for path, img, dets in zip(chunk, images, detect_images(net, images, args.visual_threshold, args.batch_size)):
            out = outputs[path]
            if not cv2.imwrite(out, draw_detections(img, dets, names)):
                raise OSError(f"cannot write {out}")
            records.append(detection_record(path, img, dets, names))
            print(f"{path}: {len(dets)} detection(s) >= {args.visual_threshold} -> {out}")
    return records, skipped


def picture_outputs(paths: Sequence[str], folder: str) -> dict[str, str]:
    """Each picture's annotated copy in ``folder`` (:func:`output_names`)."""
    return {path: os.path.join(folder, f"{name}_det.jpg") for path, name in output_names(paths).items()}


def stream_outputs(sources: Sequence[int | str], folder: str) -> dict[int | str, str]:
    """Each video's or camera's output stem in ``folder`` (``<stem>.mp4`` or ``.avi``, and ``<stem>.jsonl``)."""
    labels = [source_name(s) if isinstance(s, int) else s for s in sources]  # a camera is named camera<N>
    names = output_names(labels)
    return {s: os.path.join(folder, f"{names[label]}_det") for s, label in zip(sources, labels)}


def remove_previous_outputs(pictures: Sequence[str], streams: Sequence[int | str], folder: str) -> None:
    """Remove what an earlier run wrote for these inputs (annotated copies, videos, JSON lines, detections.json):
    an output left from before must not pass for this run's when the run is cut short. A file given as an input
    (an earlier annotated copy read again) is never removed."""
    stale = list(picture_outputs(pictures, folder).values())
    stale += [os.path.join(folder, DETECTIONS_JSON)] if pictures else []
    for stem in stream_outputs(streams, folder).values():
        stale += [stem + ext for _, ext in WRITER_FORMATS] + [stem + ".jsonl"]
    inputs = {os.path.abspath(p) for p in [*pictures, *streams] if isinstance(p, str)}
    for path in (p for p in stale if os.path.abspath(p) not in inputs):
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


def detect_pictures(net: nn.Module, paths: Sequence[str], names: Sequence[str], args: argparse.Namespace) -> list[str]:
    """Annotate the pictures and write detections.json (atomically); returns the pictures skipped as unreadable."""
    records, skipped = detect_and_save(net, paths, names, args, picture_outputs(paths, args.save_folder))
    json_path = os.path.join(args.save_folder, DETECTIONS_JSON)
    atomic_write_text(json_path, json.dumps(records, indent=2))
    print(f"wrote {json_path}: {len(records)} picture(s), {len(skipped)} skipped as unreadable")
    return skipped


def detect_stream(
    net: nn.Module,
    source: int | str,
    names: Sequence[str],
    args: argparse.Namespace,
    out_stem: str,
    camera: bool = False,
) -> str:
    """Annotate one video file, or the ``--camera`` source, into ``out_stem`` + ``.mp4``/``.avi`` and ``.jsonl``;
    returns why it stopped ("end", "q" or "interrupt")."""
    live = isinstance(source, int)
    if camera:
        print(f"reading {'camera ' if live else ''}{source}: Ctrl-C (or q in the window) stops")
    summary = annotate_video(
        net,
        source,
        out_stem,
        names,
        visual_threshold=args.visual_threshold,
        batch_size=1 if live else args.batch_size,  # a live picture should not wait for a batch to fill
        max_frames=args.max_frames,
        show=camera and display_available(),
    )
    how = {"end": "", "q": " (stopped by q)", "interrupt": " (stopped by Ctrl-C)"}[summary.stopped]
    print(f"{source}: {summary.frames} frame(s){how} -> {summary.video_path}, {summary.jsonl_path}")
    return summary.stopped


def run(args: argparse.Namespace) -> tuple[list[str], bool]:
    """Detect in the pictures, videos and camera of ``args``; write annotated copies, detections.json (pictures
    only, when any) and per video an annotated video and a JSON lines file.

    Returns:
        the paths skipped as unreadable, and whether Ctrl-C cut a video file short (the rest is then not read).
    """
    paths = collect_images(args.images)
    videos = [p for p in paths if is_video(p)]
    pictures = [p for p in paths if not is_video(p)]
    device = choose_device(args.cuda)
    model = load_model(args.trained_model, args.dataset, args.size, args.classes, device=device, top_k=args.top_k)
    model.detect.conf_thresh = min(model.detect.conf_thresh, args.visual_threshold)  # a lower threshold sees more
    print(model.description)
    os.makedirs(args.save_folder, exist_ok=True)
    remove_previous_outputs(pictures, streams(videos, args.camera), args.save_folder)
    with autocast(device, args.amp):
        return detect_all(model, model.facts, pictures, videos, args)


def streams(videos: Sequence[str], camera: int | str | None) -> list[int | str]:
    """The video files, then the ``--camera`` source when there is one."""
    return [*videos, *([] if camera is None else [camera])]


def detect_all(
    net: nn.Module, facts: Any, pictures: Sequence[str], videos: Sequence[str], args: argparse.Namespace
) -> tuple[list[str], bool]:
    skipped = detect_pictures(net, pictures, facts.class_names, args) if pictures else []
    out_stems = stream_outputs(streams(videos, args.camera), args.save_folder)
    for path in videos:
        try:
            stopped = detect_stream(net, path, facts.class_names, args, out_stems[path])
        except VideoReadError as exc:
            reason = str(exc).removeprefix(f"{path}: ")
            print(f"{PROG}: warning: skipping {path}: {reason}", file=sys.stderr)
            skipped.append(path)
            continue
        if stopped == "interrupt":
            return skipped, True
    if args.camera is not None:
        # any stop is a normal end for a camera
        detect_stream(net, args.camera, facts.class_names, args, out_stems[args.camera], camera=True)
    return skipped, False


def detect_files(args: argparse.Namespace) -> int:
    check_args(args)
    skipped, interrupted = run(args)
    if interrupted:
        return EXIT_SIGINT
    return 1 if skipped else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Returns 0; 1 when a picture or video was skipped; 130 after Ctrl-C. Exits 2 with one line on stderr for a
    user error (a camera that will not open is one)."""
    args = build_parser().parse_args(argv)
    return run_main(PROG, lambda: detect_files(args))


if __name__ == "__main__":
    raise SystemExit(main())
