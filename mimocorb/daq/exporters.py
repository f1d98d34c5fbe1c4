"""Exporters: write the events of a buffer to files in the run folder.

Three formats, each one file per run and exporter process:

- text table (:class:`rb_toTxtfile`, :class:`TextTableWriter`): one row per event,
  metadata columns (counter, timestamp, deadtime) then the fields; tab-separated
  ``<filename>.txt`` as in mimoCoRB 1.x (config ``sep: ","`` gives ``<filename>.csv``);
  flushed at least once a second, so it is readable while the run goes on.
- columnar (:class:`rb_toParquetfile`, :class:`ParquetTableWriter`): one Parquet file
  ``<filename>.parquet`` written in row groups (needs ``pyarrow``, the ``parquet`` extra);
  multi-value fields become fixed-size list columns. The file is completed when the
  exporter ends, also on Ctrl-C (the run's shutdown ends it with SystemExit).
- waveforms (:class:`rb_toWaveformfile`, :class:`NpyWaveformWriter`): one ``.npy``
  file of records ``(counter, timestamp, deadtime, data[values_per_slot])`` that
  ``numpy.load`` reads back. Its header is rewritten at least once a second, so the file
  is valid (holding the events up to the last rewrite) even if the process is killed.

Config keys of the exporter classes: ``filename`` (default: the buffer name),
``directory_prefix`` (set by the run control), ``header_alias`` and ``sep`` (text),
``row_group_size`` (Parquet, default 1000), ``flush_interval`` (s, default 1.0).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from mimocorb.daq.access import METADATA_DTYPE, _ReaderAccess

logger = logging.getLogger(__name__)

METADATA_COLUMNS = list(METADATA_DTYPE.names)


class TextTableWriter:
    """A delimited text table with a header line, flushed at least every ``flush_interval`` s."""

    def __init__(self, path: str | os.PathLike, columns: Sequence[str], sep: str = "\t", flush_interval: float = 1.0):
        self.path = Path(path)
        self.sep = sep
        self.columns = list(columns)
        self.flush_interval = flush_interval
        self.rows = 0
        self._file = open(self.path, "w", buffering=1 << 16)
        self._file.write(sep.join(self.columns) + "\n")
        self._file.flush()
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
        now = time.monotonic()
        if now - self._last_flush >= self.flush_interval:
            self._file.flush()
            self._last_flush = now

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __enter__(self) -> TextTableWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _field_layout(dtype: np.dtype) -> list[tuple[str, Optional[str]]]:
    """(column name, field name or None for a plain buffer)."""
    return [(n, n) for n in dtype.names] if dtype.names else [("data", None)]


class ParquetTableWriter:
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
        for col, fld in _field_layout(self.dtype):
            t = pa.from_numpy_dtype(self.dtype[fld] if fld else self.dtype)
            fields.append(pa.field(col, t if self.values_per_slot == 1 else pa.list_(t, self.values_per_slot)))
        self.schema = pa.schema(fields)
        self._writer = pq.ParquetWriter(str(self.path), self.schema)

    def append(self, metadata: Sequence[float], data: np.ndarray) -> None:
        """Buffer one event (copied); a full row group is written out."""
        self._md[self._n] = tuple(metadata)
        self._data[self._n] = data
        self._n += 1
        if self._n >= self.row_group_size or time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        """Write the buffered events as one row group."""
        self._last_flush = time.monotonic()
        n = self._n
        if n == 0:
            return
        pa = self._pa
        arrays = [pa.array(self._md[c][:n]) for c in METADATA_COLUMNS]
        for _, fld in _field_layout(self.dtype):
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
                self._writer.close()
                self._writer = None

    def __enter__(self) -> ParquetTableWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NpyWaveformWriter:
    """Append records to a ``.npy`` file whose header (the record count) is kept up to date.

    The header has a fixed length, so it is rewritten in place at least every
    ``flush_interval`` seconds and on close; ``numpy.load`` reads the records counted
    there (any later, partly written record is ignored).
    """

    def __init__(self, path: str | os.PathLike, dtype: Any, values_per_slot: int, flush_interval: float = 1.0):
        self.path = Path(path)
        self.record_dtype = np.dtype(METADATA_DTYPE.descr + [("data", np.dtype(dtype), (int(values_per_slot),))])
        self.flush_interval = flush_interval
        self.rows = 0
        self._rec = np.zeros(1, dtype=self.record_dtype)
        descr = np.lib.format.dtype_to_descr(self.record_dtype)
        self._template = "{'descr': " + repr(descr) + ", 'fortran_order': False, 'shape': (%d,), }"
        longest = len(self._template % (2**63 - 1)) + 1
        self._version = (1, 0) if longest + 10 < 65535 else (2, 0)
        prefix = 10 if self._version == (1, 0) else 12
        self._header_len = ((prefix + longest + 63) // 64) * 64
        self._file = open(self.path, "wb")
        self._write_header()
        self._last_flush = time.monotonic()

    def _write_header(self) -> None:
        text = self._template % self.rows
        prefix = 10 if self._version == (1, 0) else 12
        body_len = self._header_len - prefix
        body = (text + " " * (body_len - len(text) - 1) + "\n").encode("latin1")
        size = body_len.to_bytes(2 if self._version == (1, 0) else 4, "little")
        self._file.seek(0)
        self._file.write(b"\x93NUMPY" + bytes(self._version) + size + body)
        self._file.seek(0, os.SEEK_END)

    def append(self, metadata: Sequence[float], data: np.ndarray) -> None:
        """Append one event (copied)."""
        rec = self._rec
        rec["counter"], rec["timestamp"], rec["deadtime"] = metadata
        rec["data"][0] = data
        self._file.write(rec.tobytes())
        self.rows += 1
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def flush(self) -> None:
        """Make the file on disk valid up to the last appended record."""
        self._file.flush()
        self._write_header()
        self._file.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            try:
                self.flush()
            finally:
                self._file.close()

    def __enter__(self) -> NpyWaveformWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _FileExporter(_ReaderAccess):
    """Base of the exporter access classes: output path from the config."""

    suffix = ""

    def __init__(self, source_list=None, config_dict=None, **rb_info):
        super().__init__(source_list, config_dict, rb_info)
        if config_dict is None:
            raise ValueError(
                f"{type(self).__name__}: config_dict is missing; it needs at least directory_prefix "
                f"(set by the run control) and filename"
            )
        prefix = self.config_dict.get("directory_prefix", ".")
        self.filename = str(self.config_dict.get("filename", self.source_name))
        self.flush_interval = float(self.config_dict.get("flush_interval", 1.0))
        self.path = Path(prefix) / (self.filename + self.suffix)
        self.dtype = np.dtype(self.source.dtype)
        self.values_per_slot = int(self.source.values_per_slot)


class rb_toTxtfile(_FileExporter):
    """Export a buffer with one value per field to a text table (called with ``()``).

    Config: ``filename`` (without suffix), ``header_alias`` (column name -> header
    text), ``sep`` (default tab, giving ``.txt``; any other separator gives ``.csv``).
    """

    def __init__(self, source_list=None, config_dict=None, **rb_info):
        sep = (config_dict or {}).get("sep", "\t")
        self.suffix = ".txt" if sep == "\t" else ".csv"
        super().__init__(source_list, config_dict, **rb_info)
        self.sep = sep
        if self.values_per_slot != 1:
            raise ValueError(
                f"rb_toTxtfile: buffer {self.source_name} has {self.values_per_slot} values per slot; a text table "
                f"holds one value per field (channel_per_slot: 1); use rb_toParquetfile or rb_toWaveformfile"
            )
        alias = self.config_dict.get("header_alias", {}) or {}
        names = METADATA_COLUMNS + [c for c, _ in _field_layout(self.dtype)]
        self.header = [str(alias.get(n, n)) for n in names]

    def __call__(self) -> None:
        with TextTableWriter(self.path, self.header, self.sep, self.flush_interval) as out:
            for data, md in self.events():
                rec = data[0]
                values = list(rec) if self.dtype.names else [rec]
                out.write([int(md[0]), repr(float(md[1])), repr(float(md[2])), *values])
        self.logger.info("rb_toTxtfile: %d events from %s written to %s", out.rows, self.source_name, self.path)


class rb_toParquetfile(_FileExporter):
    """Export a buffer to one Parquet file ``<filename>.parquet`` (called with ``()``)."""

    suffix = ".parquet"

    def __init__(self, source_list=None, config_dict=None, **rb_info):
        super().__init__(source_list, config_dict, **rb_info)
        self.row_group_size = int(self.config_dict.get("row_group_size", 1000))

    def __call__(self) -> None:
        with ParquetTableWriter(
            self.path, self.dtype, self.values_per_slot, self.row_group_size, self.flush_interval
        ) as out:
            for data, md in self.events():
                out.append(md, data)
        self.logger.info("rb_toParquetfile: %d events from %s written to %s", out.rows, self.source_name, self.path)


class rb_toWaveformfile(_FileExporter):
    """Export whole slots (waveforms) to one ``<filename>.npy`` file (called with ``()``)."""

    suffix = ".npy"

    def __call__(self) -> None:
        with NpyWaveformWriter(self.path, self.dtype, self.values_per_slot, self.flush_interval) as out:
            for data, md in self.events():
                out.append(md, data)
        self.logger.info("rb_toWaveformfile: %d events from %s written to %s", out.rows, self.source_name, self.path)
