#!/usr/bin/env bash
# Download and extract MS COCO 2014 (train2014, val2014 and their instance annotations) into TARGET/coco:
#   TARGET/coco/annotations/instances_{train,val}2014.json and TARGET/coco/images/{train2014,val2014}/
#   bash data/scripts/COCO2014.sh [TARGET]     TARGET defaults to $SSD_DATA_ROOT, else ~/data
# Afterwards COCO_ROOT (data/config.py) = TARGET/coco. About 19 GB; needs unzip.
set -euo pipefail

TARGET="${1:-${SSD_DATA_ROOT:-$HOME/data}}"
COCO="$TARGET/coco"

fetch() {  # fetch URL FILE: resumable download
    if command -v curl >/dev/null; then curl -fL --retry 3 -C - -o "$2" "$1"; else wget -c -O "$2" "$1"; fi
}

mkdir -p "$COCO/images"

cd "$COCO"
echo "downloading the 2014 annotations"
fetch "http://images.cocodataset.org/annotations/annotations_trainval2014.zip" annotations_trainval2014.zip
unzip -q -o annotations_trainval2014.zip   # creates annotations/instances_{train,val}2014.json (and more)
rm -f annotations_trainval2014.zip

cd "$COCO/images"
for split in train2014 val2014; do
    echo "downloading $split images"
    fetch "http://images.cocodataset.org/zips/$split.zip" "$split.zip"
    unzip -q -o "$split.zip"   # creates $split/COCO_${split}_*.jpg
    rm -f "$split.zip"
done
echo "COCO 2014 is in $COCO"
