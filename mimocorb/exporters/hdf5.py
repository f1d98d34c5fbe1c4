"""HDF5 files (needs ``h5py``, the ``hdf5`` extra): one file ``<filename>.h5`` per run.

Layout (what :class:`mimocorb.sources.recordings.Hdf5Recording`, the replay source, reads):

- at the root one chunked, extendable dataset per field of the buffer, named like the
  field (a plain buffer: ``data``): shape ``(N,)`` for one value per slot, ``(N,
  values_per_slot)`` for waveforms;
- the metadata datasets ``counter`` (int64), ``timestamp`` (float64, s since the epoch)
  and ``deadtime`` (float64), shape ``(N,)``;
- root attributes ``mimocorb_version``, ``buffer`` (the buffer's name),
  ``values_per_slot``, ``dtype`` (JSON list of ``[name, type]``), ``setup`` (the setup
  file's YAML text, empty outside a run) and ``config`` (the exporter's configuration as
  JSON text).

The events are collected in memory and written a chunk at a time (``chunk_events``
events, by default as many as make about 1 MiB per field); the file is flushed -- the
pending events written and HDF5's metadata put on disk -- at least every
``flush_interval`` seconds, also while no event comes, and when the exporter ends
(Ctrl-C, SIGTERM, the run's end or a failure of its own). A writer killed with SIGKILL
leaves a file that opens and holds the events up to its last flush: the file is written
with HDF5's default (earliest) format, which keeps no "file is open" mark on disk, and
HDF5 keeps the metadata changed since the last flush (the dataset sizes, the chunk
index) in its cache -- the few objects of this file fit in it -- so between two flushes
only raw chunk data is written, beyond what the metadata of the last flush reaches.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from mimocorb._version import __version__
from mimocorb.exporters.files import (
    METADATA_COLUMNS,
    FileExporter,
    Flushing,
    aside_name,
    field_layout,
    link_new,
    packaged_check,
)
from mimocorb.mimo_buffer import METADATA_DTYPE
from mimocorb.sources.config_check import ConfigReader, SinkLayout
from mimocorb.sources.optional import require

#: Target size of one chunk of one dataset: HDF5's chunk cache holds 1 MiB per dataset, so a
#: chunk of this size that is filled over several writes stays in memory until complete.
CHUNK_BYTES = 1 << 20
#: Compression filters offered (None: no compression, the fastest).
COMPRESSIONS = ("gzip", "lzf")


def default_chunk_events(dtype: Any, values_per_slot: int) -> int:
    """Events per chunk: about :data:`CHUNK_BYTES` for the widest field, between 1 and 65,536."""
    dt = np.dtype(dtype)
    widest = max((dt[f].itemsize for _, f in field_layout(dt) if f), default=dt.itemsize)
    return int(min(65536, max(1, CHUNK_BYTES // max(1, widest * int(values_per_slot)))))


def dtype_json(dtype: Any) -> str:
    """The slot dtype as JSON ``[[name, type], ...]`` (a plain dtype: one field ``data``)."""
    dt = np.dtype(dtype)
    return json.dumps([[c, (dt[f] if f else dt).str] for c, f in field_layout(dt)])


class Hdf5Writer(Flushing):
    """One HDF5 file per run: a dataset per field and per metadata column, extended a chunk at a time.

    Parameters
    ----------
    path : path-like
        The ``.h5`` file; an existing file is never replaced.
    dtype : dtype
        Slot dtype (structured or plain).
    values_per_slot : int
        Values per slot; > 1 gives 2-D datasets ``(N, values_per_slot)``.
    attrs : mapping, optional
        Further root attributes (``buffer``, ``setup``, ``config``).
    chunk_events : int, optional
        Events per chunk (default: :func:`default_chunk_events`).
    compression : str, optional
        ``gzip`` or ``lzf`` (default: none).
    flush_interval : float
        Seconds between flushes at most.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        dtype: Any,
        values_per_slot: int,
        attrs: Optional[Mapping[str, Any]] = None,
        chunk_events: Optional[int] = None,
        compression: Optional[str] = None,
        flush_interval: float = 1.0,
    ):
        h5py = require("h5py", "the HDF5 exporter")
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.values_per_slot = int(values_per_slot)
        self.chunk_events = int(chunk_events or default_chunk_events(self.dtype, self.values_per_slot))
        self.flush_interval = flush_interval
        self.rows = 0  # events in the datasets (on disk from the next flush on)
        self._md = np.zeros(self.chunk_events, dtype=METADATA_DTYPE)
        # one contiguous block per field: what a dataset takes without another copy
        self._fields = field_layout(self.dtype)
        self._cols = [
            np.zeros((self.chunk_events, self.values_per_slot), dtype=self.dtype[f] if f else self.dtype)
            for _, f in self._fields
        ]
        self._n = 0  # events collected in memory, not yet in the datasets
        # The file is made complete (datasets, attributes) aside and linked into place: it
        # appears with its layout, and an existing file of that name is never touched.
        aside = aside_name(self.path)
        try:
            self._f = h5py.File(aside, "w-")
            try:
                self._make_layout(attrs or {}, compression)
                self._f.flush()
                if not link_new(aside, self.path):  # a file system without hard links: renamed instead
                    if self.path.exists():
                        raise FileExistsError(f"{self.path} exists already: give each exporter its own 'filename'")
                    os.rename(aside, self.path)
            except BaseException:
                self._f.close()
                raise
        finally:
            aside.unlink(missing_ok=True)
        self._last_flush = time.monotonic()

    def _make_layout(self, attrs: Mapping[str, Any], compression: Optional[str]) -> None:
        f, vps, n = self._f, self.values_per_slot, self.chunk_events
        self._datasets = []  # one per field, in the order of self._fields
        for c in METADATA_COLUMNS:
            f.create_dataset(c, shape=(0,), maxshape=(None,), dtype=METADATA_DTYPE[c], chunks=(n,))
        for col, fld in self._fields:
            t = self.dtype[fld] if fld else self.dtype
            shape, maxshape, chunks = ((0,), (None,), (n,)) if vps == 1 else ((0, vps), (None, vps), (n, vps))
            ds = f.create_dataset(col, shape=shape, maxshape=maxshape, dtype=t, chunks=chunks, compression=compression)
            self._datasets.append(ds)
        self._md_sets = [f[c] for c in METADATA_COLUMNS]
        f.attrs["mimocorb_version"] = __version__
        f.attrs["values_per_slot"] = vps
        f.attrs["dtype"] = dtype_json(self.dtype)
        for key in ("buffer", "setup", "config"):
            f.attrs[key] = str(attrs.get(key, ""))

    def append(self, metadata: Sequence[float], data: np.ndarray) -> None:
        """Collect one event (copied); a full chunk is written to the datasets."""
        i = self._n
        self._md[i] = tuple(metadata)
        for col, (_, fld) in zip(self._cols, self._fields):
            col[i] = data[fld] if fld else data
        self._n = i + 1
        if self._n >= self.chunk_events:
            self._write_pending()
        self._flush_if_due()

    def _write_pending(self) -> None:
        n = self._n
        if n == 0:
            return
        a, b = self.rows, self.rows + n
        for ds, c in zip(self._md_sets, METADATA_COLUMNS):
            ds.resize((b,))
            ds[a:b] = self._md[c][:n]
        for ds, col in zip(self._datasets, self._cols):
            ds.resize(b, axis=0)
            ds[a:b] = col[:n, 0] if self.values_per_slot == 1 else col[:n]
        self.rows = b
        self._n = 0

    def flush(self) -> None:
        """Write the collected events and put the file on disk in a complete, valid state."""
        self._write_pending()
        self._f.flush()
        self._last_flush = time.monotonic()

    @property
    def closed(self) -> bool:
        return not self._f.id.valid

    def close(self) -> None:
        if not self.closed:
            try:
                self._write_pending()
            finally:
                self._f.close()


class rb_toHdf5file(FileExporter):
    """Export a buffer to one HDF5 file ``<filename>.h5`` (called with ``()``)."""

    suffix = ".h5"
    function = "save_hdf5"
    config_keys = ("chunk_events", "compression")

    @classmethod
    def _check_format(cls, cfg: ConfigReader, layout: Optional[SinkLayout]) -> None:
        cfg.integer("chunk_events", None, minimum=1)
        cfg.string("compression", None, choices=COMPRESSIONS)

    def __init__(self, source_list=None, config_dict=None, **rb_info):
        super().__init__(source_list, config_dict, **rb_info)
        self.chunk_events = self.config_dict.get("chunk_events")
        self.compression = self.config_dict.get("compression")

    def _attrs(self) -> dict[str, str]:
        setup = ""
        if self.worker is not None and self.worker.setup_file:
            try:
                setup = Path(self.worker.setup_file).read_text(encoding="utf-8")
            except OSError as exc:  # the attribute says why it is empty
                setup = f"# setup file {self.worker.setup_file} could not be read: {exc}"
        config = json.dumps(self.config_dict, default=str, sort_keys=True)
        return {"buffer": self.source_name, "setup": setup, "config": config}

    def _open(self) -> Hdf5Writer:
        return Hdf5Writer(
            self.path,
            self.dtype,
            self.values_per_slot,
            self._attrs(),
            self.chunk_events,
            self.compression,
            self.flush_interval,
        )

    def _put(self, out: Hdf5Writer, data: np.ndarray, md: tuple) -> None:
        out.append(md, data)


def save_hdf5(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info) -> None:
    """Packaged sink: every event of the first source buffer into one HDF5 file.

    Config keys: ``filename`` (default: the buffer name; ``.h5``), ``chunk_events``
    (events per chunk; default: about 1 MiB per field), ``compression`` (``gzip`` or
    ``lzf``; default none), ``flush_interval`` (s, default 1.0), ``max_events`` (write
    only the first N events; the rest are read and dropped; 0: all). Needs ``h5py``.
    """
    rb_toHdf5file(source_list=source_list, config_dict=config_dict, **rb_info)()


save_hdf5.check_config = packaged_check(rb_toHdf5file)


def read_dataframe(path: str | os.PathLike) -> Any:
    """A file of :func:`save_hdf5` as a :class:`pandas.DataFrame`: one row per event, the metadata
    columns, then one column per field (waveform fields: a column of 1-D arrays).

    ``pandas.read_hdf`` reads only PyTables' own layout, not plain HDF5 datasets; this is
    the way to pandas (the datasets themselves are read with h5py).
    """
    h5py = require("h5py", "read_dataframe")
    pd = require("pandas", "read_dataframe")
    with h5py.File(path, "r") as f:
        columns = {c: f[c][:] for c in METADATA_COLUMNS}
        for name, ds in f.items():
            if name in columns or not isinstance(ds, h5py.Dataset):
                continue
            values = ds[:]
            columns[name] = values if values.ndim == 1 else list(values)
    return pd.DataFrame(columns)


__all__ = ["Hdf5Writer", "default_chunk_events", "rb_toHdf5file", "read_dataframe", "save_hdf5"]
