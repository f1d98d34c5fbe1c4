"""The printed table, the targets with pass/miss, and the JSON file."""

from __future__ import annotations

import datetime
import json
import os
import socket
from typing import Any


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def throughput_table(res: dict) -> list[str]:
    lines = [f"{'case':34s} {'peer':12s} {'events/s':>13s} {'MB/s':>9s} {'vs mimocorb':>12s}"]
    for key, by_peer in res.items():
        mimo = by_peer.get("mimocorb", {}).get("events_per_s")
        for peer, r in by_peer.items():
            if "skipped" in r:
                lines.append(f"{key:34s} {peer:12s} {'skipped: ' + r['skipped']}")
                continue
            ratio = f"{mimo / r['events_per_s']:.1f}x" if mimo and peer != "mimocorb" else ""
            mb = r.get("bytes_per_s", 0) / 1e6
            lines.append(f"{key:34s} {peer:12s} {_fmt_rate(r['events_per_s']):>13s} {mb:9.0f} {ratio:>12s}")
    return lines


def latency_table(lat: dict, futex: dict) -> list[str]:
    lines = [f"{'one hop at 5,000 events/s':34s} {'p50 us':>8s} {'p99 us':>8s} {'p99.9 us':>9s} {'min us':>7s}"]
    rows = [("futex wake-up, C", futex.get("c")), ("futex wake-up, Python+ctypes", futex.get("python_ctypes"))]
    rows += [(k, v) for k, v in lat.items()]
    for name, r in rows:
        if r is None:
            continue
        if "skipped" in r:
            lines.append(f"{name:34s} skipped: {r['skipped']}")
            continue
        lines.append(f"{name:34s} {r['p50_us']:8.1f} {r['p99_us']:8.1f} {r['p999_us']:9.1f} {r['min_us']:7.1f}")
    return lines


def targets(results: dict) -> list[dict[str, Any]]:
    """Each speed target of docs/architecture.md with the measured value, pass or miss."""
    t = results["throughput"]
    out = []

    def add(name, value, limit, ok, unit=""):
        out.append({"target": name, "value": value, "limit": limit, "unit": unit, "pass": bool(ok)})

    small = t.get("40 B, 1w->1r", {})
    m = small.get("mimocorb", {}).get("events_per_s")
    if m:
        add("40 B per-event API >= 4,000,000 events/s", m, 4e6, m >= 4e6, "events/s")
        ff = small.get("faster-fifo", {}).get("events_per_s")
        if ff:
            add(">= 25x faster-fifo (40 B, same run)", m / ff, 25, m / ff >= 25, "x")
        bare = small.get("bare ring", {}).get("events_per_s")
        if bare:
            add("40 B 1w->1r >= 90% of the bare ring", 100 * m / bare, 90, m >= 0.9 * bare, "%")
    for label, limit in (("1w->1 group of 2", 1.5e6), ("1w->3 groups", 1e6), ("2w->1r", 1.5e6)):
        v = t.get(f"40 B, {label}", {}).get("mimocorb", {}).get("events_per_s")
        if v:
            add(f"40 B {label} >= {limit / 1e6:g} M events/s", v, limit, v >= limit, "events/s")
    bp = results.get("big_pairs", {})
    if "median_ratio" in bp:
        r = 100 * bp["median_ratio"]
        add("64 KiB 1w->1r >= 80% of in-process copy (median of pairs)", r, 80, r >= 80, "%")
    lim = t.get("64 KiB, 1w->1r", {}).get("copy limit", {}).get("bytes_per_s")
    for label in ("1w->3 groups", "1w->1 group of 2", "2w->1r"):
        v = t.get(f"64 KiB, {label}", {}).get("mimocorb", {}).get("bytes_per_s")
        if v and lim:  # every group gets every event: the bandwidth per consumer group
            add(f"64 KiB {label} >= 60% of copy per group", 100 * v / lim, 60, v >= 0.6 * lim, "%")
    lat, fx = results["latency"], results["futex"]
    s = lat.get("mimocorb, sleeping wait (default)")
    if s and "p50_us" in s:
        # the wake-up of a sleeping C process, and of a sleeping Python process (what a
        # reader of any Python DAQ is): both are reported
        for label, key in (("C", "c"), ("Python", "python_ctypes")):
            if fx.get(key):
                ref = fx[key]["p50_us"] + 5
                add(f"sleeping wait p50 <= futex wake-up ({label}) + 5 us", s["p50_us"], ref, s["p50_us"] <= ref, "us")
    for who, r in results["blocked_cpu"].items():
        add(f"blocked {who} < 1% of a core", 100 * r["core_share"], 1, r["core_share"] < 0.01, "%")
    sp = lat.get("mimocorb, spinning wait")
    if sp and "p50_us" in sp:
        add("spinning wait p50 <= 1 us", sp["p50_us"], 1, sp["p50_us"] <= 1, "us")
        add("spinning wait p99 <= 20 us", sp["p99_us"], 20, sp["p99_us"] <= 20, "us")
    b = results["batch"].get("mimocorb", {}).get("events_per_s")
    if b:
        add("batch calls >= 20,000,000 events/s", b, 2e7, b >= 2e7, "events/s")
    return out


def targets_table(tg: list[dict]) -> list[str]:
    lines = [f"{'target':46s} {'measured':>14s} {'limit':>12s}  result"]
    for x in tg:
        v = f"{x['value']:,.1f}" if x["value"] < 1000 else _fmt_rate(x["value"])
        lim = f"{x['limit']:,.1f}" if x["limit"] < 1000 else _fmt_rate(x["limit"])
        lines.append(f"{x['target']:46s} {v:>14s} {lim:>12s}  {'pass' if x['pass'] else 'MISS'} ({x['unit']})")
    return lines


def write_json(results: dict, directory: str) -> str:
    os.makedirs(directory, exist_ok=True)
    name = f"{datetime.date.today().isoformat()}-{socket.gethostname()}.json"
    path = os.path.join(directory, name)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f, indent=1, default=float)
    os.replace(tmp, path)
    return path
