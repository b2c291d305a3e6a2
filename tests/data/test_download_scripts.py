"""data/scripts/*.sh: POSIX sh (dash) as well as bash, run end to end against a fake curl serving tiny archives."""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from benchmarks.repo import REPO_ROOT

SCRIPTS = REPO_ROOT / "data" / "scripts"
SHELLS = [
    pytest.param(name, marks=pytest.mark.skipif(not shutil.which(name), reason=f"no {name}"))
    for name in ("dash", "bash")
]

# Serves $FAKE_ARCHIVES/<last part of the URL> to "-o FILE", or fails like curl -f on a 404.
FAKE_CURL = """#!/bin/sh
out=""; url=""
while [ $# -gt 0 ]; do
    case "$1" in
        -o|-C|--retry) [ "$1" = -o ] && out="$2"; shift 2 ;;
        *) url="$1"; shift ;;
    esac
done
src="$FAKE_ARCHIVES/${url##*/}"
[ -f "$src" ] || { echo "curl: (22) The requested URL returned error: 404" >&2; exit 22; }
cp "$src" "$out"
"""


def _tar(path: Path, files: dict[str, bytes], gz: bool = False) -> None:
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def _zip(path: Path, files: dict[str, bytes]) -> None:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)


def _run(shell: str, script: str, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir(exist_ok=True)
    (fake_bin / "curl").write_text(FAKE_CURL)
    (fake_bin / "curl").chmod(0o755)
    full_env = {**os.environ, "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}", "PYTHON": sys.executable}
    full_env.update(FAKE_ARCHIVES=str(tmp_path / "archives"), **env)
    (tmp_path / "archives").mkdir(exist_ok=True)
    cmd = [shell, str(SCRIPTS / script), *args]
    return subprocess.run(cmd, env=full_env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("script", ["VOC2007.sh", "VOC2012.sh", "COCO2014.sh", "common.sh"])
def test_scripts_parse_under_posix_sh(script: str) -> None:
    for shell in ("sh", "bash"):
        done = subprocess.run([shell, "-n", str(SCRIPTS / script)], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


@pytest.mark.parametrize("shell", SHELLS)
def test_voc2007_downloads_and_extracts(shell: str, tmp_path: Path) -> None:
    archives = tmp_path / "archives"
    archives.mkdir()
    _tar(archives / "VOCtrainval_06-Nov-2007.tar", {"VOCdevkit/VOC2007/ImageSets/Main/trainval.txt": b"000005\n"})
    _tar(archives / "VOCtest_06-Nov-2007.tar", {"VOCdevkit/VOC2007/ImageSets/Main/test.txt": b"000001\n"})
    target = tmp_path / "data"
    done = _run(shell, "VOC2007.sh", tmp_path, str(target))
    assert done.returncode == 0, done.stderr
    main = target / "VOCdevkit" / "VOC2007" / "ImageSets" / "Main"
    assert (main / "trainval.txt").read_text() == "000005\n" and (main / "test.txt").read_text() == "000001\n"
    assert sorted(p.name for p in target.iterdir()) == ["VOCdevkit"]  # the archives are removed
    assert f"VOC2007 is in {target}/VOCdevkit/VOC2007" in done.stdout


@pytest.mark.parametrize("shell", SHELLS)
def test_voc2012_target_from_ssd_data_root_and_dry_run(shell: str, tmp_path: Path) -> None:
    _tar(tmp_path / "VOCtrainval_11-May-2012.tar", {"VOCdevkit/VOC2012/ImageSets/Main/trainval.txt": b"x\n"})
    target = tmp_path / "root"
    dry = _run(shell, "VOC2012.sh", tmp_path, "--dry_run", SSD_DATA_ROOT=str(target))
    assert dry.returncode == 0, dry.stderr
    assert f"+ fetch http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar {target}/" in dry.stdout
    assert not target.exists()
    shutil.move(tmp_path / "VOCtrainval_11-May-2012.tar", tmp_path / "archives")
    done = _run(shell, "VOC2012.sh", tmp_path, SSD_DATA_ROOT=str(target))
    assert done.returncode == 0, done.stderr
    assert (target / "VOCdevkit" / "VOC2012" / "ImageSets" / "Main" / "trainval.txt").is_file()
    bad = _run(shell, "VOC2012.sh", tmp_path, "--bogus")
    assert bad.returncode == 2 and "unknown option --bogus" in bad.stderr


def _coco_archives(archives: Path) -> None:
    categories = [{"id": 1, "name": "person", "supercategory": "person"}]

    def record(image_ids: list[int], split: str) -> bytes:
        images = [{"id": i, "file_name": f"COCO_{split}_{i:012d}.jpg", "width": 8, "height": 6} for i in image_ids]
        anns = [{"id": 100 + i, "image_id": i, "category_id": 1, "bbox": [1, 1, 3, 2], "area": 6, "iscrowd": 0}
                for i in image_ids]  # fmt: skip
        return json.dumps({"images": images, "annotations": anns, "categories": categories}).encode()

    archives.mkdir(exist_ok=True)
    _zip(archives / "annotations_trainval2014.zip", {
        "annotations/instances_train2014.json": record([1], "train2014"),
        "annotations/instances_val2014.json": record([2, 3], "val2014"),
    })  # fmt: skip
    _zip(archives / "train2014.zip", {"train2014/COCO_train2014_000000000001.jpg": b"jpg1"})
    _zip(archives / "val2014.zip", {f"val2014/COCO_val2014_{i:012d}.jpg": b"jpg" for i in (2, 3)})
    _tar(archives / "coco_annotations_minival.tgz", {
        "annotations/instances_minival2014.json": record([3], "val2014"),
        "annotations/instances_valminusminival2014.json": record([2], "val2014"),
    }, gz=True)  # fmt: skip


@pytest.mark.skipif(not shutil.which("unzip"), reason="COCO2014.sh needs unzip")
@pytest.mark.parametrize("shell", SHELLS)
def test_coco2014_with_minival_builds_trainval35k(shell: str, tmp_path: Path) -> None:
    _coco_archives(tmp_path / "archives")
    target = tmp_path / "data"
    done = _run(shell, "COCO2014.sh", tmp_path, "--minival", str(target))
    assert done.returncode == 0, done.stderr
    coco = target / "coco"
    assert sorted(p.name for p in coco.iterdir()) == ["annotations", "images"]  # archives and temporary files gone
    trainval = json.loads((coco / "annotations" / "instances_trainval35k.json").read_text())
    assert [image["id"] for image in trainval["images"]] == [1, 2]
    assert [ann["id"] for ann in trainval["annotations"]] == [101, 102]
    assert (coco / "images" / "trainval35k" / "COCO_train2014_000000000001.jpg").read_bytes() == b"jpg1"
    assert (coco / "images" / "trainval35k" / "COCO_val2014_000000000002.jpg").read_bytes() == b"jpg"
    assert os.listdir(coco / "images" / "minival2014") == ["COCO_val2014_000000000003.jpg"]
    assert (coco / "annotations" / "instances_minival2014.json").is_file()
    assert "trainval35k: 2 pictures, 2 annotations" in done.stdout


@pytest.mark.skipif(not shutil.which("unzip"), reason="COCO2014.sh needs unzip")
@pytest.mark.parametrize("shell", SHELLS)
def test_coco2014_says_where_minival_files_come_from_when_it_cannot_fetch_them(shell: str, tmp_path: Path) -> None:
    _coco_archives(tmp_path / "archives")
    (tmp_path / "archives" / "coco_annotations_minival.tgz").unlink()
    target = tmp_path / "data"
    done = _run(shell, "COCO2014.sh", tmp_path, str(target), "--minival")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("COCO2014.sh: error: cannot fetch https://dl.fbaipublicfiles.com/detectron/coco/")
    assert "instances_minival2014.json and instances_valminusminival2014.json" in last
    assert f"into {target}/coco/annotations/ by hand" in last
    assert (target / "coco" / "images" / "val2014" / "COCO_val2014_000000000003.jpg").is_file()  # the rest is kept
