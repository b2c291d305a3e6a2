"""Timing and machine description shared by the benchmark scripts.

Every figure is the median of ``iters`` timed calls after ``warmup`` untimed ones; on CUDA the device is
synchronised before and after each call, so a call's time includes all the work it queued.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import torch


def synchronize(device: torch.device) -> None:
    """Wait for all queued work on ``device`` (no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_interleaved(
    fns: Mapping[str, Callable[[], Any]], device: torch.device, warmup: int, iters: int
) -> dict[str, list[float]]:
    """Seconds taken by each call of each function, the functions taking turns call by call.

    Taking turns spreads any change in the machine's load (other processes) over all of them alike, so their
    ratio stays fair. Each gets ``warmup`` untimed calls, then ``iters`` timed ones. When ``torch.compile`` uses
    CUDA graphs, every call starts a new cudagraph step (outputs of the previous call may be overwritten).
    """
    if iters < 1:
        raise ValueError(f"iters must be at least 1, got {iters}")
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(warmup + iters):
        for name, fn in fns.items():
            # Only compiled code runs CUDA graphs, and compiling imports inductor, which marking would import.
            if "torch._inductor" in sys.modules:
                torch.compiler.cudagraph_mark_step_begin()
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return times


def median_ms(times: list[float]) -> float:
    """Median of ``times`` (seconds) in milliseconds."""
    return statistics.median(times) * 1e3


def peak_cpu_memory_bytes(fn: Callable[[], Any]) -> int:
    """Most CPU memory held at once during one call of ``fn`` by what it allocated (its result included).

    Measured with ``torch.profiler`` (``profile_memory=True``): the allocations and frees it records, summed in
    time order, give the running total of the call's tensors; the peak is its maximum.
    """
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    cpu = torch._C._autograd.DeviceType.CPU
    events = prof.profiler.kineto_results.events()
    records = [e for e in events if e.name() == "[memory]" and e.device_type() == cpu]
    total = peak = 0
    for event in sorted(records, key=lambda e: e.start_ns()):
        total += event.nbytes()
        peak = max(peak, total)
    return peak


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (``platform.processor()`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def write_json(record: Mapping[str, Any], path: str) -> None:
    """Write a benchmark record to ``path`` (folders created), one JSON document with a final newline."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")
    print(f"wrote {path}")


def machine_info(device: torch.device) -> dict[str, Any]:
    """Who ran the benchmark: CPU, cores, threads, library versions, GPU name on CUDA, date (UTC)."""
    import torchvision

    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "device": str(device),
        "env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "MKL_NUM_THREADS") if k in os.environ},
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    try:
        info["load_average"] = os.getloadavg()
    except OSError:
        pass
    return info
