"""utils/cli.py: boolean flags, one-line fatal errors, and the one class-name resolver of the scripts."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from data import COCO_CLASSES, VOC_CLASSES
from utils.cli import dataset_class_names, fail, resolve_class_names, str2bool


@pytest.mark.parametrize(("text", "value"), [("true", True), ("False", False), ("YES", True), ("0", False)])
def test_str2bool(text: str, value: bool) -> None:
    assert str2bool(text) is value


def test_str2bool_rejects_other_words() -> None:
    with pytest.raises(argparse.ArgumentTypeError, match="expected true or false, got 'maybe'"):
        str2bool("maybe")


def test_fail_prints_one_line_and_exits(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        fail("prog.py", "bad\n  thing", code=3)
    assert info.value.code == 3
    assert capsys.readouterr().err == "prog.py: error: bad thing\n"


def test_names_from_a_file_a_list_or_a_dataset(tmp_path: Path) -> None:
    path = tmp_path / "classes.txt"
    path.write_text("circle\n\n  square \n")
    assert resolve_class_names(path) == (["circle", "square"], f"--classes {path}")
    assert resolve_class_names(str(path), dataset="COCO", num_classes=3)[0] == ["circle", "square"]  # file wins
    assert resolve_class_names(["a", "b"]) == (["a", "b"], "the given class names")
    assert resolve_class_names(dataset="coco") == (list(COCO_CLASSES), "the COCO class list")
    assert dataset_class_names("VOC") == list(VOC_CLASSES)


def test_names_from_the_class_count() -> None:
    assert resolve_class_names(num_classes=21)[0] == list(VOC_CLASSES)
    assert resolve_class_names(num_classes=81) == (list(COCO_CLASSES), "the COCO class list")
    assert resolve_class_names()[0] == list(VOC_CLASSES)
    with pytest.raises(
        ValueError, match="m.pth scores 4 classes .*not VOC's 20 or COCO's 80: name them with --classes"
    ):
        resolve_class_names(num_classes=5, model="m.pth")


def test_names_that_do_not_fit_the_count(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="m.pth scores 80 classes .* but the VOC class list names 20"):
        resolve_class_names(dataset="VOC", num_classes=81, model="m.pth")
    path = tmp_path / "two.txt"
    path.write_text("a\nb\n")
    with pytest.raises(ValueError, match=f"scores 20 classes .* but --classes {path} names 2"):
        resolve_class_names(path, num_classes=21)


@pytest.mark.parametrize("name", ["background", "__background__", "Background"])
def test_background_in_a_class_file_is_rejected(tmp_path: Path, name: str) -> None:
    path = tmp_path / "classes.txt"
    path.write_text(f"cat\n{name}\ndog\n")
    with pytest.raises(ValueError, match=f"classes.txt:2: '{name}' is implicit \\(class 0\\)"):
        resolve_class_names(path)


def test_missing_class_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="class list not found: .*none.txt"):
        resolve_class_names(tmp_path / "none.txt")
