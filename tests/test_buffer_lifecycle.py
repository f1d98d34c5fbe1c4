"""What the DAQ layer relies on in mimo_buffer: statistics of losses once a group's members have
all ended, what each process holds, Observer.active with a dead owner, close() during shutdown()."""

from __future__ import annotations

import multiprocessing as mp
import signal
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
from daq_helpers import drop_segments_of, env, wait_until

from mimocorb import mimo_buffer as bm

pytestmark = pytest.mark.timeout(60)


def publish(buf, n):
    w = bm.Writer(buf.new_writer())
    for i in range(n):
        w.put(np.array([i], dtype=np.int32))
    w.close()


def test_events_left_in_a_group_whose_members_all_ended_are_lost_after_the_shutdown():
    with bm.NewBuffer(64, 1, np.int32) as buf:
        early, full = buf.new_reader_group(), buf.new_reader_group()
        r = bm.Reader(early)
        publish(buf, 40)
        for _ in range(8):
            r.get()
        r.close()  # returned early: 8 consumed (close() releases the last one), 32 left
        drain = bm.Reader(full)
        for _ in range(40):
            drain.get()
        drain.release()
        before = buf.stats()["groups"][0]
        assert before["pending"] == 32 and before["lost_total"] == 0  # the run still goes on: a member may come
        buf.shutdown(timeout=1)
        g = buf.stats()["groups"]
        assert g[0]["lost"]["orphaned"] == 32 and g[0]["pending"] == 0 and g[0]["consumed"] == 8
        assert buf.stats()["lost"] == 32
        assert g[1]["consumed"] == 40 and g[1]["lost_total"] == 0
        for x in g:
            assert x["consumed"] + x["lost_total"] + x["pending"] == buf.stats()["claimed"]
        drain.close()


def test_retired_group_stops_gating_and_counts_what_it_misses():
    with bm.NewBuffer(4, 1, np.int32) as buf:
        g = buf.new_reader_group()
        r = bm.Reader(g)
        publish(buf, 4)
        r.get()
        r.close()
        buf.retire_group(g["group"])  # what the run control does when a consumer's processes have all ended
        publish(buf, 10)  # would block on the full buffer if the group still held it back
        s = buf.stats()
        assert s["groups"][0]["state"] == "orphaned" and s["filled"] == 0
        assert s["groups"][0]["consumed"] == 1 and s["groups"][0]["lost"]["orphaned"] == 13
        buf.shutdown(timeout=0.5)


def test_stats_name_what_each_process_holds():
    with bm.NewBuffer(8, 1, np.int32) as buf:
        g = buf.new_reader_group()
        r = bm.Reader(g)
        w = bm.Writer(buf.new_writer())
        w.get_new_buffer()[0] = 1
        w.process_buffer()
        w.get_new_buffer()  # claimed, not yet published
        r.get()
        procs = buf.stats()["processes"]
        assert {(p["role"], p["group"], p["holds"]) for p in procs} == {("writer", None, 1), ("reader", 0, 1)}
        assert buf.stats()["voided"] == 0
        w.close()
        r.close()


def _owner(conn):
    buf = bm.NewBuffer(4, 1, np.float64)
    conn.send(buf.new_observer(interval=0.0))
    w = bm.Writer(buf.new_writer())
    w.put(np.array([1.0]))
    conn.send("published")
    threading.Event().wait(60)


def test_observer_is_not_active_once_the_owner_died():
    """A display loop ``while observer.active`` must end when the run control was killed."""
    from mimocorb.gui.feeds import EventFeed

    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe()
    owner = ctx.Process(target=_owner, args=(child,), daemon=True)
    owner.start()
    try:
        setup = parent.recv()
        assert parent.recv() == "published"
        obs = bm.Observer(setup)
        assert obs.active and obs.get(timeout=5) is not None
        feed = EventFeed(setup, ["data"]).start()
        owner.kill()
        owner.join(5)
        wait_until(lambda: not obs.active, 10, "Observer.active turning False")
        assert obs.get(timeout=0.1) is None
        assert feed.ended.wait(10), "the display feed still runs after its buffer's owner died"
        feed.close()
        obs.close()
    finally:
        if owner.is_alive():
            owner.kill()
        owner.join(5)
        drop_segments_of(owner.pid)


def test_shutdown_can_be_cut_short():
    with bm.NewBuffer(4, 1, np.int32) as buf:
        r = bm.Reader(buf.new_reader_group())  # a live member that never reads: shutdown would wait
        publish(buf, 2)
        cut = threading.Event()
        threading.Timer(0.2, cut.set).start()
        assert buf.shutdown(timeout=60, cancel=cut.is_set) is False
        assert buf.stats()["state"] == "shutdown"
        r.close()


def test_close_while_another_thread_is_in_shutdown():
    """In a subprocess: a crash (segfault) there must not take the test run with it."""
    script = textwrap.dedent(
        """
        import threading, numpy as np
        from mimocorb import mimo_buffer as bm
        for _ in range(20):
            buf = bm.NewBuffer(4, 1, np.int32)
            r = bm.Reader(buf.new_reader_group())  # never reads: shutdown() keeps polling the segment
            w = bm.Writer(buf.new_writer()); w.put(np.array([1], dtype=np.int32)); w.close()
            t = threading.Thread(target=buf.shutdown, kwargs={"timeout": 30})
            t.start()
            threading.Event().wait(0.05)
            buf.close()  # from another thread, while shutdown() waits
            t.join(10)
            assert not t.is_alive(), "close() did not end the shutdown wait"
            del r
        print("ok")
        """
    )
    p = subprocess.run(
        [sys.executable, "-c", script], env=env(), capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL
    )
    assert p.returncode == 0 and p.stdout.strip() == "ok", (
        p.returncode,
        signal.Signals(-p.returncode).name if p.returncode < 0 else "",
        p.stderr,
    )
