"""Run a whole DAQ from a setup file: buffers, worker processes, run control, shutdown.

:class:`RunControl` (1.x: :class:`mimocorb.buffer_control.run_mimoDAQ`) validates the setup file, creates
the run folder and the buffers, starts one process per worker (consumers before the
sources), shows a live status and ends the run when the run time or event count is
reached, the sources are exhausted, a worker fails, or on Ctrl-C, SIGTERM or the
operator's command.

The end of a run goes buffer by buffer in data-flow order, each a stage with one
deadline (``shutdown_timeout``) shared by everything that waits in it:

1. the buffer's writers claim no new slot (an event limit at the current count), and
   those that claimed one -- a source blocked on a full buffer -- publish it;
2. ``shutdown()`` delivers what was published to every reader group with a live member;
3. the processes whose inputs have all ended are waited for together; late ones are asked
   to finish (SIGTERM), then killed (:func:`~mimocorb.daq.processes.end_workers`).

A second Ctrl-C (or SIGTERM) cuts the waits still running short; the processes still
get their grace period after SIGTERM to close their files. A worker that had to be
asked to finish or killed counts as failed (exit code 1) and the summary names what it
held. Whatever ends the run -- also Ctrl-C during the set-up -- the run folder gets its
``summary.json``.

While the run goes on, a consuming function whose processes have all ended (returned
early, or failed) has its reader groups *retired*: they stop holding back the writers,
and what they left unconsumed, and what is published afterwards, counts as lost for
them (cause ``orphaned``). The run says so (a message, the run log, ``summary.json``).
A failed consumer's groups are retired as well, or its source would block on a full
buffer until the run's end.

Restart policy: a function's entry in the setup file may say ``restart: {max: 3, within:
60}``; a worker of it that fails (non-zero exit code, killed by a signal) while the run
goes on is started again -- same name, same reader groups and writers -- at most ``max``
times within ``within`` seconds, and only beyond that is it a failure as above. Never
when the run asked it to finish. The run says so (a message, the run log,
``summary.json``: ``restarts`` and ``restarted`` per worker). See
:mod:`mimocorb.daq.supervise`.

Headless mode reaches the workers through one channel: a run with ``headless=True``
(``--headless``) starts its workers with the environment variable ``MIMOCORB_HEADLESS=1``
(:data:`mimocorb.daq.worker.HEADLESS_ENV`); displays read it (and draw off screen also
where there is no ``$DISPLAY``, :func:`mimocorb.gui.screen.headless`). The run control
itself then reads no keys from the terminal.

The run control methods (:meth:`RunControl.pause`, :meth:`~RunControl.resume`,
:meth:`~RunControl.stop`, :meth:`~RunControl.status`) are thread-safe, so a control
window in the main process can drive a run that :meth:`~RunControl.run` executes.
"""

from __future__ import annotations

import logging
import math
import multiprocessing
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Optional

from mimocorb.daq.console import KEY_HELP, Console, KeyboardControl
from mimocorb.daq.links import collect_stats
from mimocorb.daq.processes import Worker, describe_held, make_workers, start_workers
from mimocorb.daq.run_folder import RunFolder
from mimocorb.daq.run_log import RunLog
from mimocorb.daq.setup_file import SetupFileError, load_setup, output_directory_problem
from mimocorb.daq.shutdown import StagedEnd
from mimocorb.daq.status import (
    BufferSnapshot,
    BufferWatch,
    RunStatus,
    StatsRecorder,
    WorkerState,
    format_status,
    format_summary,
    run_summary,
)
from mimocorb.daq.supervise import GroupKeepers, Restarts, exit_cause, retire_ended_consumers

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.1


class RunControl:
    """A DAQ run from a setup file.

    Parameters
    ----------
    setup_file : str or Path
        The setup YAML file (1.x format); validated here.
    verbose : int
        0: summary only, 1: status too, 2: also worker output and the layout.
    debug : bool
        Debug-level logging in the run log.
    runtime, runevents : optional
        Override the setup's run time (s) and event count (0: no limit).
    output_directory : optional
        Where the run folder goes (default: the setup's ``output_directory``).
    headless : bool
        No keyboard control, and the workers' displays draw off screen (the environment
        variable ``MIMOCORB_HEADLESS``, see the module notes).
    start_method : str, optional
        ``"fork"`` (default on Linux) or ``"spawn"``.
    console : Console, optional
        Where status and messages go (default: stdout).
    status_interval : float
        Seconds between status lines and statistics rows.
    shutdown_timeout : float
        Bound of each stage of the end of the run (one per buffer, see the module notes).

    Raises
    ------
    SetupFileError
        If the setup file or an option overriding it is invalid.
    KeyboardInterrupt
        Ctrl-C while the setup file is checked (nothing exists yet).
    """

    def __init__(
        self,
        setup_file: str | Path,
        verbose: int = 2,
        debug: bool = False,
        *,
        runtime: Optional[float] = None,
        runevents: Optional[int] = None,
        output_directory: str | Path | None = None,
        headless: bool = False,
        start_method: Optional[str] = None,
        console: Optional[Console] = None,
        status_interval: float = 1.0,
        shutdown_timeout: float = 10.0,
    ):
        self.setup_file = Path(setup_file)
        self.verbose = verbose
        self.debug = debug
        self.setup_spec = load_setup(self.setup_file)
        self.runtime = float(runtime if runtime is not None else self.setup_spec.runtime)
        self.runevents = int(runevents if runevents is not None else self.setup_spec.runevents)
        if not math.isfinite(self.runtime) or self.runtime < 0:
            raise SetupFileError([f"runtime: expected a finite number of seconds >= 0, got {self.runtime}"])
        if output_directory is not None:
            problem = output_directory_problem(Path(output_directory))
            if problem:
                raise SetupFileError([f"output directory {output_directory}: {problem}"])
        self.output_directory = (
            Path(output_directory) if output_directory is not None else self.setup_spec.output_directory
        )
        self.headless = headless
        self.ctx = multiprocessing.get_context(start_method or ("fork" if sys.platform == "linux" else "spawn"))
        self.console = console if console is not None else Console(verbose=verbose)
        self.status_interval = status_interval
        self.shutdown_timeout = shutdown_timeout

        self.state = "init"
        self.stop_reason = ""
        self.exit_code: Optional[int] = None
        self.summary: Optional[dict] = None
        self.run_folder: Optional[RunFolder] = None
        self.buffers: dict[str, Any] = {}
        self.ringbuffers = self.buffers  # 1.x name
        self.workers: list[Worker] = []
        self.order: list[str] = self.setup_spec.flow_order()
        self.failures: dict[str, str] = {}
        self.files: list[dict] = []  # what the exporters wrote: {path, worker, buffer, events}
        self._tracebacks: dict[Optional[int], str] = {}  # pid -> what it reported when it failed
        self._restarts = Restarts(headless, self._announce, lambda: self._t_start)
        self._keepers = GroupKeepers()

        self._lock = threading.RLock()
        self._stop_requested = False
        self._hurry = False
        self._setup_failed = False
        self._run_log: Optional[RunLog] = None
        self._stats: Optional[StatsRecorder] = None
        self._watch = BufferWatch(self.buffers, self.order)
        self._status = RunStatus("init", 0.0, 0.0)
        self._t_start = 0.0
        self._t_stop: Optional[float] = None
        self._wall_start = 0.0
        self._paused_total = 0.0
        self._pause_start: Optional[float] = None
        self._claim_limits: dict[str, int] = {}  # buffer -> the event limit the run control set
        self._retired: dict[tuple[str, int], str] = {}  # (buffer, group) -> the function that ended
        self._shut_down = False

    # ------------------------------------------------------------------ set-up
    @property
    def source_buffers(self) -> list[str]:
        """Buffers written by the sources (functions that read nothing): paused, counted for ``runevents``."""
        names = [
            b
            for w in self.setup_spec.functions
            if not w.buffers("read") and not w.buffers("observe")
            for b in w.buffers("write")
        ]
        out = [b for b in self.order if b in names]
        return out or self.order[:1]

    def setup(self) -> None:
        """Create the run folder, the buffers and the (not yet started) worker processes.

        If anything goes wrong here -- also Ctrl-C -- what was made is released and the
        run folder gets its ``summary.json`` before the exception is raised."""
        if self.state != "init":
            raise RuntimeError(f"setup() was already called (state {self.state!r})")
        try:
            self._setup()
        except BaseException as exc:
            interrupted = isinstance(exc, KeyboardInterrupt)
            self._setup_failed = not interrupted
            self.stop("interrupted (Ctrl-C) during set-up" if interrupted else f"set-up failed: {exc}")
            self._shutdown()
            raise

    def _setup(self) -> None:
        from mimocorb.mimo_buffer import NewBuffer

        s = self.setup_spec
        self._wall_start = time.time()
        self.run_folder = RunFolder.create(self.output_directory, s.name, self._wall_start)
        self.run_folder.copy_inputs([s.path, *s.config_files()])
        self._run_log = RunLog(
            self.ctx,
            self.run_folder.log_file,
            self.console.message,
            self._on_failure,
            verbose=self.verbose,
            debug=self.debug,
            on_output=self._on_output,
        )
        self._run_log.attach_main()
        for w in s.warnings:  # already shown on the terminal when the file was checked
            self._run_log.note(logging.WARNING, w)
        for b in s.buffers:
            self.buffers[b.name] = NewBuffer(b.number_of_slots, b.values_per_slot, b.dtype, name=b.name)
        self.workers.extend(
            make_workers(self.ctx, s, self.buffers, self.run_folder.prefix, self._run_log.queue, self._run_log.level)
        )
        self._keepers.open(self.workers)
        self._stats = StatsRecorder(self.run_folder.stats_file)
        self.state = "ready"
        self._status = RunStatus("ready", 0.0, 0.0, workers=self._worker_states())
        logger.info("set up %d buffers and %d workers from %s", len(self.buffers), len(self.workers), s.path)
        if self.verbose >= 2:
            self.console.message(self.layout(), level=1)

    def layout(self) -> str:
        """Buffers and functions of the setup, as text."""
        lines = [f"run folder {self.run_folder.path if self.run_folder else '-'}", "buffers (data-flow order):"]
        for n in self.order:
            b = self.setup_spec.buffer(n)
            fields = ", ".join(b.field_names) or str(b.dtype)
            lines.append(f"  {n}: {b.number_of_slots} slots x {b.values_per_slot} values [{fields}]")
        lines.append("functions:")
        for f in self.setup_spec.functions:
            assign = ", ".join(f"{k}: {v}" for k, v in f.rb_assign.items())
            lines.append(f"  {f.key} {f.fkt_name} ({f.num_process}x) {{{assign}}}")
        return "\n".join(lines)

    # ------------------------------------------------------------- run control
    def pause(self) -> None:
        """Pause data taking at the source buffers (sources hold or drop events)."""
        with self._lock:
            if self.state != "running":
                return
            for b in self.source_buffers:
                self.buffers[b].pause()
            self._pause_start = time.monotonic()
            self.state = "paused"
        logger.info("run paused")
        self.console.message("paused (r to resume)" if not self.headless else "paused", level=1)

    def resume(self) -> None:
        """Resume data taking after :meth:`pause`."""
        with self._lock:
            if self.state != "paused":
                return
            self._unpause()
            self.state = "running"
        logger.info("run resumed")
        self.console.message("resumed", level=1)

    def _unpause(self) -> None:
        """Clear the pause flag; the pause counts until now, or until the stop if that came first."""
        for b in self.source_buffers:
            if b in self.buffers:
                self.buffers[b].resume()
        if self._pause_start is not None:
            end = self._t_stop if self._t_stop is not None else time.monotonic()
            self._paused_total += max(0.0, end - self._pause_start)
            self._pause_start = None

    def stop(self, reason: str = "stopped by operator") -> None:
        """Ask the run to end; :meth:`run` then shuts everything down in order. Safe from signal handlers."""
        if not self._stop_requested:
            self.stop_reason = reason
            self._t_stop = time.monotonic()  # data taking ends here: the active time stops counting
            self._stop_requested = True

    def end(self, twait: float = 3.0) -> None:
        """1.x: end the run. Stops a running run, or releases a set-up run that never ran."""
        if self.state in ("running", "paused"):
            self.stop("ended by end()")
        elif self.state == "ready":
            self.abort("ended before start")

    def abort(self, reason: str) -> int:
        """End the run from outside :meth:`run` (e.g. Ctrl-C between :meth:`setup` and :meth:`run`);
        returns the exit code. Writes the summary like any other ending."""
        self.stop(reason)
        self._shutdown()
        return self.exit_code if self.exit_code is not None else 1

    def status(self) -> RunStatus:
        """The latest status snapshot (taken by the run loop every ``status_interval``)."""
        with self._lock:
            return self._status

    def active_time(self) -> float:
        """Seconds of data taking, pauses excluded, until the stop was requested."""
        if not self._t_start:
            return 0.0
        end = self._t_stop if self._t_stop is not None else time.monotonic()
        paused = self._paused_total + (max(0.0, end - self._pause_start) if self._pause_start is not None else 0.0)
        return max(0.0, end - self._t_start - paused)

    # -------------------------------------------------------------------- run
    def run(self) -> int:
        """Set up (if not done yet), start the workers, run until the end condition, shut down;
        return the exit code (0: all well). Ctrl-C and SIGTERM are handled from the start."""
        restore = self._install_signal_handlers()
        keys: Optional[KeyboardControl] = None
        try:
            if self.state == "init":
                self.setup()
            if self.state != "ready":
                raise RuntimeError(f"run() needs a set-up run, state is {self.state!r}")
            if not self._stop_requested:  # Ctrl-C during the set-up: nothing is started
                if self.runevents > 0 and len(self.source_buffers) == 1:
                    # exact: the source's writers stop at the count (the loop below checks it too)
                    self._limit_claims(self.source_buffers[0], self.runevents)
                self._start_workers()
                if self.runtime > 0:
                    self.console.message(f"run ends after {self.runtime:g} s", level=1)
                if self.runevents > 0:
                    self.console.message(f"run ends after {self.runevents} events", level=1)
                keys = KeyboardControl(self._on_key)
                if not self.headless and self.setup_spec.kbd_control and keys.start():
                    self.console.message(KEY_HELP, level=1)
                self._loop()
        except KeyboardInterrupt:  # only when the handlers could not be installed (not the main thread)
            self.stop("interrupted (Ctrl-C)")
        except BaseException as exc:
            self.stop(f"run control error: {type(exc).__name__}: {exc}")
            logger.exception("run control error")
            raise
        finally:
            if keys is not None:
                keys.stop()
            try:
                self._shutdown()
            finally:
                restore()
        return self.exit_code if self.exit_code is not None else 1

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

        def handler(signum, frame):
            # only flags here: the main thread may be anywhere (also inside a write to the log)
            if self._stop_requested:
                self._hurry = True  # a second Ctrl-C: the waits still running are cut short
                return
            self.stop("interrupted (Ctrl-C)" if signum == signal.SIGINT else "terminated (SIGTERM)")

        for s in old:
            signal.signal(s, handler)

        def restore() -> None:
            for s, h in old.items():
                signal.signal(s, h)

        return restore

    def _on_key(self, command: str) -> None:
        {"pause": self.pause, "resume": self.resume, "stop": lambda: self.stop("stopped by operator")}[command]()

    def _on_failure(self, worker: str, tb: str, pid: Optional[int] = None) -> None:
        self._tracebacks[pid] = tb
        current = next((w.process.pid for w in self.workers if w.name == worker), None)
        if pid is None or pid == current:  # not the report of a process since replaced (restart policy)
            self.failures[worker] = tb

    def _on_output(self, worker: str, path: str, events: int, buffer: str) -> None:
        self.files.append({"path": path, "worker": worker, "buffer": buffer, "events": int(events)})

    def _announce(self, text: str, level: int = logging.WARNING) -> None:
        """Tell the operator (console) and the run log, once each."""
        self.console.message(text)
        if self._run_log is not None:
            self._run_log.note(level, text)

    def _limit_claims(self, name: str, n: int) -> None:
        """Let the writers of ``name`` claim no slot past the n-th (never raising a lower limit)."""
        n = min(n, self._claim_limits.get(name, n))
        if n >= 1 and n != self._claim_limits.get(name):
            self.buffers[name].set_event_limit(n)
            self._claim_limits[name] = n

    def _start_workers(self) -> None:
        try:
            start_workers(self.workers, self.order, self.headless)
        finally:
            self._run_log.start()  # after the forks: no thread is running while a worker is forked
        self._t_start = time.monotonic()
        with self._lock:
            self.state = "running"
        self.console.message(f"{len(self.workers)} workers started {time.strftime('%Y-%m-%d %H:%M:%S')}", level=1)

    # ----------------------------------------------------------------- status
    def _worker_states(self) -> list[WorkerState]:
        return [
            WorkerState(w.name, w.spec.fkt_name, w.process.pid, w.process.is_alive(), w.process.exitcode)
            for w in self.workers
        ]

    def _check_workers(self) -> None:
        for w in self.workers:
            code = w.process.exitcode
            if code is None or w.noticed:
                continue
            w.noticed = True
            if code == 0:
                logger.info("worker %s ended", w.name)
                continue
            held = describe_held(self._watch.last_held.get(w.process.pid, []))
            # a failure while the run goes on (never one the run asked for: the loop ends at the stop)
            if not self._stop_requested and self._restarts.try_restart(w, exit_cause(code), held):
                continue
            if code > 0:
                self._announce(f"worker {w.name} failed (exit code {code}); traceback in {self.run_folder.log_file}")
            else:
                self._announce(f"worker {w.name} was killed by signal {-code}{held}")
            self.stop(f"worker {w.name} failed")
        retire_ended_consumers(self.workers, self.buffers, self._retired, self._announce, self._keepers)
        sources = [w for w in self.workers if w.is_source]
        if sources and all(w.process.exitcode == 0 for w in sources):
            limit = self.runevents > 0 and len(self.source_buffers) == 1
            if limit and self.buffers[self.source_buffers[0]].stats().get("claimed", 0) >= self.runevents:
                self.stop(f"{self.runevents} events reached")
            else:
                self.stop("source exhausted")

    def _loop(self) -> None:
        next_status = time.monotonic()
        last = {}
        while not self._stop_requested:
            self._check_workers()
            snaps = self._watch.snapshot()
            now = time.monotonic()
            for b in snaps:
                last[b.name] = b
            if self.runevents > 0:
                n = sum(last[b].events for b in self.source_buffers if b in last)
                if n >= self.runevents:
                    self.stop(f"{self.runevents} events reached")
            if self.runtime > 0 and self.active_time() >= self.runtime:
                self.stop(f"run time of {self.runtime:g} s reached")
            if now >= next_status:
                self._publish_status(list(last.values()))
                next_status = now + self.status_interval
            if self._stop_requested:
                break
            time.sleep(POLL_INTERVAL)
        self.console.end_status()
        self.console.message(f"stopping: {self.stop_reason}", level=1)

    def _publish_status(self, snaps: list[BufferSnapshot], show: bool = True) -> None:
        """Status over the last interval: rates from event counts, dead time event-weighted."""
        out = self._watch.rates(snaps, self._t_start)
        with self._lock:
            st = RunStatus(
                self.state,
                time.monotonic() - self._t_start,
                self.active_time(),
                out,
                self._worker_states(),
                self.stop_reason,
                collect_stats(self.run_folder.path) if self.run_folder is not None else {},
            )
            self._status = st
        if show and self.verbose >= 1:
            self.console.status(format_status(st))
        if self._stats is not None:
            self._stats.record(st)

    # --------------------------------------------------------------- shutdown
    def _shutdown(self) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        with self._lock:
            if self._t_stop is None:
                self._t_stop = time.monotonic()
            self._unpause()  # quietly: the sources must see the end of the run
            if self.state != "init":
                self.state = "stopping"
        self._keepers.close()  # no restart from now on: the groups' own members decide their end
        if any(w.started for w in self.workers):
            hurried = lambda: self._hurry  # noqa: E731 - set by a second Ctrl-C
            StagedEnd(
                self.order,
                self.workers,
                self._watch,
                self.shutdown_timeout,
                hurried,
                self._limit_claims,
                self._announce,
            ).run()
        for w in self.workers:
            if not w.held and w.process.exitcode not in (0, None):  # died: what it held when last seen
                w.held = self._watch.last_held.get(w.process.pid, [])
            w.judge(self.failures.get(w.name))
        final = self._watch.snapshot() if self.buffers else []
        self._close_buffers()
        with self._lock:
            self.state = "ended"
        if self._t_start:
            self._publish_status(final)
            self.console.end_status()
        if self._stats is not None:
            self._stats.close()
        if self._run_log is not None:
            self._run_log.stop()
        self.exit_code = 1 if self._setup_failed or any(w.failed for w in self.workers) else 0
        self.summary = self._make_summary()
        if self.run_folder is not None:
            self.run_folder.write_summary(self.summary)
        self.console.message(format_summary(self.summary))
        for w in self.workers:
            if w.started:
                w.process.close()  # its sentinel pipe, now rather than at garbage collection

    def _close_buffers(self) -> None:
        for name, buf in list(self.buffers.items()):
            try:
                buf.close()
            except Exception as exc:  # noqa: BLE001
                logger.error("closing %s failed: %s", name, exc)
        self.buffers.clear()

    def _make_summary(self) -> dict[str, Any]:
        active = self.active_time()
        return run_summary(
            {
                "setup_file": str(self.setup_spec.path),
                "run_folder": str(self.run_folder.path) if self.run_folder else None,
                "start_time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self._wall_start)),
                "run_time_s": round(time.monotonic() - self._t_start if self._t_start else 0.0, 3),
                "active_time_s": round(active, 3),
                "paused_s": round(self._paused_total, 3),
                "stop_reason": self.stop_reason,
                "start_method": self.ctx.get_start_method(),
            },
            active,
            self._watch.totals,
            self.workers,
            self._retired,
            self.failures,
            self.files,
            self.exit_code,
            links=self._status.links,
            tracebacks=self._tracebacks,
        )


__all__ = ["RunControl", "Worker"]
