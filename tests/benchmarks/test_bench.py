"""The speed benchmark's pieces run and agree with the library; the whole script runs with tiny counts."""

from __future__ import annotations

import json

import pytest
import torch

from benchmarks import bench, bench_data, lite
from benchmarks import workloads as W
from benchmarks.previous_detect import PreviousDetect
from benchmarks.timing import median_ms, peak_cpu_memory_bytes, time_interleaved
from layers import Detect

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


def test_regime_adjustments_hit_their_candidate_targets() -> None:
    logits = 0.3 * torch.randn(2, 8732, 21, generator=torch.Generator().manual_seed(0))
    assert W.candidates_per_image(logits) > 8732 * 19  # near-uniform softmax: almost everything passes 0.01
    sparse = W.regime_adjustment("sparse", logits)
    assert sparse.scale == 1 and sparse.shift > 0
    assert 140 <= W.candidates_per_image(logits, sparse) <= 160
    spread = 8.0 * logits  # a spread that leaves only about half of the pairs above 0.01
    assert W.candidates_per_image(spread) < 0.6 * 8732 * 20
    dense = W.regime_adjustment("dense", spread)
    assert dense.shift == 0 and 0 < dense.scale < 1
    assert abs(W.candidates_per_image(spread, dense) - W.REGIME_CANDIDATES["dense"]) < 10


def test_adjusted_head_changes_the_logits_as_adjusted_logits_and_restores_them() -> None:
    tv = W.build_torchvision(False, W.Settings(CPU))
    conv = W.conf_convs(tv)[-1]  # 1x1 maps: anchor a's class c is channel a * 21 + c
    x = torch.randn(1, conv.in_channels, 1, 1, generator=torch.Generator().manual_seed(0))
    weight, bias = conv.weight.clone(), conv.bias.clone()
    adjustment = W.Adjustment(scale=0.5, shift=2.0)
    with torch.no_grad():
        logits = conv(x).view(1, -1, 21)  # [1, anchors, C]
        with W.adjusted_head(tv, adjustment):
            adjusted = conv(x).view(1, -1, 21)
        restored = conv(x).view(1, -1, 21)
    torch.testing.assert_close(adjusted, W.adjusted_logits(logits, adjustment))
    assert not torch.allclose(adjusted, logits)
    assert torch.equal(restored, logits) and torch.equal(conv.weight, weight) and torch.equal(conv.bias, bias)


def test_previous_detect_gives_the_same_detections() -> None:
    gen = torch.Generator().manual_seed(4)
    priors = W.default_priors(CPU)
    loc = 0.5 * torch.randn(2, priors.shape[0], 4, generator=gen)
    logits = W.adjusted_logits(torch.randn(2, priors.shape[0], 21, generator=gen), W.Adjustment(shift=5.0))
    scores = torch.softmax(logits, -1)
    args = (21, 0, W.TOP_K, W.CONF_THRESH, W.NMS_THRESH)
    assert torch.equal(PreviousDetect(*args)(loc, scores, priors), Detect(*args)(loc, scores, priors))


def test_peak_cpu_memory_counts_what_is_held_at_once() -> None:
    def allocate() -> torch.Tensor:
        first = torch.ones(1_000_000)  # 4 MB
        second = torch.ones(2_000_000)  # 8 MB, both held: 12 MB
        del first
        return second + 1  # 8 MB more while first is gone: 16 MB

    peak = peak_cpu_memory_bytes(allocate)
    assert 16_000_000 <= peak < 16_500_000


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
    checks = bench.check_targets(records, "cpu")  # records without a regime count as sparse
    assert [(c["target"].split(":")[0], c["met"]) for c in checks] == [
        ("sparse end_to_end batch 8", True),
        ("matching + loss fwd/bwd batch 8", True),
    ]
    assert "1.10x" in bench.format_table(records)
    row = "| loss | 8 | 5.0 | 1600.0 | classic | 20.0 | 400.0 | 4.00x |"
    assert row in bench.markdown_summary({"results": records})
    assert bench.check_targets(records, "cuda") == []  # no batch-32 figures: nothing to judge


def test_regime_records_keep_their_regimes_apart() -> None:
    def record(regime: str, impl: str, ms: float) -> dict:
        return {"case": "postprocess", "regime": regime, "batch": 8, "impl": impl, "median_ms": ms, "img_per_s": 1.0}

    records = [
        record("dense", "ours", 50.0),
        record("dense", "previous", 600.0),
        record("dense", "torchvision", 90.0),
        record("sparse", "ours", 4.0),
        record("sparse", "torchvision", 10.0),
    ]
    ratios = {(r["regime"], r["versus"]): r["ours_speedup"] for r in bench.ratios(records)}
    assert ratios == {("dense", "previous"): 12.0, ("dense", "torchvision"): 1.8, ("sparse", "torchvision"): 2.5}
    checks = {c["target"]: c["met"] for c in bench.check_targets(records, "cpu")}
    assert checks == {
        "dense postprocess batch 8: previous time / ours": True,
        "dense postprocess batch 8: torchvision time / ours": False,  # 1.8x, the goal is 2x
        "sparse postprocess batch 8: torchvision time / ours": True,
    }
    assert "| postprocess (dense) | 8 | 50.0 |" in bench.markdown_summary({"results": records})
    assert "postprocess (sparse)" in bench.format_table(records)


def test_bench_data_runs_with_tiny_counts(tmp_path) -> None:
    out = tmp_path / "data.json"
    result = bench_data.main(
        ["--workers", "0", "--images", "4", "--batch_size", "2", "--repeats", "1", "--out", str(out)]
    )
    assert json.loads(out.read_text())["results"] == result["results"]
    assert result["results"][0]["images_per_s"] > 0


def test_bench_script_runs_one_regime_with_tiny_counts(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(bench, "CALIBRATION_BATCH", 1)
    out = tmp_path / "bench.json"
    tiny = "--device cpu --batch_sizes 1 --warmup 0 --iters 1 --light_warmup 0 --light_iters 1 --threads 1"
    bench.main([*tiny.split(), "--cases", "postprocess", "--regime", "dense", "--out", str(out)])
    result = json.loads(out.read_text())
    found = {(r["case"], r["regime"], r["impl"]) for r in result["results"]}
    assert found == {
        ("postprocess", "dense", "ours"),
        ("postprocess", "dense", "previous"),
        ("postprocess", "dense", "torchvision"),
    }
    stats = result["score_statistics"]
    assert set(stats) == {"method", "dense"}
    for impl in ("ours", "torchvision"):  # most classes of most priors above 0.01
        assert stats["dense"][impl]["candidates_per_image"] > 0.85 * 8732 * 20
    memory = result["detect_memory"]
    assert 0 < memory["ours_peak_mib"] < memory["previous_peak_mib"]
    coco = memory["gpu_nms_mask"][0]
    assert (coco["num_classes"], coco["batch"], coco["boxes"]) == (81, 32, 512_000)
    assert coco["largest_call_mask_mib"] <= coco["bound_mib"] == 256 < coco["one_call_mask_mib"]
    assert result["settings"]["regimes"] == ["dense"] and not result["settings"]["cudnn_benchmark"]


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
    assert ("postprocess", "previous") in found
    stats = result["score_statistics"]["sparse"]
    for impl in ("ours", "torchvision"):
        assert 100 <= stats[impl]["candidates_per_image"] <= 200
        assert 0 < stats[impl]["detections_per_image"] <= 200
    assert {r.get("regime") for r in result["results"] if r["case"] == "end_to_end"} == {"dense", "sparse"}
    assert result["machine"]["cpu"] and result["machine"]["torch"] == torch.__version__
    assert [r["max_abs_diff_boxes"] <= 1e-4 for r in result["results"] if r["case"] == "onnx"] == [True, True]


def test_the_light_models_bench_runs_one_regime_with_tiny_counts(tmp_path, monkeypatch) -> None:
    """SSDLite320 against torchvision's SSDLite: both implementations per case, the regime hit at score 0.001."""
    monkeypatch.setattr(bench, "CALIBRATION_BATCH", 1)
    out = tmp_path / "lite.json"
    tiny = "--device cpu --batch_sizes 1 --warmup 0 --iters 1 --light_warmup 0 --light_iters 1 --threads 1"
    lite_args = ["--backbone", "mobilenet_v3_large", "--cases", "end_to_end,postprocess", "--regime", "sparse"]
    bench.main([*tiny.split(), *lite_args, "--out", str(out)])
    result = json.loads(out.read_text())
    found = {(r["case"], r["regime"], r["impl"]) for r in result["results"]}
    assert found == {(c, "sparse", i) for c in ("end_to_end", "postprocess") for i in ("ours", "torchvision")}
    for impl in ("ours", "torchvision"):
        stats = result["score_statistics"]["sparse"][impl]
        assert 100 <= stats["candidates_per_image"] <= 200 and 0 < stats["detections_per_image"] <= 300
    assert [t["target"] for t in result["targets"]] == ["sparse end_to_end batch 1: torchvision time / ours"]
    assert result["settings"]["torchvision_model"].startswith("ssdlite320_mobilenet_v3_large(weights=None")
    video = {"fps": 12.5}
    checks = lite.check_targets([], video)
    assert checks == [{"target": "test.py on a 640x480 video: frames per second", "value": 12.5, "goal": ">= 10",
                       "met": True}]  # fmt: skip
