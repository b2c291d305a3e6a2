#!/usr/bin/env bash
# The GPU check: one command on a CUDA machine, at most 5 minutes in all.
#
#   scripts/gpu_check.sh            # run the five stages
#   scripts/gpu_check.sh --dry_run  # print the commands and check, without a GPU, that they and their flags exist
#
# Stages, in this order, each under its own time limit (a failed or cut stage does not stop the next):
#   tests       pytest -m cuda (tests/test_cuda.py and any other CUDA-marked test)                    60 s
#   bench       benchmarks/bench.py on CUDA, bf16, channels_last, batch sizes 1, 8, 32                55 s
#   bench_lite  the same for SSDLite320 against torchvision's SSDLite (fp32), and test.py on a video   35 s
#   learn       benchmarks/learn_gpu.py: SSD300-BN from scratch, 45 s of training                     80 s
#   learn_lite  benchmarks/learn_gpu.py: SSDLite320 from scratch with its recipe, 15 s of training    40 s
# Each stage writes its JSON under benchmarks/results/ as soon as it ends, named after the device
# (torch.cuda.get_device_name, slugged) and the date; gpu_check_<device>_<date>.json sums them up and the script
# ends with a table. Python is $PYTHON when set, else the repository's .venv when its Python runs torch (what
# scripts/install.sh made), else the python on the PATH (a bare CUDA image).
set -u

cd "$(dirname "$0")/.." || exit 1
PY=${PYTHON:-python}
if [ -z "${PYTHON:-}" ] && [ -x .venv/bin/python ] && .venv/bin/python -c "import torch" 2>/dev/null; then
    PY=.venv/bin/python
fi
RESULTS=${GPU_CHECK_RESULTS:-benchmarks/results}
# Time limits in seconds; a stage that ignores its signal is killed 3 s later. 15 + 60 + 55 + 35 + 80 + 40 + 5 * 3
# = 300.
PROBE_S=15
TESTS_S=60 # pytest gets SIGINT (it still writes its report), the others SIGTERM
BENCH_S=55
BENCH_LITE_S=35
LEARN_S=80
LEARN_LITE_S=40

DRY_RUN=0
case "${1:-}" in
"") ;;
--dry_run) DRY_RUN=1 ;;
-h | --help)
    sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "gpu_check.sh: unknown argument '$1' (expected --dry_run or nothing)" >&2
    exit 2
    ;;
esac

WORK=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check.XXXXXX") || exit 1
trap 'rm -rf "$WORK"' EXIT
REPORT="$WORK/report.py"

cat >"$REPORT" <<'PYTHON'
"""gpu_check.sh's helpers: environment probe, pytest's JUnit XML to JSON, key figures, summary table."""
import datetime
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import sys
import xml.etree.ElementTree as ET

OPTIONAL = {"tqdm": "tqdm", "matplotlib": "matplotlib", "visdom": "visdom", "pycocotools": "pycocotools",
            "onnxruntime": "onnxruntime"}
REQUIRED = {"torch": "torch", "torchvision": "torchvision", "numpy": "numpy",
            "cv2": ("opencv-python-headless", "opencv-python")}


def version(module, dists):
    if importlib.util.find_spec(module) is None:
        return None
    for dist in (dists,) if isinstance(dists, str) else dists:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return "installed"


def slug(name):
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def write(record, path):
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(record, f, indent=1)
        f.write("\n")


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def env(out, need_cuda):
    """Write the environment JSON; print "name<TAB>slug" of the GPU (exit 3 without one when it is needed)."""
    info = {"python": platform.python_version(), "platform": platform.platform()}
    info.update({m: version(m, d) for m, d in {**REQUIRED, **OPTIONAL}.items()})
    try:
        info["cpus_available"] = len(os.sched_getaffinity(0))
    except AttributeError:
        info["cpus_available"] = os.cpu_count()
    import torch

    info["cuda_available"] = torch.cuda.is_available()
    if info["cuda_available"]:
        info.update(gpu=torch.cuda.get_device_name(0), gpu_count=torch.cuda.device_count(), cuda=torch.version.cuda)
    write(info, out)
    missing = [m for m in REQUIRED if info[m] is None]
    if missing:
        print(f"missing Python packages: {', '.join(missing)}", file=sys.stderr)
        return 4
    if need_cuda == "1" and not info["cuda_available"]:
        print("no CUDA device here (torch.cuda.is_available() is False); --dry_run checks without one",
              file=sys.stderr)
        return 3
    name = info.get("gpu", "no GPU")
    print(f"{name}\t{slug(name)}")
    return 0


def junit(xml_path, out, env_path, rc, seconds):
    """pytest's JUnit XML -> {device, passed, failed, error, skipped, tests: [{name, outcome, seconds}]}."""
    tests = []
    if os.path.isfile(xml_path):
        for case in ET.parse(xml_path).getroot().iter("testcase"):
            outcome, message = "passed", ""
            for tag, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
                found = case.find(tag)
                if found is not None:
                    outcome, message = name, (found.get("message") or "")[:500]
                    break
            test = {"name": f"{case.get('classname', '')}::{case.get('name', '')}", "outcome": outcome,
                    "seconds": round(float(case.get("time") or 0.0), 3)}
            tests.append(test | ({"message": message} if message else {}))
    environment = load(env_path) or {}
    counts = {k: sum(t["outcome"] == k for t in tests) for k in ("passed", "failed", "error", "skipped")}
    record = {"what": "pytest -m cuda", "device": environment.get("gpu"),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
              "exit_code": int(rc), "seconds": float(seconds), "report_found": os.path.isfile(xml_path),
              **counts, "tests": tests, "environment": environment}
    write(record, out)
    print(figures("tests", out))


def figures(stage, path):
    """One line of key figures from a stage's JSON."""
    record = load(path)
    if record is None:
        return "no JSON written"
    if stage == "tests":
        line = ", ".join(f"{record[k]} {k}" for k in ("passed", "failed", "error", "skipped"))
        return line if record["report_found"] else line + " (no pytest report: cut short?)"
    if stage in ("bench", "bench_lite"):
        parts = []
        top = max((r.get("batch", 0) for r in record.get("results", [])), default=0)
        for case in ("end_to_end", "train"):
            ours = [r for r in record.get("results", []) if (r.get("case"), r.get("batch"), r.get("impl"))
                    == (case, top, "ours") and r.get("regime") in (None, "sparse")]
            vs = [r for r in record.get("ratios", []) if (r.get("case"), r.get("batch"), r.get("versus"))
                  == (case, top, "torchvision") and r.get("regime") in (None, "sparse")]
            if ours:
                ratio = f" ({vs[0]['ours_speedup']:.2f}x tv)" if vs else ""
                parts.append(f"{case} b{top} {ours[0]['img_per_s']:.0f} img/s{ratio}")
        if "video" in record:
            parts.append(f"video {record['video']['fps']:.0f} frames/s")
        targets = record.get("targets", [])
        parts.append(f"targets met {sum(bool(t.get('met')) for t in targets)}/{len(targets)}")
        return "; ".join(parts)
    if stage in ("learn", "learn_lite"):
        mAP = record.get("final_mAP")
        state = "" if record.get("complete") else " (incomplete)"
        return (f"mAP {mAP if mAP is None else round(mAP, 3)} after {record.get('train_s', 0):.0f} s of training, "
                f"{len(record.get('curve', []))} evals, {record.get('median_img_per_s', 0):.0f} img/s; "
                f"start-up {record.get('startup_s', 0):.0f} s, eval {record.get('eval_s', 0):.0f} s{state}")
    return ""


def collect():
    """pytest --collect-only -m cuda as on an image without visdom and pycocotools (made unimportable)."""
    sys.modules.update(dict.fromkeys(["visdom", "pycocotools", "pycocotools.coco", "pycocotools.cocoeval"]))
    import pytest

    return pytest.main(
        ["--collect-only", "-m", "cuda", "-q", "-p", "no:cacheprovider", "--continue-on-collection-errors"]
    )


def summary(tsv, out, env_path):
    """Write the check's JSON from the stage lines (stage, status, seconds, json) and print the table."""
    environment = load(env_path) or {}
    stages = []
    with open(tsv, encoding="utf-8") as f:
        for line in f:
            stage, status, seconds, path = line.rstrip("\n").split("\t")
            stages.append({"stage": stage, "status": status, "seconds": float(seconds), "json": path,
                           "figures": figures(stage, path)})
    write({"device": environment.get("gpu"), "date": datetime.date.today().isoformat(), "stages": stages,
           "stages_s": round(sum(s["seconds"] for s in stages), 1), "environment": environment}, out)
    rows = [("stage", "status", "seconds", "key figures")]
    rows += [(s["stage"], s["status"], f"{s['seconds']:.0f}", s["figures"]) for s in stages]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[3])
    print(f"device: {environment.get('gpu')}; results: {', '.join(s['json'] for s in stages)}; summary: {out}")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "figures":
        print(figures(*args))
    else:
        sys.exit({"env": env, "junit": junit, "collect": collect, "summary": summary}[command](*args))
PYTHON

# ------------------------------------------------------------------------------------------- the commands

stage_commands() { # $1 = device slug, $2 = date
    TESTS_JSON="$RESULTS/tests_cuda_$1_$2.json"
    BENCH_JSON="$RESULTS/cuda_$1_$2.json"
    BENCH_LITE_JSON="$RESULTS/lite_cuda_$1_$2.json"
    LEARN_JSON="$RESULTS/learn_cuda_$1_$2.json"
    LEARN_LITE_JSON="$RESULTS/learn_lite_cuda_$1_$2.json"
    SUMMARY_JSON="$RESULTS/gpu_check_$1_$2.json"
    TESTS_CMD=("$PY" -m pytest -m cuda -q -rfEs -p no:cacheprovider --continue-on-collection-errors
        --junit-xml "$WORK/tests.xml")
    BENCH_CMD=("$PY" benchmarks/bench.py --device cuda --amp bf16 --channels_last --batch_sizes 1,8,32
        --warmup 3 --iters 10 --light_warmup 5 --light_iters 20 --note "scripts/gpu_check.sh" --out "$BENCH_JSON")
    BENCH_LITE_CMD=("$PY" benchmarks/bench.py --backbone mobilenet_v3_large --device cuda --batch_sizes 1,8,32
        --warmup 3 --iters 10 --light_warmup 5 --light_iters 20 --out "$BENCH_LITE_JSON")
    LEARN_CMD=("$PY" benchmarks/learn_gpu.py --device cuda --budget_s 45 --max_wall_s 65 --eval_every_s 25
        --num_train 1500 --num_test 100 --out "$LEARN_JSON")
    LEARN_LITE_CMD=("$PY" benchmarks/learn_gpu.py --backbone mobilenet_v3_large --device cuda --budget_s 15
        --max_wall_s 30 --eval_every_s 8 --first_segment 30 --num_train 400 --num_test 50 --out "$LEARN_LITE_JSON")
}

show() { # $1 = label, $2 = seconds, rest = command
    local label=$1 limit=$2
    shift 2
    printf '%-6s (limit %3s s): ' "$label" "$limit"
    printf '%q ' "$@"
    printf '\n'
}

# ------------------------------------------------------------------------------------------- dry run

if [ "$DRY_RUN" = 1 ]; then
    stage_commands "DEVICE" "$(date +%F)"
    echo "gpu_check.sh --dry_run: the stages would run (DEVICE = the GPU's name, slugged):"
    show tests "$TESTS_S" "${TESTS_CMD[@]}"
    show bench "$BENCH_S" "${BENCH_CMD[@]}"
    show bench_lite "$BENCH_LITE_S" "${BENCH_LITE_CMD[@]}"
    show learn "$LEARN_S" "${LEARN_CMD[@]}"
    show learn_lite "$LEARN_LITE_S" "${LEARN_LITE_CMD[@]}"
    problems=0
    check() { # $1 = what, rest = command that must succeed
        local what=$1
        shift
        if "$@" >"$WORK/check.out" 2>&1; then
            echo "ok      $what"
        else
            echo "MISSING $what"
            sed 's/^/        /' "$WORK/check.out" | tail -n 5
            problems=$((problems + 1))
        fi
    }
    flags_in() { # $1 = help text file, rest = flags that must appear in it
        local help=$1 flag
        shift
        for flag in "$@"; do
            grep -q -- "$flag\b" "$help" || {
                echo "flag $flag not in the help"
                return 1
            }
        done
    }
    check "timeout (coreutils)" command -v timeout
    check "python: $PY" "$PY" -c "import sys; assert sys.version_info >= (3, 10), sys.version"
    check "environment probe (torch, torchvision, numpy, cv2)" "$PY" "$REPORT" env "$WORK/env.json" 0
    check "pytest --help" sh -c '"$1" -m pytest --help >"$2"' _ "$PY" "$WORK/pytest.help"
    check "pytest flags" flags_in "$WORK/pytest.help" -m -q -r -p --continue-on-collection-errors --junit-xml
    check "bench.py --help" sh -c '"$1" benchmarks/bench.py --help >"$2"' _ "$PY" "$WORK/bench.help"
    check "bench.py flags" flags_in "$WORK/bench.help" --backbone --device --amp --channels_last --batch_sizes \
        --warmup --iters --light_warmup --light_iters --note --out
    check "learn_gpu.py --help" sh -c '"$1" benchmarks/learn_gpu.py --help >"$2"' _ "$PY" "$WORK/learn.help"
    check "learn_gpu.py flags" flags_in "$WORK/learn.help" --backbone --device --budget_s --max_wall_s \
        --eval_every_s --first_segment --num_train --num_test --out
    check "pytest --collect-only -m cuda, as on an image without visdom and pycocotools" sh -c \
        '"$1" "$2" collect >"$3" 2>&1; grep -q "^tests/test_cuda.py::" "$3"' _ "$PY" "$REPORT" "$WORK/collect.out"
    if grep -q "^ERROR " "$WORK/collect.out"; then # the tests stage collects past them, so only a warning
        echo "warning: test modules that do not import (the tests stage continues past them):"
        grep "^ERROR " "$WORK/collect.out" | sed 's/^/        /'
    fi
    # The report code on made-up stage outputs.
    cat >"$WORK/fake.xml" <<'XML'
<testsuites><testsuite name="pytest"><testcase classname="tests.test_cuda" name="test_a" time="1.5"/>
<testcase classname="tests.test_cuda" name="test_b" time="0.2"><failure message="boom">trace</failure></testcase>
<testcase classname="tests.test_cuda" name="test_c" time="0"><skipped message="no GPU"/></testcase>
</testsuite></testsuites>
XML
    check "tests JSON from pytest's JUnit XML" sh -c '"$1" "$2" junit "$3/fake.xml" "$3/tests.json" "$3/env.json" 1 3 |
        grep -q "^1 passed, 1 failed, 0 error, 1 skipped$"' _ "$PY" "$REPORT" "$WORK"
    printf 'tests\tfailed (exit 1)\t3\t%s\n' "$WORK/tests.json" >"$WORK/stages.tsv"
    check "summary table" sh -c '"$1" "$2" summary "$3/stages.tsv" "$3/summary.json" "$3/env.json" |
        grep -q "^tests  failed (exit 1)  3 *1 passed, 1 failed"' _ "$PY" "$REPORT" "$WORK"
    if [ "$problems" -gt 0 ]; then
        echo "gpu_check.sh --dry_run: $problems check(s) failed"
        exit 1
    fi
    echo "gpu_check.sh --dry_run: all checks passed"
    exit 0
fi

# ------------------------------------------------------------------------------------------- the check

START=$(date +%s)
if ! probe=$(timeout -k 3 "$PROBE_S" "$PY" "$REPORT" env "$WORK/env.json" 1); then
    echo "gpu_check.sh: the CUDA probe failed (see above); nothing was run" >&2
    exit 1
fi
DEVICE=${probe%%$'\t'*}
SLUG=${probe##*$'\t'}
DATE=$(date +%F)
stage_commands "$SLUG" "$DATE"
mkdir -p "$RESULTS"
: >"$WORK/stages.tsv"
echo "gpu_check.sh on $DEVICE: results go to $RESULTS/*_${SLUG}_$DATE.json"

run_stage() { # $1 = stage, $2 = limit (s), $3 = JSON it writes, $4 = kill signal, rest = command
    local stage=$1 limit=$2 json=$3 signal=$4 t0 rc status seconds
    shift 4
    echo
    show "$stage" "$limit" "$@"
    t0=$(date +%s)
    timeout -s "$signal" -k 3 "$limit" "$@"
    rc=$?
    seconds=$(($(date +%s) - t0))
    case $rc in
    0) status=ok ;;
    124 | 137) status="timeout after ${limit} s" ;;
    *) status="failed (exit $rc)" ;;
    esac
    STAGE_RC=$rc
    if [ "$stage" = tests ]; then
        "$PY" "$REPORT" junit "$WORK/tests.xml" "$json" "$WORK/env.json" "$rc" "$seconds" >/dev/null
    fi
    printf '%s\t%s\t%s\t%s\n' "$stage" "$status" "$seconds" "$json" >>"$WORK/stages.tsv"
    "$PY" "$REPORT" summary "$WORK/stages.tsv" "$SUMMARY_JSON" "$WORK/env.json" >/dev/null
}

run_stage tests "$TESTS_S" "$TESTS_JSON" INT "${TESTS_CMD[@]}"
FAILED=$((STAGE_RC != 0))
run_stage bench "$BENCH_S" "$BENCH_JSON" TERM "${BENCH_CMD[@]}"
FAILED=$((FAILED + (STAGE_RC != 0)))
run_stage bench_lite "$BENCH_LITE_S" "$BENCH_LITE_JSON" TERM "${BENCH_LITE_CMD[@]}"
FAILED=$((FAILED + (STAGE_RC != 0)))
run_stage learn "$LEARN_S" "$LEARN_JSON" TERM "${LEARN_CMD[@]}"
FAILED=$((FAILED + (STAGE_RC != 0)))
run_stage learn_lite "$LEARN_LITE_S" "$LEARN_LITE_JSON" TERM "${LEARN_LITE_CMD[@]}"
FAILED=$((FAILED + (STAGE_RC != 0)))

echo
echo "gpu_check.sh: $(($(date +%s) - START)) s in all"
"$PY" "$REPORT" summary "$WORK/stages.tsv" "$SUMMARY_JSON" "$WORK/env.json"
exit $((FAILED > 0))
