"""Live loss plots on a visdom server, for ``train.py --visdom true``.

visdom is imported only when a plot is made, so training never depends on it. A server that cannot be reached
(or that stops answering) costs one warning; training goes on without plots. Posting happens on a background
thread and never blocks a training step.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import warnings
from typing import Any

LOSS_WINDOW = "ssd_train_loss"
METRIC_WINDOW = "ssd_validation"
LEGEND = ["Loc Loss", "Conf Loss", "Total Loss"]


class VisdomLossPlot:
    """A visdom line window with the loc, conf and total loss against the iteration (and one for validation).

    Points are posted by a background thread, so a slow server never stalls training: when ``max_pending``
    points wait, new ones are dropped (one warning says so).

    Args:
        server: the server address, e.g. ``http://localhost``.
        port: its port.
        env: the visdom environment the window lives in.
        win: the window id (fixed, so a resumed run appends to the same plot).
        timeout: seconds each request may take before the server counts as unreachable.
        max_pending: points that may wait for the sender before new ones are dropped.
    """

    def __init__(
        self,
        server: str,
        port: int,
        env: str = "main",
        win: str = LOSS_WINDOW,
        timeout: float = 5.0,
        max_pending: int = 256,
    ) -> None:
        self.win = win
        self.env = env
        self._created: set[str] = set()
        self._vis: Any = None
        self._queue: queue.Queue[tuple[str, float, list[float], dict[str, Any]] | None] = queue.Queue(max_pending)
        self._dropped = 0
        try:
            self._vis = _connect(server, port, env, timeout)
        except ImportError:
            warnings.warn(
                "--visdom true but the visdom package is not installed (pip install visdom); "
                "training goes on without live plots",
                stacklevel=2,
            )
        except Exception as err:  # noqa: BLE001 - any failure to reach the server only disables the plots
            warnings.warn(
                f"visdom server {server}:{port} is not reachable ({type(err).__name__}: {err}); "
                "training goes on without live plots",
                stacklevel=2,
            )
        self._thread: threading.Thread | None = None
        if self._vis is not None:
            self._thread = threading.Thread(target=self._send_all, name="visdom-sender", daemon=True)
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self._vis is not None

    def update(self, iteration: int, loss_l: float, loss_c: float) -> None:
        """Queue the point ``(iteration, [loss_l, loss_c, loss_l + loss_c])`` for the loss window."""
        opts = {"xlabel": "Iteration", "ylabel": "Loss", "title": "SSD training loss", "legend": LEGEND}
        self._put((self.win, float(iteration), [loss_l, loss_c, loss_l + loss_c], opts))

    def metric(self, iteration: int, name: str, value: float) -> None:
        """Queue a validation result for the metric window."""
        opts = {"xlabel": "Iteration", "ylabel": name, "title": f"validation {name}", "legend": [name]}
        self._put((METRIC_WINDOW, float(iteration), [value], opts))

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (waiting at most ``timeout`` seconds), then stop the sender."""
        if self._thread is None:
            return
        with contextlib.suppress(queue.Full):
            self._queue.put(None, timeout=timeout)
        self._thread.join(timeout)
        self._thread = None

    def _put(self, item: tuple[str, float, list[float], dict[str, Any]]) -> None:
        if self._vis is None or self._thread is None:
            return
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._dropped += 1
            if self._dropped == 1:
                warnings.warn("the visdom server lags behind training; plot points are dropped", stacklevel=3)

    def _send_all(self) -> None:
        import numpy as np

        while (item := self._queue.get()) is not None:
            if self._vis is None:
                continue
            win, x, values, opts = item
            try:
                y = np.array([values], dtype=np.float64)
                xs = np.full_like(y, x)
                if win in self._created:
                    self._vis.line(X=xs, Y=y, win=win, env=self.env, update="append")
                else:
                    self._vis.line(X=xs, Y=y, win=win, env=self.env, opts=opts)
                    self._created.add(win)
            except Exception as err:  # noqa: BLE001
                warnings.warn(
                    f"visdom server stopped answering ({type(err).__name__}: {err}); training goes on without "
                    "live plots",
                    stacklevel=2,
                )
                self._vis = None


def _connect(server: str, port: int, env: str, timeout: float) -> Any:
    """A visdom client that raises on connection errors and gives up after ``timeout`` seconds per request."""
    import visdom

    # The client logs a warning per session and about the (unused) incoming socket; keep training output clean.
    logging.getLogger("visdom").setLevel(logging.ERROR)

    class _Client(visdom.Visdom):
        def _handle_post(self, url: str, data: Any = None) -> str:
            response = self.session.post(url, data=data if data is not None else {}, timeout=timeout)
            response.raise_for_status()
            return response.text

    # The constructor posts the env to the server, so an unreachable server raises here.
    return _Client(server=server, port=port, env=env, raise_exceptions=True, use_incoming_socket=False)
