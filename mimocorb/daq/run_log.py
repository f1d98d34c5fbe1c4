"""The run log: logging and stdout/stderr of every worker process, gathered in the main process.

Each worker sends its log records through a multiprocessing queue (``QueueHandler``);
its ``sys.stdout``/``sys.stderr`` are replaced by streams that log each line. The main
process runs a ``QueueListener`` that writes every record, prefixed by the worker's
name, to ``run.log`` and passes the ones worth showing to the console. A worker that
fails sends a record carrying its traceback, and an exporter one naming the file it
wrote and its number of events; the run control collects both.
"""

from __future__ import annotations

import io
import logging
import logging.handlers
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Optional

logger = logging.getLogger(__name__)

LOG_FORMAT = "%(asctime)s %(worker)-16s %(levelname)-7s %(name)s: %(message)s"
WORKER_LOGGER = "mimocorb.worker"


class _WorkerNameFilter(logging.Filter):
    def __init__(self, worker: str):
        super().__init__()
        self.worker = worker

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "worker"):
            record.worker = self.worker
        return True


class _LineLogger(io.TextIOBase):
    """A text stream that logs each complete line (worker stdout/stderr)."""

    def __init__(self, log: logging.Logger, level: int, name: str):
        self._log = log
        self._level = level
        self._buf = ""
        self._name = name
        self._lock = threading.Lock()

    @property
    def name(self) -> str:  # some code looks at sys.stdout.name
        return self._name

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return False

    def write(self, s: str) -> int:
        with self._lock:
            self._buf += s
            *lines, self._buf = self._buf.replace("\r", "\n").split("\n")
        for line in lines:
            if line.strip():
                self._log.log(self._level, "%s", line.rstrip())
        return len(s)

    def flush(self) -> None:
        with self._lock:
            rest, self._buf = self._buf, ""
        if rest.strip():
            self._log.log(self._level, "%s", rest.rstrip())


def setup_worker_logging(queue: Any, worker: str, level: int = logging.INFO) -> None:
    """In a worker process: send all logging and stdout/stderr to the main process via ``queue``."""
    root = logging.getLogger()
    # handlers inherited through fork write to the parent's files and streams
    for lg in [root] + [v for v in logging.Logger.manager.loggerDict.values() if isinstance(v, logging.Logger)]:
        for h in list(lg.handlers):
            lg.removeHandler(h)
    handler = logging.handlers.QueueHandler(queue)
    handler.addFilter(_WorkerNameFilter(worker))
    root.addHandler(handler)
    root.setLevel(level)
    sys.stdout = _LineLogger(logging.getLogger(f"{WORKER_LOGGER}.stdout"), logging.INFO, "<stdout>")
    sys.stderr = _LineLogger(logging.getLogger(f"{WORKER_LOGGER}.stderr"), logging.WARNING, "<stderr>")


def flush_worker_streams() -> None:
    for s in (sys.stdout, sys.stderr):
        try:
            s.flush()
        except Exception:  # noqa: BLE001 - a broken stream must not hide the real end of the worker
            pass


def report_failure(worker: str, tb: str) -> None:
    """In a worker process: log the traceback of the exception that ended it."""
    logging.getLogger(WORKER_LOGGER).error(
        "worker %s failed:\n%s", worker, tb.rstrip(), extra={"mimocorb_failure": tb, "worker": worker}
    )


def report_output(path: str, events: int, buffer: str) -> None:
    """In a worker process: tell the run control about a file written (for the run summary)."""
    logging.getLogger(WORKER_LOGGER).info(
        "%d events of %s in %s", events, buffer, path, extra={"mimocorb_output": (path, events, buffer)}
    )


class _ConsoleFilter(logging.Filter):
    """What reaches the console: warnings and worse, worker output (at verbose >= 2)."""

    def __init__(self, verbose: int):
        super().__init__()
        self.verbose = verbose

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno >= logging.WARNING:
            return True
        return self.verbose >= 2 and record.name.startswith(WORKER_LOGGER + ".std")


class _ReportCollector(logging.Handler):
    """Passes the failure and output reports of the workers to the run control."""

    def __init__(self, on_failure: Callable[[str, str, int], None], on_output: Optional[Callable[..., None]]):
        super().__init__()
        self.on_failure = on_failure
        self.on_output = on_output

    def emit(self, record: logging.LogRecord) -> None:
        worker = getattr(record, "worker", "?")
        tb = getattr(record, "mimocorb_failure", None)
        if tb is not None:  # with the pid: a report may arrive after the process was replaced
            self.on_failure(worker, tb, record.process)
        out = getattr(record, "mimocorb_output", None)
        if out is not None and self.on_output is not None:
            self.on_output(worker, *out)


class _DefaultWorker(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "worker"):
            record.worker = "main"
        return True


class RunLog:
    """Main-process side: the queue workers log to, ``run.log``, console output, failure reports.

    Parameters
    ----------
    ctx : multiprocessing context
        Context used for the queue (must match the worker processes').
    log_file : Path
        The run log.
    console : callable
        ``console(text)`` shows a line to the operator.
    on_failure : callable
        ``on_failure(worker, traceback, pid)`` for every worker process that reports a failure.
    on_output : callable, optional
        ``on_output(worker, path, events, buffer)`` for every file an exporter reports.
    verbose : int
        Console verbosity (2: worker output too, 1: warnings and worse, 0: errors).
    """

    def __init__(
        self,
        ctx: Any,
        log_file: Path,
        console: Callable[[str], None],
        on_failure: Callable[[str, str, int], None],
        verbose: int = 2,
        debug: bool = False,
        on_output: Optional[Callable[..., None]] = None,
    ):
        self.queue = ctx.Queue()
        self.level = logging.DEBUG if debug else logging.INFO
        fmt = logging.Formatter(LOG_FORMAT)
        self._file_handler = logging.FileHandler(log_file)
        self._file_handler.setFormatter(fmt)
        self._file_handler.addFilter(_DefaultWorker())
        self._file_handler.setLevel(self.level)
        self._console = _CallbackHandler(console)
        self._console.setFormatter(logging.Formatter("[%(worker)s] %(levelname)s: %(message)s"))
        self._console.addFilter(_DefaultWorker())
        self._console.addFilter(_ConsoleFilter(verbose))
        if verbose <= 0:
            self._console.setLevel(logging.ERROR)
        self._failures = _ReportCollector(on_failure, on_output)
        self._listener = logging.handlers.QueueListener(
            self.queue, self._file_handler, self._console, self._failures, respect_handler_level=True
        )
        self._main_logger = logging.getLogger("mimocorb")
        self._old_level: Optional[int] = None
        self._started = False
        self._stopped = False

    def attach_main(self) -> None:
        """Send the main process's ``mimocorb`` logging to the run log too."""
        if self._old_level is None:
            self._main_logger.addHandler(self._file_handler)
            self._old_level = self._main_logger.level
            if self._main_logger.getEffectiveLevel() > self.level:
                self._main_logger.setLevel(self.level)

    def start(self) -> None:
        """Start the listener thread (after the workers are started: no thread is running at fork)."""
        if not self._started:
            self._listener.start()
            self._started = True

    def note(self, level: int, msg: str) -> None:
        """A record of the main process for ``run.log`` only (shown on the terminal by other means)."""
        if not self._stopped:
            self._file_handler.handle(logging.LogRecord("mimocorb.run", level, __file__, 0, msg, None, None))

    def stop(self) -> None:
        """Process every record still queued, then close the run log (again: nothing)."""
        if self._stopped:
            return
        self._stopped = True
        if self._started:
            self._listener.stop()
            self._started = False
        self._main_logger.removeHandler(self._file_handler)
        if self._old_level is not None:
            self._main_logger.setLevel(self._old_level)
            self._old_level = None
        self._file_handler.close()
        self.queue.close()
        self.queue.join_thread()


class _CallbackHandler(logging.Handler):
    def __init__(self, fn: Callable[[str], None]):
        super().__init__()
        self.fn = fn

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.fn(self.format(record))
        except Exception:  # noqa: BLE001
            self.handleError(record)
