"""Latency of the exported model (network + decoding + softmax) in onnxruntime (CPU) beside PyTorch (CPU).

    python benchmarks/bench_onnx.py [--batch_sizes 1,8] [--warmup 1] [--iters 5] [--threads N]

``benchmarks/bench.py --device cpu`` runs the same measurement into its JSON (case "onnx"). Both run the very
graph ``utils.export`` writes (``decoded``), fp32, on the same seeded batch, with the same thread count.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repository's packages import

from benchmarks.timing import add_common_flags, median_ms, time_interleaved, torch_threads  # noqa: E402
from data.config import get_config  # noqa: E402
from ssd import build_ssd  # noqa: E402
from utils.export import decoded, export_onnx, onnx_session, run_onnx  # noqa: E402


def onnx_fns(net: nn.Module, session: Any, x: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """PyTorch (``decoded(net)``, float32, CPU) and onnxruntime on the same input x (Tensor[B, 3, S, S])."""
    model = decoded(net).eval()
    x_numpy = x.numpy()

    @torch.inference_mode()
    def run_torch() -> Any:
        return model(x)

    return {"ours": run_torch, "onnxruntime": lambda: run_onnx(session, x_numpy)}


def exported_session(net: nn.Module, folder: str) -> Any:
    """Export ``net`` into ``folder`` and open an onnxruntime session on as many threads as torch uses."""
    path = export_onnx(net.cpu(), os.path.join(folder, "ssd.onnx"))
    return onnx_session(path, threads=torch.get_num_threads())


def max_abs_diff(net: nn.Module, session: Any, x: torch.Tensor) -> tuple[float, float]:
    """(boxes, scores) max abs difference between onnxruntime and PyTorch on x (Tensor[B, 3, S, S])."""
    with torch.inference_mode():
        boxes, scores = decoded(net).eval()(x)
    ort_boxes, ort_scores = run_onnx(session, x.numpy())
    return float(np.abs(ort_boxes - boxes.numpy()).max()), float(np.abs(ort_scores - scores.numpy()).max())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch_sizes", default="1,8")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=5)
    add_common_flags(parser, ("seed", "threads"))
    args = parser.parse_args(argv)

    torch.manual_seed(args.seed)
    net = build_ssd("test", 300, 21, get_config("VOC", 300)).eval()
    with torch_threads(args.threads), tempfile.TemporaryDirectory() as folder:
        session = exported_session(net, folder)
        for batch in (int(b) for b in args.batch_sizes.split(",")):
            x = torch.rand(batch, 3, net.size, net.size) * 255 - 128
            times = time_interleaved(onnx_fns(net, session, x), torch.device("cpu"), args.warmup, args.iters)
            line = ", ".join(f"{name} {median_ms(t):.1f} ms" for name, t in times.items())
            print(f"batch {batch}: {line}; max abs diff boxes/scores {max_abs_diff(net, session, x)}")


if __name__ == "__main__":
    main()
