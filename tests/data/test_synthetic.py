"""The synthetic VOC generator: determinism, the promised variety, and a layout VOCDetection reads back exactly."""

from __future__ import annotations

import numpy as np
import pytest

from data import VOC_CLASSES, VOCAnnotationTransform, VOCDetection
from data.synthetic import SHAPES, SYNTHETIC_CLASSES, main, make_image, make_voc_dataset


def test_make_image_contract() -> None:
    img, boxes, labels, difficult = make_image(np.random.default_rng(3), 420, 310)
    assert img.shape == (310, 420, 3) and img.dtype == np.uint8
    assert boxes.dtype == np.float32 and boxes.shape == (len(labels), 4) and len(difficult) == len(labels)
    assert ((boxes[:, 0] >= 0) & (boxes[:, 2] <= 419) & (boxes[:, 1] >= 0) & (boxes[:, 3] <= 309)).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert {VOC_CLASSES[label] for label in labels} <= set(SYNTHETIC_CLASSES)
    assert img.reshape(-1, 3).std(axis=0).min() > 5  # textured, not flat


def test_make_image_is_deterministic() -> None:
    first = make_image(np.random.default_rng(7), 300, 300)
    again = make_image(np.random.default_rng(7), 300, 300)
    other = make_image(np.random.default_rng(8), 300, 300)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert first[2:] == again[2:]
    assert not np.array_equal(first[0], other[0])


def test_variety_over_many_images() -> None:
    counts, sides, flags, classes, aspects = [], [], [], set(), []
    for i in range(150):
        _, boxes, labels, difficult = make_image(np.random.default_rng(i), 400, 400)
        counts.append(len(labels))
        flags += difficult
        classes |= set(labels)
        wh = boxes[:, 2:] - boxes[:, :2] + 1
        sides += list(wh.max(axis=1) / 400)
        aspects += list(wh[:, 0] / wh[:, 1])
    assert 0 < counts.count(0) < 40 and max(counts) >= 4  # some empty images, some crowded
    assert 0 < sum(flags) < 0.3 * len(flags)  # some difficult
    assert classes == {VOC_CLASSES.index(name) for name in SYNTHETIC_CLASSES}
    assert min(sides) < 0.15 and max(sides) > 0.85  # small to image-filling
    assert min(aspects) < 0.5 and max(aspects) > 2.0


def test_box_is_tight_around_the_drawn_object() -> None:
    # one opaque object on the background: its colour must reach every edge of its box and not beyond
    for seed in range(40):
        img, boxes, labels, difficult = make_image(np.random.default_rng(seed), 300, 300, max_objects=1)
        if len(labels) != 1 or difficult[0] or VOC_CLASSES[labels[0]] not in ("car", "tvmonitor"):
            continue
        x1, y1, x2, y2 = boxes[0].astype(int)
        colour = np.array(SHAPES[VOC_CLASSES[labels[0]]].colour, np.float32)
        close = np.abs(img.astype(np.float32) - colour).max(axis=2) < 60
        assert close[y1, x1:x2].mean() > 0.5 and close[y1:y2, x2].mean() > 0.5
        if y1 > 0:
            assert close[y1 - 1, x1:x2].mean() < 0.2
        return
    pytest.fail("no single opaque car or tvmonitor in 40 seeds")


def test_voc_dataset_round_trip(tmp_path) -> None:
    root = make_voc_dataset(tmp_path / "syn", num_train=6, num_test=3, seed=5)
    year = tmp_path / "syn" / "VOC2007"
    assert (year / "ImageSets" / "Main" / "trainval.txt").read_text().split() == [f"{i:06d}" for i in range(1, 7)]
    assert (year / "ImageSets" / "Main" / "test.txt").read_text().split() == ["000007", "000008", "000009"]
    train = VOCDetection(root, [("2007", "trainval")], target_transform=VOCAnnotationTransform(keep_difficult=True))
    assert len(train) == 6 and len(VOCDetection(root, [("2007", "test")])) == 3
    for i in range(6):
        # image i of the train split comes from default_rng([seed, 0, i]): same boxes as make_image gives
        rng = np.random.default_rng([5, 0, i])
        width, height = (int(v) for v in rng.integers(300, 501, size=2))
        _, boxes, labels, _ = make_image(rng, width, height)
        image_id, anno = train.pull_anno(i)
        assert image_id == f"{i + 1:06d}"
        np.testing.assert_array_equal(np.asarray(anno).reshape(-1, 5), np.column_stack([boxes, labels]).reshape(-1, 5))
        assert train.pull_image(i).shape == (height, width, 3)


def test_same_seed_same_files(tmp_path) -> None:
    make_voc_dataset(tmp_path / "a", 3, 1, seed=1)
    make_voc_dataset(tmp_path / "b", 3, 1, seed=1)
    make_voc_dataset(tmp_path / "c", 3, 1, seed=2)
    for name in ("JPEGImages/000002.jpg", "Annotations/000004.xml"):
        a, b, c = ((tmp_path / d / "VOC2007" / name).read_bytes() for d in "abc")
        assert a == b and a != c


def test_cli(tmp_path, capsys) -> None:
    main(["--out", str(tmp_path / "cli"), "--num_train", "2", "--num_test", "1", "--seed", "3"])
    assert "2 trainval + 1 test" in capsys.readouterr().out
    assert len(list((tmp_path / "cli" / "VOC2007" / "JPEGImages").glob("*.jpg"))) == 3


def test_options_narrow_classes_sizes_and_counts() -> None:
    sides, classes = [], set()
    for i in range(60):
        _, boxes, labels, difficult = make_image(
            np.random.default_rng(i),
            300,
            300,
            classes=("car", "sheep"),
            max_objects=2,
            empty_prob=0.0,
            difficult_prob=0.0,
            scale_range=(0.4, 0.8),
        )
        assert 1 <= len(labels) <= 2 and not any(difficult)
        classes |= {VOC_CLASSES[label] for label in labels}
        sides += list((boxes[:, 2:] - boxes[:, :2] + 1).max(axis=1) / 300)
    assert classes == {"car", "sheep"}
    # the longer side is drawn in [0.4, 0.8] x 300 px; the tight box of a drawn shape loses at most a pixel
    assert min(sides) >= 0.4 - 1 / 300 and max(sides) <= 0.8 + 1 / 300
    assert min(sides) < 0.45 and max(sides) > 0.75


@pytest.mark.parametrize(
    "kwargs", [{"classes": ()}, {"max_objects": 0}, {"scale_range": (0.0, 0.5)}, {"scale_range": (0.6, 0.5)}]
)
def test_make_image_rejects_bad_options(kwargs) -> None:
    with pytest.raises(ValueError, match="need at least one class"):
        make_image(np.random.default_rng(0), 300, 300, **kwargs)


def test_cli_options(tmp_path, capsys) -> None:
    out = tmp_path / "narrow"
    main(
        [
            "--out",
            str(out),
            "--num_train",
            "4",
            "--num_test",
            "0",
            "--classes",
            "boat",
            "--min_size",
            "320",
            "--max_size",
            "320",
            "--min_scale",
            "0.5",
            "--max_scale",
            "0.6",
            "--max_objects",
            "1",
            "--empty_prob",
            "0",
            "--difficult_prob",
            "0",
        ]
    )
    train = VOCDetection(str(out), [("2007", "trainval")])
    for i in range(4):
        _, anno = train.pull_anno(i)
        assert train.pull_image(i).shape == (320, 320, 3)
        assert [VOC_CLASSES[int(row[4])] for row in anno] == ["boat"]
        x1, y1, x2, y2 = anno[0][:4]
        assert 0.5 * 320 - 1 <= max(x2 - x1, y2 - y1) + 1 <= 0.6 * 320 + 1
    with pytest.raises(SystemExit) as stop:
        main(["--out", str(tmp_path / "bad"), "--classes", "car,unicorn"])
    assert stop.value.code == 2 and "unicorn" in capsys.readouterr().err
