"""The worker processes of a run as the run control sees them, and how they are ended.

At the end of a run every wait is bounded and runs for all the processes of a stage at
once, never one process after the other: :func:`end_workers` waits until the stage's
deadline (or until the operator cuts the wait short), then asks every late process to
finish at the same moment (SIGTERM, which a worker turns into ``SystemExit``, see
:mod:`mimocorb.daq.worker`), gives them one common grace period, and kills
(SIGKILL) those still there. Before each signal the run control records what the
process holds in the ring buffers, so the summary can name it.
"""

from __future__ import annotations

import logging
import multiprocessing.connection
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from mimocorb.daq.setup_file import FunctionSpec
from mimocorb.daq.worker import EXIT_TERMINATED

logger = logging.getLogger(__name__)

#: Seconds a worker has to finish after SIGTERM before it is killed.
TERM_GRACE = 3.0
_POLL = 0.1

#: How the run control ended a worker (``Worker.ended_by``).
ASKED, TIMED_OUT, KILLED = "asked to finish", "timed out", "killed"


@dataclass
class Worker:
    """One worker process of the run.

    ``groups`` maps each buffer the function reads to its reader group (shared by the
    function's processes). ``ended_by`` says how the run control had to end it, ``held``
    what it held in the buffers then (``[{"buffer", "role", "group", "events"}]``).
    """

    name: str
    spec: FunctionSpec
    process: Any
    reads: list[str]
    writes: list[str]
    observes: list[str]
    groups: dict[str, int] = field(default_factory=dict)
    joined: bool = False
    noticed: bool = False
    ended_by: str = ""
    held: list[dict] = field(default_factory=list)
    error: Optional[str] = None

    @property
    def is_source(self) -> bool:
        return not self.reads and not self.observes and bool(self.writes)

    @property
    def uses_buffers(self) -> bool:
        """False for a worker that never sees the end of the run (SIGTERM is its end-of-run signal)."""
        return bool(self.reads or self.writes or self.observes)

    @property
    def started(self) -> bool:
        return self.process.pid is not None

    @property
    def failed(self) -> bool:
        return self.error is not None

    def judge(self, traceback_text: Optional[str], timeout: float) -> None:
        """Set ``error`` from how the process ended (call once it has ended)."""
        code = self.process.exitcode if self.started else 0
        held = describe_held(self.held)
        if traceback_text is not None:
            self.error = traceback_text.strip().splitlines()[-1] if traceback_text.strip() else "failed"
        elif self.ended_by == KILLED:
            self.error = f"did not end within {timeout:g} s, ignored the request to finish: killed{held}"
        elif self.ended_by == TIMED_OUT:
            self.error = f"did not end within {timeout:g} s after its input ended: asked to finish (SIGTERM){held}"
        elif code == EXIT_TERMINATED and self.ended_by == ASKED:
            self.error = None  # a worker without buffers, ended as planned
        elif code not in (0, None):
            self.error = f"exit code {code}" if code > 0 else f"killed by signal {-code}{held}"


def describe_held(held: Sequence[dict]) -> str:
    """`` (held 1 event of RB_1 group 0)`` or ``""``."""
    parts = [
        f"{h['events']} event{'s' if h['events'] != 1 else ''} of {h['buffer']}"
        + (f" group {h['group']}" if h.get("group") is not None else " (writing)")
        for h in held
        if h.get("events")
    ]
    return f" (held {', '.join(parts)})" if parts else ""


def holdings(pid: Optional[int], stats: dict[str, dict]) -> list[dict]:
    """What process ``pid`` holds in each buffer, from the buffers' ``stats()``."""
    out = []
    for name, s in stats.items():
        for p in s.get("processes", ()):
            if p["pid"] == pid and p["holds"]:
                out.append({"buffer": name, "role": p["role"], "group": p["group"], "events": p["holds"]})
    return out


def wait_ended(processes: Sequence[Any], deadline: float, cut: Callable[[], bool] = lambda: False) -> None:
    """Wait until every process has ended, the monotonic ``deadline`` passes or ``cut()`` is true."""
    while True:
        alive = [p for p in processes if p.pid is not None and p.is_alive()]
        left = deadline - time.monotonic()
        if not alive or left <= 0 or cut():
            return
        multiprocessing.connection.wait([p.sentinel for p in alive], timeout=min(_POLL, left))


def end_workers(
    workers: Sequence[Worker],
    deadline: float,
    cut: Callable[[], bool],
    on_signal: Callable[[Worker, str], None],
    grace: float = TERM_GRACE,
) -> None:
    """End ``workers`` together: wait until ``deadline`` (or ``cut()``), then SIGTERM, then SIGKILL.

    ``on_signal(worker, how)`` is called just before a worker is signalled (``how`` is
    :data:`ASKED` or :data:`TIMED_OUT` before SIGTERM, :data:`KILLED` before SIGKILL), so
    the caller can record what it holds and tell the operator. The grace after SIGTERM
    is not cut short: it is the time a worker gets to close its files.
    """
    started = [w for w in workers if w.started and not w.joined]
    wait_ended([w.process for w in started], deadline, cut)
    late = [w for w in started if w.process.is_alive()]
    for w in late:
        on_signal(w, TIMED_OUT if w.uses_buffers else ASKED)
    for w in late:
        w.process.terminate()
    wait_ended([w.process for w in late], time.monotonic() + grace)
    stuck = [w for w in late if w.process.is_alive()]
    for w in stuck:
        on_signal(w, KILLED)
        w.process.kill()
    wait_ended([w.process for w in stuck], time.monotonic() + grace)
    for w in started:
        w.process.join(0.1)
        if w.process.is_alive():  # pragma: no cover - SIGKILL cannot be ignored
            logger.error("worker %s (pid %d) is still there after SIGKILL", w.name, w.process.pid)
        w.joined = True


__all__ = ["Worker", "end_workers", "wait_ended", "holdings", "describe_held", "ASKED", "TIMED_OUT", "KILLED"]
