#!/usr/bin/env bash
# Download and extract PASCAL VOC2007 (trainval + test) into TARGET/VOCdevkit/VOC2007.
#   bash data/scripts/VOC2007.sh [TARGET]      TARGET defaults to $SSD_DATA_ROOT, else ~/data
# Afterwards VOC_ROOT (data/config.py) = TARGET/VOCdevkit. About 900 MB.
set -euo pipefail

TARGET="${1:-${SSD_DATA_ROOT:-$HOME/data}}"
BASE_URL="http://host.robots.ox.ac.uk/pascal/VOC/voc2007"
FILES=(VOCtrainval_06-Nov-2007.tar VOCtest_06-Nov-2007.tar)

fetch() {  # fetch URL FILE: resumable download
    if command -v curl >/dev/null; then curl -fL --retry 3 -C - -o "$2" "$1"; else wget -c -O "$2" "$1"; fi
}

mkdir -p "$TARGET"
cd "$TARGET"
for f in "${FILES[@]}"; do
    echo "downloading $BASE_URL/$f"
    fetch "$BASE_URL/$f" "$f"
    echo "extracting $f"
    tar -xf "$f"   # creates VOCdevkit/VOC2007/...
    rm -f "$f"
done
echo "VOC2007 is in $TARGET/VOCdevkit/VOC2007"
