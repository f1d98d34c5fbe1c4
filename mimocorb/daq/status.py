"""Live status of a run: buffer snapshots, the status line, the statistics CSV, the summary."""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

logger = logging.getLogger(__name__)


@dataclass
class BufferSnapshot:
    """One buffer at one moment."""

    name: str
    events: int
    filled: int
    slots: int
    rate: float
    deadtime: float
    lost: int = 0


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

    @property
    def workers_alive(self) -> int:
        return sum(w.alive for w in self.workers)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["workers_alive"] = self.workers_alive
        return d


def read_buffer(name: str, buf: Any) -> BufferSnapshot:
    """Raw counters of a ``NewBuffer`` from its ``stats()``; ``deadtime`` is the cumulative sum here.

    The run control turns consecutive snapshots into rates and mean dead times.
    """
    s = buf.stats()
    if "deadtime_sum" in s:
        dead = float(s["deadtime_sum"])
    else:  # a buffer giving the mean since the last call
        dead = float(s.get("deadtime", 0.0)) * int(s.get("published", 0))
    return BufferSnapshot(
        name,
        int(s.get("published", 0)),
        int(s.get("filled", 0)),
        int(s.get("slots", buf.number_of_slots)),
        float(s.get("rate", 0.0)),
        dead,
        int(s.get("lost", 0)),
    )


def _rate(r: float) -> str:
    if r >= 1e6:
        return f"{r / 1e6:.2f} MHz"
    if r >= 1e3:
        return f"{r / 1e3:.2f} kHz"
    return f"{r:.1f} Hz"


def format_status(st: RunStatus) -> str:
    """One status line: state, time, per buffer events/rate/fill/dead time/lost, workers alive."""
    parts = [f"{st.state:<8} {st.active_time:7.1f}s"]
    for b in st.buffers:
        lost = f" lost {b.lost}" if b.lost else ""
        parts.append(
            f"{b.name}: {b.events} ev {_rate(b.rate)} fill {b.filled}/{b.slots} dead {100 * b.deadtime:.1f}%{lost}"
        )
    parts.append(f"workers {st.workers_alive}/{len(st.workers)}")
    return " | ".join(parts)


class StatsRecorder:
    """Buffer statistics over time, one CSV row per buffer and snapshot."""

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
                ]
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

    def summary(self, active_time: float) -> dict[str, dict[str, Any]]:
        return {
            name: {
                "events": b.events,
                "mean_rate_hz": b.events / active_time if active_time > 0 else 0.0,
                "mean_deadtime": b.deadtime / b.events if b.events else 0.0,
                "lost": b.lost,
                "slots": b.slots,
            }
            for name, b in self.last.items()
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
    failed = [w for w in summary.get("workers", []) if w.get("failed")]
    ok = len(summary.get("workers", [])) - len(failed)
    lines.append(f"  workers     {ok} ended cleanly, {len(failed)} failed")
    for w in failed:
        lines.append(f"  FAILED {w['name']}: {w.get('error') or 'exit code ' + str(w.get('exitcode'))}")
    lines.append(f"  exit code   {summary.get('exit_code', '?')}")
    return "\n".join(lines)
