"""Waveforms: one ``.npy`` file of records ``(counter, timestamp, deadtime, data[values_per_slot])``
that ``numpy.load`` reads back. Its header (the record count) is rewritten at least once
a second, so the file is valid (holding the events up to the last rewrite) from its
creation on, even if the process is killed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mimocorb.exporters.files import FileExporter, Flushing, create_file, packaged_check
from mimocorb.mimo_buffer import METADATA_DTYPE


class NpyWaveformWriter(Flushing):
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
        self._file = create_file(self.path, self._header())  # valid (0 records) from its creation on
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


class rb_toWaveformfile(FileExporter):
    """Export whole slots (waveforms) to one ``<filename>.npy`` file (called with ``()``)."""

    suffix = ".npy"
    function = "save_waveforms"

    def _open(self) -> NpyWaveformWriter:
        return NpyWaveformWriter(self.path, self.dtype, self.values_per_slot, self.flush_interval)

    def _put(self, out: NpyWaveformWriter, data: np.ndarray, md: tuple) -> None:
        out.append(md, data)


def save_waveforms(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info) -> None:
    """Packaged sink: whole slots (waveforms) of the first source buffer into one ``.npy`` file.

    Config keys: ``filename`` (default: the buffer name; ``.npy``), ``flush_interval``
    (s, default 1.0), ``max_events`` (keep only the first N events; the rest are read and
    dropped; 0: all).
    """
    rb_toWaveformfile(source_list=source_list, config_dict=config_dict, **rb_info)()


save_waveforms.check_config = packaged_check(rb_toWaveformfile)


__all__ = ["NpyWaveformWriter", "rb_toWaveformfile", "save_waveforms"]
