#!/usr/bin/env bash
# Download and extract PASCAL VOC2012 trainval into TARGET/VOCdevkit/VOC2012.
#   bash data/scripts/VOC2012.sh [TARGET]      TARGET defaults to $SSD_DATA_ROOT, else ~/data
# Afterwards VOC_ROOT (data/config.py) = TARGET/VOCdevkit. About 2 GB.
set -euo pipefail

TARGET="${1:-${SSD_DATA_ROOT:-$HOME/data}}"
URL="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
FILE="${URL##*/}"

fetch() {  # fetch URL FILE: resumable download
    if command -v curl >/dev/null; then curl -fL --retry 3 -C - -o "$2" "$1"; else wget -c -O "$2" "$1"; fi
}

mkdir -p "$TARGET"
cd "$TARGET"
echo "downloading $URL"
fetch "$URL" "$FILE"
echo "extracting $FILE"
tar -xf "$FILE"   # creates VOCdevkit/VOC2012/...
rm -f "$FILE"
echo "VOC2012 is in $TARGET/VOCdevkit/VOC2012"
