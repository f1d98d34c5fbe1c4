"""Link statistics files: how workers that move events off the host report to the run control.

The run control knows nothing of the network bridge (:mod:`mimocorb.net` is a layer above
``daq``: it imports the buffers and the worker helpers, never the other way round). The
two meet in a file format, defined here: a worker writes its link's counters to
``<run folder>/net-<role>-<name>.json`` (:func:`link_file`; written to a temporary name
and renamed, so a reader never sees half a file), and the run control reads every such
file (:func:`collect_stats`) for its status line (:func:`format_link_status`),
``summary.json`` (``links``) and ``buffer_stats.csv`` (one row per link and status, the
columns :data:`CSV_FIELDS`). Any worker may write such files; the bridge's
:class:`mimocorb.net.stats.LinkStats` is the one that does.

A file holds one JSON object: ``link`` (the link's name), ``role`` (``sender``,
``receiver``, ``publisher``, ``subscriber``), ``buffer`` (the local buffer), ``state``,
the counters (events unless named otherwise) ``sent``, ``resent``, ``acked``,
``in_flight``, ``received`` (repeats included), ``published``, ``duplicates`` (repeats
skipped), ``reassigned``, ``dropped`` (observer stream), ``reconnects``, ``refused``,
``bytes``, and ``mb_per_s`` (over the writer's last interval), ``peers`` (name ->
``up`` / ``lost``), ``pid`` and ``time`` (of the write, Unix seconds).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

#: The counters of a link statistics file.
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
#: The columns a run control adds to ``buffer_stats.csv`` for a link's rows (see :func:`csv_row`);
#: ``link_buffer`` is the link's local buffer (the ``buffer`` column stays the buffers' own).
CSV_FIELDS = (
    "link",
    "role",
    "link_buffer",
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
#: What ``summary.json`` keeps of each link (``links``).
SUMMARY_FIELDS = ("link", "role", "buffer", "state", *COUNTERS, "mb_per_s", "peers")
_PATTERN = "net-*.json"


def link_file(run_folder: str | os.PathLike, role: str, name: str) -> Path:
    """The statistics file of link ``name`` (``role``) in ``run_folder``."""
    return Path(run_folder) / f"net-{role}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.json"


def collect_stats(run_folder: str | os.PathLike) -> dict[str, dict]:
    """Every link's latest statistics in a run folder: ``{"<role> <name>": stats}``.

    A file that cannot be read (being replaced, removed) is skipped."""
    out = {}
    for p in sorted(Path(run_folder).glob(_PATTERN)):
        try:
            s = json.loads(p.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(s, dict) and "role" in s and "link" in s:
            out[f"{s['role']} {s['link']}"] = s
    return out


def format_link_status(stats: dict[str, dict]) -> str:
    """One short text per link for the status line, e.g.
    ``sender host/send: sent 120000 acked 119488 resent 0 in flight 512 reconn 0 52.1 MB/s``."""
    parts = []
    for s in stats.values():
        n = {k: s.get(k, 0) for k in COUNTERS}
        if s["role"] == "sender":
            body = (
                f"sent {n['sent']} acked {n['acked']} resent {n['resent']} in flight {n['in_flight']} "
                f"reconn {n['reconnects']}"
            )
        elif s["role"] == "receiver":
            body = f"received {n['received']} published {n['published']} dup {n['duplicates']} reconn {n['reconnects']}"
        else:
            body = f"events {n['published'] or n['sent']} dropped {n['dropped']}"
        parts.append(f"{s['role']} {s['link']}: {body} {float(s.get('mb_per_s', 0.0)):.1f} MB/s")
    return "; ".join(parts)


def csv_row(stats: dict) -> dict[str, Any]:
    """The :data:`CSV_FIELDS` of one link's statistics."""
    return {k: stats.get("buffer" if k == "link_buffer" else k, "") for k in CSV_FIELDS}


def summary_entry(stats: dict) -> dict[str, Any]:
    """What ``summary.json`` keeps of one link's statistics (:data:`SUMMARY_FIELDS`)."""
    return {k: stats[k] for k in SUMMARY_FIELDS if k in stats}


__all__ = [
    "COUNTERS",
    "CSV_FIELDS",
    "SUMMARY_FIELDS",
    "link_file",
    "collect_stats",
    "format_link_status",
    "csv_row",
    "summary_entry",
]
