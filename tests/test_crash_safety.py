"""Nothing hung, nothing leaked, nothing lost but what a dead process held."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import fault_injection
import numpy as np
import pytest
import ring_workers as rw

from mimocorb import mimo_buffer as bm

pytestmark = pytest.mark.timeout(60)


def wait_for(pred, timeout=10.0, interval=0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(interval)
    return False


def put(w, value):
    w.put(np.array([value], np.int32))


# --- dead reader -----------------------------------------------------------------


def test_dead_reader_slot_is_released_and_counted_for_its_group_only(procs):
    buf = bm.NewBuffer(4, 1, np.int32)
    group_a = buf.new_reader_group()
    q = procs.ctx.Queue()
    procs.start(rw.hold_one_and_wait, group_a, q)
    live_a = bm.Reader(group_a)
    b = bm.Reader(buf.new_reader_group())
    w = bm.Writer(buf.new_writer())
    put(w, 0)
    assert q.get(timeout=10) == ("holding", 0)
    procs.procs[0].kill()
    procs.procs[0].join(5)
    # the writer runs into the slot the dead member holds: it must go on
    assert int(b.get()[0]) == 0
    got_a, got_b = [], []
    for i in range(1, 20):
        put(w, i)
        got_a.append(int(live_a.get()[0]))
        got_b.append(int(b.get()[0]))
    assert got_a == got_b == list(range(1, 20))
    st = buf.stats()
    ga, gb = st["groups"]
    assert ga["lost"]["dead_reader"] == 1 and ga["lost_total"] == 1
    assert gb["lost_total"] == 0
    assert ga["members_alive"] == 1 and st["reaped"]["readers"] == 1
    for e in (live_a, b, w):
        e.close()
    buf.close()


def test_every_other_group_gets_every_event_after_a_reader_dies(procs):
    buf = bm.NewBuffer(4, 1, np.int32)
    group_a = buf.new_reader_group()
    q = procs.ctx.Queue()
    procs.start(rw.hold_one_and_wait, group_a, q)
    b = bm.Reader(buf.new_reader_group())
    w = bm.Writer(buf.new_writer())
    put(w, 0)
    q.get(timeout=10)
    procs.procs[0].kill()
    received = []
    for i in range(1, 50):  # far more than the ring holds: group A must stop gating
        put(w, i)
        received.append(int(b.get()[0]))
    assert received == list(range(49))
    st = buf.stats()
    ga = st["groups"][0]
    assert ga["state"] == "orphaned" and ga["members_alive"] == 0
    # 1 held by the dead member + everything published while no member lived
    assert ga["lost"]["dead_reader"] == 1 and ga["lost_total"] == 50
    # a new member continues with new events
    newcomer = bm.Reader(group_a)
    put(w, 100)
    put(w, 101)
    assert [int(newcomer.get()[0]), int(newcomer.get()[0])] == [100, 101]
    assert buf.stats()["groups"][0]["state"] == "active"
    for e in (b, w, newcomer):
        e.close()
    buf.close()


def test_group_that_never_had_a_member_holds_events(procs):
    buf = bm.NewBuffer(4, 1, np.int32)
    setup = buf.new_reader_group()
    q = procs.ctx.Queue()
    procs.start(rw.write_sequence, buf.new_writer(), 0, 10)
    assert wait_for(lambda: buf.buffer_status()[1] == 4)
    time.sleep(0.6)  # longer than a liveness period: nothing is dropped
    assert buf.buffer_status()[0] == 4 and procs.procs[0].is_alive()
    r = bm.Reader(setup)
    assert [int(r.get()[0]) for _ in range(10)] == list(range(10))
    assert procs.join(10) == [0]
    assert buf.stats()["lost"] == 0
    r.close()
    buf.close()
    del q


# --- dead writer ------------------------------------------------------------------


def test_dead_writer_slot_is_skipped_and_counted(procs):
    buf = bm.NewBuffer(4, 1, np.int32)
    r = bm.Reader(buf.new_reader_group())
    q = procs.ctx.Queue()
    w = bm.Writer(buf.new_writer())
    put(w, 0)
    procs.start(rw.claim_and_wait, buf.new_writer(), q)
    assert q.get(timeout=10) == "claimed"
    procs.procs[0].kill()
    procs.procs[0].join(5)
    got = [int(r.get()[0])]
    for i in range(1, 30):  # many times round the ring
        put(w, i)
        got.append(int(r.get()[0]))
    assert got == list(range(30)) and -1 not in got
    g = buf.stats()["groups"][0]
    assert g["lost"]["abandoned_by_writer"] == 1 and g["lost_total"] == 1
    assert buf.stats()["reaped"]["writers"] == 1
    r.close()
    w.close()
    buf.close()


# --- dead owner -------------------------------------------------------------------


@pytest.mark.parametrize("side", ["reader", "writer"])
def test_dead_owner_ends_blocked_endpoints_with_a_message(procs, side):
    q = procs.ctx.Queue()
    owner = procs.start(rw.own_a_buffer, q)
    shm_name, writer_setup, reader_setup = q.get(timeout=10)
    if side == "reader":
        worker = procs.start(rw.read_until_end, reader_setup, q)
    else:
        worker = procs.start(rw.write_until_end, writer_setup, q)  # fills 4 slots, then blocks
    time.sleep(0.3)
    owner.kill()
    owner.join(5)
    kind, n, message = q.get(timeout=10)
    worker.join(10)
    assert kind == "exit" and worker.exitcode == 1
    assert "has ended" in message and str(owner.pid) in message
    # the segment of the dead owner is left behind: cleanup removes it
    removed = bm.cleanup_segments()
    assert shm_name.lstrip("/") in [s["name"] for s in removed]


def test_cleanup_command_removes_only_segments_of_dead_owners(procs, tmp_path):
    q = procs.ctx.Queue()
    owner = procs.start(rw.own_a_buffer, q)
    dead_name = q.get(timeout=10)[0].lstrip("/")
    owner.kill()
    owner.join(5)
    with bm.NewBuffer(2, 1, np.int32) as live:
        live_name = live.shm_name.lstrip("/")
        cmd = [sys.executable, "-m", "mimocorb", "cleanup"]
        dry = subprocess.run(cmd + ["--dry-run"], capture_output=True, text=True, timeout=60)
        assert dry.returncode == 0, dry.stderr
        assert f"would remove /dev/shm/{dead_name}" in dry.stdout
        assert f"kept /dev/shm/{live_name}" in dry.stdout
        assert os.path.exists(f"/dev/shm/{dead_name}")
        real = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        assert real.returncode == 0 and f"removed /dev/shm/{dead_name}" in real.stdout
        assert not os.path.exists(f"/dev/shm/{dead_name}")
        assert os.path.exists(f"/dev/shm/{live_name}")


# --- signals and exits of the owner ------------------------------------------------

OWNER_SCRIPT = textwrap.dedent(
    """
    import sys, time, numpy as np
    from mimocorb import mimo_buffer as bm
    bufs = [bm.NewBuffer(8, 100, np.float32), bm.NewBuffer(4, 10, [("a", "f4"), ("b", "i4")])]
    r = bm.Reader(bufs[0].new_reader_group())
    w = bm.Writer(bufs[0].new_writer())
    w.put(np.zeros(100, np.float32))
    print(" ".join(b.shm_name for b in bufs), flush=True)
    mode = sys.argv[1]
    if mode == "exit":
        sys.exit(0)
    if mode == "exception":
        raise RuntimeError("boom")
    time.sleep(60)
    """
)


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "exit", "exception"])
def test_owner_unlinks_on_signals_and_exits_without_warnings(how):
    mode = how if how in ("exit", "exception") else "wait"
    p = subprocess.Popen(
        [sys.executable, "-c", OWNER_SCRIPT, mode], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        names = p.stdout.readline().split()
        assert len(names) == 2, p.stderr.read()
        assert all(os.path.exists("/dev/shm" + n) for n in names) or mode != "wait"
        if mode == "wait":
            p.send_signal(getattr(signal, how))
        _, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait(5)
    assert not [n for n in names if os.path.exists("/dev/shm" + n)]
    assert "resource_tracker" not in err and "leaked" not in err
    if how == "SIGTERM":
        assert p.returncode == -signal.SIGTERM
    if how == "exception":
        assert "boom" in err


# --- fault injection -----------------------------------------------------------------


@pytest.mark.timeout(600)
def test_fault_injection_random_kills():
    """Many rounds: SIGKILL a writer or a reader at a random point; after each:
    no event twice, none torn, no hang, losses equal what the dead held."""
    rounds = int(os.environ.get("MIMOCORB_FAULT_ROUNDS", "24"))
    victims = {}
    for i in range(rounds):
        res = fault_injection.run_round(n=2000, nslots=8, seed=i)
        victims[res.victim] = victims.get(res.victim, 0) + 1
        assert not res.problems, f"round {i} (killed {res.victim}): {res.problems}"
    assert len(victims) >= 3  # both kinds of victims were exercised


@pytest.mark.timeout(600)
def test_fault_injection_churn():
    """Members killed and replaced, groups added and orphaned while 2-3 writers run,
    sometimes a writer killed, an observer checking every copy: after each round
    every event since each group's start was delivered or counted lost, once."""
    rounds = int(os.environ.get("MIMOCORB_CHURN_ROUNDS", "8"))
    kills = 0
    for i in range(rounds):
        res = fault_injection.run_churn_round(n=1500, nslots=8, seed=1000 + i)
        kills += len(res.killed)
        assert not res.problems, f"churn round {i} (killed {res.killed}): {res.problems}"
    assert kills > rounds  # members were killed and replaced
