"""A resumable training data stream: the batch of every iteration is a pure function of (seed, iteration).

Iteration ``i`` reads epoch ``e = i // B`` (``B`` batches per epoch and rank) at position ``i % B``, all from one
DataLoader whose sampler runs on across epochs. The order of
epoch ``e`` is the permutation that ``DistributedSampler(seed=seed)`` gives after ``set_epoch(e)`` (each rank
takes its shard), and the augmentation of image ``index`` in epoch ``e`` draws from
``numpy.random.default_rng([seed, e, index])``. So a run resumed at iteration ``k`` sees exactly the batches an
uninterrupted run sees from ``k`` on -- with or without DataLoader workers, and without replaying anything.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from data.common import Transform


class SeededTransform:
    """A dataset transform whose random draws are reseeded from ``(seed, epoch, index)`` before each image.

    Args:
        make: builds the transform from a ``numpy.random.Generator`` (e.g. ``partial(SSDAugmentation, 300, MEANS)``
            called as ``make(rng=...)``).
        seed: the run's seed.
    """

    def __init__(self, make: Callable[..., Transform], seed: int) -> None:
        self.make = make
        self.seed = int(seed)
        self._transform: Transform | None = None

    def reseed(self, epoch: int, index: int) -> None:
        self._transform = self.make(rng=np.random.default_rng([self.seed, int(epoch), int(index)]))

    def __call__(self, img: np.ndarray, boxes: np.ndarray, labels: np.ndarray) -> Any:
        if self._transform is None:
            raise RuntimeError("SeededTransform used before reseed(epoch, index)")
        return self._transform(img, boxes, labels)


class EpochIndexedDataset(Dataset):
    """Wraps a dataset whose ``transform`` is a :class:`SeededTransform`; items are keyed by ``(epoch, index)``."""

    def __init__(self, base: Any, transform: SeededTransform) -> None:
        self.base = base
        self.transform = transform

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        self.transform.reseed(epoch, index)
        return self.base[index]


class EpochBatchSampler:
    """The batches of ``(epoch, index)`` keys of one epoch on one rank, from batch ``start_batch`` on.

    Every rank gets ``len // world_size`` images per epoch (the tail is dropped, as ``DistributedSampler`` with
    ``drop_last=True`` does) in ``batches_per_epoch`` full batches; the last partial batch is dropped too, so every
    step sees ``batch_size`` images.
    """

    def __init__(
        self,
        dataset_len: int,
        batch_size: int,
        seed: int,
        epoch: int,
        rank: int = 0,
        world_size: int = 1,
        start_batch: int = 0,
    ) -> None:
        self.sampler = DistributedSampler(
            range(dataset_len), num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
        self.sampler.set_epoch(epoch)
        self.epoch = epoch
        self.batch_size = batch_size
        self.start_batch = start_batch

    def __len__(self) -> int:
        return len(self.sampler) // self.batch_size - self.start_batch

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = list(self.sampler)
        for b in range(self.start_batch, len(order) // self.batch_size):
            yield [(self.epoch, i) for i in order[b * self.batch_size : (b + 1) * self.batch_size]]


def check_batches_per_epoch(dataset_len: int, batch_size: int, world_size: int = 1) -> int:
    """:func:`batches_per_epoch`, or a ValueError (a user error) when the dataset holds less than one batch."""
    per_epoch = batches_per_epoch(dataset_len, batch_size, world_size)
    if per_epoch == 0:
        raise ValueError(
            f"the dataset has {dataset_len} images, fewer than one batch of {batch_size * world_size}: "
            "lower --batch_size or add images"
        )
    return per_epoch


def batches_per_epoch(dataset_len: int, batch_size: int, world_size: int = 1) -> int:
    """Full batches per epoch on each rank (0 when the dataset is smaller than one global batch)."""
    return (dataset_len // world_size) // batch_size


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed the global Python and NumPy RNGs of a worker from its torch seed.

    The augmentation does not use them (it reseeds per image), but anything else that does stays reproducible.
    """
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)  # noqa: NPY002 - the legacy global RNG is what stray code would use
    random.seed(seed)


class RunBatchSampler:
    """The batches of ``(epoch, index)`` keys of every iteration from ``start_iter`` on, across epochs, forever.

    Iteration ``i`` is batch ``i % B`` of epoch ``i // B`` (``B`` = batches per epoch and rank), in the order of
    :class:`EpochBatchSampler`: one DataLoader serves the whole run and its workers never restart.
    """

    def __init__(
        self, dataset_len: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1, start_iter: int = 0
    ) -> None:
        self.per_epoch = check_batches_per_epoch(dataset_len, batch_size, world_size)
        self.dataset_len, self.batch_size, self.seed = dataset_len, batch_size, seed
        self.rank, self.world_size, self.start_iter = rank, world_size, start_iter

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        epoch, position = divmod(self.start_iter, self.per_epoch)
        while True:
            args = (self.dataset_len, self.batch_size, self.seed, epoch, self.rank, self.world_size, position)
            yield from EpochBatchSampler(*args)
            epoch, position = epoch + 1, 0


def iterate_batches(
    dataset: EpochIndexedDataset,
    *,
    start_iter: int,
    batch_size: int,
    seed: int,
    collate_fn: Callable[[list[Any]], Any],
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    pin_memory: bool = False,
) -> Iterator[Any]:
    """Yield the batches of iterations ``start_iter, start_iter + 1, ...`` forever, from one DataLoader.

    ``batch_size`` is the per-rank batch. Close the iterator (``.close()``) to stop the workers.
    """
    sampler = RunBatchSampler(len(dataset), batch_size, seed, rank, world_size, start_iter)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        num_workers=num_workers,
        collate_fn=collate_fn,
        pin_memory=pin_memory,
        worker_init_fn=seed_worker,
        # Worker seeds come from this generator, not from the global torch RNG, which stays untouched.
        generator=torch.Generator().manual_seed(seed),
        prefetch_factor=4 if num_workers > 0 else None,
    )
    yield from loader
