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

Rings: 256 slots of 64 KiB (16 MiB) and 8192 of 40 bytes on each side. Each case runs
``--repeat`` times (interleaved, so a load that comes and goes hits every case): the median and
the spread [min..max] are shown, with, where the time goes, the CPU time (user + system, every
thread) per event of each process and the cores they kept busy together, and for the latency
case how long after the source stamped an event each stage had it (p50). Then each target:
met, or missed by how much. ``--link '{"batch": 16, "inflight": 8}'`` tries other sender settings.

Speed is reported, never asserted; exit status 1 when an event was lost, doubled or reordered.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing as mp
import os
import resource
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
    """Write n events: element 0 the number, element 1 ``perf_counter_ns`` when written.

    Paced (latency): one event at a time, published at once. Unpaced (throughput): 64 KiB
    events with one copy each (``put``), 40-byte events in claims of 512 slots filled by
    NumPy, so the bridge and not a Python loop per event is what is measured."""
    from mimocorb.mimo_buffer import Writer

    values, dt = _dtype(kind)
    w = Writer(wd)
    rec = np.zeros(values, dt)
    flat = rec.view(np.int64) if kind == "big" else rec
    t0 = time.monotonic()
    i = 0
    while i < n:
        if rate:
            due = t0 + i / rate
            while time.monotonic() < due:
                time.sleep(max(0.0, due - time.monotonic() - 50e-6))
        if kind == "big":
            flat[0], flat[1] = i, time.perf_counter_ns()
            w.put(rec)
            i += 1
        elif rate:
            b = w.get_new_buffer()
            b[0], b[1] = i, time.perf_counter_ns()
            w.process_buffer()  # published now (else at the next get_new_buffer)
            i += 1
        else:
            v = w.get_new_buffers(min(512, n - i))  # publishes the previous claim
            m = len(v)
            v[:, 0] = np.arange(i, i + m)
            v[:, 1] = time.perf_counter_ns()
            i += m
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
    cpu: dict = {}

    def join(name: str, p, timeout: float) -> None:
        """Join a child and note the CPU seconds (user + system, every thread) it used."""
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join(5)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu[name] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)

    stamping = bool(args.rate)  # the latency case: where the time goes, stage by stage
    tx_cls, rx_cls = _stamping_classes() if stamping else (Sender, Receiver)
    sq = CTX.Queue() if stamping else None
    with NewBuffer(args.slots, values, dt) as buf:
        if args.role == "front":
            cfg = {"bind": f"tcp://{args.addr}:{PORT}", "name": "bench-front", **args.link}
            link = CTX.Process(target=_run, args=(tx_cls, buf.new_reader_group(), cfg, sq))
            link.start()
            print("ready", flush=True)
            sys.stdin.readline()  # the other side is up
            src = CTX.Process(target=_source, args=(buf.new_writer(), args.kind, args.n, args.rate))
            src.start()
            join("source", src, 600)
            buf.shutdown(60)
            if sq is not None:
                out["stage_ns"] = sq.get(timeout=60)  # before the join: a child flushes its queue at exit
            join("sender", link, 30)
        else:
            cfg = {"connect": f"{args.addr}:{PORT}", "name": "bench-back"}
            cons = CTX.Process(target=_consumer, args=(buf.new_reader_group(), args.kind, args.n, q))
            cons.start()
            link = CTX.Process(target=_run, args=(rx_cls, buf.new_writer(), cfg, sq))
            link.start()
            print("ready", flush=True)
            out = q.get(timeout=600)
            buf.shutdown(10)
            join("consumer", cons, 10)
            if sq is not None:
                out["stage_ns"] = sq.get(timeout=60)
            join("receiver", link, 30)
    out["cpu_s"] = cpu
    print(json.dumps(out), flush=True)


def _run(cls, setup: dict, cfg: dict, q=None) -> None:
    with cls(setup, cfg) as end:
        end.run()
        if q is not None:
            q.put(end.stage_ns)


def _stamp(buf) -> int:
    """The source's ``perf_counter_ns`` in the first event of a batch (element 1, int64)."""
    return int(np.frombuffer(buf, np.int64, 2)[1])


def _stamping_classes():
    """A sender and a receiver that note, per message of the latency case, how long after the
    source stamped its first event each stage had it: where one-hop latency goes."""
    from mimocorb.net import Receiver, Sender

    class StampingSender(Sender):
        stage_ns: dict = {"sender sends it": []}

        def _send(self, peer, b, again=False) -> None:
            if not again:
                self.stage_ns["sender sends it"].append(time.perf_counter_ns() - _stamp(b.data))
            super()._send(peer, b, again)

    class StampingReceiver(Receiver):
        stage_ns: dict = {"receiver's writing thread has it": [], "receiver published it": []}

        def _write(self, parts: list) -> None:
            t = _stamp(parts[4].buffer)
            self.stage_ns["receiver's writing thread has it"].append(time.perf_counter_ns() - t)
            super()._write(parts)
            self.stage_ns["receiver published it"].append(time.perf_counter_ns() - t)

    return StampingSender, StampingReceiver


def raw_side(args: argparse.Namespace) -> None:
    """Raw pyzmq PUSH (front) / PULL (back) of the same frames, zero-copy from one buffer."""
    import zmq

    ctx = zmq.Context()
    if args.role == "front":
        s = ctx.socket(zmq.PUSH)
        s.bind(f"tcp://{args.addr}:{PORT}")
        print("ready", flush=True)
        ru0 = resource.getrusage(resource.RUSAGE_SELF)  # from here on: not Python's start-up
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
        ru0 = resource.getrusage(resource.RUSAGE_SELF)
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
    ru = resource.getrusage(resource.RUSAGE_SELF)  # every thread: the application's and ZeroMQ's I/O thread
    out["cpu_s"] = {f"raw {args.role}": ru.ru_utime + ru.ru_stime - ru0.ru_utime - ru0.ru_stime}
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


def _case(cmd: str, kind: str, n: int, rate: float, addr: str, ns: tuple, frame: int = 0, link: str = "{}") -> dict:
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
    ] + (["--link", link] if cmd == "side" else [])
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
        res = json.loads(procs[0].communicate(timeout=900)[0].strip().splitlines()[-1])
        front = json.loads(procs[1].communicate(timeout=120)[0].strip().splitlines()[-1])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)
    dt = max(res["t_last"] - res["t_first"], 1e-9)
    per_msg = frame // 40 if cmd == "raw" and kind == "small" and frame > 40 else 1  # events per raw frame
    events = res["events"] * per_msg
    out = {"events": events, "ok": res["ok"], "events_per_s": events / dt}
    cpu = {**front.get("cpu_s", {}), **res.get("cpu_s", {})}
    # where the time goes: CPU (user + system, all threads) per event of each process, and the
    # share of the machine's cores they used together while the case ran
    out["cpu_us_per_event"] = {k: 1e6 * v / max(events, 1) for k, v in cpu.items()}
    out["cores_busy"] = sum(cpu.values()) / dt
    size = 65536 if kind == "big" else 40
    out["gb_per_s"] = out["events_per_s"] * size / 1e9
    if res.get("lat_ns") and rate:
        lat = np.array(res["lat_ns"][len(res["lat_ns"]) // 10 :]) / 1000.0  # the first tenth: warm-up
        out.update({"p50_us": float(np.percentile(lat, 50)), "p99_us": float(np.percentile(lat, 99))})
        stages = {**front.get("stage_ns", {}), **res.get("stage_ns", {}), "consumer has it": res["lat_ns"]}
        if len(stages) > 1:  # p50 of the time from the source's stamp until each stage had the event
            out["stages_p50_us"] = {
                k: float(np.percentile(np.array(v[len(v) // 10 :]) / 1000.0, 50)) for k, v in stages.items() if v
            }
    return out


TARGETS = {  # on the 2-core development machine (issue 13)
    "64 KiB bridge / raw pyzmq": 0.80,
    "40 B events/s": 1_000_000,
    "latency p50 us": 150.0,
}


def _summary(runs: list[dict]) -> dict:
    """Median and spread (min, max) of the runs of one case; CPU per event: medians."""
    out: dict = {"runs": len(runs), "ok": all(r["ok"] for r in runs)}
    for key in ("events_per_s", "gb_per_s", "p50_us", "p99_us", "cores_busy"):
        vals = sorted(r[key] for r in runs if key in r)
        if vals:
            out[key], out[key + "_min"], out[key + "_max"] = float(np.median(vals)), vals[0], vals[-1]
    stages = [k for k in runs[0].get("stages_p50_us", {})]
    if stages:
        out["stages_p50_us"] = {k: float(np.median([r["stages_p50_us"][k] for r in runs])) for k in stages}
    roles = sorted({k for r in runs for k in r.get("cpu_us_per_event", {})})
    out["cpu_us_per_event"] = {k: float(np.median([r["cpu_us_per_event"][k] for r in runs])) for k in roles}
    return out


def line(label: str, case: str, res: dict) -> str:
    fig = f"{res['events_per_s']:10.0f} events/s [{res['events_per_s_min']:.0f}..{res['events_per_s_max']:.0f}]"
    fig += f" {res['gb_per_s']:5.2f} GB/s [{res['gb_per_s_min']:.2f}..{res['gb_per_s_max']:.2f}]"
    if "p50_us" in res:
        fig += (
            f" p50 {res['p50_us']:.0f} us [{res['p50_us_min']:.0f}..{res['p50_us_max']:.0f}]"
            f" p99 {res['p99_us']:.0f} us [{res['p99_us_min']:.0f}..{res['p99_us_max']:.0f}]"
        )
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in res["cpu_us_per_event"].items())
    fig += f"\n{'':12} {'':34} CPU us per event: {cpu}; {res['cores_busy']:.2f} cores busy"
    if "stages_p50_us" in res:
        st = ", ".join(f"{k} {v:.0f}" for k, v in res["stages_p50_us"].items())
        fig += f"\n{'':12} {'':34} p50 us after the source wrote it: {st}"
    return f"{label:<12} {case:<34} {fig}" + ("" if res["ok"] else "  FAILED (events lost, doubled or out of order)")


def verdict(label: str, r: dict) -> list[str]:
    """Each target: met, or missed by how much."""
    ratio = r["64 KiB bridge"]["gb_per_s"] / r["64 KiB raw pyzmq"]["gb_per_s"]
    small = r["40 B bridge"]["events_per_s"]
    p50 = r["latency bridge"].get("p50_us", float("nan"))
    lines = []
    for what, value, target, good, unit in (
        ("64 KiB bridge / raw pyzmq", 100 * ratio, 100 * TARGETS["64 KiB bridge / raw pyzmq"], ratio >= 0.8, " %"),
        ("40 B bridge", small, TARGETS["40 B events/s"], small >= TARGETS["40 B events/s"], " events/s"),
        ("latency bridge p50", p50, TARGETS["latency p50 us"], p50 <= TARGETS["latency p50 us"], " us"),
    ):
        short = abs(value - target)
        if good:
            miss = "met"
        elif unit == " %":
            miss = f"MISSED by {short:.0f} percentage points"
        else:
            miss = f"MISSED by {short:,.0f}{unit} ({short / target:.0%} of the target)"
        lines.append(f"{label:<12} {what}: {value:,.0f}{unit} (target {target:,.0f}{unit}): {miss}")
    return lines


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


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
        sp.add_argument("--link", type=json.loads, default={}, help="more sender configuration (JSON)")
    ap.add_argument("--quick", action="store_true", help="fewer events per case")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each case (median and spread are shown)")
    ap.add_argument("--only", choices=["loopback", "veth"], help="one link only")
    ap.add_argument("--link", default="{}", help="more link configuration for both ends (JSON), e.g. '{\"batch\": 16}'")
    args = ap.parse_args(argv)
    if args.cmd == "side":
        args.slots = 256 if args.kind == "big" else 8192  # 16 MiB and 512 KiB of payload
        side(args)
        return 0
    if args.cmd == "raw":
        raw_side(args)
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from mimocorb.net.sender import default_batch

    big_n, small_n, lat_n = (5000, 300000, 2000) if args.quick else (30000, 3000000, 10000)
    links = [] if args.only == "veth" else [("loopback TCP", "127.0.0.1", (None, None))]
    nets = None
    if args.only != "loopback":
        if os.geteuid() == 0 and shutil.which("ip"):
            nets = Namespaces()
            links.append(("veth pair", nets.addr, (nets.a, nets.b)))
        else:
            log.info("veth pair skipped: needs root and the ip command")
    log.info("machine: %d cores, load average %s (other work on it slows every case)", os.cpu_count(), _load())
    results: dict = {"load_average_before": _load(), "repeat": args.repeat}
    failed = False
    batch = default_batch(40) * 40
    try:
        for label, addr, ns in links:
            cases = {
                "64 KiB bridge": ("side", "big", big_n, 0, 0),
                "64 KiB raw pyzmq": ("raw", "big", big_n, 0, 65536),
                "40 B bridge": ("side", "small", small_n, 0, 0),
                f"40 B raw pyzmq ({batch} B frames)": ("raw", "small", small_n // 512, 0, batch),
                "latency bridge": ("side", "small", lat_n, RATE, 0),
                "latency raw pyzmq": ("raw", "small", lat_n, RATE, 40),
            }
            runs: dict = {case: [] for case in cases}
            for _ in range(max(1, args.repeat)):  # interleaved: a load that comes and goes hits every case
                for case, (cmd, kind, n, rate, frame) in cases.items():
                    runs[case].append(_case(cmd, kind, n, rate, addr, ns, frame, args.link))
            r = results[label] = {case: _summary(v) for case, v in runs.items()}
            for case, res in r.items():
                failed |= not res["ok"]
                log.info("%s", line(label, case, res))
            for text in verdict(label, r):
                log.info("%s", text)
    finally:
        if nets is not None:
            nets.close()
    results["load_average_after"] = _load()
    print(json.dumps(results, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
