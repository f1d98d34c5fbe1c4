"""What growing a DAQ costs: 40-byte events through the per-event API, with 1 writer
and 1..8 reader groups, 1 group of 1..4 members, and 1..4 writers into 1 reader.

Events/s at the writers and CPU time per event (of every process of the case, from
``getrusage`` of the waited-for children), every event checked as in the throughput
cases. More processes than cores is the normal case on a small machine: the figures
show what that costs.
"""

from __future__ import annotations

import resource

from .events import SMALL
from .throughput import run_case
from .transports import Mimocorb

#: (what grows, writers, groups, members per group)
LAYOUTS = (
    [("groups", 1, g, 1) for g in (1, 2, 3, 4, 6, 8)]
    + [("members", 1, 1, m) for m in (2, 3, 4)]
    + [("writers", w, 1, 1) for w in (2, 3, 4)]
)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run(duration: float) -> dict:
    rows = []
    for grows, nw, ng, nm in LAYOUTS:
        cpu0 = _children_cpu()
        r = run_case(Mimocorb, SMALL, nw, ng, nm, duration)
        cpu = _children_cpu() - cpu0
        rows.append(
            {
                "grows": grows,
                "writers": nw,
                "groups": ng,
                "members": nm,
                "events_per_s": r["events_per_s"],
                "cpu_ns_per_event": 1e9 * cpu / r["events"],
                "processes": nw + ng * nm,
            }
        )
    return {"rows": rows, "duration_s": duration}


def table(res: dict) -> list[str]:
    lines = [
        f"{'scaling (40 B, per-event API)':34s} {'processes':>9s} {'events/s':>13s} {'CPU ns/event':>13s}",
    ]
    for r in res["rows"]:
        label = f"{r['writers']}w -> {r['groups']} group{'s' if r['groups'] > 1 else ''} of {r['members']}"
        lines.append(f"{label:34s} {r['processes']:9d} {r['events_per_s']:13,.0f} {r['cpu_ns_per_event']:13,.0f}")
    return lines
