"""Process targets and a harness for the bridge tests: a source buffer, senders, receivers,
a recording consumer, all in forked processes, every event checked by sequence."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
import time
from typing import Any, Optional

import numpy as np

from mimocorb.mimo_buffer import NewBuffer, Reader, Writer

CTX = mp.get_context("fork")
DT_SMALL = np.int64  # element 0: the stream sequence; element 1: the source index


def source(wd: dict, n: int, tag: int = 0, rate: float = 0.0, start: int = 0) -> None:
    """Write events start..start+n-1: element 0 the number, element 1 ``tag``; metadata derived from it."""
    w = Writer(wd)
    t0 = time.monotonic()
    for i in range(start, start + n):
        if rate:
            due = t0 + (i - start) / rate
            left = due - time.monotonic()  # read the clock once: a second reading may be past `due`
            if left > 0:
                time.sleep(left)
        b = w.get_new_buffer()
        b[0], b[1] = i, tag
        w.set_metadata(i * 3 + tag, 1000.0 + i, 0.5 * (i % 7))
    w.process_buffer()


def record(rd: dict, q: Any, path: Optional[str] = None) -> None:
    """Consume a group; put [(seq, tag, counter, timestamp, deadtime), ...] into q at the end.
    With ``path``, also append each event's (seq, tag) to that file at once (survives a kill)."""
    r = Reader(rd)
    out = []
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND) if path else -1
    try:
        while True:
            v = r.get_many(256)
            md = r.metadata_many()
            rows = [(int(a), int(b), *m) for (a, b), m in zip(v[:, :2].tolist(), md)]
            out.extend(rows)
            if fd >= 0:
                os.write(fd, "".join(f"{a} {b}\n" for a, b, *_ in rows).encode())
    except SystemExit:
        pass
    q.put(out)


def run_sender(rd: dict, cfg: dict, q: Any = None) -> None:
    from mimocorb.net import Sender

    logging.basicConfig(level=logging.INFO)
    with Sender(rd, cfg) as s:
        s.run()
        if q is not None:
            q.put(("sender", s.stats()))


def run_receiver(wd: dict, cfg: dict, q: Any = None, fault: str = "") -> None:
    from mimocorb.net import Receiver

    logging.basicConfig(level=logging.INFO)
    if fault:
        os.environ["MIMOCORB_NET_FAULT"] = fault
    with Receiver(wd, cfg) as r:
        why = r.run()
        if q is not None:
            q.put(("receiver", why, r.stats()))


class Harness:
    """Buffers and processes of one test; :meth:`close` kills and closes everything."""

    def __init__(self, values: int = 4, slots: int = 256):
        self.procs: list = []
        self.buffers: list[NewBuffer] = []
        self.values, self.slots = values, slots
        self.q = CTX.Queue()

    def buffer(self, slots: Optional[int] = None, dtype: Any = DT_SMALL, values: Optional[int] = None) -> NewBuffer:
        b = NewBuffer(slots or self.slots, values or self.values, dtype)
        self.buffers.append(b)
        return b

    def start(self, target: Any, *args: Any) -> Any:
        p = CTX.Process(target=target, args=args, daemon=True)
        p.start()
        self.procs.append(p)
        return p

    def join(self, p: Any, timeout: float) -> int:
        p.join(timeout)
        assert not p.is_alive(), f"process {p.pid} ({p._target.__name__}) still running after {timeout} s"
        return p.exitcode

    def get(self, timeout: float = 30.0) -> Any:
        try:
            return self.q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no result within {timeout} s") from None

    def results(self, k: int, timeout: float = 30.0) -> list:
        return [self.get(timeout) for _ in range(k)]

    def close(self) -> None:
        for p in self.procs:
            if p.is_alive():
                os.kill(p.pid, signal.SIGKILL)
            p.join(5)
        for b in self.buffers:
            b.close()
        self.q.close()
        self.q.join_thread()


def check_exactly_once(rows: list, expected: set, ordered: bool = True) -> None:
    """Every expected (seq, tag) once; metadata as the source wrote it; in order if asked."""
    keys = [(a, b) for a, b, *_ in rows]
    dup = len(keys) - len(set(keys))
    missing = expected - set(keys)
    extra = set(keys) - expected
    assert not dup and not missing and not extra, (
        f"doubled {dup}, missing {len(missing)} (e.g. {sorted(missing)[:5]}), unexpected {sorted(extra)[:5]}"
    )
    for a, b, c, ts, dt in rows:
        assert (c, ts, dt) == (a * 3 + b, 1000.0 + a, 0.5 * (a % 7)), f"metadata of event {a} changed: {c, ts, dt}"
    if ordered:
        for tag in {b for _, b in keys}:
            seqs = [a for a, b in keys if b == tag]
            assert seqs == sorted(seqs), f"events of source {tag} out of order"
