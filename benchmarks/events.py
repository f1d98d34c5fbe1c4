"""The two event kinds of the benchmarks and how an event carries its check.

Every event carries a sequence number in its first element, written by the
writer and checked by the reader (consecutive per writer in a group of its
own, increasing in a shared group; the totals are checked afterwards). With
``nw`` writers, writer ``w`` numbers its events ``w, w + nw, w + 2 nw, ...``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BIG_DTYPE = np.dtype([("chA", "f4"), ("chB", "f4"), ("chC", "f4"), ("chD", "f4")])


@dataclass(frozen=True)
class EventKind:
    name: str
    values: int  # values_per_slot
    dtype: Any  # as given to NewBuffer
    slots: int  # ring slots (same footprint for every peer)
    chunk: int  # events between two looks at the clock

    @property
    def np_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def nbytes(self) -> int:
        return self.values * self.np_dtype.itemsize

    @property
    def footprint(self) -> int:
        return self.slots * self.nbytes

    def zeros(self) -> np.ndarray:
        return np.zeros(self.values, dtype=self.dtype)

    def seq_view(self, event: np.ndarray) -> np.ndarray:
        """The 1-element view (or array) whose element 0 is the sequence number."""
        return event["chA"] if self.np_dtype.names else event

    def seq_of(self, event: np.ndarray) -> int:
        return int(self.seq_view(event)[0])


SMALL = EventKind("40 B", 10, np.int32, 4096, 1024)
#: 4 channels x 4096 float32 as one structured record; float32 holds the sequence exactly up to 2**24
BIG = EventKind("64 KiB", 4096, [("chA", "f4"), ("chB", "f4"), ("chC", "f4"), ("chD", "f4")], 128, 32)
KINDS = {"small": SMALL, "big": BIG}


def seq_sum(count: int, wid: int, nw: int) -> int:
    """Sum of the sequence numbers of a writer's first `count` events."""
    return nw * count * (count - 1) // 2 + wid * count


class Tracker:
    """Checks the sequence numbers one reader sees (general case: any writers, shared groups)."""

    __slots__ = ("nw", "shared", "last", "count", "total", "bad")

    def __init__(self, nw: int, shared: bool):
        self.nw = nw
        self.shared = shared
        self.last = [w - nw for w in range(nw)]
        self.count = 0
        self.total = 0
        self.bad = 0

    def see(self, x: int) -> None:
        w = x % self.nw
        if (x <= self.last[w]) if self.shared else (x != self.last[w] + self.nw):
            self.bad += 1
        self.last[w] = x
        self.count += 1
        self.total += x

    def result(self) -> dict:
        return {"count": self.count, "sum": self.total, "bad": self.bad}
