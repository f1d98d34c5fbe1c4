"""A stand-in for the picosdk driver objects (``picosdk.ps5000a.ps5000a`` and its siblings).

It offers exactly the calls and enum tables the PicoScope source uses, checks their
argument lists per family (the oversample argument of ps2000a/ps3000a, the resolution
of ps5000a's OpenUnit), writes into the caller's ctypes outputs and data buffers as the
C library does, and logs every call to a file (the source runs in another process).
The samples of block b, capture s, channel c are :func:`counts` (deterministic), so
a test can compute what the source must publish.
"""

from __future__ import annotations

import json
import sys
import time
import types
from typing import Optional

import numpy as np

RANGES_V = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0)
MAX_ADC = 32512


def counts(block: int, capture: int, channel: int, samples: int) -> np.ndarray:
    """The ADC counts the fake delivers for one capture of one channel."""
    x = np.arange(samples, dtype=np.int64)
    return ((x * (channel + 3) + 977 * block + 131 * capture) % 4001 - 2000).astype(np.int16)


def _set(ref, value) -> None:
    ref._obj.value = value  # a ctypes.byref() argument


class FakeDriver:
    def __init__(self, family: str, log: str, ready_after: float = 0.02, never_ready: bool = False):
        self.family, self.log_path = family, log
        self.ready_after, self.never_ready = ready_after, never_ready
        p = family.upper()
        self.PICO_CHANNEL = {"A": 0, "B": 1, "C": 2, "D": 3}
        self.PICO_COUPLING = {"AC": 0, "DC": 1}
        self.PICO_VOLTAGE_RANGE = {i: v for i, v in enumerate(RANGES_V)}
        self.PICO_RATIO_MODE = {"NONE": 0}
        setattr(self, f"{p}_THRESHOLD_DIRECTION", {f"{p}_RISING": 2, f"{p}_FALLING": 3})
        setattr(self, f"{p}_DEVICE_RESOLUTION", {f"{p}_DR_{r}BIT": i for i, r in enumerate((8, 12, 14, 15, 16))})
        self.oversample = family in ("ps2000a", "ps3000a")
        self.buffers: dict = {}
        self.block = -1
        self.t_ready = float("inf")
        for name in (
            "OpenUnit",
            "MaximumValue",
            "SetChannel",
            "SetSimpleTrigger",
            "GetTimebase2",
            "MemorySegments",
            "SetNoOfCaptures",
            "SetDataBuffer",
            "RunBlock",
            "IsReady",
            "GetValuesBulk",
            "Stop",
            "CloseUnit",
        ):
            setattr(self, family + name, self._logged(name, getattr(self, "_" + name)))

    def _logged(self, name, fn):
        def call(*args):
            shown = [a if isinstance(a, (int, float, str, type(None))) else type(a).__name__ for a in args]
            with open(self.log_path, "a") as f:
                f.write(json.dumps([name, shown]) + "\n")
            return fn(*args)

        return call

    def _OpenUnit(self, handle, serial, *res):
        assert len(res) == (1 if self.family == "ps5000a" else 0), "ps5000aOpenUnit takes a resolution, the others not"
        _set(handle, 1)
        return 0

    def _MaximumValue(self, handle, out):
        _set(out, MAX_ADC)
        return 0

    def _SetChannel(self, handle, channel, enabled, coupling, rng, offset):
        return 0

    def _SetSimpleTrigger(self, handle, enable, source, threshold, direction, delay, auto_ms):
        return 0

    def _GetTimebase2(self, handle, timebase, n, interval, *rest):
        assert len(rest) == (3 if self.oversample else 2), f"{self.family}GetTimebase2: wrong arguments"
        _set(interval, 8.0 * (timebase - 2) if timebase > 2 else 2.0**timebase)
        _set(rest[-2], 10_000_000)
        return 0

    def _MemorySegments(self, handle, n, per_segment):
        _set(per_segment, 1_000_000 // n)
        return 0

    def _SetNoOfCaptures(self, handle, n):
        self.captures = n
        return 0

    def _SetDataBuffer(self, handle, channel, ptr, length, segment, mode):
        self.buffers[(channel, segment)] = np.ctypeslib.as_array(ptr, shape=(length,))
        return 0

    def _RunBlock(self, handle, pre, post, timebase, *rest):
        assert len(rest) == (5 if self.oversample else 4), f"{self.family}RunBlock: wrong arguments"
        self.block += 1
        self.t_ready = float("inf") if self.never_ready else time.monotonic() + self.ready_after
        return 0

    def _IsReady(self, handle, ready):
        _set(ready, int(time.monotonic() >= self.t_ready))
        return 0

    def _GetValuesBulk(self, handle, n, first, last, ratio, mode, overflow):
        for (channel, segment), buf in self.buffers.items():
            buf[:] = counts(self.block, segment, channel, len(buf))
            _set(n, len(buf))
        return 0

    def _Stop(self, handle):
        return 0

    def _CloseUnit(self, handle):
        return 0


def install(family: str, log: str, **kwargs) -> Optional[types.ModuleType]:
    """Put a fake ``picosdk.<family>`` module into sys.modules; return what was there."""
    module = types.ModuleType(f"picosdk.{family}")
    setattr(module, family, FakeDriver(family, log, **kwargs))
    old = sys.modules.get(module.__name__)
    sys.modules[module.__name__] = module
    return old


def calls(log: str) -> list:
    with open(log) as f:
        return [json.loads(line) for line in f]


__all__ = ["FakeDriver", "install", "calls", "counts", "MAX_ADC"]
