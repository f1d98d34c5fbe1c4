"""One-hop latency at a fixed rate, the cost of one futex wake-up, and the CPU
a blocked process uses.

Clock: the writer stamps ``time.perf_counter_ns()`` into the event, the reader
takes it again right after the event arrives. On Linux perf_counter is
CLOCK_MONOTONIC, one clock for every process of the machine
(:func:`clock_info` records what this Python uses).
"""

from __future__ import annotations

import ctypes
import mmap
import os
import resource
import shutil
import subprocess
import tempfile
import time

import numpy as np

from mimocorb.mimo_buffer import NewBuffer, Reader, Writer

from .events import SMALL
from .procs import CaseError, Procs
from .transports import FasterFifo, MpQueue

RATE = 5000.0
now_ns = time.perf_counter_ns


def clock_info() -> dict:
    info = time.get_clock_info("perf_counter")
    return {
        "perf_counter": info.implementation,
        "resolution_s": info.resolution,
        "same_clock_across_processes": "CLOCK_MONOTONIC" in info.implementation,
    }


def _pace(i: int, t0: int, period_ns: int) -> None:
    """Sleep until event i is due (absolute schedule: a late event is sent at once)."""
    due = t0 + i * period_ns
    left = due - now_ns()
    if left > 0:
        time.sleep(left * 1e-9)


def _percentiles(lat_ns: np.ndarray) -> dict:
    p50, p99, p999 = np.percentile(lat_ns, [50, 99, 99.9]) / 1000.0
    return {
        "n": int(lat_ns.size),
        "p50_us": p50,
        "p99_us": p99,
        "p999_us": p999,
        "min_us": float(lat_ns.min()) / 1000.0,
        "negative": int((lat_ns < 0).sum()),
    }


# ---------------------------------------------------------------------------
# through a transport
# ---------------------------------------------------------------------------


def _mimo_reader(report, go, setup, n, mode):
    r = Reader(setup, wait="spin" if mode == "spin" else None)
    if mode == "futex-only":
        r.set_spin(0.0, False)  # no spin at all: every wait is a futex sleep
    lat = np.empty(n, dtype=np.int64)
    report("ready")
    i = bad = 0
    get = r.get
    try:
        while True:
            v = get()
            t = now_ns()
            if i < n:
                lat[i] = t - int(v.view(np.int64)[1])
            if v[0] != i:
                bad += 1
            i += 1
    except SystemExit:
        pass
    r.close()
    report({"count": i, "bad": bad, **_percentiles(lat[: min(i, n)])})


def _mimo_writer(report, go, setup, n, period_ns):
    w = Writer(setup)
    rec = SMALL.zeros()
    rec64 = rec.view(np.int64)
    report("ready")
    go.wait(30)
    t0 = now_ns()
    for i in range(n):
        _pace(i, t0, period_ns)
        rec[0] = i
        rec64[1] = now_ns()
        w.put(rec)
    w.close()
    report({"count": n})


def _queue_reader(report, go, q, n):
    lat = np.empty(n, dtype=np.int64)
    report("ready")
    i = bad = 0
    while True:
        b = q.get(timeout=30)
        t = now_ns()
        if not b:
            break
        v = np.frombuffer(b, np.int64)
        lat[i] = t - int(v[1])
        if (int(v[0]) & 0xFFFFFFFF) != i:
            bad += 1
        i += 1
    report({"count": i, "bad": bad, **_percentiles(lat[:i])})


def _queue_writer(report, go, q, n, period_ns):
    rec = SMALL.zeros()
    rec64 = rec.view(np.int64)
    report("ready")
    go.wait(30)
    t0 = now_ns()
    for i in range(n):
        _pace(i, t0, period_ns)
        rec[0] = i
        rec64[1] = now_ns()
        q.put(rec.tobytes())
    q.put(b"")
    report({"count": n})


def latency_case(peer: str, seconds: float, mode: str = "sleep", rate: float = RATE) -> dict:
    """peer: "mimocorb" (mode "sleep", "spin" or "futex-only"), "mp.Queue" or "faster-fifo"."""
    n = max(100, int(seconds * rate))
    period_ns = int(1e9 / rate)
    procs = Procs()
    buf = q = None
    try:
        if peer == "mimocorb":
            buf = NewBuffer(SMALL.slots, SMALL.values, SMALL.dtype)
            procs.add("r", _mimo_reader, buf.new_reader_group(), n, mode)
            procs.add("w", _mimo_writer, buf.new_writer(), n, period_ns)
        else:
            q = (MpQueue if peer == "mp.Queue" else FasterFifo).make_queue(SMALL)
            procs.add("r", _queue_reader, q, n)
            procs.add("w", _queue_writer, q, n, period_ns)
        res = procs.run_writer_reader(buf, writer_timeout=seconds * 3 + 30)
    finally:
        procs.close()
        if buf is not None:
            buf.close()
        if q is not None:
            MpQueue.close({"q": [q]}) if peer == "mp.Queue" else q.close()
    r = res["r"]
    if r["bad"] or r["count"] != n or r["negative"]:
        raise CaseError(
            f"latency {peer} {mode}: {r['count']} of {n} events, {r['bad']} wrong, {r['negative']} negative delays"
        )
    return r


# ---------------------------------------------------------------------------
# the futex itself
# ---------------------------------------------------------------------------

_SYS_FUTEX = 202  # x86_64
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1


def _futex_words(mm):
    """Addresses of [go, ack] words and of the int64 stamp in a shared mapping."""
    base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
    return base, base + 64, base + 128


def _py_futex_pingpong(n: int, period_ns: int) -> np.ndarray:
    """Python + ctypes: the writer stamps, bumps a word and FUTEX_WAKEs; the
    sleeping reader returns from FUTEX_WAIT and stamps. One hop as in the
    latency case, through the raw system calls instead of mimocorb."""
    libc = ctypes.CDLL(None, use_errno=True)
    syscall = libc.syscall
    syscall.restype = ctypes.c_long
    mm = mmap.mmap(-1, 4096)
    a_go, a_ack, a_ts = _futex_words(mm)
    go = ctypes.c_uint32.from_address(a_go)
    ack = ctypes.c_uint32.from_address(a_ack)
    ts = ctypes.c_int64.from_address(a_ts)
    out = mmap.mmap(-1, n * 8)
    lat = np.frombuffer(out, dtype=np.int64)
    pid = os.fork()
    if pid == 0:  # the sleeper
        try:
            for i in range(n):
                while go.value == i:  # FUTEX_WAIT returns at once if the word moved on
                    syscall(_SYS_FUTEX, ctypes.c_void_p(a_go), _FUTEX_WAIT, ctypes.c_uint32(i), None, None, 0)
                lat[i] = now_ns() - ts.value
                ack.value = i + 1
                syscall(_SYS_FUTEX, ctypes.c_void_p(a_ack), _FUTEX_WAKE, 1, None, None, 0)
        finally:
            os._exit(0)
    try:
        t0 = now_ns()
        deadline = time.monotonic() + n / 1000 + 10
        for i in range(n):
            _pace(i, t0, period_ns)
            ts.value = now_ns()
            go.value = i + 1
            syscall(_SYS_FUTEX, ctypes.c_void_p(a_go), _FUTEX_WAKE, 1, None, None, 0)
            while ack.value != i + 1:
                if time.monotonic() > deadline:
                    raise CaseError("futex ping-pong: the sleeper stopped answering")
                syscall(_SYS_FUTEX, ctypes.c_void_p(a_ack), _FUTEX_WAIT, ctypes.c_uint32(i), None, None, 0)
    finally:
        _reap_child(pid)
    res = lat.copy()
    del lat
    out.close()
    mm.close()
    return res


def _reap_child(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)


_C_PINGPONG = r"""
#define _GNU_SOURCE
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
static int64_t now(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec * 1000000000LL + t.tv_nsec;
}
static void fwait(uint32_t *w, uint32_t v) { syscall(SYS_futex, w, FUTEX_WAIT, v, NULL, NULL, 0); }
static void fwake(uint32_t *w) { syscall(SYS_futex, w, FUTEX_WAKE, 1, NULL, NULL, 0); }
int main(int argc, char **argv) {
    int n = atoi(argv[1]); int64_t period = atoll(argv[2]);
    char *m = mmap(NULL, 4096 + 8 * (size_t)n, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    uint32_t *go = (uint32_t *)m, *ack = (uint32_t *)(m + 64); volatile int64_t *ts = (int64_t *)(m + 128);
    int64_t *lat = (int64_t *)(m + 4096);
    pid_t pid = fork();
    if (pid == 0) {
        for (int i = 0; i < n; i++) {
            while (__atomic_load_n(go, __ATOMIC_ACQUIRE) == (uint32_t)i) fwait(go, i);
            lat[i] = now() - *ts;
            __atomic_store_n(ack, i + 1, __ATOMIC_RELEASE); fwake(ack);
        }
        _exit(0);
    }
    int64_t t0 = now();
    for (int i = 0; i < n; i++) {
        int64_t due = t0 + i * period, left = due - now();
        if (left > 0) { struct timespec s = {left / 1000000000LL, left % 1000000000LL}; nanosleep(&s, NULL); }
        *ts = now(); __atomic_store_n(go, i + 1, __ATOMIC_SEQ_CST); fwake(go);
        while (__atomic_load_n(ack, __ATOMIC_ACQUIRE) != (uint32_t)(i + 1)) fwait(ack, i);
    }
    waitpid(pid, NULL, 0);
    for (int i = 0; i < n; i++) printf("%lld\n", (long long)lat[i]);
    return 0;
}
"""


def _c_futex_pingpong(n: int, period_ns: int):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None
    with tempfile.TemporaryDirectory() as d:
        src, exe = os.path.join(d, "pp.c"), os.path.join(d, "pp")
        with open(src, "w") as f:
            f.write(_C_PINGPONG)
        subprocess.run([cc, "-O2", "-o", exe, src], check=True, capture_output=True, timeout=60)
        out = subprocess.run([exe, str(n), str(period_ns)], check=True, capture_output=True, timeout=n / 1000 + 30)
    return np.array(out.stdout.split(), dtype=np.int64)


def futex_cost(seconds: float, rate: float = RATE) -> dict:
    """One futex wake-up, sleeper idle in between (as the reader at 5,000 events/s):
    from just before FUTEX_WAKE in one process to the return of FUTEX_WAIT in the other."""
    n = max(100, int(seconds * rate))
    period_ns = int(1e9 / rate)
    out = {"python_ctypes": _percentiles(_py_futex_pingpong(n, period_ns))}
    try:
        c = _c_futex_pingpong(n, period_ns)
    except (subprocess.SubprocessError, OSError) as exc:
        c = None
        out["c_note"] = f"C ping-pong failed: {exc}"
    if c is not None:
        out["c"] = _percentiles(c)
    return out


# ---------------------------------------------------------------------------
# CPU of blocked processes
# ---------------------------------------------------------------------------


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _blocked_reader(report, go, setup):
    r = Reader(setup)
    report("ready")
    c0, t0 = _cpu_s(), time.monotonic()
    try:
        r.get()
    except SystemExit:
        pass
    report({"cpu_s": _cpu_s() - c0, "wall_s": time.monotonic() - t0})
    r.close()


def _blocked_writer(report, go, setup, nslots):
    w = Writer(setup)
    for _ in range(nslots):
        w.get_new_buffer()
    w.process_buffer()
    report("ready")
    c0, t0 = _cpu_s(), time.monotonic()
    try:
        w.get_new_buffer()  # the ring is full and nobody reads: blocks
    except SystemExit:
        pass
    report({"cpu_s": _cpu_s() - c0, "wall_s": time.monotonic() - t0})
    w.close()


def blocked_cpu(seconds: float) -> dict:
    """Share of one core used by a reader blocked on an empty buffer and a
    writer blocked on a full one (default sleeping waits), over `seconds`."""
    procs = Procs()
    b_r = NewBuffer(64, SMALL.values, SMALL.dtype)
    b_w = NewBuffer(64, SMALL.values, SMALL.dtype)
    try:
        procs.add("reader", _blocked_reader, b_r.new_reader_group())
        b_w.new_reader_group()  # a group that never reads: the writer fills the ring and waits
        procs.add("writer", _blocked_writer, b_w.new_writer(), 64)
        procs.start()
        procs.wait_ready(["reader", "writer"])
        time.sleep(seconds)
        b_w.set_ending()
        b_r.shutdown(timeout=2.0)
        res = procs.collect(["reader", "writer"], timeout=10)
        procs.join(["reader", "writer"], timeout=10)
    finally:
        procs.close()
        b_r.close()
        b_w.close()
    return {
        k: {"cpu_s": v["cpu_s"], "wall_s": v["wall_s"], "core_share": v["cpu_s"] / v["wall_s"]} for k, v in res.items()
    }
