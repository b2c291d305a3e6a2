"""Where a training process runs (its DDP rank and device) and how the ranks agree: seed, stop, parameters."""

from __future__ import annotations

import hashlib
import os
import signal
import threading
from dataclasses import dataclass
from types import FrameType
from typing import Any

import torch
import torch.distributed as dist
from torch import nn


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


def stop_agreed(rt: Runtime, requested: bool) -> bool:
    """True when a stop was requested on any rank (a signal may reach only some of them)."""
    if not rt.distributed:
        return requested
    flag = torch.tensor([1.0 if requested else 0.0], device=rt.device)
    dist.all_reduce(flag)
    return bool(flag.item() > 0)


def parameter_digest(net: nn.Module) -> str:
    """SHA-256 of every state_dict tensor's bytes (to show that DDP ranks hold identical models)."""
    h = hashlib.sha256()
    for key, value in sorted(net.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().to("cpu").contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()
