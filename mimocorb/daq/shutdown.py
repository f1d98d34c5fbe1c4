"""The end of a run: its buffers in data-flow order, each a stage with one deadline.

Every wait is bounded and runs for all the processes of a stage at once, never one
process after the other. A stage (:meth:`StagedEnd.run`):

1. the buffer's writers claim no new slot (an event limit at the current count), and
   those holding a claimed slot -- a source blocked on a full buffer -- publish it, so
   nothing a source produced and claimed is given back unfilled;
2. ``shutdown()`` delivers what was published to every reader group with a live member;
3. the processes whose inputs have all ended get until the stage's deadline (at least
   :data:`REACTION_TIME`) to end (:func:`end_workers`); every late one is then asked to
   finish at the same moment (SIGTERM, which a worker turns into ``SystemExit``, see
   :mod:`mimocorb.daq.worker`), all get one common grace period, and those still there
   are killed (SIGKILL). Before each signal what the process holds in the buffers is
   recorded, so the summary can name it.

A second Ctrl-C (``hurried()``) cuts the waits still running short; the reaction time
and the grace after SIGTERM are not cut, since they are what a worker needs to close
its files.
"""

from __future__ import annotations

import logging
import multiprocessing.connection
import time
from typing import Any, Callable, Sequence

from mimocorb.daq.processes import ASKED, KILLED, TIMED_OUT, Worker, describe_held
from mimocorb.daq.status import BufferWatch

logger = logging.getLogger(__name__)

#: Seconds a worker has to finish after SIGTERM before it is killed.
TERM_GRACE = 3.0
#: After a buffer is shut down, its workers get at least this long to end (a blocked call
#: raises SystemExit at once); after a second Ctrl-C it is the bound of every stage.
REACTION_TIME = 1.0
_POLL = 0.1


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
    :data:`~mimocorb.daq.processes.ASKED` or ``TIMED_OUT`` before SIGTERM, ``KILLED``
    before SIGKILL). The grace after SIGTERM is not cut short.
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


class StagedEnd:
    """Ends a run's buffers and workers (see the module notes).

    Parameters
    ----------
    order : list of str
        Buffer names in data-flow order.
    workers : list of Worker
        Every worker of the run.
    watch : BufferWatch
        The run's buffers and their statistics.
    timeout : float
        Bound of each stage.
    hurried : callable
        True once the operator asked again (second Ctrl-C): the waits are cut short.
    limit_claims : callable
        ``limit_claims(buffer, n)``: no slot past the n-th may be claimed in ``buffer``.
    announce : callable
        ``announce(text)``: tell the operator and the run log.
    """

    def __init__(
        self,
        order: list[str],
        workers: list[Worker],
        watch: BufferWatch,
        timeout: float,
        hurried: Callable[[], bool],
        limit_claims: Callable[[str, int], None],
        announce: Callable[[str], None],
    ):
        self.order = order
        self.workers = workers
        self.watch = watch
        self.timeout = timeout
        self.hurried = hurried
        self.limit_claims = limit_claims
        self.announce = announce

    def run(self) -> None:
        shut: set[str] = set()
        for name in self.order:
            if name not in self.watch.buffers:
                continue
            deadline = time.monotonic() + (REACTION_TIME if self.hurried() else self.timeout)
            self._shut_down(name, deadline)
            shut.add(name)
            due = [w for w in self.workers if not w.joined and self._inputs_ended(w, shut)]
            react = time.monotonic() + REACTION_TIME
            end_workers(
                due,
                max(deadline, react),
                lambda react=react: self.hurried() and time.monotonic() >= react,
                self._on_signal,
            )
        # workers without buffers never see the end of the run: SIGTERM is their end-of-run signal
        end_workers([w for w in self.workers if not w.joined], time.monotonic(), self.hurried, self._on_signal)

    @staticmethod
    def _inputs_ended(w: Worker, shut: set[str]) -> bool:
        inputs = w.reads + w.observes
        if inputs:
            return set(inputs) <= shut
        return bool(w.writes) and set(w.writes) <= shut  # a source: when what it writes has ended

    def _shut_down(self, name: str, deadline: float) -> None:
        buf = self.watch.buffers[name]
        logger.info("shutting down %s", name)
        try:
            claimed = buf.stats().get("claimed", 0)
            if claimed:  # no new claims; a writer waiting for space with a claimed slot still publishes it
                self.limit_claims(name, claimed)
                while time.monotonic() < deadline and not self.hurried() and self._writers_hold(name):
                    time.sleep(0.02)
            buf.shutdown(timeout=max(0.0, deadline - time.monotonic()), cancel=self.hurried)
        except Exception as exc:  # noqa: BLE001 - go on with the others
            logger.error("shutdown of %s failed: %s", name, exc)

    def _writers_hold(self, name: str) -> bool:
        stats = self.watch.buffers[name].stats()
        return any(p["holds"] for p in stats.get("processes", ()) if p["role"] == "writer")

    def _on_signal(self, w: Worker, how: str) -> None:
        """Just before a late worker gets SIGTERM or SIGKILL: record what it holds, tell the operator."""
        w.ended_by = how
        w.held = self.watch.holdings(w.process.pid)
        if how == TIMED_OUT:
            w.late = (
                "before the waits were cut short (second Ctrl-C)"
                if self.hurried()
                else f"within {self.timeout:g} s after its input ended"
            )
            self.announce(f"worker {w.name} did not end {w.late}: asking it to finish (SIGTERM){describe_held(w.held)}")
        elif how == KILLED:
            self.announce(f"worker {w.name} ignored the request to finish: killing it{describe_held(w.held)}")
        else:
            logger.info("asking worker %s (it uses no buffer) to finish", w.name)


__all__ = ["StagedEnd", "end_workers", "wait_ended", "TERM_GRACE", "REACTION_TIME"]
