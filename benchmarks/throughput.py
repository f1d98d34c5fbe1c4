"""Throughput cases: writers -> reader groups, every event checked; the
in-process copy limit; batch calls."""

from __future__ import annotations

import ctypes
import logging
import os
import statistics
import time

import numpy as np

from mimocorb.mimo_buffer import NewBuffer, Reader, Writer

from .events import SMALL, EventKind, seq_sum
from .procs import CaseError, Procs
from .transports import faster_fifo

logger = logging.getLogger(__name__)
perf = time.perf_counter

#: (label, writers, groups, members per group)
TOPOLOGIES = [
    ("1w->1r", 1, 1, 1),
    ("1w->3 groups", 1, 3, 1),
    ("1w->1 group of 2", 1, 1, 2),
    ("2w->1r", 2, 1, 1),
]


def _pinned(target, cpu: int):
    """`target` run on one CPU (placement kept fixed: figures that do not move with it)."""

    def run(report, go, *args):
        os.sched_setaffinity(0, {cpu})
        return target(report, go, *args)

    return run


def run_case(
    peer, kind: EventKind, writers: int, groups: int, members: int, duration: float, pin: bool = False
) -> dict:
    """One run: events/s at the writers (the channel bounds how far they can run
    ahead), after checking that every group got every event exactly once. ``pin``:
    writers from CPU 0 upwards, readers from the last CPU downwards."""
    st = peer.setup(kind, groups, members)
    procs = Procs()
    cpus = sorted(os.sched_getaffinity(0))
    try:
        shared = members > 1
        wnames = [f"w{i}" for i in range(writers)]
        rnames = [f"r{g}.{m}" for g in range(groups) for m in range(members)]
        for j, (g, m) in enumerate((g, m) for g in range(groups) for m in range(members)):
            target = _pinned(peer.reader, cpus[-1 - j % len(cpus)]) if pin else peer.reader
            procs.add(f"r{g}.{m}", target, st, kind, g, writers, shared)
        for i in range(writers):
            target = _pinned(peer.writer, cpus[i % len(cpus)]) if pin else peer.writer
            procs.add(f"w{i}", target, st, kind, i, writers, duration)
        procs.start()
        procs.wait_ready(wnames + rnames)
        procs.go.set()
        res = procs.collect(wnames, timeout=duration + 30)
        procs.join(wnames, timeout=10)
        peer.end(st)
        res.update(procs.collect(rnames, timeout=30))
        procs.join(rnames, timeout=10)
    finally:
        procs.close()
        peer.close(st)
    published = sum(res[w]["count"] for w in wnames)
    want_sum = sum(seq_sum(res[w]["count"], i, writers) for i, w in enumerate(wnames))
    for g in range(groups):
        got = [res[f"r{g}.{m}"] for m in range(members)]
        n, s, bad = sum(r["count"] for r in got), sum(r["sum"] for r in got), sum(r["bad"] for r in got)
        if bad or n != published or s != want_sum:
            raise CaseError(
                f"{peer.name} {kind.name}: group {g} got {n} of {published} events, "
                f"{bad} out of order, checksum {'ok' if s == want_sum else 'WRONG'}"
            )
    t0 = min(res[w]["t0"] for w in wnames)
    t1 = max(res[w]["t1"] for w in wnames)
    rate = published / (t1 - t0)
    return {"events": published, "seconds": t1 - t0, "events_per_s": rate, "bytes_per_s": rate * kind.nbytes}


def copy_limit(kind: EventKind, duration: float) -> dict:
    """In one process, copy the same events (stamped as the writers do) into a
    NumPy ring of the same footprint, one copy per event: the best of a NumPy
    row assignment and a bare ctypes.memmove."""
    ring = np.zeros((kind.slots, kind.values), dtype=kind.dtype)
    ev = kind.zeros()
    seqv = kind.seq_view(ev)
    n = kind.slots
    chunk = kind.chunk
    ring_b = ring.view(np.uint8).reshape(n, -1)
    ev_b = ev.view(np.uint8)
    best = {}
    # NumPy: ring[j] = event
    x = 0
    t0 = perf()
    end = t0 + duration / 2
    while True:
        for s in range(x, x + chunk):
            seqv[0] = s
            ring_b[s % n] = ev_b
        x += chunk
        if perf() >= end:
            break
    best["numpy"] = x / (perf() - t0)
    # memmove to precomputed addresses
    base = ring.ctypes.data
    stride = ring.strides[0]
    src = ev.ctypes.data
    nb = kind.nbytes
    memmove = ctypes.memmove
    x = 0
    t0 = perf()
    end = t0 + duration / 2
    while True:
        for s in range(x, x + chunk):
            seqv[0] = s
            memmove(base + (s % n) * stride, src, nb)
        x += chunk
        if perf() >= end:
            break
    best["memmove"] = x / (perf() - t0)
    if int(kind.seq_view(ring[(x - 1) % n])[0]) != (x - 1) % (1 << 24 if kind.np_dtype.names else 1 << 62):
        raise CaseError("copy limit: the ring does not hold the last event")
    how = max(best, key=best.get)
    return {"events_per_s": best[how], "bytes_per_s": best[how] * kind.nbytes, "how": how, "both": best}


def big_pairs(peer, kind: EventKind, duration: float, pairs: int = 5) -> dict:
    """The 64 KiB figure as the median of back-to-back pairs (a pinned 1 writer -> 1 reader
    run, then the in-process copy on the writer's CPU): the ratio of each pair is taken
    under the same conditions, so the machine's drift between pairs cancels."""
    ratios, runs = [], []
    cpu0 = min(os.sched_getaffinity(0))
    for _ in range(pairs):
        r = run_case(peer, kind, 1, 1, 1, duration, pin=True)
        mask = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {cpu0})
        try:
            c = copy_limit(kind, duration)
        finally:
            os.sched_setaffinity(0, mask)
        ratios.append(r["bytes_per_s"] / c["bytes_per_s"])
        runs.append((r["bytes_per_s"], c["bytes_per_s"]))
    return {"median_ratio": statistics.median(ratios), "ratios": ratios, "runs": runs, "pairs": pairs}


# ---------------------------------------------------------------------------
# batch calls (small events)
# ---------------------------------------------------------------------------

BATCH = 512


def _mimo_batch_writer(report, go, setup, duration, k):
    w = Writer(setup)
    report("ready")
    go.wait(30)
    x = 0
    t0 = perf()
    end = t0 + duration
    ar = np.arange(k, dtype=np.int32)
    get = w.get_new_buffers
    while True:
        for _ in range(64):
            b = get(k)
            m = len(b)
            np.add(ar[:m], x, out=b[:, 0])
            x += m
        if perf() >= end:
            break
    w.process_buffer()
    t1 = perf()
    w.close()
    report({"count": x, "t0": t0, "t1": t1})


def _mimo_batch_reader(report, go, setup, k):
    r = Reader(setup)
    report("ready")
    ar = np.arange(k, dtype=np.int32)
    exp = bad = 0
    get = r.get_many
    try:
        while True:
            a = get(k)
            m = len(a)
            if not np.array_equal(a[:, 0] - exp, ar[:m]):
                bad += 1
            exp += m
    except SystemExit:
        pass
    r.close()
    report({"count": exp, "bad": bad})


def _ff_batch_writer(report, go, q, duration, k):
    ev = SMALL.zeros()
    report("ready")
    go.wait(30)
    x = 0
    t0 = perf()
    end = t0 + duration
    while True:
        for _ in range(8):
            batch = []
            for s in range(x, x + k):
                ev[0] = s
                batch.append(ev.tobytes())
            q.put_many(batch, timeout=30)
            x += k
        if perf() >= end:
            break
    t1 = perf()
    q.put(b"")
    report({"count": x, "t0": t0, "t1": t1})


def _ff_batch_reader(report, go, q, k):
    report("ready")
    exp = bad = 0
    dt = SMALL.np_dtype
    done = False
    while not done:
        for b in q.get_many(timeout=30, max_messages_to_get=k):
            if not b:
                done = True
                break
            if np.frombuffer(b, dt)[0] != exp:
                bad += 1
            exp += 1
    report({"count": exp, "bad": bad})


def batch_case(peer_name: str, duration: float, k: int = BATCH) -> dict:
    procs = Procs()
    buf = q = None
    try:
        if peer_name == "mimocorb":
            buf = NewBuffer(SMALL.slots, SMALL.values, SMALL.dtype)
            procs.add("r", _mimo_batch_reader, buf.new_reader_group(), k)
            procs.add("w", _mimo_batch_writer, buf.new_writer(), duration, k)
        else:
            q = faster_fifo.Queue(max_size_bytes=SMALL.footprint + 8 * SMALL.slots, loads=bytes, dumps=lambda x: x)
            procs.add("r", _ff_batch_reader, q, k)
            procs.add("w", _ff_batch_writer, q, duration, k)
        res = procs.run_writer_reader(buf, writer_timeout=duration + 30)
    finally:
        procs.close()
        if buf is not None:
            buf.close()
        if q is not None:
            q.close()
    if res["r"]["bad"] or res["r"]["count"] != res["w"]["count"]:
        raise CaseError(
            f"batch {peer_name}: reader got {res['r']['count']} of {res['w']['count']}, {res['r']['bad']} bad batches"
        )
    rate = res["w"]["count"] / (res["w"]["t1"] - res["w"]["t0"])
    return {"events": res["w"]["count"], "events_per_s": rate, "batch": k}


def batch_copy_limit(duration: float, k: int = BATCH) -> dict:
    """In one process: k stamped events per NumPy slice copy into a ring of the same footprint."""
    n = SMALL.slots
    ring = np.zeros((n, SMALL.values), dtype=SMALL.dtype)
    block = np.zeros((k, SMALL.values), dtype=SMALL.dtype)
    ar = np.arange(k, dtype=np.int32)
    x = 0
    t0 = perf()
    end = t0 + duration
    while True:
        for _ in range(64):
            np.add(ar, x, out=block[:, 0])
            j = x % n
            ring[j : j + k] = block
            x += k
        if perf() >= end:
            break
    return {"events_per_s": x / (perf() - t0), "batch": k}
