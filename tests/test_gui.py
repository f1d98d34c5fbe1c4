"""The control window of ``mimocorb run --gui``, on a virtual screen (Xvfb).

Skipped when ``Xvfb`` or ``xdotool`` is not installed (``apt-get install xvfb xdotool``).
Keys are sent with xdotool to the focused window; the run's effect is read from its
``buffer_stats.csv``; a screenshot of the window is checked not to be blank.
"""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")
pytest.importorskip("tkinter")

from daq_helpers import LineReader, kill_group, our_segments  # noqa: E402
from test_displays import display_env, start_run, write_setup  # noqa: E402

pytestmark = pytest.mark.skipif(
    not (shutil.which("Xvfb") and shutil.which("xdotool")),
    reason="needs Xvfb and xdotool (apt-get install xvfb xdotool)",
)


def _free_display() -> int:
    for n in range(91, 300):
        if not os.path.exists(f"/tmp/.X11-unix/X{n}") and not os.path.exists(f"/tmp/.X{n}-lock"):
            return n
    raise RuntimeError("no free X display number in 91..299")


@pytest.fixture
def xvfb():
    """A virtual screen ``:N``; yields the DISPLAY string, kills the server afterwards."""
    n = _free_display()
    p = subprocess.Popen(
        ["Xvfb", f":{n}", "-screen", "0", "1280x1024x24", "-nolisten", "tcp"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 15
        while not os.path.exists(f"/tmp/.X11-unix/X{n}"):
            if p.poll() is not None or time.monotonic() > deadline:
                pytest.skip(f"Xvfb :{n} did not start")
            time.sleep(0.05)
        yield f":{n}"
    finally:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def xdo(display: str, *args: str, timeout: float = 10) -> str:
    r = subprocess.run(
        ["xdotool", *args],
        env={**os.environ, "DISPLAY": display},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    return r.stdout.strip()


def find_window(display: str, name: str, proc: subprocess.Popen, timeout: float = 30) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before its window appeared"
        ids = xdo(display, "search", "--name", name).split()
        if ids:
            return ids[0]
        time.sleep(0.2)
    raise AssertionError(f"no window {name!r} within {timeout} s")


def press(display: str, window: str, key: str) -> None:
    """Raise and focus the window (no window manager on Xvfb), then type ``key``."""
    xdo(display, "windowraise", window)
    xdo(display, "windowfocus", "--sync", window)
    xdo(display, "key", key)


def stats(folder: Path, buffer: str = "RB_1") -> list[tuple[float, str, float]]:
    """(elapsed, state, rate) rows of one buffer from the run's buffer_stats.csv."""
    path = folder / "buffer_stats.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("buffer") == buffer and r.get("rate_hz")]
    return [(float(r["elapsed_s"]), r["state"], float(r["rate_hz"])) for r in rows]


def wait_until(pred, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def screenshot(display: str, window: str) -> np.ndarray:
    from PIL import ImageGrab, features

    if not features.check("xcb"):
        pytest.skip("Pillow without XCB: cannot take a screenshot")
    geo = dict(
        line.split("=", 1) for line in xdo(display, "getwindowgeometry", "--shell", window).splitlines() if "=" in line
    )
    x, y, w, h = (int(geo[k]) for k in ("X", "Y", "WIDTH", "HEIGHT"))
    xdo(display, "windowraise", window)  # the displays' windows open on top of it
    time.sleep(1.0)  # let it redraw the uncovered part
    return np.asarray(ImageGrab.grab(bbox=(x, y, x + w, y + h), xdisplay=display).convert("RGB"))


def test_control_window_pause_resume_stop(tmp_path, xvfb):
    setup = write_setup(tmp_path, runtime=90.0, sleeptime=0.005)
    p = start_run(setup, ["--gui", "-q", "--status-interval", "0.5"], display_env(xvfb))
    out = LineReader(p.stdout)
    try:
        win = find_window(xvfb, "mimoCoRB run", p)
        folder = wait_until(lambda: next((tmp_path / "target").glob("*/buffer_stats.csv"), None), 20, "the run folder")
        folder = folder.parent
        wait_until(lambda: any(s == "running" and r > 10 for _, s, r in stats(folder)), 20, "events flowing")

        press(xvfb, win, "p")
        paused = wait_until(
            lambda: [t for t, s, r in stats(folder) if s == "paused" and r == 0.0][1:],  # two rows at rate 0
            15,
            "the rate to drop to zero after Pause",
        )
        press(xvfb, win, "r")
        wait_until(
            lambda: any(t > paused[-1] and s == "running" and r > 10 for t, s, r in stats(folder)),
            15,
            "the rate to come back after Resume",
        )
        time.sleep(1.5)  # a few rate points after the resume on the plot
        shot = screenshot(xvfb, win)
        from PIL import Image

        Image.fromarray(shot).save(tmp_path / "control-window.png")  # kept with the test's files, to look at
        assert shot.shape[0] > 400 and shot.shape[1] > 600, shot.shape
        assert shot.std() > 20, "the control window looks blank"
        orange = np.all(np.abs(shot.astype(int) - (255, 127, 14)) < 40, axis=-1).sum()
        assert orange > 50, "no rate history drawn"

        press(xvfb, win, "s")
        out.wait_for(lambda line: "exit code" in line, 40)
        text = "".join(out.lines)
        assert "Run ended: stopped from the control window" in text, text
        assert p.poll() is None, "the window should stay open with the summary"
        press(xvfb, win, "q")  # the run has ended: closing asks nothing
        p.wait(20)
    finally:
        kill_group(p)
        p.wait(10)
    assert p.returncode == 0, "".join(out.lines)
    assert not our_segments(p.pid)


class _FakeRun:
    """Just enough of RunControl for the window."""

    def __init__(self):
        from mimocorb.daq.status import BufferSnapshot, RunStatus

        self.state = "running"
        self.stopped = None
        self.summary = None
        self.run_folder = None
        self.setup_spec = type("S", (), {"name": "fake"})()
        self._st = RunStatus("running", 3.0, 3.0, [BufferSnapshot("RB_1", 30, 2, 16, 10.0, 0.01)], [])

    def status(self):
        return self._st

    def stop(self, reason="stopped"):
        self.stopped = reason

    def pause(self):
        self.state = "paused"

    def resume(self):
        self.state = "running"

    def end(self):
        self.stop("ended by end()")


def test_closing_asks_before_ending_a_run(xvfb, monkeypatch):
    monkeypatch.setenv("DISPLAY", xvfb)
    from mimocorb.gui.control_window import ControlWindow

    answers = []
    run = _FakeRun()
    w = ControlWindow(run, confirm=lambda title, q: answers.pop(0))
    try:
        w.update()
        assert "RB_1: 30 events" in w.status_var.get()
        w.act("pause")
        assert run.state == "paused" and str(w.buttons["resume"]["state"]) == "normal"
        assert str(w.buttons["pause"]["state"]) == "disabled"
        answers.append(False)
        w.on_close()
        assert not w.closed and run.stopped is None, "closing must not end the run without a yes"
        answers.append(True)
        w.on_close()
        assert w.closed and run.stopped == "control window closed"
    finally:
        if not w.closed:
            w.root.destroy()
