"""Where a training process runs (its DDP rank and device), the seed the ranks share, signals, worker counts."""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist

from utils.cli import available_cpus


@dataclass
class Runtime:
    """Where this process runs: its rank among ``world_size`` processes and its device."""

    device: torch.device
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_runtime(cuda: bool) -> Runtime:
    """Join the process group when launched by torchrun (RANK/WORLD_SIZE set): NCCL on CUDA, gloo on the CPU."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if cuda:
        torch.cuda.set_device(local_rank)
        torch.backends.cudnn.benchmark = True  # fixed input size: let cuDNN pick the fastest kernels once
        device = torch.device("cuda", local_rank)
    else:
        device = torch.device("cpu")
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo", rank=rank, world_size=world_size)
    return Runtime(device=device, rank=rank, world_size=world_size, local_rank=local_rank)


def shared_seed(seed: int | None, rt: Runtime) -> int:
    """``seed``, or one drawn on rank 0 and shared, so every rank shuffles the same way."""
    value = [seed if seed is not None else int.from_bytes(os.urandom(4), "little") >> 1]
    if rt.distributed:
        dist.broadcast_object_list(value, src=0)
    return int(value[0])


class StopRequest:
    """Turns SIGINT/SIGTERM into a flag the loop checks after each step; a second signal interrupts at once."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt
        self.signum = signum


def worker_count(requested: int | str) -> int:
    """DataLoader workers per process: ``requested``, or for ``"auto"`` the CPUs this process may use shared by the
    processes of this machine (``LOCAL_WORLD_SIZE`` under torchrun), one left to each main process."""
    if requested != "auto":
        return int(requested)
    local_ranks = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    return max(0, available_cpus() // local_ranks - 1)
