"""The training step on the CUDA code path: one collective and no host sync besides the statistics read."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from data import get_config
from layers import MultiBoxLoss
from ssd import build_ssd
from tests.sync_counter import SyncCounter
from utils.checkpoint import ModelFacts
from utils.training.engine import Session, to_device, train_step
from utils.training.runtime import Runtime
from utils.training.schedule import WarmupMultiStepLR


def _session(world_size: int) -> Session:
    torch.manual_seed(0)
    net = build_ssd("train", 300, 3)
    optimizer = torch.optim.SGD(net.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4)
    args = type("Args", (), {"amp": "none", "clip_grad": 0.0})()
    facts = ModelFacts(300, False, ("a", "b"), get_config("VOC", 300), "VOC")
    rt = Runtime(torch.device("cpu"), rank=0, world_size=world_size)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return Session(args, rt, net, net, optimizer, WarmupMultiStepLR(optimizer, [10]), scaler, facts)


def _batch() -> tuple[torch.Tensor, list[torch.Tensor]]:
    images = torch.randn(2, 3, 300, 300, generator=torch.Generator().manual_seed(1))
    targets = [
        torch.tensor([[0.1, 0.1, 0.5, 0.6, 0.0]]),
        torch.tensor([[0.2, 0.3, 0.9, 0.8, 1.0], [0.0, 0.0, 0.3, 0.3, 0.0]]),
    ]
    return to_device(images, targets, torch.device("cpu"))


@pytest.fixture()
def one_rank_group(free_port: int):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{free_port}", rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def test_a_step_makes_one_collective_and_no_hidden_sync(one_rank_group, one_thread, monkeypatch) -> None:
    calls = []
    real = dist.all_reduce
    monkeypatch.setattr(dist, "all_reduce", lambda t, *a, **k: calls.append(t.shape) or real(t, *a, **k))
    s = _session(world_size=2)  # a 1-process group standing for 2 ranks: every collective runs for real
    criterion = MultiBoxLoss(3, 0.5, True, 0, True, 3, 0.5, False, select_rows=False)  # the CUDA path
    images, targets = _batch()
    before = [p.detach().clone() for p in s.net.parameters()]
    with SyncCounter() as syncs:
        result = train_step(s, criterion, images, targets)
    assert syncs.total == 0, syncs.calls
    assert calls == [torch.Size([5])]  # losses, positives, non-finite flag, stop flag: one all-reduce
    assert result.finite and not result.stop and result.loss_l > 0 and result.loss_c > 0
    assert any(not torch.equal(a, b) for a, b in zip(before, s.net.parameters()))


def test_the_step_loss_is_normalised_by_the_batch_positives(one_thread) -> None:
    s = _session(world_size=1)
    criterion = MultiBoxLoss(3, 0.5, True, 0, True, 3, 0.5, False)
    images, targets = _batch()
    with torch.no_grad():
        loc, conf, priors = s.net(images)
        loss_l, loss_c = criterion((loc, conf, priors), targets)
    result = train_step(s, criterion, images, targets)
    assert result.loss_l == pytest.approx(loss_l.item(), rel=1e-6)
    assert result.loss_c == pytest.approx(loss_c.item(), rel=1e-6)
