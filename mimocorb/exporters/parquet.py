"""Columnar files: one Parquet file ``<filename>.parquet`` written in row groups (needs
``pyarrow``, the ``parquet`` extra); multi-value fields become fixed-size list columns.
The file is completed when the exporter ends, also on Ctrl-C (the run's shutdown ends it
with SystemExit).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mimocorb.exporters.files import METADATA_COLUMNS, FileExporter, Flushing, create_file, field_layout
from mimocorb.mimo_buffer import METADATA_DTYPE


class ParquetTableWriter(Flushing):
    """One Parquet file per run, written in row groups of ``row_group_size`` events.

    Parameters
    ----------
    path : path-like
        The ``.parquet`` file.
    dtype : dtype
        Slot dtype (structured or plain).
    values_per_slot : int
        Values per slot; > 1 gives fixed-size list columns.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        dtype: Any,
        values_per_slot: int,
        row_group_size: int = 1000,
        flush_interval: float = 1.0,
    ):
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError as exc:
            raise ImportError("the Parquet exporter needs pyarrow: pip install 'mimocorb[parquet]'") from exc
        self._pa, self._pq = pa, pq
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.values_per_slot = int(values_per_slot)
        self.row_group_size = max(1, int(row_group_size))
        self.flush_interval = flush_interval
        self.rows = 0
        self._md = np.zeros(self.row_group_size, dtype=METADATA_DTYPE)
        self._data = np.zeros((self.row_group_size, self.values_per_slot), dtype=self.dtype)
        self._n = 0
        self._last_flush = time.monotonic()
        fields = [pa.field(n, pa.from_numpy_dtype(METADATA_DTYPE[n])) for n in METADATA_COLUMNS]
        for col, fld in field_layout(self.dtype):
            t = pa.from_numpy_dtype(self.dtype[fld] if fld else self.dtype)
            fields.append(pa.field(col, t if self.values_per_slot == 1 else pa.list_(t, self.values_per_slot)))
        self.schema = pa.schema(fields)
        self._sink = create_file(self.path)
        self._writer = pq.ParquetWriter(self._sink, self.schema)

    def append(self, metadata: Sequence[float], data: np.ndarray) -> None:
        """Buffer one event (copied); a full row group is written out."""
        self._md[self._n] = tuple(metadata)
        self._data[self._n] = data
        self._n += 1
        if self._n >= self.row_group_size:
            self.flush()
        else:
            self._flush_if_due()

    def flush(self) -> None:
        """Write the buffered events as one row group."""
        self._last_flush = time.monotonic()
        n = self._n
        if n == 0:
            return
        pa = self._pa
        arrays = [pa.array(self._md[c][:n]) for c in METADATA_COLUMNS]
        for _, fld in field_layout(self.dtype):
            col = self._data[fld][:n] if fld else self._data[:n]
            if self.values_per_slot == 1:
                arrays.append(pa.array(np.ascontiguousarray(col[:, 0])))
            else:
                arrays.append(
                    pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(col).ravel()), self.values_per_slot)
                )
        self._writer.write_table(pa.Table.from_arrays(arrays, schema=self.schema))
        self.rows += n
        self._n = 0

    def close(self) -> None:
        if self._writer is not None:
            try:
                self.flush()
            finally:
                try:
                    self._writer.close()  # writes the footer: only now is the file readable
                finally:
                    self._writer = None
                    self._sink.close()


class rb_toParquetfile(FileExporter):
    """Export a buffer to one Parquet file ``<filename>.parquet`` (called with ``()``)."""

    suffix = ".parquet"

    def __init__(self, source_list=None, config_dict=None, **rb_info):
        super().__init__(source_list, config_dict, **rb_info)
        self.row_group_size = int(self.config_dict.get("row_group_size", 1000))

    def _open(self) -> ParquetTableWriter:
        return ParquetTableWriter(self.path, self.dtype, self.values_per_slot, self.row_group_size, self.flush_interval)

    def _put(self, out: ParquetTableWriter, data: np.ndarray, md: tuple) -> None:
        out.append(md, data)


def save_parquet(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info) -> None:
    """Packaged sink: every event of the first source buffer into one Parquet file.

    Config keys: ``filename`` (default: the buffer name; ``.parquet``), ``row_group_size``
    (default 1000), ``flush_interval`` (s, default 1.0), ``max_events`` (write only the
    first N events; the rest are read and dropped; 0: all). Needs ``pyarrow``.
    """
    rb_toParquetfile(source_list=source_list, config_dict=config_dict, **rb_info)()


__all__ = ["ParquetTableWriter", "rb_toParquetfile", "save_parquet"]
