"""Speed of the muon-demo physics: events per second per core.

Usage: ``python benchmarks/bench_muon.py [--quick] [--demo N]``. Prints, nothing
asserted: the simulator, the pulse finder (fast path), and for reference ``find_peaks``
on every whole trace (the 1.x approach), for events of 4 channels x 4250 samples.
``--demo N`` also runs the whole demo pipeline (``mimocorb demo --events N``, headless,
no plots) in a subprocess and prints its event rate.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

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
    parser.add_argument("--demo", type=int, metavar="N", help="also run the demo pipeline with N events")
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

    def run_batch_slots(i: int) -> None:
        if i % batch == 0:
            fast.analyse_batch(slots[i : i + batch])

    r_batch_slots = rate(run_batch_slots, n)
    print(f"pulse finder (batch) : {r_batch_slots:10.0f} events/s   (structured slots, {batch} per call, as the demo)")
    m = max(n // 5, 200)
    r_naive = rate(lambda i: naive.analyse(events[i]), m)
    print(f"find_peaks everywhere: {r_naive:10.0f} events/s   (reference, same results)")
    acc = sum(fast.analyse(e) is not None for e in events) / n
    print(f"accepted fraction    : {acc:10.4f}")
    if args.demo:
        demo(args.demo)


def _run_demo(n: int, out: str, setup: str | None = None) -> tuple[dict, float]:
    cmd = [sys.executable, "-m", "mimocorb", "demo", "--events", str(n), "--output", out]
    cmd += ["--headless", "-qq", "--no-plots"]
    if setup:
        cmd += ["--setup", setup]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    t0 = time.monotonic()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL, timeout=600)
    wall = time.monotonic() - t0
    folder = next(Path(out).glob("*/summary.json")).parent
    summary = json.loads((folder / "summary.json").read_text())
    summary["steady_rate_hz"] = _steady_rate(folder / "buffer_stats.csv")
    return summary, wall


def _steady_rate(stats_csv: Path) -> float:
    """Events/s of RB_1 over the middle half of the data taking (start-up and end excluded)."""
    import csv

    with open(stats_csv) as f:
        rows = [(float(r["elapsed_s"]), int(r["events"])) for r in csv.DictReader(f) if r["buffer"] == "RB_1"]
    rows = [r for r in rows if r[1] > 0]
    if len(rows) < 4:
        return float("nan")
    t0, t1 = rows[0][0], rows[-1][0]
    a = min(rows, key=lambda r: abs(r[0] - (t0 + 0.25 * (t1 - t0))))
    b = min(rows, key=lambda r: abs(r[0] - (t0 + 0.75 * (t1 - t0))))
    return (b[1] - a[1]) / (b[0] - a[0]) if b[0] > a[0] else float("nan")


def _without_displays(folder: Path) -> str:
    """A copy of the demo setup with the display functions removed."""
    import yaml

    subprocess.run(
        [sys.executable, "-m", "mimocorb", "demo", "--copy", str(folder)],
        check=True,
        stdout=subprocess.DEVNULL,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1])),
    )
    path = folder / "setup.yaml"
    spec = yaml.safe_load(path.read_text())
    spec["Functions"] = [
        f for f in spec["Functions"] if not any(v.get("file_name") == "modules/displays" for v in f.values())
    ]
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return str(path)


def demo(n: int) -> None:
    """The whole demo pipeline in a subprocess (events per second, wall clock), with
    and without the displays (oscilloscope and histograms, headless snapshots)."""
    with tempfile.TemporaryDirectory() as tmp:
        plain = _without_displays(Path(tmp) / "no_displays")
        rates = {}
        for label, setup in (("with displays", None), ("without displays", plain)):
            out = str(Path(tmp) / label.replace(" ", "_"))
            summary, wall = _run_demo(n, out, setup)
            rates[label] = summary["steady_rate_hz"]
            print(
                f"demo pipeline        : {summary['steady_rate_hz']:10.0f} events/s   {label}, steady "
                f"(middle half of the run); {summary['rate_hz']:.0f}/s while taking data "
                f"({summary['events']} events, {summary['muon']['mean_rate_hz']:.0f}/s over the run, "
                f"{wall:.1f} s with start-up and fit; tau = {summary['tau_ns']:.0f} +- {summary['tau_err_ns']:.0f} ns)"
            )
        ratio = rates["with displays"] / rates["without displays"]
        print(f"displays keep        : {100 * ratio:10.1f} %  of the steady event rate (target >= 95 %)")


if __name__ == "__main__":
    main()
