# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""mimocorb._ringbuf -- the compiled core of the ring buffer.

It knows bytes and sequence numbers, nothing of NumPy dtypes: a POSIX shared
memory segment (layout and invariants I1-I8 in ringbuf_shm.h, declared to
Cython in ringbuf_shm.pxd), writers that claim and publish slots, reader groups
whose members share the events of their group, observers that copy the newest
event, blocking waits that spin briefly and then sleep on a futex in the
segment, and a reaper that finishes what dead processes held.

One compiled module, because Cython inlines cdef functions only within a
module and the hot paths (claim, fill, publish, take, release) share their
helpers with the reaper that must undo each of their steps; its parts are
included below in the order of the segment: the segment and its header
(ringbuf_segment.pxi); the groups: gating, start, orphaning
(ringbuf_groups.pxi); what endpoints share (ringbuf_endpoint.pxi); writers
(ringbuf_writer.pxi); readers (ringbuf_reader.pxi); the reaper
(ringbuf_reaper.pxi); observers (ringbuf_observer.pxi). Each part starts with
the invariants it keeps; this file holds the constants, the wait results and
the fault points they all use.

The Python layer (mimocorb.mimo_buffer) builds the NumPy views, once per slot,
and hands them to the endpoints here, which return them without allocating.
"""

from cpython.buffer cimport PyBUF_SIMPLE, PyBUF_WRITABLE, PyBuffer_FillInfo, PyBuffer_Release, PyObject_GetBuffer
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

from ringbuf_shm cimport *

import os

cdef extern from "<sys/mman.h>" nogil:
    void *mmap(void *addr, size_t length, int prot, int flags, int fd, long offset)
    int munmap(void *addr, size_t length)
    int shm_open(const char *name, int oflag, unsigned int mode)
    int shm_unlink(const char *name)
    int PROT_READ
    int PROT_WRITE
    int MAP_SHARED
    void *MAP_FAILED

cdef extern from "<fcntl.h>" nogil:
    int O_CREAT
    int O_EXCL
    int O_RDWR
    int posix_fallocate(int fd, long offset, long length)

cdef extern from "<unistd.h>" nogil:
    int ftruncate(int fd, long length)
    int close(int fd)
    int getpid()

cdef extern from "<signal.h>" nogil:
    int kill(int pid, int sig)
    int SIGSTOP

cdef extern from "<errno.h>" nogil:
    int errno
    int EINTR


cdef uint64_t NO_TAIL = <uint64_t>0xFFFFFFFFFFFFFFFF

# results of the waiting loops
cdef enum:
    W_OK = 0
    W_STOPPED = 1      # writers: the run is ending
    W_END = 2          # readers: nothing left, the run has ended
    W_SIGNAL = 3       # a signal arrived: Python must run its handlers
    W_OWNER_GONE = 4   # the creating process died
    W_TIMEOUT = 5
    W_CLOSING = 6      # close() was called from another thread
    W_LAP = 7          # writers: the next slot's previous sequence is not finished yet (I1a)

# results of ReaderCore._try_claim
cdef enum:
    C_NONE = 0
    C_TOOK = 1
    C_HOLD = 2         # the group's claims are on hold (orphaned, or a state change under way)


# how long a waiter sleeps on the futex before it looks at liveness again
cdef double SLEEP_SLICE = 0.1
cdef double LIVENESS_PERIOD = 0.25
# A spinning waiter that finds SPIN_PREEMPTED seconds between two spin rounds (each a few
# microseconds) was descheduled: no core is free for it. It then sleeps as the default
# wait does for SPIN_BACKOFF seconds (see _Endpoint._keep_spinning).
cdef double SPIN_PREEMPTED = 0.0002
cdef double SPIN_BACKOFF = 0.25
cdef double HOLD_PAUSE = 0.0002  # a member waits this long for a group's state change to end

MAX_GROUPS = RB_MAX_GROUPS
MAX_PROCS = RB_MAX_PROCS
LAYOUT_VERSION = RB_VERSION
STATE_RUNNING = RB_RUNNING
STATE_STOPPING = RB_STOPPING
STATE_SHUTDOWN = RB_SHUTDOWN
STATE_CLOSED = RB_CLOSED
STATE_NAMES = {RB_RUNNING: "running", RB_STOPPING: "stopping", RB_SHUTDOWN: "shutdown", RB_CLOSED: "closed"}
GROUP_UNUSED = RB_GROUP_UNUSED
GROUP_ACTIVE = RB_GROUP_ACTIVE
GROUP_ORPHANED = RB_GROUP_ORPHANED
GROUP_STARTING = RB_GROUP_STARTING
GROUP_STATE_NAMES = {RB_GROUP_UNUSED: "unused", RB_GROUP_ACTIVE: "active", RB_GROUP_ORPHANED: "orphaned",
                     RB_GROUP_STARTING: "starting"}
ROLE_WRITER = RB_ROLE_WRITER
ROLE_READER = RB_ROLE_READER


class RingError(RuntimeError):
    """The segment is missing, foreign, of another layout, or cannot be created."""


class OwnerGone(SystemExit):
    """The process that created the buffer has died: end this worker."""


# ---------------------------------------------------------------------------
# fault points: a process stops itself (SIGSTOP) at a named step, so that a
# test can kill it exactly there, or let it go on (SIGCONT) after changing
# what it races with. One load and compare of a module global per point.
# ---------------------------------------------------------------------------

cdef enum:
    FP_NONE = 0
    FP_WRITER_ANNOUNCED     # claim announced in the registry, CAS not yet done (I5)
    FP_WRITER_CLAIMED       # sequence claimed, nothing written yet
    FP_WRITER_PUBLISHING    # first slot of a batch published, the rest not
    FP_WRITER_PUBLISHED     # all published, announcement not yet withdrawn
    FP_READER_ANNOUNCED     # claim announced, CAS not yet done
    FP_READER_RELEASING     # done marks stored, release cursor not yet moved
    FP_JOINING              # registry entry taken, not yet filled in
    FP_REGISTERED           # registered as a member, group not yet looked at
    FP_REAPER_TOOK          # a dead process's entry taken for reaping
    FP_REAPER_MARKED        # one of its sequences finished, loss not yet counted
    FP_REAPER_RELEASED      # all finished, entry not yet freed
    FP_GROUP_LOCKED         # group lock taken, nothing changed yet
    FP_GROUP_HOLD           # claims put on hold, orphan decision not yet made
    FP_GROUP_STARTING       # group gates again, cursors not yet moved
    FP_GROUP_MOVED          # release cursor moved, claims not yet opened
    FP_SLEEP_ANNOUNCED      # a waiter read the futex word and raised its flag, not yet re-checked

FAULT_POINTS = {
    "writer_announced": FP_WRITER_ANNOUNCED, "writer_claimed": FP_WRITER_CLAIMED,
    "writer_publishing": FP_WRITER_PUBLISHING, "writer_published": FP_WRITER_PUBLISHED,
    "reader_announced": FP_READER_ANNOUNCED, "reader_releasing": FP_READER_RELEASING,
    "joining": FP_JOINING, "registered": FP_REGISTERED,
    "reaper_took": FP_REAPER_TOOK, "reaper_marked": FP_REAPER_MARKED, "reaper_released": FP_REAPER_RELEASED,
    "group_locked": FP_GROUP_LOCKED, "group_hold": FP_GROUP_HOLD,
    "group_starting": FP_GROUP_STARTING, "group_moved": FP_GROUP_MOVED,
    "sleep_announced": FP_SLEEP_ANNOUNCED,
}

cdef int _fault_point = FP_NONE
cdef long _fault_skip = 0


cdef inline void _fault(int point) noexcept nogil:
    if _fault_point == point:
        _fault_hit()


cdef void _fault_hit() noexcept nogil:
    global _fault_point, _fault_skip
    if _fault_skip > 0:
        _fault_skip -= 1
        return
    _fault_point = FP_NONE
    kill(getpid(), SIGSTOP)


def _set_fault_point(name, long skip=0):
    """Test hook: stop this process (SIGSTOP) the (skip+1)-th time it reaches
    the named step (a key of FAULT_POINTS); None clears it."""
    global _fault_point, _fault_skip
    if name is None:
        _fault_point = FP_NONE
        return
    if name not in FAULT_POINTS:
        raise ValueError(f"unknown fault point {name!r}; known: {', '.join(sorted(FAULT_POINTS))}")
    _fault_skip = skip
    _fault_point = FAULT_POINTS[name]


def _set_sleep_slice(double seconds):
    """Test hook: how long a waiter sleeps before it looks at liveness again
    (0.1 s). A long slice turns a lost wake-up into a hang a test can see."""
    global SLEEP_SLICE
    if not seconds > 0:
        raise ValueError(f"the sleep slice must be > 0 s, got {seconds}")
    SLEEP_SLICE = seconds


def _identity_alive(int pid, uint64_t start_time):
    """Test hook: is (pid, start time in clock ticks) a running process?"""
    return bool(rb_ident_alive((start_time & 0xffffffff) << 32 | <uint64_t>pid))


include "ringbuf_segment.pxi"
include "ringbuf_groups.pxi"
include "ringbuf_endpoint.pxi"
include "ringbuf_writer.pxi"
include "ringbuf_reader.pxi"
include "ringbuf_reaper.pxi"
include "ringbuf_observer.pxi"
