#!/bin/sh
# Download and extract PASCAL VOC2007 (trainval + test) into TARGET/VOCdevkit/VOC2007. About 900 MB.
# Afterwards VOC_ROOT (data/config.py) = TARGET/VOCdevkit. Runs under any POSIX sh (dash, bash, busybox).
set -eu

SCRIPT=VOC2007.sh
USAGE="usage: sh data/scripts/VOC2007.sh [--dry_run] [TARGET]
  TARGET defaults to \$SSD_DATA_ROOT, else ~/data; --dry_run (or DRY_RUN=1) prints the steps without running them"
. "$(dirname "$0")/common.sh"
[ -z "$EXTRA_FLAGS" ] || { echo "$SCRIPT: error: unknown option$EXTRA_FLAGS" >&2; exit 2; }

BASE_URL="http://host.robots.ox.ac.uk/pascal/VOC/voc2007"
need tar
run mkdir -p "$TARGET"
for file in VOCtrainval_06-Nov-2007.tar VOCtest_06-Nov-2007.tar; do
    echo "downloading $BASE_URL/$file"
    run fetch "$BASE_URL/$file" "$TARGET/$file"
    echo "extracting $file"
    run tar -xf "$TARGET/$file" -C "$TARGET"   # creates VOCdevkit/VOC2007/...
    run rm -f "$TARGET/$file"
done
echo "VOC2007 is in $TARGET/VOCdevkit/VOC2007"
