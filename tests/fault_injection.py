"""Fault injection for the ring buffer: writers and reader groups under load,
one of them killed with SIGKILL at a random point of its cycle, and the
accounting checked afterwards.

Used by tests/test_crash_safety.py (a fixed number of rounds) and by the soak
script tests/soak.py (rounds for a given time; run it for hours with
``python tests/soak.py --duration 14400``).

Layout of one round: 2 writers (values w * 1_000_000 + i, i = 0..n-1, every
element of the event derived from the value so that a torn or overwritten
event is detected), group A of 2 members, group B of 1 member (never killed:
the reference of what was published). One process, a writer or a member of
group A, is killed at a random moment.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import time
from dataclasses import dataclass, field

import numpy as np

from mimocorb import mimo_buffer as bm

VALUES = 16
BASE = 1_000_000


def _event(value: int) -> np.ndarray:
    return value * 7 + np.arange(VALUES, dtype=np.int64)


def writer_proc(setup, w: int, n: int, progress, seed: int) -> None:
    rng = random.Random(seed)
    wr = bm.Writer(setup)
    pattern = np.arange(VALUES, dtype=np.int64)
    for i in range(n):
        value = w * BASE + i
        buf = wr.get_new_buffer()
        buf[1:] = value * 7 + pattern[1:]
        buf[0] = value * 7
        progress[w] = i  # event i is being written (published at the next call)
        if rng.random() < 0.01:
            time.sleep(rng.random() * 0.002)
    wr.process_buffer()
    progress[w] = n
    wr.close()


def reader_proc(setup, seen, torn, seed: int, n: int) -> None:
    """Record every value received in the shared array `seen` (value -> count)."""
    rng = random.Random(seed)
    r = bm.Reader(setup)
    pattern = np.arange(VALUES, dtype=np.int64)
    try:
        while True:
            v = r.get()
            value = int(v[0]) // 7
            if not (v == value * 7 + pattern).all():
                torn.value += 1
            writer, i = divmod(value, BASE)
            seen[writer * n + i] += 1
            if rng.random() < 0.01:
                time.sleep(rng.random() * 0.002)
    except SystemExit:
        pass
    r.close()


@dataclass
class RoundResult:
    victim: str
    published_by: list
    seen_a: np.ndarray
    seen_b: np.ndarray
    stats: dict
    torn: int
    drained: bool
    problems: list = field(default_factory=list)


def run_round(n: int = 3000, nslots: int = 8, seed: int = 0, kill_after: float | None = None) -> RoundResult:
    """One round with one SIGKILL; returns what happened and the problems found."""
    rng = random.Random(seed)
    ctx = mp.get_context("fork")
    seen = [ctx.RawArray("i", 2 * n) for _ in range(3)]  # members a0, a1, b
    torn = ctx.RawValue("i", 0)
    progress = ctx.RawArray("q", [-1, -1])
    procs: dict[str, mp.Process] = {}
    buf = bm.NewBuffer(nslots, VALUES, np.int64)
    try:
        group_a = buf.new_reader_group()
        group_b = buf.new_reader_group()
        for name, setup, arr in (("a0", group_a, seen[0]), ("a1", group_a, seen[1]), ("b", group_b, seen[2])):
            procs[name] = ctx.Process(
                target=reader_proc, args=(setup, arr, torn, rng.randrange(1 << 30), n), daemon=True
            )
        for w in range(2):
            procs[f"w{w}"] = ctx.Process(
                target=writer_proc, args=(buf.new_writer(), w, n, progress, rng.randrange(1 << 30)), daemon=True
            )
        for p in procs.values():
            p.start()
        victim = rng.choice(["a0", "a1", "w0", "w1"])
        time.sleep(rng.random() * 0.05 if kill_after is None else kill_after)
        if procs[victim].is_alive():
            os.kill(procs[victim].pid, signal.SIGKILL)
        procs[victim].join(5)
        for w in ("w0", "w1"):
            procs[w].join(60)
        drained = buf.shutdown(timeout=30)
        for p in procs.values():
            p.join(30)
        stats = buf.stats()
    finally:
        for p in procs.values():
            if p.is_alive():
                p.kill()
                p.join(5)
        buf.close()
    res = RoundResult(
        victim=victim,
        published_by=[int(progress[0]), int(progress[1])],
        seen_a=np.frombuffer(seen[0], np.int32) + np.frombuffer(seen[1], np.int32),
        seen_b=np.frombuffer(seen[2], np.int32).copy(),
        stats=stats,
        torn=torn.value,
        drained=drained,
    )
    res.problems = check_round(res, n, procs)
    return res


def check_round(res: RoundResult, n: int, procs: dict) -> list[str]:
    """Every invariant of the round; an empty list when all hold."""
    problems = []
    hung = [name for name, p in procs.items() if p.exitcode is None]
    if hung:
        problems.append(f"processes did not end: {hung}")
    if res.torn:
        problems.append(f"{res.torn} torn or overwritten events")
    if not res.drained:
        problems.append("shutdown did not drain")
    if (res.seen_a > 1).any() or (res.seen_b > 1).any():
        problems.append("an event was delivered twice to a group")
    ga, gb = res.stats["groups"]
    lost_a, lost_b = ga["lost"], gb["lost"]
    dead_writer = res.victim.startswith("w")
    for w in range(2):
        got_b = res.seen_b[w * n : (w + 1) * n]
        got_a = res.seen_a[w * n : (w + 1) * n]
        if dead_writer and res.victim == f"w{w}":
            # the dead writer published a prefix; both groups saw all of it
            k = int(got_b.sum())
            if not got_b[:k].all():
                problems.append(f"group B saw a gap in the dead writer's events (prefix {k})")
            if not (got_a == got_b).all():
                problems.append("groups A and B saw different events of the dead writer")
        else:
            if not got_b.all():
                problems.append(f"group B missed {int((got_b == 0).sum())} events of live writer w{w}")
            if not dead_writer and not got_a.all() and int((got_a == 0).sum()) > lost_a["dead_reader"]:
                problems.append(
                    f"group A missed {int((got_a == 0).sum())} events of w{w} but counts {lost_a['dead_reader']} lost"
                )
            if dead_writer and not got_a.all():
                problems.append(f"group A missed {int((got_a == 0).sum())} events of live writer w{w}")
    if gb["lost_total"] != lost_b["abandoned_by_writer"] or lost_b["abandoned_by_writer"] > 1:
        problems.append(f"group B lost {lost_b}")
    if dead_writer:
        if lost_a != lost_b:
            problems.append(f"the dead writer's loss differs between groups: A {lost_a}, B {lost_b}")
    else:
        published = int(res.seen_b.sum())
        extra = int((res.seen_a > 0).sum()) + lost_a["dead_reader"] - published
        if not 0 <= extra <= 1 or lost_a["dead_reader"] > 1 or lost_a["orphaned"] or lost_a["abandoned_by_writer"]:
            problems.append(
                f"group A: delivered {int((res.seen_a > 0).sum())} + lost {lost_a} does not account for "
                f"{published} published (a dead member holds at most one event)"
            )
    return problems
