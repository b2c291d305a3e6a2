"""Live loss plots on a visdom server, for ``train.py --visdom true``.

visdom is imported only when a plot is made, so training never depends on it. A server that cannot be reached
(or that stops answering) costs one warning; training goes on without plots.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

LOSS_WINDOW = "ssd_train_loss"
LEGEND = ["Loc Loss", "Conf Loss", "Total Loss"]


class VisdomLossPlot:
    """One visdom line window with the loc, conf and total loss against the iteration.

    Args:
        server: the server address, e.g. ``http://localhost``.
        port: its port.
        env: the visdom environment the window lives in.
        win: the window id (fixed, so a resumed run appends to the same plot).
        timeout: seconds each request may take before the server counts as unreachable.
    """

    def __init__(self, server: str, port: int, env: str = "main", win: str = LOSS_WINDOW, timeout: float = 5.0) -> None:
        self.win = win
        self.env = env
        self._created = False
        self._vis: Any = None
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

    @property
    def enabled(self) -> bool:
        return self._vis is not None

    def update(self, iteration: int, loss_l: float, loss_c: float) -> None:
        """Append the point ``(iteration, [loss_l, loss_c, loss_l + loss_c])`` to the window."""
        if self._vis is None:
            return
        import numpy as np

        x = np.full((1, 3), float(iteration))
        y = np.array([[loss_l, loss_c, loss_l + loss_c]], dtype=np.float64)
        try:
            if self._created:
                self._vis.line(X=x, Y=y, win=self.win, env=self.env, update="append")
            else:
                opts = {"xlabel": "Iteration", "ylabel": "Loss", "title": "SSD training loss", "legend": LEGEND}
                self._vis.line(X=x, Y=y, win=self.win, env=self.env, opts=opts)
                self._created = True
        except Exception as err:  # noqa: BLE001
            warnings.warn(
                f"visdom server stopped answering ({type(err).__name__}: {err}); training goes on without live plots",
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
