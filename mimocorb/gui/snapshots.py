"""PNG snapshots of a display's figure in the run folder, written atomically."""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Optional

from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

#: Seconds between snapshots of a headless display (config key ``snapshot_interval``).
DEFAULT_INTERVAL = 5.0
#: Share of one core that periodic snapshots may use (they are put off to stay below it).
CPU_BUDGET = 0.03


def run_folder(config_dict: Optional[dict]) -> Path:
    """The run folder from ``config_dict["directory_prefix"]`` (the current folder without one)."""
    prefix = (config_dict or {}).get("directory_prefix")
    return Path(prefix) if prefix else Path(".")


def snapshot_path(config_dict: Optional[dict], kind: str, buffer: str) -> Path:
    """``<run folder>/<kind>-<buffer>.png``, e.g. ``oscilloscope-RB_1.png``."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in buffer) or "buffer"
    return run_folder(config_dict) / f"{kind}-{safe}.png"


def write_png(figure: Figure, path: Path, dpi: int = 100) -> Path:
    """Render ``figure`` to ``path`` atomically: a temporary file in the same folder, then a rename.

    A reader of ``path`` sees the previous complete picture or the new one, never a part.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            # light compression: a snapshot is rendered every few seconds, on the DAQ's CPU
            figure.savefig(f, format="png", dpi=dpi, pil_kwargs={"compress_level": 1})
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


class SnapshotSchedule:
    """Writes a figure to one PNG every ``interval`` seconds and once more at the end.

    Parameters
    ----------
    figure : Figure
        The figure to save.
    path : Path
        Target file.
    interval : float
        Seconds between snapshots; ``0`` or less: only the final one.
    """

    def __init__(self, figure: Figure, path: Path, interval: float = DEFAULT_INTERVAL):
        self.figure = figure
        self.path = Path(path)
        self.interval = float(interval)
        self.written = 0
        self._next = time.monotonic() + self.interval

    def due(self) -> bool:
        """True when the next periodic snapshot is due."""
        return self.interval > 0 and time.monotonic() >= self._next

    def save(self) -> Optional[Path]:
        """Write the snapshot now; a failure (disk full, folder gone) is logged, never raised.

        Rendering a PNG takes a few hundred ms of CPU; the next periodic snapshot
        is put off so that snapshots use at most ``CPU_BUDGET`` of a core, which
        keeps the displays out of the way of the DAQ on small machines."""
        cpu0 = time.process_time()
        try:
            write_png(self.figure, self.path)
        except Exception as exc:  # noqa: BLE001 - a display must never end a run over a picture
            logger.warning("snapshot %s failed: %s", self.path, exc)
            self._next = time.monotonic() + self.interval
            return None
        cost = time.process_time() - cpu0
        self._next = time.monotonic() + max(self.interval, cost / CPU_BUDGET)
        self.written += 1
        if self.interval > 0 and self.written == 1 and self.figure.get_layout_engine() is not None:
            # headless, the figure never changes size: keep the layout of the first
            # snapshot instead of solving it again for every picture
            self.figure.set_layout_engine("none")
        return self.path
