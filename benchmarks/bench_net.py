"""``python -m benchmarks.bench_net [--quick]``: the bridge beside raw pyzmq, over loopback TCP
and (as root, with ``ip``) over a veth pair between two network namespaces.

Cases, each side in its own process tree (``[ip netns exec NS] python -m benchmarks.bench_net side ...``):

- throughput: a source process writes events as fast as it can into a ring, ``send`` takes
  them, ``receive`` writes them into a ring on the other side, a consumer checks every
  sequence number; 64 KiB events (4 x 4096 float32) in GB/s, 40-byte events (5 x int64) in
  events/s, measured at the consumer from the first to the last event;
- raw pyzmq: PUSH/PULL of the same frames, zero-copy (``copy=False``) from one buffer:
  one 64 KiB frame per message, and 40-byte events in frames of the bridge's batch size;
- one-hop latency at 1,000 events/s: the source stamps ``perf_counter_ns`` (CLOCK_MONOTONIC,
  one clock for every namespace of the host), the consumer on the other side takes it again;
  raw pyzmq PUSH/PULL of single 40-byte messages at the same rate beside it.

Speed is reported, never asserted; exit status 1 when an event was lost, doubled or reordered.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import shutil
import subprocess
import sys
import time

import numpy as np

log = logging.getLogger("benchmarks.bench_net")
CTX = mp.get_context("fork")
PORT = 5858
BIG = (4096, [("chA", "f4"), ("chB", "f4"), ("chC", "f4"), ("chD", "f4")])  # 64 KiB
SMALL = (5, "i8")  # 40 bytes
RATE = 1000.0


# ---------------------------------------------------------------------------
# one side of a case (runs in its own process tree, maybe in a namespace)
# ---------------------------------------------------------------------------


def _dtype(kind: str):
    values, dt = BIG if kind == "big" else SMALL
    return values, np.dtype(dt)


def _source(wd: dict, kind: str, n: int, rate: float) -> None:
    from mimocorb.mimo_buffer import Writer

    values, dt = _dtype(kind)
    w = Writer(wd)
    rec = np.zeros(values, dt)
    flat = rec.view(np.int64) if kind == "big" else rec
    t0 = time.monotonic()
    for i in range(n):
        if rate:
            due = t0 + i / rate
            while time.monotonic() < due:
                time.sleep(max(0.0, due - time.monotonic() - 50e-6))
        if kind == "big":
            flat[0], flat[1] = i, time.perf_counter_ns()
            w.put(rec)
        else:
            b = w.get_new_buffer()
            b[0], b[1] = i, time.perf_counter_ns()
            if rate:
                w.process_buffer()  # published now (else at the next get_new_buffer)
    w.process_buffer()


def _consumer(rd: dict, kind: str, n: int, q) -> None:
    from mimocorb.mimo_buffer import Reader

    r = Reader(rd)
    expect, t_first, lat = 0, 0.0, []
    ok = True
    try:
        while expect < n:
            v = r.get_many(512)
            now = time.perf_counter_ns()
            if not t_first:
                t_first = time.perf_counter()
            heads = v.view(np.int64)[:, :2] if kind == "big" else v[:, :2]
            seqs = heads[:, 0]
            if seqs[0] != expect or seqs[-1] != expect + len(seqs) - 1:
                ok = False
                break
            lat.extend((now - heads[:, 1]).tolist())
            expect += len(seqs)
    except SystemExit:
        pass
    q.put(
        {
            "events": expect,
            "ok": bool(ok and expect == n),
            "t_first": t_first,
            "t_last": time.perf_counter(),
            "lat_ns": lat if n <= 20000 else [],
        }
    )


def side(args: argparse.Namespace) -> None:
    """One side of a case; prints its result as JSON."""
    from mimocorb.mimo_buffer import NewBuffer
    from mimocorb.net import Receiver, Sender

    values, dt = _dtype(args.kind)
    q = CTX.Queue()
    out: dict = {}
    with NewBuffer(args.slots, values, dt) as buf:
        procs = []
        if args.role == "front":
            cfg = {"bind": f"tcp://{args.addr}:{PORT}", "name": "bench-front"}
            procs.append(CTX.Process(target=_run, args=(Sender, buf.new_reader_group(), cfg)))
            procs[-1].start()
            print("ready", flush=True)
            sys.stdin.readline()  # the other side is up
            src = CTX.Process(target=_source, args=(buf.new_writer(), args.kind, args.n, args.rate))
            src.start()
            src.join()
            buf.shutdown(60)
        else:
            cfg = {"connect": f"{args.addr}:{PORT}", "name": "bench-back"}
            cons = CTX.Process(target=_consumer, args=(buf.new_reader_group(), args.kind, args.n, q))
            cons.start()
            procs.append(CTX.Process(target=_run, args=(Receiver, buf.new_writer(), cfg)))
            procs[-1].start()
            print("ready", flush=True)
            out = q.get(timeout=300)
            buf.shutdown(10)
            cons.join(10)
        for p in procs:
            p.join(30)
            if p.is_alive():
                p.kill()
    print(json.dumps(out), flush=True)


def _run(cls, setup: dict, cfg: dict) -> None:
    with cls(setup, cfg) as end:
        end.run()


def raw_side(args: argparse.Namespace) -> None:
    """Raw pyzmq PUSH (front) / PULL (back) of the same frames, zero-copy from one buffer."""
    import zmq

    ctx = zmq.Context()
    if args.role == "front":
        s = ctx.socket(zmq.PUSH)
        s.bind(f"tcp://{args.addr}:{PORT}")
        print("ready", flush=True)
        sys.stdin.readline()
        frame = np.zeros(args.frame // 8, np.int64)
        t0 = time.monotonic()
        for i in range(args.n):
            if args.rate:
                due = t0 + i / args.rate
                while time.monotonic() < due:
                    time.sleep(max(0.0, due - time.monotonic() - 50e-6))
            frame[0], frame[1] = i, time.perf_counter_ns()
            s.send(frame, copy=args.frame < 8192)  # below that pyzmq copies anyway
        time.sleep(0.5)
        out: dict = {}
    else:
        s = ctx.socket(zmq.PULL)
        s.connect(f"tcp://{args.addr}:{PORT}")
        print("ready", flush=True)
        t_first, lat, ok = 0.0, [], True
        for i in range(args.n):
            if not s.poll(30000):
                ok = False
                break
            f = s.recv(copy=False)
            now = time.perf_counter_ns()
            head = np.frombuffer(f.buffer, np.int64, 2)
            if not t_first:
                t_first = time.perf_counter()
            # the sender stamps one buffer sent without a copy: a big frame may already show a later
            # number when it is read here, so only the count is checked for it
            ok = ok and (args.frame >= 8192 or int(head[0]) == i)
            if args.rate:
                lat.append(now - int(head[1]))
        out = {"events": args.n, "ok": ok, "t_first": t_first, "t_last": time.perf_counter(), "lat_ns": lat}
    s.close(0)
    ctx.term()
    print(json.dumps(out), flush=True)


# ---------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------


class Namespaces:
    """Two namespaces joined by a veth pair (removed again in :meth:`close`)."""

    def __init__(self) -> None:
        self.a, self.b = f"mcbb{os.getpid()}a", f"mcbb{os.getpid()}b"
        self.addr = "10.214.0.1"

        def ip(*a: str) -> None:
            subprocess.run(["ip", *a], check=True, capture_output=True, timeout=20)

        for ns in (self.a, self.b):
            ip("netns", "add", ns)
        ip("link", "add", self.a, "type", "veth", "peer", "name", self.b)
        for ns, addr in ((self.a, "10.214.0.1"), (self.b, "10.214.0.2")):
            ip("link", "set", ns, "netns", ns)
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", ns)
            ip("-n", ns, "link", "set", ns, "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def close(self) -> None:
        for ns in (self.a, self.b):
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=20)


def _case(cmd: str, kind: str, n: int, rate: float, addr: str, ns: tuple, frame: int = 0) -> dict:
    base = [
        sys.executable,
        "-m",
        "benchmarks.bench_net",
        cmd,
        "--kind",
        kind,
        "--n",
        str(n),
        "--rate",
        str(rate),
        "--addr",
        addr,
        "--frame",
        str(frame),
    ]
    procs = []
    try:
        for role, space in (("back", ns[1]), ("front", ns[0])):
            pre = ["ip", "netns", "exec", space] if space else []
            p = subprocess.Popen(
                pre + base + ["--role", role],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
            )
            procs.append(p)
            assert p.stdout.readline().strip() == "ready"
        procs[1].stdin.write("go\n")
        procs[1].stdin.flush()
        res = json.loads(procs[0].stdout.read().strip().splitlines()[-1])
        procs[1].communicate(timeout=120)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
    dt = max(res["t_last"] - res["t_first"], 1e-9)
    per_msg = frame // 40 if cmd == "raw" and kind == "small" and frame > 40 else 1  # events per raw frame
    out = {"events": res["events"] * per_msg, "ok": res["ok"], "events_per_s": res["events"] * per_msg / dt}
    size = 65536 if kind == "big" else 40
    out["gb_per_s"] = out["events_per_s"] * size / 1e9
    if res.get("lat_ns") and rate:
        lat = np.array(res["lat_ns"][len(res["lat_ns"]) // 10 :]) / 1000.0  # the first tenth: warm-up
        out.update({"p50_us": float(np.percentile(lat, 50)), "p99_us": float(np.percentile(lat, 99))})
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_net", description=__doc__)
    sub = ap.add_subparsers(dest="cmd")
    for name in ("side", "raw"):
        sp = sub.add_parser(name)
        sp.add_argument("--role", choices=["front", "back"])
        sp.add_argument("--kind", choices=["big", "small"])
        sp.add_argument("--n", type=int)
        sp.add_argument("--rate", type=float, default=0.0)
        sp.add_argument("--addr")
        sp.add_argument("--frame", type=int, default=0)
        sp.add_argument("--slots", type=int, default=256)
    ap.add_argument("--quick", action="store_true", help="fewer events per case")
    args = ap.parse_args(argv)
    if args.cmd == "side":
        args.slots = 64 if args.kind == "big" else 8192
        side(args)
        return 0
    if args.cmd == "raw":
        raw_side(args)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from mimocorb.net.sender import default_batch

    big_n, small_n, lat_n = (5000, 300000, 2000) if args.quick else (30000, 3000000, 10000)
    links = [("loopback TCP", "127.0.0.1", (None, None))]
    nets = None
    if os.geteuid() == 0 and shutil.which("ip"):
        nets = Namespaces()
        links.append(("veth pair", nets.addr, (nets.a, nets.b)))
    else:
        log.info("veth pair skipped: needs root and the ip command")
    results: dict = {}
    failed = False
    try:
        for label, addr, ns in links:
            r = results[label] = {}
            r["64 KiB bridge"] = _case("side", "big", big_n, 0, addr, ns)
            r["64 KiB raw pyzmq"] = _case("raw", "big", big_n, 0, addr, ns, 65536)
            r["40 B bridge"] = _case("side", "small", small_n, 0, addr, ns)
            batch = default_batch(40) * 40
            r[f"40 B raw pyzmq ({batch} B frames)"] = _case("raw", "small", small_n // 512, 0, addr, ns, batch)
            r["latency bridge"] = _case("side", "small", lat_n, RATE, addr, ns)
            r["latency raw pyzmq"] = _case("raw", "small", lat_n, RATE, addr, ns, 40)
            for case, res in r.items():
                failed |= not res["ok"]
                extra = f" p50 {res['p50_us']:.0f} us p99 {res['p99_us']:.0f} us" if "p50_us" in res else ""
                log.info(
                    "%-12s %-34s %12.0f events/s %6.2f GB/s%s%s",
                    label,
                    case,
                    res["events_per_s"],
                    res["gb_per_s"],
                    extra,
                    "" if res["ok"] else "  FAILED (events lost or out of order)",
                )
            ratio = r["64 KiB bridge"]["gb_per_s"] / r["64 KiB raw pyzmq"]["gb_per_s"]
            log.info(
                "%-12s 64 KiB bridge / raw pyzmq: %.0f %% (target >= 80 %%); 40 B: %.0f events/s "
                "(target >= 1,000,000); latency p50 %.0f us (target <= 150 us)",
                label,
                100 * ratio,
                r["40 B bridge"]["events_per_s"],
                r["latency bridge"].get("p50_us", float("nan")),
            )
    finally:
        if nets is not None:
            nets.close()
    print(json.dumps(results, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
