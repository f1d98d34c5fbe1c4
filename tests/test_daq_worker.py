"""The worker process: SIGTERM is a request to finish that waits for the event in hand, a failed
worker does not hand back the event it failed on, an exporter asked to finish closes its file."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import signal

import numpy as np
import pytest
from daq_helpers import SETUPS, read_table, wait_until

from mimocorb import mimo_buffer as bm
from mimocorb.daq import worker
from mimocorb.daq.user_code import ModuleRef
from mimocorb.daq.worker import EXIT_TERMINATED, WorkerInfo, WorkerTerminated, finish_after, interruptible

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def sigterm_handler():
    """The worker's SIGTERM handler in this (main) thread, for the duration of a test."""
    old = signal.signal(signal.SIGTERM, worker._on_sigterm)
    yield
    signal.signal(signal.SIGTERM, old)
    worker._finish_pending = worker._finish_requested = False


def test_a_request_to_finish_waits_until_the_event_is_handed_on(sigterm_handler):
    done = []
    with pytest.raises(WorkerTerminated):
        with finish_after():
            os.kill(os.getpid(), signal.SIGTERM)  # arrives while the event is written
            done.append("written")
            done.append("published")
    assert done == ["written", "published"] and worker.finish_requested()
    # a wait inside it (for space in a full buffer) still ends at once
    with pytest.raises(WorkerTerminated):
        with finish_after():
            with interruptible():
                os.kill(os.getpid(), signal.SIGTERM)
                done.append("not reached")
    assert done == ["written", "published"]
    # outside: at once
    with pytest.raises(WorkerTerminated):
        os.kill(os.getpid(), signal.SIGTERM)
        done.append("not reached")


def _start(target_fn: str, module: str, group: dict, config: dict):
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    info = WorkerInfo(target_fn, target_fn)
    path = ModuleRef(path=SETUPS / "chain" / "modules" / f"{module}.py")
    args = (info, path, [str(SETUPS / "chain")], [group], None, None, config, {"RB_1": "read"}, queue, logging.INFO)
    p = ctx.Process(target=worker.worker_main, args=args, daemon=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})  # as the run control starts workers
    try:
        p.start()
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
    return p, queue


def _stop(p, queue) -> None:
    if p.is_alive():
        p.kill()
    p.join(10)
    queue.close()
    queue.join_thread()


def test_sigterm_ends_an_exporter_that_closes_its_file(tmp_path):
    dt = [("index", "i8"), ("total", "f8"), ("peak", "f4")]
    with bm.NewBuffer(8, 1, dt, name="RB_1") as buf:
        group = buf.new_reader_group()
        w = bm.Writer(buf.new_writer())
        for i in range(3):
            w.put(np.array([(i, 0.5 * i, i)], dtype=dt), counter=i + 1)
        config = {"directory_prefix": str(tmp_path), "filename": "t", "flush_interval": 0.1}
        p, queue = _start("to_text", "export", group, config)
        try:
            wait_until(lambda: (tmp_path / "t.txt").exists() and len(read_table(tmp_path / "t.txt")) == 3, 20, "rows")
            p.terminate()  # the run control's request to finish
            p.join(10)
            assert p.exitcode == EXIT_TERMINATED
            assert [int(r["counter"]) for r in read_table(tmp_path / "t.txt")] == [1, 2, 3]
            (g,) = buf.stats()["groups"]
            assert g["consumed"] == 3 and g["lost_total"] == 0
        finally:
            _stop(p, queue)
            w.close()


def test_a_worker_asked_to_finish_in_user_code_does_not_hand_back_its_event(tmp_path):
    with bm.NewBuffer(8, 8, [("chA", "f4"), ("chB", "i4")], name="RB_1") as buf:
        group = buf.new_reader_group()
        w = bm.Writer(buf.new_writer())
        for _ in range(4):
            w.put(np.zeros(8, dtype=[("chA", "f4"), ("chB", "i4")]))
        p, queue = _start("sleeper", "misbehave", group, {"events": 3})
        try:
            wait_until(lambda: buf.stats()["groups"][0]["consumed"] == 2, 20, "two events consumed")
            p.terminate()  # it sleeps in user code, holding the third event
            p.join(10)
            assert p.exitcode == EXIT_TERMINATED
            (g,) = buf.stats()["groups"]
            assert g["consumed"] == 2 and g["lost"]["dead_reader"] == 1  # not processed: lost, not consumed
        finally:
            _stop(p, queue)
            w.close()
