"""The ring keeps its guarantees under every interleaving.

Each test orders the steps of several real processes exactly (puppets, see
tests/puppets.py): a process is stopped at a named step of the core (a fault
point), killed there or let go on, while the others act. The comments name
the review finding each test covers and the invariant (I1-I8 of
src/ringbuf_shm.h) it checks.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from puppets import VALUES, Puppets, intact

from mimocorb import _ringbuf
from mimocorb import mimo_buffer as bm

pytestmark = pytest.mark.timeout(90)


@pytest.fixture
def puppets():
    p = Puppets()
    yield p
    p.close()


def reap_until(buf: bm.NewBuffer, pred, timeout: float = 10.0) -> dict:
    """stats() (which reaps) until pred(stats) holds; the last stats otherwise."""
    deadline = time.monotonic() + timeout
    st = buf.stats()
    while not pred(st) and time.monotonic() < deadline:
        time.sleep(0.01)
        st = buf.stats()
    return st


def take(reader: bm.Reader, n: int, timeout: float = 5.0) -> list[int]:
    out = []
    for _ in range(n):
        v = reader.get_timeout(timeout)
        assert v is not None, f"no event within {timeout} s after {out}"
        assert intact(v), f"torn event {v}"
        out.append(int(v[0]))
    return out


def new_buffer(nslots: int = 4) -> bm.NewBuffer:
    return bm.NewBuffer(nslots, VALUES, np.int64)


# --- finding 1: writers lapping each other, then a group starts (I1a, I2) ---------------------


def test_a_writer_waits_for_a_slower_writer_instead_of_overwriting_its_slot(puppets):
    with new_buffer(2) as buf:
        observer = bm.Observer(buf.new_observer(interval=0))
        slow, fast = puppets("slow writer"), puppets("fast writer")
        slow.call("writer", buf.new_writer())
        fast.call("writer", buf.new_writer())
        slow.call("claim", 100)  # seq 0: claimed and filled, not yet published
        fast.call("put", 1)  # seq 1
        fast.send("put", 2)  # seq 2 goes into slot 0, which the slow writer still fills
        assert not fast.done_within(0.5), "a writer overwrote a slot that another writer still fills"
        slow.call("publish")
        assert fast.result() == 2
        # a group added now gets every later event whole, in order, nothing stalls
        reader = bm.Reader(buf.new_reader_group())
        for v in (3, 4, 5):
            fast.call("put", v)
            assert take(reader, 1) == [v]
        data, _meta = observer.get(timeout=1)
        assert intact(data) and int(data[0]) == 5
        st = buf.stats()
        assert st["published"] == 6 and st["lost"] == 0
        reader.close()
        observer.close()


def _write_patterned(setup, tag: int, n: int) -> None:
    w = bm.Writer(setup)
    for i in range(n):
        buf = w.get_new_buffer()
        buf[:] = tag * 10_000_000 + i
    w.process_buffer()
    w.close()


def _check_event(v: np.ndarray) -> tuple[int, int]:
    """(writer tag, index) of an event written by _write_patterned; AssertionError if torn."""
    first = int(v[0])
    assert (v == first).all(), f"torn event: starts {first}, holds {np.unique(v)[:5]}"
    return divmod(first, 10_000_000)


@pytest.mark.parametrize("trial", range(6))
def test_group_added_while_two_writers_run_free_gets_every_event_whole(procs, trial):
    """The reviewer's case: 2 writers, 2 slots of 256 KiB, no group; a group added
    while they run gets every event published after its start, whole, in each
    writer's order, and nothing stalls."""
    n = 3000
    with bm.NewBuffer(2, 32768, np.int64) as buf:
        observer = bm.Observer(buf.new_observer(interval=0))
        for tag in (1, 2):
            procs.start(_write_patterned, buf.new_writer(), tag, n)
        time.sleep(0.02 + 0.05 * trial)
        reader = bm.Reader(buf.new_reader_group())
        start = buf._seg.snapshot()["groups"][0]["start"]
        got = {1: [], 2: []}
        copies = 0
        for v in _drain_while_writers_run(reader, procs):
            tag, i = _check_event(v)
            got[tag].append(i)
            if copies < 200:
                c = observer.get(timeout=0)
                if c is not None:
                    _check_event(c[0])
                    copies += 1
        assert procs.join(10) == [0, 0]
        st = buf.stats()
        received = len(got[1]) + len(got[2])
        assert received == st["claimed"] - start, "events lost after the group started"
        for tag in (1, 2):
            assert got[tag] == sorted(got[tag]) and len(set(got[tag])) == len(got[tag])
            if got[tag]:
                assert got[tag][-1] == n - 1
        assert st["lost"] == 0
        reader.close()
        observer.close()


def _drain_while_writers_run(reader: bm.Reader, procs, stall: float = 10.0):
    """Every event until the writers have ended and nothing is left; AssertionError
    when nothing arrives for `stall` seconds while a writer still runs."""
    last = time.monotonic()
    while True:
        v = reader.get_timeout(0.1)
        if v is not None:
            last = time.monotonic()
            yield v
            continue
        if not any(p.is_alive() for p in procs.procs):
            v = reader.get_timeout(0.1)
            if v is None:
                return
            yield v
            continue
        assert time.monotonic() - last < stall, f"no event for {stall} s while the writers run: a stall"


def _member_until_killed(setup, ready) -> None:
    r = bm.Reader(setup)
    ready.put("joined")
    while True:
        r.get()


@pytest.mark.parametrize("trial", range(4))
def test_new_member_after_the_only_member_was_killed_gets_whole_events(procs, trial):
    """The reviewer's second case: the group's only member is SIGKILLed while two
    writers run, a new member joins while they keep running: no torn event, no stall."""
    n = 4000
    with bm.NewBuffer(2, 8192, np.int64) as buf:
        group = buf.new_reader_group()
        ready = procs.ctx.Queue()
        member = procs.start(_member_until_killed, group, ready)
        assert ready.get(timeout=10) == "joined"
        for tag in (1, 2):
            procs.start(_write_patterned, buf.new_writer(), tag, n)
        time.sleep(0.02 + 0.03 * trial)
        member.kill()
        member.join(5)
        reap_until(buf, lambda st: st["groups"][0]["state"] == "orphaned" or st["state"] != "running", 5)
        newcomer = bm.Reader(group)
        got = {1: [], 2: []}
        for v in _drain_while_writers_run(newcomer, procs):
            tag, i = _check_event(v)
            got[tag].append(i)
        writers = procs.procs[1:]
        for p in writers:
            p.join(10)
        assert [p.exitcode for p in writers] == [0, 0], "a writer hung"
        for tag in (1, 2):
            assert got[tag] == sorted(set(got[tag])), "an event twice or out of its writer's order"
        st = buf.stats()
        g = buf._seg.snapshot()["groups"][0]
        assert g["release"] == st["claimed"] and not g["hold"]  # nothing left pending
        newcomer.close()


def test_observer_copies_are_never_torn_with_two_writers_and_no_group(procs):
    with bm.NewBuffer(2, 4096, np.int64) as buf:
        observer = bm.Observer(buf.new_observer(interval=0))
        for tag in (1, 2):
            procs.start(_write_patterned, buf.new_writer(), tag, 20000)
        copies = 0
        deadline = time.monotonic() + 30
        while any(p.is_alive() for p in procs.procs) and time.monotonic() < deadline:
            c = observer.get(timeout=0.01)
            if c is not None:
                _check_event(c[0])
                copies += 1
        assert procs.join(10) == [0, 0]
        assert copies > 10  # the observer did look (the count depends on the load of the machine)
        observer.close()


# --- finding 2: no reaper livelock between two dead entries (I5, I6) ----------------------------


def test_dead_reader_that_lost_its_cas_and_dead_holder_are_reaped(puppets):
    with new_buffer(4) as buf:
        group = buf.new_reader_group()
        live = bm.Reader(group)  # keeps the group gating
        loser, holder, writer = puppets("announced, then killed"), puppets("holder"), puppets("writer")
        for m in (loser, holder):
            m.call("reader", group)
        writer.call("writer", buf.new_writer())
        writer.call("put", 0)
        loser.stop_at("reader_announced", "get", 5.0)  # announced seq 0, stopped before its CAS
        assert holder.call("get", 5.0) == (0, True)  # took seq 0
        loser.kill()
        holder.kill()
        st = reap_until(buf, lambda st: st["reaped"]["readers"] == 2)
        assert st["reaped"]["readers"] == 2, "the two dead entries wait for each other"
        g = st["groups"][0]
        assert g["lost"] == {"dead_reader": 1, "orphaned": 0, "abandoned_by_writer": 0}
        # seq 0 was released: the writer goes round the ring several times
        for i in range(1, 13):
            writer.call("put", i, timeout=5)
            assert take(live, 1) == [i]
        live.close()


def test_dead_writer_that_lost_its_cas_and_dead_holder_are_reaped(puppets):
    with new_buffer(4) as buf:
        reader = bm.Reader(buf.new_reader_group())
        loser, holder, writer = puppets("announced, then killed"), puppets("holder"), puppets("writer")
        for w in (loser, holder, writer):
            w.call("writer", buf.new_writer())
        loser.stop_at("writer_announced", "put", 100)  # announced seq 0, stopped before its CAS
        holder.call("claim", 200)  # claimed seq 0, never publishes it
        loser.kill()
        holder.kill()
        st = reap_until(buf, lambda st: st["reaped"]["writers"] == 2)
        assert st["reaped"]["writers"] == 2, "the two dead entries wait for each other"
        for i in range(1, 13):
            writer.call("put", i, timeout=5)
            assert take(reader, 1) == [i]
        st = buf.stats()
        assert st["groups"][0]["lost"]["abandoned_by_writer"] == 1 and st["abandoned_by_writers"] == 1
        assert st["published"] == 12
        reader.close()


# --- finding 3: registered but not yet a counted member (I8) --------------------------------------


@pytest.mark.parametrize("point", ["joining", "registered"])
def test_member_killed_while_joining_leaves_the_group_and_registry_right(puppets, point):
    with new_buffer(4) as buf:
        group = buf.new_reader_group()
        live = bm.Reader(group)
        in_use = buf._seg.snapshot()["entries_in_use"]
        joiner, writer = puppets("joiner"), puppets("writer")
        writer.call("writer", buf.new_writer())
        joiner.stop_at(point, "reader", group)
        joiner.kill()
        st = reap_until(buf, lambda st: buf._seg.snapshot()["entries_in_use"] == in_use + 1)
        assert buf._seg.snapshot()["entries_in_use"] == in_use + 1  # the writer's; the joiner's is free
        g = st["groups"][0]
        assert g["state"] == "active" and g["members_alive"] == 1
        for i in range(12):  # still gated by the live member: nothing overwritten, nothing lost
            writer.call("put", i, timeout=5)
            assert take(live, 1) == [i]
        assert buf.stats()["lost"] == 0
        live.close()


# --- finding 4: a joiner changes cursors only after it won (I7) ------------------------------------


@pytest.mark.parametrize("fate", ["killed", "continued"])
@pytest.mark.parametrize("point", ["group_locked", "group_starting", "group_moved"])
def test_two_joiners_restart_an_orphaned_group_once(puppets, point, fate):
    with new_buffer(4) as buf:
        group = buf.new_reader_group()
        first, j1, j2, writer = puppets("first member"), puppets("joiner 1"), puppets("joiner 2"), puppets("writer")
        first.call("reader", group)
        writer.call("writer", buf.new_writer())
        first.kill()
        reap_until(buf, lambda st: st["groups"][0]["state"] == "orphaned")
        for i in range(6):  # no gate: the writer runs on
            writer.call("put", i, timeout=5)
        j1.stop_at(point, "reader", group)  # holds the group's lock, part of the way through the start
        j2.send("reader", group)
        assert not j2.done_within(0.3), "a second joiner went ahead while the first held the lock"
        if fate == "killed":
            j1.kill()
        else:
            j1.cont()
            assert j1.result(5) == 0
        assert j2.result(5) == 0
        st = buf.stats()
        g = st["groups"][0]
        assert g["state"] == "active" and not buf._seg.snapshot()["groups"][0]["hold"]
        start = buf._seg.snapshot()["groups"][0]["start"]
        assert start == 6  # the restart begins with the events published after it
        got = []
        for i in range(6, 15):
            writer.call("put", i, timeout=5)
            v = j2.call("get", 5.0)
            assert v is not None and v[1], f"joiner 2 got {v}"
            got.append(v[0])
        assert got == list(range(6, 15))
        if fate == "continued":
            assert j1.call("get", 0.2) is None  # a member of the same group: nothing twice
        g = buf.stats()["groups"][0]
        assert g["lost"] == {"dead_reader": 0, "orphaned": 6, "abandoned_by_writer": 0}  # counted once


@pytest.mark.parametrize("point", ["group_locked", "group_starting", "group_moved"])
def test_only_joiner_killed_while_restarting_leaves_the_group_orphaned(puppets, point):
    """Nobody lives to finish the start: the reaper finishes it and orphans the group
    again, so it does not hold back the writers with no member to release anything."""
    with new_buffer(2) as buf:
        group = buf.new_reader_group()
        first, joiner, writer = puppets("first member"), puppets("joiner"), puppets("writer")
        first.call("reader", group)
        writer.call("writer", buf.new_writer())
        first.kill()
        reap_until(buf, lambda st: st["groups"][0]["state"] == "orphaned")
        for i in range(3):
            writer.call("put", i, timeout=5)
        joiner.stop_at(point, "reader", group)
        joiner.kill()
        st = reap_until(buf, lambda st: st["reaped"]["readers"] == 2 and st["groups"][0]["state"] == "orphaned")
        assert st["groups"][0]["state"] == "orphaned" and st["reaped"]["readers"] == 2
        for i in range(3, 10):  # the group does not gate: the writer goes round the ring
            writer.call("put", i, timeout=5)
        g = buf.stats()["groups"][0]
        assert g["lost"] == {"dead_reader": 0, "orphaned": 10, "abandoned_by_writer": 0}
        late = bm.Reader(group)  # and a member joining now starts it again
        writer.call("put", 10, timeout=5)
        assert take(late, 1) == [10]
        late.close()


# --- finding 5: no lost wake-up (a long sleep slice turns one into a hang) ---------------------------


def test_writer_woken_by_the_second_groups_release(puppets):
    puppets.sleep_slice = 30.0
    with new_buffer(2) as buf:
        ga, gb = buf.new_reader_group(), buf.new_reader_group()
        ra, rb, writer = puppets("reader a"), puppets("reader b"), puppets("writer")
        ra.call("reader", ga)
        rb.call("reader", gb)
        writer.call("writer", buf.new_writer())
        writer.call("put", 0)
        writer.call("put", 1)  # full for both groups
        writer.stop_at("sleep_announced", "put", 2)  # read the word, raised its flag, not yet re-checked
        assert ra.call("get", 5.0) == (0, True)
        ra.call("release")  # wakes the writer's flag away, while the writer still sleeps for group b
        writer.cont()
        time.sleep(0.05)  # the writer goes back to sleep: group b still holds seq 0
        assert rb.call("get", 5.0) == (0, True)
        rb.call("release")  # must wake it now, not 30 s later
        assert writer.result(5) == 2


def test_reader_woken_by_the_second_writers_publication(puppets):
    puppets.sleep_slice = 30.0
    with new_buffer(4) as buf:
        group = buf.new_reader_group()
        reader, slow, fast = puppets("reader"), puppets("slow writer"), puppets("fast writer")
        reader.call("reader", group)
        slow.call("writer", buf.new_writer())
        fast.call("writer", buf.new_writer())
        slow.call("claim", 0)  # seq 0 held
        reader.stop_at("sleep_announced", "get", 20.0)
        fast.call("put", 1)  # seq 1: wakes the flag away, but the reader needs seq 0
        reader.cont()
        time.sleep(0.05)
        slow.call("publish")  # seq 0: must wake the reader now
        assert reader.result(5) == (0, True)


# --- finding 7: a reaper dies mid-reap; its successor finishes (I7, I6) -------------------------------


@pytest.mark.parametrize("point", ["reaper_took", "group_locked", "reaper_marked", "group_hold", "reaper_released"])
def test_reaper_killed_mid_reap_of_a_reader(puppets, point):
    with new_buffer(4) as buf:
        group = buf.new_reader_group()
        other = bm.Reader(buf.new_reader_group())  # a second group sees everything
        dead, reaper, writer = puppets("dead member"), puppets("reaper"), puppets("writer")
        dead.call("reader", group)
        writer.call("writer", buf.new_writer())
        writer.call("put", 0)
        assert dead.call("get", 5.0) == (0, True)
        dead.kill()
        reaper.stop_at(point, "reap", buf.shm_name)
        reaper.kill()
        st = reap_until(buf, lambda st: st["reaped"]["readers"] == 1 and st["groups"][0]["state"] == "orphaned")
        assert st["reaped"]["readers"] == 1, "the entry of the dead reaper was never taken over"
        g = st["groups"][0]
        assert g["state"] == "orphaned" and g["lost"]["dead_reader"] == 1 and g["lost"]["orphaned"] == 0
        assert take(other, 1) == [0]
        for i in range(1, 10):
            writer.call("put", i, timeout=5)
            assert take(other, 1) == [i]
        g = buf.stats()["groups"][0]
        assert g["lost"]["dead_reader"] == 1 and g["lost_total"] == 10  # 1 dead + 9 while orphaned
        other.close()


@pytest.mark.parametrize("point", ["reaper_took", "reaper_marked", "reaper_released"])
def test_reaper_killed_mid_reap_of_a_writer(puppets, point):
    with new_buffer(4) as buf:
        reader = bm.Reader(buf.new_reader_group())
        dead, reaper, writer = puppets("dead writer"), puppets("reaper"), puppets("writer")
        dead.call("writer", buf.new_writer())
        writer.call("writer", buf.new_writer())
        dead.call("claim", 0)
        dead.kill()
        reaper.stop_at(point, "reap", buf.shm_name)
        reaper.kill()
        st = reap_until(buf, lambda st: st["reaped"]["writers"] == 1)
        assert st["reaped"]["writers"] == 1
        for i in range(1, 10):
            writer.call("put", i, timeout=5)
            assert take(reader, 1) == [i]
        g = buf.stats()["groups"][0]
        assert g["lost"] == {"dead_reader": 0, "orphaned": 0, "abandoned_by_writer": 1}
        reader.close()


# --- finding 8: two reapers at once count a loss once (I6) ---------------------------------------------


def test_two_reapers_of_two_dead_entries_announcing_one_sequence(puppets):
    with new_buffer(4) as buf:
        group = buf.new_reader_group()
        live = bm.Reader(group)
        loser, holder, r1, writer = puppets("loser"), puppets("holder"), puppets("reaper 1"), puppets("writer")
        for m in (loser, holder):
            m.call("reader", group)
        writer.call("writer", buf.new_writer())
        writer.call("put", 0)
        loser.stop_at("reader_announced", "get", 5.0)
        assert holder.call("get", 5.0) == (0, True)
        loser.kill()
        holder.kill()
        r1.stop_at("reaper_took", "reap", buf.shm_name)  # holds one of the two entries
        buf.stats()  # reaps the other one meanwhile
        r1.cont()
        assert r1.result(5) >= 0
        st = reap_until(buf, lambda st: st["reaped"]["readers"] == 2)
        assert st["groups"][0]["lost"]["dead_reader"] == 1
        for i in range(1, 9):
            writer.call("put", i, timeout=5)
            assert take(live, 1) == [i]
        live.close()


# --- finding 9: close() from another thread while a call waits ---------------------------------------

CLOSE_SCRIPT = textwrap.dedent(
    """
    import sys, threading, time
    import numpy as np
    from mimocorb import mimo_buffer as bm
    buf = bm.NewBuffer(2, 4, np.int64)
    side = sys.argv[1]
    w = bm.Writer(buf.new_writer())
    if side == "reader":
        end = bm.Reader(buf.new_reader_group())
        call = end.get
    else:
        r = bm.Reader(buf.new_reader_group())
        end = w
        w.put(np.zeros(4, np.int64)); w.put(np.zeros(4, np.int64))  # full
        call = w.get_new_buffer
    outcome = []
    def waiter():
        try:
            call()
            outcome.append("returned")
        except SystemExit as exc:
            outcome.append("SystemExit")
    t = threading.Thread(target=waiter)
    t.start()
    time.sleep(0.3)
    end.close()
    t.join(5)
    print(outcome, t.is_alive(), flush=True)
    try:
        end.get_new_buffer() if side == "writer" else end.get()
    except ValueError as exc:
        print("closed:", exc, flush=True)
    buf.close()
    """
)


@pytest.mark.parametrize("side", ["reader", "writer"])
def test_close_from_another_thread_ends_the_waiting_call(side):
    p = subprocess.run([sys.executable, "-c", CLOSE_SCRIPT, side], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, f"exit {p.returncode}: {p.stderr}"
    assert "['SystemExit'] False" in p.stdout and "closed: this endpoint is closed" in p.stdout


def test_an_endpoint_refuses_a_second_thread():
    import threading

    with new_buffer(2) as buf:
        r = bm.Reader(buf.new_reader_group())
        t = threading.Thread(target=lambda: r.get_timeout(2.0))
        t.start()
        time.sleep(0.2)
        with pytest.raises(RuntimeError, match="another thread"):
            r.get_timeout(0)
        t.join(5)
        r.close()


# --- finding 10: bounded waits end at their deadline ---------------------------------------------------


@pytest.mark.parametrize("timeout", [0.001, 0.01, 0.03, 0.15])
def test_bounded_waits_end_at_their_deadline(timeout):
    with new_buffer(2) as buf:
        r = bm.Reader(buf.new_reader_group())
        over = []
        for _ in range(5):
            t0 = time.monotonic()
            assert r.get_timeout(timeout) is None
            over.append(time.monotonic() - t0 - timeout)
        # the sleep slice is 100 ms: a wait that ignores its deadline overshoots by up to that
        assert min(over) >= 0 and sorted(over)[2] < 0.02, over
        r.close()


# --- finding 11: the smaller ones ------------------------------------------------------------------------


def test_batch_slots_get_their_own_default_metadata():
    with new_buffer(4) as buf:
        r = bm.Reader(buf.new_reader_group())
        w = bm.Writer(buf.new_writer())
        for i in range(4):  # the first lap: explicit metadata in every slot
            w.get_new_buffer()[:] = i
            w.set_metadata(777, 1.0, 0.9)
        w.process_buffer()
        assert len(r.get_many(4)) == 4
        r.release()
        block = w.get_new_buffers(4)
        block[:] = 0
        w.set_metadata(12345, 99.0, 0.5)  # the first slot of the batch only
        t0 = time.time()
        w.process_buffer()
        assert len(r.get_many(4)) == 4
        meta = r.metadata_many()
        assert meta[0] == (12345, 99.0, 0.5)
        for k, (counter, ts, dt) in enumerate(meta[1:], start=1):
            # defaults, not the previous lap's (777, 1.0, 0.9)
            assert counter == 4 + k and dt == 0.0 and abs(ts - t0) < 5, meta
        r.close()
        w.close()


def test_event_limit_lowered_while_a_writer_claims(puppets):
    with new_buffer(8) as buf:
        r = bm.Reader(buf.new_reader_group())
        writer = puppets("writer")
        writer.call("writer", buf.new_writer())
        writer.call("put", 0)
        writer.call("put", 1)
        writer.stop_at("writer_announced", "put", 2)  # about to claim seq 2
        buf.set_event_limit(2)
        writer.cont()
        assert writer.result(5) == ("SystemExit", "")
        assert take(r, 2) == [0, 1] and r.get_timeout(0.2) is None
        st = buf.stats()
        assert st["published"] == 2 and st["claimed"] == 3 and st["lost"] == 0
        r.close()


def test_published_count_is_exact_while_a_reaper_holds_a_dead_writer(puppets):
    with new_buffer(8) as buf:
        r = bm.Reader(buf.new_reader_group())
        dead, reaper = puppets("writer"), puppets("reaper")
        dead.call("writer", buf.new_writer())
        for i in range(3):
            dead.call("put", i)
        dead.call("claim", 3)  # held, unpublished
        dead.kill()
        reaper.stop_at("reaper_released", "reap", buf.shm_name)
        assert buf.stats()["published"] == 3  # the stopped reaper's entry is counted once
        reaper.kill()
        st = reap_until(buf, lambda st: st["reaped"]["writers"] == 1)
        assert st["published"] == 3 and st["abandoned_by_writers"] == 1
        assert take(r, 3) == [0, 1, 2]
        r.close()


def test_writer_killed_in_the_middle_of_publishing_a_batch(puppets):
    with new_buffer(8) as buf:
        r = bm.Reader(buf.new_reader_group())
        dead = puppets("writer")
        dead.call("writer", buf.new_writer())
        dead.call("claim_many", 0, 4)
        dead.stop_at("writer_publishing", "publish")  # the first of 4 published
        dead.kill()
        st = reap_until(buf, lambda st: st["reaped"]["writers"] == 1)
        assert st["published"] == 1 and st["abandoned_by_writers"] == 3
        assert take(r, 1) == [0] and r.get_timeout(0.2) is None
        assert buf.stats()["groups"][0]["lost"]["abandoned_by_writer"] == 3
        r.close()


def test_deadtime_sum_exact_over_many_writers(procs):
    def write(setup):
        w = bm.Writer(setup)
        for i in range(200):
            w.get_new_buffer()[:] = i
            w.set_metadata(i, 1.0, 0.5)
        w.process_buffer()
        w.close()

    with new_buffer(64) as buf:
        for _ in range(6):
            procs.start(write, buf.new_writer())
        assert procs.join(30) == [0] * 6
        st = buf.stats()
        assert st["published"] == 1200 and st["deadtime_sum"] == 600.0


def test_identity_tells_a_reused_pid_from_the_dead_process():
    import os

    with open(f"/proc/{os.getpid()}/stat") as f:
        start = int(f.read().rsplit(")", 1)[1].split()[19])
    assert _ringbuf._identity_alive(os.getpid(), start)
    assert not _ringbuf._identity_alive(os.getpid(), start + 1)  # same pid, another process


def test_writer_sleeping_on_a_restarting_group_is_woken(puppets):
    """A group restarting gates from its old cursor for a moment; the writers it
    held back are woken when it opens (not a sleep slice later)."""
    puppets.sleep_slice = 30.0
    with new_buffer(2) as buf:
        group = buf.new_reader_group()
        first, joiner, writer = puppets("first"), puppets("joiner"), puppets("writer")
        first.call("reader", group)
        writer.call("writer", buf.new_writer())
        first.kill()
        reap_until(buf, lambda st: st["groups"][0]["state"] == "orphaned")
        for i in range(4):
            writer.call("put", i, timeout=5)
        joiner.stop_at("group_starting", "reader", group)  # gates from the old cursor, not yet moved
        writer.send("put", 4)
        assert not writer.done_within(0.2)
        joiner.cont()
        assert joiner.result(5) == 0
        assert writer.result(5) == 4
