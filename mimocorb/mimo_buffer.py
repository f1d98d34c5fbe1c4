"""Ring buffers in shared memory with the mimoCoRB 1.x interface.

``NewBuffer`` creates a buffer and hands out setup dicts; ``Writer``, ``Reader``
and ``Observer`` attach to it from any process (fork or spawn) with such a dict.

The slot bookkeeping lives in the compiled core (:mod:`mimocorb._ringbuf`);
this module adds what is about NumPy and the 1.x interface: one view per slot made
once and reused, metadata arrays, setup dicts, run control of a buffer (pause,
event limit, shutdown) and its close. The segment around it -- names, the owner's
unlink at exit and on SIGTERM, attaching from a setup dict, leftovers of dead
owners -- is :mod:`mimocorb.segments` (``SEGMENT_PREFIX``, ``list_segments``,
``cleanup_segments`` and ``SetupError`` are re-exported here, their 1.x-era home);
the statistics are read in :mod:`mimocorb.buffer_stats`.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
import time
from typing import Any, Callable, Iterator, Optional

import numpy as np

from . import _ringbuf
from ._ringbuf import STATE_CLOSED, STATE_SHUTDOWN, STATE_STOPPING, OwnerGone, RingError
from .buffer_stats import buffer_stats, filled, pending_summary
from .segments import (
    SEGMENT_PREFIX,
    SetupError,
    attach,
    cleanup_segments,
    dtype_hash,
    forget_owner,
    list_segments,
    new_segment_name,
    register_owner,
    slot_dtype,
)

__all__ = [
    "NewBuffer",
    "Writer",
    "Reader",
    "Observer",
    "RingError",
    "OwnerGone",
    "SetupError",
    "METADATA_DTYPE",
    "SEGMENT_PREFIX",
    "list_segments",
    "cleanup_segments",
]

logger = logging.getLogger(__name__)

#: Metadata of every slot, as 1.x defines it (``counter`` a C long long: int64). The one
#: definition: exporters, displays and the setup check use this one.
METADATA_DTYPE = np.dtype([("counter", np.longlong), ("timestamp", np.float64), ("deadtime", np.float64)])

_WAIT_MODES = ("sleep", "spin")
_DEFAULT_SPIN_S = 10e-6  # a short spin before sleeping: covers the usual few hundred ns gap


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")
    return int(value)


def _slot_views(seg: _ringbuf.Segment, dt: np.dtype, values: int, writable: bool) -> tuple[list, np.ndarray]:
    """One NumPy view per slot (made once, reused for every event) and a 2-D
    view of all slots for the batch calls."""
    n, stride = seg.nslots, seg.slot_stride
    base2d = np.ndarray(shape=(n, values), dtype=dt, buffer=seg, offset=0, strides=(stride, dt.itemsize))
    views = []
    for i in range(n):
        v = np.ndarray(shape=(values,), dtype=dt, buffer=seg, offset=i * stride)
        if not writable:
            v.flags.writeable = False
        views.append(v)
    if not writable:
        base2d.flags.writeable = False
    return views, base2d


def _wait_params(setup_dict: dict, wait: Optional[str]) -> tuple[float, bool]:
    mode = wait if wait is not None else setup_dict.get("wait", "sleep")
    if mode not in _WAIT_MODES:
        raise ValueError(f"wait must be one of {_WAIT_MODES}, got {mode!r}")
    return float(setup_dict.get("spin_s", _DEFAULT_SPIN_S)), mode == "spin"


# ---------------------------------------------------------------------------
# the buffer
# ---------------------------------------------------------------------------


class NewBuffer:
    """Create a ring buffer of ``number_of_slots`` slots in shared memory.

    Parameters
    ----------
    number_of_slots : int
        Slots in the ring (>= 1).
    values_per_slot : int
        Length of the 1-D array each slot holds (>= 1).
    dtype : numpy dtype or list of (name, type)
        Element type; kept as given in the setup dicts.
    debug : bool
        Log debug messages.
    wait : {"sleep", "spin"}
        Default waiting of the endpoints: a short spin then a futex sleep, or
        (for setups that can spare a core) spinning for the lowest latency.
    name : str, optional
        Label used in log messages and statistics.

    The creating process owns the segment: it is unlinked by :meth:`close`,
    when the object is collected, at interpreter exit and on SIGTERM.
    """

    def __init__(
        self,
        number_of_slots: int,
        values_per_slot: int,
        dtype: Any,
        debug: bool = False,
        *,
        wait: str = "sleep",
        name: Optional[str] = None,
    ):
        self.number_of_slots = _check_count("number_of_slots", number_of_slots)
        self.values_per_slot = _check_count("values_per_slot", values_per_slot)
        self._np_dtype = slot_dtype(dtype)
        if wait not in _WAIT_MODES:
            raise ValueError(f"wait must be one of {_WAIT_MODES}, got {wait!r}")
        self.dtype = dtype
        self.debug = debug
        self.label = name
        self._wait = wait
        self._owner_pid = os.getpid()
        self._token = secrets.randbits(63)
        self._dtype_hash = dtype_hash(self._np_dtype)
        self.shm_name = new_segment_name(self._owner_pid, self._token)
        self.name = self.shm_name.lstrip("/") if name is None else name
        payload = self.values_per_slot * self._np_dtype.itemsize
        self._seg = _ringbuf.Segment.create(
            self.shm_name, self.number_of_slots, payload, self.values_per_slot, self._token, self._dtype_hash
        )
        self._closed = False
        self._lock = threading.Lock()
        # close() and shutdown() may be called from different threads (a control window,
        # a signal): close() must not unmap the segment while a shutdown() still polls it.
        # The condition guards _closing and _users (thread -> calls now using the segment:
        # shutdown, stats, buffer_status); close() cuts a running shutdown wait (it polls
        # every <= 20 ms) and unmaps only after the other threads' calls have left. Reentrant:
        # close() from a signal handler may interrupt a call of its own thread.
        self._lifecycle = threading.Condition(threading.RLock())
        self._closing = False
        self._users: dict[int, int] = {}
        self._t_last = time.time()
        self._n_last = 0
        self._dt_last = 0.0
        register_owner(self.shm_name, self)
        if debug:
            logger.debug("created ring buffer %s: %d slots x %d bytes", self.shm_name, self.number_of_slots, payload)

    # -- setup dicts ----------------------------------------------------------
    def _setup_dict(self, role: str, **extra: Any) -> dict:
        self._check_usable()
        d = {
            "number_of_slots": self.number_of_slots,
            "values_per_slot": self.values_per_slot,
            "dtype": self.dtype,
            "role": role,
            "shm_name": self.shm_name,
            "token": self._token,
            "dtype_hash": self._dtype_hash,
            "wait": self._wait,
            "debug": self.debug,
            "name": self.name,
        }
        d.update(extra)
        return d

    def new_writer(self) -> dict:
        """Setup dict for a :class:`Writer`; share it, or call again, for several writers."""
        return self._setup_dict("writer")

    def new_reader_group(self) -> dict:
        """Setup dict for a new reader group; every group sees every event published
        from now on, the processes sharing one dict split the group's events."""
        self._check_usable()
        with self._lock:
            group = self._seg.add_group()
        return self._setup_dict("reader", group=group)

    def new_observer(self, interval: float = 0.05) -> dict:
        """Setup dict for an :class:`Observer`, which gets a copy of the newest event
        at most every ``interval`` seconds and never slows anything down."""
        if not interval >= 0:
            raise ValueError(f"interval must be >= 0 seconds, got {interval!r}")
        return self._setup_dict("observer", interval=float(interval))

    def retire_group(self, group: int) -> None:
        """Every process of reader group ``group`` has ended for good: the group stops
        holding back the writers, and what it left unconsumed (and what is published
        until a member joins again) is counted lost for it, as for a group whose last
        member died. The run control calls this when a consumer's workers return."""
        self._check_usable()
        self._seg.retire_group(int(group))

    # -- state ---------------------------------------------------------------
    def _check_usable(self) -> None:
        if self._closed:
            raise ValueError(f"ring buffer {self.name} is closed")

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def paused(self) -> bool:
        return False if self._closed else self._seg.paused

    def pause(self) -> None:
        """Raise the pause flag (the import helpers drop or hold events while it is set)."""
        self._check_usable()
        self._seg.paused = True

    def resume(self) -> None:
        """Clear the pause flag."""
        self._check_usable()
        self._seg.paused = False

    def set_event_limit(self, n_events: Optional[int]) -> None:
        """Let the writers publish exactly ``n_events`` events in all (counting from the
        creation of the buffer); past that, ``get_new_buffer()`` raises SystemExit as at
        the end of a run. ``None`` removes the limit."""
        self._check_usable()
        if n_events is not None:
            _check_count("n_events", n_events)
        self._seg.claim_limit = n_events
        claimed = self._seg.claimed
        if n_events is not None and claimed > n_events:
            logger.warning(
                "ring buffer %s: event limit %d set after %d events were already claimed; those are published",
                self.name,
                n_events,
                claimed,
            )

    def set_ending(self) -> None:
        """Stop the writers: their next ``get_new_buffer()`` raises SystemExit.
        What was published is still delivered to the readers."""
        if not self._closed:
            self._seg.set_state(STATE_STOPPING)

    def shutdown(self, timeout: float = 10.0, *, cancel: Optional[Callable[[], bool]] = None) -> bool:
        """End of run, trickle-down.

        Writers are stopped, every group with a live member gets what was
        already published, then every process blocked in ``get()`` or
        ``get_new_buffer()`` gets SystemExit. Waits at most ``timeout`` seconds
        for the readers (a dead or stuck consumer cannot hold it up) and
        returns whether everything published was consumed.

        ``cancel``, if given, is polled during the wait (every <= 20 ms); when it
        returns True the wait ends at once, as at the timeout. A :meth:`close`
        from another thread ends the wait too.
        """
        if not self._enter():
            return True
        try:
            self.set_ending()
            t0 = time.monotonic()
            deadline = t0 + timeout
            drained = self._seg.drained()
            pause = 0.0005
            while not drained and time.monotonic() < deadline and not self._closing:
                if cancel is not None and cancel():
                    break
                time.sleep(pause)
                pause = min(pause * 2, 0.02)
                self._seg.reap()
                drained = self._seg.drained()
            if self._closing:
                return drained
            if not drained:
                logger.warning(
                    "ring buffer %s: shutdown after %.1f s with events not consumed: %s",
                    self.name,
                    time.monotonic() - t0,
                    pending_summary(self._seg.snapshot()),
                )
            self._seg.set_state(STATE_SHUTDOWN)
            return drained
        finally:
            self._leave()

    def _enter(self) -> bool:
        """Register a call that uses the segment; False once the buffer is closed or closing."""
        me = threading.get_ident()
        with self._lifecycle:
            if self._closed or self._closing:
                return False
            self._users[me] = self._users.get(me, 0) + 1
            return True

    def _leave(self) -> None:
        me = threading.get_ident()
        with self._lifecycle:
            self._users[me] -= 1
            if not self._users[me]:
                del self._users[me]
            self._lifecycle.notify_all()

    def close(self) -> None:
        """Release and unlink the shared memory (the owner only); attached
        processes blocked on the buffer get SystemExit. Safe while another
        thread is in :meth:`shutdown`: its wait is cut short first."""
        with self._lifecycle:
            if self._closed or self._closing:
                return
            if os.getpid() != self._owner_pid:
                # a forked child's copy of the owner object: never unlink the owner's buffer
                self._closed = True
                return
            self._closing = True
            # a shutdown() in another thread leaves its loop within one poll (<= 20 ms);
            # the bound only guards against a caller stuck elsewhere
            me = threading.get_ident()
            self._lifecycle.wait_for(lambda: not set(self._users) - {me}, timeout=5.0)
            self._closed = True
        try:
            self._seg.set_state(STATE_CLOSED)
        finally:
            self._seg.unlink()
            self._seg.close()
            forget_owner(self.shm_name)
        if self.debug:
            logger.debug("closed ring buffer %s", self.shm_name)

    def __enter__(self) -> NewBuffer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            if not self._closed and os.getpid() == self._owner_pid:
                self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        state = "closed" if self._closed else _ringbuf.STATE_NAMES.get(self._seg.state, "?")
        return (
            f"<NewBuffer {self.name}: {self.number_of_slots} slots x {self.values_per_slot} {self._np_dtype}, {state}>"
        )

    # -- statistics ---------------------------------------------------------
    def _snapshot(self) -> Optional[dict]:
        """The core's counters after a reap (what dead processes held is counted); None once closed."""
        if not self._enter():
            return None
        try:
            self._seg.reap()
            return self._seg.snapshot()
        finally:
            self._leave()

    def buffer_status(self) -> tuple[int, int, float, float]:
        """(cumulative_event_count, n_filled, rate, av_deadtime) as in 1.x: events
        published so far, slots filled and not yet released, events/s and mean
        dead time of the events since the previous call."""
        snap = self._snapshot()
        if snap is None:
            return self._n_last, 0, 0.0, 0.0
        now = time.time()
        n = snap["published"]
        dn = n - self._n_last
        dt_sum = snap["deadtime_sum"]
        rate = dn / max(now - self._t_last, 1e-9)
        av_dead = (dt_sum - self._dt_last) / dn if dn > 0 else 0.0
        self._t_last, self._n_last, self._dt_last = now, n, dt_sum
        return n, filled(snap, self.number_of_slots), rate, av_dead

    def stats(self) -> dict:
        """Counters of the buffer: published, filled, lost (by group and cause),
        consumed per group, members alive, what each attached process holds,
        state; does not reset the rate.

        Every sequence a writer claimed since a group was added ends up, for that
        group, consumed or lost (``consumed + lost_total + pending == claimed - start``).
        Events a group can no longer get count as lost ``orphaned``: what is published
        while it has no live member after its last member died or the owner retired it,
        and, once the buffer is shut down, what is left in a group without a live member.
        The fields are described in :mod:`mimocorb.buffer_stats`.
        """
        snap = self._snapshot()
        if snap is None:
            return {"name": self.name, "state": "closed"}
        rate = (snap["published"] - self._n_last) / max(time.time() - self._t_last, 1e-9)
        return buffer_stats(snap, self.name, self.number_of_slots, rate)


# ---------------------------------------------------------------------------
# endpoints
# ---------------------------------------------------------------------------


class _Endpoint:
    """The 1.x attributes every endpoint keeps of its setup dict."""

    number_of_slots: int
    values_per_slot: int
    dtype: Any
    name: Optional[str]

    def _keep_layout(self, setup_dict: dict) -> None:
        self.number_of_slots = setup_dict["number_of_slots"]
        self.values_per_slot = setup_dict["values_per_slot"]
        self.dtype = setup_dict["dtype"]  # as given (a list of pairs for a structured buffer)
        self.name = setup_dict.get("name")


class _SlotEndpoint(_Endpoint):
    """A writer or reader: it maps the slots of its segment as NumPy views, once."""

    def _map_slots(self, setup_dict: dict, role: str, wait: Optional[str]) -> tuple:
        """``(segment, views, base2d, spin_s, spin_forever)`` for the core's ``_attach_core``."""
        seg, dt = attach(setup_dict, role)
        self._keep_layout(setup_dict)
        views, base2d = _slot_views(seg, dt, self.values_per_slot, writable=role == "writer")
        return (seg, views, base2d, *_wait_params(setup_dict, wait))

    def __enter__(self):
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Writer(_SlotEndpoint, _ringbuf.WriterCore):
    """Write events into a ring buffer (the multiple-in side).

    ``get_new_buffer()`` returns the writable view of a free slot (publishing
    the previous one first), ``set_metadata()`` and ``process_buffer()`` as in
    1.x; ``put(data)`` copies a whole event in and publishes it in one call;
    ``get_new_buffers(k)`` hands out up to k slots as one 2-D view.
    """

    def __init__(self, setup_dict: dict, *, wait: Optional[str] = None):
        seg, views, base2d, spin_s, spin_forever = self._map_slots(setup_dict, "writer", wait)
        self._attach_core(seg, views, base2d, spin_s, spin_forever)


class Reader(_SlotEndpoint, _ringbuf.ReaderCore):
    """Read every event of a reader group (the multiple-out side).

    ``get()`` returns a read-only view of the group's next event, releasing
    the previous one; the processes sharing one group's setup dict split its
    events. ``get_many(k)`` takes up to k events as one 2-D view; :meth:`events`
    iterates over the group's events until the end of the run.
    """

    def __init__(self, setup_dict: dict, *, wait: Optional[str] = None):
        seg, views, base2d, spin_s, spin_forever = self._map_slots(setup_dict, "reader", wait)
        self._attach_core(seg, views, base2d, setup_dict["group"], spin_s, spin_forever)

    def events(self, idle: Optional[float] = None) -> Iterator[Optional[tuple[np.ndarray, tuple]]]:
        """Every event of this process's share of the group, until the end of the run.

        Yields ``(data, metadata)``: the read-only view of the slot (valid until the next
        event is taken; taking it hands this one back, consumed) and ``(counter, timestamp,
        deadtime)``. With ``idle`` (seconds), ``None`` is yielded after every ``idle``
        seconds without an event, for periodic work such as flushing a file. Ends quietly
        at the end of the run (the ``SystemExit`` of :meth:`get` is not raised), with
        nothing held.
        """
        while True:
            try:
                data = self.get() if idle is None else self.get_timeout(idle)
            except SystemExit:  # the end of the run, or a request to finish while waiting (nothing held)
                return
            if data is None:
                if idle is None:
                    return
                yield None
                continue
            yield data, self.get_metadata()


class Observer(_Endpoint):
    """Private copies of the newest events, for displays.

    Observers take no part in the gating: they never slow down or pause
    writers or readers, and see a sample of the events, at most one per
    ``interval`` seconds (from the setup dict).
    """

    def __init__(self, setup_dict: dict):
        seg, dt = attach(setup_dict, "observer")
        self._seg = seg
        self._core = _ringbuf.ObserverCore(seg)
        self._dt = dt
        self._keep_layout(setup_dict)
        self.interval = float(setup_dict.get("interval", 0.05))
        self._last = 0  # sequence + 1 of the last event returned
        self._t_last = 0.0

    @property
    def active(self) -> bool:
        """True while the run goes on: False after the shutdown, and when the
        buffer's owner has died (nobody will publish or shut it down any more)."""
        return self._core.state < STATE_SHUTDOWN and self._core.owner_alive()

    def get(self, timeout: Optional[float] = None):
        """``(data, metadata)`` copies of an event newer than the last one returned,
        or ``None`` at the end of the run (or after ``timeout`` seconds without one).

        ``metadata`` is, as in 1.x, a structured array of shape (1,) with fields
        counter, timestamp and deadtime."""
        deadline = None if timeout is None else time.monotonic() + timeout
        wait_until = self._t_last + self.interval
        now = time.monotonic()
        if now < wait_until:
            time.sleep(wait_until - now)
        data = np.empty(self.values_per_slot, dtype=self._dt)
        raw = data.view(np.uint8)
        pause = 0.001
        while True:
            if self._core.state >= STATE_SHUTDOWN:
                return None
            got = self._core.copy_newest(raw, self._last)
            if got is not None:
                seq1, counter, ts, dt = got
                self._last = seq1
                self._t_last = time.monotonic()
                meta = np.array([(counter, ts, dt)], dtype=METADATA_DTYPE)
                return data, meta
            if not self._core.owner_alive():
                return None
            if deadline is not None and time.monotonic() >= deadline:
                return None
            time.sleep(pause)
            pause = min(pause * 2, 0.02)

    def close(self) -> None:
        self._core = _ClosedObserverCore()


class _ClosedObserverCore:
    state = STATE_CLOSED

    def copy_newest(self, *args: Any) -> None:
        return None

    def owner_alive(self) -> bool:
        return False
