"""``--visdom true``: the loss reaches a real visdom server; without a server training still completes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import pytest

import train
from utils.training.visdom_plot import LOSS_WINDOW, VisdomLossPlot

pytest.importorskip("visdom", reason="the visdom package is not installed (pip install visdom)")

pytestmark = pytest.mark.filterwarnings("ignore:--basenet none:UserWarning")
SERVER = "http://127.0.0.1"


@pytest.fixture(scope="module")
def visdom_port(tmp_path_factory: pytest.TempPathFactory, free_port_factory: Callable[[], int]) -> Iterator[int]:
    """A visdom server on a free loopback port, started through run_server.main (`python -m visdom.server` would
    first try to download its JavaScript, which fails offline)."""
    port = free_port_factory()
    env_path = tmp_path_factory.mktemp("visdom_env")
    code = (
        "import sys; sys.argv = ['visdom', '-port', sys.argv[1], '--hostname', '127.0.0.1', '-env_path', sys.argv[2]]; "
        "from visdom.server.run_server import main; main()"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(port), str(env_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                pytest.skip("the visdom server did not start")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.2)
        else:
            pytest.skip("the visdom server did not open its port within 60 s")
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _window_points(port: int, env: str = "main") -> list[dict]:
    import visdom

    vis = visdom.Visdom(server=SERVER, port=port, env=env, use_incoming_socket=False, raise_exceptions=True)
    assert vis.win_exists(LOSS_WINDOW, env=env)
    return json.loads(vis.get_window_data(LOSS_WINDOW, env=env))["content"]["data"]


def test_the_plot_appends_loc_conf_and_total(visdom_port) -> None:
    plot = VisdomLossPlot(SERVER, visdom_port, env="unit")
    assert plot.enabled
    plot.update(1, 2.0, 5.0)
    plot.update(2, 1.5, 4.0)
    plot.close()
    traces = {t["name"]: t for t in _window_points(visdom_port, env="unit")}
    assert set(traces) == {"Loc Loss", "Conf Loss", "Total Loss"}
    assert traces["Loc Loss"]["y"] == [2.0, 1.5] and traces["Total Loss"]["y"] == [7.0, 5.5]
    assert traces["Conf Loss"]["x"] == [1, 2]


@pytest.mark.slow
@pytest.mark.usefixtures("one_thread")
def test_training_sends_the_loss_to_the_server(visdom_port: int, tmp_path, tiny_voc: str) -> None:
    argv = [
        "--dataset_root", tiny_voc, "--save_folder", str(tmp_path / "w"), "--basenet", "none", "--batch_size", "1",
        "--max_iter", "2", "--num_workers", "0", "--cuda", "false", "--seed", "0", "--visdom", "true",
        "--visdom_server", SERVER, "--visdom_port", str(visdom_port),
    ]  # fmt: skip
    assert train.main(argv) == 0
    traces = {t["name"]: t for t in _window_points(visdom_port)}
    assert traces["Total Loss"]["x"] == [1, 2]
    logged = [float(line.split(",")[3]) for line in (tmp_path / "w" / "train_log.csv").read_text().split()[1:]]
    assert traces["Total Loss"]["y"] == pytest.approx(logged)


@pytest.mark.usefixtures("one_thread")
def test_an_unreachable_server_warns_once_and_training_completes(tmp_path, tiny_voc: str, free_port: int) -> None:
    argv = [
        "--dataset_root", tiny_voc, "--save_folder", str(tmp_path / "w"), "--basenet", "none", "--batch_size", "1",
        "--max_iter", "1", "--num_workers", "0", "--cuda", "false", "--visdom", "true", "--visdom_server", SERVER,
        "--visdom_port", str(free_port),
    ]  # fmt: skip
    with pytest.warns(UserWarning, match="not reachable") as record:
        assert train.main(argv) == 0
    assert sum("visdom" in str(w.message) for w in record) == 1
    assert os.path.isfile(tmp_path / "w" / "ssd300_VOC_1.pth")
