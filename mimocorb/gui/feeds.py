"""Events from a buffer to a display, read in a thread that never waits for the drawing.

A display draws in its main thread; drawing can take tens of milliseconds. The feed
reads in its own thread and only copies the wanted fields into a list the display
collects with :meth:`EventFeed.take`, so a reader group keeps up with its buffer while
a picture is drawn, and its buffer never fills because of a display.

- a ``Reader`` (setup dict of a reader group): every event of the buffer;
- an ``Observer`` setup dict: a sample of the events, never slowing anything.
"""

from __future__ import annotations

import logging
import threading
from typing import Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)


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
