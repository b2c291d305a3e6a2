"""utils.training.validation: eval.py's numbers on the live training model, its state and the random streams left
alone, and the same mAP from two DDP ranks as from one process."""

from __future__ import annotations

import json
import math
import os
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from data import VOC_CLASSES, VOCAnnotationTransform, VOCDetection, get_config
from data.synthetic import make_image, make_voc_dataset
from ssd import SSD, build_ssd
from utils.training import validation
from utils.training.runtime import Runtime
from utils.training.validation import ValidationResult, Validator

NUM_TEST = 4


def _tiny_ssd(num_classes: int = 21, batch_norm: bool = False, dataset: str = "VOC") -> SSD:
    """A fixed-seed train-phase SSD300. The conv4_3 and conv7 heads are muted (background logit +20): the random
    detector's remaining boxes are large enough to hit the synthetic objects, so the mAP compared is not zero."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = build_ssd("train", 300, num_classes, get_config(dataset, 300), batch_norm=batch_norm)
    with torch.no_grad():
        for head in list(net.conf)[:2]:
            head.bias[::num_classes] = 20.0
    return net


def _voc(root: str | Path) -> VOCDetection:
    target = VOCAnnotationTransform(VOC_CLASSES, keep_difficult=True)
    return VOCDetection(str(root), [("2007", "test")], target_transform=target, skip_bad=False)


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    return make_voc_dataset(tmp_path_factory.mktemp("voc"), num_train=0, num_test=NUM_TEST, seed=0)


@pytest.fixture(scope="module")
def reference(voc_root: str) -> ValidationResult:
    """The single-process VOC07 result on 3 of the 4 test pictures, batch 1, one thread (as each DDP rank runs)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return Validator(_voc(voc_root), VOC_CLASSES, 300, "voc07", num_images=3, batch_size=1).evaluate(_tiny_ssd())
    finally:
        torch.set_num_threads(threads)


# ----------------------------------------------------------------------------- the view
def test_view_is_the_test_phase_forward_on_shared_parameters() -> None:
    net = _tiny_ssd().eval()
    view = validation.scoring_view(net)
    assert view.size == 300 and view.detect.top_k == 200 and view.detect.nms_thresh == 0.45
    assert view.detect.conf_thresh == 0.01 and view.detect.variance == (0.1, 0.2)
    own, shared = list(net.parameters()), list(view.parameters())
    assert len(shared) == len(own) and all(a is b for a, b in zip(shared, own))

    test_net = build_ssd("test", 300, 21)
    test_net.load_state_dict(net.state_dict())
    x = torch.randn(1, 3, 300, 300, generator=torch.Generator().manual_seed(1)) * 60
    expected = test_net.eval()(x)
    got = view(x)
    assert got.shape == (1, 21, 200, 5) and torch.equal(got, expected)
    assert (got[0, 1:, :, 0] > 0).sum() > 0  # it detects something to compare


# ----------------------------------------------------------------------------- eval.py's numbers
@pytest.mark.slow
def test_same_map_as_eval_cli(tmp_path: Path, voc_root: str, reference: ValidationResult, scripts) -> None:
    weights, out = tmp_path / "ssd300_VOC_7.pth", tmp_path / "eval"
    torch.save(_tiny_ssd().state_dict(), weights)
    argv = ["--voc_root", voc_root, "--trained_model", str(weights), "--save_folder", str(out), "--cuda", "false"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert scripts.eval.main(argv + ["--num_images", "3", "--batch_size", "1", "--num_workers", "0"]) == 0
    finally:
        torch.set_num_threads(threads)
    results = json.loads((out / "results.json").read_text())
    assert results["num_images"] == reference.num_images == 3 and reference.metric == results["metric"] == "voc07"
    assert reference.value > 0.01
    assert abs(reference.value - results["mAP"]) <= 1e-9
    assert reference.per_class.keys() == results["ap"].keys()
    for name, ap in results["ap"].items():
        assert (ap is None and reference.per_class[name] is None) or abs(reference.per_class[name] - ap) <= 1e-9
    assert reference.stats == {} and reference.seconds > 0


# ----------------------------------------------------------------------------- state and random streams
@pytest.mark.parametrize("num_workers", [0, 1])
def test_model_state_and_random_streams_untouched(voc_root: str, num_workers: int) -> None:
    net = _tiny_ssd(batch_norm=True)
    g = torch.Generator().manual_seed(2)
    for bn in (m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)):  # statistics a training left
        bn.running_mean.uniform_(-1.0, 1.0, generator=g)
        bn.running_var.uniform_(0.5, 2.0, generator=g)
        bn.num_batches_tracked += 7
    net.extras[0].eval()  # a module the training keeps frozen
    before = {k: v.clone() for k, v in net.state_dict().items()}
    modes = [m.training for m in net.modules()]
    torch_state, np_state, py_state = torch.get_rng_state(), np.random.get_state(), random.getstate()  # noqa: NPY002

    validator = Validator(_voc(voc_root), VOC_CLASSES, 300, "voc10", num_images=1, num_workers=num_workers)
    result = validator.evaluate(net)

    assert torch.equal(torch.get_rng_state(), torch_state)
    after_np = np.random.get_state()  # noqa: NPY002 - the global stream is what must stay untouched
    assert after_np[0] == np_state[0] and np.array_equal(after_np[1], np_state[1]) and after_np[2:] == np_state[2:]
    assert random.getstate() == py_state
    after = net.state_dict()
    assert after.keys() == before.keys() and all(torch.equal(after[k], v) for k, v in before.items())
    assert before["vgg.1.num_batches_tracked"].item() == 7
    assert [m.training for m in net.modules()] == modes and net.training and not net.extras[0].training
    assert torch.is_grad_enabled() and all(p.grad is None for p in net.parameters())
    assert result.metric == "voc10" and result.num_images == 1 and math.isfinite(result.value)


def test_errors_leave_the_model_in_training_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="metric must be one of"):
        Validator([], VOC_CLASSES, 300, "voc12")
    root = Path(make_voc_dataset(tmp_path / "voc", num_train=0, num_test=2, seed=3))
    swapped = [VOC_CLASSES[1], VOC_CLASSES[0], *VOC_CLASSES[2:]]
    with pytest.raises(ValueError, match="class 0 is 'aeroplane', the model's is 'bicycle' \\(20 vs 20 classes\\)"):
        Validator(_voc(root), swapped, 300)
    validator = Validator(_voc(root), VOC_CLASSES, 300, num_images=1)
    net = _tiny_ssd()
    with pytest.raises(ValueError, match="takes 300 px pictures, the validator was built for 512"):
        Validator(_voc(root), VOC_CLASSES, 512, num_images=1).evaluate(net)
    picture = root / "VOC2007" / "JPEGImages" / f"{validator.dataset.ids[validator.indices[0]][1]}.jpg"
    picture.unlink()
    with pytest.raises(ValueError, match=picture.name):
        validator.evaluate(net)
    assert net.training

    xml = root / "VOC2007" / "Annotations" / picture.with_suffix(".xml").name
    xml.write_text("<annotation><object>")
    with pytest.raises(ValueError, match=xml.name):
        Validator(_voc(root), VOC_CLASSES, 300, num_images=1)  # read at construction, not at the first evaluation


# ----------------------------------------------------------------------------- DDP
def _rank_main(rank: int, world_size: int, port: int, voc_root: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        rt = Runtime(device=torch.device("cpu"), rank=rank, world_size=world_size)
        net, dataset = _tiny_ssd(), _voc(voc_root)
        three = Validator(dataset, VOC_CLASSES, 300, "voc07", num_images=3, batch_size=1, rt=rt).evaluate(net)
        one = Validator(dataset, VOC_CLASSES, 300, "voc07", num_images=1, batch_size=1, rt=rt).evaluate(net)
        with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
            json.dump({"three": three.value, "per_class": three.per_class, "one": one.value}, f)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_gloo_ranks_give_the_single_process_map(
    tmp_path: Path, voc_root: str, reference: ValidationResult, free_port: int
) -> None:
    mp.spawn(_rank_main, args=(2, free_port, voc_root, str(tmp_path)), nprocs=2, join=True)
    single_one = Validator(_voc(voc_root), VOC_CLASSES, 300, "voc07", num_images=1, batch_size=1)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = single_one.evaluate(_tiny_ssd()).value
    finally:
        torch.set_num_threads(threads)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert reference.value > 0.01
    for got in ranks:  # rank 0 scored pictures 0 and 2 of the subset, rank 1 picture 1; with K = 1 rank 1 none
        assert abs(got["three"] - reference.value) <= 1e-9 and abs(got["one"] - one) <= 1e-9
        assert got["per_class"] == pytest.approx(reference.per_class, abs=1e-9)


# ----------------------------------------------------------------------------- COCO
def _tiny_coco(root: Path) -> Path:
    """Two synthetic pictures as a COCO split with two custom categories."""
    names = ("car", "bottle")
    rng = np.random.default_rng(5)
    (root / "annotations").mkdir(parents=True)
    (root / "images" / "val2014").mkdir(parents=True)
    images, annotations = [], []
    for image_id, (w, h) in ((3, (320, 240)), (8, (260, 300))):
        img, boxes, labels, _ = make_image(rng, w, h, classes=names, empty_prob=0.0, difficult_prob=0.0)
        cv2.imwrite(str(root / "images" / "val2014" / f"{image_id}.jpg"), img)
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": w, "height": h})
        for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels):
            bw, bh = x2 - x1 + 1, y2 - y1 + 1
            cat = names.index(VOC_CLASSES[label]) + 1
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "bbox": [x1, y1, bw, bh], "area": bw * bh, "iscrowd": 0})  # fmt: skip
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(names)]
    data = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / "instances_val2014.json").write_text(json.dumps(data))
    return root


@pytest.mark.slow
def test_coco_ap_as_eval_cli(tmp_path: Path, scripts) -> None:
    pytest.importorskip("pycocotools")
    from data import COCODetection

    root = _tiny_coco(tmp_path / "coco")
    net = _tiny_ssd(num_classes=3, dataset="COCO")  # a COCO run's priors, as eval.py builds for --dataset COCO
    weights, out, classes = tmp_path / "ssd300_COCO_5.pth", tmp_path / "eval", tmp_path / "classes.txt"
    torch.save(net.state_dict(), weights)
    classes.write_text("car\nbottle\n")
    argv = ["--dataset", "COCO", "--coco_root", str(root), "--trained_model", str(weights), "--cuda", "false"]
    argv += ["--classes", str(classes)]
    assert scripts.eval.main(argv + ["--save_folder", str(out), "--batch_size", "2", "--num_workers", "0"]) == 0
    expected = json.loads((out / "results.json").read_text())

    dataset = COCODetection(str(root), "val2014", skip_bad=False)
    result = Validator(dataset, ["car", "bottle"], 300, "coco", batch_size=2).evaluate(net)
    assert result.metric == "coco" and result.num_images == expected["num_images"] == 2 and result.per_class == {}
    assert result.value == result.stats["AP"] and result.value > 0
    for key, value in result.stats.items():
        assert abs(value - expected[key]) <= 1e-9, key
    with pytest.raises(ValueError, match="unknown class"):
        Validator(dataset, ["car", "boat"], 300, "coco")
    split = json.loads((root / "annotations" / "instances_val2014.json").read_text())
    (root / "annotations" / "instances_test2015.json").write_text(json.dumps({**split, "annotations": []}))
    with pytest.raises(ValueError, match="test2015 has no annotations"):
        Validator(COCODetection(str(root), "test2015", skip_bad=False), ["car", "bottle"], 300, "coco")
