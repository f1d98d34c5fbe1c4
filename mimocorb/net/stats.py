"""Link statistics: counted in the bridge's workers, handed to the run control through files.

Each worker of ``send``, ``receive``, ``publish`` and ``subscribe`` keeps a
:class:`LinkStats` and, when it runs in a run folder (``directory_prefix``), writes it
every ``stats_interval`` seconds and when it ends to the link statistics file whose
format the run control defines (:mod:`mimocorb.daq.links`: ``net-<role>-<name>.json``).
The run control reads them with :func:`collect_stats` for its status line
(:func:`format_link_status`), ``summary.json`` (``links``) and ``buffer_stats.csv``
(:data:`CSV_FIELDS`, :func:`csv_row`); these are :mod:`mimocorb.daq.links`' own, named
here too.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Optional

from mimocorb.daq.links import COUNTERS, CSV_FIELDS, collect_stats, csv_row, format_link_status, link_file

logger = logging.getLogger(__name__)


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
        self.path = None if run_folder is None else link_file(run_folder, role, name)
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


__all__ = ["LinkStats", "COUNTERS", "CSV_FIELDS", "collect_stats", "csv_row", "format_link_status"]
