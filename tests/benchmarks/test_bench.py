"""The speed benchmark's pieces run and agree with the library; the whole script runs with tiny counts."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import bench, bench_data
from benchmarks import workloads as W
from benchmarks.timing import median_ms, time_interleaved

CPU = torch.device("cpu")


def test_targets_have_one_to_ten_valid_boxes_and_convert_to_torchvision() -> None:
    targets = W.make_targets(20, CPU, seed=3)
    assert all(1 <= len(t) <= 10 for t in targets)
    boxes = torch.cat(targets)
    assert (boxes[:, 2:4] > boxes[:, :2]).all() and boxes[:, :4].min() >= 0 and boxes[:, :4].max() <= 1
    assert boxes[:, 4].min() >= 0 and boxes[:, 4].max() <= 19
    tv = W.torchvision_targets(targets)
    torch.testing.assert_close(tv[0]["boxes"], targets[0][:, :4] * 300)
    assert tv[0]["labels"].dtype == torch.int64 and tv[0]["labels"].min() >= 1


def test_background_shift_hits_the_candidate_target() -> None:
    logits = 0.3 * torch.randn(2, 8732, 21, generator=torch.Generator().manual_seed(0))
    assert W.candidates_per_image(logits) > 8732 * 19  # near-uniform softmax: almost everything passes 0.01
    shift = W.background_shift_for(logits, 150.0)
    assert shift > 0
    assert 140 <= W.candidates_per_image(logits, shift) <= 160


def test_calibrate_background_moves_only_background_biases() -> None:
    net = W.build_ours("test", W.Settings(CPU))
    before = [conv.bias.clone() for conv in W.conf_convs(net)]
    logits = torch.randn(1, 8732, 21, generator=torch.Generator().manual_seed(0))
    shift = W.calibrate_background(net, logits, 100.0)
    for conv, old in zip(W.conf_convs(net), before):
        delta = conv.bias - old
        torch.testing.assert_close(delta[0::21], torch.full_like(delta[0::21], shift))
        mask = torch.ones_like(delta, dtype=torch.bool)
        mask[0::21] = False
        assert (delta[mask] == 0).all()


@pytest.mark.parametrize("make", ["match", "loss"])
def test_light_cases_run_for_every_implementation(make: str) -> None:
    settings = W.Settings(CPU)
    tv = W.build_torchvision(True, settings)
    images, targets = W.make_images(2, CPU), W.make_targets(2, CPU)
    priors = W.default_priors(CPU)
    fns = W.match_fns(tv, priors, images, targets) if make == "match" else W.loss_fns(tv, priors, images, targets)
    times = time_interleaved(fns, CPU, warmup=0, iters=1)
    assert set(times) == ({"ours", "torchvision"} | ({"classic"} if make == "loss" else set()))
    assert all(median_ms(t) > 0 for t in times.values())


def test_ratios_table_and_targets_from_records() -> None:
    records = [
        {"case": "end_to_end", "batch": 8, "impl": "ours", "median_ms": 100.0, "img_per_s": 80.0},
        {"case": "end_to_end", "batch": 8, "impl": "torchvision", "median_ms": 110.0, "img_per_s": 72.7},
        {"case": "loss", "batch": 8, "impl": "ours", "median_ms": 5.0, "img_per_s": 1600.0},
        {"case": "loss", "batch": 8, "impl": "classic", "median_ms": 20.0, "img_per_s": 400.0},
    ]
    ratios = {(r["case"], r["versus"]): r["ours_speedup"] for r in bench.ratios(records)}
    assert ratios == {("end_to_end", "torchvision"): 1.1, ("loss", "classic"): 4.0}
    checks = bench.check_targets(records, "cpu")
    assert [c["met"] for c in checks] == [True, True]
    assert "1.10x" in bench.format_table(records)
    row = "| loss | 8 | 5.0 | 1600.0 | classic | 20.0 | 400.0 | 4.00x |"
    assert row in bench.markdown_summary({"results": records})
    assert bench.check_targets(records, "cuda") == []  # no batch-32 figures: nothing to judge


def test_bench_data_runs_with_tiny_counts(tmp_path) -> None:
    out = tmp_path / "data.json"
    result = bench_data.main(
        ["--workers", "0", "--images", "4", "--batch_size", "2", "--repeats", "1", "--out", str(out)]
    )
    assert json.loads(out.read_text())["results"] == result["results"]
    assert result["results"][0]["images_per_s"] > 0


@pytest.mark.slow
def test_bench_script_runs_every_case_with_tiny_counts(tmp_path) -> None:
    out = tmp_path / "bench.json"
    tiny = "--device cpu --batch_sizes 1 --warmup 0 --iters 1 --light_warmup 0 --light_iters 1 --threads 1"
    bench.main([*tiny.split(), "--onnx_batch_sizes", "1", "--out", str(out)])
    result = json.loads(out.read_text())
    found = {(r["case"], r["impl"]) for r in result["results"]}
    for case in ("raw", "end_to_end", "postprocess", "train", "match", "loss"):
        assert {(case, "ours"), (case, "torchvision")} <= found
    assert {("loss", "classic"), ("onnx", "ours"), ("onnx", "onnxruntime")} <= found
    stats = result["score_statistics"]
    for impl in ("ours", "torchvision"):
        assert 100 <= stats[impl]["candidates_per_image"] <= 200
        assert 0 < stats[impl]["detections_per_image"] <= 200
    assert result["machine"]["cpu"] and result["machine"]["torch"] == torch.__version__
    assert [r["max_abs_diff_boxes"] <= 1e-4 for r in result["results"] if r["case"] == "onnx"] == [True, True]
