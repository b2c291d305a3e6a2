"""What the benchmark scripts share: timing, the machine's description, the flags they spell alike, the JSON.

Every figure is the median of ``iters`` timed calls after ``warmup`` untimed ones; on CUDA the device is
synchronised before and after each call, so a call's time includes all the work it queued.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

from utils.training.state import atomic_write_text

COMMON_FLAGS = ("out", "note", "seed", "threads")


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


def add_common_flags(
    parser: argparse.ArgumentParser,
    flags: Sequence[str] = COMMON_FLAGS,
    out: str | None = None,
    threads: int | None = None,
) -> None:
    """Add the flags the scripts share, spelt alike (``flags``: those of ``COMMON_FLAGS`` the script takes):
    ``--out`` (the JSON to write, default ``out``), ``--note`` (a line for the JSON's ``notes``, repeatable),
    ``--seed`` (default 0) and ``--threads`` (torch's intra-op threads, default ``threads``; None: torch's choice)."""
    if "out" in flags:
        parser.add_argument("--out", default=out, help=f"JSON file to write (default: {out or 'none, print only'})")
    if "note" in flags:
        parser.add_argument("--note", action="append", default=[], help="a line for the JSON's notes (repeatable)")
    if "seed" in flags:
        parser.add_argument("--seed", type=int, default=0)
    if "threads" in flags:
        default = threads or "torch's choice"
        help_threads = f"torch intra-op threads, and onnxruntime's where it runs (default: {default})"
        parser.add_argument("--threads", type=int, default=threads, help=help_threads)


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """torch's intra-op threads set to ``threads`` (None or 0: left as they are) for the block, restored after."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def median_img_per_s(log_csv: str | os.PathLike[str], skip: int) -> float:
    """Median training throughput in a ``train_log.csv`` (its ``img_per_s`` column) after the first ``skip`` rows
    (warm-up); 0.0 when the file or the rows are missing."""
    if not os.path.isfile(log_csv):
        return 0.0
    with open(log_csv, encoding="utf-8") as f:
        rates = [float(row["img_per_s"]) for row in csv.DictReader(f)][skip:]
    return statistics.median(rates) if rates else 0.0


def write_json(record: Mapping[str, Any], path: str) -> None:
    """Write a benchmark record to ``path`` (folders created), one JSON document with a final newline, atomically:
    a script that writes its record as it goes and is cut short leaves the last complete one."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
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
