"""The shared-memory segment of a ring buffer, as the Python layer handles it.

Everything about a buffer's segment that is not the endpoints' NumPy views:

- what a slot can hold (:func:`slot_dtype`) and the dtype fingerprint stored in the
  segment (:func:`dtype_hash`), checked when an endpoint attaches;
- segment names: ``/mimocorb-<owner pid>-<n>-<token>`` (:func:`new_segment_name`), so
  that leftovers can be told by their owner;
- the owner's lifecycle: buffers created by this process are unlinked at interpreter
  exit and on SIGTERM (:func:`register_owner`);
- attaching from a setup dict (:func:`attach`): role, geometry and dtype checked against
  the segment, one mapping per segment and process;
- leftovers of dead owners (:func:`list_segments`, :func:`cleanup_segments`), for
  ``mimocorb cleanup``.

The segment itself (layout, atomics, waits) is the compiled core, :mod:`mimocorb._ringbuf`.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import signal
import threading
import weakref
from typing import Any, Protocol

import numpy as np

from . import _ringbuf
from ._ringbuf import STATE_CLOSED, RingError

logger = logging.getLogger(__name__)

#: Every segment name starts with this, then the owner pid: ``mimocorb-<pid>-<n>-<token>``.
SEGMENT_PREFIX = "mimocorb-"

#: Keys every setup dict made by ``NewBuffer`` carries.
REQUIRED_KEYS = ("number_of_slots", "values_per_slot", "dtype", "shm_name", "token", "dtype_hash", "role")


class SetupError(ValueError):
    """A setup dict is not for this role, or does not match its buffer."""


# ---------------------------------------------------------------------------
# what a slot holds
# ---------------------------------------------------------------------------


def slot_dtype(dtype: Any) -> np.dtype:
    """The NumPy dtype of a slot element, with clear errors for what cannot be stored.

    Raises
    ------
    ValueError
        For something that is no NumPy type, holds Python objects or has 0 bytes.
    """
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


def dtype_hash(dt: np.dtype) -> int:
    """A stable 63-bit FNV-1a hash of the dtype description, stored in the segment."""
    h = 0xCBF29CE484222325
    for b in str(dt.descr).encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h >> 1


# ---------------------------------------------------------------------------
# names and the owner's lifecycle: unlink at exit and on SIGTERM
# ---------------------------------------------------------------------------


class Owned(Protocol):
    """What the owner registry needs of a buffer (:class:`mimocorb.mimo_buffer.NewBuffer`)."""

    name: str
    _owner_pid: int

    def close(self) -> None: ...


_owned: weakref.WeakValueDictionary[str, Owned] = weakref.WeakValueDictionary()
_owned_lock = threading.Lock()
_name_counter = itertools.count()
_sigterm_installed = False


def new_segment_name(owner_pid: int, token: int) -> str:
    """A name no other segment has: the owner pid, a per-process count and a random token."""
    return f"/{SEGMENT_PREFIX}{owner_pid}-{next(_name_counter)}-{token & 0xFFFFFFFF:08x}"


def register_owner(shm_name: str, buffer: Owned) -> None:
    """Close ``buffer`` (and so unlink its segment) at interpreter exit and on SIGTERM.

    The registry holds weak references: a buffer collected earlier unlinks its segment itself."""
    with _owned_lock:
        _owned[shm_name] = buffer
    _install_sigterm_handler()


def forget_owner(shm_name: str) -> None:
    """The buffer of ``shm_name`` is closed: nothing is left to do at exit."""
    with _owned_lock:
        _owned.pop(shm_name, None)


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

#: One mapping per segment and process, shared by its endpoints (weak: unmapped with the last one).
_segments: weakref.WeakValueDictionary[tuple, _ringbuf.Segment] = weakref.WeakValueDictionary()


def attach(setup_dict: dict, role: str) -> tuple[_ringbuf.Segment, np.dtype]:
    """Map the segment of a setup dict after checking role and geometry.

    Raises
    ------
    SetupError
        For a dict not made by ``NewBuffer``, made for another role, not matching the
        segment of its name, or of a closed buffer.
    """
    if not isinstance(setup_dict, dict):
        raise SetupError(f"expected a setup dict from NewBuffer.new_{role}(), got {type(setup_dict).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in setup_dict]
    if missing:
        raise SetupError(f"setup dict lacks {', '.join(missing)}: it was not made by mimocorb's NewBuffer")
    given = setup_dict["role"]
    if given != role:
        maker = {"writer": "new_writer()", "reader": "new_reader_group()", "observer": "new_observer()"}
        raise SetupError(
            f"this setup dict is for a {given}, not a {role}: make it with NewBuffer.{maker.get(role, role)}"
        )
    dt = slot_dtype(setup_dict["dtype"])
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
    if seg.payload_bytes != dt.itemsize * setup_dict["values_per_slot"] or seg.dtype_hash != dtype_hash(dt):
        problems.append(f"dtype {setup_dict['dtype']!r} differs from the buffer's")
    if problems:
        raise SetupError(f"setup dict does not match ring buffer {setup_dict['shm_name']!r}: " + "; ".join(problems))
    if seg.state >= STATE_CLOSED:
        raise SetupError(f"ring buffer {setup_dict['shm_name']!r} is closed")
    return seg, dt


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


__all__ = [
    "SEGMENT_PREFIX",
    "SetupError",
    "attach",
    "cleanup_segments",
    "dtype_hash",
    "forget_owner",
    "list_segments",
    "new_segment_name",
    "register_owner",
    "slot_dtype",
]
