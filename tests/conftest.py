"""Fixtures shared across the suite. Each restores any global state it touches."""

from __future__ import annotations

import random
import socket
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from benchmarks.repo import load_script


@pytest.fixture(autouse=True)
def _restore_threads_and_rngs() -> Iterator[None]:
    """Every test leaves torch's thread count and the global torch, NumPy and Python RNGs as it found them, so a
    test that seeds or sets threads cannot change the tests after it."""
    threads = torch.get_num_threads()
    torch_rng, numpy_rng, python_rng = torch.get_rng_state(), np.random.get_state(), random.getstate()  # noqa: NPY002
    yield
    torch.set_num_threads(threads)
    torch.set_rng_state(torch_rng)
    np.random.set_state(numpy_rng)  # noqa: NPY002
    random.setstate(python_rng)


@pytest.fixture()
def one_thread() -> Iterator[None]:
    """torch on one thread for the test (training tests are faster and steadier so), restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _pick_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port_factory() -> Callable[[], int]:
    """A function returning a free TCP port on the loopback interface (for fixtures wider than one test)."""
    return _pick_free_port


@pytest.fixture()
def free_port(free_port_factory: Callable[[], int]) -> int:
    """A free TCP port on the loopback interface."""
    return free_port_factory()


@pytest.fixture()
def fail_line(capsys: pytest.CaptureFixture[str]) -> Callable[[Callable[[Sequence[str]], object], Sequence[str]], str]:
    """A function ``(main, argv) -> str``: runs a script's ``main(argv)``, asserts it exits non-zero with exactly one
    line on stderr, and returns that line."""

    def run(main: Callable[[Sequence[str]], object], argv: Sequence[str]) -> str:
        with pytest.raises(SystemExit) as info:
            main(list(argv))
        assert info.value.code not in (0, None), f"exit code {info.value.code!r}"
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1, err
        return err

    return run


@pytest.fixture(scope="session")
def scripts() -> SimpleNamespace:
    """``scripts.eval`` and ``scripts.test``: eval.py and test.py as modules (``benchmarks.repo.load_script``; a test
    file about one script loads it at import time with the same function). train.py imports as ``train``."""
    return SimpleNamespace(eval=load_script("eval"), test=load_script("test"))


@pytest.fixture(scope="module")
def tiny_voc(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A synthetic VOC root with 4 training and 1 test picture (shared by a test module, read only)."""
    from data.synthetic import make_voc_dataset

    return make_voc_dataset(str(tmp_path_factory.mktemp("tiny_voc")), num_train=4, num_test=1, seed=0)
