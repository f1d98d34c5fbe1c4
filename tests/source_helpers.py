"""Helpers for the source tests: run a source function in a process, collect its events."""

from __future__ import annotations

import multiprocessing as mp
import traceback
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

from mimocorb.mimo_buffer import NewBuffer, Reader


def _target(fn: Callable, sink: dict, cfg: dict, errors, after_fork) -> None:
    if after_fork is not None:
        after_fork()
    try:
        fn(None, [sink], None, cfg, RB_1="write")
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        errors.put(f"{type(exc).__name__}: {exc}")
        if not isinstance(exc, (Exception, KeyboardInterrupt)):
            traceback.print_exc()
        raise SystemExit(1) from None


@dataclass
class Event:
    data: np.ndarray
    counter: int
    timestamp: float
    deadtime: float


class SourceRun:
    """A source function in a forked process writing into a fresh buffer, with a reader attached."""

    def __init__(self, fn: Callable, cfg: dict, samples: int, dtype, slots: int = 16, after_fork=None):
        self.buf = NewBuffer(slots, samples, dtype)
        self.reader = Reader(self.buf.new_reader_group())
        self.errors = mp.get_context("fork").Queue()
        self.proc = mp.get_context("fork").Process(
            target=_target, args=(fn, self.buf.new_writer(), cfg, self.errors, after_fork), daemon=True
        )

    def start(self) -> SourceRun:
        self.proc.start()
        return self

    def events(self, n: int, timeout: float = 10.0) -> list[Event]:
        """The next n events (copies); fewer if none arrives within ``timeout`` s."""
        out = []
        for _ in range(n):
            data = self.reader.get_timeout(timeout)
            if data is None:
                break
            out.append(Event(np.array(data), *self.reader.get_metadata()))
        self.reader.release()
        return out

    def join(self, timeout: float = 10.0) -> Optional[int]:
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
            raise AssertionError(f"source process {self.proc.pid} did not end within {timeout} s")
        return self.proc.exitcode

    def error(self, timeout: float = 2.0) -> str:
        try:
            return self.errors.get(timeout=timeout)
        except Exception:  # noqa: BLE001 - queue.Empty
            return ""

    def close(self) -> None:
        if self.proc.pid is not None and self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.reader.close()
        self.buf.shutdown(timeout=2)
        self.buf.close()
        self.errors.close()
        self.errors.join_thread()

    def __enter__(self) -> SourceRun:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
