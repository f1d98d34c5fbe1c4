"""Speed of the muon-demo physics: events per second per core.

Usage: ``python benchmarks/bench_muon.py [--quick]``. Prints, nothing asserted:
the simulator, the pulse finder (fast path), and for reference ``find_peaks`` on every
whole trace (the 1.x approach), for events of 4 channels x 4250 samples.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from mimocorb.muon.pulse_finder import PulseFinder
from mimocorb.muon.simulator import pulseSimulator

CONFIG = {
    "number_of_samples": 4250,
    "sample_time_ns": 4,
    "pre_trigger_samples": 500,
    "analogue_offset": -0.48,
    "trigger_level": -440,
    "seed": 1,
}
CHANNELS = ["chA", "chB", "chC", "chD"]


def rate(fn, n: int) -> float:
    """Events per CPU second of ``fn(i)`` over ``n`` calls (best of 3 rounds).

    CPU time of this process, so that other load on the machine does not count.
    """
    best = 0.0
    for _ in range(3):
        t0 = time.process_time()
        for i in range(n):
            fn(i)
        best = max(best, n / (time.process_time() - t0))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer events")
    args = parser.parse_args()
    n = 1000 if args.quick else 5000

    sim = pulseSimulator(CONFIG)
    sim.init(4, 4250, CHANNELS)
    out = np.empty((4, 4250), np.float32)
    r_sim = rate(lambda i: sim(out), n)
    print(f"simulator            : {r_sim:10.0f} events/s   (4 x 4250 float32, into a preallocated array)")

    events = np.stack([sim().copy() for _ in range(n)])
    slots = np.zeros((n, 4250), dtype=[(c, "f4") for c in CHANNELS])
    for k, c in enumerate(CHANNELS):
        slots[c] = events[:, k]
    fast = PulseFinder(CONFIG, fast=True)
    naive = PulseFinder(CONFIG, fast=False)
    r_fast = rate(lambda i: fast.analyse(events[i]), n)
    print(f"pulse finder (fast)  : {r_fast:10.0f} events/s   (2-D float32 events)")
    r_slot = rate(lambda i: fast.analyse(slots[i]), n)
    print(f"pulse finder (fast)  : {r_slot:10.0f} events/s   (structured ring-buffer slots)")
    batch = 32

    def run_batch(i: int) -> None:
        if i % batch == 0:
            fast.analyse_batch(events[i : i + batch])

    r_batch = rate(run_batch, n)
    print(f"pulse finder (batch) : {r_batch:10.0f} events/s   (analyse_batch, {batch} events per call)")
    m = max(n // 5, 200)
    r_naive = rate(lambda i: naive.analyse(events[i]), m)
    print(f"find_peaks everywhere: {r_naive:10.0f} events/s   (reference, same results)")
    acc = sum(fast.analyse(e) is not None for e in events) / n
    print(f"accepted fraction    : {acc:10.4f}")


if __name__ == "__main__":
    main()
