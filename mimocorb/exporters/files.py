"""What every file exporter shares: new files that appear complete, flushing on time, and
the loop that reads a buffer into a file.

- :func:`create_file`: a new file that holds its header from the moment it appears; an
  existing file is never replaced (two exporters can never write into one file).
- :class:`Flushing`: a file writer flushed at least every ``flush_interval`` seconds,
  after a write and while no event comes.
- :class:`FileExporter`: the base of the exporter access classes (``rb_toTxtfile``,
  ``rb_toParquetfile``, ``rb_toWaveformfile``): the output path from the config, one file
  per exporter process (``<filename>-<k>.<suffix>`` with ``num_process: N > 1``), the export
  loop, and the report of the file and its events to the run control (``summary.json``).

A request to finish (SIGTERM) lets the event in hand be written completely first; the file
is then closed properly.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np

from mimocorb.daq.access import ReaderAccess
from mimocorb.daq.run_log import report_output
from mimocorb.daq.worker import WorkerTerminated, current_worker, finish_after
from mimocorb.mimo_buffer import METADATA_DTYPE
from mimocorb.sources.config_check import ConfigReader, SinkLayout

logger = logging.getLogger(__name__)

#: The metadata columns every exported event starts with.
METADATA_COLUMNS = list(METADATA_DTYPE.names)

#: Config keys of every file exporter (:class:`FileExporter`).
COMMON_KEYS = ("filename", "flush_interval", "max_events")


def aside_name(path: Path) -> Path:
    """A private name beside ``path`` for a file that is written before it appears under ``path``."""
    return path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.new")


def link_new(aside: Path, path: Path) -> bool:
    """Give the file ``aside`` the name ``path`` as well; an existing ``path`` is never replaced.

    Returns False on a file system without hard links (nothing done: the caller creates
    the file in place). The caller removes ``aside`` afterwards.

    Raises
    ------
    FileExistsError
        ``path`` exists already (two writers of one file would corrupt it).
    """
    try:
        os.link(aside, path)
    except FileExistsError:
        raise FileExistsError(
            f"{path} exists already: another exporter (or exporter process) writes a file of this name; "
            f"give each exporter its own 'filename'"
        ) from None
    except OSError:
        return False
    return True


def create_file(path: Path, header: bytes = b"", text: bool = False) -> Any:
    """A new file that holds ``header`` from the moment it appears at ``path``, open for appending.

    The header is written aside and the file linked into place, so a reader (or a kill) never
    finds a file without its header; an existing file is an error, never replaced (two writers
    of one file corrupt it). A binary file is opened for reading and writing (its header can
    be rewritten), at its end.
    """
    aside = aside_name(path)
    try:
        with open(aside, "xb") as f:
            f.write(header)
        if not link_new(aside, path):  # a file system without hard links: create it in place
            with open(path, "xb") as f:
                f.write(header)
    finally:
        aside.unlink(missing_ok=True)
    if text:
        return open(path, "a", encoding="utf-8", buffering=1 << 16)
    f = open(path, "r+b")
    f.seek(0, os.SEEK_END)
    return f


class Flushing:
    """A file writer that flushes at least every ``flush_interval`` seconds (after a write, and
    when called idle) and closes its file at the end of a ``with`` block."""

    flush_interval: float
    _last_flush: float

    def flush(self) -> None:  # pragma: no cover - every writer defines it
        raise NotImplementedError

    def close(self) -> None:  # pragma: no cover - every writer defines it
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _flush_if_due(self) -> None:
        if time.monotonic() - self._last_flush >= self.flush_interval:
            self.flush()

    def idle(self) -> None:
        """Called while no event comes: flush if the interval has passed."""
        self._flush_if_due()


def field_layout(dtype: np.dtype) -> list[tuple[str, Optional[str]]]:
    """(column name, field name or None for a plain buffer)."""
    return [(n, n) for n in dtype.names] if dtype.names else [("data", None)]


class FileExporter(ReaderAccess):
    """Base of the exporter access classes: output path from the config, the export loop.

    Subclasses set ``suffix`` and define ``_open()`` (the file writer) and
    ``_put(out, data, metadata)`` (one event into it). Config keys of every exporter:
    ``filename`` (default: the buffer name), ``directory_prefix`` (the run folder, set by
    the run control), ``flush_interval`` (s, default 1.0), ``max_events`` (write the first
    N events of this process's share, read and drop the rest; 0 or missing: all).
    """

    suffix = ""
    #: The packaged function that uses this class (for messages), and its config keys beside COMMON_KEYS.
    function = "exporter"
    config_keys: tuple[str, ...] = ()

    @classmethod
    def check(
        cls, config_dict: Optional[Mapping], source: Optional[Mapping] = None, warn: bool = False, who: str = ""
    ) -> ConfigReader:
        """Check the config keys (and, given the setup of the buffer read, ``source``, that the
        format can hold its events); raise ValueError naming the key, the value and what is expected.

        ``warn``: log the keys this exporter does not use (the packaged function's check at
        setup; a 1.x user module's config holds keys of its own). ``who`` names the caller in
        messages (default: the packaged function; the access class when a 1.x module uses it)."""
        cfg = ConfigReader(who or cls.function, config_dict)
        cfg.string("filename")
        cfg.number("flush_interval", 1.0, minimum=0.0, exclusive_minimum=True, unit="s")
        cfg.integer("max_events", 0, minimum=0)
        layout = None
        if source is not None:
            layout = SinkLayout(
                str(source.get("name", "source")), np.dtype(source["dtype"]), int(source["values_per_slot"])
            )
            clash = [n for n in (layout.dtype.names or ()) if n in METADATA_COLUMNS]
            if clash:
                raise ValueError(
                    f"{cfg.source}: buffer {layout.name} has fields named like the metadata columns "
                    f"({', '.join(clash)}); its file would have two columns of one name: rename the fields"
                )
        cls._check_format(cfg, layout)
        if warn:
            cfg.warn_unknown(COMMON_KEYS + cls.config_keys)
        return cfg

    @classmethod
    def _check_format(cls, cfg: ConfigReader, layout: Optional[SinkLayout]) -> None:
        """The format's own keys, and whether it holds events of ``layout`` (None: not known yet)."""

    def __init__(self, source_list=None, config_dict=None, **rb_info):
        super().__init__(source_list, config_dict, rb_info)
        if config_dict is None:
            raise ValueError(
                f"{type(self).__name__}: config_dict is missing; it needs at least directory_prefix "
                f"(set by the run control) and filename"
            )
        prefix = self.config_dict.get("directory_prefix", ".")
        self.worker = current_worker()
        self.filename = str(self.config_dict.get("filename", self.source_name))
        self.flush_interval = float(self.config_dict.get("flush_interval", 1.0))
        self.max_events = int(self.config_dict.get("max_events") or 0)  # 0: every event
        worker = self.worker
        # several processes of one exporter share the events: each writes its own file
        stem = self.filename if worker is None or worker.count == 1 else f"{self.filename}-{worker.index}"
        self.path = Path(prefix) / (stem + self.suffix)
        self.dtype = np.dtype(self.source.dtype)
        self.values_per_slot = int(self.source.values_per_slot)
        layout = {"name": self.source_name, "dtype": self.dtype, "values_per_slot": self.values_per_slot}
        self.check(self.config_dict, layout, who=type(self).__name__)  # the check of the setup, without warnings

    def _open(self) -> Any:  # pragma: no cover - every exporter defines it
        raise NotImplementedError

    def _put(self, out: Any, data: np.ndarray, md: tuple) -> None:  # pragma: no cover
        raise NotImplementedError

    def __call__(self) -> None:
        written = True  # the event in hand (if any) is in the file
        kept = 0  # events handed to the writer (its `rows` may not count those it still collects)
        out = self._open()
        try:
            with out:
                for item in self.events(self.flush_interval):
                    if item is None:
                        out.idle()  # no event for a while: the file is still flushed on time
                        continue
                    if self.max_events and kept >= self.max_events:
                        continue  # read and dropped: consumed, not written
                    written = False
                    with finish_after():  # a request to finish waits until the event is in the file
                        self._put(out, *item)
                        kept += 1
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


def packaged_check(exporter: type[FileExporter]) -> Callable[..., None]:
    """The ``check_config`` of a packaged sink that uses ``exporter`` (called at setup, before anything starts)."""

    def check_config(
        config_dict: Optional[Mapping],
        sink_setups: Optional[Sequence[Mapping]] = None,
        source_setups: Optional[Sequence[Mapping]] = None,
    ) -> None:
        """Raise ValueError for a bad configuration of this sink; ``source_setups``: the buffer(s)
        it reads (``name``, ``dtype``, ``values_per_slot``), of which it exports the first
        (``sink_setups``, the buffers it writes, are none of its business)."""
        exporter.check(config_dict, source_setups[0] if source_setups else None, warn=True)

    check_config.__qualname__ = check_config.__name__ = "check_config"
    return check_config


__all__ = [
    "COMMON_KEYS",
    "METADATA_COLUMNS",
    "FileExporter",
    "Flushing",
    "aside_name",
    "create_file",
    "field_layout",
    "link_new",
    "packaged_check",
]
