"""A worker process of a run: how it starts, how it is asked to finish, how it ends.

:func:`worker_main` is the entry point of every worker process (fork and spawn alike):

- SIGINT is ignored: Ctrl-C reaches the whole process group, and the run control drives
  the orderly end (buffers shut down in data-flow order).
- SIGTERM is a request to finish: it raises :class:`WorkerTerminated` (a ``SystemExit``)
  in the worker, so loops end and ``with`` blocks close their files. While an event is
  being handed on (:func:`finish_after`) the request waits until that is done, so an
  event is either completely written or not at all.
- A watchdog thread waits on the run control's process sentinel: when the run control
  dies (SIGKILL, crash), the worker is asked to finish the same way and, if it has not
  ended after :data:`ORPHAN_GRACE` seconds, it is ended. Its log queue is abandoned
  then (nobody reads the pipe any more, and the worker holds its read end itself, so a
  full pipe would block its exit for ever).
- A worker that failed (an exception) or was asked to finish ends at once with
  ``os._exit`` after its log records are sent: what it holds in the ring buffers is
  *not* handed back, so the buffers' owner counts it lost (dead reader, abandoned by a
  writer), as for a killed process. A worker whose function returned, or that ended
  with the end of the run, exits normally.

:func:`current_worker` tells code in a worker which process of its function it is (the
exporters name their files with it).
"""

from __future__ import annotations

import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Optional

from mimocorb.daq.run_log import WORKER_LOGGER, flush_worker_streams, report_failure, setup_worker_logging
from mimocorb.daq.user_code import ModuleRef, load_function

logger = logging.getLogger(__name__)

#: The one channel by which a run tells its workers that it is headless: this environment
#: variable is set (to ``"1"``) in the environment of every worker of a run started with
#: ``headless=True`` (``--headless``); displays then draw off screen and write PNG snapshots
#: (:func:`mimocorb.gui.screen.headless`). Set it yourself to run a display headless
#: outside a run; ``""`` or ``"0"`` count as unset.
HEADLESS_ENV = "MIMOCORB_HEADLESS"
#: Exit code of a worker that ended on a request to finish (128 + SIGTERM, as a shell shows it).
EXIT_TERMINATED = 128 + signal.SIGTERM
#: Seconds a worker whose run control died has to finish before it is ended.
ORPHAN_GRACE = 5.0


@dataclass(frozen=True)
class WorkerInfo:
    """Which process of which function this is.

    Attributes
    ----------
    name : str
        Worker name (``fkt_name``, or ``fkt_name-<index>`` when the function has several processes).
    function : str
        The function's ``fkt_name``.
    index : int
        1-based index of this process among the function's ``count`` processes.
    count : int
        ``num_process`` of the function.
    setup_file : str
        The run's setup file (its text goes into the files that record their setup).
    """

    name: str
    function: str
    index: int = 1
    count: int = 1
    setup_file: str = ""


class WorkerTerminated(SystemExit):
    """The run control (or the watchdog) asked this worker to finish (SIGTERM)."""


_info: Optional[WorkerInfo] = None
_defer_depth = 0
_finish_pending = False
_finish_requested = False


def current_worker() -> Optional[WorkerInfo]:
    """The :class:`WorkerInfo` of this process, None outside a run's worker."""
    return _info


def finish_requested() -> bool:
    """True once this worker was asked to finish (SIGTERM)."""
    return _finish_requested


def _on_sigterm(signum: int, frame: Any) -> None:
    global _finish_pending, _finish_requested
    _finish_requested = True
    if _defer_depth:
        _finish_pending = True  # raised when the event in hand is handed on (finish_after)
        return
    raise WorkerTerminated(EXIT_TERMINATED)


class _FinishAfter:
    """The context manager of :func:`finish_after` (a class: it runs for every event)."""

    __slots__ = ()

    def __enter__(self) -> None:
        global _defer_depth
        _defer_depth += 1

    def __exit__(self, typ: Any, exc: Any, tb: Any) -> bool:
        global _defer_depth, _finish_pending
        _defer_depth -= 1
        if typ is None and _defer_depth == 0 and _finish_pending:
            _finish_pending = False
            raise WorkerTerminated(EXIT_TERMINATED)
        return False


class _Interruptible:
    """The context manager of :func:`interruptible`."""

    __slots__ = ("_depth",)

    def __enter__(self) -> None:
        global _defer_depth, _finish_pending
        self._depth, _defer_depth = _defer_depth, 0
        if _finish_pending:  # it came while deferred: end now
            _finish_pending = False
            _defer_depth = self._depth
            raise WorkerTerminated(EXIT_TERMINATED)

    def __exit__(self, typ: Any, exc: Any, tb: Any) -> bool:
        global _defer_depth
        _defer_depth = self._depth
        return False


_FINISH_AFTER = _FinishAfter()


def finish_after() -> _FinishAfter:
    """Defer a request to finish (SIGTERM) until the block is done.

    For the few statements that hand one event on (write it to a file, publish it): a
    request arriving meanwhile is raised when the block ends without an exception, so
    the event is completely handed on or not at all. Outside a worker it does nothing.
    """
    return _FINISH_AFTER


def interruptible() -> _Interruptible:
    """Inside :func:`finish_after`: a blocking wait that a request to finish may still end
    (waiting for space in a full buffer must not make a worker deaf to SIGTERM)."""
    return _Interruptible()


def _watch_parent(log_queue: Any) -> None:
    """Thread: when the run control dies, ask this worker to finish; end it if it does not."""
    parent = multiprocessing.parent_process()
    if parent is None:
        return
    multiprocessing.connection.wait([parent.sentinel])
    # nobody reads the log pipe any more: do not wait for it at exit
    log_queue.cancel_join_thread()
    os.kill(os.getpid(), signal.SIGTERM)
    threading.Event().wait(ORPHAN_GRACE)
    os._exit(EXIT_TERMINATED)


def _end_now(code: int, log_queue: Any) -> None:
    """Leave without handing back what this process holds in the ring buffers (see the module notes)."""
    flush_worker_streams()
    try:
        log_queue.close()
        log_queue.join_thread()  # the records (a traceback) reach the run log first
    except Exception:  # noqa: BLE001 - the run control may be gone
        pass
    os._exit(code)


def worker_main(
    info: WorkerInfo,
    module: ModuleRef,
    search_paths: list[str],
    source_list: Any,
    sink_list: Any,
    observe_list: Any,
    config_dict: dict,
    rb_info: dict,
    log_queue: Any,
    log_level: int,
) -> None:
    """Entry point of every worker process: run the user function ``info.function``."""
    global _info
    _info = info
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _on_sigterm)
    # the run control starts workers with both blocked, so none arrives before the handlers are set
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})
    setup_worker_logging(log_queue, info.name, log_level)
    threading.Thread(target=_watch_parent, args=(log_queue,), name="mimocorb-watchdog", daemon=True).start()
    log = logging.getLogger(WORKER_LOGGER)
    try:
        fn = load_function(module, info.function, search_paths)
        log.debug("worker %s starts %s", info.name, info.function)
        fn(source_list, sink_list, observe_list, config_dict, **rb_info)
    except WorkerTerminated:
        log.info("worker %s ended on a request to finish", info.name)
        _end_now(EXIT_TERMINATED, log_queue)
    except SystemExit as exc:  # the buffers end worker loops with SystemExit; sys.exit() ends a source
        if exc.code not in (None, 0):
            report_failure(info.name, f"SystemExit({exc.code!r})")
            _end_now(exc.code if isinstance(exc.code, int) else 1, log_queue)
    except BaseException:  # noqa: BLE001 - report anything, with its traceback
        report_failure(info.name, traceback.format_exc())
        _end_now(1, log_queue)  # still inside the handler: the frames (and what they hold) are not released
    if _finish_requested:  # the function swallowed the request and returned
        _end_now(EXIT_TERMINATED, log_queue)
    flush_worker_streams()
    parent = multiprocessing.parent_process()
    if parent is not None and not parent.is_alive():
        log_queue.cancel_join_thread()  # the watchdog may not have run yet: never wait on a dead reader
    sys.exit(0)


__all__ = [
    "HEADLESS_ENV",
    "WorkerInfo",
    "WorkerTerminated",
    "current_worker",
    "finish_after",
    "finish_requested",
    "interruptible",
    "worker_main",
    "EXIT_TERMINATED",
]
