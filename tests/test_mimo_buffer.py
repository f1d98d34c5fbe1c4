"""The 1.x buffer interface with real processes: delivery, order, metadata,
observers, shutdown, late groups, fork and spawn."""

from __future__ import annotations

import multiprocessing as mp
import pickle
import queue as queue_mod
import time
from collections import Counter

import numpy as np
import pytest
import ring_workers as rw

from mimocorb import mimo_buffer as bm


def drain(q, n, timeout=30.0):
    out = []
    deadline = time.monotonic() + timeout
    while len(out) < n:
        out.append(q.get(timeout=max(0.1, deadline - time.monotonic())))
    return out


# --- the application example, as written for 1.x ------------------------------


def data_generator(buffer_dict):
    writer = bm.Writer(buffer_dict)
    for i in range(1, 1001):
        buffer = writer.get_new_buffer()
        buffer[0] = i
        writer.process_buffer()


def analyzer(source_dict, sink_dict):
    reader = bm.Reader(source_dict)
    writer = bm.Writer(sink_dict)
    while True:
        input_data = reader.get()
        output_data = writer.get_new_buffer()
        output_data[0] = input_data[0]
        writer.set_metadata(*reader.get_metadata())
        writer.process_buffer()


def check_result(source_dict, result_queue):
    reader = bm.Reader(source_dict)
    total = 0
    try:
        while True:
            total += reader.get()[0]
    except SystemExit:
        result_queue.put(int(total))
        raise


def test_application_example_runs_unchanged(procs):
    generator_buffer = bm.NewBuffer(10, 1, np.int32)
    analyzer_buffer = bm.NewBuffer(10, 1, np.int32)
    result = mp.get_context("fork").Queue()
    ana_group = generator_buffer.new_reader_group()
    check_group = analyzer_buffer.new_reader_group()
    analyzers = [procs.start(analyzer, ana_group, analyzer_buffer.new_writer()) for _ in range(2)]
    checker = procs.start(check_result, check_group, result)
    gen = procs.start(data_generator, generator_buffer.new_writer())
    gen.join(30)
    assert generator_buffer.shutdown(timeout=20)
    for p in analyzers:
        p.join(20)
    assert analyzer_buffer.shutdown(timeout=20)
    checker.join(20)
    assert result.get(timeout=5) == 500500
    assert procs.join(5) == [0, 0, 0, 0] or all(c in (0, None) for c in procs.join(5))
    generator_buffer.close()
    analyzer_buffer.close()


# --- delivery ---------------------------------------------------------------------


@pytest.mark.timeout(180)
def test_two_writers_three_groups_two_members_exactly_once(procs):
    n_per_writer = 3000
    buf = bm.NewBuffer(16, 2, np.int64)
    q = mp.get_context("fork").Queue()
    groups = [buf.new_reader_group() for _ in range(3)]
    for g, setup in enumerate(groups):
        for m in range(2):
            procs.start(rw.read_all, setup, q, 0.002, seed=10 * g + m, key=g)
    for w in range(2):
        procs.start(rw.write_sequence, buf.new_writer(), w * n_per_writer, (w + 1) * n_per_writer, w, 0.002, w)
    for p in procs.procs[6:]:
        p.join(120)
    assert buf.shutdown(timeout=60)
    results = drain(q, 6, timeout=60)
    procs.join(30)
    expected = Counter(range(2 * n_per_writer))
    for g in range(3):
        values = Counter(v for key, got in results if key == g for v, _, _ in got)
        assert values == expected, f"group {g}: missing {len(expected - values)}, extra {len(values - expected)}"
        members = [got for key, got in results if key == g]
        assert all(len(m) > 0 for m in members), "work was not shared between the two members"
    stats = buf.stats()
    assert stats["published"] == 2 * n_per_writer and stats["lost"] == 0
    buf.close()


def test_one_member_group_keeps_order_and_metadata(procs):
    buf = bm.NewBuffer(8, 2, np.int32)
    q = mp.get_context("fork").Queue()
    procs.start(rw.read_all, buf.new_reader_group(), q)
    procs.start(rw.write_sequence, buf.new_writer(), 0, 5000)
    procs.procs[1].join(60)
    buf.shutdown()
    ((_, got),) = drain(q, 1)
    procs.join()
    assert [v for v, _, _ in got] == list(range(5000))
    assert [c for _, _, c in got] == list(range(5000))
    buf.close()


def test_metadata_round_trip_and_defaults():
    with bm.NewBuffer(4, 3, np.float64) as buf:
        r = bm.Reader(buf.new_reader_group())
        w = bm.Writer(buf.new_writer())
        assert r.get_metadata() == (0, -1, -1)
        b = w.get_new_buffer()
        b[:] = [1.5, 2.5, 3.5]
        w.set_metadata(42, 1234.5, 0.125)
        w.process_buffer()
        t0 = time.time()
        w.get_new_buffer()[:] = 7
        w.process_buffer()  # no metadata: counter = writer's count, timestamp = now
        v = r.get()
        assert list(v) == [1.5, 2.5, 3.5] and not v.flags.writeable
        assert r.get_metadata() == (42, 1234.5, 0.125)
        r.get()
        counter, ts, dead = r.get_metadata()
        assert counter == 1 and abs(ts - t0) < 5 and dead == 0.0
        # the idiom of 1.x filters
        w2buf = bm.NewBuffer(2, 1, np.int8)
        sink = bm.Writer(w2buf.new_writer())
        rr = bm.Reader(w2buf.new_reader_group())
        sink.get_new_buffer()
        sink.set_metadata(*r.get_metadata())
        sink.process_buffer()
        rr.get()
        assert rr.get_metadata() == (1, ts, 0.0)
        for e in (r, w, sink, rr):
            e.close()
        w2buf.close()


def test_put_copies_a_whole_structured_record():
    dtype = [("chA", "f4"), ("chB", "f4")]
    with bm.NewBuffer(4, 100, dtype) as buf:
        r = bm.Reader(buf.new_reader_group())
        w = bm.Writer(buf.new_writer())
        rec = np.zeros(100, dtype=dtype)
        rec["chA"] = np.arange(100)
        rec["chB"] = -np.arange(100)
        w.put(rec, counter=7, timestamp=99.0, deadtime=0.5)
        got = r.get()
        assert (got == rec).all() and got.dtype == np.dtype(dtype)
        assert r.get_metadata() == (7, 99.0, 0.5)
        with pytest.raises(ValueError, match="800 bytes"):
            w.put(np.zeros(3, np.float32))
        r.close()
        w.close()


def test_batch_calls_hand_out_contiguous_runs():
    with bm.NewBuffer(8, 10, np.int32) as buf:
        r = bm.Reader(buf.new_reader_group())
        w = bm.Writer(buf.new_writer())
        block = w.get_new_buffers(5)
        assert block.shape == (5, 10)
        block[:, 0] = np.arange(5)
        block = w.get_new_buffers(5)  # publishes the first five; only 3 left before the ring end
        assert block.shape == (3, 10)
        block[:, 0] = np.arange(5, 8)
        w.process_buffer()
        many = r.get_many(100)
        assert many.shape == (8, 10) and list(many[:, 0]) == list(range(8))
        assert not many.flags.writeable
        r.close()
        w.close()


def test_data_available_and_timeout():
    with bm.NewBuffer(4, 1, np.int32) as buf:
        r = bm.Reader(buf.new_reader_group())
        w = bm.Writer(buf.new_writer())
        assert not r.data_available()
        assert r.get_timeout(0.05) is None
        w.put(np.array([5], np.int32))
        assert r.data_available()
        assert r.get_timeout(1.0)[0] == 5
        r.close()
        w.close()


def test_writer_blocks_when_full_and_resumes(procs):
    """Back-pressure: nothing is overwritten while a group has not read it."""
    with bm.NewBuffer(4, 1, np.int64) as buf:
        r = bm.Reader(buf.new_reader_group())
        q = mp.get_context("fork").Queue()
        procs.start(rw.write_sequence, buf.new_writer(), 0, 10)
        time.sleep(0.3)
        assert buf.buffer_status()[1] == 4  # full, the writer waits
        assert procs.procs[0].is_alive()
        got = [int(r.get()[0]) for _ in range(10)]
        assert got == list(range(10))
        procs.join()
        r.close()
        del q


@pytest.mark.timeout(120)
def test_no_slot_is_overwritten_while_a_group_holds_it(procs):
    nbytes = 4096
    buf = bm.NewBuffer(4, nbytes, np.uint8)
    q = mp.get_context("fork").Queue()
    procs.start(rw.check_pattern, buf.new_reader_group(), q, 0.0)
    procs.start(rw.check_pattern, buf.new_reader_group(), q, 0.0005)
    procs.start(rw.write_pattern, buf.new_writer(), 3000, nbytes)
    procs.procs[2].join(90)
    assert buf.shutdown(timeout=60)
    results = drain(q, 2)
    procs.join()
    assert sorted(results) == [(3000, 0), (3000, 0)]
    buf.close()


# --- observers -----------------------------------------------------------------


@pytest.mark.timeout(120)
def test_observer_copies_are_never_torn(procs):
    buf = bm.NewBuffer(4, 2048, np.int32)
    q = mp.get_context("fork").Queue()
    obs = buf.new_observer(interval=0.0)
    procs.start(rw.observe_checksums, obs, q, 3.0)
    procs.start(rw.write_checksummed, buf.new_writer(), 400_000)  # no groups: the writer runs flat out
    seen, torn = q.get(timeout=60)
    buf.shutdown()
    procs.join(60)
    assert seen > 10 and torn == 0
    buf.close()


def test_observer_does_not_gate_and_returns_none_at_end():
    with bm.NewBuffer(2, 3, np.int16) as buf:
        o = bm.Observer(buf.new_observer(interval=0.0))
        r = bm.Reader(buf.new_reader_group())
        w = bm.Writer(buf.new_writer())
        assert o.get(timeout=0.05) is None
        w.put(np.array([1, 2, 3], np.int16))
        data, meta = o.get(timeout=1)
        assert list(data) == [1, 2, 3] and meta.dtype == bm.METADATA_DTYPE and meta.shape == (1,)
        assert data.flags.writeable and data.base is None or data.base.base is None  # a private copy
        data[0] = 99  # does not touch the slot
        assert r.get()[0] == 1
        r.release()
        # the observer holds nothing: the writer can fill every slot
        w.put(np.array([4, 5, 6], np.int16))
        w.put(np.array([7, 8, 9], np.int16))  # would block if the observer held a slot
        assert o.get(timeout=1)[0][0] == 7
        buf.shutdown(timeout=1)
        assert o.get(timeout=1) is None
        r.close()
        w.close()


# --- end of run -------------------------------------------------------------


def test_shutdown_ends_blocked_readers_and_writers(procs):
    buf = bm.NewBuffer(2, 1, np.int32)
    full = bm.NewBuffer(2, 1, np.int32)
    full.new_reader_group()  # a group that never reads: writers block
    q = mp.get_context("fork").Queue()
    procs.start(rw.block_in_get, buf.new_reader_group(), q)
    procs.start(rw.block_in_get_new_buffer, full.new_writer(), q)
    time.sleep(0.3)
    t = time.monotonic()
    assert buf.shutdown(timeout=5)
    full.shutdown(timeout=5)
    assert time.monotonic() - t < 5
    assert sorted(drain(q, 2)) == ["exit", "exit"]
    assert procs.join(10) == [0, 0]
    buf.close()
    full.close()


def test_shutdown_delivers_what_was_published_then_exits(procs):
    buf = bm.NewBuffer(64, 2, np.int32)
    q = mp.get_context("fork").Queue()
    setup = buf.new_reader_group()
    w = bm.Writer(buf.new_writer())
    for i in range(50):
        w.get_new_buffer()[0] = i
    w.process_buffer()
    procs.start(rw.read_all, setup, q)
    assert buf.shutdown(timeout=10)
    ((_, got),) = drain(q, 1)
    assert [v for v, _, _ in got] == list(range(50))
    with pytest.raises(SystemExit):
        w.get_new_buffer()
    procs.join()
    w.close()
    buf.close()


def test_shutdown_is_bounded_with_a_stuck_consumer():
    buf = bm.NewBuffer(4, 1, np.int32)
    r = bm.Reader(buf.new_reader_group())  # attached, never reads
    w = bm.Writer(buf.new_writer())
    w.put(np.array([1], np.int32))
    t = time.monotonic()
    assert buf.shutdown(timeout=0.3) is False
    assert time.monotonic() - t < 2
    assert r.get()[0] == 1  # still delivered after the deadline
    with pytest.raises(SystemExit):
        r.get()
    r.close()
    w.close()
    buf.close()


def test_late_group_gets_the_events_published_after_it():
    with bm.NewBuffer(4, 1, np.int32) as buf:
        early = bm.Reader(buf.new_reader_group())
        w = bm.Writer(buf.new_writer())
        for i in range(3):
            w.put(np.array([i], np.int32))
        late = bm.Reader(buf.new_reader_group())
        for i in range(3, 6):
            if i == 4:
                assert [early.get()[0] for _ in range(4)] == [0, 1, 2, 3]
            w.put(np.array([i], np.int32))
        assert [int(late.get()[0]) for _ in range(3)] == [3, 4, 5]
        assert [int(early.get()[0]) for _ in range(2)] == [4, 5]
        for e in (early, late, w):
            e.close()


# --- start methods -------------------------------------------------------------


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_setup_dicts_work_with_fork_and_spawn(method, request):
    p = request.getfixturevalue("procs" if method == "fork" else "spawn_procs")
    buf = bm.NewBuffer(8, 2, np.int32)
    setups = (buf.new_writer(), buf.new_reader_group())
    for s in setups:
        assert pickle.loads(pickle.dumps(s)) == s
        assert {"number_of_slots", "values_per_slot", "dtype"} <= set(s)
    q = p.ctx.Queue()
    p.start(rw.read_all, setups[1], q)
    p.start(rw.write_sequence, setups[0], 0, 200)
    p.procs[1].join(60)
    buf.shutdown()
    try:
        ((_, got),) = drain(q, 1)
    except queue_mod.Empty:
        pytest.fail("reader sent nothing")
    assert [v for v, _, _ in got] == list(range(200))
    p.join()
    buf.close()


def test_structured_setup_dict_keeps_dtype_as_given():
    dtype = [("chA", "f4"), ("chB", "f4"), ("chC", "f4")]
    with bm.NewBuffer(2, 10, dtype) as buf:
        d = buf.new_writer()
        assert len(d["dtype"]) == 3 and d["dtype"][1][0] == "chB"
        assert np.zeros(1, dtype=d["dtype"]).dtype.names == ("chA", "chB", "chC")
        w = bm.Writer(d)
        assert w.dtype == dtype and w.number_of_slots == 2 and w.values_per_slot == 10
        buf_view = w.get_new_buffer()
        assert buf_view.shape == (10,) and buf_view.dtype.names == ("chA", "chB", "chC")
        w.close()


def test_buffer_status_and_stats():
    with bm.NewBuffer(8, 1, np.int32) as buf:
        r = bm.Reader(buf.new_reader_group())
        w = bm.Writer(buf.new_writer())
        buf.buffer_status()
        for i in range(5):
            w.get_new_buffer()[0] = i
            w.set_metadata(i, time.time(), 0.5)
        w.process_buffer()
        r.get()
        count, filled, rate, dead = buf.buffer_status()
        assert count == 5 and filled == 5 and rate > 0 and dead == pytest.approx(0.5)
        r.get()
        r.get()
        assert buf.buffer_status()[:2] == (5, 3)
        st = buf.stats()
        assert st["published"] == 5 and st["filled"] == 3 and st["lost"] == 0
        assert st["groups"][0]["members_alive"] == 1 and st["groups"][0]["pending"] == 3
        buf.pause()
        assert buf.paused and w.paused
        buf.resume()
        assert not buf.paused
        r.close()
        w.close()


def test_writer_closed_while_holding_a_slot_does_not_publish_it():
    """A half-written slot (taken, never published) is skipped and counted, not delivered."""
    with bm.NewBuffer(4, 1, np.int32) as buf:
        r = bm.Reader(buf.new_reader_group())
        w = bm.Writer(buf.new_writer())
        w.put(np.array([1], np.int32))
        w.get_new_buffer()[0] = 42  # never published
        w.close()
        w2 = bm.Writer(buf.new_writer())
        w2.put(np.array([2], np.int32))
        assert [int(r.get()[0]), int(r.get()[0])] == [1, 2]
        assert buf.stats()["groups"][0]["lost"]["abandoned_by_writer"] == 1
        w3 = bm.Writer(buf.new_writer())
        w3.get_new_buffer()
        w3.discard()
        w3.put(np.array([3], np.int32))
        assert int(r.get()[0]) == 3
        r.close()
        w2.close()
        w3.close()


def test_event_limit_stops_the_writers_at_an_exact_count():
    with bm.NewBuffer(8, 1, np.int32) as buf:
        r = bm.Reader(buf.new_reader_group())
        w = bm.Writer(buf.new_writer())
        buf.set_event_limit(5)
        block = w.get_new_buffers(8)  # a batch is cut at the limit
        assert block.shape[0] == 5
        block[:, 0] = np.arange(5)
        with pytest.raises(SystemExit):
            w.get_new_buffer()  # publishes the five, then the limit ends the writer
        assert [int(x) for x in r.get_many(10)[:, 0]] == [0, 1, 2, 3, 4]
        buf.set_event_limit(None)
        w.put(np.array([5], np.int32))
        assert int(r.get()[0]) == 5
        with pytest.raises(ValueError, match="n_events must be an integer >= 1"):
            buf.set_event_limit(0)
        r.close()
        w.close()


def test_held_seq_and_seq_state():
    with bm.NewBuffer(2, 1, np.int32) as buf:
        r = bm.Reader(buf.new_reader_group())
        w = bm.Writer(buf.new_writer())
        assert w.held_seq is None
        w.get_new_buffer()[0] = 1
        assert w.held_seq == 0 and w.seq_state(0) == "pending"
        w.process_buffer()
        assert w.seq_state(0) == "published" and r.seq_state(0) == "published"
        w.get_new_buffer()
        w.discard()
        assert w.seq_state(1) == "abandoned"
        assert int(r.get()[0]) == 1 and r.get_timeout(0.05) is None  # the abandoned one is skipped
        r.release()
        w.put(np.array([3], np.int32))  # seq 2, in slot 0
        assert w.seq_state(0) == "later" and w.seq_state(2) == "published" and w.seq_state(3) == "pending"
        r.close()
        w.close()


def test_set_metadata_many_for_a_batch():
    with bm.NewBuffer(8, 2, np.int32) as buf:
        r = bm.Reader(buf.new_reader_group())
        w = bm.Writer(buf.new_writer())
        block = w.get_new_buffers(3)
        block[:, 0] = [10, 11, 12]
        meta = np.array([(100, 1.5, 0.25), (101, -1.0, 0.5), (102, 3.5, 0.0)], dtype=bm.METADATA_DTYPE)
        w.set_metadata_many(meta)
        w.process_buffer()
        assert list(r.get_many(3)[:, 0]) == [10, 11, 12]
        got = r.metadata_many()
        assert [g[0] for g in got] == [100, 101, 102] and got[0][1:] == (1.5, 0.25)
        assert got[1][1] > 1e9 and got[1][2] == 0.5  # stamped at publication
        assert buf.stats()["deadtime_sum"] == 0.75
        w.get_new_buffers(2)
        with pytest.raises(ValueError, match="needs 2 records"):
            w.set_metadata_many(meta)
        w.discard()
        r.close()
        w.close()
