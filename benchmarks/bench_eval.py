"""What eval.py costs beyond the network: the wall time of ``eval.main`` against the network's own forward time on
the same pictures, with an untrained SSD300 (every class of most priors above 0.01: the worst case for
post-processing, the metric and the error analysis), and what its error analysis (``--analysis``, on by default)
adds to it: ``eval.main`` with ``--analysis false`` timed in the same turns.

    python benchmarks/bench_eval.py --num_images 50 --out benchmarks/results/eval_cpu_<date>.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repository's packages import

from benchmarks.repo import load_script  # noqa: E402
from benchmarks.timing import add_common_flags, machine_info, time_interleaved, write_json  # noqa: E402
from data import VOC_CLASSES, get_config  # noqa: E402
from data.synthetic import make_voc_dataset  # noqa: E402
from data.transforms import preprocess  # noqa: E402
from ssd import build_ssd  # noqa: E402
from utils.checkpoint import ModelFacts, write_sidecar  # noqa: E402

CPU = torch.device("cpu")


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description="eval.py wall time against the network's forward time")
    parser.add_argument("--num_images", type=int, default=20)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2, help="turns of each (the fastest is reported)")
    add_common_flags(parser, ("out", "note", "seed"))
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as work:
        root = make_voc_dataset(os.path.join(work, "voc"), num_train=0, num_test=args.num_images, seed=args.seed)
        torch.manual_seed(args.seed)
        cfg = get_config("VOC", 300)
        net = build_ssd("test", 300, 21, cfg).eval()
        weights = os.path.join(work, "ssd300_VOC_0.pth")
        torch.save(net.state_dict(), weights)
        write_sidecar(weights, ModelFacts(300, False, tuple(VOC_CLASSES), cfg, "VOC"))
        pictures = sorted(Path(root, "VOC2007", "JPEGImages").glob("*.jpg"))
        x = torch.stack([preprocess(cv2.imread(str(p)), 300) for p in pictures])
        with torch.no_grad():
            net.predict(x[: args.batch_size])  # warm-up

        @torch.no_grad()
        def forward() -> None:
            for i in range(0, len(x), args.batch_size):
                net.predict(x[i : i + args.batch_size])

        ev = load_script("eval")
        argv_eval = ["--trained_model", weights, "--dataset_root", root, "--save_folder", os.path.join(work, "eval")]
        argv_eval += ["--batch_size", str(args.batch_size), "--cuda", "false"]
        # the analysis's own time, read inside the call: the difference of two whole calls is noisier
        analysis_times: list[float] = []
        analyse_split, analysis_figures = ev.analyse_split, ev.analysis_figures

        def timed(work: Callable[..., Any]) -> Callable[..., Any]:
            def run(*a: Any, **k: Any) -> Any:
                start = time.perf_counter()
                try:
                    return work(*a, **k)
                finally:
                    analysis_times[-1] += time.perf_counter() - start

            return run

        ev.analyse_split = timed(analyse_split)
        ev.analysis_figures = lambda found: [(name, timed(draw)) for name, draw in analysis_figures(found)]

        def run_eval(extra: list[str]) -> None:
            analysis_times.append(0.0)
            ev.main(argv_eval + extra)

        # the three take turns, so that a change in the machine's load falls on all alike
        turns = {"forward": forward, "plain": lambda: run_eval(["--analysis", "false"]), "main": lambda: run_eval([])}
        try:
            times = time_interleaved(turns, CPU, warmup=0, iters=args.repeats)
        finally:  # the module is the one every load_script("eval") of this process gets
            ev.analyse_split, ev.analysis_figures = analyse_split, analysis_figures
        forward_times, main_times, plain_times = times["forward"], times["main"], times["plain"]
        forward_s, main_s, plain_s = min(forward_times), min(main_times), min(plain_times)
        analysis_times = [t for t in analysis_times if t > 0]  # the --analysis false turns read none
        results = json.loads(Path(work, "eval", "results.json").read_text())

    report = {
        "machine": machine_info(CPU),
        "num_images": args.num_images,
        "batch_size": args.batch_size,
        "network_forward_s": round(forward_s, 3),
        "eval_main_s": round(main_s, 3),
        "network_forward_s_each": [round(t, 3) for t in forward_times],
        "eval_main_s_each": [round(t, 3) for t in main_times],
        "ratio_main_to_forward": round(main_s / forward_s, 3),
        "eval_main_no_analysis_s": round(plain_s, 3),
        "eval_main_no_analysis_s_each": [round(t, 3) for t in plain_times],
        "analysis_share": round(main_s / plain_s - 1.0, 3),
        "analysis_s_each": [round(t, 3) for t in analysis_times],
        "analysis_share_inside": round(max(a / (m - a) for a, m in zip(analysis_times, main_times)), 3),
        "untrained_mAP": results["mAP"],
        "notes": [
            "eval_main_s is the whole eval.main call: reading pictures and annotations, the network, Detect, the "
            "devkit metric, the error analysis and writing results.json, pr_curves.png, errors.png, confusion.png "
            "and worst.jpg; network_forward_s is the raw network alone.",
            "eval_main_no_analysis_s is the same call with --analysis false; analysis_share = eval_main_s / "
            "eval_main_no_analysis_s - 1, the time the analysis adds.",
            "analysis_s_each: the analysis timed inside each eval.main call (analysis, worst.jpg, errors.png, "
            "confusion.png); analysis_share_inside = the largest over the turns of analysis_s / (that call's time "
            "- analysis_s), immune to the load changing between calls.",
            *args.note,
        ],
    }
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=2))
    if args.out:
        write_json(report, args.out)
    return report


if __name__ == "__main__":
    main()
