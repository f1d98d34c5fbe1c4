"""Puppet processes: real processes that run ring-buffer calls one command at a
time, so that a test can order the steps of several processes exactly, stop
one at a named step of the core (a fault point: the process stops itself with
SIGSTOP there) and then kill it or let it go on.

Every wait here is bounded; ``Puppets.close()`` kills whatever is left.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time
import traceback
from typing import Any

import numpy as np

from mimocorb import _ringbuf
from mimocorb import mimo_buffer as bm

VALUES = 4  # int64 per event: value, value * 3, value * 5, value * 7 (a torn event breaks the pattern)


def event(value: int) -> np.ndarray:
    return np.array([value, value * 3, value * 5, value * 7], np.int64)


def intact(v: np.ndarray) -> bool:
    return bool((np.asarray(v, np.int64) == event(int(v[0]))).all())


def _serve(conn, sleep_slice: float | None) -> None:
    if sleep_slice is not None:
        _ringbuf._set_sleep_slice(sleep_slice)
    ends: dict[str, Any] = {}
    while True:
        try:
            op, args = conn.recv()
        except EOFError:
            os._exit(0)
        try:
            result = _run(ends, op, args)
        except SystemExit as exc:
            result = ("SystemExit", str(exc))
        except BaseException as exc:  # the test side re-raises it
            conn.send(("error", f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"))
            continue
        conn.send(("ok", result))
        if op == "exit":
            os._exit(0)


def _run(ends: dict, op: str, args: tuple):
    if op == "fault":
        name, skip = args
        _ringbuf._set_fault_point(name, skip)
        return None
    if op == "writer":
        (setup,) = args
        ends["w"] = bm.Writer(setup)
        return None
    if op == "reader":
        (setup,) = args
        ends["r"] = bm.Reader(setup)
        return ends["r"].group
    if op == "put":  # write one whole event and publish it
        (value,) = args
        ends["w"].put(event(value))
        return value
    if op == "claim":  # get_new_buffer: publish what is held, claim a slot and fill it, keep holding it
        (value,) = args
        buf = ends["w"].get_new_buffer()
        buf[:] = event(value)
        return value
    if op == "claim_many":
        first, k = args
        block = ends["w"].get_new_buffers(k)
        for i in range(block.shape[0]):
            block[i] = event(first + i)
        return block.shape[0]
    if op == "publish":
        ends["w"].process_buffer()
        return None
    if op == "get":  # (value, intact) of the next event, or None after the timeout
        (timeout,) = args
        v = ends["r"].get_timeout(timeout)
        return None if v is None else (int(v[0]), intact(v))
    if op == "release":
        ends["r"].release()
        return None
    if op == "reap":
        (shm_name,) = args
        seg = _ringbuf.Segment.attach(shm_name)
        return seg.reap()
    if op == "close":
        (which,) = args
        ends.pop(which).close()
        return None
    if op == "exit":
        return None
    raise ValueError(f"unknown puppet command {op!r}")


class Puppet:
    def __init__(self, ctx, name: str, sleep_slice: float | None = None):
        self.name = name
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_serve, args=(child, sleep_slice), daemon=True, name=name)
        self.proc.start()
        child.close()
        self.pending = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def send(self, op: str, *args) -> None:
        """Start a command without waiting for it (it may block or stop at a fault point)."""
        assert not self.pending, f"{self.name}: a command is still running"
        self.conn.send((op, args))
        self.pending = True

    def result(self, timeout: float = 10.0):
        """The result of the command sent last; AssertionError when it does not come in time."""
        assert self.pending, f"{self.name}: no command is running"
        if not self.conn.poll(timeout):
            raise AssertionError(f"{self.name} (pid {self.pid}): no answer within {timeout} s (hung or stopped)")
        status, value = self.conn.recv()
        self.pending = False
        if status == "error":
            raise AssertionError(f"{self.name}: {value}")
        return value

    def done_within(self, timeout: float) -> bool:
        """Has the command sent last finished within `timeout` seconds? (bounded)"""
        return self.conn.poll(timeout)

    def call(self, op: str, *args, timeout: float = 10.0):
        self.send(op, *args)
        return self.result(timeout)

    def stop_at(self, point: str, op: str, *args, skip: int = 0, timeout: float = 10.0) -> None:
        """Run `op` and wait until the process has stopped itself at fault point `point`."""
        self.call("fault", point, skip)
        self.send(op, *args)
        self.wait_stopped(timeout)

    def state(self) -> str:
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            return "X"

    def wait_stopped(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state() == "T":
                return
            if not self.proc.is_alive():
                raise AssertionError(f"{self.name} ended (exit code {self.proc.exitcode}) instead of stopping")
            if self.conn.poll(0):
                status, value = self.conn.recv()
                self.pending = False
                raise AssertionError(f"{self.name} finished ({status}: {value!r}) instead of stopping")
            time.sleep(0.002)
        raise AssertionError(f"{self.name} did not reach its fault point within {timeout} s")

    def cont(self) -> None:
        os.kill(self.pid, signal.SIGCONT)

    def kill(self) -> None:
        if self.proc.is_alive():
            os.kill(self.pid, signal.SIGKILL)
        self.proc.join(5)
        assert not self.proc.is_alive(), f"{self.name} survived SIGKILL"
        self.pending = False


class Puppets:
    """Makes puppets and kills every one of them at the end of a test."""

    def __init__(self, sleep_slice: float | None = None):
        self.ctx = mp.get_context("fork")
        self.sleep_slice = sleep_slice
        self.all: list[Puppet] = []

    def __call__(self, name: str, sleep_slice: float | None = None) -> Puppet:
        p = Puppet(self.ctx, name, sleep_slice if sleep_slice is not None else self.sleep_slice)
        self.all.append(p)
        return p

    def close(self) -> None:
        for p in self.all:
            if p.proc.is_alive():
                try:
                    os.kill(p.pid, signal.SIGCONT)
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            p.proc.join(5)
