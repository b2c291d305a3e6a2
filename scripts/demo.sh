#!/usr/bin/env bash
# The whole journey on a fresh machine, no download: install, generate a synthetic VOC-layout dataset, measure the
# untrained model's mAP, train a detector from scratch with validation along the way, evaluate the trained model,
# annotate two test pictures, and print the mAP curve next to the untrained figure.
# On a CPU it trains the light model, SSDLite320-MobileNetV3, with its default recipe on a task it learns within ten
# minutes: three classes, one or two large drawn objects per picture, 200 training pictures, 160 iterations at
# batch 16. With CUDA it trains SSD300 (VGG16-BN) longer: the six classes of the generator's defaults, 3500
# pictures, batch 32, bf16. Running it again replaces the previous run's files.
# Knobs: DEMO_DIR (default demo), DEMO_ITERS, DEMO_BATCH, DEMO_EVAL_EVERY.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
py=.venv/bin/python
out="${DEMO_DIR:-demo}"
root="$out/VOCdevkit"
start=$SECONDS
stage_start=$SECONDS
timings=()
stage_done() {  # name: record the seconds since the previous stage
    timings+=("$1=$((SECONDS - stage_start))")
    stage_start=$SECONDS
}

if $py -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    # the generator's defaults (six classes) and train.py's BN recipe, in bf16
    device=cuda classes=car,boat,sheep,bottle,person,tvmonitor num_train=3500 num_test=300
    shapes=(--max_objects 5)
    iters="${DEMO_ITERS:-2000}" batch="${DEMO_BATCH:-32}" eval_every="${DEMO_EVAL_EVERY:-500}"
    model=(--batch_norm true) stem=ssd300_VOC name="SSD300-BN"
    solver=(--amp bf16 --num_workers auto)
else
    # three classes, one or two large objects per picture: a task the light model learns in minutes
    device=cpu classes=car,sheep,boat num_train=200 num_test=40
    shapes=(--min_size 320 --max_size 400 --min_scale 0.3 --max_scale 0.9 --max_objects 2 --empty_prob 0
        --difficult_prob 0)
    iters="${DEMO_ITERS:-160}" batch="${DEMO_BATCH:-16}" eval_every="${DEMO_EVAL_EVERY:-40}"
    model=(--backbone mobilenet_v3_large) stem=ssdlite320_VOC name="SSDLite320-MobileNetV3"
    solver=(--num_workers 1)
fi
echo "demo on $device: $name, $num_train training pictures, $iters iterations at batch $batch"

mkdir -p "$out"
tr , '\n' <<<"$classes" >"$out/classes.txt"
$py -m data.synthetic --out "$root" --num_train "$num_train" --num_test "$num_test" --seed 0 \
    --classes "$classes" "${shapes[@]}"
stage_done generate

common=(--dataset VOC --dataset_root "$root" --image_sets 2007:trainval --classes "$out/classes.txt"
    --basenet none "${model[@]}" --batch_size "$batch" --seed 0 --overwrite true "${solver[@]}")
# The untrained reference: one step at a negligible learning rate leaves the random weights as they are.
$py train.py "${common[@]}" --max_iter 1 --lr 1e-12 --save_every 1 --save_folder "$out/untrained"
$py eval.py --trained_model "$out/untrained/${stem}_1.pth" --dataset_root "$root" \
    --save_folder "$out/eval_untrained"
stage_done untrained_eval

$py train.py "${common[@]}" --max_iter "$iters" --save_every "$iters" --save_folder "$out/weights" \
    --eval_every "$eval_every" --eval_sets 2007:test --eval_images "$num_test"
stage_done train

$py eval.py --trained_model "$out/weights/${stem}_${iters}.pth" --dataset_root "$root" \
    --save_folder "$out/eval"
stage_done eval

pictures=()
for id in $(head -n 2 "$root/VOC2007/ImageSets/Main/test.txt"); do pictures+=("$root/VOC2007/JPEGImages/$id.jpg"); done
$py test.py --trained_model "$out/weights/${stem}_${iters}.pth" --visual_threshold 0.3 \
    --save_folder "$out/detections" "${pictures[@]}"
stage_done annotate

# The mAP curve (the untrained model at iteration 0), the figures in $out/summary.json, a plot in $out/map.png.
$py - "$out" "$device" "$name" "$iters" "$batch" "$num_train" "$num_test" "$classes" "${timings[@]}" <<'EOF'
import csv, json, sys
out, device, name, iters, batch, num_train, num_test, classes, *stages = sys.argv[1:]
untrained, trained = (json.load(open(f"{out}/{folder}/results.json"))["mAP"] for folder in ("eval_untrained", "eval"))
rows = csv.DictReader(open(f"{out}/weights/eval_log.csv"))
curve = [(0, untrained)] + [(int(row["iter"]), float(row["value"])) for row in rows]
seconds = {name: int(value) for name, value in (stage.split("=") for stage in stages)}
summary = {
    "device": device, "model": name, "iterations": int(iters), "batch_size": int(batch), "num_train": int(num_train),
    "num_test": int(num_test), "classes": classes.split(","), "untrained_mAP": untrained, "final_mAP": trained,
    "mAP_curve": [{"iter": i, "mAP": v} for i, v in curve], "stage_seconds": seconds,
    "total_seconds": sum(seconds.values()),
}
json.dump(summary, open(f"{out}/summary.json", "w"), indent=1)
print(f"\nVOC07 mAP on the synthetic test split ({num_test} pictures) during training:")
for i, v in curve:
    print(f"  iteration {i:>5}  mAP {v:.4f}  {'#' * round(50 * v)}")
ratio = f"{trained / untrained:.0f}x" if untrained > 0 else "untrained: 0"
print(f"untrained {untrained:.4f} -> trained {trained:.4f} ({ratio}); seconds per stage: {seconds}")
try:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
except ImportError:
    sys.exit()
fig, ax = plt.subplots(figsize=(5, 3.5))
ax.plot(*zip(*curve), marker="o")
ax.set(xlabel="iteration", ylabel="VOC07 mAP", title=f"{name} from scratch ({device}, batch {batch})")
fig.tight_layout()
fig.savefig(f"{out}/map.png", dpi=100)
EOF
echo "demo done in $((SECONDS - start)) s after the install: $out/weights (checkpoints, train_log.csv, loss.png," \
    "eval_log.csv), $out/eval/results.json, $out/summary.json, $out/map.png, $out/detections/*_det.jpg"
