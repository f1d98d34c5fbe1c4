"""ROOT files through uproot (the ``root`` extra): one file ``<filename>.root`` per run.

The file holds one TTree (name ``tree``, default ``events``) with one branch per
metadata column -- ``counter`` (Long64_t), ``timestamp``, ``deadtime`` (Double_t) --
and one branch per field of the buffer (a plain buffer: ``data``): a scalar branch for
one value per slot, a fixed-size array branch (``chA[4250]/F``) for waveforms.

Events are collected in memory and written as one basket per branch when
``basket_events`` of them have come, and at least every ``flush_interval`` seconds
while any are pending (so a slow run makes smaller baskets). The default basket holds
about 1 MiB of the widest branch (between 1 and 65,536 events): ROOT's own default of
32 kB is meant for interactive trees, while reading whole columns -- what analyses do
with uproot or RDataFrame -- is fastest with baskets of several hundred kB and more, and
each basket costs uproot a rewrite of the TTree's metadata. After each basket the file
is complete and valid (uproot rewrites the TTree and the directory); a writer killed
between two baskets leaves the file as of the last one. Uncompressed by default (the
speed of a DAQ); ``compression: zlib`` (or ``lzma``, ``lz4``, ``zstd``, the last two
need their Python packages) with ``compression_level``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

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

#: Target size of one basket of the widest branch.
BASKET_BYTES = 1 << 20
#: compression key -> uproot's class name
COMPRESSIONS = {"zlib": "ZLIB", "lzma": "LZMA", "lz4": "LZ4", "zstd": "ZSTD"}


def default_basket_events(dtype: Any, values_per_slot: int) -> int:
    """Events per basket: about :data:`BASKET_BYTES` for the widest branch, between 1 and 65,536."""
    dt = np.dtype(dtype)
    widest = max((dt[f].itemsize for _, f in field_layout(dt) if f), default=dt.itemsize)
    return int(min(65536, max(1, BASKET_BYTES // max(1, widest * int(values_per_slot)))))


class RootTreeWriter(Flushing):
    """One ROOT file with one TTree, a branch per field and per metadata column.

    Parameters
    ----------
    path : path-like
        The ``.root`` file; an existing file is never replaced.
    dtype : dtype
        Slot dtype (structured or plain).
    values_per_slot : int
        Values per slot; > 1 gives fixed-size array branches.
    tree : str
        Name of the TTree.
    title : str
        Title of the TTree.
    basket_events : int, optional
        Events per basket (default: :func:`default_basket_events`).
    compression : str, optional
        ``zlib``, ``lzma``, ``lz4`` or ``zstd`` (default: none).
    compression_level : int
        Level of the compression (1 fastest).
    flush_interval : float
        Seconds a pending event waits at most before it is written.
    """

    def __init__(
        self,
        path: str | os.PathLike,
        dtype: Any,
        values_per_slot: int,
        tree: str = "events",
        title: str = "",
        basket_events: Optional[int] = None,
        compression: Optional[str] = None,
        compression_level: int = 1,
        flush_interval: float = 1.0,
    ):
        uproot = require("uproot", "the ROOT exporter")
        self.path = Path(path)
        self.dtype = np.dtype(dtype)
        self.values_per_slot = int(values_per_slot)
        self.basket_events = int(basket_events or default_basket_events(self.dtype, self.values_per_slot))
        self.flush_interval = flush_interval
        self.rows = 0  # events in the tree's baskets
        self._md = np.zeros(self.basket_events, dtype=METADATA_DTYPE)
        self._columns = field_layout(self.dtype)
        # one contiguous block per field: uproot turns each into one big-endian basket
        self._cols = [
            np.zeros((self.basket_events, self.values_per_slot), dtype=self.dtype[f] if f else self.dtype)
            for _, f in self._columns
        ]
        self._n = 0  # events collected, not yet in a basket
        codec = getattr(uproot, COMPRESSIONS[compression])(int(compression_level)) if compression else None
        branches: dict[str, Any] = {c: METADATA_DTYPE[c] for c in METADATA_COLUMNS}
        for col, fld in self._columns:
            t = self.dtype[fld] if fld else self.dtype
            branches[col] = t if self.values_per_slot == 1 else np.dtype((t, (self.values_per_slot,)))
        # written aside with its (empty) tree and linked into place: the file appears complete,
        # and an existing file of that name is never touched
        aside = aside_name(self.path)
        try:
            self._file = uproot.create(aside, compression=codec)
            try:
                self._tree = self._file.mktree(tree, branches, title=title)
                self._file.file.sink.flush()
                if not link_new(aside, self.path):  # a file system without hard links: renamed instead
                    if self.path.exists():
                        raise FileExistsError(f"{self.path} exists already: give each exporter its own 'filename'")
                    os.rename(aside, self.path)
            except BaseException:
                self._file.close()
                raise
        finally:
            aside.unlink(missing_ok=True)
        self._last_flush = time.monotonic()

    def append(self, metadata: Sequence[float], data: np.ndarray) -> None:
        """Collect one event (copied); ``basket_events`` of them are written as one basket."""
        i = self._n
        self._md[i] = tuple(metadata)
        for col, (_, fld) in zip(self._cols, self._columns):
            col[i] = data[fld] if fld else data
        self._n = i + 1
        if self._n >= self.basket_events:
            self._write_pending()
        self._flush_if_due()

    def _write_pending(self) -> None:
        n = self._n
        if n == 0:
            return
        arrays = {c: self._md[c][:n] for c in METADATA_COLUMNS}
        for (name, _), col in zip(self._columns, self._cols):
            arrays[name] = col[:n, 0] if self.values_per_slot == 1 else col[:n]
        self._tree.extend(arrays)  # one basket per branch; the file is complete afterwards
        self.rows += n
        self._n = 0

    def flush(self) -> None:
        """Write the collected events as a basket and the file to disk."""
        self._write_pending()
        self._file.file.sink.flush()
        self._last_flush = time.monotonic()

    def close(self) -> None:
        if not self._file.closed:
            try:
                self._write_pending()
            finally:
                self._file.close()


class rb_toRootfile(FileExporter):
    """Export a buffer to one ROOT file ``<filename>.root`` with one TTree (called with ``()``)."""

    suffix = ".root"
    function = "save_root"
    config_keys = ("tree", "title", "basket_events", "compression", "compression_level")

    @classmethod
    def _check_format(cls, cfg: ConfigReader, layout: Optional[SinkLayout]) -> None:
        cfg.string("tree", "events")
        cfg.raw("title")
        cfg.integer("basket_events", None, minimum=1)
        cfg.string("compression", None, choices=COMPRESSIONS)
        cfg.integer("compression_level", 1, minimum=1, maximum=9)

    def _open(self) -> RootTreeWriter:
        c = self.config_dict
        return RootTreeWriter(
            self.path,
            self.dtype,
            self.values_per_slot,
            tree=str(c.get("tree") or "events"),
            title=str(c.get("title") or f"mimocorb buffer {self.source_name}"),
            basket_events=c.get("basket_events"),
            compression=c.get("compression"),
            compression_level=int(c.get("compression_level") or 1),
            flush_interval=self.flush_interval,
        )

    def _put(self, out: RootTreeWriter, data: np.ndarray, md: tuple) -> None:
        out.append(md, data)


def save_root(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info) -> None:
    """Packaged sink: every event of the first source buffer into a TTree of one ROOT file.

    Config keys: ``filename`` (default: the buffer name; ``.root``), ``tree`` (default
    ``events``), ``title``, ``basket_events`` (events per basket; default: about 1 MiB of
    the widest branch), ``compression`` (``zlib``, ``lzma``, ``lz4``, ``zstd``; default
    none), ``compression_level`` (1..9, default 1), ``flush_interval`` (s, default 1.0),
    ``max_events`` (write only the first N events; the rest are read and dropped; 0:
    all). Needs ``uproot``.
    """
    rb_toRootfile(source_list=source_list, config_dict=config_dict, **rb_info)()


save_root.check_config = packaged_check(rb_toRootfile)

__all__ = ["RootTreeWriter", "default_basket_events", "rb_toRootfile", "save_root"]
