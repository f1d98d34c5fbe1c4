"""The ``RingBuffer`` section of a setup file: the buffers, their slot types, and what
shared memory can hold.

Each entry ``- RB_1: {number_of_slots: 128, channel_per_slot: 4250, data_type: {1: ['chA',
'float32'], ...}}`` becomes a :class:`BufferSpec` (the arguments of ``NewBuffer``). Besides
the form of each value, the check covers what a ring buffer can hold: a slot type that cannot
live in shared memory (Python objects, zero bytes), field names that clash with the metadata
columns, sizes beyond what ``/dev/shm`` has free (:func:`check_capacity`). How many reader
groups and processes a buffer gets depends on the functions:
:func:`mimocorb.daq.setup_functions.check_attachments`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from mimocorb import _ringbuf
from mimocorb.daq.setup_checks import Checker, single_key_items
from mimocorb.mimo_buffer import METADATA_DTYPE
from mimocorb.segments import slot_dtype

BUFFER_KEYS = {"number_of_slots", "channel_per_slot", "data_type"}
#: Largest channel_per_slot a buffer holds (the ring's header keeps it in 32 bits).
MAX_VALUES_PER_SLOT = 2**32 - 1
_EXPECTED = {
    "number_of_slots": "an integer >= 1",
    "channel_per_slot": "an integer >= 1 (values per slot)",
    "data_type": "a NumPy type name or a mapping {1: [name, type], ...}",
}


@dataclass
class BufferSpec:
    """One ring buffer of the setup: the arguments of ``NewBuffer``."""

    name: str
    number_of_slots: int
    values_per_slot: int
    dtype: Any  # as handed to NewBuffer: np.dtype, or list of (name, np.dtype)

    @property
    def field_names(self) -> list[str]:
        return [n for n, _ in self.dtype] if isinstance(self.dtype, list) else []


def buffer_names(raw: dict) -> set[str]:
    """Every buffer name the file declares, also of entries with errors (for RB_assign checks)."""
    return {name for _, name, _ in single_key_items(Checker(""), "RingBuffer", raw.get("RingBuffer", []))}


def read_buffers(chk: Checker, raw: dict) -> list[tuple[str, BufferSpec]]:
    """The valid buffers of the ``RingBuffer`` section, each with its key path; errors go to ``chk``."""
    out: list[tuple[str, BufferSpec]] = []
    if "RingBuffer" not in raw:
        chk.error("RingBuffer", "missing; expected a list of buffers like '- RB_1: {number_of_slots: 128, ...}'")
    for where, name, body in single_key_items(chk, "RingBuffer", raw.get("RingBuffer", [])):
        if not chk.mapping(where, body, BUFFER_KEYS, "number_of_slots, channel_per_slot, data_type"):
            continue
        if any(b.name == name for _, b in out):
            chk.error(where, f"buffer name {name!r} is used twice; buffer names must be unique")
        for k in sorted(BUFFER_KEYS - set(body)):
            chk.error(f"{where}.{k}", f"missing; expected {_EXPECTED[k]}")
        n = chk.integer(f"{where}.number_of_slots", body["number_of_slots"], 1) if "number_of_slots" in body else None
        v = (
            chk.integer(f"{where}.channel_per_slot", body["channel_per_slot"], 1)
            if "channel_per_slot" in body
            else None
        )
        dt = _parse_dtype(chk, f"{where}.data_type", body["data_type"]) if "data_type" in body else None
        if n is not None and v is not None and dt is not None:
            out.append((where, BufferSpec(name, n, v, dt)))
    return out


def _slot_type(chk: Checker, where: str, v: Any, what: str) -> Optional[np.dtype]:
    """A NumPy type that a slot in shared memory can hold (no Python objects, not 0 bytes)."""
    try:
        dt = np.dtype(v)
    except (TypeError, ValueError):
        chk.error(where, f"expected a NumPy type name like 'float32' or 'int32'{what}, got {v!r}")
        return None
    try:
        slot_dtype(dt)  # the ring buffer's own rule
    except ValueError as exc:
        chk.error(where, f"expected a numeric NumPy type like 'float32'{what}, got {v!r}: {exc}")
        return None
    return dt


def _parse_dtype(chk: Checker, where: str, v: Any) -> Any:
    """1.x ``data_type``: a NumPy type name, or ``{1: [name, type], ...}`` (or a list of pairs)."""
    if isinstance(v, str):
        return _slot_type(chk, where, v, " or a mapping {1: [name, type]}")
    if isinstance(v, dict):
        pairs = [(f"{where}.{k}", p) for k, p in v.items()]
    elif isinstance(v, list):
        pairs = [(f"{where}[{i}]", p) for i, p in enumerate(v)]
    else:
        chk.error(where, f"expected a NumPy type name like 'float32' or a mapping {{1: [name, type]}}, got {v!r}")
        return None
    out = []
    ok = True
    for w, p in pairs:
        if not (isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str) and p[0]):
            chk.error(w, f"expected a pair [field_name, type] like ['chA', 'float32'], got {p!r}")
            ok = False
            continue
        if p[0] in METADATA_DTYPE.names:
            chk.error(
                w,
                f"field name {p[0]!r} is the name of a metadata column ({', '.join(METADATA_DTYPE.names)}); "
                f"exported files would have two columns of that name: choose another name",
            )
            ok = False
            continue
        dt = _slot_type(chk, w, p[1], f" for field {p[0]!r}")
        if dt is None:
            ok = False
            continue
        if any(n == p[0] for n, _ in out):
            chk.error(w, f"field name {p[0]!r} appears twice; field names must be unique")
            ok = False
            continue
        out.append((p[0], dt))
    if ok and not out:
        chk.error(where, "expected at least one field [name, type], got none")
        return None
    return out if ok else None


def _mib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def check_capacity(chk: Checker, buffers: Sequence[tuple[str, BufferSpec]]) -> None:
    """What shared memory can hold: each buffer's size and their sum against /dev/shm."""
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:
        free = None
    total, too_big = 0, False
    for where, b in buffers:
        payload = b.values_per_slot * slot_dtype(b.dtype).itemsize
        need = b.number_of_slots * (payload + 8 * _ringbuf.MAX_GROUPS)  # at least this (Python ints: no overflow)
        if b.values_per_slot > MAX_VALUES_PER_SLOT:
            chk.error(f"{where}.channel_per_slot", f"expected at most {MAX_VALUES_PER_SLOT}, got {b.values_per_slot}")
            too_big = True
            continue
        if free is not None and need > free:
            chk.error(
                where,
                f"needs at least {_mib(need)} of shared memory ({b.number_of_slots} slots x {payload} bytes); "
                f"/dev/shm has {_mib(free)} free",
            )
            too_big = True
            continue
        total += _ringbuf.layout_sizes(b.number_of_slots, payload)[4]
    if free is not None and total > free and not too_big:
        chk.error(
            "RingBuffer", f"the buffers need {_mib(total)} of shared memory in all; /dev/shm has {_mib(free)} free"
        )


__all__ = ["BUFFER_KEYS", "MAX_VALUES_PER_SLOT", "BufferSpec", "buffer_names", "check_capacity", "read_buffers"]
