"""Build the COCO 2014 splits of the SSD paper from the downloaded files (``COCO2014.sh --minival`` runs this).

    python data/scripts/coco_splits.py COCO_ROOT

Reads ``COCO_ROOT/annotations/instances_{train2014,minival2014,valminusminival2014}.json`` and writes
``instances_trainval35k.json`` (train2014 + valminusminival2014: their pictures, annotations and the shared
categories), then fills ``COCO_ROOT/images/trainval35k/`` and ``COCO_ROOT/images/minival2014/`` with relative
links to the pictures in ``images/train2014/`` and ``images/val2014/``, so that ``COCODetection(root, "trainval35k")``
and ``eval.py --set_type minival2014`` find them. Uses only the standard library.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any


def _load(root: str, split: str) -> dict[str, Any]:
    path = os.path.join(root, "annotations", f"instances_{split}.json")
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"coco_splits.py: error: {path} is missing") from None
    except json.JSONDecodeError as err:
        raise SystemExit(f"coco_splits.py: error: {path} is not valid JSON ({err.msg} at line {err.lineno})") from None


def merge(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One annotation record holding the pictures and annotations of ``parts`` (whose categories must agree)."""
    categories = parts[0]["categories"]
    if any(part["categories"] != categories for part in parts[1:]):
        raise SystemExit("coco_splits.py: error: the annotation files list different categories")
    merged = {key: value for key, value in parts[0].items() if key not in ("images", "annotations")}
    merged["images"] = [image for part in parts for image in part["images"]]
    merged["annotations"] = [ann for part in parts for ann in part["annotations"]]
    return merged


def link_images(root: str, split: str, record: dict[str, Any]) -> int:
    """Link every picture of ``record`` into ``images/<split>/``; a file name ``COCO_<source>_<id>.jpg`` says which
    folder (train2014 or val2014) holds it. Returns the number of links made."""
    folder = os.path.join(root, "images", split)
    os.makedirs(folder, exist_ok=True)
    made = 0
    for image in record["images"]:
        name = image["file_name"]
        source = name.split("_")[1] if name.count("_") >= 2 else ""
        target = os.path.join("..", source, name)
        if not os.path.isfile(os.path.join(folder, target)):
            raise SystemExit(f"coco_splits.py: error: {name} is not in {os.path.join(root, 'images', source or '?')}")
        link = os.path.join(folder, name)
        if not os.path.lexists(link):
            os.symlink(target, link)
            made += 1
    return made


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    if len(args) != 1:
        raise SystemExit("usage: python data/scripts/coco_splits.py COCO_ROOT")
    root = args[0]
    trainval = merge([_load(root, "train2014"), _load(root, "valminusminival2014")])
    out = os.path.join(root, "annotations", "instances_trainval35k.json")
    tmp = out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(trainval, f)
    os.replace(tmp, out)
    minival = _load(root, "minival2014")
    for split, record in (("trainval35k", trainval), ("minival2014", minival)):
        made = link_images(root, split, record)
        print(f"{split}: {len(record['images'])} pictures, {len(record['annotations'])} annotations ({made} new links)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
