"""benchmarks/bench_data.py: the training stream's rate against a training throughput, with tiny counts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import bench_data


def _bench_json(path: Path, date: str, device: str, rows: list[dict]) -> None:
    path.write_text(json.dumps({"machine": {"date": date, "device": device}, "results": rows}))


def test_a_tiny_run_sets_the_loader_against_the_given_training_rate(tmp_path: Path) -> None:
    out = tmp_path / "data.json"
    tiny = "--workers 0 --default_workers 0 --images 4 --batch_size 2 --warmup 0 --batches 2 --repeats 1"
    result = bench_data.main([*tiny.split(), "--train_img_per_s", "2.5", "--out", str(out)])
    assert json.loads(out.read_text())["results"] == result["results"]
    (row,) = result["results"]
    assert row["workers"] == 0 and row["images_per_window"] == 4 and row["images_per_s"] > 0
    assert row["ratio_to_training"] == round(row["images_per_s"] / 2.5, 3)
    assert result["default_workers_feed_training"] == (row["ratio_to_training"] >= 1.0)
    assert result["train_img_per_s"] == 2.5 and result["train_img_per_s_source"] == "--train_img_per_s"


def test_the_default_training_rate_is_the_newest_bench_train_figure(tmp_path: Path) -> None:
    old_rows = [{"case": "train", "impl": "ours", "batch": 8, "img_per_s": 1.5}]
    _bench_json(tmp_path / "old.json", "2026-01-01T00:00:00Z", "cpu", old_rows)
    new_rows = [
        {"case": "train", "impl": "ours", "batch": 1, "img_per_s": 40.0},
        {"case": "train", "impl": "ours", "batch": 32, "img_per_s": 310.0},
        {"case": "train", "impl": "torchvision", "batch": 32, "img_per_s": 999.0},
        {"case": "loss", "impl": "ours", "batch": 64, "img_per_s": 5000.0},
    ]
    _bench_json(tmp_path / "new.json", "2026-06-01T00:00:00Z", "cuda:0", new_rows)
    (tmp_path / "data.json").write_text(json.dumps({"results": [{"workers": 4, "images_per_s": 80.0}]}))
    (tmp_path / "broken.json").write_text("{")
    rate, where = bench_data.latest_train_rate(str(tmp_path))
    assert rate == 310.0 and "new.json" in where and "batch 32" in where and "cuda:0" in where
    (tmp_path / "new.json").unlink()
    assert bench_data.latest_train_rate(str(tmp_path))[0] == 1.5


def test_without_a_figure_or_the_flag_the_script_says_what_to_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(bench_data, "RESULTS", str(tmp_path))
    assert bench_data.latest_train_rate() is None
    with pytest.raises(SystemExit) as info:
        bench_data.main(["--workers", "0", "--images", "4", "--batch_size", "2"])
    assert info.value.code == 2
    assert "pass --train_img_per_s" in capsys.readouterr().err
