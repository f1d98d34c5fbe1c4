"""Speed of the file exporters, beside ``numpy.save`` of the same bytes.

Usage: ``python -m benchmarks.bench_exporters [--small N] [--waves N] [--reps R] [--only NAME ...]``.

Targets (issue 14): each exporter keeps up with the demo at full rate -- >= 10,000 small
records/s and >= 200 MB/s of waveforms -- using <= 30 % of a core.

Each case: a writer process puts N events into a ring buffer as fast as it can, the
exporter (the access class the packaged sink runs: ``rb_toTxtfile``, ``rb_toParquetfile``,
``rb_toWaveformfile``, ``rb_toHdf5file``, ``rb_toRootfile``) reads them in a process of
its own and writes its file, until the buffer's end of run. Measured in the exporter's
process, from its start to the closed file: wall time, CPU time (user + system,
``os.times``), events/s and MB/s of slot bytes flat out, and the CPU share it would need
at the target rate (CPU seconds per event x target events/s). Then ``numpy.save`` of
the same records (metadata + slot, the bytes of the waveform file) into the same folder,
in one call, for the disk's own speed in the same run. Small records: ``(index int64,
total float64, peak float32)``, one per slot; waveforms: 4 x 4,096 float32 (64 KiB) per
slot. Files go to a temporary folder (``--dir``) and are removed after each case.

Each case runs ``--reps`` times (default 3); the best (lowest CPU per event) is the
result, every run is printed (on a shared machine they vary by tens of per cent).
Nothing is asserted; each target is marked met or missed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.procs import Procs
from mimocorb.mimo_buffer import METADATA_DTYPE, NewBuffer, Writer

SMALL_RATE = 10_000  # events/s
WAVE_BYTES_RATE = 200e6  # bytes/s
CPU_TARGET = 0.30  # of one core
SMALL_DTYPE = np.dtype([("index", "i8"), ("total", "f8"), ("peak", "f4")])
WAVE_DTYPE = np.dtype([("chA", "f4"), ("chB", "f4"), ("chC", "f4"), ("chD", "f4")])
WAVE_VALUES = 4096

#: name -> (module, access class, extra config); the txt table holds one value per slot only
EXPORTERS = {
    "txt": ("mimocorb.exporters.text", "rb_toTxtfile", {}),
    "parquet": ("mimocorb.exporters.parquet", "rb_toParquetfile", {}),
    "npy": ("mimocorb.exporters.waveforms", "rb_toWaveformfile", {}),
    "hdf5": ("mimocorb.exporters.hdf5", "rb_toHdf5file", {}),
    "root": ("mimocorb.exporters.root", "rb_toRootfile", {}),
    "parquet-tar": ("mimocorb.exporters.parquet", "rb_toParquetfile", {"format": "tar"}),
}


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def _writer(report, go, setup: dict, event: np.ndarray, n: int) -> None:
    w = Writer(setup)
    report("ready")
    go.wait(30)
    for i in range(n):
        w.put(event, counter=i + 1)
    w.close()
    report({"written": n})


def _exporter(report, go, name: str, setup: dict, folder: str) -> None:
    import importlib

    module, cls, extra = EXPORTERS[name]
    exporter = getattr(importlib.import_module(module), cls)(
        source_list=[setup], config_dict={"directory_prefix": folder, "filename": "bench", **extra}, RB_1="read"
    )
    report("ready")
    t0, c0 = time.monotonic(), _cpu()
    try:
        exporter()
    except SystemExit:  # the end of the run reaches a reader as SystemExit
        pass
    report({"wall": time.monotonic() - t0, "cpu": _cpu() - c0})


def _npy_baseline(folder: Path, event: np.ndarray, n: int) -> dict:
    """numpy.save of the n records the waveform exporter writes (metadata + slot), in one call."""
    rec = np.zeros(n, dtype=METADATA_DTYPE.descr + [("data", event.dtype, (len(event),))])
    rec["counter"] = np.arange(1, n + 1)
    rec["data"] = event
    path = folder / "baseline.npy"
    t0, c0 = time.monotonic(), _cpu()
    np.save(path, rec)
    wall, cpu = time.monotonic() - t0, _cpu() - c0
    path.unlink()
    return {"wall": wall, "cpu": cpu, "bytes": rec.nbytes}


def _case(name: str, event: np.ndarray, n: int, base: Path) -> dict:
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{name}-", dir=base))
    try:
        with NewBuffer(64, len(event), event.dtype) as buf:
            procs = Procs()
            try:
                procs.add("x", _exporter, name, buf.new_reader_group(), str(folder))
                procs.add("w", _writer, buf.new_writer(), event, n)
                procs.start()
                procs.wait_ready(["x", "w"], timeout=60)
                procs.go.set()
                procs.collect(["w"], timeout=600)
                procs.join(["w"], timeout=10)
                buf.shutdown(timeout=120)  # the exporter takes what is left, then ends
                out = procs.collect(["x"], timeout=120)["x"]
                procs.join(["x"], timeout=30)
            finally:
                procs.kill()
                procs.close()
        out["file_bytes"] = sum(p.stat().st_size for p in folder.iterdir())
        out["numpy_save"] = _npy_baseline(folder, event, n)
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _row(name: str, kind: str, runs: list[dict], n: int, slot_bytes: int, rate: float) -> str:
    best = min(runs, key=lambda r: r["cpu"])
    per_event = best["cpu"] / n
    share = per_event * rate
    ev_s = n / best["wall"]
    mb_s = n * slot_bytes / best["wall"] / 1e6
    np_mb_s = best["numpy_save"]["bytes"] / max(best["numpy_save"]["wall"], 1e-9) / 1e6
    verdict = "met" if ev_s >= rate and share <= CPU_TARGET else "missed"
    shares = ", ".join(f"{100 * r['cpu'] / n * rate:.0f}" for r in runs)
    return (
        f"  {name:<12s} {kind:<6s} {ev_s:>12,.0f} {mb_s:>9.1f} {1e6 * per_event:>10.2f} {100 * share:>7.1f} %"
        f"  [{shares}]  {np_mb_s:>8.0f}  {verdict}"
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.bench_exporters", description=__doc__.split("\n")[0])
    ap.add_argument("--small", type=int, default=200_000, help="small records per case (default 200,000)")
    ap.add_argument("--waves", type=int, default=4_000, help="64 KiB waveforms per case (default 4,000: 262 MB)")
    ap.add_argument("--reps", type=int, default=3, help="runs per case; the best is the result")
    ap.add_argument("--only", nargs="*", choices=list(EXPORTERS), help="only these exporters")
    ap.add_argument("--dir", default=None, help="folder for the files (default: the system's temporary folder)")
    args = ap.parse_args(argv)
    base = Path(args.dir or tempfile.gettempdir())
    small = np.zeros(1, SMALL_DTYPE)
    small[0] = (7, 3.5, 1.25)
    wave = np.zeros(WAVE_VALUES, WAVE_DTYPE)
    for i, f in enumerate(WAVE_DTYPE.names):
        wave[f] = np.sin(np.arange(WAVE_VALUES) / (10.0 + i)).astype("f4")
    wave_rate = WAVE_BYTES_RATE / wave.nbytes
    load = os.getloadavg()
    print(f"exporters: {args.small:,} small records ({small.nbytes} B) and {args.waves:,} waveforms ({wave.nbytes} B),")
    print(f"best of {args.reps}; {os.cpu_count()} cores, load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the start")
    print(
        f"targets: >= {SMALL_RATE:,} small records/s and >= {WAVE_BYTES_RATE / 1e6:.0f} MB/s of waveforms "
        f"({wave_rate:,.0f} events/s) at <= {100 * CPU_TARGET:.0f} % of a core"
    )
    print(
        f"  {'exporter':<12s} {'events':<6s} {'events/s':>12s} {'MB/s':>9s} {'CPU us/ev':>10s} {'CPU at target':>9s}"
        f"  [every run, %]  np.save MB/s  target"
    )
    for name in args.only or list(EXPORTERS):
        for kind, event, n, rate in (("small", small, args.small, SMALL_RATE), ("waves", wave, args.waves, wave_rate)):
            if name == "txt" and kind == "waves":
                continue  # a text table holds one value per field
            if name == "parquet-tar" and kind == "small":
                n = min(n, 20_000)  # one Parquet file per event: slow by design (1.x's layout)
            runs = [_case(name, event, n, base) for _ in range(args.reps)]
            print(_row(name, kind, runs, n, event.nbytes, rate), flush=True)
    load = os.getloadavg()
    print(f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} at the end")
    return 0


if __name__ == "__main__":
    sys.exit(main())
