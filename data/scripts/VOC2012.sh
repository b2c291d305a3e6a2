#!/bin/sh
# Download and extract PASCAL VOC2012 trainval into TARGET/VOCdevkit/VOC2012. About 2 GB.
# Afterwards VOC_ROOT (data/config.py) = TARGET/VOCdevkit. Runs under any POSIX sh (dash, bash, busybox).
set -eu

SCRIPT=VOC2012.sh
USAGE="usage: sh data/scripts/VOC2012.sh [--dry_run] [TARGET]
  TARGET defaults to \$SSD_DATA_ROOT, else ~/data; --dry_run (or DRY_RUN=1) prints the steps without running them"
. "$(dirname "$0")/common.sh"
[ -z "$EXTRA_FLAGS" ] || { echo "$SCRIPT: error: unknown option$EXTRA_FLAGS" >&2; exit 2; }

URL="http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
FILE="${URL##*/}"
need tar
run mkdir -p "$TARGET"
echo "downloading $URL"
run fetch "$URL" "$TARGET/$FILE"
echo "extracting $FILE"
run tar -xf "$TARGET/$FILE" -C "$TARGET"   # creates VOCdevkit/VOC2012/...
run rm -f "$TARGET/$FILE"
echo "VOC2012 is in $TARGET/VOCdevkit/VOC2012"
