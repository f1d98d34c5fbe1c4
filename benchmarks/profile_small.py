"""Where the time of one small event goes: writer and reader alternating in
one process (no cache-line transfer between cores), each piece timed on its own.

Every figure is ns per event, best of a few rounds, with the empty-loop cost
subtracted except in the "loop" line itself.
"""

from __future__ import annotations

import time

from mimocorb.mimo_buffer import NewBuffer, Reader, Writer

from .events import SMALL

perf = time.perf_counter
K = 512  # events per half-round: the writer fills K slots, then the reader takes them


def _best(fn, n: int, reps: int) -> float:
    best = float("inf")
    for _ in range(reps):
        t = perf()
        fn(n)
        best = min(best, perf() - t)
    return best / n * 1e9


def profile(seconds: float = 1.0) -> dict:
    buf = NewBuffer(SMALL.slots, SMALL.values, SMALL.dtype)
    w = Writer(buf.new_writer())
    r = Reader(buf.new_reader_group())
    try:
        ev = SMALL.zeros()
        ro = SMALL.zeros()
        ro.flags.writeable = False
        rounds = max(1, int(seconds * 2e6) // (K * 12))
        n = rounds * K
        gnb, proc, get, put = w.get_new_buffer, w.process_buffer, r.get, r.release

        def loop(n):
            for _ in range(n):
                pass

        def noop_method(n):  # a cdef-class method that returns at once (nothing held)
            for _ in range(n):
                proc()

        def writer_only(n):
            for _ in range(n // K):
                for _ in range(K):
                    gnb()
                proc()
                r.get_many(K)  # drain in one call (not timed separately; ~1 % of the round)
                r.release()

        def reader_only(n):
            for _ in range(n // K):
                w.get_new_buffers(K)
                proc()
                for _ in range(K):
                    get()
                r.release()

        def both(n):
            for _ in range(n // K):
                for _ in range(K):
                    gnb()
                proc()
                for _ in range(K):
                    get()
            r.release()

        def both_checked(n):
            for _ in range(n // K):
                for i in range(K):
                    gnb()[0] = i
                proc()
                for i in range(K):
                    if get()[0] != i:
                        raise AssertionError("wrong event")
            r.release()

        def put_get(n):
            wput = w.put
            for _ in range(n // K):
                for _ in range(K):
                    wput(ev)
                for _ in range(K):
                    get()
            r.release()

        def np_set(n):
            for i in range(n):
                ev[0] = i

        def np_get(n):
            for _ in range(n):
                if ro[0] != 0:
                    raise AssertionError

        def batch(n):
            for _ in range(n // K):
                w.get_new_buffers(K)
                proc()
                r.get_many(K)
            r.release()

        reps = 5
        base = _best(loop, n, reps)
        out = {"loop": base}
        for name, fn in [
            ("noop_method", noop_method),
            ("get_new_buffer", writer_only),
            ("get", reader_only),
            ("get_new_buffer+get", both),
            ("get_new_buffer+get+checks", both_checked),
            ("put+get", put_get),
            ("numpy_setitem", np_set),
            ("numpy_getitem_compare", np_get),
            ("batch_512_pair", batch),
        ]:
            out[name] = _best(fn, n, reps) - base
        # the batch pair has no per-event Python loop: add the loop cost back
        out["batch_512_pair"] += base
        del put
        return {k: round(v, 1) for k, v in out.items()}
    finally:
        r.close()
        w.close()
        buf.close()


if __name__ == "__main__":
    for k, v in profile().items():
        print(f"{k:28s} {v:7.1f} ns/event")
