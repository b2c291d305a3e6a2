#!/usr/bin/env bash
# The whole journey on a fresh machine, no download: install, generate a synthetic VOC-layout dataset,
# train SSD300 briefly from scratch, evaluate VOC07 mAP on its test split, annotate a test picture.
# The run is short so that it finishes on a laptop CPU in minutes: it shows the pipeline, not accuracy
# (see README, "Training from scratch", for a run that learns). Knobs: DEMO_DIR, DEMO_ITERS, DEMO_BATCH.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
py=.venv/bin/python
out="${DEMO_DIR:-demo}"
iters="${DEMO_ITERS:-30}"
batch="${DEMO_BATCH:-8}"

$py -m data.synthetic --out "$out/VOCdevkit" --num_train 120 --num_test 20 --seed 0
$py train.py --dataset VOC --dataset_root "$out/VOCdevkit" --image_sets 2007:trainval \
    --basenet none --batch_norm true --batch_size "$batch" --max_iter "$iters" --save_every "$iters" \
    --num_workers 2 --seed 0 --save_folder "$out/weights"
$py eval.py --trained_model "$out/weights/ssd300_VOC_${iters}.pth" --voc_root "$out/VOCdevkit" \
    --save_folder "$out/eval"
first_test=$(head -n 1 "$out/VOCdevkit/VOC2007/ImageSets/Main/test.txt")
$py test.py --trained_model "$out/weights/ssd300_VOC_${iters}.pth" --visual_threshold 0.3 \
    --save_folder "$out/detections" "$out/VOCdevkit/VOC2007/JPEGImages/${first_test}.jpg"
echo "demo done: $out/weights (checkpoints, train_log.csv, loss.png), $out/eval/results.json, $out/detections/"
