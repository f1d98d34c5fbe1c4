"""The statistics of a ring buffer, read from a snapshot of the compiled core's counters.

:meth:`mimocorb.mimo_buffer.NewBuffer.stats` and ``buffer_status()`` take one snapshot
of the segment (:meth:`mimocorb._ringbuf.Segment.snapshot`) and hand it here. What a
snapshot holds, and the identities it keeps, are written down in ``src/ringbuf_shm.h``;
this module only names and adds up its counters.

Accounting per reader group: every sequence a writer claimed since the group was added
ends up, for that group, consumed by a member, lost (by cause), a claim given back
unfilled (``voided``, skipped, never an event) or still pending:
``consumed + lost_total + voided + pending == claimed - first_start``.
"""

from __future__ import annotations

from ._ringbuf import (
    GROUP_ACTIVE,
    GROUP_ORPHANED,
    GROUP_STARTING,
    GROUP_STATE_NAMES,
    ROLE_READER,
    ROLE_WRITER,
    STATE_NAMES,
    STATE_SHUTDOWN,
)

#: Group states that hold back the writers.
GATING = (GROUP_ACTIVE, GROUP_STARTING)


def filled(snap: dict, number_of_slots: int) -> int:
    """Slots published (or claimed) and not yet released by every gating group."""
    w = snap["write_claim"]
    active = [g["release"] for g in snap["groups"] if g["state"] in GATING]
    if not active:
        return 0
    return max(0, min(number_of_slots, w - min(active)))


def pending_summary(snap: dict) -> str:
    """What keeps a buffer from being drained: events left per live group, writers holding slots."""
    w = snap["write_claim"]
    parts = [
        f"group {i}: {w - g['release']} left"
        for i, g in enumerate(snap["groups"])
        if g["state"] in GATING and g["members_attached"] and g["release"] < w
    ]
    writers = [p["pid"] for p in snap["procs"] if p["role"] == ROLE_WRITER and p["held_n"]]
    if writers:
        parts.append(f"writers holding unpublished slots: pids {writers}")
    return ", ".join(parts) or "none"


def _group_stats(i: int, g: dict, snap: dict, over: bool) -> dict:
    """One reader group's counters; events it can no longer get count as lost ``orphaned``."""
    left = max(0, snap["write_claim"] - g["release"])
    nobody = g["state"] == GROUP_ORPHANED or (over and g["members_attached"] == 0)
    lost = {
        "dead_reader": g["lost_dead_reader"],
        "orphaned": g["lost_orphaned"] + (left if nobody else 0),
        "abandoned_by_writer": g["lost_abandoned"],
    }
    released = g["release"] - g["first_start"]
    return {
        "group": i,
        "state": GROUP_STATE_NAMES.get(g["state"], "unused"),
        "released": released,
        # every sequence the group passed since it was added: consumed by a
        # member, counted lost, or a claim given back unfilled (skipped, not lost)
        "consumed": released - g["lost_dead_reader"] - g["lost_orphaned"] - g["lost_abandoned"] - g["skipped_void"],
        "consumed_by_attached": sum(p["count"] for p in snap["procs"] if p["role"] == ROLE_READER and p["group"] == i),
        "pending": 0 if nobody else left,
        "voided": g["skipped_void"],  # claims given back unfilled that it passed
        "members_alive": g["members_attached"],
        "members_ever": g["members_ever"],
        "lost": lost,
        "lost_total": sum(lost.values()),
    }


def buffer_stats(snap: dict, name: str, number_of_slots: int, rate: float) -> dict:
    """The dict :meth:`~mimocorb.mimo_buffer.NewBuffer.stats` returns (see its docstring and
    ``docs/buffer-api.md``), from one snapshot and the rate the buffer measured."""
    over = snap["state"] >= STATE_SHUTDOWN  # nothing left in the ring is delivered any more
    groups = [_group_stats(i, g, snap, over) for i, g in enumerate(snap["groups"])]
    procs = [
        {
            "pid": p["pid"],
            "role": "writer" if p["role"] == ROLE_WRITER else "reader",
            "group": p["group"] if p["role"] == ROLE_READER else None,
            "holds": p["held_n"],
        }
        for p in snap["procs"]
        if p["role"] in (ROLE_WRITER, ROLE_READER)
    ]
    return {
        "name": name,
        "state": STATE_NAMES.get(snap["state"], "?"),
        "paused": snap["paused"],
        "published": snap["published"],
        "claimed": snap["write_claim"],
        "abandoned_by_writers": snap["abandoned"],
        # claims given back unfilled by writers stopped while waiting (not events, never lost)
        "voided": snap["void"],
        "filled": filled(snap, number_of_slots),
        "slots": number_of_slots,
        "lost": sum(g["lost_total"] for g in groups),
        "rate": rate,
        "deadtime_sum": snap["deadtime_sum"],
        "deadtime": snap["deadtime_sum"] / snap["published"] if snap["published"] else 0.0,
        "groups": groups,
        "processes": procs,
        "writers_alive": sum(1 for p in procs if p["role"] == "writer"),
        "readers_alive": sum(1 for p in procs if p["role"] == "reader"),
        "reaped": {"readers": snap["reaped_readers"], "writers": snap["reaped_writers"]},
    }


__all__ = ["GATING", "buffer_stats", "filled", "pending_summary"]
