"""Whether a display can open a window, and the place its figure is shown.

A display is *headless* when the environment variable ``MIMOCORB_HEADLESS`` is set (the one
channel by which a run started with ``--headless`` tells its workers,
:data:`mimocorb.daq.worker.HEADLESS_ENV`) or there is no X display (``$DISPLAY`` unset).
Headless displays draw on an off-screen Agg canvas and only write PNG snapshots; nothing
needs a screen.
"""

from __future__ import annotations

import logging
import os

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from mimocorb.daq.worker import HEADLESS_ENV  # set (to anything but "" or "0"): no windows

logger = logging.getLogger(__name__)


def headless() -> bool:
    """True when displays must not open windows (``$MIMOCORB_HEADLESS`` set, or no ``$DISPLAY``)."""
    if os.environ.get(HEADLESS_ENV, "") not in ("", "0"):
        return True
    return not os.environ.get("DISPLAY")


class FigureHost:
    """Shows a figure in a Tk window, or keeps it on an off-screen Agg canvas.

    Parameters
    ----------
    figure : Figure
        The figure to show (created without pyplot).
    title : str
        Window title.

    Notes
    -----
    A window is opened unless :func:`headless`; if Tk cannot open one the host falls back
    to off-screen drawing and logs a warning.
    """

    def __init__(self, figure: Figure, title: str):
        self.figure = figure
        self.title = title
        self.root = None
        self.canvas = None
        self._closed = False
        if not headless():
            try:
                self._open_window()
            except Exception as exc:  # noqa: BLE001 - no Tk, no display, display refused: draw off screen
                logger.warning("%s: cannot open a window (%s); drawing off screen", title, exc)
                self.root = None
        if self.root is None:
            self.canvas = FigureCanvasAgg(figure)

    def _open_window(self) -> None:
        import tkinter

        from matplotlib.backends.backend_tkagg import FigureCanvasTkAgg

        root = tkinter.Tk()
        root.title(self.title)
        root.protocol("WM_DELETE_WINDOW", self._on_close)
        canvas = FigureCanvasTkAgg(self.figure, master=root)
        canvas.get_tk_widget().pack(fill=tkinter.BOTH, expand=True)
        canvas.draw()
        self.root, self.canvas = root, canvas

    @property
    def interactive(self) -> bool:
        """True while a window shows the figure."""
        return self.root is not None

    @property
    def closed(self) -> bool:
        """True once the operator closed the window."""
        return self._closed

    def _on_close(self) -> None:
        self._closed = True
        try:
            self.root.destroy()
        except Exception:  # noqa: BLE001 - already gone
            pass
        self.root = None

    def refresh(self) -> None:
        """Redraw the figure in its window (off screen: nothing, snapshots draw for themselves)."""
        if self.root is None:
            return
        self._update(draw=True)

    def process_events(self) -> None:
        """Let the window react (resize, close) between refreshes."""
        if self.root is None:
            return
        self._update(draw=False)

    def _update(self, draw: bool) -> None:
        """Redraw (``draw``) and let the window react; a window gone under us counts as closed."""
        try:
            if draw:
                self.canvas.draw()
            self.root.update()
        except Exception as exc:  # noqa: BLE001 - the window went away under us
            logger.debug("%s: window update failed: %s", self.title, exc)
            self._closed = True
            self.root = None

    def close(self) -> None:
        """Close the window, if any."""
        if self.root is not None:
            try:
                self.root.destroy()
            except Exception:  # noqa: BLE001
                pass
            self.root = None
