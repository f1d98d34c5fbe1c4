"""Process targets for the ring-buffer tests (a module of its own, so that
the spawn start method can import them)."""

from __future__ import annotations

import random
import time
import zlib

import numpy as np

from mimocorb import mimo_buffer as bm


def write_sequence(setup, start, stop, tag=0, delay=0.0, seed=None):
    """Write values start..stop-1 into element 0, the tag into element 1."""
    rng = random.Random(seed)
    w = bm.Writer(setup)
    for i in range(start, stop):
        buf = w.get_new_buffer()
        buf[0] = i
        if len(buf) > 1:
            buf[1] = tag
        w.set_metadata(i, 1000.0 + i, 0.25)
        if delay and rng.random() < 0.1:
            time.sleep(rng.random() * delay)
    w.process_buffer()
    w.close()


def read_all(setup, queue, delay=0.0, seed=None, key=None):
    """Collect (element 0, element 1, counter) of every event until SystemExit."""
    rng = random.Random(seed)
    r = bm.Reader(setup)
    got = []
    try:
        while True:
            v = r.get()
            c, ts, dt = r.get_metadata()
            got.append((int(v[0]), int(v[1]) if len(v) > 1 else 0, int(c)))
            if delay and rng.random() < 0.1:
                time.sleep(rng.random() * delay)
    except SystemExit:
        queue.put((key, got))


def write_pattern(setup, n, nbytes):
    """Fill every byte of a slot with a pattern derived from the event number."""
    w = bm.Writer(setup)
    for i in range(n):
        buf = w.get_new_buffer()
        raw = buf.view(np.uint8)
        raw[:] = i % 251
        raw[:8] = np.frombuffer(np.int64(i).tobytes(), np.uint8)
    w.process_buffer()


def check_pattern(setup, queue, hold_s=0.0):
    """Check every byte of every event while holding it a little."""
    r = bm.Reader(setup)
    bad = 0
    n = 0
    try:
        while True:
            v = r.get()
            raw = v.view(np.uint8)
            i = int(np.frombuffer(raw[:8].tobytes(), np.int64)[0])
            if hold_s:
                time.sleep(hold_s)
            if not (raw[8:] == i % 251).all():
                bad += 1
            n += 1
    except SystemExit:
        queue.put((n, bad))


def write_checksummed(setup, n):
    """Events whose last element is the CRC of the others: a torn copy fails it."""
    w = bm.Writer(setup)
    rng = np.random.default_rng(1)
    payload = rng.integers(0, 2**31, size=(64, w.values_per_slot), dtype=np.int32)
    for i in range(n):
        buf = w.get_new_buffer()
        row = payload[i % 64]
        buf[:-1] = row[:-1] + i
        buf[-1] = zlib.crc32(buf[:-1].tobytes()) & 0x7FFFFFFF
    w.process_buffer()


def observe_checksums(setup, queue, duration):
    o = bm.Observer(setup)
    seen = torn = 0
    t_end = time.monotonic() + duration
    while time.monotonic() < t_end:
        got = o.get(timeout=0.5)
        if got is None:
            break
        data, meta = got
        seen += 1
        if zlib.crc32(data[:-1].tobytes()) & 0x7FFFFFFF != data[-1]:
            torn += 1
    queue.put((seen, torn))


def block_in_get(setup, queue):
    r = bm.Reader(setup)
    try:
        r.get()
        queue.put("got")
        r.get()
    except SystemExit:
        queue.put("exit")


def block_in_get_new_buffer(setup, queue):
    w = bm.Writer(setup)
    try:
        while True:
            w.get_new_buffer()
    except SystemExit:
        queue.put("exit")


def hold_one_and_wait(setup, queue):
    """Take one event and keep it (until killed)."""
    r = bm.Reader(setup)
    v = r.get()
    queue.put(("holding", int(v[0])))
    time.sleep(600)


def claim_and_wait(setup, queue):
    """Take a slot for writing, half-fill it, never publish (until killed)."""
    w = bm.Writer(setup)
    buf = w.get_new_buffer()
    buf[0] = -1
    queue.put("claimed")
    time.sleep(600)


def own_a_buffer(queue, nslots=4):
    """Create a buffer, hand out setup dicts, then wait (until killed)."""
    buf = bm.NewBuffer(nslots, 1, np.int32)
    queue.put((buf.shm_name, buf.new_writer(), buf.new_reader_group()))
    time.sleep(600)


def read_until_end(setup, queue):
    r = bm.Reader(setup)
    n = 0
    try:
        while True:
            r.get()
            n += 1
    except SystemExit as e:
        queue.put(("exit", n, str(e.code) if e.code else ""))
        raise


def write_until_end(setup, queue):
    w = bm.Writer(setup)
    n = 0
    try:
        while True:
            w.get_new_buffer()[0] = n
            n += 1
    except SystemExit as e:
        queue.put(("exit", n, str(e.code) if e.code else ""))
        raise
