"""Live status of a run: buffer snapshots, the status line, the statistics CSV, the summary
(built by :func:`run_summary`, shown by :func:`format_summary`).

Links to other hosts (workers that write link statistics files, :mod:`mimocorb.daq.links`)
appear in all three: after the buffers in the status line, as rows of their own in the CSV
(the link columns filled, the buffer columns empty), as ``links`` in the summary."""

from __future__ import annotations

import csv
import dataclasses
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

from mimocorb.daq.links import CSV_FIELDS, csv_row, format_link_status, summary_entry

logger = logging.getLogger(__name__)


@dataclass
class BufferSnapshot:
    """One buffer at one moment (``groups``: per reader group, from ``NewBuffer.stats()``)."""

    name: str
    events: int
    filled: int
    slots: int
    rate: float
    deadtime: float
    lost: int = 0
    abandoned: int = 0
    voided: int = 0
    groups: list[dict] = field(default_factory=list)


@dataclass
class WorkerState:
    """One worker process."""

    name: str
    function: str
    pid: Optional[int]
    alive: bool
    exitcode: Optional[int]


@dataclass
class RunStatus:
    """A snapshot of the whole run, as the status line and a GUI show it."""

    state: str  # "setup", "running", "paused", "stopping", "ended"
    elapsed: float  # s since start
    active_time: float  # s since start without pauses
    buffers: list[BufferSnapshot] = field(default_factory=list)
    workers: list[WorkerState] = field(default_factory=list)
    stop_reason: str = ""
    links: dict[str, dict] = field(default_factory=dict)  # "<role> <name>" -> link statistics

    @property
    def workers_alive(self) -> int:
        return sum(w.alive for w in self.workers)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["workers_alive"] = self.workers_alive
        return d


def read_buffer(name: str, s: dict) -> BufferSnapshot:
    """Raw counters of a buffer from its ``NewBuffer.stats()`` ``s``; ``deadtime`` is the cumulative sum here.

    The run control turns consecutive snapshots into rates and mean dead times.
    """
    if "deadtime_sum" in s:
        dead = float(s["deadtime_sum"])
    else:  # a buffer giving the mean since the last call
        dead = float(s.get("deadtime", 0.0)) * int(s.get("published", 0))
    return BufferSnapshot(
        name,
        int(s.get("published", 0)),
        int(s.get("filled", 0)),
        int(s.get("slots", 0)),
        float(s.get("rate", 0.0)),
        dead,
        int(s.get("lost", 0)),
        int(s.get("abandoned_by_writers", 0)),
        int(s.get("voided", 0)),
        [
            {k: g[k] for k in ("group", "state", "consumed", "pending", "voided", "lost", "lost_total") if k in g}
            for g in s.get("groups", ())
        ],
    )


def holdings(pid: Optional[int], stats: dict[str, dict]) -> list[dict]:
    """What process ``pid`` holds in each buffer (``[{buffer, role, group, events}]``), from their ``stats()``."""
    out = []
    for name, s in stats.items():
        for p in s.get("processes", ()):
            if p["pid"] == pid and p["holds"]:
                out.append({"buffer": name, "role": p["role"], "group": p["group"], "events": p["holds"]})
    return out


class BufferWatch:
    """The run control's reads of its buffers.

    Raw snapshots (:meth:`snapshot`), rates and dead times over the interval since the
    previous status (:meth:`rates`), the totals for the summary, and what each attached
    process held when last seen (``last_held``: a worker that dies is named with it).
    """

    def __init__(self, buffers: dict[str, Any], order: list[str]):
        self.buffers = buffers
        self.order = order
        self.totals = BufferTotals()
        self.last_held: dict[int, list[dict]] = {}
        self._window: dict[str, tuple[int, float, float]] = {}

    def stats(self) -> dict[str, dict]:
        """``stats()`` of every buffer still open, in data-flow order."""
        out = {}
        for name in self.order:
            if name not in self.buffers:
                continue
            try:
                out[name] = self.buffers[name].stats()
            except Exception as exc:  # noqa: BLE001 - a status read must never end the run
                logger.debug("status of %s failed: %s", name, exc)
        return out

    def holdings(self, pid: Optional[int]) -> list[dict]:
        return holdings(pid, self.stats())

    def snapshot(self) -> list[BufferSnapshot]:
        stats = self.stats()
        pids = {p["pid"] for s in stats.values() for p in s.get("processes", ())}
        self.last_held.update({pid: holdings(pid, stats) for pid in pids})
        snaps = [read_buffer(name, s) for name, s in stats.items()]
        self.totals.add(snaps)
        return snaps

    def rates(self, snaps: list[BufferSnapshot], t_start: float) -> list[BufferSnapshot]:
        """The snapshots with rate and dead time over the interval since the previous call (event-weighted)."""
        out = []
        now = time.monotonic()
        for b in snaps:
            events0, dead0, t0 = self._window.get(b.name, (0, 0.0, t_start))
            rate = (b.events - events0) / (now - t0) if now > t0 else 0.0
            dead = (b.deadtime - dead0) / (b.events - events0) if b.events > events0 else 0.0
            self._window[b.name] = (b.events, b.deadtime, now)
            out.append(dataclasses.replace(b, rate=rate, deadtime=dead))
        return out


def _rate(r: float) -> str:
    if r >= 1e6:
        return f"{r / 1e6:.2f} MHz"
    if r >= 1e3:
        return f"{r / 1e3:.2f} kHz"
    return f"{r:.1f} Hz"


def format_status(st: RunStatus) -> str:
    """One status line: state, time, per buffer events/rate/fill/dead time/lost, workers alive.

    A reader group that no longer holds its buffer back (its members ended, or it was
    retired) is shown: ``lost 95 (1 group without readers)``."""
    parts = [f"{st.state:<8} {st.active_time:7.1f}s"]
    for b in st.buffers:
        lost = f" lost {b.lost}" if b.lost else ""
        orphaned = sum(1 for g in b.groups if g.get("state") == "orphaned")
        if orphaned:
            lost += f" ({orphaned} group{'s' if orphaned > 1 else ''} without readers)"
        parts.append(
            f"{b.name}: {b.events} ev {_rate(b.rate)} fill {b.filled}/{b.slots} dead {100 * b.deadtime:.1f}%{lost}"
        )
    if st.links:
        parts.append(format_link_status(st.links))
    parts.append(f"workers {st.workers_alive}/{len(st.workers)}")
    return " | ".join(parts)


class StatsRecorder:
    """Buffer statistics over time, one CSV row per buffer and snapshot, and one per link
    (:data:`~mimocorb.daq.links.CSV_FIELDS` after the buffer columns; each row fills its own)."""

    COLUMNS = [
        "time",
        "elapsed_s",
        "state",
        "buffer",
        "events",
        "filled",
        "slots",
        "rate_hz",
        "deadtime",
        "lost",
        "workers_alive",
        *CSV_FIELDS,
    ]

    def __init__(self, path: Path):
        self.path = Path(path)
        self._file = open(self.path, "w", newline="")
        self._csv = csv.writer(self._file)
        self._csv.writerow(self.COLUMNS)

    def record(self, st: RunStatus) -> None:
        now = time.time()
        for b in st.buffers:
            self._csv.writerow(
                [
                    f"{now:.3f}",
                    f"{st.elapsed:.3f}",
                    st.state,
                    b.name,
                    b.events,
                    b.filled,
                    b.slots,
                    f"{b.rate:.3f}",
                    f"{b.deadtime:.5f}",
                    b.lost,
                    st.workers_alive,
                    *[""] * len(CSV_FIELDS),
                ]
            )
        head = len(self.COLUMNS) - len(CSV_FIELDS)
        for link in st.links.values():
            row = csv_row(link)
            self._csv.writerow(
                [f"{now:.3f}", f"{st.elapsed:.3f}", st.state, *[""] * (head - 4), st.workers_alive]
                + [row[k] for k in CSV_FIELDS]
            )
        self._file.flush()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class BufferTotals:
    """Per-buffer totals for the summary, from the last raw snapshot (cumulative dead time)."""

    def __init__(self) -> None:
        self.last: dict[str, BufferSnapshot] = {}

    def add(self, snaps: list[BufferSnapshot]) -> None:
        for b in snaps:
            self.last[b.name] = b

    def summary(
        self, active_time: float, consumers: Optional[dict[tuple[str, int], dict]] = None
    ) -> dict[str, dict[str, Any]]:
        """Per buffer: events, rates, losses, and per reader group what it consumed and lost.

        ``consumers`` maps (buffer, group) to what the run knows of the group (its
        function, workers, whether it was retired); it is merged into each group.
        For every group ``consumed + lost_total + voided + pending`` is what it passed since it was
        added: events published, abandoned or voided (claims given back unfilled by a writer that
        was stopped while waiting; the group's own ``voided`` counts those it passed).
        """
        consumers = consumers or {}
        return {
            name: {
                "events": b.events,
                "mean_rate_hz": b.events / active_time if active_time > 0 else 0.0,
                "mean_deadtime": b.deadtime / b.events if b.events else 0.0,
                "lost": b.lost,
                "abandoned": b.abandoned,
                "voided": b.voided,
                "slots": b.slots,
                "groups": [{**g, **consumers.get((name, g["group"]), {})} for g in b.groups],
            }
            for name, b in self.last.items()
        }


def run_summary(
    run: dict[str, Any],
    active_time: float,
    totals: BufferTotals,
    workers: Sequence[Any],
    retired: dict[tuple[str, int], str],
    failures: dict[str, str],
    files: list[dict],
    exit_code: Optional[int],
    links: Optional[dict[str, dict]] = None,
    tracebacks: Optional[dict[Optional[int], str]] = None,
) -> dict[str, Any]:
    """The run's ``summary.json``: ``run`` (the facts of the run: setup file, run folder, times,
    stop reason, start method), then per buffer (``totals`` over the ``active_time`` in s, with the reader groups of the
    ``workers`` and whether they were ``retired``), the exporters' ``files``, per worker (a
    :class:`~mimocorb.daq.processes.Worker`, with the traceback it reported in ``failures`` and
    those of its replaced processes in ``tracebacks``, pid -> text), the ``links`` to other
    hosts (name -> statistics) and the ``exit_code``."""
    consumers: dict[tuple[str, int], dict] = {}
    for w in workers:
        for b, g in w.groups.items():
            c = consumers.setdefault((b, g), {"function": w.spec.fkt_name, "key": w.spec.key, "workers": []})
            c["workers"].append(w.name)
            c["retired"] = (b, g) in retired
    return {
        **run,
        "buffers": totals.summary(active_time, consumers),
        "files": sorted(files, key=lambda f: f["path"]),
        "links": {k: summary_entry(v) for k, v in (links or {}).items()},
        "workers": [w.summary(failures.get(w.name), tracebacks or {}) for w in workers],
        "exit_code": exit_code,
    }


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable end-of-run summary."""
    lines = [
        f"Run ended: {summary.get('stop_reason', '?')}",
        f"  run folder  {summary.get('run_folder', '')}",
        f"  run time    {summary.get('run_time_s', 0.0):.1f} s (active {summary.get('active_time_s', 0.0):.1f} s)",
    ]
    for name, b in summary.get("buffers", {}).items():
        lines.append(
            f"  {name:<10} {b['events']:>10} events  {b['mean_rate_hz']:10.1f} Hz  "
            f"dead time {100 * b['mean_deadtime']:5.1f}%  lost {b['lost']}"
        )
        for g in b.get("groups", ()):
            if g.get("lost_total") or g.get("retired"):
                causes = ", ".join(f"{k} {v}" for k, v in g.get("lost", {}).items() if v)
                who = g.get("function", f"group {g['group']}")
                note = " (ended early: its group was retired)" if g.get("retired") else ""
                lines.append(f"    {who}: consumed {g.get('consumed', 0)}, lost {g['lost_total']} ({causes}){note}")
    for f in summary.get("files", ()):
        lines.append(f"  file        {f['path']} ({f['events']} events of {f['buffer']})")
    failed = [w for w in summary.get("workers", []) if w.get("failed")]
    ok = len(summary.get("workers", [])) - len(failed)
    lines.append(f"  workers     {ok} ended cleanly, {len(failed)} failed")
    for w in failed:
        lines.append(f"  FAILED {w['name']}: {w.get('error') or 'exit code ' + str(w.get('exitcode'))}")
    lines.append(f"  exit code   {summary.get('exit_code', '?')}")
    return "\n".join(lines)
