"""The test-time path into the network: BaseTransform and preprocess (resize, minus BGR mean, RGB, CHW)."""

from __future__ import annotations

import cv2
import numpy as np
import torch

from data import MEANS, BaseTransform, preprocess


def test_base_transform_classic_numbers() -> None:
    image = np.zeros((50, 80, 3), np.uint8)
    image[:, :40] = (104, 117, 123)
    image[:, 40:] = (204, 17, 3)
    boxes, labels = np.array([[0.1, 0.2, 0.3, 0.4]]), np.array([7])
    out, out_boxes, out_labels = BaseTransform(100, MEANS)(image, boxes, labels)
    assert out.shape == (100, 100, 3) and out.dtype == np.float32
    np.testing.assert_array_equal(out[:, :45], 0.0)  # the mean itself, BGR order
    np.testing.assert_array_equal(out[:, 55:], np.broadcast_to([100.0, -100.0, -120.0], (100, 45, 3)))
    assert out_boxes is boxes and out_labels is labels
    expected = cv2.resize(image, (100, 100)).astype(np.float32) - np.float32(MEANS)  # resized as uint8, as classic
    np.testing.assert_array_equal(out, expected)


def test_preprocess_is_base_transform_in_rgb_chw() -> None:
    image = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    x = preprocess(image, 300)
    assert isinstance(x, torch.Tensor) and x.shape == (3, 300, 300) and x.dtype == torch.float32
    bgr, _, _ = BaseTransform(300, MEANS)(image)
    np.testing.assert_array_equal(x.numpy(), bgr[:, :, ::-1].transpose(2, 0, 1))
    blue = np.zeros((10, 10, 3), np.uint8)
    blue[..., 0] = 255
    np.testing.assert_array_equal(preprocess(blue, 20)[:, 0, 0].numpy(), [-123.0, -117.0, 255.0 - 104.0])


def test_preprocess_accepts_gray_and_bgra() -> None:
    assert preprocess(np.full((20, 30), 117, np.uint8), 64).shape == (3, 64, 64)
    bgra = np.dstack([np.full((20, 30, 3), 9, np.uint8), np.zeros((20, 30), np.uint8)])
    np.testing.assert_array_equal(preprocess(bgra, 16), preprocess(bgra[:, :, :3], 16))
