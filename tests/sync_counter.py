"""Count the operations that make the host wait for the device, even when run on the CPU.

A CUDA step stalls whenever the host needs a value the device computes: reading a scalar (``.item()``,
``int(t)``, ``if t:``), an output whose size depends on the data (``nonzero``, boolean-mask indexing,
``masked_select``), a whole-tensor comparison returning a Python bool (``torch.equal``), or a blocking copy
between the host and the device. The same aten calls happen on the CPU, so counting them there tells which
code would stall a GPU. ``.tolist()``, ``.numpy()`` and ``.cpu()`` of a host tensor call no aten op and go
unseen on the CPU (on CUDA they show up as blocking copies). Usage::

    with SyncCounter() as syncs:
        step()
    assert syncs.total == 0, syncs.calls
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten

# Ops that always read a device value on the host or size their output from the data.
ALWAYS_SYNC = {
    aten._local_scalar_dense.default,  # .item(), int(), float(), bool(), if tensor:
    aten.nonzero.default,
    aten.nonzero.out,
    aten.masked_select.default,
    aten.masked_select.out,
    aten.equal.default,
    aten._unique2.default,
    aten.unique_dim.default,
    aten.unique_consecutive.default,
    aten.bincount.default,
}
# Ops that sync only when one of their indices is a boolean mask (its true count sizes the output).
MASK_INDEXING = {
    aten.index.Tensor,
    aten.index_put.default,
    aten.index_put_.default,
    aten._index_put_impl_.default,
}


class SyncCounter(TorchDispatchMode):
    """A dispatch mode that counts host-device synchronisation points by aten op name.

    Attributes:
        calls (Counter[str]): how many times each syncing op ran, keyed by its name (``"aten::nonzero"``,
            with ``"[bool index]"`` or ``"[blocking copy]"`` appended where the reason is the arguments).
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: Counter[str] = Counter()

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        reason = _sync_reason(func, args, kwargs)
        if reason is not None:
            self.calls[reason] += 1
        return func(*args, **kwargs)


def _sync_reason(func: Any, args: tuple, kwargs: dict) -> str | None:
    """The counter key if ``func(*args, **kwargs)`` makes the host wait for the device, else None."""
    name = func.name()
    if func in ALWAYS_SYNC:
        return name
    if func in MASK_INDEXING:
        indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
        if any(i is not None and i.dtype in (torch.bool, torch.uint8) for i in indices):
            return f"{name}[bool index]"
        return None
    if func is aten.repeat_interleave.Tensor:
        return name if kwargs.get("output_size") is None else None
    if func is aten._to_copy.default:
        target = kwargs.get("device")
        crosses = target is not None and torch.device(target).type != args[0].device.type
        return f"{name}[blocking copy]" if crosses and not kwargs.get("non_blocking", False) else None
    if func is aten.copy_.default:
        dst, src = args[0], args[1]
        blocking = not (args[2] if len(args) > 2 else kwargs.get("non_blocking", False))
        return f"{name}[blocking copy]" if blocking and dst.device.type != src.device.type else None
    return None
