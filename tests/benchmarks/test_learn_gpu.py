"""The from-scratch learning benchmark: its budget counts only training iterations, start-up and evaluation are
reported apart, workers never outnumber the CPUs, and it runs end to end on a tiny dataset (so it cannot rot
before a GPU session)."""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import pytest

from benchmarks import learn_gpu

STEP_S = 0.01  # what every fake iteration claims in train_log.csv
STARTUP_S = 0.05  # what every fake train.main spends outside its iterations
EVAL_S = 0.02


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv else None


class FakeRuns:
    """Stand-ins for train.main and eval.main that keep train.py's file formats and take known times."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.train_argvs: list[list[str]] = []
        self.seen_while_running: list[tuple[bool, int]] = []  # (complete, points) of the JSON at each evaluation

    def train(self, argv: list[str]) -> int:
        self.train_argvs.append(list(argv))
        folder, batch = Path(_flag(argv, "--save_folder")), int(_flag(argv, "--batch_size"))
        resume, stop = _flag(argv, "--resume"), int(_flag(argv, "--max_iter"))
        start = int(Path(resume).read_text()) if resume else 0
        folder.mkdir(parents=True, exist_ok=True)
        log = folder / "train_log.csv"
        with open(log, "a", encoding="utf-8") as f:
            if not resume:
                f.write("iter,loss_l,loss_c,loss,lr,img_per_s\n")
            for it in range(start + 1, stop + 1):
                f.write(f"{it},1.0,2.0,3.0,0.001,{batch / STEP_S:.2f}\n")
        time.sleep(STARTUP_S + (stop - start) * STEP_S)
        (folder / "ssd300_VOC_last.ckpt").write_text(str(stop))
        (folder / f"ssd300_VOC_{stop}.pth").write_text(str(stop))
        return 0

    def eval(self, argv: list[str]) -> int:
        iteration = int(Path(_flag(argv, "--trained_model")).read_text())
        if self.out.is_file():
            record = json.loads(self.out.read_text())
            self.seen_while_running.append((record["complete"], len(record["curve"])))
        folder = Path(_flag(argv, "--save_folder"))
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "results.json").write_text(json.dumps({"mAP": iteration / 100}))
        time.sleep(EVAL_S)
        return 0


@pytest.fixture()
def fake(tmp_path, monkeypatch) -> FakeRuns:
    runs = FakeRuns(tmp_path / "learn.json")
    monkeypatch.setattr(learn_gpu.train_script, "main", runs.train)
    monkeypatch.setattr(learn_gpu.eval_script, "main", runs.eval)
    monkeypatch.setattr(learn_gpu, "make_voc_dataset", lambda root, **kwargs: os.makedirs(root))
    monkeypatch.setattr(learn_gpu, "available_cpus", lambda: 3)
    return runs


def _argv(tmp_path: Path, *extra: str) -> list[str]:
    return ["--device", "cpu", "--batch_size", "2", "--work_dir", str(tmp_path / "work"),
            "--out", str(tmp_path / "learn.json"), *extra]  # fmt: skip


def test_the_budget_counts_training_iterations_only(fake, tmp_path) -> None:
    # first segment 5 iterations (0.05 s); then 10 per evaluation interval of 0.1 s, until 0.25 s are trained
    argv = _argv(tmp_path, "--budget_s", "0.25", "--eval_every_s", "0.1", "--first_segment", "5")
    assert learn_gpu.main(argv) == 0
    record = json.loads((tmp_path / "learn.json").read_text())
    assert [p["iter"] for p in record["curve"]] == [5, 15, 25]
    assert [p["mAP"] for p in record["curve"]] == [0.05, 0.15, 0.25]
    assert record["train_s"] == pytest.approx(25 * STEP_S, abs=0.01)
    # the fake runs also sleep through their iterations, so start-up is the wall time outside the logged seconds
    assert STARTUP_S * 3 - 0.01 <= record["startup_s"] < STARTUP_S * 3 + 0.5  # reported to 10 ms
    assert EVAL_S * 3 - 0.01 <= record["eval_s"] < EVAL_S * 3 + 0.5
    parts = record["generate_s"] + record["startup_s"] + record["train_s"] + record["eval_s"]
    assert record["wall_s"] >= parts - 0.03  # each figure is rounded to 10 ms
    assert record["complete"] is True and record["final_mAP"] == 0.25
    # the JSON is written before the first evaluation and after each one
    assert fake.seen_while_running == [(False, 0), (False, 1), (False, 2)]
    resumes = [_flag(a, "--resume") for a in fake.train_argvs]
    assert resumes[0] is None and all(r.endswith("ssd300_VOC_last.ckpt") for r in resumes[1:])


def test_max_wall_s_stops_starting_segments(fake, tmp_path) -> None:
    argv = _argv(tmp_path, "--budget_s", "100", "--eval_every_s", "0.1", "--first_segment", "5", "--max_wall_s", "0.01")
    assert learn_gpu.main(argv) == 0
    record = json.loads((tmp_path / "learn.json").read_text())
    assert [p["iter"] for p in record["curve"]] == [5] and record["complete"] is True


def test_workers_are_capped_at_the_cpus_the_process_may_use(fake, tmp_path) -> None:
    argv = _argv(tmp_path, "--budget_s", "0.01", "--first_segment", "2", "--num_workers", "64")
    assert learn_gpu.main(argv) == 0
    assert {_flag(a, "--num_workers") for a in fake.train_argvs} == {"3"}
    record = json.loads((tmp_path / "learn.json").read_text())
    assert record["num_workers"] == 3 and record["machine"]["cpus_available"] == 3
    counts = (learn_gpu.capped_worker_count(None), learn_gpu.capped_worker_count(2), learn_gpu.capped_worker_count(0))
    assert counts == (1, 2, 0)


def test_next_segment_fits_the_budget_and_the_wall_clock() -> None:
    args = argparse.Namespace(budget_s=10.0, eval_every_s=4.0)
    # 20 iterations per second: up to the next evaluation (4 s), or to the budget's end, at least 10
    assert learn_gpu.next_segment(args, 20.0, train_s=1.0, wall_left=None) == 80
    assert learn_gpu.next_segment(args, 20.0, train_s=8.0, wall_left=None) == 40
    assert learn_gpu.next_segment(args, 2.0, train_s=8.0, wall_left=None) == 10
    assert learn_gpu.next_segment(args, 20.0, train_s=9.8, wall_left=None) == 0  # under a tenth of an interval left
    assert learn_gpu.next_segment(args, 20.0, train_s=1.0, wall_left=1.5) == 30
    assert learn_gpu.next_segment(args, 20.0, train_s=1.0, wall_left=0.3) == 0


def test_device_slug() -> None:
    assert learn_gpu.device_slug("NVIDIA H100 80GB HBM3") == "nvidia_h100_80gb_hbm3"
    assert learn_gpu.device_slug(" Tesla V100-SXM2-16GB ") == "tesla_v100_sxm2_16gb"


@pytest.mark.slow
def test_learn_benchmark_writes_a_curve(tmp_path):
    out = tmp_path / "learn.json"
    argv = ["--device", "cpu", "--budget_s", "1", "--first_segment", "2", "--num_train", "6", "--num_test", "3",
            "--batch_size", "2", "--num_workers", "0", "--work_dir", str(tmp_path / "work"), "--out", str(out),
            "--train_arg=--warmup=0"]  # fmt: skip
    assert learn_gpu.main(argv) == 0
    record = json.loads(out.read_text())
    assert len(record["curve"]) == 1
    point = record["curve"][0]
    assert point["iter"] == 2 and point["train_s"] > 0 and 0.0 <= point["mAP"] <= 1.0
    assert record["generator"]["num_train"] == 6 and "--batch_norm" in record["train_args"]
    assert record["train_s"] > 0 and record["startup_s"] > 0 and record["eval_s"] > 0 and record["complete"]
    assert (tmp_path / "learn.png").is_file()
