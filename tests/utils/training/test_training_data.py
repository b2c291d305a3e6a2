"""The resumable data stream: every iteration's batch is a pure function of (seed, iteration)."""

from __future__ import annotations

from functools import partial
from itertools import islice

import numpy as np
import pytest
import torch

from utils.training.data import (
    EpochBatchSampler,
    EpochIndexedDataset,
    SeededTransform,
    batches_per_epoch,
    iterate_batches,
)


class _Jitter:
    """Stands in for SSDAugmentation: draws from its rng."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def __call__(self, img, boxes, labels):
        return img + self.rng.random(), boxes, labels


class _Images:
    """Image ``i`` is the constant ``i``; the transform adds its random draw."""

    def __init__(self, n: int, transform: SeededTransform) -> None:
        self.n = n
        self.transform = transform

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        img, _, _ = self.transform(np.full(1, float(i)), np.zeros((0, 4)), np.zeros(0))
        return torch.from_numpy(img), i


def _collate(batch):
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


def _dataset(n: int = 10, seed: int = 5) -> EpochIndexedDataset:
    transform = SeededTransform(partial(_Jitter), seed)
    return EpochIndexedDataset(_Images(n, transform), transform)


def _stream(start: int, count: int, num_workers: int = 0, **kwargs) -> list[tuple[torch.Tensor, list[int]]]:
    options = {"batch_size": 3, "seed": 5, "collate_fn": _collate, "num_workers": num_workers, **kwargs}
    return list(islice(iterate_batches(_dataset(), start_iter=start, **options), count))


def _same(a, b) -> bool:
    return all(torch.equal(x[0], y[0]) and x[1] == y[1] for x, y in zip(a, b, strict=True))


def test_epochs_are_permutations_that_depend_on_seed_and_epoch() -> None:
    def order(seed: int, epoch: int) -> list[int]:
        return [i for batch in EpochBatchSampler(10, 5, seed, epoch) for _, i in batch]

    assert sorted(order(0, 0)) == list(range(10))
    assert order(0, 0) == order(0, 0)
    assert order(0, 0) != order(0, 1)
    assert order(0, 0) != order(1, 0)


def test_ranks_get_disjoint_shards_of_the_same_permutation() -> None:
    shards = [[i for b in EpochBatchSampler(10, 2, 3, 0, rank=r, world_size=2) for _, i in b] for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 4
    assert not set(shards[0]) & set(shards[1])


def test_batches_per_epoch_drops_the_partial_batch() -> None:
    assert batches_per_epoch(10, 3) == 3
    assert batches_per_epoch(10, 3, world_size=2) == 1
    assert batches_per_epoch(2, 3) == 0


@pytest.mark.parametrize("num_workers", [0, 2])
def test_a_stream_started_at_k_equals_the_tail_of_a_stream_started_at_0(num_workers: int) -> None:
    full = _stream(0, 8, num_workers)  # 3 batches per epoch: crosses two epoch boundaries
    assert _same(_stream(4, 4, num_workers), full[4:])
    assert not torch.equal(full[0][0], full[3][0])


def test_augmentation_depends_on_epoch_and_image_not_on_the_worker() -> None:
    assert _same(_stream(0, 6, num_workers=0), _stream(0, 6, num_workers=2))
    (images, indices), *_ = _stream(0, 1)
    later = [b for b in _stream(3, 3) if indices[0] in b[1]][0]  # the same image, one epoch later
    first = images[0]
    again = later[0][later[1].index(indices[0])]
    assert not torch.equal(first, again)  # a new epoch draws new augmentation


def test_a_dataset_smaller_than_a_batch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="fewer than one batch"):
        next(iterate_batches(_dataset(n=2), start_iter=0, batch_size=3, seed=0, collate_fn=_collate))
