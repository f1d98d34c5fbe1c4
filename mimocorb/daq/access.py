"""The mimoCoRB 1.x access classes that user worker functions build on.

A worker function has the signature
``fn(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info)``;
the lists hold the setup dicts of the buffers it reads, writes and observes, and
``rb_info`` maps buffer names to ``"read"``, ``"write"`` or ``"observe"`` (in the order
of the lists). The classes here wrap :class:`~mimocorb.mimo_buffer.Reader`,
:class:`~mimocorb.mimo_buffer.Writer` and :class:`~mimocorb.mimo_buffer.Observer` for it.

Fixed against 1.x: a finished generator (``StopIteration``) ends a source cleanly; every
slot is published as soon as it is filled (nothing is left held at the end of the run);
pause is honoured (an import holds, a put drops the event and says the run goes on);
the end of the run ends the loops without an exception reaching user code; a filter
result that does not fit the sinks raises :class:`ResultMismatchError` naming the
function and the buffers.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Iterator, Optional, Sequence

import numpy as np

from mimocorb import mimo_buffer as bm
from mimocorb.daq.worker import WorkerTerminated, finish_after, interruptible

logger = logging.getLogger(__name__)

_PAUSE_POLL = 0.02


class ResultMismatchError(ValueError):
    """A user function's result does not fit the buffers it is written to."""


def _names(rb_info: dict, mode: str) -> list[str]:
    return [k for k, v in rb_info.items() if v == mode]


def _fn_name(fn: Any) -> str:
    return getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)


def _dtype_text(dtype: Any) -> str:
    d = np.dtype(dtype)
    if d.names:
        return "[" + ", ".join(f"{n}: {d[n].str.lstrip('<>|=')}" for n in d.names) + "]"
    return str(d)


class _Access:
    """Shared set-up of the access classes: logger, reader, writers, buffer names."""

    def __init__(self, config_dict: Optional[dict], rb_info: dict):
        self.logger = logging.getLogger(f"mimocorb.access.{type(self).__name__}")
        self.config_dict = config_dict if config_dict is not None else {}
        self.rb_info = {k: v for k, v in rb_info.items() if v in ("read", "write", "observe")}
        self.source_names = _names(self.rb_info, "read")
        self.sink_names = _names(self.rb_info, "write")
        self.observe_names = _names(self.rb_info, "observe")

    def _need(self, lst: Optional[Sequence[dict]], what: str) -> Sequence[dict]:
        if not lst:
            raise ValueError(
                f"{type(self).__name__}: expected a non-empty {what} (list of buffer setup dicts), got {lst!r}; "
                f"check RB_assign of this function in the setup file"
            )
        return lst

    def _one(self, lst: Sequence[dict], what: str, names: list[str]) -> dict:
        if len(lst) > 1:
            self.logger.warning(
                "%s: %d buffers in %s (%s); only the first one is used",
                type(self).__name__,
                len(lst),
                what,
                ", ".join(names),
            )
        return lst[0]

    @staticmethod
    def _name(names: list[str], i: int, default: str) -> str:
        return names[i] if i < len(names) else default


class _SlotFiller:
    """Copies user data into a writable slot view, with errors that say what does not fit."""

    def __init__(self, writer: Any, buffer_name: str):
        self.writer = writer
        self.name = buffer_name
        self.dtype = np.dtype(writer.dtype)
        self.fields = list(self.dtype.names or ())
        self.values_per_slot = int(writer.values_per_slot)

    def describe(self) -> str:
        return f"{self.name} ({self.values_per_slot} x {_dtype_text(self.dtype)})"

    def _is_record(self, data: Any) -> bool:
        """True for an array that is exactly one slot: it is copied in one go."""
        return isinstance(data, np.ndarray) and data.dtype == self.dtype and data.shape == (self.values_per_slot,)

    def check_channels(self, data: Any) -> None:
        """Raise if ``data`` would not fit (checked before a slot is claimed: a claimed slot is published)."""
        if self._is_record(data):
            return
        if self.fields and not getattr(getattr(data, "dtype", None), "names", None):
            if len(data) != len(self.fields):
                raise ResultMismatchError(
                    f"data has {len(data)} channels, buffer {self.describe()} has {len(self.fields)} fields"
                )
            shapes = [np.shape(d) for d in data]
        else:
            shapes = [np.shape(data)]
        for i, shp in enumerate(shapes):
            try:
                np.broadcast_shapes(shp, (self.values_per_slot,))
            except ValueError:
                what = f"channel {self.fields[i]!r}" if self.fields else "data"
                raise ResultMismatchError(
                    f"{what} has shape {shp}, buffer {self.describe()} holds {self.values_per_slot} values per slot"
                ) from None

    def fill_channels(self, slot: np.ndarray, data: Any) -> None:
        """1.x import semantics: ``data`` indexable by channel number (or a structured array)."""
        if self._is_record(data):
            slot[...] = data
            return
        if self.fields:
            names = getattr(getattr(data, "dtype", None), "names", None)
            if names:
                self.fill_array(slot, data)
                return
            if len(data) != len(self.fields):
                raise ResultMismatchError(
                    f"data has {len(data)} channels, buffer {self.describe()} has {len(self.fields)} fields"
                )
            for i, f in enumerate(self.fields):
                slot[f][:] = data[i]
        else:
            slot[:] = data

    def fill_array(self, slot: np.ndarray, entry: Any) -> None:
        """Write one result array (structured, plain or scalar) into the slot.

        A plain array into a structured buffer holds one row per field, as the data of
        an import does (``data[i]`` is field ``i``): shape ``(fields, values_per_slot)``;
        with one value per slot also ``(fields,)``, with one field also ``(values_per_slot,)``.
        Anything else is refused rather than guessed from its size."""
        names = getattr(getattr(entry, "dtype", None), "names", None)
        if names:
            if not self.fields:
                raise ResultMismatchError(
                    f"a structured array with fields {list(names)} cannot go into buffer {self.describe()}"
                )
            extra = [n for n in names if n not in self.fields]
            if extra:
                raise ResultMismatchError(f"fields {extra} are not in buffer {self.describe()}")
            if len(names) < len(self.fields):
                slot[...] = np.zeros(1, dtype=self.dtype)
            for n in names:
                slot[n] = entry[n]
            return
        if self.fields:
            rows = self._rows_per_field(np.asarray(entry))
            for i, f in enumerate(self.fields):
                slot[f] = rows[i]
            return
        slot[:] = entry

    def _rows_per_field(self, arr: np.ndarray) -> np.ndarray:
        nf, nv = len(self.fields), self.values_per_slot
        forms = [(nf, nv)]
        if nv == 1:
            forms += [(nf,), (1, nf)]
        if nf == 1:
            forms += [(nv,)] + ([()] if nv == 1 else [])
        if arr.shape not in forms:
            raise ResultMismatchError(
                f"a plain array of shape {arr.shape} cannot go into buffer {self.describe()}: expected one row "
                f"per field ({' or '.join(str(f) for f in forms)}) or a structured array with (some of) its fields"
            )
        return arr.reshape(nf, nv)


def _metadata(md: Any, who: str) -> tuple[int, float, float]:
    """``(counter, timestamp, deadtime)`` as numbers, checked before a slot is claimed."""
    try:
        counter, timestamp, deadtime = md
        return int(counter), float(timestamp), float(deadtime)
    except (TypeError, ValueError):
        raise ResultMismatchError(f"{who}: metadata must be (counter, timestamp, deadtime), got {md!r}") from None


def _write_event(src: Any, data: Any, metadata: Any, t_ready: float) -> bool:
    """Write one event of a source (rbImport, rbPut) and publish it; False at the end of the run.

    Without metadata the event gets the source's count, the time its data became
    available and the dead-time fraction: time spent writing over the time since the
    previous event. A claimed slot is published by the writer's next claim, so data that
    fails to go in gives its slot back unpublished (counted abandoned): a failed event
    is never published, neither now nor in front of the next one."""
    md = _metadata(metadata, type(src).__name__) if metadata is not None else None
    try:
        slot = src.sink.get_new_buffer()
    except SystemExit:
        return False
    try:
        with finish_after():  # a request to finish waits until the event is published
            try:
                src._filler.fill_channels(slot, data)
            except (ResultMismatchError, ValueError, TypeError, IndexError) as exc:
                raise ResultMismatchError(
                    f"{type(src).__name__}: data does not fit buffer {src._filler.describe()}: {exc}"
                ) from exc
            src.event_count += 1
            t_done = time.time()
            if md is None:
                interval = t_done - src.T_last
                dead = (t_done - t_ready) / interval if interval > 0 else 0.0
                md = (src.event_count, t_ready, min(max(dead, 0.0), 1.0))
            src.sink.set_metadata(*md)
            src.sink.process_buffer()
    except BaseException:
        src.sink.discard()  # no-op once published
        raise
    src.T_last = t_done
    return True


class rbImport(_Access):
    """Put events from a user generator into a buffer (a DAQ source).

    Parameters
    ----------
    sink_list : list of dict
        Setup dict of the buffer to write (the first one is used).
    config_dict : dict
        The function's configuration.
    ufunc : callable
        ``ufunc()`` returns a generator (or iterable) of ``(data, metadata)``: ``data``
        indexable by channel (or a structured array), ``metadata`` a tuple
        ``(counter, timestamp, deadtime)`` or None (then the event count, the time the
        data became available and the measured dead-time fraction are filled in).
        A ``None`` item or data, or the end of the generator, ends the source.
    **rb_info
        Buffer names -> ``"write"``.

    Calling the instance with ``()`` runs until the source ends or the run stops. While
    the buffer is paused no data is asked from the generator (it is held).
    """

    def __init__(self, sink_list=None, config_dict=None, ufunc=None, **rb_info):
        super().__init__(config_dict, rb_info)
        sinks = self._need(sink_list, "sink_list")
        if not callable(ufunc):
            raise ValueError(
                f"rbImport: ufunc must be a callable returning a generator of (data, metadata), got {ufunc!r}"
            )
        if self.source_names or self.observe_names:
            self.logger.warning(
                "rbImport only writes; buffers %s are ignored", ", ".join(self.source_names + self.observe_names)
            )
        self.sink = bm.Writer(self._one(sinks, "sink_list", self.sink_names))
        self.sink_name = self._name(self.sink_names, 0, "sink")
        self._filler = _SlotFiller(self.sink, self.sink_name)
        self.ufunc = ufunc
        self.number_of_channels = len(self._filler.fields)
        self.chnams = list(self._filler.fields)
        self.event_count = 0
        self.T_last = time.time()

    def _wait_while_paused(self) -> bool:
        """Hold while the run is paused; return whether the run is still active."""
        while self.sink.paused and self.sink.active:
            time.sleep(_PAUSE_POLL)
        return self.sink.active

    def __call__(self) -> None:
        gen = self.ufunc()
        it = iter(gen)
        try:
            while self._wait_while_paused():
                try:
                    item = next(it)
                except StopIteration:
                    self.logger.info("rbImport: source %s exhausted", _fn_name(self.ufunc))
                    break
                if item is None:
                    break
                data, metadata = item
                if data is None:
                    break
                t_ready = time.time()
                try:
                    self._filler.check_channels(data)
                except (ResultMismatchError, ValueError, IndexError, TypeError) as exc:
                    raise ResultMismatchError(
                        f"rbImport: data from {_fn_name(self.ufunc)} does not fit buffer "
                        f"{self._filler.describe()}: {exc}"
                    ) from exc
                if not _write_event(self, data, metadata, t_ready):
                    break  # end of run
        finally:
            close = getattr(gen, "close", None)
            if close is not None:
                close()


class rbPut(_Access):
    """Push model: calling the instance with ``(data, metadata)`` writes one event.

    Returns whether the run is still active (so ``while put(data, md): ...`` works).
    While the buffer is paused the event is dropped (and True returned).
    """

    def __init__(self, sink_list=None, config_dict=None, ufunc=None, **rb_info):
        super().__init__(config_dict, rb_info)
        sinks = self._need(sink_list, "sink_list")
        self.sink = bm.Writer(self._one(sinks, "sink_list", self.sink_names))
        self.sink_name = self._name(self.sink_names, 0, "sink")
        self._filler = _SlotFiller(self.sink, self.sink_name)
        self.number_of_channels = len(self._filler.fields)
        self.chnams = list(self._filler.fields)
        self.event_count = 0
        self.dropped = 0
        self.T_last = time.time()

    def __call__(self, data, metadata=None) -> bool:
        if not self.sink.active:
            return False
        if data is None:
            return True
        if self.sink.paused:
            self.dropped += 1
            return True
        t_ready = time.time()
        try:
            self._filler.check_channels(data)
        except (ResultMismatchError, ValueError, IndexError, TypeError) as exc:
            raise ResultMismatchError(f"rbPut: data does not fit buffer {self._filler.describe()}: {exc}") from exc
        if not _write_event(self, data, metadata, t_ready):
            return False
        return self.sink.active


class ReaderAccess(_Access):
    """An access class that reads one source buffer (the first of ``source_list``).

    The base of the reading access classes here and of the packaged sinks
    (:mod:`mimocorb.exporters`): ``self.source`` is the :class:`~mimocorb.mimo_buffer.Reader`,
    ``self.source_name`` its buffer's name, :meth:`events` the loop over its events.
    """

    def __init__(self, source_list, config_dict, rb_info):
        super().__init__(config_dict, rb_info)
        sources = self._need(source_list, "source_list")
        self.source = bm.Reader(self._one(sources, "source_list", self.source_names))
        self.source_name = self._name(self.source_names, 0, "source")

    def events(self, idle: Optional[float] = None) -> Iterator[Optional[tuple[np.ndarray, tuple]]]:
        """Every event of this process's share of the source, until the end of the run
        (:meth:`mimocorb.mimo_buffer.Reader.events`): ``(data, metadata)``, a read-only view
        valid until the next event is taken and ``(counter, timestamp, deadtime)``; with
        ``idle`` seconds, None after every ``idle`` seconds without an event."""
        return self.source.events(idle)


class rbExport(ReaderAccess):
    """Called with ``()``: a generator of ``(data, metadata)`` for every event, ending at end of run.

    ``metadata`` is ``np.array([counter, timestamp, deadtime])`` as in 1.x; ``data`` is
    a read-only view valid until the next item is taken.
    """

    def __init__(self, source_list=None, config_dict=None, **rb_info):
        super().__init__(source_list, config_dict, rb_info)

    def __call__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for data, md in self.events():
            yield data, np.array(md)


class rbDrain(ReaderAccess):
    """Consume and discard every event of the source (called with ``()``)."""

    def __init__(self, source_list=None, config_dict=None, **rb_info):
        super().__init__(source_list, config_dict, rb_info)
        self.event_count = 0

    def __call__(self) -> None:
        for _ in self.events():
            self.event_count += 1
        self.logger.info("rbDrain: end of run after %d events from %s", self.event_count, self.source_name)


class rbTransfer(ReaderAccess):
    """Read each event, call ``ufunc(data)`` and write its result to the sinks.

    The result of ``ufunc``:

    - ``None`` (or ``False``): the event is dropped;
    - a list/tuple with one entry per sink: ``None`` skips that sink, ``True`` copies
      the input event, an array (structured, plain or scalar) is written to one slot, a
      list of arrays to one slot each;
    - for 1.x compatibility a list one shorter than the sinks means "input event to the
      first sink, the entries to the others", and any other single value (an array is
      written, ``True`` or a number copies the input) goes to the first sink.

    Metadata of the input event is passed on. A result that does not fit raises
    :class:`ResultMismatchError` naming the function and the buffers.
    """

    _pad_with_input = True

    def __init__(self, source_list=None, sink_list=None, config_dict=None, ufunc=None, **rb_info):
        super().__init__(source_list, config_dict, rb_info)
        if not callable(ufunc):
            raise ValueError(f"{type(self).__name__}: ufunc must be a callable taking one event, got {ufunc!r}")
        self.filter = ufunc
        self.writers = [bm.Writer(d) for d in (sink_list or [])]
        self._fillers = [
            _SlotFiller(w, self._name(self.sink_names, i, f"sink[{i}]")) for i, w in enumerate(self.writers)
        ]
        self._scratch = [np.zeros(f.values_per_slot, dtype=f.dtype) for f in self._fillers]
        self.event_count = 0
        self.written = [0] * len(self.writers)

    def _where(self) -> str:
        sinks = ", ".join(f.name for f in self._fillers) or "no sinks"
        return f"{_fn_name(self.filter)} ({type(self).__name__} {self.source_name} -> {sinks})"

    def _entries(self, result: Any) -> list:
        n = len(self.writers)
        if isinstance(result, (list, tuple)):
            entries = list(result)
            if self._pad_with_input and len(entries) == n - 1:
                entries = [True] + entries
            if len(entries) != n:
                raise ResultMismatchError(
                    f"{self._where()}: returned a {type(result).__name__} of {len(result)} entries for {n} sink(s) "
                    f"({', '.join(f.name for f in self._fillers)}); "
                    f"expected None or one entry per sink (None, True, an array or a list of arrays)"
                )
            return entries
        if n == 0:
            raise ResultMismatchError(
                f"{self._where()}: returned {type(result).__name__} but there is no sink to "
                f"write it to; return None or assign a buffer with 'write'"
            )
        if isinstance(result, (int, np.integer)) and not isinstance(result, bool):
            result = True  # 1.x: a number (not in a list) means "copy the input event"
        return [result] + [None] * (n - 1)

    def _copy_input(self, slot: np.ndarray, data: np.ndarray, filler: _SlotFiller) -> None:
        if data.dtype == filler.dtype and data.shape == slot.shape:
            slot[:] = data
        else:
            filler.fill_array(slot, data)

    def _write(self, i: int, entry: Any, data: np.ndarray, md: tuple) -> None:
        filler, writer = self._fillers[i], self.writers[i]
        if isinstance(entry, (list, tuple)):
            for e in entry:
                if e is not None:
                    self._write(i, e, data, md)
            return
        copy_input = entry is True or entry is data
        if copy_input and data.dtype == filler.dtype and data.shape == (filler.values_per_slot,):
            event = data  # the common case: one copy, cannot fail
        else:
            # build the event aside first: a slot once claimed is published, so it must not be left half-filled
            event = self._scratch[i]
            try:
                if copy_input:
                    self._copy_input(event, data, filler)
                else:
                    filler.fill_array(event, entry)
            except (ResultMismatchError, ValueError, TypeError, IndexError) as exc:
                what = "the input event" if copy_input else f"result entry {i} ({_describe_value(entry)})"
                raise ResultMismatchError(
                    f"{self._where()}: {what} does not fit sink {filler.describe()}: {exc}"
                ) from exc
        with interruptible():  # waiting for space: a request to finish ends the wait (nothing claimed then)
            slot = writer.get_new_buffer()
        with finish_after():  # a claimed slot is always filled and published
            slot[:] = event
            writer.set_metadata(*md)
            writer.process_buffer()
            self.written[i] += 1

    def __call__(self) -> None:
        handed_on = True  # the event in hand (if any) went to every sink it was meant for
        try:
            for data, md in self.events():
                handed_on = False
                self.event_count += 1
                result = self.filter(data)  # a request to finish here leaves the event unprocessed (held)
                with finish_after():  # ... while it is written to the sinks, it waits until the event is handed on
                    if result is not None and result is not False:
                        for i, entry in enumerate(self._entries(result)):
                            if entry is not None and entry is not False:
                                self._write(i, entry, data, md)
                    handed_on = True
        except WorkerTerminated:
            # asked to finish: an event completely handed on counts as consumed; one cut short
            # stays held, so the buffer's owner counts it lost when this process ends
            if handed_on:
                self.source.release()
            raise
        except SystemExit:
            pass  # a sink ended the run


class rbProcess(rbTransfer):
    """Like :class:`rbTransfer`, but a list result must have exactly one entry per sink."""

    _pad_with_input = False


def _describe_value(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array of shape {v.shape}, dtype {_dtype_text(v.dtype)}"
    return type(v).__name__


class rbObserver(_Access):
    """Called with ``()``: a generator of ``(data, metadata)`` copies for displays, ending with None.

    The events are a sample (the most recent one each time), never all of them.
    Config key ``min_sleeptime`` (s) limits the rate further.
    """

    def __init__(self, observe_list=None, config_dict=None, **rb_info):
        super().__init__(config_dict, rb_info)
        observers = self._need(observe_list, "observe_list")
        self.source = bm.Observer(self._one(observers, "observe_list", self.observe_names))
        self.source_name = self._name(self.observe_names, 0, "observed")
        self.min_sleeptime = float(self.config_dict.get("min_sleeptime", 0.0) or 0.0)

    def __call__(self) -> Iterator[Optional[tuple[np.ndarray, np.ndarray]]]:
        last = 0.0
        while True:
            wait = last + self.min_sleeptime - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                item = self.source.get()
            except SystemExit:
                item = None
            if item is None:
                yield None
                return
            last = time.monotonic()
            yield item


class rbWSObserver(rbObserver):
    """1.x's observer for displays that wait between updates ("with sleep"): called with ``()``,
    a generator of ``(data, metadata)`` copies of the most recent event, at most one every
    ``min_sleeptime`` seconds (config key, default 1.0 as in 1.x), ending with None.

    1.x fetched the events in a thread of its own; here the observer's ``get()`` gives the
    most recent event without a thread, so the class is :class:`rbObserver` with 1.x's
    default pace. ``close()`` as in 1.x.
    """

    def __init__(self, observe_list=None, config_dict=None, **rb_info):
        config = dict(config_dict or {})
        config.setdefault("min_sleeptime", 1.0)
        super().__init__(observe_list, config, **rb_info)

    def close(self) -> None:
        """Let go of the observed buffer (1.x's ``close()``)."""
        self.source.close()
