"""Ring buffers in shared memory with the mimoCoRB 1.x interface.

``NewBuffer`` creates a buffer and hands out setup dicts; ``Writer``, ``Reader``
and ``Observer`` attach to it from any process (fork or spawn) with such a dict.

The slot bookkeeping lives in the compiled core (:mod:`mimocorb._ringbuf`);
this module adds what is about NumPy: dtypes, one view per slot made once and
reused, metadata arrays, statistics, setup dicts and the owner's lifecycle
(unlink on close, at exit and on SIGTERM).
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import secrets
import signal
import threading
import time
import weakref
from typing import Any, Callable, Optional

import numpy as np

from . import _ringbuf
from ._ringbuf import (
    GROUP_ACTIVE,
    GROUP_ORPHANED,
    GROUP_STARTING,
    GROUP_STATE_NAMES,
    ROLE_READER,
    ROLE_WRITER,
    STATE_CLOSED,
    STATE_SHUTDOWN,
    STATE_STOPPING,
    OwnerGone,
    RingError,
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

#: Metadata of every slot, as 1.x defines it.
METADATA_DTYPE = np.dtype([("counter", np.longlong), ("timestamp", np.float64), ("deadtime", np.float64)])

#: Every segment name starts with this, then the owner pid: ``mimocorb-<pid>-<n>-<token>``.
SEGMENT_PREFIX = "mimocorb-"


_GATING = (GROUP_ACTIVE, GROUP_STARTING)  # group states that hold back the writers
_WAIT_MODES = ("sleep", "spin")
_DEFAULT_SPIN_S = 10e-6  # a short spin before sleeping: covers the usual few hundred ns gap


class SetupError(ValueError):
    """A setup dict is not for this role, or does not match its buffer."""


# ---------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------


def _as_dtype(dtype: Any) -> np.dtype:
    """The NumPy dtype of a slot element, with clear errors for what cannot be stored."""
    try:
        dt = np.dtype(dtype)
    except (TypeError, ValueError) as exc:
        raise ValueError(
            f"dtype must be a NumPy type such as np.int32 or 'float32', or a list of (name, type) pairs; "
            f"got {dtype!r} ({exc})"
        ) from None
    if dt.hasobject:
        raise ValueError(f"dtype {dtype!r} holds Python objects, which cannot live in shared memory")
    if dt.itemsize == 0:
        raise ValueError(f"dtype {dtype!r} has size 0 bytes")
    return dt


def _dtype_hash(dt: np.dtype) -> int:
    """A stable 63-bit FNV-1a hash of the dtype description, stored in the segment."""
    h = 0xCBF29CE484222325
    for b in str(dt.descr).encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h >> 1


def _check_count(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value}")
    return int(value)


# ---------------------------------------------------------------------------
# owner lifecycle: unlink at exit and on SIGTERM
# ---------------------------------------------------------------------------

_owned: weakref.WeakValueDictionary[str, NewBuffer] = weakref.WeakValueDictionary()
_owned_lock = threading.Lock()
_name_counter = itertools.count()
_sigterm_installed = False


def _close_owned() -> None:
    with _owned_lock:
        buffers = list(_owned.values())
    for buf in buffers:
        try:
            buf.close()
        except Exception:  # pragma: no cover - best effort at exit
            logger.exception("closing ring buffer %s at exit failed", buf.name)


atexit.register(_close_owned)


def _on_sigterm(signum, frame):  # pragma: no cover - exercised in subprocess tests
    owners = {b._owner_pid for b in list(_owned.values())}
    if os.getpid() in owners:
        _close_owned()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def _install_sigterm_handler() -> None:
    """Unlink owned buffers on SIGTERM, when nobody else handles SIGTERM."""
    global _sigterm_installed
    if _sigterm_installed or threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, _on_sigterm)
        _sigterm_installed = True
    except ValueError:  # pragma: no cover - not in the main interpreter
        pass


# ---------------------------------------------------------------------------
# attaching from a setup dict
# ---------------------------------------------------------------------------

_segments: weakref.WeakValueDictionary[tuple, _ringbuf.Segment] = weakref.WeakValueDictionary()

_REQUIRED_KEYS = ("number_of_slots", "values_per_slot", "dtype", "shm_name", "token", "dtype_hash", "role")


def _attach(setup_dict: dict, role: str) -> tuple[_ringbuf.Segment, np.dtype]:
    """Map the segment of a setup dict after checking role and geometry."""
    if not isinstance(setup_dict, dict):
        raise SetupError(f"expected a setup dict from NewBuffer.new_{role}(), got {type(setup_dict).__name__}")
    missing = [k for k in _REQUIRED_KEYS if k not in setup_dict]
    if missing:
        raise SetupError(f"setup dict lacks {', '.join(missing)}: it was not made by mimocorb's NewBuffer")
    given = setup_dict["role"]
    if given != role:
        maker = {"writer": "new_writer()", "reader": "new_reader_group()", "observer": "new_observer()"}
        raise SetupError(
            f"this setup dict is for a {given}, not a {role}: make it with NewBuffer.{maker.get(role, role)}"
        )
    dt = _as_dtype(setup_dict["dtype"])
    key = (setup_dict["shm_name"], setup_dict["token"])
    seg = _segments.get(key)
    if seg is None or not seg.mapped:
        try:
            seg = _ringbuf.Segment.attach(setup_dict["shm_name"])
        except RingError as exc:
            raise SetupError(f"cannot attach to ring buffer: {exc}") from None
        _segments[key] = seg
    problems = []
    if seg.token != setup_dict["token"]:
        problems.append("it belongs to another (closed) buffer of the same name")
    if seg.nslots != setup_dict["number_of_slots"]:
        problems.append(f"number_of_slots {setup_dict['number_of_slots']} != {seg.nslots} in the buffer")
    if seg.values_per_slot != setup_dict["values_per_slot"]:
        problems.append(f"values_per_slot {setup_dict['values_per_slot']} != {seg.values_per_slot} in the buffer")
    if seg.payload_bytes != dt.itemsize * setup_dict["values_per_slot"] or seg.dtype_hash != _dtype_hash(dt):
        problems.append(f"dtype {setup_dict['dtype']!r} differs from the buffer's")
    if problems:
        raise SetupError(f"setup dict does not match ring buffer {setup_dict['shm_name']!r}: " + "; ".join(problems))
    if seg.state >= STATE_CLOSED:
        raise SetupError(f"ring buffer {setup_dict['shm_name']!r} is closed")
    return seg, dt


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
        self._np_dtype = _as_dtype(dtype)
        if wait not in _WAIT_MODES:
            raise ValueError(f"wait must be one of {_WAIT_MODES}, got {wait!r}")
        self.dtype = dtype
        self.debug = debug
        self.label = name
        self._wait = wait
        self._owner_pid = os.getpid()
        self._token = secrets.randbits(63)
        self._dtype_hash = _dtype_hash(self._np_dtype)
        self.shm_name = f"/{SEGMENT_PREFIX}{self._owner_pid}-{next(_name_counter)}-{self._token & 0xFFFFFFFF:08x}"
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
        with _owned_lock:
            _owned[self.shm_name] = self
        _install_sigterm_handler()
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
                    self._pending_summary(),
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

    def _pending_summary(self) -> str:
        snap = self._seg.snapshot()
        w = snap["write_claim"]
        parts = [
            f"group {i}: {w - g['release']} left"
            for i, g in enumerate(snap["groups"])
            if g["state"] in _GATING and g["members_attached"] and g["release"] < w
        ]
        writers = [p["pid"] for p in snap["procs"] if p["role"] == ROLE_WRITER and p["held_n"]]
        if writers:
            parts.append(f"writers holding unpublished slots: pids {writers}")
        return ", ".join(parts) or "none"

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
            with _owned_lock:
                _owned.pop(self.shm_name, None)
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
    def _filled(self, snap: dict) -> int:
        w = snap["write_claim"]
        active = [g["release"] for g in snap["groups"] if g["state"] in _GATING]
        if not active:
            return 0
        return max(0, min(self.number_of_slots, w - min(active)))

    def buffer_status(self) -> tuple[int, int, float, float]:
        """(cumulative_event_count, n_filled, rate, av_deadtime) as in 1.x: events
        published so far, slots filled and not yet released, events/s and mean
        dead time of the events since the previous call."""
        if not self._enter():
            return self._n_last, 0, 0.0, 0.0
        try:
            self._seg.reap()
            snap = self._seg.snapshot()
        finally:
            self._leave()
        now = time.time()
        n = snap["published"]
        dn = n - self._n_last
        dt_sum = snap["deadtime_sum"]
        rate = dn / max(now - self._t_last, 1e-9)
        av_dead = (dt_sum - self._dt_last) / dn if dn > 0 else 0.0
        self._t_last, self._n_last, self._dt_last = now, n, dt_sum
        return n, self._filled(snap), rate, av_dead

    def stats(self) -> dict:
        """Counters of the buffer: published, filled, lost (by group and cause),
        consumed per group, members alive, what each attached process holds,
        state; does not reset the rate.

        Every sequence a writer claimed since a group was added ends up, for that
        group, consumed or lost (``consumed + lost_total + pending == claimed - start``).
        Events a group can no longer get count as lost ``orphaned``: what is published
        while it has no live member after its last member died or the owner retired it,
        and, once the buffer is shut down, what is left in a group without a live member.
        """
        if not self._enter():
            return {"name": self.name, "state": "closed"}
        try:
            self._seg.reap()
            snap = self._seg.snapshot()
        finally:
            self._leave()
        w = snap["write_claim"]
        over = snap["state"] >= STATE_SHUTDOWN  # nothing left in the ring is delivered any more
        groups = []
        lost_total = 0
        for i, g in enumerate(snap["groups"]):
            left = max(0, w - g["release"])
            nobody = g["state"] == GROUP_ORPHANED or (over and g["members_attached"] == 0)
            pending_orphan = left if nobody else 0
            lost = {
                "dead_reader": g["lost_dead_reader"],
                "orphaned": g["lost_orphaned"] + pending_orphan,
                "abandoned_by_writer": g["lost_abandoned"],
            }
            n_lost = sum(lost.values())
            lost_total += n_lost
            released = g["release"] - g["first_start"]
            groups.append(
                {
                    "group": i,
                    "state": GROUP_STATE_NAMES.get(g["state"], "unused"),
                    "released": released,
                    # every sequence the group passed since it was added: consumed by a
                    # member, counted lost, or a claim given back unfilled (skipped, not lost)
                    "consumed": released
                    - g["lost_dead_reader"]
                    - g["lost_orphaned"]
                    - g["lost_abandoned"]
                    - g["skipped_void"],
                    "consumed_by_attached": sum(
                        p["count"] for p in snap["procs"] if p["role"] == ROLE_READER and p["group"] == i
                    ),
                    "pending": 0 if nobody else left,
                    "voided": g["skipped_void"],  # claims given back unfilled that it passed
                    "members_alive": g["members_attached"],
                    "members_ever": g["members_ever"],
                    "lost": lost,
                    "lost_total": n_lost,
                }
            )
        procs = [
            {
                "pid": p["pid"],
                "role": "writer" if p["role"] == ROLE_WRITER else "reader",
                "group": p["group"] if p["role"] == ROLE_READER else None,
                "holds": p["held_n"],
            }
            for p in snap["procs"]
            if p["role"] in (ROLE_WRITER, ROLE_READER)
        ]
        elapsed = max(time.time() - self._t_last, 1e-9)
        return {
            "name": self.name,
            "state": _ringbuf.STATE_NAMES.get(snap["state"], "?"),
            "paused": snap["paused"],
            "published": snap["published"],
            "claimed": w,
            "abandoned_by_writers": snap["abandoned"],
            # claims given back unfilled by writers stopped while waiting (not events, never lost)
            "voided": snap["void"],
            "filled": self._filled(snap),
            "slots": self.number_of_slots,
            "lost": lost_total,
            "rate": (snap["published"] - self._n_last) / elapsed,
            "deadtime_sum": snap["deadtime_sum"],
            "deadtime": snap["deadtime_sum"] / snap["published"] if snap["published"] else 0.0,
            "groups": groups,
            "processes": procs,
            "writers_alive": sum(1 for p in procs if p["role"] == "writer"),
            "readers_alive": sum(1 for p in procs if p["role"] == "reader"),
            "reaped": {"readers": snap["reaped_readers"], "writers": snap["reaped_writers"]},
        }


# ---------------------------------------------------------------------------
# endpoints
# ---------------------------------------------------------------------------


class Writer(_ringbuf.WriterCore):
    """Write events into a ring buffer (the multiple-in side).

    ``get_new_buffer()`` returns the writable view of a free slot (publishing
    the previous one first), ``set_metadata()`` and ``process_buffer()`` as in
    1.x; ``put(data)`` copies a whole event in and publishes it in one call;
    ``get_new_buffers(k)`` hands out up to k slots as one 2-D view.
    """

    def __init__(self, setup_dict: dict, *, wait: Optional[str] = None):
        seg, dt = _attach(setup_dict, "writer")
        spin_s, spin_forever = _wait_params(setup_dict, wait)
        views, base2d = _slot_views(seg, dt, setup_dict["values_per_slot"], writable=True)
        self._attach_core(seg, views, base2d, spin_s, spin_forever)
        self.number_of_slots = setup_dict["number_of_slots"]
        self.values_per_slot = setup_dict["values_per_slot"]
        self.dtype = setup_dict["dtype"]
        self.name = setup_dict.get("name")

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Reader(_ringbuf.ReaderCore):
    """Read every event of a reader group (the multiple-out side).

    ``get()`` returns a read-only view of the group's next event, releasing
    the previous one; the processes sharing one group's setup dict split its
    events. ``get_many(k)`` takes up to k events as one 2-D view.
    """

    def __init__(self, setup_dict: dict, *, wait: Optional[str] = None):
        seg, dt = _attach(setup_dict, "reader")
        spin_s, spin_forever = _wait_params(setup_dict, wait)
        views, base2d = _slot_views(seg, dt, setup_dict["values_per_slot"], writable=False)
        self._attach_core(seg, views, base2d, setup_dict["group"], spin_s, spin_forever)
        self.number_of_slots = setup_dict["number_of_slots"]
        self.values_per_slot = setup_dict["values_per_slot"]
        self.dtype = setup_dict["dtype"]
        self.name = setup_dict.get("name")

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Observer:
    """Private copies of the newest events, for displays.

    Observers take no part in the gating: they never slow down or pause
    writers or readers, and see a sample of the events, at most one per
    ``interval`` seconds (from the setup dict).
    """

    def __init__(self, setup_dict: dict):
        seg, dt = _attach(setup_dict, "observer")
        self._seg = seg
        self._core = _ringbuf.ObserverCore(seg)
        self._dt = dt
        self.number_of_slots = setup_dict["number_of_slots"]
        self.values_per_slot = setup_dict["values_per_slot"]
        self.dtype = setup_dict["dtype"]
        self.name = setup_dict.get("name")
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


# ---------------------------------------------------------------------------
# leftovers of dead owners
# ---------------------------------------------------------------------------


def list_segments(shm_dir: str = "/dev/shm") -> list[dict]:
    """Every mimocorb segment in ``shm_dir``: name, owner pid, size, whether the owner lives."""
    out = []
    try:
        names = sorted(os.listdir(shm_dir))
    except OSError:
        return out
    for fname in names:
        if not fname.startswith(SEGMENT_PREFIX):
            continue
        try:
            pid = int(fname[len(SEGMENT_PREFIX) :].split("-", 1)[0])
        except ValueError:
            pid = -1
        try:
            size = os.stat(os.path.join(shm_dir, fname)).st_size
        except OSError:
            continue
        out.append({"name": fname, "pid": pid, "bytes": size, "owner_alive": pid > 0 and _ringbuf.pid_alive(pid)})
    return out


def cleanup_segments(dry_run: bool = False, shm_dir: str = "/dev/shm") -> list[dict]:
    """Remove the segments whose owner process is gone (never those of live
    owners). Returns the segments removed (or, with ``dry_run``, that would be)."""
    removed = []
    for seg in list_segments(shm_dir):
        if seg["owner_alive"]:
            continue
        if not dry_run:
            if not _ringbuf.shm_unlink_name("/" + seg["name"]):
                continue
        removed.append(seg)
    return removed
