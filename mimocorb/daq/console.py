"""Operator console of a run: the live status line, messages, single-key commands.

On a terminal the status line is redrawn in place and messages are printed above it;
otherwise every status is a plain line. Keyboard control (single keys, no Enter) is
offered only when stdin is a terminal.
"""

from __future__ import annotations

import logging
import os
import select
import shutil
import sys
import threading
from typing import Callable, Optional, TextIO

logger = logging.getLogger(__name__)

KEYS = {"p": "pause", "r": "resume", "s": "stop", "e": "stop", "q": "stop"}
KEY_HELP = "keys: p pause, r resume, s stop"


class Console:
    """Writes status lines and messages to ``stream`` (stdout by default)."""

    def __init__(self, stream: Optional[TextIO] = None, verbose: int = 2):
        self.stream = stream if stream is not None else sys.stdout
        self.verbose = verbose
        try:
            self.tty = bool(self.stream.isatty())
        except (AttributeError, ValueError):
            self.tty = False
        self._status = ""
        self._lock = threading.Lock()

    def _width(self) -> int:
        return shutil.get_terminal_size((120, 24)).columns - 1

    def message(self, text: str, level: int = 0) -> None:
        """Print a message line (above the status line on a terminal) if ``verbose >= level``."""
        if self.verbose < level:
            return
        with self._lock:
            try:
                if self.tty and self._status:
                    self.stream.write("\r\033[K" + text + "\n" + self._status[: self._width()])
                else:
                    self.stream.write(text + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def status(self, text: str) -> None:
        """Show the live status (redrawn in place on a terminal, a plain line otherwise)."""
        if self.verbose < 1:
            return
        with self._lock:
            try:
                if self.tty:
                    self._status = text
                    self.stream.write("\r\033[K" + text[: self._width()])
                else:
                    self.stream.write(text + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass

    def end_status(self) -> None:
        """Leave the status line (on a terminal: move below it)."""
        with self._lock:
            if self.tty and self._status:
                try:
                    self.stream.write("\n")
                    self.stream.flush()
                except (OSError, ValueError):
                    pass
            self._status = ""


class KeyboardControl:
    """Reads single keys from a terminal stdin in a thread and calls ``on_command(name)``.

    Does nothing when stdin is not a terminal. The terminal mode is restored by :meth:`stop`.
    """

    def __init__(self, on_command: Callable[[str], None], stdin: Optional[TextIO] = None):
        self.on_command = on_command
        self.stdin = stdin if stdin is not None else sys.stdin
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._saved = None
        try:
            self.active = bool(self.stdin.isatty())
        except (AttributeError, ValueError):
            self.active = False

    def start(self) -> bool:
        """Start reading keys; return whether keyboard control is on."""
        if not self.active:
            return False
        try:
            import termios
            import tty

            fd = self.stdin.fileno()
            self._saved = termios.tcgetattr(fd)
            tty.setcbreak(fd)
        except (ImportError, OSError, ValueError) as exc:
            logger.info("no keyboard control: %s", exc)
            self.active = False
            return False
        self._thread = threading.Thread(target=self._read, name="mimocorb-keys", daemon=True)
        self._thread.start()
        return True

    def _read(self) -> None:
        fd = self.stdin.fileno()
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.2)
                if not ready:
                    continue
                ch = os.read(fd, 1).decode(errors="ignore").lower()
            except (OSError, ValueError):
                return
            if ch in KEYS:
                self.on_command(KEYS[ch])

    def stop(self) -> None:
        """Stop reading and restore the terminal."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1.0)
            self._thread = None
        if self._saved is not None:
            try:
                import termios

                termios.tcsetattr(self.stdin.fileno(), termios.TCSADRAIN, self._saved)
            except (OSError, ValueError):
                pass
            self._saved = None
