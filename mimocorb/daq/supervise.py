"""What the run control does when a worker ends while the run goes on.

Restart policy
    A function's entry in the setup file may say ``restart: {max: 3, within: 60}``
    (:class:`~mimocorb.daq.setup_functions.RestartPolicy`). When one of its workers fails
    -- a non-zero exit code, or killed by a signal -- while the run goes on, a new process
    of the same worker (same name and index, same setup dicts: it joins the same reader
    groups and writes as the same writer) is started at once, at most ``max`` times within
    any ``within`` seconds; beyond that the failure ends the run as without a policy. A
    worker that returned (exit code 0) is not restarted, and nothing is restarted once the
    run is ending (the run asked its workers to finish). Each restart is told to the
    operator and the run log, and listed in ``summary.json`` (``restarts`` per worker).

    Nothing published meanwhile is lost: the ring orphans a reader group whose last
    member died (what is published until a member joins again counts as lost for it), so
    the run control itself stays a member of every reader group of such a function, one
    that never takes an event (:class:`GroupKeepers`). The group then waits for the new
    process and holds the writers back meanwhile, as a slow reader would. The run control
    leaves the groups when the function has ended for good, and at the end of the run.

    What the failed process itself held in the buffers counts as lost as for any dead
    process (a dead reader's events are lost for its group, a dead writer's claimed slot
    is abandoned); a worker that must lose nothing has to fail at a point where it holds
    nothing, or, like ``mimocorb.net.receive``, keep its own journal.

Retired reader groups
    A consuming function whose processes have all ended (returned early, or failed
    without a restart) has its reader groups *retired* (:func:`retire_ended_consumers`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable, Sequence

from mimocorb.daq.processes import Worker

logger = logging.getLogger(__name__)


class GroupKeepers:
    """The run control's own members of the reader groups of functions with a restart policy
    (see the module notes): registered, never taking an event, so a group is not orphaned
    between a worker's failure and its new process.

    Made in the run control's process; a forked worker inherits the objects but never closes
    them (multiprocessing ends a forked child with ``os._exit``), so the registrations stay
    the run control's."""

    def __init__(self) -> None:
        self.readers: dict[str, list[Any]] = {}  # function key -> its keepers

    def open(self, workers: Sequence[Worker]) -> None:
        from mimocorb.mimo_buffer import Reader

        for w in workers:
            if w.spec.restart is None or w.spec.key in self.readers:
                continue
            keep = self.readers.setdefault(w.spec.key, [])
            for b, setup in w.group_setups.items():
                try:
                    keep.append(Reader(setup))
                except Exception as exc:  # noqa: BLE001 - e.g. the process table is full: no keeper
                    logger.warning(
                        "cannot keep reader group %d of %s open for %s's restarts: %s", setup["group"], b, w.name, exc
                    )

    def release(self, key: str) -> None:
        """Leave the groups of function ``key`` (it has ended for good)."""
        for r in self.readers.pop(key, []):
            r.close()

    def close(self) -> None:
        for key in list(self.readers):
            self.release(key)


class Restarts:
    """Applies the functions' restart policies (see the module notes).

    Parameters
    ----------
    headless : bool
        Whether the run is headless (a new process gets the same environment).
    announce : callable
        ``announce(text, level)``: tell the operator and the run log.
    t_start : callable
        The monotonic time the run started (``restarts[].at_s`` counts from there).
    """

    def __init__(self, headless: bool, announce: Callable[..., None], t_start: Callable[[], float]):
        self.headless = headless
        self.announce = announce
        self.t_start = t_start

    def try_restart(self, w: Worker, cause: str, held: str = "") -> bool:
        """Start ``w`` again if its function's policy allows it now; False: it stays failed.

        ``cause``: how it ended (``exit code 3``); ``held``: what it held in the buffers when
        last seen (`` (held 1 event of RB_1 group 0)``; told, not recorded: it may be stale)."""
        policy = w.spec.restart
        if policy is None:
            return False
        now = time.monotonic()
        recent = [r for r in w.restarts if now - r["_t"] < policy.within]
        if len(recent) >= policy.max:
            self.announce(
                f"worker {w.name} failed ({cause}) after {len(recent)} restart{'s' if len(recent) != 1 else ''} "
                f"within {policy.within:g} s (restart policy: at most {policy.max}): not started again"
            )
            return False
        pid = w.process.pid
        w.restarts.append({"pid": pid, "cause": cause, "at_s": round(now - self.t_start(), 3), "_t": now})
        try:
            w.respawn(self.headless)
        except Exception as exc:  # noqa: BLE001 - could not fork: a failure as without a policy
            self.announce(f"worker {w.name} failed ({cause}) and could not be started again: {exc}")
            w.restarts.pop()
            return False
        n = len(recent) + 1
        self.announce(
            f"worker {w.name} (pid {pid}) failed ({cause}{held and ', when last seen' + held}): "
            f"started again as pid {w.process.pid} "
            f"(restart {n} of at most {policy.max} within {policy.within:g} s)"
        )
        return True


def retire_ended_consumers(
    workers: Sequence[Worker],
    buffers: dict[str, Any],
    retired: dict[tuple[str, int], str],
    announce: Callable[[str], None],
    keepers: GroupKeepers,
) -> None:
    """A consuming function whose processes have all ended (returned, or failed) stops holding back
    its buffers' writers: its reader groups are retired (what they miss counts as lost); the run
    control leaves them first (``keepers``).

    ``retired`` maps (buffer, group) to the function key; updated here."""
    functions: dict[str, list[Worker]] = {}
    for w in workers:
        functions.setdefault(w.spec.key, []).append(w)
    for procs in functions.values():
        first = procs[0]
        if any(w.process.exitcode is None for w in procs):
            continue
        keepers.release(first.spec.key)
        for b, g in first.groups.items():
            if (b, g) in retired:
                continue
            buf = buffers[b]
            buf.stats()  # reap first: what a dead member held counts as lost to a dead reader
            buf.retire_group(g)
            retired[(b, g)] = first.spec.key
            announce(
                f"{first.spec.fkt_name} ({first.spec.key}) has ended while the run goes on: its reader group "
                f"{g} of {b} no longer holds back the writers; what it left and what comes from now on "
                f"counts as lost for it"
            )


def exit_cause(code: int) -> str:
    """``exit code 3`` or ``killed by signal 9``."""
    return f"exit code {code}" if code > 0 else f"killed by signal {-code}"


__all__ = ["GroupKeepers", "Restarts", "retire_ended_consumers", "exit_cause"]
