"""Exporters: write the events of a buffer to files in the run folder.

Three formats, each one file per run and exporter process. An exporter function with
``num_process: N > 1`` shares its buffer's events among N processes; each writes its own
complete file, named ``<filename>-<k>.<suffix>`` for k = 1..N (with one process:
``<filename>.<suffix>``), and together they hold every event once. A file is created
only if it does not exist yet, so two exporters can never write into one file. Each
exporter reports its file and its number of events to the run control, which lists
them in ``summary.json``.

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

"At least once a second" holds also when no event comes: the exporters wait for events
with a bound and flush while idle. A request to finish (SIGTERM) lets the event in hand
be written completely first; the file is then closed properly.

Config keys of the exporter classes: ``filename`` (default: the buffer name),
``directory_prefix`` (set by the run control), ``header_alias`` and ``sep`` (text),
``row_group_size`` (Parquet, default 1000), ``flush_interval`` (s, default 1.0).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from mimocorb.daq.access import _ReaderAccess
from mimocorb.daq.run_log import report_output
from mimocorb.daq.worker import WorkerTerminated, current_worker, finish_after
from mimocorb.mimo_buffer import METADATA_DTYPE

logger = logging.getLogger(__name__)

METADATA_COLUMNS = list(METADATA_DTYPE.names)


def _create(path: Path, header: bytes = b"", text: bool = False) -> Any:
    """A new file that holds ``header`` from the moment it appears at ``path``, open for appending.

    The header is written aside and the file linked into place, so a reader (or a kill) never
    finds a file without its header; an existing file is an error, never replaced (two writers
    of one file corrupt it). A binary file is opened for reading and writing (its header can
    be rewritten), at its end.
    """
    aside = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.new")
    try:
        with open(aside, "xb") as f:
            f.write(header)
        try:
            os.link(aside, path)
        except FileExistsError:
            raise FileExistsError(
                f"{path} exists already: another exporter (or exporter process) writes a file of this name; "
                f"give each exporter its own 'filename'"
            ) from None
        except OSError:  # a file system without hard links: create it in place
            with open(path, "xb") as f:
                f.write(header)
    finally:
        aside.unlink(missing_ok=True)
    if text:
        return open(path, "a", encoding="utf-8", buffering=1 << 16)
    f = open(path, "r+b")
    f.seek(0, os.SEEK_END)
    return f


class _Flushing:
    """Flush at least every ``flush_interval`` seconds: after a write, and when called idle."""

    flush_interval: float
    _last_flush: float

    def flush(self) -> None:  # pragma: no cover - every writer defines it
        raise NotImplementedError

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def idle(self) -> None:
        """Called while no event comes: flush if the interval has passed."""
        self._flush_if_due()


class TextTableWriter(_Flushing):
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
        self._file = _create(self.path, (sep.join(self.columns) + "\n").encode("utf-8"), text=True)
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

    def __enter__(self) -> TextTableWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _field_layout(dtype: np.dtype) -> list[tuple[str, Optional[str]]]:
    """(column name, field name or None for a plain buffer)."""
    return [(n, n) for n in dtype.names] if dtype.names else [("data", None)]


class ParquetTableWriter(_Flushing):
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
        self._sink = _create(self.path)
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
                try:
                    self._writer.close()  # writes the footer: only now is the file readable
                finally:
                    self._writer = None
                    self._sink.close()

    def __enter__(self) -> ParquetTableWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class NpyWaveformWriter(_Flushing):
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
        longest = self._template % (2**63 - 1)
        try:  # format 1.0/2.0 headers are latin-1 text; 3.0 is UTF-8 (field names beyond latin-1)
            n = len(longest.encode("latin1")) + 1
            self._version, self._encoding = ((1, 0) if n + 10 < 65535 else (2, 0)), "latin1"
        except UnicodeEncodeError:
            n = len(longest.encode("utf-8")) + 1
            self._version, self._encoding = (3, 0), "utf-8"
        self._prefix = 10 if self._version == (1, 0) else 12
        self._header_len = ((self._prefix + n + 63) // 64) * 64
        self._file = _create(self.path, self._header())  # valid (0 records) from its creation on
        self._last_flush = time.monotonic()

    def _header(self) -> bytes:
        """The fixed-length header naming the records written so far."""
        text = (self._template % self.rows).encode(self._encoding)
        body_len = self._header_len - self._prefix
        size = body_len.to_bytes(2 if self._version == (1, 0) else 4, "little")
        return b"\x93NUMPY" + bytes(self._version) + size + text + b" " * (body_len - len(text) - 1) + b"\n"

    def _write_header(self) -> None:
        self._file.seek(0)
        self._file.write(self._header())
        self._file.seek(0, os.SEEK_END)

    def append(self, metadata: Sequence[float], data: np.ndarray) -> None:
        """Append one event (copied)."""
        rec = self._rec
        rec["counter"], rec["timestamp"], rec["deadtime"] = metadata
        rec["data"][0] = data
        self._file.write(rec.tobytes())
        self.rows += 1
        self._flush_if_due()

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
    """Base of the exporter access classes: output path from the config, the export loop.

    Subclasses set ``suffix`` and define ``_open()`` (the file writer) and
    ``_put(out, data, metadata)`` (one event into it).
    """

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
        worker = current_worker()
        # several processes of one exporter share the events: each writes its own file
        stem = self.filename if worker is None or worker.count == 1 else f"{self.filename}-{worker.index}"
        self.path = Path(prefix) / (stem + self.suffix)
        self.dtype = np.dtype(self.source.dtype)
        self.values_per_slot = int(self.source.values_per_slot)
        clash = [n for n in (self.dtype.names or ()) if n in METADATA_COLUMNS]
        if clash:
            raise ValueError(
                f"{type(self).__name__}: buffer {self.source_name} has fields named like the metadata columns "
                f"({', '.join(clash)}); its file would have two columns of one name: rename the fields"
            )

    def _open(self) -> Any:  # pragma: no cover - every exporter defines it
        raise NotImplementedError

    def _put(self, out: Any, data: np.ndarray, md: tuple) -> None:  # pragma: no cover
        raise NotImplementedError

    def __call__(self) -> None:
        written = True  # the event in hand (if any) is in the file
        out = self._open()
        try:
            with out:
                for item in self.events(self.flush_interval):
                    if item is None:
                        out.idle()  # no event for a while: the file is still flushed on time
                        continue
                    written = False
                    with finish_after():  # a request to finish waits until the event is in the file
                        self._put(out, *item)
                        written = True
        except WorkerTerminated:
            if written:
                self.source.release()  # it is in the file: it counts as consumed
            raise
        finally:
            report_output(str(out.path), out.rows, self.source_name)
            self.logger.info(
                "%s: %d events from %s written to %s", type(self).__name__, out.rows, self.source_name, out.path
            )


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

    def _open(self) -> TextTableWriter:
        return TextTableWriter(self.path, self.header, self.sep, self.flush_interval)

    def _put(self, out: TextTableWriter, data: np.ndarray, md: tuple) -> None:
        rec = data[0]
        values = list(rec) if self.dtype.names else [rec]
        out.write([int(md[0]), repr(float(md[1])), repr(float(md[2])), *values])


class rb_toParquetfile(_FileExporter):
    """Export a buffer to one Parquet file ``<filename>.parquet`` (called with ``()``)."""

    suffix = ".parquet"

    def __init__(self, source_list=None, config_dict=None, **rb_info):
        super().__init__(source_list, config_dict, **rb_info)
        self.row_group_size = int(self.config_dict.get("row_group_size", 1000))

    def _open(self) -> ParquetTableWriter:
        return ParquetTableWriter(self.path, self.dtype, self.values_per_slot, self.row_group_size, self.flush_interval)

    def _put(self, out: ParquetTableWriter, data: np.ndarray, md: tuple) -> None:
        out.append(md, data)


class rb_toWaveformfile(_FileExporter):
    """Export whole slots (waveforms) to one ``<filename>.npy`` file (called with ``()``)."""

    suffix = ".npy"

    def _open(self) -> NpyWaveformWriter:
        return NpyWaveformWriter(self.path, self.dtype, self.values_per_slot, self.flush_interval)

    def _put(self, out: NpyWaveformWriter, data: np.ndarray, md: tuple) -> None:
        out.append(md, data)
