#!/bin/sh
# Download and extract MS COCO 2014 into TARGET/coco (about 19 GB; needs unzip):
#   TARGET/coco/annotations/instances_{train,val}2014.json and TARGET/coco/images/{train2014,val2014}/
# Afterwards COCO_ROOT (data/config.py) = TARGET/coco. Runs under any POSIX sh (dash, bash, busybox).
#
# --minival also makes the splits of the SSD paper, trainval35k (train) and minival2014 (test, 5k pictures).
# COCO itself never published them: the minival / valminusminival annotation files come from Detectron
# (coco_annotations_minival.tgz, MINIVAL_URL below: instances_minival2014.json and
# instances_valminusminival2014.json). trainval35k is train2014 + valminusminival2014; this script merges their
# annotations into instances_trainval35k.json (needs python3) and makes images/{trainval35k,minival2014}/ folders
# of links to the 2014 pictures. (The same splits are COCO 2017's train2017 and val2017.) When that archive cannot
# be fetched the script stops with a message saying where to put the two files by hand.
set -eu

SCRIPT=COCO2014.sh
USAGE="usage: sh data/scripts/COCO2014.sh [--dry_run] [--minival] [TARGET]
  TARGET defaults to \$SSD_DATA_ROOT, else ~/data; --dry_run (or DRY_RUN=1) prints the steps without running them;
  --minival also builds the trainval35k and minival2014 splits (annotation files from Detectron)"
. "$(dirname "$0")/common.sh"
MINIVAL=0
for flag in $EXTRA_FLAGS; do
    case "$flag" in
        --minival) MINIVAL=1 ;;
        *) echo "$SCRIPT: error: unknown option $flag" >&2; printf '%s\n' "$USAGE" >&2; exit 2 ;;
    esac
done

COCO="$TARGET/coco"
IMAGES_URL="http://images.cocodataset.org/zips"
ANNOTATIONS_URL="http://images.cocodataset.org/annotations/annotations_trainval2014.zip"
MINIVAL_URL="https://dl.fbaipublicfiles.com/detectron/coco/coco_annotations_minival.tgz"
PYTHON="${PYTHON:-python3}"

need unzip
[ "$MINIVAL" = 0 ] || need tar "$PYTHON"
run mkdir -p "$COCO/images"

echo "downloading the 2014 annotations"
run fetch "$ANNOTATIONS_URL" "$COCO/annotations_trainval2014.zip"
run unzip -q -o "$COCO/annotations_trainval2014.zip" -d "$COCO"   # annotations/instances_{train,val}2014.json, …
run rm -f "$COCO/annotations_trainval2014.zip"

for split in train2014 val2014; do
    echo "downloading $split pictures"
    run fetch "$IMAGES_URL/$split.zip" "$COCO/images/$split.zip"
    run unzip -q -o "$COCO/images/$split.zip" -d "$COCO/images"   # images/$split/COCO_${split}_*.jpg
    run rm -f "$COCO/images/$split.zip"
done

if [ "$MINIVAL" = 1 ]; then
    echo "downloading the minival / valminusminival 2014 annotations (Detectron)"
    if ! run fetch "$MINIVAL_URL" "$COCO/coco_annotations_minival.tgz"; then
        die "cannot fetch $MINIVAL_URL, which holds instances_minival2014.json and" \
            "instances_valminusminival2014.json (Detectron's COCO minival annotations); put those two files into" \
            "$COCO/annotations/ by hand and rerun with --minival (train2014 and val2014 are complete)"
    fi
    run mkdir -p "$COCO/minival_tmp"
    run tar -xzf "$COCO/coco_annotations_minival.tgz" -C "$COCO/minival_tmp"
    for name in instances_minival2014.json instances_valminusminival2014.json; do
        if [ "$DRY_RUN" = 1 ]; then
            echo "+ mv $COCO/minival_tmp/…/$name $COCO/annotations/$name"
            continue
        fi
        found="$(find "$COCO/minival_tmp" -name "$name" | head -n 1)"
        [ -n "$found" ] || die "$MINIVAL_URL holds no $name: put it into $COCO/annotations/ by hand"
        mv "$found" "$COCO/annotations/$name"
    done
    run rm -rf "$COCO/minival_tmp" "$COCO/coco_annotations_minival.tgz"
    echo "building trainval35k (train2014 + valminusminival2014) and minival2014"
    run "$PYTHON" "$(dirname "$0")/coco_splits.py" "$COCO"
fi
echo "COCO 2014 is in $COCO"
