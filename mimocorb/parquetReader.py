"""mimoCoRB 1.x module ``parquetReader``: events from tar archives of per-event Parquet files.

1.x setups read recorded runs with ``file_source.tar_parquet_source``, which does
``from mimocorb.parquetReader import parquetReader``; this module keeps that name and
interface. The reading is :class:`mimocorb.sources.recordings.TarParquetRecording`'s
(the packaged replay source, ``mimocorb.sources.replay``, reads the same archives).

Config keys as in 1.x: ``path`` (a folder of ``.tar``/``.tar.gz``/``.tgz``/``.bz2``
archives, read in the order of their names; here also one archive), ``sleeptime``
(s between events, default 0.1), ``random`` (exponential waits of mean
``sleeptime``), ``number_of_samples``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from mimocorb.sources.recordings import TarParquetRecording

logger = logging.getLogger(__name__)

__all__ = ["parquetReader"]


class parquetReader:  # noqa: N801  (1.x class name)
    """Deliver the recorded events one per call (1.x interface).

    ``parquetReader(config_dict)``, then ``init(number_of_channels, number_of_values,
    channel_names)``; each call returns a list of one array per channel, or None
    after the last event.
    """

    def __init__(self, config_dict: Optional[dict] = None):
        cfg = dict(config_dict or {})
        if "path" not in cfg:
            raise KeyError(
                f"parquetReader: config key 'path' (a folder of tar archives) is required, got {sorted(cfg)}"
            )
        self.path = Path(cfg["path"])
        self.sleeptime = float(cfg.get("sleeptime", 0.10))
        self.random = bool(cfg.get("random", False))
        self.number_of_samples = cfg.get("number_of_samples")
        self.recording = TarParquetRecording(self.path)
        self._blocks = self.recording.blocks()
        self._rng = np.random.default_rng()
        self.number_of_channels: Optional[int] = None
        self.number_of_values: Optional[int] = None
        self.channel_names: Optional[Sequence[str]] = None

    def init(self, number_of_channels=None, number_of_values=None, channel_names=None) -> None:
        """Set the buffer layout; the recorded columns ``channel_names`` are delivered in that order."""
        self.number_of_channels = number_of_channels
        self.number_of_values = number_of_values
        self.channel_names = list(channel_names) if channel_names is not None else list(self.recording.fields)
        missing = [c for c in self.channel_names if c not in self.recording.fields]
        if missing:
            raise ValueError(
                f"parquetReader: channels {missing} are not in {self.recording.describe()}; "
                f"it holds {', '.join(self.recording.fields)}"
            )

    def __call__(self):
        block = next(self._blocks, None)
        if block is None:
            return None
        if self.sleeptime > 0:  # wait as 1.x did, to mimic the data flow of a live source
            time.sleep(self._rng.exponential(self.sleeptime) if self.random else self.sleeptime)
        names = self.channel_names or list(self.recording.fields)
        return [block.data[c][0] for c in names[: self.number_of_channels or len(names)]]
