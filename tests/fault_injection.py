"""Fault injection for the ring buffer: writers and reader groups under load,
one of them killed with SIGKILL at a random point of its cycle, and the
accounting checked afterwards; ``run_churn_round``: members killed and
replaced, groups added and orphaned while 2-3 writers run, an observer
checking every copy.

Used by tests/test_crash_safety.py (a fixed number of rounds) and by the soak
script tests/soak.py (rounds for a given time; run it for hours with
``python tests/soak.py --duration 14400``).

``run_round`` (one kill per round): 2 writers (values w * 1_000_000 + i, i = 0..n-1, every
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


# ---------------------------------------------------------------------------
# churn: members killed and replaced, groups added and orphaned while writers
# run, 2-3 writers (one maybe killed), an observer checking every copy
# ---------------------------------------------------------------------------


def churn_member(setup, seen, torn, n: int, out=None) -> None:
    """Count every value received in `seen`; with `out`, also send the order received."""
    r = bm.Reader(setup)
    pattern = np.arange(VALUES, dtype=np.int64)
    order = []
    try:
        while True:
            v = r.get()
            value = int(v[0]) // 7
            if not (v == value * 7 + pattern).all():
                torn.value += 1
            writer, i = divmod(value, BASE)
            seen[writer * n + i] += 1
            if out is not None:
                order.append(value)
    except SystemExit:
        if out is not None:
            out.put(order)
    r.close()


@dataclass
class ChurnResult:
    writers: int
    killed: list
    groups: dict
    stats: dict
    observed: int
    problems: list = field(default_factory=list)


def _new_group(buf: bm.NewBuffer) -> dict:
    setup = buf.new_reader_group()
    return {"setup": setup, "start": buf._seg.snapshot()["groups"][setup["group"]]["start"]}


def run_churn_round(n: int = 2000, nslots: int = 8, seed: int = 0) -> ChurnResult:
    """Writers run while members of group A are killed and replaced, group B is
    added late (never killed: its member sees every event after its start),
    group C loses its only member and gets a new one later; maybe one writer is
    killed. Checks every copy an observer takes, then the accounting."""
    import threading

    rng = random.Random(seed)
    ctx = mp.get_context("fork")
    nw = rng.choice([2, 3])
    torn = ctx.RawValue("i", 0)
    seen = {g: ctx.RawArray("i", nw * n) for g in "ABC"}
    progress = ctx.RawArray("q", [-1] * nw)
    order_b = ctx.Queue()
    procs: list = []
    killed: list = []
    observed = [0, 0]  # copies checked, torn copies
    buf = bm.NewBuffer(nslots, VALUES, np.int64)

    def start(target, *args):
        p = ctx.Process(target=target, args=args, daemon=True)
        p.start()
        procs.append(p)
        return p

    def watch(obs, stop):
        pattern = np.arange(VALUES, dtype=np.int64)
        while not stop.is_set():
            got = obs.get(timeout=0.05)
            if got is None:
                continue
            v = got[0]
            observed[0] += 1
            if not (v == (int(v[0]) // 7) * 7 + pattern).all():
                observed[1] += 1

    stop = threading.Event()
    obs = bm.Observer(buf.new_observer(interval=0.0))
    watcher = threading.Thread(target=watch, args=(obs, stop), daemon=True)
    groups: dict = {}
    try:
        for name in "AC":
            groups[name] = _new_group(buf)
        members_a = [start(churn_member, groups["A"]["setup"], seen["A"], torn, n) for _ in range(2)]
        member_c = start(churn_member, groups["C"]["setup"], seen["C"], torn, n)
        writers = [start(writer_proc, buf.new_writer(), w, n, progress, rng.randrange(1 << 30)) for w in range(nw)]
        watcher.start()
        kill_writer_at = rng.random() * 0.3 if rng.random() < 0.3 else None
        add_b_at = rng.random() * 0.2
        c_dies_at, c_back_at = rng.random() * 0.2, None
        t0 = time.monotonic()
        deadline = t0 + 60
        while any(p.is_alive() for p in writers) and time.monotonic() < deadline:
            time.sleep(rng.random() * 0.01)
            now = time.monotonic() - t0
            if rng.random() < 0.15:  # a member of A dies; its replacement starts at once or a little later
                victim = rng.choice(members_a)
                os.kill(victim.pid, signal.SIGKILL)
                victim.join(5)
                killed.append("A")
                members_a.remove(victim)
                if rng.random() < 0.3:
                    time.sleep(rng.random() * 0.01)
                members_a.append(start(churn_member, groups["A"]["setup"], seen["A"], torn, n))
            if "B" not in groups and now >= add_b_at:
                groups["B"] = _new_group(buf)
                start(churn_member, groups["B"]["setup"], seen["B"], torn, n, order_b)
            if member_c is not None and now >= c_dies_at:
                os.kill(member_c.pid, signal.SIGKILL)
                member_c.join(5)
                killed.append("C")
                member_c, c_back_at = None, now + rng.random() * 0.05
            if c_back_at is not None and now >= c_back_at:
                member_c, c_back_at = start(churn_member, groups["C"]["setup"], seen["C"], torn, n), None
                c_dies_at = now + rng.random() * 0.1
            if kill_writer_at is not None and now >= kill_writer_at:
                victim = rng.choice([p for p in writers if p.is_alive()] or writers)
                if victim.is_alive():
                    os.kill(victim.pid, signal.SIGKILL)
                    victim.join(5)
                    killed.append("W")
                kill_writer_at = None
        if "B" not in groups:  # the writers were quicker: B still gets added, with nothing to see
            groups["B"] = _new_group(buf)
            start(churn_member, groups["B"]["setup"], seen["B"], torn, n, order_b)
        if c_back_at is not None:
            start(churn_member, groups["C"]["setup"], seen["C"], torn, n)
        hung_writers = [p.pid for p in writers if p.is_alive()]
        drained = buf.shutdown(timeout=30)
        try:
            b_order = order_b.get(timeout=30)
        except Exception:
            b_order = None
        for p in procs:
            p.join(30)
        stop.set()
        watcher.join(5)
        stats = buf.stats()
        claimed = buf._seg.claimed
    finally:
        stop.set()
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
        obs.close()
        buf.close()
    res = ChurnResult(writers=nw, killed=killed, groups=groups, stats=stats, observed=observed[0])
    problems = res.problems
    if hung_writers:
        problems.append(f"writers still running after 60 s: {hung_writers}")
    if [p.pid for p in procs if p.exitcode is None]:
        problems.append("processes did not end")
    if not drained:
        problems.append("shutdown did not drain")
    if torn.value or observed[1]:
        problems.append(f"torn events: {torn.value} received, {observed[1]} of {observed[0]} observer copies")
    for gi, name in enumerate(["A", "C", "B"]):  # the order the groups were added in
        s = np.frombuffer(seen[name], np.int32)
        if (s > 1).any():
            problems.append(f"group {name}: {int((s > 1).sum())} events delivered twice")
        g = stats["groups"][gi]
        span = claimed - groups[name]["start"]
        got, lost, dead = int(s.sum()), g["lost_total"], g["lost"]["dead_reader"]
        # every sequence since the group's start was delivered or counted lost, once; a member
        # killed while holding an event saw it and has it counted lost (at most once per kill)
        if not (got + lost - dead <= span <= got + lost):
            problems.append(f"group {name}: {got} delivered + {g['lost']} lost does not account for {span} claimed")
    gb = stats["groups"][2]
    if gb["lost"]["dead_reader"] or gb["lost"]["orphaned"]:
        problems.append(f"group B, never killed, lost {gb['lost']}")
    if b_order is None:
        problems.append("group B's member sent no record")
    else:
        for w in range(nw):
            mine = [v for v in b_order if v // BASE == w]
            if mine != sorted(mine):
                problems.append(f"group B got writer {w}'s events out of order")
    return res
