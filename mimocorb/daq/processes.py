"""The worker processes of a run as the run control sees them: how they are made and
started, the handle of each process, how it ended, and what it held in the ring buffers
when it had to be ended (for the summary). How they are ended is in
:mod:`mimocorb.daq.shutdown`; what is done when one fails while the run goes on (restart
policy, retired reader groups) in :mod:`mimocorb.daq.supervise`; what runs inside them in
:mod:`mimocorb.daq.worker`.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Optional, Sequence

from mimocorb.daq.setup_file import DAQSetup, FunctionSpec
from mimocorb.daq.worker import EXIT_TERMINATED, HEADLESS_ENV, WorkerInfo, worker_main

logger = logging.getLogger(__name__)

#: How the run control ended a worker (``Worker.ended_by``).
ASKED, TIMED_OUT, KILLED = "asked to finish", "timed out", "killed"


@dataclass
class Worker:
    """One worker process of the run.

    ``groups`` maps each buffer the function reads to its reader group (shared by the
    function's processes). ``ended_by`` says how the run control had to end it, ``held``
    what it held in the buffers then (``[{"buffer", "role", "group", "events"}]``).
    ``restarts`` lists the processes of this worker that failed and were replaced by a new
    one (``[{"pid", "cause", "at_s", "error"}]``, :meth:`respawn`); ``process`` is the latest.
    """

    name: str
    spec: FunctionSpec
    process: Any
    reads: list[str]
    writes: list[str]
    observes: list[str]
    groups: dict[str, int] = field(default_factory=dict)
    group_setups: dict[str, dict] = field(default_factory=dict, repr=False)  # buffer -> reader group setup dict
    joined: bool = False
    noticed: bool = False
    ended_by: str = ""
    late: str = ""  # why it was asked to finish: "within 10 s after its input ended", ...
    held: list[dict] = field(default_factory=list)
    error: Optional[str] = None
    restarts: list[dict] = field(default_factory=list)
    new_process: Optional[Callable[[], Any]] = field(default=None, repr=False)

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

    @property
    def terminated(self) -> bool:
        """True if the run control had to end it (timed out, or killed)."""
        return self.ended_by in (TIMED_OUT, KILLED)

    def summary(self, traceback_text: Optional[str], tracebacks: dict[Optional[int], str]) -> dict[str, Any]:
        """This worker in ``summary.json``; ``tracebacks`` (pid -> text) names what replaced processes reported."""
        restarted = []
        for r in self.restarts:
            tb = (tracebacks.get(r["pid"]) or "").strip()
            restarted.append(
                {**{k: r[k] for k in ("pid", "cause", "at_s")}, "error": tb.splitlines()[-1] if tb else None}
            )
        return {
            "name": self.name,
            "function": self.spec.fkt_name,
            "pid": self.process.pid,
            "exitcode": self.process.exitcode,
            "failed": self.failed,
            "ended_by": self.ended_by or None,
            "terminated": self.terminated,
            "held": self.held,
            "error": self.error,
            "traceback": traceback_text,
            "restarts": len(self.restarts),
            "restarted": restarted,
        }

    def respawn(self, headless: bool) -> None:
        """Replace the ended process by a new one of the same worker (name, index, setup dicts,
        config: the same reader groups and writers) and start it."""
        if self.new_process is None:
            raise RuntimeError(f"worker {self.name} cannot be started again (made without a process factory)")
        old = self.process
        self.process = self.new_process()
        self.noticed = self.joined = False
        with _starting(headless):
            self.process.start()
        old.close()  # its sentinel pipe; pid and exit code are in ``restarts``
        logger.info("started worker %s again (pid %d)", self.name, self.process.pid)

    def judge(self, traceback_text: Optional[str]) -> None:
        """Set ``error`` from how the process ended (call once it has ended)."""
        code = self.process.exitcode if self.started else 0
        held = describe_held(self.held)
        if traceback_text is not None:
            self.error = traceback_text.strip().splitlines()[-1] if traceback_text.strip() else "failed"
        elif self.ended_by == KILLED:
            self.error = f"did not end {self.late or 'when asked'}, ignored the request to finish: killed{held}"
        elif self.ended_by == TIMED_OUT:
            self.error = f"did not end {self.late}: asked to finish (SIGTERM){held}"
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


def make_workers(
    ctx: Any, setup: DAQSetup, buffers: dict[str, Any], prefix: str, log_queue: Any, log_level: int
) -> list[Worker]:
    """One (not yet started) process per worker of each function, with its setup dicts and config.

    The processes of one function share its setup dicts, so they share its reader groups;
    each gets its :class:`~mimocorb.daq.worker.WorkerInfo` (name, index, count). A worker is
    named after its function (``fkt_name``, with ``.<key>`` if several functions use that
    name), with ``-<index>`` when the function has several processes."""
    workers = []
    search = [str(setup.directory)]
    shared = {f.fkt_name for f in setup.functions if [g.fkt_name for g in setup.functions].count(f.fkt_name) > 1}
    for f in setup.functions:
        base = f"{f.fkt_name}.{f.key}" if f.fkt_name in shared else f.fkt_name  # worker names are unique
        reads, writes, observes = f.buffers("read"), f.buffers("write"), f.buffers("observe")
        source_list = [buffers[b].new_reader_group() for b in reads] or None
        sink_list = [buffers[b].new_writer() for b in writes] or None
        observe_list = [buffers[b].new_observer() for b in observes] or None
        groups = {b: d["group"] for b, d in zip(reads, source_list or [])}
        config = dict(f.config)
        config["directory_prefix"] = prefix
        for i in range(f.num_process):
            name = base if f.num_process == 1 else f"{base}-{i + 1}"
            info = WorkerInfo(name, f.fkt_name, i + 1, f.num_process, str(setup.path))
            args = (
                info,
                f.module,
                search,
                source_list,
                sink_list,
                observe_list,
                config,
                dict(f.rb_assign),
                log_queue,
                log_level,
            )
            factory = functools.partial(ctx.Process, target=worker_main, name=name, args=args)
            workers.append(
                Worker(
                    name,
                    f,
                    factory(),
                    reads,
                    writes,
                    observes,
                    groups,
                    dict(zip(reads, source_list or [])),
                    new_process=factory,
                )
            )
    return workers


@contextmanager
def _starting(headless: bool) -> Iterator[None]:
    """While worker processes are started: SIGINT and SIGTERM blocked (each worker gets them only
    once it has set its own handlers, :func:`~mimocorb.daq.worker.worker_main`), and for a headless
    run :data:`~mimocorb.daq.worker.HEADLESS_ENV` set -- the one channel to the workers, inherited
    by fork and spawn alike; restored afterwards."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    env_before = os.environ.get(HEADLESS_ENV)
    if headless:
        os.environ[HEADLESS_ENV] = "1"
    try:
        yield
    finally:
        if env_before is None:
            os.environ.pop(HEADLESS_ENV, None)
        else:
            os.environ[HEADLESS_ENV] = env_before
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})


def start_workers(workers: Sequence[Worker], order: list[str], headless: bool) -> None:
    """Start the workers: consumers of the last buffers first, the sources last (see :func:`_starting`)."""
    pos = {b: i for i, b in enumerate(order)}

    def rank(w: Worker) -> int:
        return max((pos[b] for b in w.reads + w.observes), default=-1)

    with _starting(headless):
        for w in sorted(workers, key=rank, reverse=True):
            w.process.start()
            logger.info("started worker %s (pid %d)", w.name, w.process.pid)


__all__ = ["Worker", "make_workers", "start_workers", "describe_held", "ASKED", "TIMED_OUT", "KILLED"]
