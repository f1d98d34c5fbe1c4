"""Run a whole DAQ from a setup file: buffers, worker processes, run control, shutdown.

:class:`RunControl` (1.x name :class:`run_mimoDAQ`) validates the setup file, creates
the run folder and the buffers, starts one process per worker (consumers before the
sources), shows a live status and ends the run when the run time or event count is
reached, the sources are exhausted, a worker fails, or on Ctrl-C, SIGTERM or the
operator's command. The buffers are then shut down in data-flow order -- each one's
``shutdown()`` delivers what was published, then its readers' processes are joined
before the next buffer -- so nothing published is lost; every process is joined with a
bounded wait (terminated, then killed if need be) and a summary is written.

The run control methods (:meth:`RunControl.pause`, :meth:`~RunControl.resume`,
:meth:`~RunControl.stop`, :meth:`~RunControl.status`) are thread-safe, so a control
window in the main process can drive a run that :meth:`~RunControl.run` executes.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from mimocorb.daq.console import KEY_HELP, Console, KeyboardControl
from mimocorb.daq.run_folder import RunFolder
from mimocorb.daq.run_log import WORKER_LOGGER, RunLog, flush_worker_streams, report_failure, setup_worker_logging
from mimocorb.daq.setup_file import DAQSetup, FunctionSpec, load_setup
from mimocorb.daq.status import (
    BufferSnapshot,
    BufferTotals,
    RunStatus,
    StatsRecorder,
    WorkerState,
    format_status,
    format_summary,
    read_buffer,
)
from mimocorb.daq.user_code import load_function

logger = logging.getLogger(__name__)

POLL_INTERVAL = 0.1
#: Set in the workers' environment by a headless run: displays draw off screen (PNG snapshots).
HEADLESS_ENV = "MIMOCORB_HEADLESS"


def _worker_main(
    name: str,
    module_path: str,
    fkt_name: str,
    search_paths: list[str],
    source_list,
    sink_list,
    observe_list,
    config_dict: dict,
    rb_info: dict,
    log_queue: Any,
    log_level: int,
) -> None:
    """Entry point of every worker process (fork and spawn)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process drives the orderly shutdown
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    setup_worker_logging(log_queue, name, log_level)
    log = logging.getLogger(WORKER_LOGGER)
    code = 0
    try:
        fn = load_function(Path(module_path), fkt_name, search_paths)
        log.debug("worker %s starts %s", name, fkt_name)
        fn(source_list, sink_list, observe_list, config_dict, **rb_info)
    except SystemExit as exc:  # the buffers end worker loops with SystemExit; sys.exit() ends a source
        if exc.code not in (None, 0):
            code = exc.code if isinstance(exc.code, int) else 1
            report_failure(name, f"SystemExit({exc.code!r})")
    except BaseException:  # noqa: BLE001 - report anything, with its traceback
        report_failure(name, traceback.format_exc())
        code = 1
    finally:
        flush_worker_streams()
    sys.exit(code)


@dataclass
class Worker:
    """One worker process of the run."""

    name: str
    spec: FunctionSpec
    process: Any
    reads: list[str]
    writes: list[str]
    observes: list[str]
    joined: bool = False
    terminated: bool = False
    noticed: bool = False
    error: Optional[str] = None

    @property
    def is_source(self) -> bool:
        return not self.reads and not self.observes and bool(self.writes)

    @property
    def failed(self) -> bool:
        code = self.process.exitcode
        return self.error is not None or (code is not None and code != 0 and not self.terminated)


def flow_order(setup: DAQSetup) -> list[str]:
    """Buffer names in data-flow order (a buffer before every buffer filled from it)."""
    names = [b.name for b in setup.buffers]
    succ: dict[str, set[str]] = {n: set() for n in names}
    for f in setup.functions:
        for r in f.buffers("read"):
            for w in f.buffers("write"):
                if w != r:
                    succ[r].add(w)
    indeg = {n: 0 for n in names}
    for n in names:
        for m in succ[n]:
            indeg[m] += 1
    order: list[str] = []
    ready = [n for n in names if indeg[n] == 0]
    while ready:
        n = ready.pop(0)
        order.append(n)
        for m in names:  # keep setup order among equals
            if m in succ[n]:
                indeg[m] -= 1
                if indeg[m] == 0:
                    ready.append(m)
    order += [n for n in names if n not in order]  # cycles: setup order
    return order


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
        No keyboard control and no GUI.
    start_method : str, optional
        ``"fork"`` (default on Linux) or ``"spawn"``.
    console : Console, optional
        Where status and messages go (default: stdout).
    status_interval : float
        Seconds between status lines and statistics rows.
    shutdown_timeout : float
        Bound for each buffer's shutdown and each process join at the end.

    Raises
    ------
    SetupError
        If the setup file is invalid.
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
        self.order: list[str] = flow_order(self.setup_spec)
        self.failures: dict[str, str] = {}

        self._lock = threading.RLock()
        self._stop_requested = False
        self._hurry = False
        self._run_log: Optional[RunLog] = None
        self._stats: Optional[StatsRecorder] = None
        self._totals = BufferTotals()
        self._status = RunStatus("init", 0.0, 0.0)
        self._t_start = 0.0
        self._wall_start = 0.0
        self._paused_total = 0.0
        self._pause_start: Optional[float] = None
        self._window: dict[str, tuple[int, float, float]] = {}
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
        """Create the run folder, the buffers and the (not yet started) worker processes."""
        if self.state != "init":
            raise RuntimeError(f"setup() was already called (state {self.state!r})")
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
        )
        self._run_log.attach_main()
        for w in s.warnings:
            logger.warning("%s", w)
        try:
            for b in s.buffers:
                self.buffers[b.name] = NewBuffer(b.number_of_slots, b.values_per_slot, b.dtype, name=b.name)
            search = [str(s.directory)]
            for f in s.functions:
                reads, writes, observes = f.buffers("read"), f.buffers("write"), f.buffers("observe")
                source_list = [self.buffers[b].new_reader_group() for b in reads] or None
                sink_list = [self.buffers[b].new_writer() for b in writes] or None
                observe_list = [self.buffers[b].new_observer() for b in observes] or None
                config = dict(f.config)
                config["directory_prefix"] = self.run_folder.prefix
                for i in range(f.num_process):
                    name = f.fkt_name if f.num_process == 1 else f"{f.fkt_name}-{i + 1}"
                    p = self.ctx.Process(
                        target=_worker_main,
                        name=name,
                        args=(
                            name,
                            str(f.module_path),
                            f.fkt_name,
                            search,
                            source_list,
                            sink_list,
                            observe_list,
                            config,
                            dict(f.rb_assign),
                            self._run_log.queue,
                            self._run_log.level,
                        ),
                    )
                    self.workers.append(Worker(name, f, p, reads, writes, observes))
        except BaseException:
            self._close_buffers()
            self._run_log.stop()
            raise
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
            for b in self.source_buffers:
                self.buffers[b].resume()
            if self._pause_start is not None:
                self._paused_total += time.monotonic() - self._pause_start
                self._pause_start = None
            self.state = "running"
        logger.info("run resumed")
        self.console.message("resumed", level=1)

    def stop(self, reason: str = "stopped by operator") -> None:
        """Ask the run to end; :meth:`run` then shuts everything down in order. Safe from signal handlers."""
        if not self._stop_requested:
            self.stop_reason = reason
            self._stop_requested = True

    def end(self, twait: float = 3.0) -> None:
        """1.x: end the run. Stops a running run, or releases a set-up run that never ran."""
        if self.state in ("running", "paused"):
            self.stop("ended by end()")
        elif self.state == "ready":
            self.stop_reason = self.stop_reason or "ended before start"
            self._shutdown()

    def status(self) -> RunStatus:
        """The latest status snapshot (taken by the run loop every ``status_interval``)."""
        with self._lock:
            return self._status

    def active_time(self) -> float:
        """Seconds of data taking so far, pauses excluded."""
        if not self._t_start:
            return 0.0
        now = time.monotonic()
        paused = self._paused_total + (now - self._pause_start if self._pause_start is not None else 0.0)
        return now - self._t_start - paused

    # -------------------------------------------------------------------- run
    def run(self) -> int:
        """Start the workers, run until the end condition, shut down; return the exit code (0: all well)."""
        if self.state == "init":
            self.setup()
        if self.state != "ready":
            raise RuntimeError(f"run() needs a set-up run, state is {self.state!r}")
        restore = self._install_signal_handlers()
        keys = KeyboardControl(self._on_key)
        try:
            if self.runevents > 0 and len(self.source_buffers) == 1:
                # exact: the source's writers stop at the count (the loop below checks it too)
                self.buffers[self.source_buffers[0]].set_event_limit(self.runevents)
            self._start_workers()
            if self.runtime > 0:
                self.console.message(f"run ends after {self.runtime:g} s", level=1)
            if self.runevents > 0:
                self.console.message(f"run ends after {self.runevents} events", level=1)
            if not self.headless and self.setup_spec.kbd_control and keys.start():
                self.console.message(KEY_HELP, level=1)
            self._loop()
        except KeyboardInterrupt:
            self.stop("interrupted (Ctrl-C)")
        except BaseException as exc:
            self.stop(f"run control error: {type(exc).__name__}: {exc}")
            logger.exception("run control error")
            raise
        finally:
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
            if self._stop_requested:
                self._hurry = True  # a second Ctrl-C: shorter waits, still orderly
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

    def _on_failure(self, worker: str, tb: str) -> None:
        self.failures[worker] = tb

    def _start_workers(self) -> None:
        pos = {b: i for i, b in enumerate(self.order)}

        def rank(w: Worker) -> int:  # consumers of the last buffers first, the sources last
            inputs = w.reads + w.observes
            return max((pos[b] for b in inputs), default=-1)

        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})  # children start with them ignored
        env_before = os.environ.get(HEADLESS_ENV)
        if self.headless:  # inherited by fork and spawn alike; restored below
            os.environ[HEADLESS_ENV] = "1"
        try:
            for w in sorted(self.workers, key=rank, reverse=True):
                w.process.start()
                logger.info("started worker %s (pid %d)", w.name, w.process.pid)
        finally:
            if env_before is None:
                os.environ.pop(HEADLESS_ENV, None)
            else:
                os.environ[HEADLESS_ENV] = env_before
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
            self._run_log.start()
        self._t_start = time.monotonic()
        with self._lock:
            self.state = "running"
        self.console.message(f"{len(self.workers)} workers started {time.strftime('%Y-%m-%d %H:%M:%S')}", level=1)

    def _snapshot(self) -> list[BufferSnapshot]:
        snaps = []
        for name in self.order:
            try:
                snaps.append(read_buffer(name, self.buffers[name]))
            except Exception as exc:  # noqa: BLE001 - a status read must never end the run
                logger.debug("status of %s failed: %s", name, exc)
        self._totals.add(snaps)
        return snaps

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
            if code != 0:
                what = f"exit code {code}" if code > 0 else f"signal {-code}"
                self.console.message(f"worker {w.name} failed ({what}); traceback in {self.run_folder.log_file}")
                self.stop(f"worker {w.name} failed")
            else:
                logger.info("worker %s ended", w.name)
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
            snaps = self._snapshot()
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
        out = []
        now = time.monotonic()
        for b in snaps:
            events0, dead0, t0 = self._window.get(b.name, (0, 0.0, self._t_start))
            rate = (b.events - events0) / (now - t0) if now > t0 else 0.0
            dead = (b.deadtime - dead0) / (b.events - events0) if b.events > events0 else 0.0
            self._window[b.name] = (b.events, b.deadtime, now)
            out.append(BufferSnapshot(b.name, b.events, b.filled, b.slots, rate, dead, b.lost))
        with self._lock:
            st = RunStatus(
                self.state,
                time.monotonic() - self._t_start,
                self.active_time(),
                out,
                self._worker_states(),
                self.stop_reason,
            )
            self._status = st
        if show and self.verbose >= 1:
            self.console.status(format_status(st))
        if self._stats is not None:
            self._stats.record(st)

    # --------------------------------------------------------------- shutdown
    def _join(self, w: Worker, timeout: float) -> None:
        p = w.process
        if w.joined:
            return
        if p.pid is None:  # never started
            w.joined = True
            return
        p.join(timeout)
        if p.is_alive():
            logger.warning("worker %s did not end within %.1f s: terminating it", w.name, timeout)
            self.console.message(f"worker {w.name} did not end within {timeout:.1f} s: terminating it")
            w.terminated = True
            p.terminate()
            p.join(2.0)
            if p.is_alive():
                logger.warning("worker %s ignored SIGTERM: killing it", w.name)
                p.kill()
                p.join(2.0)
        w.joined = True

    def _timeout(self) -> float:
        return 1.0 if self._hurry else self.shutdown_timeout

    def _shutdown(self) -> None:
        if self._shut_down:
            return
        self._shut_down = True
        with self._lock:
            if self.state == "paused":
                self.resume()
            self.state = "stopping"
        shut: set[str] = set()
        for name in self.order:
            buf = self.buffers.get(name)
            if buf is None:
                continue
            logger.info("shutting down %s", name)
            try:
                buf.shutdown(timeout=self._timeout())
            except Exception as exc:  # noqa: BLE001 - go on with the others
                logger.error("shutdown of %s failed: %s", name, exc)
            shut.add(name)
            for w in self.workers:
                inputs = w.reads + w.observes
                if (inputs and set(inputs) <= shut) or (not inputs and w.writes and set(w.writes) <= shut):
                    self._join(w, self._timeout())
        for w in self.workers:  # workers without buffers never see the end of the run
            self._join(w, 1.0 if not (w.reads or w.writes or w.observes) else self._timeout())
        self._check_workers_final()
        final = self._snapshot() if self.buffers else []
        self._close_buffers()
        active = self.active_time()
        with self._lock:
            self.state = "ended"
        if self._t_start:
            self._publish_status(final, show=False)
        if self._stats is not None:
            self._stats.close()
        if self._run_log is not None:
            self._run_log.stop()
        self.exit_code = 1 if any(w.failed for w in self.workers) else 0
        self.summary = self._make_summary(active)
        if self.run_folder is not None:
            self.run_folder.write_summary(self.summary)
        self.console.message(format_summary(self.summary))

    def _check_workers_final(self) -> None:
        for w in self.workers:
            tb = self.failures.get(w.name)
            if tb is not None:
                w.error = tb.strip().splitlines()[-1] if tb.strip() else "failed"
            elif w.process.exitcode not in (0, None) and not w.terminated:
                code = w.process.exitcode
                w.error = f"exit code {code}" if code > 0 else f"killed by signal {-code}"

    def _close_buffers(self) -> None:
        for name, buf in list(self.buffers.items()):
            try:
                buf.close()
            except Exception as exc:  # noqa: BLE001
                logger.error("closing %s failed: %s", name, exc)
        self.buffers.clear()

    def _make_summary(self, active: float) -> dict[str, Any]:
        elapsed = time.monotonic() - self._t_start if self._t_start else 0.0
        return {
            "setup_file": str(self.setup_spec.path),
            "run_folder": str(self.run_folder.path) if self.run_folder else None,
            "start_time": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(self._wall_start)),
            "run_time_s": round(elapsed, 3),
            "active_time_s": round(active, 3),
            "paused_s": round(self._paused_total, 3),
            "stop_reason": self.stop_reason,
            "start_method": self.ctx.get_start_method(),
            "buffers": self._totals.summary(active),
            "workers": [
                {
                    "name": w.name,
                    "function": w.spec.fkt_name,
                    "pid": w.process.pid,
                    "exitcode": w.process.exitcode,
                    "failed": w.failed,
                    "terminated": w.terminated,
                    "error": w.error,
                    "traceback": self.failures.get(w.name),
                }
                for w in self.workers
            ],
            "exit_code": self.exit_code,
        }


class run_mimoDAQ(RunControl):
    """mimoCoRB 1.x entry point: ``run_mimoDAQ(setup_file).setup()`` then ``.run()``.

    Parameters
    ----------
    setup_filename : str
        The setup YAML file.
    verbose : int
        As 1.x: 0 quiet, 1 status, 2 status and layout.
    debug : bool
        Debug logging.
    **options
        Any keyword option of :class:`RunControl`.
    """

    def __init__(self, setup_filename: str | Path, verbose: int = 2, debug: bool = False, **options: Any):
        super().__init__(setup_filename, verbose, debug, **options)


__all__ = ["RunControl", "run_mimoDAQ", "flow_order", "Worker"]
