"""Keyboard control of a run in a terminal: p pauses, r resumes, s stops."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time

import pytest
from daq_helpers import copy_setup, env, run_folder, summary

pytestmark = pytest.mark.timeout(120)


class Terminal:
    """A command on a pseudo-terminal: type keys, read what it prints (bounded waits)."""

    def __init__(self, args: list, cwd=None):
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(
            args, stdin=slave, stdout=slave, stderr=slave, env=env(), cwd=cwd, start_new_session=True
        )
        os.close(slave)
        self.out = ""

    def read_until(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while text not in self.out:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{text!r} did not appear within {timeout} s; output:\n{self.out}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.2))
            if ready:
                try:
                    self.out += os.read(self.master, 65536).decode(errors="replace")
                except OSError:  # the command ended and closed the terminal
                    if text not in self.out:
                        raise AssertionError(f"{text!r} never appeared; output:\n{self.out}") from None
        return self.out

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def close(self) -> int:
        try:
            code = self.proc.wait(timeout=30)
        finally:
            if self.proc.poll() is None:
                os.killpg(self.proc.pid, 9)
                self.proc.wait(5)
            os.close(self.master)
        return code


def test_keys_pause_resume_and_stop_a_run(tmp_path):
    setup = copy_setup("chain", tmp_path)
    # an endless source: only the operator ends this run
    (setup / "config" / "common.yaml").write_text(
        "general: {runtime: 0}\ncounting_source: {events: 0, sleeptime: 0.001}\n"
    )
    out = tmp_path / "out"
    term = Terminal([sys.executable, "-m", "mimocorb", "run", str(setup / "chain_setup.yaml"), "--output", str(out)])
    try:
        term.read_until("keys: p pause, r resume, s stop")
        term.read_until("RB_1: ")  # data are flowing
        term.type("p")
        term.read_until("paused (r to resume)")
        time.sleep(1.5)
        term.type("r")
        term.read_until("resumed")
        time.sleep(0.5)
        term.type("s")
        term.read_until("Run ended: stopped by operator")
    finally:
        code = term.close()
    assert code == 0, term.out
    s = summary(run_folder(out))
    assert s["stop_reason"] == "stopped by operator"
    assert s["buffers"]["RB_1"]["events"] > 0
    assert s["paused_s"] >= 1.4  # the pause was taken off the active time


def test_stop_while_paused_does_not_resume_first(tmp_path):
    setup = copy_setup("chain", tmp_path)
    (setup / "config" / "common.yaml").write_text(
        "general: {runtime: 0}\ncounting_source: {events: 0, sleeptime: 0.001}\n"
    )
    out = tmp_path / "out"
    term = Terminal([sys.executable, "-m", "mimocorb", "run", str(setup / "chain_setup.yaml"), "--output", str(out)])
    try:
        term.read_until("keys: p pause, r resume, s stop")
        term.read_until("RB_1: ")
        term.type("p")
        term.read_until("paused (r to resume)")
        time.sleep(0.5)
        term.type("s")
        term.read_until("Run ended: stopped by operator")
    finally:
        code = term.close()
    assert code == 0, term.out
    assert "resumed" not in term.out.split("stopping: stopped by operator", 1)[1]
    s = summary(run_folder(out))
    assert s["paused_s"] >= 0.4 and s["active_time_s"] + s["paused_s"] <= s["run_time_s"]
