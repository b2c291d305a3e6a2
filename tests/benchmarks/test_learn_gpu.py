"""The from-scratch learning benchmark runs end to end on a tiny dataset, so it cannot rot before a GPU session."""

from __future__ import annotations

import json

import pytest

from benchmarks import learn_gpu


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
    assert (tmp_path / "learn.png").is_file()
