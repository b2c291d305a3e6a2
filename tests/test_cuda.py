"""The CUDA paths: mixed-precision training steps, the loss's mask path, Detect under autocast, SyncBatchNorm,
eval.py/test.py on the GPU and exact resume on the GPU.

Every test here is marked ``cuda`` and skipped without a GPU; ``scripts/gpu_check.sh`` runs them
(``pytest -m cuda``). Inputs are tiny: a few SSD300 steps at batch 2 and a handful of synthetic pictures.
"""

from __future__ import annotations

import inspect
import json
import math
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from torch import Tensor, nn

from data import VOC_CLASSES, voc
from layers import Detect, MultiBoxLoss, PriorBox, encode
from ssd import build_ssd

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (scripts/gpu_check.sh runs these)"),
    pytest.mark.filterwarnings("ignore:--basenet none:UserWarning"),
]

CUDA = torch.device("cuda")
NUM_CLASSES = 21
# The classes data.synthetic draws, as labels of the 21-class VOC model (0 = background).
SYNTHETIC = ("car", "boat", "sheep", "bottle", "person", "tvmonitor")
SYNTHETIC_LABELS = [VOC_CLASSES.index(name) + 1 for name in SYNTHETIC]


@pytest.fixture(scope="module")
def voc_root(tmp_path_factory: pytest.TempPathFactory) -> str:
    from data.synthetic import make_voc_dataset

    return make_voc_dataset(tmp_path_factory.mktemp("synthetic_voc"), num_train=6, num_test=4, seed=0)


@pytest.fixture()
def cudnn_state() -> Iterator[None]:
    """Restore the cuDNN and determinism switches that a test (or train.py) changes."""
    saved = (
        torch.backends.cudnn.benchmark,
        torch.backends.cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = saved[:2]
    torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


def _images(batch: int, device: torch.device, seed: int = 0) -> Tensor:
    """Tensor[batch, 3, 300, 300]: seeded pictures on the scale of pixels minus MEANS."""
    gen = torch.Generator().manual_seed(seed)
    return (torch.rand(batch, 3, 300, 300, generator=gen) * 255 - 120).to(device)


def _targets(device: torch.device) -> list[Tensor]:
    """Two images: two boxes, then one box; rows (x1, y1, x2, y2, label) in [0, 1]."""
    return [
        torch.tensor([[0.10, 0.10, 0.50, 0.60, 3.0], [0.55, 0.20, 0.95, 0.90, 14.0]], device=device),
        torch.tensor([[0.30, 0.30, 0.70, 0.70, 6.0]], device=device),
    ]


def _criterion(select_rows: bool | None = None) -> MultiBoxLoss:
    """The training loss; ``select_rows`` picks the row path (True) or the mask path (False)."""
    args = (NUM_CLASSES, 0.5, True, 0, True, 3, 0.5, False)
    if select_rows is None:
        return MultiBoxLoss(*args)
    if "select_rows" in inspect.signature(MultiBoxLoss).parameters:
        return MultiBoxLoss(*args, select_rows=select_rows)
    loss = MultiBoxLoss(*args)
    loss.select_rows = select_rows
    return loss


# ----------------------------------------------------------------------------------------------- training steps


def _train_steps(amp: torch.dtype | None, steps: int, device: torch.device = CUDA) -> tuple[list[float], int, int]:
    """SGD steps of a seeded SSD300 in channels_last under autocast ``amp`` until ``steps`` were applied.

    fp16 goes through a GradScaler, which skips the steps whose gradients overflow (and halves its scale), so it
    may take more attempts (at most 16).
    Returns:
        (the loss of each attempt, weight tensors changed, weight tensors in all).
    """
    torch.manual_seed(0)
    net = build_ssd("train", 300, NUM_CLASSES).to(device).to(memory_format=torch.channels_last)
    criterion = _criterion()
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=amp is torch.float16)
    images = _images(2, device).contiguous(memory_format=torch.channels_last)
    targets = _targets(device)
    weights = [p for name, p in net.named_parameters() if name.endswith("weight")]
    before = [w.detach().clone() for w in weights]
    losses: list[float] = []
    applied = 0
    while applied < steps and len(losses) < 16:
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            loc, conf, priors = net(images)
        loss_l, loss_c = criterion((loc.float(), conf.float(), priors.float()), targets)
        loss = loss_l + loss_c
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scale = scaler.get_scale()
        scaler.step(optimizer)
        scaler.update()
        applied += scaler.get_scale() >= scale  # a skipped step lowers the scale
        losses.append(loss.item())
    changed = sum(not torch.equal(b, w) for b, w in zip(before, weights))
    return losses, changed, len(weights)


@pytest.mark.parametrize(
    ("amp", "rel"),
    [(None, None), (torch.bfloat16, 0.02), (torch.float16, 0.01)],
    ids=["fp32", "bf16", "fp16"],
)
def test_training_steps_in_each_precision(amp: torch.dtype | None, rel: float | None) -> None:
    losses, changed, total = _train_steps(amp, steps=3)
    assert all(math.isfinite(v) and v > 0 for v in losses), losses
    assert len(losses) < 16, f"every fp16 step overflowed: {losses}"
    assert changed == total  # weight decay moves every weight once a step is applied
    assert losses[-1] < 0.9 * losses[0], losses  # the first steps from random weights lower the loss a lot
    if amp is not None:
        fp32_first = _train_steps(None, steps=1)[0][0]
        assert losses[0] == pytest.approx(fp32_first, rel=rel)


# ----------------------------------------------------------------------------------------------- the loss


def test_mask_path_equals_row_path_on_cuda() -> None:
    """Same loss and gradients whether the chosen priors are indexed (row path) or weighed by a mask."""
    torch.manual_seed(0)
    priors = build_ssd("train", 300, NUM_CLASSES).priors.to(CUDA)
    targets = [*_targets(CUDA), torch.zeros(0, 5, device=CUDA)]  # the third image has no boxes
    loc = torch.randn(3, priors.shape[0], 4, device=CUDA)
    conf = torch.randn(3, priors.shape[0], NUM_CLASSES, device=CUDA)
    results = {}
    for select_rows in (True, False):
        loc_g, conf_g = loc.clone().requires_grad_(), conf.clone().requires_grad_()
        loss_l, loss_c = _criterion(select_rows)((loc_g, conf_g, priors), targets)
        (loss_l + loss_c).backward()
        results[select_rows] = (loss_l.detach(), loss_c.detach(), loc_g.grad, conf_g.grad)
    rows, masks = results[True], results[False]
    assert rows[0] > 0 and rows[1] > 0
    for a, b in zip(rows, masks):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    assert (masks[2][2] == 0).all() and (masks[2][:2] != 0).any()  # no box, no offsets to learn


# ----------------------------------------------------------------------------------------------- Detect


def _detect_inputs(device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """Offsets, probabilities and priors where 30 (prior, class) pairs score above the threshold, far apart.

    The priors are the 0.1-wide squares of the 38x38 map (centres 1/37.5 apart): 25 from every 6th cell of every
    6th row (IoU 0 with each other), scoring 0.90, 0.87, ..., 0.18 for classes 1..5 in turn; and the right
    neighbours of the first five (IoU 0.58 > 0.45 with them), of the same class and 0.1 lower, which NMS removes.
    Every other score is 0.002, under the 0.01 threshold; the offsets are small.
    Returns:
        loc (Tensor[1, P, 4]), conf (Tensor[1, P, 21]), priors (Tensor[P, 4]).
    """
    priors = PriorBox(voc).forward()
    cells = [6 * row * 38 + 6 * col for row in range(5) for col in range(5)]
    conf = torch.full((1, priors.shape[0], NUM_CLASSES), 0.002)
    for rank, cell in enumerate(cells):
        label, score = 1 + rank % 5, 0.90 - 0.03 * rank
        conf[0, 4 * cell, label] = score  # 4 boxes per location; box 0 is the small square
        if rank < 5:
            conf[0, 4 * (cell + 1), label] = score - 0.1
    conf[..., 0] = 1 - conf[..., 1:].sum(-1)
    loc = torch.randn(1, priors.shape[0], 4, generator=torch.Generator().manual_seed(0)) * 0.1
    return loc.to(device), conf.to(device), priors.to(device)


@pytest.mark.parametrize("amp", [torch.bfloat16, torch.float16], ids=["bf16", "fp16"])
def test_detect_under_autocast_matches_float32(amp: torch.dtype) -> None:
    loc, conf, priors = _detect_inputs(CUDA)
    detect = Detect(NUM_CLASSES, 0, 200, 0.01, 0.45)
    reference = detect(loc, conf, priors)
    with torch.autocast("cuda", dtype=amp):
        low = detect(loc.to(amp), conf.to(amp), priors)
    assert low.dtype == torch.float32 and low.shape == reference.shape == (1, NUM_CLASSES, 200, 5)
    kept = reference[..., 0] > 0
    assert int(kept.sum()) == 25  # the five right neighbours are suppressed
    assert torch.equal(low[..., 0] > 0, kept)
    torch.testing.assert_close(low[..., 0], reference[..., 0], rtol=0, atol=5e-3)  # bf16 keeps 8 bits
    torch.testing.assert_close(low[..., 1:], reference[..., 1:], rtol=0, atol=2e-3)


# ----------------------------------------------------------------------------------------------- SyncBatchNorm


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_sync_batch_norm_conversion_matches_batch_norm() -> None:
    net = build_ssd("train", 300, NUM_CLASSES, batch_norm=True).to(CUDA).train()
    sync = build_ssd("train", 300, NUM_CLASSES, batch_norm=True)
    sync.load_state_dict(net.state_dict())
    sync = nn.SyncBatchNorm.convert_sync_batchnorm(sync).to(CUDA).train()
    num_bn = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    assert num_bn > 0
    assert sum(isinstance(m, nn.SyncBatchNorm) for m in sync.modules()) == num_bn
    assert not any(isinstance(m, nn.BatchNorm2d) for m in sync.modules())
    assert sync.state_dict().keys() == net.state_dict().keys()

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{_free_port()}", rank=0, world_size=1)
    try:
        images = _images(2, CUDA, seed=1)
        outputs = []
        for model in (net, sync):
            loc, conf, _ = model(images)
            (loc.square().mean() + conf.square().mean()).backward()
            outputs.append((loc.detach(), conf.detach()))
    finally:
        dist.destroy_process_group()
    torch.testing.assert_close(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
    for (name, a), b in zip(net.state_dict().items(), sync.state_dict().values()):
        if "running" in name:  # train mode updated the running statistics identically
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    for (name, a), b in zip(net.named_parameters(), sync.parameters()):
        torch.testing.assert_close(b.grad, a.grad, rtol=1e-4, atol=1e-6, msg=name)


# ----------------------------------------------------------------------------------------------- eval.py, test.py


# The designed model: its heads ignore the features (zero weights), so the biases decide. Background wins at every
# prior (other scores ~5e-5, under every threshold) but box 1 of the 1x1 map, where the synthetic classes score
# softmax(CONFIDENT_LOGITS, background and the other classes 0) and the offsets place the box on a chosen object.
CONFIDENT_LOGITS = [4.0 + 0.5 * k for k in range(len(SYNTHETIC))]


def _first_truth(voc_root: str) -> list[float]:
    """(x1, y1, x2, y2) relative: the first non-difficult object of the first test picture that has one."""
    import xml.etree.ElementTree as ET

    from data import VOCAnnotationTransform

    main = Path(voc_root, "VOC2007")
    for image_id in (main / "ImageSets" / "Main" / "test.txt").read_text().split():
        xml = ET.parse(main / "Annotations" / f"{image_id}.xml").getroot()
        width, height = int(xml.findtext("size/width")), int(xml.findtext("size/height"))
        rows = VOCAnnotationTransform()(xml, width, height)
        if rows:
            return [float(v) for v in rows[0][:4]]
    raise AssertionError("no object in the synthetic test split")


def _confident_state_dict(box: list[float]) -> dict[str, Tensor]:
    """A VOC SSD300 that finds each synthetic class at ``box`` (relative x1, y1, x2, y2) in every picture."""
    torch.manual_seed(0)
    sd = build_ssd("train", 300, NUM_CLASSES).state_dict()
    for key in sd:
        if key.startswith(("loc.", "conf.")):
            sd[key].zero_()
    for key in [k for k in sd if k.startswith("conf.") and k.endswith(".bias")]:
        sd[key].view(-1, NUM_CLASSES)[:, 0] = 10.0
    centre = sd["conf.5.bias"].view(-1, NUM_CLASSES)[1]
    centre[0] = 0.0
    centre[SYNTHETIC_LABELS] = torch.tensor(CONFIDENT_LOGITS)
    prior = PriorBox(voc).forward()[-3:-2]  # the 1x1 map's 4 boxes come last; box 1 is the larger square
    sd["loc.5.bias"].view(-1, 4)[1] = encode(torch.tensor([box]), prior, (0.1, 0.2))[0]
    return sd


def _expected_scores() -> dict[str, float]:
    logits = torch.zeros(NUM_CLASSES)
    logits[SYNTHETIC_LABELS] = torch.tensor(CONFIDENT_LOGITS)
    probs = logits.softmax(0)
    return {name: float(probs[label]) for name, label in zip(SYNTHETIC, SYNTHETIC_LABELS)}


@pytest.fixture(scope="module")
def confident_model(voc_root: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[float]]:
    """(the designed model's .pth, the relative box it finds)."""
    box = _first_truth(voc_root)
    path = tmp_path_factory.mktemp("model") / "ssd300_VOC_confident.pth"
    torch.save(_confident_state_dict(box), path)
    return str(path), box


def test_eval_on_cuda_gives_the_cpu_results(
    voc_root: str, confident_model: tuple[str, list[float]], tmp_path: Path, scripts: SimpleNamespace
) -> None:
    results = {}
    for cuda in ("true", "false"):
        out = tmp_path / f"eval_cuda_{cuda}"
        argv = ["--voc_root", voc_root, "--trained_model", confident_model[0], "--save_folder", str(out)]
        assert scripts.eval.main([*argv, "--cuda", cuda, "--num_workers", "0", "--batch_size", "2"]) == 0
        results[cuda] = json.loads((out / "results.json").read_text())
    on_gpu, on_cpu = results["true"], results["false"]
    assert on_gpu["num_images"] == on_cpu["num_images"] == 4 and on_gpu["metric"] == "voc07"
    assert on_gpu["ap"].keys() == on_cpu["ap"].keys() == set(VOC_CLASSES)
    for name, ap in on_cpu["ap"].items():
        assert (on_gpu["ap"][name] is None) == (ap is None)
        if ap is not None:
            assert on_gpu["ap"][name] == pytest.approx(ap, abs=1e-6)
    # the detection placed on an object finds it: its class has a positive AP, so the mean is positive too
    assert 0 < on_gpu["mAP"] == pytest.approx(on_cpu["mAP"], abs=1e-6)


def test_test_script_on_cuda_draws_the_expected_detections(
    voc_root: str, confident_model: tuple[str, list[float]], tmp_path: Path, scripts: SimpleNamespace
) -> None:
    import cv2

    model, box = confident_model
    pictures = sorted((Path(voc_root) / "VOC2007" / "JPEGImages").glob("*.jpg"))[-2:]
    out = tmp_path / "detections"
    argv = [*map(str, pictures), "--trained_model", model, "--dataset", "VOC", "--save_folder", str(out)]
    assert scripts.test.main([*argv, "--cuda", "true", "--visual_threshold", "0.02"]) == 0

    records = json.loads((out / "detections.json").read_text())
    expected = _expected_scores()
    assert [Path(r["image"]).name for r in records] == [p.name for p in pictures]
    for record, picture in zip(records, pictures):
        height, width = cv2.imread(str(picture)).shape[:2]
        assert (record["width"], record["height"]) == (width, height)
        assert (out / f"{picture.stem}_det.jpg").is_file()
        found = {d["label"]: d for d in record["detections"]}
        assert found.keys() == expected.keys()
        pixels = [box[0] * width, box[1] * height, box[2] * width, box[3] * height]
        for name, score in expected.items():
            assert found[name]["score"] == pytest.approx(score, abs=1e-4)
            assert found[name]["box"] == pytest.approx(pixels, abs=0.5)
        scores = [d["score"] for d in record["detections"]]
        assert scores == sorted(scores, reverse=True)


# ----------------------------------------------------------------------------------------------- resume


def _train_argv(root: str, folder: Path, amp: str, *extra: str) -> list[str]:
    return [
        "--dataset_root", root, "--save_folder", str(folder), "--basenet", "none", "--batch_size", "2",
        "--num_workers", "0", "--cuda", "true", "--seed", "3", "--log_every", "1", "--save_every", "100",
        "--warmup", "2", "--lr_steps", "3", "--clip_grad", "5", "--amp", amp, *extra,
    ]  # fmt: skip


def _log_rows(folder: Path) -> list[tuple[str, ...]]:
    """train_log.csv's (iter, loss_l, loss_c, loss, lr) rows as written, without the timing column."""
    lines = (folder / "train_log.csv").read_text().splitlines()
    header = lines[0].split(",")
    assert header == ["iter", "loss_l", "loss_c", "loss", "lr", "img_per_s"]
    return [tuple(line.split(",")[:5]) for line in lines[1:]]


@pytest.mark.parametrize("amp", ["none", "fp16"])
def test_resume_on_cuda_continues_exactly(
    voc_root: str, tmp_path: Path, amp: str, cudnn_state: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """4 iterations in one go == 2, stop, --resume _last.ckpt, 2 more: the same logged losses and final weights.

    Batch 2 of 6 pictures: the resumed run starts mid-epoch and crosses into the next one; the schedule has a
    warm-up and an lr step, gradients are clipped, and fp16 carries its GradScaler through the checkpoint.
    Deterministic cuDNN and CUDA kernels, so that two runs can agree to the bit at all.
    """
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.backends.cudnn.deterministic = True
    torch.use_deterministic_algorithms(True, warn_only=True)
    import train

    whole, parts = tmp_path / "whole", tmp_path / "parts"
    assert train.main(_train_argv(voc_root, whole, amp, "--max_iter", "4")) == 0
    assert train.main(_train_argv(voc_root, parts, amp, "--max_iter", "2")) == 0
    resume = ["--resume", str(parts / "ssd300_VOC_last.ckpt"), "--max_iter", "4"]
    assert train.main(_train_argv(voc_root, parts, amp, *resume)) == 0

    rows = _log_rows(whole)
    assert [r[0] for r in rows] == ["1", "2", "3", "4"]
    assert all(math.isfinite(float(v)) for r in rows for v in r[1:])
    assert _log_rows(parts) == rows
    final_whole = torch.load(whole / "ssd300_VOC_4.pth", weights_only=True)
    final_parts = torch.load(parts / "ssd300_VOC_4.pth", weights_only=True)
    assert final_whole.keys() == final_parts.keys()
    assert all(torch.equal(final_whole[k], final_parts[k]) for k in final_whole)
    ckpt = torch.load(parts / "ssd300_VOC_last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["iteration"] == 4 and ckpt["args"]["amp"] == amp
