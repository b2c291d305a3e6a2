"""Fine-tuning against training from scratch: the light model on the CPU, same seed, same iterations.

    python benchmarks/bench_finetune.py --out benchmarks/results/finetune_cpu.json

Through the real code paths (``data.synthetic``, ``train.main``, ``eval.main``):
1. a source dataset of some synthetic classes (``--source_classes``); an SSDLite320-MobileNetV3 trained on it
   from scratch for ``--source_iters`` iterations (``train.py --backbone mobilenet_v3_large``), scored on its test
   split;
2. a target dataset (another seed) of ``--target_classes``: some of the source's classes and a class it never saw;
3. ``train.py --finetune SOURCE`` on the target for ``--iters`` iterations, and ``train.py --backbone
   mobilenet_v3_large`` from scratch with the same seed, flags and iterations;
4. VOC07 mAP (and AP per class) on the target's test split of: the fine-tune's starting point (the source's
   rows for the shared classes, the new class freshly initialised, before any step), the fine-tuned model, the
   model trained from scratch.
Both target runs take the same solver flags (``--lr``, ``--warmup``; the cosine schedule of the light model's
recipe). Torch runs on ``--threads`` threads (default 1: on a small shared machine more threads only contend),
without DataLoader workers. Writes the JSON (figures, seconds of each phase, settings, machine).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a file: the repository's packages import

import train as train_script  # noqa: E402
from benchmarks.learn_gpu import run_eval, run_train  # noqa: E402
from benchmarks.timing import add_common_flags, machine_info, torch_threads, write_json  # noqa: E402
from data.synthetic import make_voc_dataset  # noqa: E402
from utils.checkpoint import build_from_facts, write_sidecar  # noqa: E402
from utils.training.engine import weights_stem  # noqa: E402
from utils.training.finetune import apply_finetune, finetune_facts, plan_finetune, read_source  # noqa: E402
from utils.training.setup import finetune_source, model_facts  # noqa: E402

ARCHITECTURE = "mobilenet_v3_large"
# Large objects, one or two a picture, none difficult: a task the light model starts to learn within minutes of CPU.
EASY_DATA = {"min_size": 300, "max_size": 400, "scale_range": (0.3, 0.9), "max_objects": 2, "empty_prob": 0.0,
             "difficult_prob": 0.0}  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source_classes", default="car,boat,sheep,bottle,person")
    p.add_argument("--target_classes", default="car,sheep,tvmonitor", help="some source classes and a new one")
    p.add_argument("--source_iters", type=int, default=150)
    p.add_argument("--iters", type=int, default=40, help="iterations of the fine-tune and of the run from scratch")
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--num_train", type=int, default=96, help="training pictures of each dataset")
    p.add_argument("--num_test", type=int, default=32, help="test pictures of each dataset")
    p.add_argument("--work_dir", default=None, help="where the datasets and runs go (default: a temporary folder)")
    add_common_flags(p, out=os.path.join("benchmarks", "results", "finetune_cpu.json"), threads=1)
    return p


def write_classes(path: str, names: Sequence[str]) -> str:
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(names) + "\n")
    return path


def make_data(root: str, classes: Sequence[str], seed: int, args: argparse.Namespace) -> str:
    return make_voc_dataset(root, args.num_train, args.num_test, seed, classes=tuple(classes), **EASY_DATA)


def trained_weights(argv: Sequence[str], classes: Sequence[str]) -> str:
    """The ``.pth`` that ``train.main(argv)`` writes at its last iteration: ``SAVE_FOLDER/{stem}_{max_iter}.pth``,
    the stem of the model facts train.py finds for ``argv`` and ``classes`` (the same way)."""
    args = train_script.build_parser().parse_args(list(argv))
    source = finetune_source(args)
    facts = model_facts(train_script.resolve_defaults(args), classes, source)
    return os.path.join(args.save_folder, f"{weights_stem(facts)}_{args.max_iter}.pth")


def evaluate(model: str, voc_root: str, folder: str) -> dict[str, Any]:
    """VOC07 mAP and AP per class of ``model`` on ``voc_root``'s test split, with the seconds it took."""
    start = time.perf_counter()
    results = run_eval(model, voc_root, folder, "--image_sets", "2007:test", "--cuda", "false", "--analysis", "false")
    return {"mAP": results["mAP"], "ap": results["ap"], "eval_s": round(time.perf_counter() - start, 1)}


def starting_point(source: str, classes: Sequence[str], path: str) -> str:
    """The fine-tune's model before its first step (the weights ``train.py --finetune`` starts from), saved with
    its sidecar at ``path``."""
    src = read_source(source)
    facts = finetune_facts(src, classes, "VOC")
    net = build_from_facts(facts, "train")
    apply_finetune(net, plan_finetune(src, facts))
    torch.save(net.state_dict(), path)
    write_sidecar(path, facts, net.state_dict())
    return path


def run(args: argparse.Namespace, work: str) -> dict[str, Any]:
    source_classes = [c.strip() for c in args.source_classes.split(",") if c.strip()]
    target_classes = [c.strip() for c in args.target_classes.split(",") if c.strip()]
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    source_root = make_data(os.path.join(work, "source_data"), source_classes, 1, args)
    target_root = make_data(os.path.join(work, "target_data"), target_classes, 2, args)
    seconds["generate"] = time.perf_counter() - start
    common = ["--image_sets", "2007:trainval", "--batch_size", str(args.batch_size), "--num_workers", "0",
              "--cuda", "false", "--seed", str(args.seed), "--log_every", "10", "--warmup", str(args.warmup),
              "--lr", str(args.lr)]  # fmt: skip
    lite = ["--backbone", ARCHITECTURE]

    source_classes_file = write_classes(os.path.join(work, "source_classes.txt"), source_classes)
    source_argv = [*common, *lite, "--dataset_root", source_root, "--classes", source_classes_file,
                   "--max_iter", str(args.source_iters), "--save_folder", os.path.join(work, "source")]  # fmt: skip
    seconds["source_train"] = run_train(source_argv)
    source = trained_weights(source_argv, source_classes)
    source_eval = evaluate(source, source_root, os.path.join(work, "eval_source"))

    target_classes_file = write_classes(os.path.join(work, "target_classes.txt"), target_classes)
    target = [*common, "--dataset_root", target_root, "--classes", target_classes_file, "--max_iter", str(args.iters)]
    start_eval = evaluate(starting_point(source, target_classes, os.path.join(work, "start.pth")), target_root,
                          os.path.join(work, "eval_start"))  # fmt: skip
    results = {}
    for name, extra in (("finetune", ["--finetune", source]), ("scratch", lite)):
        argv = [*target, *extra, "--save_folder", os.path.join(work, name)]
        seconds[f"{name}_train"] = run_train(argv)
        results[name] = evaluate(trained_weights(argv, target_classes), target_root, os.path.join(work, f"eval_{name}"))
    return {
        "source": {"classes": source_classes, "iterations": args.source_iters, **source_eval},
        "target": {"classes": target_classes, "new": [c for c in target_classes if c not in source_classes]},
        "finetune_start": start_eval,
        **results,
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    with torch_threads(args.threads):
        if args.work_dir:
            os.makedirs(args.work_dir, exist_ok=True)
            figures = run(args, args.work_dir)
        else:
            with tempfile.TemporaryDirectory(prefix="bench_finetune_") as work:
                figures = run(args, work)
        machine = machine_info(torch.device("cpu"))
    record = {
        "what": "SSDLite320-MobileNetV3 fine-tuned from a model of other classes vs trained from scratch, same seed, "
        "flags and iterations; VOC07 mAP on the target's synthetic test split",
        "machine": machine,
        "settings": {**vars(args), "data": {**EASY_DATA, "source_seed": 1, "target_seed": 2}},
        **figures,
        "wall_s": round(time.perf_counter() - started, 1),
        "notes": list(args.note),
    }
    write_json(record, args.out)
    for name in ("finetune_start", "finetune", "scratch"):
        print(f"{name}: mAP {record[name]['mAP']:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
