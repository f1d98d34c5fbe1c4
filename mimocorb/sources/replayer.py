"""Replay of recorded runs as a source: the ``replay`` worker function.

Reads a recording (:mod:`mimocorb.sources.recordings`: our Parquet, waveform ``.npy``
and HDF5 files, and mimoCoRB 1.x tar archives of per-event Parquet files) and writes
its events into the sink buffer, event for event with the recorded values and
metadata, at the recorded pace, a fixed rate or flat out, optionally looping.
Every sink field must be in the recording with the buffer's values per slot (extra
recorded fields are left out); values are cast to the field types of the buffer.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import numpy as np

from mimocorb import mimo_buffer as bm
from mimocorb.sources.config_check import ConfigReader, SinkLayout, sink_layout, sink_name
from mimocorb.sources.recordings import FORMATS, Recording, open_recording

logger = logging.getLogger(__name__)

NAME = "replay"
PACES = ("recorded", "fixed", "max")
MAX_SLEEP = 0.1  # s: a waiting replay looks at the run state at least this often
CONFIG_KEYS = ("file", "format", "pace", "rate", "speed", "loop", "metadata", "number_of_events")


@dataclass
class ReplaySettings:
    """A checked ``replay`` configuration."""

    path: Path
    fmt: Optional[str]
    pace: str
    rate: float
    speed: float
    loop: bool
    new_metadata: bool
    number_of_events: int
    layout: SinkLayout


def check_recording(cfg: ConfigReader, rec: Recording, layout: SinkLayout, key: str = "file") -> None:
    """Every field of the buffer must be in the recording, with the buffer's values per slot."""
    for name in layout.fields:
        if name not in rec.fields:
            raise cfg.error(
                key,
                str(rec.path),
                f"a recording with field {name!r} of {layout.describe()}; it holds "
                f"{', '.join(rec.fields) or 'no fields'}",
            )
        src, dst = rec.fields[name], layout.dtype[name]
        # integers must fit; floats may lose precision (float64 recorded, float32 buffer)
        if not (np.can_cast(src, dst, "safe") or (src.kind == "f" and dst.kind == "f")):
            raise cfg.error(
                key, str(rec.path), f"field {name!r} of type {dst.name} (recorded: {src.name}, which does not fit it)"
            )
    if rec.values_per_slot != layout.values_per_slot:
        raise cfg.error(
            key,
            str(rec.path),
            f"{layout.values_per_slot} values per slot as {layout.describe()}; recorded: {rec.values_per_slot}",
        )


def _settings(
    config_dict: Optional[Mapping], sink_setups: Optional[Sequence[Mapping]], name: str = ""
) -> ReplaySettings:
    cfg = ConfigReader(NAME, config_dict)
    layout = sink_layout(NAME, sink_setups, name)
    file = cfg.string("file")
    if file is None:
        raise cfg.error("file", None, "the path of a recorded run (.parquet, .npy, .h5, .tar or a folder of .tar)")
    path = Path(file)  # a relative path is taken from the working directory
    fmt = cfg.string("format", None, choices=FORMATS)
    try:
        rec = open_recording(path, fmt)
    except (OSError, ValueError, ImportError) as exc:
        raise cfg.error("file", file, f"a readable recorded run ({exc})") from exc
    try:
        check_recording(cfg, rec, layout)
        has_times = rec.has_times
    finally:
        rec.close()
    pace = cfg.string("pace", "recorded" if has_times else "max", choices=PACES)
    if pace == "recorded" and not has_times:
        raise cfg.error("pace", pace, f"'fixed' or 'max': a {rec.kind} holds no time stamps")
    rate = cfg.number("rate", 10.0, minimum=0.0, exclusive_minimum=True, unit="events/s")
    speed = cfg.number("speed", 1.0, minimum=0.0, exclusive_minimum=True)
    loop = cfg.flag("loop", False)
    metadata = cfg.string("metadata", "recorded", choices=("recorded", "new"))
    n = cfg.integer("number_of_events", 0, minimum=0)
    cfg.warn_unknown(CONFIG_KEYS)
    return ReplaySettings(path, fmt, pace, rate, speed, loop, metadata == "new", n, layout)


def check_config(config_dict: Optional[Mapping], sink_setups: Optional[Sequence[Mapping]]) -> None:
    """Raise ValueError for a bad ``replay`` configuration (see :func:`replay`)."""
    _settings(config_dict, sink_setups)


class _Pacer:
    """Sleeps until each event is due; the run's end cuts every sleep short."""

    def __init__(self, s: ReplaySettings, writer: bm.Writer):
        self.s, self.writer = s, writer
        self.restart()

    def restart(self) -> None:
        self.t0 = time.monotonic()
        self.ts0: Optional[float] = None
        self.i = 0

    def wait(self, timestamp: float) -> bool:
        """Wait until the next event is due; False when the run ended meanwhile."""
        s = self.s
        if s.pace == "max":
            return self.writer.active
        if s.pace == "fixed":
            due = self.t0 + self.i / s.rate
        else:
            if self.ts0 is None or not math.isfinite(timestamp):
                self.ts0 = timestamp
            due = self.t0 + (timestamp - self.ts0) / s.speed
        self.i += 1
        while self.writer.active:
            ahead = due - time.monotonic()
            if ahead <= 0:
                return True
            time.sleep(min(ahead, MAX_SLEEP))
        return False


def _records(block, layout: SinkLayout) -> np.ndarray:
    out = np.zeros((len(block), layout.values_per_slot), dtype=layout.dtype)
    for name in layout.fields:
        out[name] = block.data[name]
    return out


def replay(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """Source: replay a recorded run into the sink buffer, event for event.

    Writes the one buffer assigned with ``write``; its fields must be in the
    recording with the same values per slot.

    Config keys:

    ``file`` : str, required
        A Parquet file (``rb_toParquetfile``), a waveform ``.npy`` file
        (``rb_toWaveformfile``), an HDF5 file (``.h5``/``.hdf5``, the HDF5 exporter's
        layout), a mimoCoRB 1.x ``.tar`` archive of per-event Parquet files, or a folder
        of such archives.
    ``format`` : str, default: from the file name
        ``parquet``, ``npy``, ``hdf5`` or ``tar``.
    ``pace`` : str, default ``recorded`` (``max`` for 1.x archives, which hold no times)
        ``recorded``: the recorded intervals between the time stamps (divided by
        ``speed``); ``fixed``: ``rate`` events per second; ``max``: as fast as the
        buffer takes them.
    ``rate`` : float
        In events/s, default 10 (pace ``fixed``).
    ``speed`` : float
        Default 1 (pace ``recorded``; 2: twice as fast).
    ``loop`` : bool, default false
        Start again at the end (until the run ends or ``number_of_events``).
    ``metadata`` : str, default ``recorded``
        ``recorded``: counter, time stamp and dead time as recorded (a 1.x archive:
        the counter of the file name, the replay time, dead time 0); ``new``: the
        replay's own count from 1, the time of replay and dead time 0.
    ``number_of_events`` : int
        Default 0 (the whole recording, once or looping).
    """
    name = sink_name(rb_info)
    s = _settings(config_dict, sink_list, name)
    writer = bm.Writer(sink_list[0])
    pacer = _Pacer(s, writer)
    published = passes = 0
    try:
        while True:
            rec = open_recording(s.path, s.fmt)
            try:
                for block in rec.blocks():
                    records = _records(block, s.layout)
                    for i in range(len(block)):
                        ts = float(block.timestamp[i])
                        if not pacer.wait(ts):
                            return
                        if s.new_metadata:
                            writer.put(records[i], published + 1, time.time(), 0.0)
                        else:
                            stamp = ts if math.isfinite(ts) else time.time()
                            writer.put(records[i], int(block.counter[i]), stamp, float(block.deadtime[i]))
                        published += 1
                        if s.number_of_events and published >= s.number_of_events:
                            return
            finally:
                rec.close()
            passes += 1
            if not s.loop or published == 0:
                return
            pacer.restart()
    except SystemExit:
        pass  # the run is ending
    finally:
        writer.close()
        logger.info("replay: %d events from %s published (%d complete passes)", published, s.path, passes)


replay.check_config = check_config
