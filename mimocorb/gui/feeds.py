"""Events from a buffer to a display: which buffer it shows, and a reading thread that never
waits for the drawing.

:func:`display_input` picks the buffer a display shows from its worker arguments (the
first source: every event; else the first observed buffer: a sample), with the error a
display gives when ``RB_assign`` names none. :func:`yield_cpu` lowers a display process's
priority, so the DAQ gets the CPU first.

A display draws in its main thread; drawing can take tens of milliseconds. The
:class:`EventFeed` reads in its own thread and only copies the wanted fields into a list
the display collects with :meth:`EventFeed.take`, so a reader group keeps up with its
buffer while a picture is drawn, and its buffer never fills because of a display.

- a ``Reader`` (setup dict of a reader group): every event of the buffer;
- an ``Observer`` setup dict: a sample of the events, never slowing anything.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)


def field_names(dtype: Any) -> list[str]:
    """Field names of a buffer dtype as setup dicts give it (list of pairs, or a plain type: ``["data"]``)."""
    d = np.dtype(dtype) if not isinstance(dtype, list) else np.dtype([tuple(x) for x in dtype])
    return list(d.names) if d.names else ["data"]


@dataclass(frozen=True)
class DisplayInput:
    """The buffer a display shows: its setup dict, ``role`` (``"read"``: every event, a reader
    group; ``"observe"``: a sample) and name."""

    setup: dict
    role: str
    buffer: str

    @property
    def fields(self) -> list[str]:
        return field_names(self.setup["dtype"])


def display_input(
    who: str,
    source_list: Optional[Sequence[dict]],
    observe_list: Optional[Sequence[dict]],
    rb_info: dict,
    *,
    reads: bool = True,
) -> DisplayInput:
    """The buffer a display shows: the first source buffer (every event), else the first observed one.

    Parameters
    ----------
    who : str
        The display's name, for the error.
    source_list, observe_list : list of dict, optional
        The worker's setup dicts.
    rb_info : dict
        Buffer names -> roles: the buffer's name comes from here.
    reads : bool
        False for a display that only observes (``source_list`` is not looked at).

    Raises
    ------
    ValueError
        When there is no buffer to show, saying what ``RB_assign`` needs.
    """
    if reads and source_list:
        setup, role = source_list[0], "read"
    elif observe_list:
        setup, role = observe_list[0], "observe"
    elif reads:
        raise ValueError(f"{who}: needs a buffer to read (or observe); give the function 'RB_x: read' in RB_assign")
    else:
        raise ValueError(
            f"{who}: needs a buffer to observe (observe_list is empty); give the function 'RB_x: observe' in RB_assign"
        )
    names = [k for k, v in rb_info.items() if v == role]
    return DisplayInput(setup, role, names[0] if names else str(setup.get("name") or "buffer"))


class DisplayCall:
    """The 1.x interface of a display: made with the worker function's arguments (a missing
    buffer fails here, :func:`display_input`), then called with ``()`` to show events until
    the run ends. A subclass sets ``who`` (its name, for errors), ``reads`` (False for a
    display that only observes) and defines ``__call__``."""

    who = "display"
    reads = True

    def __init__(
        self,
        source_list: Optional[list] = None,
        sink_list: Optional[list] = None,
        observe_list: Optional[list] = None,
        config_dict: Optional[dict] = None,
        **rb_info: str,
    ):
        display_input(self.who, source_list if self.reads else None, observe_list, rb_info, reads=self.reads)
        self.source_list = source_list if self.reads else None
        self.observe_list = observe_list
        self.config_dict = config_dict if config_dict is not None else {}
        self.rb_info = rb_info


def yield_cpu(increment: int, idle: bool = False) -> None:
    """Lower this display process's priority so the DAQ gets the CPU first.

    ``idle``: run only when a core would otherwise be idle (SCHED_IDLE, Linux), for
    displays that hold nothing (observers): they can never slow the DAQ down."""
    if idle and hasattr(os, "sched_setscheduler") and hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return
        except OSError as exc:
            logger.debug("SCHED_IDLE failed: %s", exc)
    if increment > 0:
        try:
            os.nice(increment)
        except OSError as exc:
            logger.debug("nice(%d) failed: %s", increment, exc)


class EventFeed:
    """Reads events of one buffer in a daemon thread; :meth:`take` returns what arrived since the last call.

    Parameters
    ----------
    setup_dict : dict
        Reader-group or observer setup dict (its ``role`` decides which).
    fields : sequence of str
        Fields to copy from each event (all values of the slot; a plain buffer: ``["data"]``).
    """

    def __init__(self, setup_dict: dict, fields: Sequence[str]):
        from mimocorb import mimo_buffer as bm

        self.fields = list(fields)
        self.role = setup_dict.get("role", "reader")
        if self.role == "observer":
            self._source = bm.Observer(setup_dict)
        else:
            self._source = bm.Reader(setup_dict, wait="sleep")
        self._pending: dict[str, list[np.ndarray]] = {f: [] for f in self.fields}
        self._lock = threading.Lock()
        self.events = 0
        self.last_metadata: Optional[tuple[int, float, float]] = None
        self.ended = threading.Event()
        self.error: Optional[BaseException] = None
        self._thread = threading.Thread(target=self._run, name="event-feed", daemon=True)

    @property
    def every_event(self) -> bool:
        """True when the feed sees every event (a reader group), False for a sample (observer)."""
        return self.role != "observer"

    def start(self) -> EventFeed:
        self._thread.start()
        return self

    def _copy(self, data: np.ndarray) -> None:
        with self._lock:
            for f in self.fields:
                self._pending[f].append(np.array(data[f] if data.dtype.names else data, dtype=np.float64, copy=True))
            self.events += 1

    def _run(self) -> None:
        try:
            if self.role == "observer":
                while True:
                    item = self._source.get(timeout=0.5)
                    if item is None:
                        if not self._source.active:
                            return
                        continue
                    data, md = item
                    self.last_metadata = (int(md[0]["counter"]), float(md[0]["timestamp"]), float(md[0]["deadtime"]))
                    self._copy(data)
            else:
                for data, md in self._source.events():
                    self.last_metadata = md
                    self._copy(data)
        except BaseException as exc:  # noqa: BLE001 - reported by the display's main thread
            self.error = exc
            logger.error("event feed stopped: %s: %s", type(exc).__name__, exc)
        finally:
            if self.role != "observer":
                try:
                    self._source.release()
                except Exception:  # noqa: BLE001 - the buffer may be gone at the end of the run
                    pass
            self.ended.set()

    def take(self) -> dict[str, np.ndarray]:
        """Values of each field that arrived since the last call (1-D float64 arrays, maybe empty)."""
        with self._lock:
            pending, self._pending = self._pending, {f: [] for f in self.fields}
        return {f: (np.concatenate(v) if v else np.empty(0)) for f, v in pending.items()}

    def join(self, timeout: float) -> None:
        """Wait (bounded) for the reading thread to end."""
        self._thread.join(timeout)

    def close(self) -> None:
        try:
            self._source.close()
        except Exception:  # noqa: BLE001
            pass
