"""The control window of ``mimocorb run --gui``.

It shows the run as :meth:`RunControl.status` reports it -- rate history per buffer,
fill levels, dead time, events, workers alive -- the tail of the run log, and buttons
that act on the run: Pause, Resume, Stop, End (keys ``p``, ``r``, ``s``, ``e``). Closing
the window while the run goes on asks before ending it; after the run the window shows
the summary and stays open until closed (key ``q``).

The run executes in a thread (:meth:`RunControl.run`; its methods are thread-safe)
while Tk owns the main thread. The workers are started before the window is created,
so no forked worker inherits a Tk interpreter.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Optional

from matplotlib.figure import Figure

from mimocorb.daq.status import RunStatus, format_summary

logger = logging.getLogger(__name__)

#: Keyboard shortcuts of the buttons.
KEYS = {"p": "pause", "r": "resume", "s": "stop", "e": "end"}
LOG_LINES = 400
COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]


class ControlWindow:
    """Tk window showing a run and driving it.

    Parameters
    ----------
    run : RunControl
        The run (set up; it may already be running in another thread).
    refresh_ms : int
        Milliseconds between updates of the window.
    history_s : float
        Seconds of rate history shown.
    confirm : callable, optional
        ``confirm(title, question) -> bool`` asked before closing ends a running run
        (default: a Tk yes/no dialog).
    """

    def __init__(self, run: Any, refresh_ms: int = 500, history_s: float = 300.0, confirm=None):
        import tkinter as tk
        from tkinter import scrolledtext

        from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg

        self.run = run
        self.refresh_ms = int(refresh_ms)
        self.history_s = float(history_s)
        self._confirm = confirm
        self.closed = False
        self._last_elapsed = -1.0
        self._history: dict[str, deque[tuple[float, float]]] = {}
        self._log_pos = 0
        self._summary_shown = False

        name = getattr(run.setup_spec, "name", "run")
        self.root = root = tk.Tk()
        root.title(f"mimoCoRB run - {name}")
        root.geometry("980x700")  # fixed: long status text must not resize the window
        root.protocol("WM_DELETE_WINDOW", self.on_close)

        self.status_var = tk.StringVar(value="starting")
        tk.Label(root, textvariable=self.status_var, font=("TkFixedFont", 12, "bold"), anchor="w").pack(
            side=tk.TOP, fill=tk.X, padx=6, pady=4
        )

        bar = tk.Frame(root)
        bar.pack(side=tk.TOP, fill=tk.X, padx=6)
        self.buttons: dict[str, Any] = {}
        for key, action in KEYS.items():
            label = action.capitalize()
            b = tk.Button(
                bar,
                text=f"{label} [{key}]",
                underline=0,
                width=11,
                command=lambda a=action: self.act(a),
            )
            b.pack(side=tk.LEFT, padx=3, pady=3)
            self.buttons[action] = b
            root.bind(f"<KeyPress-{key}>", lambda _e, a=action: self.act(a))
        root.bind("<KeyPress-q>", lambda _e: self.on_close())
        root.bind("<Escape>", lambda _e: self.on_close())

        self.figure = Figure(figsize=(9.0, 4.2), layout="constrained")
        grid = self.figure.add_gridspec(1, 3)
        self.ax_rate = self.figure.add_subplot(grid[0, :2])
        self.ax_fill = self.figure.add_subplot(grid[0, 2])
        self.ax_rate.set_title("rate per buffer")
        self.ax_rate.set_xlabel("run time (s)")
        self.ax_rate.set_ylabel("rate (Hz)")
        self.ax_rate.grid(alpha=0.4)
        self.ax_fill.set_title("fill level")
        self.ax_fill.set_xlim(0, 100)
        self.ax_fill.set_xlabel("% of slots filled")
        self.rate_lines: dict[str, Any] = {}
        self.fill_bars: dict[str, Any] = {}
        self.fill_texts: dict[str, Any] = {}
        self.canvas = FigureCanvasTkAgg(self.figure, master=root)
        self.canvas.get_tk_widget().pack(side=tk.TOP, fill=tk.BOTH, expand=True)

        self.log = scrolledtext.ScrolledText(root, height=10, font=("TkFixedFont", 9), state=tk.DISABLED)
        self.log.pack(side=tk.TOP, fill=tk.BOTH, expand=False, padx=6, pady=4)
        self._tk = tk
        root.after(50, self._tick)

    # ---------------------------------------------------------------- actions
    def act(self, action: str) -> None:
        """Carry out a button's action on the run."""
        logger.info("control window: %s", action)
        if action == "pause":
            self.run.pause()
        elif action == "resume":
            self.run.resume()
        elif action == "stop":
            self.run.stop("stopped from the control window")
        elif action == "end":
            self.run.end()
        self._update_buttons(self.run.state)

    def running(self) -> bool:
        """True while the run has not ended."""
        return self.run.state not in ("ended",)

    def on_close(self) -> None:
        """Close the window; a run still going on is ended only if the operator agrees."""
        if self.run.state in ("ready", "running", "paused"):
            if not self.ask("End the run?", "The run is still going on. End it and close the window?"):
                return
            self.run.stop("control window closed")
        self.closed = True
        try:
            self.root.destroy()
        except Exception:  # noqa: BLE001 - already destroyed
            pass

    def ask(self, title: str, question: str) -> bool:
        if self._confirm is not None:
            return bool(self._confirm(title, question))
        from tkinter import messagebox

        return bool(messagebox.askyesno(title, question, parent=self.root))

    # --------------------------------------------------------------- updating
    def _tick(self) -> None:
        if self.closed:
            return
        try:
            self.update()
        except Exception:  # noqa: BLE001 - a display error must never end the run
            logger.exception("control window update failed")
        self.root.after(self.refresh_ms, self._tick)

    def update(self) -> None:
        """Bring the window up to date with the run's status and log."""
        st: RunStatus = self.run.status()
        state = self.run.state
        self._update_buttons(state)
        self._tail_log()
        if state == "ended" and not self._summary_shown and getattr(self.run, "summary", None):
            self._summary_shown = True
            self._append_log("\n" + format_summary(self.run.summary) + "\n(close the window or press q)\n")
        self.status_var.set(self.status_text(st, state))
        if st.elapsed == self._last_elapsed or not st.buffers:
            return
        self._last_elapsed = st.elapsed
        self._update_plots(st)
        self.canvas.draw_idle()

    @staticmethod
    def status_text(st: RunStatus, state: str) -> str:
        """The headline: state, active time, events and dead time of the first buffer, workers alive."""
        parts = [f"{state.upper():<8}", f"active {st.active_time:7.1f} s"]
        if st.buffers:
            b = st.buffers[0]
            parts.append(f"{b.name}: {b.events} events  {b.rate:.1f} Hz  dead time {100 * b.deadtime:.1f}%")
        parts.append(f"workers alive {st.workers_alive}/{len(st.workers)}")
        if st.stop_reason:
            parts.append(st.stop_reason)
        return "   ".join(parts)

    def _update_buttons(self, state: str) -> None:
        enabled = {
            "pause": state == "running",
            "resume": state == "paused",
            "stop": state in ("running", "paused"),
            "end": state in ("ready", "running", "paused"),
        }
        for action, b in self.buttons.items():
            b.configure(state=self._tk.NORMAL if enabled[action] else self._tk.DISABLED)

    def _update_plots(self, st: RunStatus) -> None:
        t = st.elapsed
        for i, b in enumerate(st.buffers):
            h = self._history.setdefault(b.name, deque())
            h.append((t, b.rate))
            while h and h[0][0] < t - self.history_s:
                h.popleft()
            if b.name not in self.rate_lines:
                (self.rate_lines[b.name],) = self.ax_rate.plot(
                    [], [], ".-", ms=3, lw=1.2, color=COLORS[i % len(COLORS)], label=b.name
                )
                self.ax_rate.legend(loc="upper left", fontsize="small")
            xs, ys = zip(*h)
            self.rate_lines[b.name].set_data(xs, ys)
        self.ax_rate.set_xlim(max(0.0, t - self.history_s), max(t, 10.0))
        top = max((max(y for _, y in h) for h in self._history.values() if h), default=1.0)
        self.ax_rate.set_ylim(0, max(1.0, top) * 1.15)

        names = [b.name for b in st.buffers]
        if list(self.fill_bars) != names:
            self.ax_fill.cla()
            self.ax_fill.set_title("fill level")
            self.ax_fill.set_xlim(0, 100)
            self.ax_fill.set_xlabel("% of slots filled")
            bars = self.ax_fill.barh(
                names, [0] * len(names), color=[COLORS[i % len(COLORS)] for i in range(len(names))]
            )
            self.ax_fill.invert_yaxis()
            self.fill_bars = dict(zip(names, bars))
            self.fill_texts = {
                n: self.ax_fill.text(2, i, "", va="center", fontsize="x-small") for i, n in enumerate(names)
            }
        for b in st.buffers:
            pct = 100.0 * b.filled / b.slots if b.slots else 0.0
            self.fill_bars[b.name].set_width(pct)
            lost = f" lost {b.lost}" if b.lost else ""
            self.fill_texts[b.name].set_text(
                f"{b.filled}/{b.slots}  {b.events} ev\n{b.rate:.1f} Hz  dead {100 * b.deadtime:.1f}%{lost}"
            )

    def _log_file(self) -> Optional[Path]:
        folder = getattr(self.run, "run_folder", None)
        return folder.log_file if folder is not None else None

    def _tail_log(self) -> None:
        path = self._log_file()
        if path is None or not path.exists():
            return
        try:
            with open(path, errors="replace") as f:
                f.seek(self._log_pos)
                text = f.read()
                self._log_pos = f.tell()
        except OSError:
            return
        if text:
            self._append_log(text)

    def _append_log(self, text: str) -> None:
        tk = self._tk
        self.log.configure(state=tk.NORMAL)
        self.log.insert(tk.END, text)
        lines = int(self.log.index("end-1c").split(".")[0])
        if lines > LOG_LINES:
            self.log.delete("1.0", f"{lines - LOG_LINES}.0")
        self.log.see(tk.END)
        self.log.configure(state=tk.DISABLED)

    def mainloop(self) -> None:
        """Run the Tk event loop until the window is closed."""
        self.root.mainloop()


def run_with_control_window(run: Any, start_timeout: float = 60.0, **window_options: Any) -> int:
    """Run ``run`` (a :class:`~mimocorb.daq.run_control.RunControl`) with the control window; return its exit code.

    The run executes in a thread; the window lives in the main thread. Ctrl-C or
    SIGTERM stop the run (it still ends in order); closing the window asks first.
    """
    if run.state == "init":
        run.setup()
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["code"] = run.run()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            result["error"] = exc

    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def handler(signum, frame):
        run.stop("interrupted (Ctrl-C)" if signum == signal.SIGINT else "terminated (SIGTERM)")

    for s in old:
        signal.signal(s, handler)
    thread = threading.Thread(target=target, name="run-control", daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + start_timeout  # workers first: no fork after Tk exists
        while run.state in ("init", "ready") and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.02)
        if thread.is_alive():
            try:
                window = ControlWindow(run, **window_options)
            except Exception as exc:  # noqa: BLE001 - no display after all: the run goes on without a window
                logger.error("cannot open the control window (%s); the run goes on without it", exc)
                window = None
            if window is not None:
                _poll_signals(window)
                window.mainloop()
        if run.state != "ended":
            run.stop("control window closed")
        while thread.is_alive():
            thread.join(0.2)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    if "error" in result:
        raise result["error"]
    return int(result.get("code", 1))


def _poll_signals(window: ControlWindow) -> None:
    """Give Python a chance to run signal handlers while Tk waits (every 200 ms)."""

    def poll() -> None:
        if not window.closed:
            window.root.after(200, poll)

    window.root.after(200, poll)
