"""Helpers for the DAQ tests: run the command line in a subprocess, read run folders."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SETUPS = Path(__file__).resolve().parent / "daq_setups"


def env() -> dict:
    e = dict(os.environ)
    e["PYTHONPATH"] = str(REPO) + os.pathsep + e.get("PYTHONPATH", "")
    e["PYTHONUNBUFFERED"] = "1"
    return e


def copy_setup(name: str, tmp_path: Path) -> Path:
    """Copy tests/daq_setups/<name> into tmp_path; return the copy's folder."""
    dst = tmp_path / name
    shutil.copytree(SETUPS / name, dst, ignore=shutil.ignore_patterns("__pycache__", "target"))
    return dst


def run_cli(args: list, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m mimocorb ARGS`` with a bounded wait (the process group is killed on timeout)."""
    p = subprocess.Popen(
        [sys.executable, "-m", "mimocorb", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env(),
        cwd=cwd,
        start_new_session=True,
    )
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(p)
        out, err = p.communicate(timeout=10)
        raise AssertionError(f"mimocorb {args} did not end within {timeout} s\n{out}\n{err}") from None
    return subprocess.CompletedProcess(p.args, p.returncode, out, err)


def kill_group(p: subprocess.Popen) -> None:
    try:
        os.killpg(p.pid, 9)
    except ProcessLookupError:
        pass


class LineReader:
    """Collects a subprocess's stdout lines in a thread, so waits for a line can be bounded."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self._t = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._t.start()

    def _read(self, stream) -> None:
        for line in stream:
            with self._cond:
                self.lines.append(line)
                self._cond.notify_all()

    def wait_for(self, pred, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if pred(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("expected output did not come:\n" + "".join(self.lines))
                self._cond.wait(left)

    def text(self) -> str:
        self._t.join(timeout=10)
        return "".join(self.lines)


def run_folder(output: Path) -> Path:
    folders = [p for p in Path(output).iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def summary(folder: Path) -> dict:
    return json.loads((folder / "summary.json").read_text())


def our_segments(pid: int) -> list[str]:
    return [n for n in os.listdir("/dev/shm") if n.startswith(f"mimocorb-{pid}-")]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is not alive for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def read_table(path: Path, sep: str = "\t") -> list[dict]:
    lines = path.read_text().splitlines()
    header = lines[0].split(sep)
    return [dict(zip(header, line.split(sep))) for line in lines[1:]]


class Run:
    """``python -m mimocorb run ...`` in its own session; stdout+stderr collected line by line (bounded waits)."""

    def __init__(self, args: list, cwd: Path | None = None):
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mimocorb", "run", *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env(),
            cwd=cwd,
            start_new_session=True,
        )
        self.lines = LineReader(self.proc.stdout)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait(self, timeout: float) -> int:
        """The exit code; the process group is killed (and the test fails) if it does not end in time."""
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            self.proc.wait(timeout=10)
            raise AssertionError(f"the run did not end within {timeout} s:\n{self.lines.text()}") from None

    def text(self) -> str:
        return self.lines.text()

    def close(self) -> None:
        if self.proc.poll() is None:
            kill_group(self.proc)
            self.proc.wait(timeout=10)


def wait_until(pred, timeout: float, what: str):
    """Poll ``pred()`` until it returns something true (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.05)


def worker_pids(folder: Path) -> dict[str, int]:
    """Worker name -> pid, from the run log's 'started worker NAME (pid N)' lines."""
    out = {}
    log = folder / "run.log"
    for line in (log.read_text() if log.exists() else "").splitlines():
        if "started worker " in line:
            name, pid = line.split("started worker ", 1)[1].split(" (pid ")
            out[name] = int(pid.rstrip(")"))
    return out


def status_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if " | workers " in line]


def parse_status(line: str) -> dict[str, dict]:
    """'RB_1: 40 ev 2.0 Hz fill 0/16 dead 1.0% lost 3' parts of a status line -> {buffer: {events, lost}}."""
    out = {}
    for part in line.split(" | ")[1:-1]:
        name, rest = part.split(": ", 1)
        words = rest.split()
        if words[1:2] != ["ev"]:
            continue  # links to other hosts (sent ..., received ...)
        out[name] = {"events": int(words[0]), "lost": int(words[words.index("lost") + 1]) if "lost" in words else 0}
    return out


def drop_segments_of(pid: int) -> None:
    """Unlink the segments a dead (SIGKILLed) owner left behind."""
    from mimocorb import _ringbuf

    for name in our_segments(pid):
        _ringbuf.shm_unlink_name("/" + name)
