"""Columnar files (needs ``pyarrow``, the ``parquet`` extra), in one of two layouts (config
key ``format``):

- ``file`` (the default): one Parquet file ``<filename>.parquet`` per run, written in row
  groups, one row per event: the metadata columns, then one column per field (a
  fixed-size list column when a slot holds more than one value). The file is completed
  (its footer written) when the exporter ends, also on Ctrl-C and SIGTERM (the run's
  shutdown ends it with SystemExit).
- ``tar``: the layout of mimoCoRB 1.x's ``rb_toParquetfile``, for the scripts of labs that
  read it: a tar archive ``<filename>.tar`` of one Parquet file per event, named
  ``<filename>_<counter>.parquet``, whose columns are the buffer's fields and whose rows
  are the values of the slot (1.x wrote ``pandas.DataFrame(slot).to_parquet()``). The
  counter, time stamp and dead time are also kept in each member's Parquet key-value
  metadata (key ``mimocorb``, JSON), which 1.x readers do not look at. Each member is
  complete in the archive once it has been written (the archive is flushed at least every
  ``flush_interval`` seconds); the end-of-archive blocks are added when the exporter ends.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from mimocorb.exporters.files import (
    METADATA_COLUMNS,
    FileExporter,
    Flushing,
    create_file,
    field_layout,
    packaged_check,
)
from mimocorb.mimo_buffer import METADATA_DTYPE
from mimocorb.sources.config_check import ConfigReader, SinkLayout
from mimocorb.sources.optional import require

#: Values of the config key ``format``: one Parquet file per run, or 1.x's tar of one Parquet file per event.
FORMATS = ("file", "tar")
#: Compressions of the Parquet file (format ``file``); pyarrow's default is snappy.
COMPRESSIONS = ("snappy", "zstd", "gzip", "lz4", "brotli", "none")
#: Key of the Parquet key-value metadata that holds an event's metadata in a tar member.
TAR_METADATA_KEY = b"mimocorb"


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
        compression: str = "snappy",
    ):
        pa = require("pyarrow", "the Parquet exporter")
        self._pa, self._pq = pa, require("pyarrow.parquet", "the Parquet exporter")
        pq = self._pq
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.values_per_slot = int(values_per_slot)
        self.row_group_size = max(1, int(row_group_size))
        self.flush_interval = flush_interval
        self.rows = 0
        self._md = np.zeros(self.row_group_size, dtype=METADATA_DTYPE)
        # one contiguous block per field: what a column is made of without another copy
        self._cols = [
            np.zeros((self.row_group_size, self.values_per_slot), dtype=self.dtype[f] if f else self.dtype)
            for _, f in field_layout(self.dtype)
        ]
        self._n = 0
        self._last_flush = time.monotonic()
        fields = [pa.field(n, pa.from_numpy_dtype(METADATA_DTYPE[n])) for n in METADATA_COLUMNS]
        for col, fld in field_layout(self.dtype):
            t = pa.from_numpy_dtype(self.dtype[fld] if fld else self.dtype)
            fields.append(pa.field(col, t if self.values_per_slot == 1 else pa.list_(t, self.values_per_slot)))
        self.schema = pa.schema(fields)
        self._sink = create_file(self.path)
        # Dictionary encoding pays for columns of few distinct values; waveform samples are not
        # such (it cost 3 times the rest of writing 64 KiB events), so list columns go without it.
        plain = [f.name for f in fields if not pa.types.is_fixed_size_list(f.type)]
        self._writer = pq.ParquetWriter(self._sink, self.schema, compression=compression, use_dictionary=plain)

    def append(self, metadata: Sequence[float], data: np.ndarray) -> None:
        """Buffer one event (copied); a full row group is written out."""
        i = self._n
        self._md[i] = tuple(metadata)
        for col, (_, fld) in zip(self._cols, field_layout(self.dtype)):
            col[i] = data[fld] if fld else data
        self._n = i + 1
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
        for col in self._cols:
            if self.values_per_slot == 1:
                arrays.append(pa.array(col[:n, 0]))
            else:
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(col[:n].ravel()), self.values_per_slot))
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


class TarParquetWriter(Flushing):
    """mimoCoRB 1.x's layout: a tar archive of one Parquet file per event.

    Parameters
    ----------
    path : path-like
        The ``.tar`` file.
    member_stem : str
        Members are named ``<member_stem>_<counter>.parquet`` (1.x: the config's ``filename``).
    dtype : dtype
        Slot dtype (structured: one column per field; plain: one column ``data``).
    values_per_slot : int
        Rows of each member.
    """

    def __init__(
        self, path: str | os.PathLike, member_stem: str, dtype: Any, values_per_slot: int, flush_interval: float = 1.0
    ):
        pa = require("pyarrow", "the Parquet exporter (format: tar)")
        self._pa, self._pq = pa, require("pyarrow.parquet", "the Parquet exporter (format: tar)")
        self.path = Path(path)
        self.member_stem = member_stem
        self.dtype = np.dtype(dtype)
        self.values_per_slot = int(values_per_slot)
        self.flush_interval = flush_interval
        self.rows = 0
        fields = [
            pa.field(c, pa.from_numpy_dtype(self.dtype[f] if f else self.dtype)) for c, f in field_layout(self.dtype)
        ]
        self.schema = pa.schema(fields)
        self._file = create_file(self.path)
        self._tar: Optional[tarfile.TarFile] = tarfile.open(fileobj=self._file, mode="w", format=tarfile.GNU_FORMAT)
        self._last_flush = time.monotonic()

    def append(self, metadata: Sequence[float], data: np.ndarray) -> None:
        """Add one event as the member ``<stem>_<counter>.parquet``."""
        pa = self._pa
        counter, timestamp, deadtime = int(metadata[0]), float(metadata[1]), float(metadata[2])
        columns = [pa.array(np.ascontiguousarray(data[f] if f else data)) for _, f in field_layout(self.dtype)]
        md = {TAR_METADATA_KEY: json.dumps({"counter": counter, "timestamp": timestamp, "deadtime": deadtime})}
        table = pa.Table.from_arrays(columns, schema=self.schema.with_metadata(md))
        buf = io.BytesIO()
        self._pq.write_table(table, buf)
        info = tarfile.TarInfo(name=f"{self.member_stem}_{counter:d}.parquet")
        info.size = buf.tell()
        info.mtime = int(timestamp) if timestamp > 0 else int(time.time())
        buf.seek(0)
        assert self._tar is not None
        self._tar.addfile(info, buf)  # header, then the data padded to 512 bytes: a whole member
        self.rows += 1
        self._flush_if_due()

    def flush(self) -> None:
        """Write the members added so far to the file."""
        self._file.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if self._tar is not None:
            try:
                self._tar.close()  # the end-of-archive blocks
            finally:
                self._tar = None
                self._file.close()


class rb_toParquetfile(FileExporter):
    """Export a buffer to one Parquet file ``<filename>.parquet`` (called with ``()``), or with
    ``format: tar`` to 1.x's tar archive ``<filename>.tar`` of one Parquet file per event."""

    suffix = ".parquet"
    function = "save_parquet"
    config_keys = ("row_group_size", "format", "compression")

    @classmethod
    def _check_format(cls, cfg: ConfigReader, layout: Optional[SinkLayout]) -> None:
        cfg.integer("row_group_size", 1000, minimum=1)
        cfg.string("format", "file", choices=FORMATS)
        cfg.string("compression", "snappy", choices=COMPRESSIONS)

    def __init__(self, source_list=None, config_dict=None, **rb_info):
        self.format = str((config_dict or {}).get("format") or "file")
        self.suffix = ".tar" if self.format == "tar" else ".parquet"
        super().__init__(source_list, config_dict, **rb_info)
        self.row_group_size = int(self.config_dict.get("row_group_size", 1000))
        self.compression = str(self.config_dict.get("compression") or "snappy")

    def _open(self) -> ParquetTableWriter | TarParquetWriter:
        if self.format == "tar":
            # members keep 1.x's names <filename>_<counter>.parquet, also in the archive of process k
            return TarParquetWriter(self.path, self.filename, self.dtype, self.values_per_slot, self.flush_interval)
        return ParquetTableWriter(
            self.path, self.dtype, self.values_per_slot, self.row_group_size, self.flush_interval, self.compression
        )

    def _put(self, out: ParquetTableWriter | TarParquetWriter, data: np.ndarray, md: tuple) -> None:
        out.append(md, data)


def save_parquet(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info) -> None:
    """Packaged sink: every event of the first source buffer into one Parquet file.

    Config keys: ``filename`` (default: the buffer name; ``.parquet``), ``format``
    (``file``, the default: one Parquet file per run; ``tar``: mimoCoRB 1.x's tar archive
    ``<filename>.tar`` of one Parquet file per event, ``<filename>_<counter>.parquet``),
    ``row_group_size`` (default 1000; format ``file``), ``compression`` (``snappy``, the
    default, ``zstd``, ``gzip``, ``lz4``, ``brotli`` or ``none``; format ``file``),
    ``flush_interval`` (s, default 1.0), ``max_events`` (write only the first N events; the
    rest are read and dropped; 0: all). Needs ``pyarrow``.
    """
    rb_toParquetfile(source_list=source_list, config_dict=config_dict, **rb_info)()


save_parquet.check_config = packaged_check(rb_toParquetfile)


__all__ = ["FORMATS", "ParquetTableWriter", "TarParquetWriter", "rb_toParquetfile", "save_parquet"]
