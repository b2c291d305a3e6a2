"""scripts/gpu_check.sh: it parses, its dry run passes without a GPU and lists the five stages with their flags, a
missing flag fails the dry run, and a real run on a machine without CUDA stops at once with one clear line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.repo import REPO_ROOT

SCRIPT = REPO_ROOT / "scripts" / "gpu_check.sh"


def _run(*args: str, python: str = sys.executable, timeout: int = 300, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args],
        cwd=REPO_ROOT,
        env={**os.environ, "PYTHON": python, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _stage_line(out: str, stage: str) -> str:
    lines = [line for line in out.splitlines() if line.startswith(f"{stage} ")]
    assert len(lines) == 1, out
    return lines[0]


def test_the_script_parses() -> None:
    done = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert os.access(SCRIPT, os.X_OK)


def test_help_and_unknown_arguments() -> None:
    helped = _run("--help")
    assert helped.returncode == 0 and "--dry_run" in helped.stdout and "benchmarks/results/" in helped.stdout
    wrong = _run("--fast")
    assert wrong.returncode == 2 and "unknown argument '--fast'" in wrong.stderr


@pytest.mark.slow
def test_dry_run_lists_the_five_stages_and_passes_without_a_gpu() -> None:
    done = _run("--dry_run")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("gpu_check.sh --dry_run: all checks passed")
    assert "MISSING" not in done.stdout
    tests = _stage_line(done.stdout, "tests")
    assert "(limit  60 s)" in tests and "-m pytest -m cuda" in tests and "--junit-xml" in tests
    bench = _stage_line(done.stdout, "bench")
    for flag in ("benchmarks/bench.py", "--device cuda", "--amp bf16", "--channels_last", "--batch_sizes 1\\,8\\,32"):
        assert flag in bench, bench
    assert "--out benchmarks/results/cuda_DEVICE_" in bench
    learn = _stage_line(done.stdout, "learn")
    for flag in ("benchmarks/learn_gpu.py", "--device cuda", "--budget_s 45", "--max_wall_s 65"):
        assert flag in learn, learn
    assert "--out benchmarks/results/learn_cuda_DEVICE_" in learn
    bench_lite = _stage_line(done.stdout, "bench_lite")
    assert "--backbone mobilenet_v3_large --device cuda" in bench_lite and "results/lite_cuda_DEVICE_" in bench_lite
    learn_lite = _stage_line(done.stdout, "learn_lite")
    assert "--backbone mobilenet_v3_large --device cuda" in learn_lite and "learn_lite_cuda_DEVICE_" in learn_lite
    stages = ("tests", "bench", "bench_lite", "learn", "learn_lite")
    limits = [int(_stage_line(done.stdout, s).split("(limit")[1].split("s)")[0]) for s in stages]
    assert sum(limits) + 15 + 5 * 3 <= 300  # the stages, the probe and each one's kill grace fit in 5 minutes


@pytest.mark.slow
def test_dry_run_fails_when_a_flag_is_missing(tmp_path: Path) -> None:
    """A Python whose learn_gpu.py --help lacks --max_wall_s: the dry run names the flag and exits 1."""
    fake = tmp_path / "python"
    fake.write_text(
        "#!/usr/bin/env bash\n"
        'if [ "${1:-}" = benchmarks/learn_gpu.py ]; then\n'
        f'    "{sys.executable}" "$@" | sed "s/--max_wall_s/--max_wall/g"; exit 0\n'
        "fi\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    fake.chmod(0o755)
    done = _run("--dry_run", python=str(fake))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "MISSING learn_gpu.py flags" in done.stdout and "flag --max_wall_s not in the help" in done.stdout
    assert "ok      bench.py flags" in done.stdout
    assert "1 check(s) failed" in done.stdout


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_a_real_run_without_cuda_stops_with_one_clear_line(tmp_path: Path) -> None:
    done = _run(timeout=120, GPU_CHECK_RESULTS=str(tmp_path / "results"))
    assert done.returncode == 1
    assert "no CUDA device here" in done.stderr and "nothing was run" in done.stderr
    assert not (tmp_path / "results").exists()
