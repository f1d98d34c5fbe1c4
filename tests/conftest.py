"""Shared fixtures: every test must leave nothing of ours in /dev/shm and no
process running."""

from __future__ import annotations

import os
import signal

import pytest

from benchmarks.procs import ProcessGroup  # the one bounded-process helper (pyproject: pythonpath)

SHM = "/dev/shm"

# A shell starts background jobs with SIGINT ignored, and an ignored signal stays ignored
# across exec: the Ctrl-C tests would then test nothing. Handle it here, so that every
# process a test starts begins with SIGINT at its default (exec resets handled signals).
signal.signal(signal.SIGINT, signal.default_int_handler)


def _ours() -> set[str]:
    """Segments this test process owns, or whose owner is gone (leaked by a
    child of this test); segments of other live processes on the machine are
    none of this test's business."""
    from mimocorb.mimo_buffer import list_segments

    me = os.getpid()
    return {s["name"] for s in list_segments(SHM) if s["pid"] == me or not s["owner_alive"]}


@pytest.fixture(autouse=True)
def no_shm_leftovers():
    """Fail a test that leaves one of its segments behind."""
    before = _ours()
    yield
    import gc

    gc.collect()
    left = _ours() - before
    assert not left, f"segments left in {SHM}: {sorted(left)}"


class Procs(ProcessGroup):
    """Start processes, join them with a bound, kill whatever is left."""

    def start(self, target, *args, **kwargs):
        p = self.make(target, args, kwargs)
        p.start()
        return p

    def join(self, timeout: float = 30.0) -> list[int]:
        hung = self.wait(timeout)
        assert not hung, f"processes still running after {timeout} s: {[p.pid for p in hung]}"
        return [p.exitcode for p in self.procs]

    def kill_all(self) -> None:
        self.kill()


@pytest.fixture
def procs():
    p = Procs("fork")
    yield p
    p.kill_all()


@pytest.fixture
def spawn_procs():
    p = Procs("spawn")
    yield p
    p.kill_all()
