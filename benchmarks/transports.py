"""The peers: how each one creates its channel, writes and reads events.

A transport has ``setup(kind, groups, members)`` (in the parent), a writer
and a reader function run in forked processes, ``end(state)`` (after the
writers finished) and ``close(state)``. The loops are written out per
transport, not behind a common callable, because at ~100 ns per event one
extra Python call would be measured as the transport's cost.

Writers run for a fixed time, checking the clock once per chunk of events;
readers check every event (see :mod:`benchmarks.events`). The simple case,
one writer into a group of its own, has an inlined check for small events;
every other case goes through :class:`events.Tracker`.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from mimocorb.mimo_buffer import NewBuffer, Reader, Writer

from .events import EventKind, Tracker

try:  # the `bench` extra
    import faster_fifo
except ImportError:  # pragma: no cover - reported as a skipped peer
    faster_fifo = None

from .procs import CTX

perf = time.perf_counter


# ---------------------------------------------------------------------------
# mimocorb
# ---------------------------------------------------------------------------


class Mimocorb:
    name = "mimocorb"

    @staticmethod
    def setup(kind: EventKind, groups: int, members: int, wait: str = "sleep") -> dict:
        buf = NewBuffer(kind.slots, kind.values, kind.dtype, wait=wait)
        return {"buf": buf, "w": buf.new_writer(), "g": [buf.new_reader_group() for _ in range(groups)]}

    @staticmethod
    def writer(report, go, st: dict, kind: EventKind, wid: int, nw: int, duration: float) -> None:
        w = Writer(st["w"])
        report("ready")
        go.wait(30)
        chunk = kind.chunk
        x = wid
        t0 = perf()
        end = t0 + duration
        if kind.np_dtype.names is None:
            g = w.get_new_buffer
            while True:
                for s in range(x, x + chunk * nw, nw):
                    g()[0] = s
                x += chunk * nw
                if perf() >= end:
                    break
            w.process_buffer()
        else:
            rec = kind.zeros()
            seqv = kind.seq_view(rec)
            put = w.put
            while True:
                for s in range(x, x + chunk * nw, nw):
                    seqv[0] = s
                    put(rec)
                x += chunk * nw
                if perf() >= end:
                    break
        t1 = perf()
        w.close()
        report({"count": (x - wid) // nw, "t0": t0, "t1": t1})

    @staticmethod
    def reader(report, go, st: dict, kind: EventKind, gid: int, nw: int, shared: bool) -> None:
        r = Reader(st["g"][gid])
        report("ready")
        get = r.get
        if nw == 1 and not shared and kind.np_dtype.names is None:
            exp = bad = 0
            try:
                while True:
                    v = get()
                    if v[0] != exp:
                        bad += 1
                        exp = int(v[0])
                    exp += 1
            except SystemExit:
                pass
            res = {"count": exp, "sum": exp * (exp - 1) // 2, "bad": bad}
        elif kind.np_dtype.names is None:
            # several writers or a shared group: the same check, inline (a method call per
            # event would cost more than the ring; every peer checks the same way)
            last = [w - nw for w in range(nw)]
            count = total = bad = 0
            try:
                while True:
                    x = int(get()[0])
                    w = x % nw
                    if (x <= last[w]) if shared else (x != last[w] + nw):
                        bad += 1
                    last[w] = x
                    count += 1
                    total += x
            except SystemExit:
                pass
            res = {"count": count, "sum": total, "bad": bad}
        else:
            t = Tracker(nw, shared)
            see, seq_of = t.see, kind.seq_of
            try:
                while True:
                    see(seq_of(get()))
            except SystemExit:
                pass
            res = t.result()
        r.close()
        report(res)

    @staticmethod
    def end(st: dict) -> None:
        st["buf"].shutdown(timeout=10.0)

    @staticmethod
    def close(st: dict) -> None:
        st["buf"].close()


# ---------------------------------------------------------------------------
# queues: multiprocessing.Queue and faster-fifo (one queue per reader group)
# ---------------------------------------------------------------------------


class _QueuePeer:
    """Events travel as bytes (the cheapest payload to pickle); the reader
    turns them back into the same NumPy event with np.frombuffer. Fan-out to
    several groups means one put per group queue; the end is a b"" per member."""

    name = "?"

    @classmethod
    def make_queue(cls, kind: EventKind):
        raise NotImplementedError

    @classmethod
    def setup(cls, kind: EventKind, groups: int, members: int) -> dict:
        return {"q": [cls.make_queue(kind) for _ in range(groups)], "members": members}

    @staticmethod
    def writer(report, go, st: dict, kind: EventKind, wid: int, nw: int, duration: float) -> None:
        qs = st["q"]
        puts = [q.put for q in qs]
        ev = kind.zeros()
        seqv = kind.seq_view(ev)
        tobytes = ev.tobytes
        report("ready")
        go.wait(30)
        chunk = kind.chunk
        x = wid
        t0 = perf()
        end = t0 + duration
        if len(puts) == 1:
            put = puts[0]
            while True:
                for s in range(x, x + chunk * nw, nw):
                    seqv[0] = s
                    put(tobytes())
                x += chunk * nw
                if perf() >= end:
                    break
        else:
            while True:
                for s in range(x, x + chunk * nw, nw):
                    seqv[0] = s
                    b = tobytes()
                    for put in puts:
                        put(b)
                x += chunk * nw
                if perf() >= end:
                    break
        t1 = perf()
        for put in puts:
            for _ in range(st["members"]):
                put(b"")
        report({"count": (x - wid) // nw, "t0": t0, "t1": t1})

    @staticmethod
    def reader(report, go, st: dict, kind: EventKind, gid: int, nw: int, shared: bool) -> None:
        q = st["q"][gid]
        get = q.get
        dt = kind.np_dtype
        frombuffer = np.frombuffer
        report("ready")
        ends = 0
        if nw == 1 and not shared and dt.names is None:
            exp = bad = 0
            while True:
                b = get(timeout=30)
                if not b:
                    break
                v = frombuffer(b, dt)
                if v[0] != exp:
                    bad += 1
                    exp = int(v[0])
                exp += 1
            res = {"count": exp, "sum": exp * (exp - 1) // 2, "bad": bad}
        elif dt.names is None:
            last = [w - nw for w in range(nw)]  # the same inline check as the mimocorb peer's
            count = total = bad = 0
            while True:
                b = get(timeout=30)
                if not b:
                    ends += 1
                    if ends == nw:
                        break
                    continue
                x = int(frombuffer(b, dt)[0])
                w = x % nw
                if (x <= last[w]) if shared else (x != last[w] + nw):
                    bad += 1
                last[w] = x
                count += 1
                total += x
            res = {"count": count, "sum": total, "bad": bad}
        else:
            t = Tracker(nw, shared)
            see, seq_of = t.see, kind.seq_of
            while True:
                b = get(timeout=30)
                if not b:
                    ends += 1
                    if ends == nw:
                        break
                    continue
                see(seq_of(frombuffer(b, dt)))
            res = t.result()
        report(res)

    @staticmethod
    def end(st: dict) -> None:
        pass

    @staticmethod
    def close(st: dict) -> None:
        for q in st["q"]:
            q.close()
            if hasattr(q, "join_thread"):
                try:
                    q.join_thread()
                except (AssertionError, AttributeError):
                    pass


class MpQueue(_QueuePeer):
    name = "mp.Queue"

    @classmethod
    def make_queue(cls, kind: EventKind):
        return CTX.Queue(maxsize=kind.slots)


class FasterFifo(_QueuePeer):
    name = "faster-fifo"

    @classmethod
    def make_queue(cls, kind: EventKind):
        # raw bytes in and out (no pickling): the fastest way to use it
        return faster_fifo.Queue(max_size_bytes=kind.footprint + 8 * kind.slots, loads=bytes, dumps=_identity)

    @staticmethod
    def close(st: dict) -> None:
        for q in st["q"]:
            q.close()


def _identity(x: Any) -> Any:
    return x


def peers() -> tuple[list, list[str]]:
    """The transports to run, and notes on the ones skipped."""
    out: list[Any] = [Mimocorb, MpQueue]
    notes = []
    if faster_fifo is None:
        notes.append("faster-fifo not importable (pip install faster-fifo, the `bench` extra): skipped")
    else:
        out.append(FasterFifo)
    return out, notes
