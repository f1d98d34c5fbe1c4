"""Text tables: one row per event, the metadata columns (counter, timestamp, deadtime)
then the buffer's fields; tab-separated ``<filename>.txt`` as in mimoCoRB 1.x, or with
``sep: ","`` ``<filename>.csv``. Flushed at least once a second, so the file is readable
while the run goes on.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from mimocorb.exporters.files import (
    METADATA_COLUMNS,
    FileExporter,
    Flushing,
    create_file,
    field_layout,
    packaged_check,
)
from mimocorb.sources.config_check import ConfigReader, SinkLayout


class TextTableWriter(Flushing):
    """A delimited text table with a header line, flushed at least every ``flush_interval`` s."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str], sep: str = "\t", flush_interval: float = 1.0):
        self.path = Path(path)
        self.sep = sep
        self.columns = list(columns)
        self.flush_interval = flush_interval
        self.rows = 0
        if len(set(self.columns)) != len(self.columns):
            twice = sorted({c for c in self.columns if self.columns.count(c) > 1})
            raise ValueError(f"{self.path.name}: column names {twice} appear twice; a header must name each once")
        self._file = create_file(self.path, (sep.join(self.columns) + "\n").encode("utf-8"), text=True)
        self._last_flush = time.monotonic()

    def write(self, values: Sequence[Any]) -> None:
        """Append one row; ``values`` are formatted with ``str`` (NumPy scalars round-trip)."""
        if len(values) != len(self.columns):
            raise ValueError(
                f"{self.path.name}: row has {len(values)} values, expected {len(self.columns)} "
                f"({', '.join(self.columns)})"
            )
        self._file.write(self.sep.join(map(str, values)) + "\n")
        self.rows += 1
        self._flush_if_due()

    def flush(self) -> None:
        """Write what is buffered to the file."""
        self._file.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


class rb_toTxtfile(FileExporter):
    """Export a buffer with one value per field to a text table (called with ``()``).

    Config: ``filename`` (without suffix), ``header_alias`` (column name -> header
    text), ``sep`` (default tab, giving ``.txt``; any other separator gives ``.csv``).
    """

    function = "save_to_txt"
    config_keys = ("sep", "header_alias")

    @classmethod
    def _check_format(cls, cfg: ConfigReader, layout: Optional[SinkLayout]) -> None:
        cfg.string("sep", "\t")
        alias = cfg.raw("header_alias", {})
        if not isinstance(alias, Mapping):
            raise cfg.error("header_alias", alias, "a mapping {column name: header text}")
        if layout is not None and layout.values_per_slot != 1:
            raise ValueError(
                f"{cfg.source}: buffer {layout.name} has {layout.values_per_slot} values per slot; a text table "
                f"holds one value per field (channel_per_slot: 1); use the Parquet, HDF5, ROOT or waveform exporter"
            )

    def __init__(self, source_list=None, config_dict=None, **rb_info):
        sep = (config_dict or {}).get("sep", "\t")
        self.suffix = ".txt" if sep == "\t" else ".csv"
        super().__init__(source_list, config_dict, **rb_info)
        self.sep = sep
        alias = self.config_dict.get("header_alias", {}) or {}
        names = METADATA_COLUMNS + [c for c, _ in field_layout(self.dtype)]
        self.header = [str(alias.get(n, n)) for n in names]

    def _open(self) -> TextTableWriter:
        return TextTableWriter(self.path, self.header, self.sep, self.flush_interval)

    def _put(self, out: TextTableWriter, data: np.ndarray, md: tuple) -> None:
        rec = data[0]
        values = list(rec) if self.dtype.names else [rec]
        out.write([int(md[0]), repr(float(md[1])), repr(float(md[2])), *values])


def save_to_txt(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info) -> None:
    """Packaged sink: every event of the first source buffer as a row of a text table.

    For a buffer with one value per field (``channel_per_slot: 1``). Config keys:
    ``filename`` (default: the buffer name; ``.txt``, or ``.csv`` with another ``sep``),
    ``sep`` (default tab), ``header_alias`` (column name -> header text),
    ``flush_interval`` (s, default 1.0), ``max_events`` (write only the first N events;
    the rest are read and dropped; 0: all).
    """
    rb_toTxtfile(source_list=source_list, config_dict=config_dict, **rb_info)()


save_to_txt.check_config = packaged_check(rb_toTxtfile)


__all__ = ["TextTableWriter", "rb_toTxtfile", "save_to_txt"]
