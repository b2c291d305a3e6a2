"""SSDAugmentation: properties over many random draws, the corrected crop rule, seeding, and equality with the
literal classic-named steps (which is what shows the fused fast path keeps the output distribution)."""

from __future__ import annotations

from collections import Counter
from functools import partial
from itertools import islice

import numpy as np
import pytest
import torch

from data import VOCDetection, detection_collate
from data.config import MEANS
from data.transforms import CLASSIC_PREPROCESSING, Preprocessing
from utils.augmentations import (
    CROP_MODES,
    Compose,
    ConvertFromInts,
    Expand,
    PhotometricDistort,
    RandomMirror,
    RandomSampleCrop,
    Resize,
    SSDAugmentation,
    SubtractMeans,
    ToAbsoluteCoords,
    ToPercentCoords,
    crop_boxes,
    model_augmentation,
    sample_crop,
)
from utils.training.data import EpochBatchSampler, EpochIndexedDataset, SeededTransform, iterate_batches

MEAN = np.asarray(MEANS, np.float32)


def random_sample(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small random image (noise, or a saturated flat colour to stress the clipping), 1–4 boxes, labels."""
    width, height = (int(v) for v in rng.integers(24, 160, size=2))
    if rng.random() < 0.5:
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    else:
        image = np.empty((height, width, 3), np.uint8)
        image[:] = rng.choice([0, 255], size=3)
    n = int(rng.integers(1, 5))
    xy = rng.uniform(0.0, 0.8, (n, 2))
    wh = rng.uniform(0.05, 1.0, (n, 2)) * (1.0 - xy)
    boxes = np.concatenate([xy, xy + wh], axis=1)
    return image, boxes, rng.permutation(20)[:n].astype(np.float64)


def iou(rect: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    lt = np.maximum(rect[:2], boxes[:, :2])
    rb = np.minimum(rect[2:], boxes[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
    areas = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1)
    return inter / (np.prod(rect[2:] - rect[:2]) + areas - inter)


def test_output_properties_over_1000_draws() -> None:
    rng = np.random.default_rng(0)
    augment = SSDAugmentation(300, MEANS, rng=1)
    dropped = 0
    for _ in range(1000):
        image, boxes, labels = random_sample(rng)
        out, out_boxes, out_labels = augment(image, boxes, labels)
        assert out.shape == (300, 300, 3) and out.dtype == np.float32 and out.flags.c_contiguous
        pixels = out + MEAN  # before the mean subtraction
        assert pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3
        assert out_boxes.dtype == np.float32 and out_boxes.shape == (len(out_labels), 4)
        assert 1 <= len(out_labels) <= len(labels)  # a crop keeps at least one box centre
        assert (out_boxes >= 0).all() and (out_boxes <= 1).all()
        assert (out_boxes[:, 2] > out_boxes[:, 0]).all() and (out_boxes[:, 3] > out_boxes[:, 1]).all()
        assert not Counter(out_labels.tolist()) - Counter(labels.tolist())  # labels stay with their boxes
        dropped += len(out_labels) < len(labels)
    assert dropped > 50  # crops do drop boxes


def test_labels_stay_with_their_boxes() -> None:
    # three boxes left to right, labelled 0, 1, 2: whatever the crop and mirror, the kept labels keep the input
    # order and their boxes stay left to right (right to left when mirrored)
    augment = SSDAugmentation(300, rng=2)
    image = np.zeros((200, 200, 3), np.uint8)
    boxes = np.array([[0.0, 0.4, 0.1, 0.6], [0.45, 0.4, 0.55, 0.6], [0.9, 0.4, 1.0, 0.6]])
    orders = Counter()
    for _ in range(300):
        _, out_boxes, out_labels = augment(image, boxes, np.array([0.0, 1.0, 2.0]))
        assert list(out_labels) == sorted(out_labels)
        step = np.diff(out_boxes[:, 0] + out_boxes[:, 2])
        assert (step > 0).all() or (step < 0).all()
        orders[(len(step) > 0, bool((step > 0).all()))] += 1
    assert orders[(True, True)] > 20 and orders[(True, False)] > 20  # both orientations were tested


def test_crop_rule_over_2000_draws() -> None:
    rng = np.random.default_rng(3)
    seen = Counter()
    for _ in range(2000):
        width, height = (int(v) for v in rng.integers(50, 400, size=2))
        n = int(rng.integers(1, 4))
        xy = rng.uniform(0, 0.9, (n, 2)) * (width, height)
        wh = rng.uniform(0.02, 0.6, (n, 2)) * (width, height)
        boxes = np.concatenate([xy, np.minimum(xy + wh, (width, height))], axis=1).astype(np.float32)
        rect, mode = sample_crop(rng, width, height, boxes)
        seen[mode] += 1
        if rect is None:
            continue
        assert 0 <= rect[0] < rect[2] <= width and 0 <= rect[1] < rect[3] <= height
        w, h = rect[2] - rect[0], rect[3] - rect[1]
        assert w >= 0.3 * width - 1 and h >= 0.3 * height - 1
        assert 0.5 * w - 1 <= h <= 2 * w + 1
        overlaps = iou(rect.astype(np.float64), boxes.astype(np.float64))
        assert ((overlaps >= mode[0] - 1e-5) & (overlaps <= mode[1])).any()  # Caffe's rule holds
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        assert ((centres > rect[:2]) & (centres < rect[2:])).all(axis=1).any()
    assert set(seen) == set(CROP_MODES)  # every mode, 0.5 included, is used
    assert seen[None] > 2000 / 7 * 0.8


def test_crop_boxes_hand_computed() -> None:
    boxes = np.array([[10, 10, 30, 30], [50, 50, 90, 90], [0, 0, 100, 100], [25, 25, 45, 45]], np.float32)
    kept, labels = crop_boxes(boxes, np.array([1, 2, 3, 4]), np.array([20, 20, 60, 60]))
    # centres (20,20) on the edge and (70,70) outside are dropped; the others are clipped and shifted
    np.testing.assert_array_equal(kept, [[0, 0, 40, 40], [5, 5, 25, 25]])
    np.testing.assert_array_equal(labels, [3, 4])


def sequential_crop(rng: np.random.Generator, width: int, height: int, boxes: np.ndarray) -> tuple:
    """The classic crop loop, one trial at a time, with the corrected rule: the law sample_crop must follow."""
    while True:
        mode = CROP_MODES[int(rng.integers(len(CROP_MODES)))]
        if mode is None:
            return None, None
        for _ in range(50):
            w, h = rng.uniform(0.3 * width, width), rng.uniform(0.3 * height, height)
            if not 0.5 <= h / w <= 2:
                continue
            left, top = rng.uniform(0, width - w), rng.uniform(0, height - h)
            rect = np.array([int(left), int(top), int(left + w), int(top + h)])
            overlaps = iou(rect.astype(np.float64), boxes)
            if not ((overlaps >= mode[0]) & (overlaps <= mode[1])).any():
                continue
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            if ((centres > rect[:2]) & (centres < rect[2:])).all(axis=1).any():
                return rect, mode


def test_vectorised_crop_has_the_sequential_law() -> None:
    boxes = np.array([[40, 30, 90, 100], [150, 120, 190, 150]], np.float64)
    stats = {}
    for name, crop in (("vectorised", sample_crop), ("sequential", sequential_crop)):
        rng = np.random.default_rng(11)
        areas, modes = [], Counter()
        for _ in range(1500):
            rect, mode = crop(rng, 200, 160, boxes)
            modes[mode] += 1
            areas.append(1.0 if rect is None else (rect[2] - rect[0]) * (rect[3] - rect[1]) / (200 * 160))
        stats[name] = (np.mean(areas), {m: modes[m] / 1500 for m in CROP_MODES})
    (area_v, modes_v), (area_s, modes_s) = stats["vectorised"], stats["sequential"]
    assert abs(area_v - area_s) < 0.03  # standard error of each mean is about 0.007
    for mode in CROP_MODES:
        assert abs(modes_v[mode] - modes_s[mode]) < 0.05, mode


def literal_pipeline(rng: np.random.Generator) -> Compose:
    return Compose(
        [
            ConvertFromInts(),
            ToAbsoluteCoords(),
            PhotometricDistort(rng),
            Expand(MEANS, rng),
            RandomSampleCrop(rng),
            RandomMirror(rng),
            ToPercentCoords(),
            Resize(300),
            SubtractMeans(MEANS),
        ]
    )


def test_fused_equals_the_literal_steps() -> None:
    data_rng = np.random.default_rng(9)
    for seed in range(150):
        image, boxes, labels = random_sample(data_rng)
        fused = SSDAugmentation(300, MEANS, rng=seed)(image, boxes, labels)
        literal = literal_pipeline(np.random.default_rng(seed))(image, boxes, labels)
        np.testing.assert_allclose(fused[0], literal[0], atol=0.02, err_msg=f"seed {seed}")
        np.testing.assert_allclose(fused[1], literal[1], atol=1e-5, err_msg=f"seed {seed}")
        np.testing.assert_array_equal(fused[2], literal[2])


def test_the_light_models_recipe_is_the_mirror_ending_in_its_preprocessing() -> None:
    """mobilenet_v3_large: the literal mirror step (no colour, zoom-out or crop), then (pixel - 127.5) / 127.5."""
    lite = Preprocessing((127.5,) * 3, (127.5,) * 3)
    data_rng = np.random.default_rng(5)
    for seed in range(60):
        image, boxes, labels = random_sample(data_rng)
        fused = model_augmentation("mobilenet_v3_large", 320, lite, seed)(image, boxes, labels)
        rng = np.random.default_rng(seed)
        steps = [ConvertFromInts(), ToAbsoluteCoords(), RandomMirror(rng), ToPercentCoords()]
        literal = Compose([*steps, Resize(320), SubtractMeans((127.5,) * 3)])(image, boxes, labels)
        np.testing.assert_allclose(fused[0], literal[0] / 127.5, atol=1e-5, err_msg=f"seed {seed}")
        np.testing.assert_allclose(fused[1], literal[1], atol=1e-5, err_msg=f"seed {seed}")
        np.testing.assert_array_equal(fused[2], literal[2])
        assert fused[0].shape == (320, 320, 3) and np.abs(fused[0]).max() <= 1.0 + 1e-6


def test_the_vgg16_recipe_is_the_classic_pipeline_bit_for_bit() -> None:
    data_rng = np.random.default_rng(6)
    for seed in range(40):
        image, boxes, labels = random_sample(data_rng)
        classic = SSDAugmentation(300, MEANS, rng=seed)(image, boxes, labels)
        recipe = model_augmentation("vgg16", 300, CLASSIC_PREPROCESSING, seed)(image, boxes, labels)
        for a, b in zip(classic, recipe):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="no augmentation recipe for architecture 'resnet'"):
        model_augmentation("resnet", 300, CLASSIC_PREPROCESSING)


def test_the_same_seed_gives_the_same_output_and_other_seeds_other_outputs() -> None:
    image = np.random.default_rng(1).integers(0, 256, (90, 120, 3), dtype=np.uint8)  # noise: every draw shows
    boxes, labels = np.array([[0.1, 0.2, 0.6, 0.7], [0.5, 0.1, 0.9, 0.4]]), np.array([3.0, 7.0])
    first = SSDAugmentation(rng=42)(image, boxes, labels)
    again = SSDAugmentation(rng=np.random.default_rng(42))(image, boxes, labels)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    others = [SSDAugmentation(rng=seed)(image, boxes, labels)[0] for seed in range(8)]
    assert all(not np.array_equal(a, b) for k, a in enumerate(others) for b in others[k + 1 :])
    augment = SSDAugmentation(rng=42)
    outputs = [augment(image, boxes, labels)[0] for _ in range(3)]
    np.testing.assert_array_equal(outputs[0], first[0])
    assert not np.array_equal(outputs[0], outputs[1])  # the Generator advances


def test_uint8_and_float_input_agree() -> None:
    data_rng = np.random.default_rng(4)
    for seed in range(30):
        image, boxes, labels = random_sample(data_rng)
        from_uint8 = SSDAugmentation(rng=seed)(image, boxes, labels)
        from_float = SSDAugmentation(rng=seed)(image.astype(np.float32), boxes, labels)
        np.testing.assert_allclose(from_uint8[0], from_float[0], atol=1e-3)
        np.testing.assert_array_equal(from_uint8[1], from_float[1])


def test_image_without_boxes() -> None:
    augment = SSDAugmentation(rng=0)
    image = np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8)
    for _ in range(100):
        out, boxes, labels = augment(image, np.zeros((0, 4)), np.zeros(0))
        assert out.shape == (300, 300, 3) and boxes.shape == (0, 4) and labels.shape == (0,)


def test_grayscale_input() -> None:
    out, boxes, _ = SSDAugmentation(rng=0)(np.zeros((50, 60), np.uint8), np.array([[0.1, 0.1, 0.9, 0.9]]), [1])
    assert out.shape == (300, 300, 3) and len(boxes) == 1


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork in a process that has threads
@pytest.mark.parametrize("num_workers", [0, 2])
def test_training_augments_picture_i_of_epoch_e_with_the_seed_seed_e_i(tiny_voc: str, num_workers: int) -> None:
    """The training stream (SeededTransform in EpochIndexedDataset): whichever worker loads it, picture ``i`` of
    epoch ``e`` is SSDAugmentation with ``rng=default_rng([seed, e, i])``, so epochs differ and runs repeat."""
    seed, sets = 7, [("2007", "trainval")]
    transform = SeededTransform(partial(SSDAugmentation, 300, MEANS), seed)
    dataset = EpochIndexedDataset(VOCDetection(tiny_voc, sets, transform), transform)
    options = {"batch_size": 2, "seed": seed, "collate_fn": detection_collate, "num_workers": num_workers}
    stream = iterate_batches(dataset, start_iter=0, **options)
    batches = list(islice(stream, 4))  # 2 batches per epoch: epochs 0 and 1
    stream.close()
    keys = [key for epoch in (0, 1) for key in EpochBatchSampler(len(dataset), 2, seed, epoch)]
    got = {}
    for (images, targets), batch_keys in zip(batches, keys, strict=True):
        for image, target, (epoch, index) in zip(images, targets, batch_keys, strict=True):
            alone = VOCDetection(
                tiny_voc, sets, SSDAugmentation(300, MEANS, rng=np.random.default_rng([seed, epoch, index]))
            )
            image_alone, target_alone = alone[index]
            assert torch.equal(image, image_alone) and np.array_equal(target.numpy(), target_alone)
            got[epoch, index] = image
    assert len(got) == 8
    assert all(not torch.equal(got[0, i], got[1, i]) for i in range(4))  # a new epoch draws new augmentation
