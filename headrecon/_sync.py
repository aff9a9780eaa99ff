"""The points where the reconstruction path waits for the device (host synchronisations), named and counted.

On a GPU, reading a value of a device tensor on the host (``int(t)``, ``t.item()``, ``bool(t)``), ``nonzero`` and
indexing with a boolean mask make the host wait for every queued kernel. The tracer and the trainer make those
waits only through the helpers here, where an allocation has to be sized (the compacted rays of the next network
call) or a check has to raise, so that a CPU test can count them per training iteration
(``tests/test_host_syncs.py``) and a GPU run can compare that count with
``torch.cuda.set_sync_debug_mode``.
"""
from __future__ import annotations

import torch

__all__ = ["nonzero", "item", "count"]

_COUNT = [0]


def nonzero(mask: torch.Tensor) -> torch.Tensor:
    """``mask.nonzero().squeeze(1)``: the int64 indices of the True entries of a 1-D mask (one host sync)."""
    _COUNT[0] += 1
    return mask.nonzero().squeeze(1)


def item(t: torch.Tensor):
    """``t.item()`` (one host sync)."""
    _COUNT[0] += 1
    return t.item()


def count() -> int:
    """Host syncs made through this module so far in this process."""
    return _COUNT[0]
