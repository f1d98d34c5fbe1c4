"""Link statistics: counted in the bridge's workers, handed to the run control through files.

Each worker of ``send``, ``receive``, ``publish`` and ``subscribe`` keeps a
:class:`LinkStats` and, when it runs in a run folder (``directory_prefix``), writes it
to ``<run folder>/net-<role>-<name>.json`` every ``stats_interval`` seconds and when
it ends (written to a temporary name and renamed: a reader never sees half a file).
The run control reads them with :func:`collect_stats` for its status line
(:func:`format_link_status`), ``summary.json`` and ``buffer_stats.csv``
(:data:`CSV_FIELDS`).

Counters (events unless named otherwise): ``sent`` (new events sent), ``resent``,
``acked``, ``in_flight``, ``received`` (by a receiver, repeats included),
``published``, ``duplicates`` (repeats skipped), ``reassigned`` (events of a lost
receiver given to another), ``dropped`` (observer stream: events missed),
``reconnects``, ``refused`` (peers or messages refused), ``bytes``, ``mb_per_s``
(over the last interval), ``peers`` (name -> "up" / "lost"), ``buffer`` (the local
buffer's name), ``state``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any, Optional

logger = logging.getLogger(__name__)

COUNTERS = (
    "sent",
    "resent",
    "acked",
    "in_flight",
    "received",
    "published",
    "duplicates",
    "reassigned",
    "dropped",
    "reconnects",
    "refused",
    "bytes",
)
#: The columns a run control adds to ``buffer_stats.csv`` per link (see :func:`csv_row`).
CSV_FIELDS = (
    "link",
    "role",
    "buffer",
    "sent",
    "acked",
    "resent",
    "in_flight",
    "received",
    "published",
    "duplicates",
    "reconnects",
    "mb_per_s",
)


class LinkStats:
    """The counters of one bridge worker, and their file in the run folder.

    Parameters
    ----------
    role : str
        ``sender``, ``receiver``, ``publisher`` or ``subscriber``.
    name : str
        The link's name (this side's ``name``).
    buffer : str
        Name of the local buffer.
    run_folder : Path, optional
        Where the file goes (none: counted only).
    interval : float
        Seconds between two writes of the file.
    """

    def __init__(self, role: str, name: str, buffer: str, run_folder: Optional[Path], interval: float = 1.0):
        self.role, self.name, self.buffer = role, name, buffer
        self.counts = dict.fromkeys(COUNTERS, 0)
        self.peers: dict[str, str] = {}
        self.state = "starting"
        self.interval = interval
        self.path = None if run_folder is None else Path(run_folder) / f"net-{role}-{_safe(name)}.json"
        self._t_last = time.monotonic()
        self._bytes_last = 0
        self.mb_per_s = 0.0
        self._due = 0.0

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def snapshot(self) -> dict[str, Any]:
        now = time.monotonic()
        dt = now - self._t_last
        if dt >= 0.2:
            self.mb_per_s = (self.counts["bytes"] - self._bytes_last) / dt / 1e6
            self._t_last, self._bytes_last = now, self.counts["bytes"]
        return {
            "link": self.name,
            "role": self.role,
            "buffer": self.buffer,
            "state": self.state,
            **self.counts,
            "mb_per_s": round(self.mb_per_s, 3),
            "peers": dict(self.peers),
            "pid": os.getpid(),
            "time": time.time(),
        }

    def maybe_write(self, force: bool = False) -> None:
        """Write the file if ``interval`` has passed (or ``force``)."""
        now = time.monotonic()
        if self.path is None or (not force and now < self._due):
            return
        self._due = now + self.interval
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            tmp.write_text(json.dumps(self.snapshot()))
            tmp.replace(self.path)
        except OSError as exc:  # a full disk must not stop the data flow
            logger.warning("cannot write link statistics %s: %s", self.path, exc)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def collect_stats(run_folder: str | os.PathLike) -> dict[str, dict]:
    """Every link's latest statistics in a run folder: ``{"<role> <name>": stats}``.

    For the run control (status line, ``summary.json``, ``buffer_stats.csv``); a file
    that cannot be read (being replaced, removed) is skipped."""
    out = {}
    for p in sorted(Path(run_folder).glob("net-*.json")):
        try:
            s = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        out[f"{s.get('role')} {s.get('link')}"] = s
    return out


def format_link_status(stats: dict[str, dict]) -> str:
    """One short text per link for the status line, e.g.
    ``send host/send: sent 120000 acked 119488 resent 0 in flight 512 reconn 0 52.1 MB/s``."""
    parts = []
    for s in stats.values():
        if s["role"] == "sender":
            body = (
                f"sent {s['sent']} acked {s['acked']} resent {s['resent']} in flight {s['in_flight']} "
                f"reconn {s['reconnects']}"
            )
        elif s["role"] == "receiver":
            body = f"received {s['received']} published {s['published']} dup {s['duplicates']} reconn {s['reconnects']}"
        else:
            body = f"events {s['published'] or s['sent']} dropped {s['dropped']}"
        parts.append(f"{s['role']} {s['link']}: {body} {s['mb_per_s']:.1f} MB/s")
    return "; ".join(parts)


def csv_row(stats: dict) -> dict:
    """The :data:`CSV_FIELDS` of one link's statistics."""
    return {k: stats.get(k, "") for k in CSV_FIELDS}
