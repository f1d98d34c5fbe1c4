"""Start, synchronise and bound the processes of one benchmark case (and of the tests).

Every process is forked, joined with a bound and killed if it hangs; results
come back through one queue, each tagged with the process's role and index.
:class:`ProcessGroup` is the bounded part alone; ``tests/conftest.py`` builds its
fixtures on it too.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import time
from typing import Any, Callable, Iterable, Optional

logger = logging.getLogger(__name__)

CTX = mp.get_context("fork")


class CaseError(RuntimeError):
    """A case did not finish cleanly (a process hung, failed or reported no result)."""


class ProcessGroup:
    """Processes started together, each joined within one shared bound and killed if it hangs.

    The one process helper of the tests (``tests/conftest.py``: the ``procs`` and
    ``spawn_procs`` fixtures) and of the benchmark cases (:class:`Procs`). Every process
    is a daemon, so none outlives the process that started it.
    """

    def __init__(self, method: str = "fork") -> None:
        self.ctx = mp.get_context(method)
        self.procs: list[Any] = []

    def make(
        self, target: Callable, args: tuple = (), kwargs: Optional[dict] = None, name: Optional[str] = None
    ) -> Any:
        """A (not yet started) daemon process of this group."""
        p = self.ctx.Process(target=target, args=args, kwargs=kwargs or {}, name=name, daemon=True)
        self.procs.append(p)
        return p

    def wait(self, timeout: float, procs: Optional[Iterable[Any]] = None) -> list[Any]:
        """Join ``procs`` (default: all started ones) within ``timeout`` seconds in all; return those still running."""
        chosen = [p for p in (self.procs if procs is None else procs) if p.pid is not None]
        deadline = time.monotonic() + timeout
        for p in chosen:
            p.join(max(0.0, deadline - time.monotonic()))
        return [p for p in chosen if p.is_alive()]

    def kill(self, grace: float = 5.0) -> None:
        """Kill every started process still running, and reap each (at most ``grace`` seconds per process)."""
        for p in self.procs:
            if p.pid is None:
                continue
            if p.is_alive():
                p.kill()
            p.join(grace)


class Procs(ProcessGroup):
    """The processes of one case: ``add`` targets, ``start``, ``go``, ``collect``.

    A target is called as ``target(report, go, *args)``: ``report(obj)``
    sends its result, ``go`` is an Event the writers wait on so that every
    process has attached before the clock starts.
    """

    def __init__(self) -> None:
        super().__init__("fork")
        self.results: Any = self.ctx.Queue()
        self.go = self.ctx.Event()

    def add(self, name: str, target: Callable, *args: Any) -> None:
        def run(results=self.results, go=self.go) -> None:
            try:
                target(lambda obj: results.put((name, obj)), go, *args)
            except BaseException as exc:  # SystemExit is how mimocorb readers end: let it through
                if isinstance(exc, SystemExit) and not exc.code:
                    return
                results.put((name, {"error": repr(exc)}))
                raise

        self.make(run, name=name)

    def start(self) -> None:
        for p in self.procs:
            p.start()

    def wait_ready(self, names: list[str], timeout: float = 10.0) -> None:
        """Wait for a ("ready") report from each named process."""
        pending = set(names)
        deadline = time.monotonic() + timeout
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                raise CaseError(f"processes not ready after {timeout} s: {sorted(pending)}")
            try:
                name, obj = self.results.get(timeout=left)
            except queue.Empty:
                continue
            if obj == "ready":
                pending.discard(name)
            elif isinstance(obj, dict) and "error" in obj:
                raise CaseError(f"{name} failed while attaching: {obj['error']}")

    def join(self, names: list[str], timeout: float) -> None:
        """Join the named processes within `timeout` seconds in all; kill what hangs."""
        hung = self.wait(timeout, [p for p in self.procs if p.name in names])
        if hung:
            self.kill(grace=2.0)
            raise CaseError(f"processes hung and were killed: {[p.name for p in hung]}")

    def collect(self, names: list[str], timeout: float = 10.0) -> dict[str, Any]:
        out: dict[str, Any] = {}
        deadline = time.monotonic() + timeout
        while len(out) < len(names):
            left = deadline - time.monotonic()
            if left <= 0:
                raise CaseError(f"no result from {sorted(set(names) - set(out))}")
            try:
                name, obj = self.results.get(timeout=left)
            except queue.Empty:
                continue
            if obj == "ready":
                continue
            if isinstance(obj, dict) and "error" in obj:
                raise CaseError(f"{name} failed: {obj['error']}")
            out[name] = obj
        return out

    def run_writer_reader(self, buf: Any, writer_timeout: float) -> dict[str, Any]:
        """Start the added writer "w" and reader "r", let them go, wait for the writer,
        end the run (``buf.shutdown()`` for mimocorb; queue readers stop at their count)
        and return both results."""
        self.start()
        self.wait_ready(["r", "w"])
        self.go.set()
        res = self.collect(["w"], timeout=writer_timeout)
        self.join(["w"], timeout=10)
        if buf is not None:
            buf.shutdown(timeout=10.0)
        res.update(self.collect(["r"], timeout=30))
        self.join(["r"], timeout=10)
        return res

    def close(self) -> None:
        self.kill(grace=2.0)
        for p in self.procs:
            if p.exitcode is None:
                p.join(1.0)
            try:
                p.close()
            except ValueError:
                pass
        self.results.close()
        self.results.join_thread()


def leftover_segments() -> list[str]:
    """mimocorb segments of this process tree still in /dev/shm."""
    try:
        names = os.listdir("/dev/shm")
    except OSError:
        return []
    return [n for n in names if n.startswith(f"mimocorb-{os.getpid()}-")]
