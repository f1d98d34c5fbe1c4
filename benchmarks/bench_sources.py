"""CPU cost of the instrument sources at the Red Pitaya's rate over 1 GbE.

Usage: ``python -m benchmarks.bench_sources [--seconds S] [--rate R] [--samples N] [--scpi]``.

Target (issue 14): at 500 waveforms/s of 2 x 16,384 int16 samples, the source's own
cost is <= 5 % of a core. Measured against the MCPHA simulator, which runs in a process
of its own as a 500 Hz pulser (the next trigger comes at the next tick of a 500 Hz
clock after arming) and serves a pool of precomputed events. Printed side by side:

- ``redpitaya_mcpha``: the source process (arm, poll, read 64 KiB, publish into a ring
  buffer that another process drains): CPU time (user + system) / wall time;
- ``plain socket read``: a process that only asks for and reads the same 64 KiB per
  event on a plain socket at the same rate, the floor of any Python client;
- with ``--scpi``, also ``scpi_scope`` (Red Pitaya family through PyVISA/pyvisa-py,
  two float32 blocks per event) against the SCPI simulator.

Each case runs ``--reps`` times (default 3); the lowest CPU share is the result (the
others are printed too: on a shared VM they vary by tens of per cent). Nothing is
asserted; the 5 % target is marked met or not.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time

import numpy as np

from benchmarks.procs import Procs
from mimocorb.mimo_buffer import NewBuffer, Reader

TARGET = 0.05  # of one core


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _simulator(report, go, kind: str, rate: float, samples: int) -> None:
    from mimocorb.sources.simulators import McphaSimulator, ScpiSimulator, WaveformSettings

    w = WaveformSettings(
        channels=2, samples=samples, sample_time_ns=8, pre_trigger_samples=1000, rate=rate, random=False, seed=1
    )
    sim = McphaSimulator(w, pool=16) if kind == "mcpha" else ScpiSimulator("redpitaya", w)
    report(("port", sim.port))
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        pass


def _drain(report, go, setup: dict) -> None:
    r = Reader(setup)
    report("ready")
    n = 0
    while True:
        try:
            r.get()
        except SystemExit:
            break
        n += 1
    report({"events": n})


def _source(report, go, fn_name: str, setup: dict, cfg: dict) -> None:
    import mimocorb.sources as sources

    fn = getattr(sources, fn_name)
    report("ready")
    go.wait(30)
    c0, t0 = _cpu(), time.monotonic()
    fn(None, [setup], None, cfg, RB_1="write")
    report({"cpu": _cpu() - c0, "wall": time.monotonic() - t0})


def _plain_read(report, go, port: int, n: int, rate: float, samples: int) -> None:
    """Ask for and read one record of 2 x samples int16 per tick, as fast as a bare Python client can."""
    from mimocorb.sources.mcpha import READ_OSC, command

    buf = bytearray(4 * samples)
    view = memoryview(buf)
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(command(18, 0, samples))
    report("ready")
    go.wait(30)
    c0, t0 = _cpu(), time.monotonic()
    for i in range(n):
        due = t0 + i / rate
        ahead = due - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        sock.sendall(command(READ_OSC))
        got = 0
        while got < len(buf):
            got += sock.recv_into(view[got:], len(buf) - got)
    report({"cpu": _cpu() - c0, "wall": time.monotonic() - t0})
    sock.close()


def _case(kind: str, seconds: float, rate: float, samples: int) -> dict:
    n = int(seconds * rate)
    procs = Procs()
    try:
        procs.add("sim", _simulator, kind, rate, samples)
        procs.start()
        port = procs.collect(["sim"], timeout=30)["sim"][1]
        out: dict = {}
        if kind == "mcpha":
            base = Procs()
            try:
                base.add("base", _plain_read, port, n, rate, samples)
                base.start()
                base.wait_ready(["base"], timeout=30)
                base.go.set()
                out["plain"] = base.collect(["base"], timeout=seconds * 3 + 30)["base"]
                base.join(["base"], timeout=10)
            finally:
                base.close()
            dtype, fn = [("chA", "<i2"), ("chB", "<i2")], "redpitaya_mcpha"
            cfg = {"host": "127.0.0.1", "port": port, "pre_trigger_samples": 1000, "number_of_events": n}
        else:
            dtype, fn = [("chA", "f4"), ("chB", "f4")], "scpi_scope"
            cfg = {"resource": f"TCPIP::127.0.0.1::{port}::SOCKET", "pre_trigger_samples": 1000, "number_of_events": n}
        with NewBuffer(64, samples, dtype) as buf:
            run = Procs()
            try:
                run.add("r", _drain, buf.new_reader_group())
                run.add("src", _source, fn, buf.new_writer(), cfg)
                run.start()
                run.wait_ready(["r", "src"], timeout=30)
                run.go.set()
                out["source"] = run.collect(["src"], timeout=seconds * 3 + 30)["src"]
                run.join(["src"], timeout=10)
                buf.shutdown(timeout=10)
                out["events"] = run.collect(["r"], timeout=30)["r"]["events"]
                run.join(["r"], timeout=10)
            finally:
                run.close()
        return out
    finally:
        procs.kill()
        procs.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.bench_sources", description=__doc__.split("\n")[0])
    p.add_argument("--seconds", type=float, default=5.0, help="length of each measurement (default 5 s)")
    p.add_argument("--rate", type=float, default=500.0, help="triggers per second (default 500)")
    p.add_argument("--samples", type=int, default=16384, help="samples per channel (default 16384)")
    p.add_argument("--reps", type=int, default=3, help="repetitions of each case; the best counts (default 3)")
    p.add_argument("--scpi", action="store_true", help="also measure scpi_scope (PyVISA) against the SCPI simulator")
    args = p.parse_args(argv)
    mib = 2 * 2 * args.samples / 2**20
    print(
        f"sources at {args.rate:g} triggers/s of 2 x {args.samples} int16 samples ({mib * args.rate:.1f} MiB/s), "
        f"{args.seconds:g} s each, {os.cpu_count()} cores"
    )
    runs = [_case("mcpha", args.seconds, args.rate, args.samples) for _ in range(max(1, args.reps))]
    shares = [r["source"]["cpu"] / r["source"]["wall"] for r in runs]
    plains = [r["plain"]["cpu"] / r["plain"]["wall"] for r in runs]
    best = runs[int(np.argmin(shares))]
    rate = best["events"] / best["source"]["wall"]
    print(
        f"  {'redpitaya_mcpha (source process)':38s} {rate:7.1f} events/s  CPU {100 * min(shares):5.2f} % of a core"
        f"   (runs: {', '.join(f'{100 * x:.2f}' for x in shares)} %)"
    )
    print(
        f"  {'plain socket read of the same bytes':38s} {args.rate:7.1f} reads/s   "
        f"CPU {100 * min(plains):5.2f} % of a core"
        f"   (runs: {', '.join(f'{100 * x:.2f}' for x in plains)} %)"
    )
    verdict = "met" if min(shares) <= TARGET else "NOT met"
    print(f"  target: source <= {100 * TARGET:g} % of a core (best run): {verdict}")
    if args.scpi:
        res = _case("scpi", args.seconds, args.rate, args.samples)
        src = res["source"]
        print(
            f"  {'scpi_scope, redpitaya family (PyVISA)':38s} {res['events'] / src['wall']:7.1f} events/s  "
            f"CPU {100 * src['cpu'] / src['wall']:5.2f} % of a core (2 x float32 blocks per event, as fast as it goes)"
        )
    return 0


if __name__ == "__main__":
    np.seterr(all="ignore")
    sys.exit(main())
