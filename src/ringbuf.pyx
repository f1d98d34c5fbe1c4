# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""mimocorb._ringbuf -- the compiled core of the ring buffer.

It knows bytes and sequence numbers, nothing of NumPy dtypes: a POSIX shared
memory segment (layout and invariants I1-I8 in ringbuf_shm.h, declared to
Cython in ringbuf_shm.pxd), writers that claim and publish slots, reader groups
whose members share the events of their group, observers that copy the newest
event, blocking waits that spin briefly and then sleep on a futex in the
segment, and a reaper that finishes what dead processes held.

This file is longer than the project's usual ~600 lines on purpose: Cython
inlines cdef functions only within one module, and the hot paths (claim, fill,
publish, take, release) share their helpers with the reaper that must undo
each of their steps. It reads in the order of the segment: the segment and its
header; the groups (gating, start, orphaning); writers; readers; the reaper;
observers. Each part starts with the invariants it keeps.

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

# results of ReaderCore._try_claim
cdef enum:
    C_NONE = 0
    C_TOOK = 1
    C_HOLD = 2         # the group's claims are on hold (orphaned, or a state change under way)

# why a writer cannot fill its claim yet (WriterCore._blocked)
cdef enum:
    B_FREE = 0
    B_LAP = 1          # I1a: a slower writer still fills the slot's previous sequence
    B_GATE = 2         # I1b: a group has not released the slot's previous sequence

# how long a waiter sleeps on the futex before it looks at liveness again
cdef double SLEEP_SLICE = 0.1
cdef double LIVENESS_PERIOD = 0.25
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


# ===========================================================================
# The segment
#
# Created and initialised by the owner, the magic number stored last, so a
# half-made segment is never taken for ours; attached by everyone else after
# checking magic, version and geometry. The mapping stays while a NumPy view
# of it or a call without the GIL uses it (exports, users).
# ===========================================================================

cdef inline uint64_t _round_up(uint64_t n, uint64_t to) noexcept nogil:
    return (n + to - 1) // to * to


def layout_sizes(uint64_t nslots, uint64_t payload_bytes):
    """Bytes of (header, slot table, done marks, data, total, slot stride) for a geometry."""
    cdef uint64_t stride = _round_up(payload_bytes if payload_bytes > 0 else 1, RB_LINE)
    cdef uint64_t hdr = rb_header_size()
    cdef uint64_t slots = _round_up(nslots * rb_slot_size(), RB_LINE)
    cdef uint64_t done = _round_up(<uint64_t>RB_MAX_GROUPS * nslots * 8, RB_LINE)
    cdef uint64_t data = nslots * stride
    return hdr, slots, done, data, hdr + slots + done + data, stride


cdef class Segment:
    """One mapped ring-buffer segment. Exposes its payload area through the
    buffer protocol (bytes), so NumPy views keep the mapping alive."""

    cdef char *base
    cdef size_t size
    cdef rb_header *hdr
    cdef rb_slot *slots
    cdef uint64_t *done
    cdef char *data
    cdef int exports
    cdef int users            # calls in progress without the GIL (reap, copies)
    cdef bint unmap_pending   # close() came while users > 0: the last user unmaps
    cdef readonly str name
    cdef readonly bint is_owner
    cdef object __weakref__

    def __cinit__(self):
        self.base = NULL
        self.exports = 0
        self.users = 0
        self.unmap_pending = False

    cdef int _map(self, int fd, size_t size) except -1:
        cdef void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        if p == MAP_FAILED:
            raise OSError(errno, os.strerror(errno))
        self.base = <char *>p
        self.size = size
        self.hdr = <rb_header *>p
        return 0

    cdef void _set_pointers(self) noexcept:
        self.slots = <rb_slot *>(self.base + self.hdr.slots_offset)
        self.done = <uint64_t *>(self.base + self.hdr.done_offset)
        self.data = self.base + self.hdr.data_offset

    cdef int _enter(self) except -1:
        """Mark a call that will run without the GIL (with the GIL held)."""
        if self.base == NULL or self.unmap_pending:
            raise ValueError("the ring buffer segment is closed")
        self.users += 1
        return 0

    cdef void _leave(self) noexcept:
        self.users -= 1
        if self.users == 0 and self.unmap_pending and self.exports == 0:
            self._unmap()

    cdef void _unmap(self) noexcept:
        if self.base != NULL:
            munmap(self.base, self.size)
            self.base = NULL
            self.hdr = NULL

    @staticmethod
    def create(str name, uint64_t nslots, uint64_t payload_bytes, uint32_t values_per_slot,
               uint64_t token, uint64_t dtype_hash):
        """Create, size, reserve (no SIGBUS later) and initialise a new segment."""
        cdef Segment seg = Segment.__new__(Segment)
        hdr_b, slots_b, done_b, _data_b, total, stride = layout_sizes(nslots, payload_bytes)
        cdef bytes bname = name.encode()
        free = _shm_free_bytes()
        if 0 <= free < total:
            raise RingError(_no_room_message(total, nslots, payload_bytes, free, "not enough free space"))
        cdef int fd = shm_open(bname, O_CREAT | O_EXCL | O_RDWR, 0o600)
        if fd < 0:
            raise RingError(f"cannot create shared memory segment {name!r}: {os.strerror(errno)}")
        cdef int rc
        try:
            if ftruncate(fd, total) != 0:
                raise RingError(f"cannot size segment {name!r} to {total} bytes: {os.strerror(errno)}")
            # Reserve every page now: a full /dev/shm must fail here, not as a SIGBUS later.
            rc = posix_fallocate(fd, 0, total)
            if rc != 0:
                raise RingError(_no_room_message(total, nslots, payload_bytes, _shm_free_bytes(), os.strerror(rc)))
            seg._map(fd, total)
        except BaseException:
            close(fd)
            shm_unlink(bname)
            raise
        close(fd)
        seg.name = name
        seg.is_owner = True
        cdef rb_header *h = seg.hdr
        memset(seg.base, 0, hdr_b + slots_b + done_b)
        h.version = RB_VERSION
        h.header_bytes = <uint32_t>hdr_b
        h.nslots = nslots
        h.slot_stride = stride
        h.payload_bytes = payload_bytes
        h.slots_offset = hdr_b
        h.done_offset = hdr_b + slots_b
        h.data_offset = hdr_b + slots_b + done_b
        h.total_bytes = total
        h.token = token
        h.dtype_hash = dtype_hash
        h.owner_id = rb_self_ident()
        h.values_per_slot = values_per_slot
        h.created = rb_wall_time()
        h.state = RB_RUNNING
        h.claim_limit = NO_TAIL
        rb_fence_sc()
        rb_store_rel64(&h.magic, RB_MAGIC)  # last: a half-made segment is never taken for ours
        seg._set_pointers()
        return seg

    @staticmethod
    def attach(str name):
        """Map an existing segment and check that it is one of ours, of this layout."""
        cdef Segment seg = Segment.__new__(Segment)
        cdef bytes bname = name.encode()
        cdef int fd = shm_open(bname, O_RDWR, 0)
        if fd < 0:
            raise RingError(f"ring buffer segment {name!r} does not exist (closed, or never created): "
                            f"{os.strerror(errno)}")
        try:
            st = os.fstat(fd)
            if st.st_size < <long>rb_header_size():
                raise RingError(f"segment {name!r} is not a mimocorb ring buffer ({st.st_size} bytes, too small)")
            seg._map(fd, st.st_size)
        finally:
            close(fd)
        seg.name = name
        seg.is_owner = False
        cdef rb_header *h = seg.hdr
        if rb_load_acq64(&h.magic) != RB_MAGIC:
            seg.close()
            raise RingError(f"segment {name!r} is not a mimocorb ring buffer (bad magic number)")
        if h.version != RB_VERSION:
            v = h.version
            seg.close()
            raise RingError(f"segment {name!r} has layout version {v}, this mimocorb reads version {RB_VERSION}")
        hdr_b, slots_b, done_b, _data_b, total, stride = layout_sizes(h.nslots, h.payload_bytes)
        if (h.total_bytes != total or h.total_bytes > seg.size or h.slot_stride != stride
                or h.data_offset != hdr_b + slots_b + done_b):
            seg.close()
            raise RingError(f"segment {name!r} has an inconsistent geometry header (corrupt or foreign)")
        seg._set_pointers()
        return seg

    # -- the payload area, for NumPy views ---------------------------------
    def __getbuffer__(self, Py_buffer *buffer, int flags):
        if self.base == NULL:
            raise ValueError("the ring buffer segment is closed")
        PyBuffer_FillInfo(buffer, self, self.data, self.hdr.nslots * self.hdr.slot_stride, 0, flags)
        self.exports += 1

    def __releasebuffer__(self, Py_buffer *buffer):
        self.exports -= 1

    def close(self):
        """Unmap now, or as soon as the last NumPy view of the slots and the
        last call running without the GIL are done with the mapping."""
        if self.base == NULL:
            return
        if self.exports > 0 or self.users > 0:
            self.unmap_pending = True  # the last user unmaps; views: __dealloc__ does
            return
        self._unmap()

    def __dealloc__(self):
        self._unmap()

    def unlink(self):
        """Remove the segment's name; memory is freed when the last process unmaps it."""
        if self.name is not None:
            shm_unlink(self.name.encode())

    @property
    def mapped(self):
        return self.base != NULL and not self.unmap_pending

    # -- geometry and identity -------------------------------------------
    @property
    def nslots(self):
        return self.hdr.nslots

    @property
    def slot_stride(self):
        return self.hdr.slot_stride

    @property
    def payload_bytes(self):
        return self.hdr.payload_bytes

    @property
    def values_per_slot(self):
        return self.hdr.values_per_slot

    @property
    def token(self):
        return self.hdr.token

    @property
    def dtype_hash(self):
        return self.hdr.dtype_hash

    @property
    def owner_pid(self):
        return RB_ID_PID(self.hdr.owner_id)

    @property
    def total_bytes(self):
        return self.hdr.total_bytes

    # -- run state -----------------------------------------------------------
    @property
    def state(self):
        return rb_load_acq32(&self.hdr.state)

    @property
    def paused(self):
        return rb_load_acq32(&self.hdr.paused) != 0

    @paused.setter
    def paused(self, value):
        rb_store_sc32(&self.hdr.paused, 1 if value else 0)

    def owner_alive(self):
        return bool(rb_ident_alive(self.hdr.owner_id))

    @property
    def claim_limit(self):
        """Writers stop (SystemExit) once this many sequences were claimed; None: no limit."""
        cdef uint64_t lim = rb_load_acq64(&self.hdr.claim_limit)
        return None if lim == NO_TAIL else lim

    @claim_limit.setter
    def claim_limit(self, value):
        # Writers re-read the limit after their claim's CAS and give back what
        # lies beyond it, so a limit set while they run is kept exactly unless
        # more was already claimed than it allows (see WriterCore._claim).
        rb_store_sc64(&self.hdr.claim_limit, NO_TAIL if value is None else <uint64_t>value)
        rb_wake_always(&self.hdr.space_futex)

    @property
    def claimed(self):
        """Sequences claimed by writers so far (the write cursor)."""
        return rb_load_sc64(&self.hdr.write_claim)

    def set_state(self, uint32_t new_state):
        """Move the run state forward (never back) and wake every sleeper."""
        cdef uint32_t cur
        while True:
            cur = rb_load_acq32(&self.hdr.state)
            if cur >= new_state or rb_cas32(&self.hdr.state, cur, new_state):
                break
        rb_wake_always(&self.hdr.data_futex)
        rb_wake_always(&self.hdr.space_futex)

    # -- groups ------------------------------------------------------------
    def add_group(self):
        """Add a reader group that receives the events published from now on.

        Only the owning process adds groups (one thread at a time). The group
        becomes visible gating from the write cursor w0, then starts at the
        cursor w2 read after the writers' cached tails expired (I1b, see
        _group_start): a writer that claimed before w2 without seeing the
        group wrote a sequence the group never reads.
        """
        cdef rb_header *h = self.hdr
        cdef uint32_t g = rb_load_acq32(&h.ngroups)
        if g >= <uint32_t>RB_MAX_GROUPS:
            raise RingError(f"a buffer has at most {RB_MAX_GROUPS} reader groups")
        cdef rb_group *grp = &h.groups[g]
        cdef uint64_t w0 = rb_load_sc64(&h.write_claim)
        rb_store_rel64(&grp.lock, rb_self_ident())
        grp.start_seq = w0
        grp.members_ever = 0
        grp.lost_dead_reader = 0
        grp.lost_orphaned = 0
        grp.lost_abandoned = 0
        rb_store_sc64(&grp.release, w0)
        rb_store_sc64(&grp.claim, w0 | RB_HOLD)
        rb_store_sc32(&grp.state, RB_GROUP_STARTING)
        rb_store_sc32(&h.ngroups, g + 1)  # visible from here on, gating from w0
        _group_start(h, grp, False)
        _group_unlock(grp)
        return g

    def retire_group(self, uint32_t g):
        """Every member of group g has ended for good (its workers returned):
        unless a live member is still registered, the group stops holding
        back the writers, as when its last member dies. What it had not
        consumed, and what is published while it has no member, counts as
        lost (orphaned); a member joining later starts it again with the
        events published from then on."""
        cdef rb_header *h = self.hdr
        cdef bint got
        if g >= rb_load_acq32(&h.ngroups):
            raise RingError(f"reader group {g} does not exist in this buffer")
        cdef rb_group *grp = &h.groups[g]
        self._enter()
        try:
            while True:
                with nogil:
                    got = _group_trylock(h, self.done, g)
                    if got:
                        _group_settle(h, g, False)
                        _group_unlock(grp)
                if got:
                    break
                PyErr_CheckSignals()
                with nogil:
                    rb_sleep_s(HOLD_PAUSE)
        finally:
            self._leave()
        rb_wake_always(&h.space_futex)

    def reap(self):
        """Finish what dead writers and readers held; returns the number reaped."""
        cdef int n
        self._enter()
        try:
            with nogil:
                n = _reap(self.hdr, self.slots, self.done)
        finally:
            self._leave()
        return n

    def snapshot(self):
        """Raw counters for the statistics of the Python layer."""
        cdef rb_header *h = self.hdr
        cdef int i
        cdef uint32_t g
        cdef rb_group *grp
        cdef rb_proc *p
        cdef uint64_t o, c
        cdef uint32_t ng = rb_load_acq32(&h.ngroups)
        members = [0] * ng
        in_use = 0
        published = 0
        deadtime = 0.0
        procs = []
        for i in range(RB_MAX_PROCS):
            p = &h.procs[i]
            # entry statistics only grow, whoever owns the entry: totals are sums
            published += rb_load_acq64(&p.published)
            deadtime += rb_load_acq_f64(&p.deadtime_sum)
            o = rb_load_acq64(&p.owner)
            in_use += o != 0
            if o == 0 or (o & RB_ID_FLAGS):
                continue  # free, or being filled in or reaped
            role = p.role
            own = rb_load_acq64(&p.published if role == RB_ROLE_WRITER else &p.consumed)
            procs.append({"pid": RB_ID_PID(o), "role": role, "group": p.group,
                          "held_n": rb_load_acq32(&p.held_n), "held": rb_load_rlx64(&p.held),
                          "count": own - p.base})
            if role == RB_ROLE_READER and p.group < ng:
                members[p.group] += 1
        groups = []
        for g in range(ng):
            grp = &h.groups[g]
            c = rb_load_acq64(&grp.claim)
            groups.append({
                "state": rb_load_acq32(&grp.state),
                "claim": c & ~RB_HOLD,
                "hold": (c & RB_HOLD) != 0,
                "release": rb_load_acq64(&grp.release),
                "start": rb_load_acq64(&grp.start_seq),
                "members_attached": members[g],
                "members_ever": rb_load_acq32(&grp.members_ever),
                "lost_dead_reader": rb_load_acq64(&grp.lost_dead_reader),
                "lost_orphaned": rb_load_acq64(&grp.lost_orphaned),
                "lost_abandoned": rb_load_acq64(&grp.lost_abandoned),
            })
        return {
            "state": rb_load_acq32(&h.state),
            "paused": rb_load_acq32(&h.paused) != 0,
            "write_claim": rb_load_acq64(&h.write_claim),
            "published": published,
            "deadtime_sum": deadtime,
            "abandoned": rb_load_acq64(&h.abandoned_total),
            "void": rb_load_acq64(&h.void_total),
            "reaped_readers": rb_load_acq64(&h.reaped_readers),
            "reaped_writers": rb_load_acq64(&h.reaped_writers),
            "groups": groups,
            "procs": procs,
            "entries_in_use": in_use,
        }

    def drained(self):
        """True when every gating group that has a registered member has
        consumed all claimed sequences and no writer holds an unpublished slot."""
        cdef rb_header *h = self.hdr
        cdef uint64_t w = rb_load_sc64(&h.write_claim)
        cdef uint32_t g, st
        cdef int i
        cdef rb_group *grp
        for g in range(rb_load_acq32(&h.ngroups)):
            grp = &h.groups[g]
            st = rb_load_acq32(&grp.state)
            if st != RB_GROUP_ACTIVE and st != RB_GROUP_STARTING:
                continue
            if rb_load_acq64(&grp.release) < w and _registered_members(h, g) > 0:
                return False
        for i in range(RB_MAX_PROCS):
            if (_owned_entry(&h.procs[i]) and h.procs[i].role == RB_ROLE_WRITER
                    and rb_load_acq32(&h.procs[i].held_n) != 0):
                return False
        return True


def _no_room_message(total, nslots, payload_bytes, free, why):
    return (f"/dev/shm cannot hold a ring buffer of {total} bytes ({total / 2**20:.1f} MiB: "
            f"{nslots} slots x {payload_bytes} bytes + bookkeeping); {free} bytes "
            f"({free / 2**20:.1f} MiB) are free there ({why}). "
            "Use fewer or smaller slots, or enlarge /dev/shm.")


def _shm_free_bytes():
    try:
        st = os.statvfs("/dev/shm")
        return st.f_bavail * st.f_frsize
    except OSError:
        return -1


cdef inline bint _owned_entry(rb_proc *p) noexcept nogil:
    """A registry entry with a registered owner (not free, not being filled in or reaped)."""
    cdef uint64_t o = rb_load_sc64(&p.owner)
    return o != 0 and (o & RB_ID_FLAGS) == 0


cdef int _registered_members(rb_header *h, uint32_t g) noexcept nogil:
    cdef int i, n = 0
    for i in range(RB_MAX_PROCS):
        if _owned_entry(&h.procs[i]) and h.procs[i].role == RB_ROLE_READER and h.procs[i].group == g:
            n += 1
    return n


# ===========================================================================
# Groups: gating, start, orphaning
#
# I1b  Writers read the gating tail (the smallest release cursor of the groups
#      that gate: ACTIVE and STARTING) and cache it for one group epoch; every
#      change of a group's gating bumps the epoch, and within an epoch release
#      cursors only grow, so a cached tail is never too high.
# I3   Members claim with a CAS on group.claim; RB_HOLD in that word closes
#      claims (the CAS of a member expects a word without it).
# I7   State changes happen under the group's lock, taken over from a dead
#      holder; each step below can be redone by the successor.
# I8   A group is orphaned only when its claims are on hold and then no live
#      registered member is found. A joiner registers (seq_cst) and then reads
#      the claim word (seq_cst): either the orphaning process sees the joiner
#      and opens claims again, or the joiner sees the hold and settles the
#      group itself (start it again) once it holds the lock.
# ===========================================================================

cdef inline uint64_t _gating_tail(rb_header *h) noexcept nogil:
    """Smallest release cursor of the groups that gate the writers (NO_TAIL when none does)."""
    cdef uint32_t ng = rb_load_acq32(&h.ngroups)
    cdef uint32_t g, st
    cdef uint64_t t = NO_TAIL
    cdef uint64_t r
    for g in range(ng):
        st = rb_load_acq32(&h.groups[g].state)
        if st == RB_GROUP_ACTIVE or st == RB_GROUP_STARTING:
            r = rb_load_acq64(&h.groups[g].release)
            if r < t:
                t = r
    return t


cdef inline void _bump_epoch(rb_header *h) noexcept nogil:
    rb_add32(&h.group_epoch, 1)


cdef bint _group_trylock(rb_header *h, uint64_t *done, uint32_t g) noexcept nogil:
    """Take group g's state lock, or take it over from a dead holder (I7) and
    finish the counted step that holder may have left half done (I6)."""
    cdef rb_group *grp = &h.groups[g]
    cdef uint64_t me = rb_self_ident()
    cdef uint64_t cur = rb_load_acq64(&grp.lock)
    if cur == 0:
        if not rb_cas64(&grp.lock, 0, me):
            return False
    elif cur != me and not rb_ident_alive(cur):
        if not rb_cas64(&grp.lock, cur, me):
            return False
    else:
        return False  # a live holder (possibly another thread of this process)
    _group_recover(h, done, g)
    _fault(FP_GROUP_LOCKED)
    return True


cdef void _group_recover(rb_header *h, uint64_t *done, uint32_t g) noexcept nogil:
    """Lock held: a logged step whose count is missing gets its count (I6).
    The counters are written only under the lock, so storing the logged
    target is right whether the dead holder counted or not."""
    cdef rb_group *grp = &h.groups[g]
    cdef uint64_t n = h.nslots
    cdef uint64_t *done_g = done + <uint64_t>g * n
    cdef uint64_t log = rb_load_sc64(&grp.log_seq)
    cdef uint64_t v, kind, target
    if log == 0:
        return
    kind = log >> 62
    v = RB_LOG_VALUE(log)
    target = rb_load_acq64(&grp.log_target)
    if kind == RB_LOG_DEAD:
        if rb_load_sc64(&done_g[(v - 1) % n]) >= v or rb_load_sc64(&grp.release) >= v:
            rb_store_rel64(&grp.lost_dead_reader, target)
    elif kind == RB_LOG_ORPHANED:
        if rb_load_sc64(&grp.release) >= v:
            rb_store_rel64(&grp.lost_orphaned, target)
    elif kind == RB_LOG_SKIP:
        if (rb_load_sc64(&grp.claim) & ~RB_HOLD) >= v:  # the skip's CAS was done: finish it
            rb_advance64(&done_g[(v - 1) % n], v)
            rb_store_rel64(&grp.lost_abandoned, target)
            _advance_release(grp, done_g, n)
    rb_store_sc64(&grp.log_seq, 0)


cdef inline void _log_step(rb_group *grp, uint64_t kind, uint64_t value, uint64_t target) noexcept nogil:
    rb_store_rel64(&grp.log_target, target)
    rb_store_sc64(&grp.log_seq, kind << 62 | value)


cdef inline void _log_clear(rb_group *grp) noexcept nogil:
    rb_store_sc64(&grp.log_seq, 0)


cdef inline void _group_unlock(rb_group *grp) noexcept nogil:
    rb_store_rel64(&grp.lock, 0)


cdef bint _has_live_member(rb_header *h, uint32_t g) noexcept nogil:
    """Is a live process registered as a member of group g?"""
    cdef int i
    cdef uint64_t o
    cdef rb_proc *p
    for i in range(RB_MAX_PROCS):
        p = &h.procs[i]
        o = rb_load_sc64(&p.owner)
        if o == 0 or (o & RB_ID_FLAGS) or p.role != RB_ROLE_READER or p.group != g:
            continue
        if rb_ident_alive(o):
            return True
    return False


cdef void _set_hold(rb_group *grp, bint hold) noexcept nogil:
    cdef uint64_t c
    while True:
        c = rb_load_sc64(&grp.claim)
        if ((c & RB_HOLD) != 0) == hold:
            return
        if rb_cas64(&grp.claim, c, (c | RB_HOLD) if hold else (c & ~RB_HOLD)):
            return


cdef void _group_start(rb_header *h, rb_group *grp, bint count_lost) noexcept nogil:
    """(Re)start a group, lock held: it gates, then starts at the write cursor
    w read after the writers' cached tails expired (I1b). A successor that
    took the lock over redoes what is left; each step is idempotent."""
    cdef uint64_t c, w, r
    if rb_load_sc32(&grp.state) == RB_GROUP_ORPHANED:
        rb_store_sc32(&grp.state, RB_GROUP_STARTING)  # gates from the old release cursor on
    _bump_epoch(h)
    _fault(FP_GROUP_STARTING)
    c = rb_load_sc64(&grp.claim)
    if c & RB_HOLD:
        # Every writer that filled a sequence without seeing this group gate
        # claimed it before w; the group starts at w and never reads those.
        w = rb_load_sc64(&h.write_claim)
        while True:
            r = rb_load_sc64(&grp.release)
            if r >= w:
                break
            if count_lost:  # what was published while no member lived (I6: logged, then moved, then counted)
                _log_step(grp, RB_LOG_ORPHANED, w, rb_load_acq64(&grp.lost_orphaned) + (w - r))
            if rb_cas64(&grp.release, r, w):
                _fault(FP_GROUP_MOVED)
                if count_lost:
                    rb_store_rel64(&grp.lost_orphaned, rb_load_acq64(&grp.log_target))
                    _log_clear(grp)
                break
        rb_store_rel64(&grp.start_seq, w)
        rb_cas64(&grp.claim, c, w)  # claims open at w (nobody else changes a word on hold)
    rb_store_sc32(&grp.state, RB_GROUP_ACTIVE)
    _bump_epoch(h)
    rb_wake_always(&h.space_futex)  # writers that slept on the interim gate
    rb_wake_always(&h.data_futex)   # members that waited for the claims to open


cdef void _group_settle(rb_header *h, uint32_t g, bint member) noexcept nogil:
    """Bring group g to a stable state, lock held: ACTIVE with claims open when
    a live member is registered, ORPHANED otherwise (I8). `member`: the caller
    is a live registered member. Called by joiners, by members that met a
    hold, by the reaper after a member died and by retire_group; redone by
    whoever takes the lock over from a dead caller."""
    cdef rb_group *grp = &h.groups[g]
    cdef uint32_t st = rb_load_sc32(&grp.state)
    if st == RB_GROUP_STARTING:
        _group_start(h, grp, True)  # a start that a dead holder left half done
        return
    if st == RB_GROUP_ORPHANED:
        if member or _has_live_member(h, g):
            _group_start(h, grp, True)
        return
    if st != RB_GROUP_ACTIVE:
        return
    if not (rb_load_sc64(&grp.claim) & RB_HOLD):
        if member or _has_live_member(h, g):
            return
        _set_hold(grp, True)  # close claims, then look again: the Dekker pair of I8
        _fault(FP_GROUP_HOLD)
    if member or _has_live_member(h, g):
        _set_hold(grp, False)
        rb_wake_always(&h.data_futex)
        return
    rb_store_sc32(&grp.state, RB_GROUP_ORPHANED)
    _bump_epoch(h)
    rb_wake_always(&h.space_futex)


# ===========================================================================
# Endpoints: what writers and readers share
#
# Registration: an entry is taken with the JOINING flag (the reaper frees it
# at once if that process dies: it holds nothing yet), filled in, then
# published with the owner's identity (seq_cst). Statistics of the entry only
# grow; `base` remembers where this owner started.
# One endpoint serves one thread. close() from another thread while a call
# waits without the GIL is deferred: the waiting call ends with SystemExit and
# finishes the close, so nothing it uses is freed under it.
# ===========================================================================

cdef rb_proc *_take_entry(rb_header *h) noexcept nogil:
    """A free registry entry, reserved with the JOINING flag; NULL when full."""
    cdef int i
    cdef uint64_t me = rb_self_ident() | RB_ID_JOINING
    for i in range(RB_MAX_PROCS):
        if rb_load_rlx64(&h.procs[i].owner) == 0 and rb_cas64(&h.procs[i].owner, 0, me):
            return &h.procs[i]
    return NULL


cdef class _Endpoint:

    cdef Segment seg
    cdef rb_header *hdr
    cdef rb_slot *slots
    cdef uint64_t *done
    cdef char *data
    cdef uint64_t nslots
    cdef uint64_t stride
    cdef uint64_t payload
    cdef rb_proc *me
    cdef list views
    cdef object base2d
    cdef double spin_s
    cdef bint spin_forever
    cdef double next_liveness
    cdef uint64_t own_count   # events published / consumed by this endpoint
    cdef uint64_t base        # the entry's counter when this endpoint registered
    cdef bint busy            # a call waits without the GIL
    cdef bint closing         # close() came while busy

    def __cinit__(self):
        self.hdr = NULL
        self.me = NULL
        self.busy = False
        self.closing = False

    cdef int _setup(self, Segment seg, list views, object base2d, uint32_t role, uint32_t group,
                    double spin_s, bint spin_forever) except -1:
        if not seg.mapped:
            raise RingError("the ring buffer segment is closed")
        self.seg = seg
        self.hdr = seg.hdr
        self.slots = seg.slots
        self.done = seg.done
        self.data = seg.data
        self.nslots = seg.hdr.nslots
        self.stride = seg.hdr.slot_stride
        self.payload = seg.hdr.payload_bytes
        self.views = views
        self.base2d = base2d
        self.spin_s = spin_s
        self.spin_forever = spin_forever
        self.me = _take_entry(self.hdr)
        if self.me == NULL:
            with nogil:
                _reap(self.hdr, self.slots, self.done)  # dead processes may hold entries
            self.me = _take_entry(self.hdr)
        if self.me == NULL:
            self.hdr = NULL
            raise RingError(f"too many processes attached to this buffer (at most {RB_MAX_PROCS})")
        _fault(FP_JOINING)
        self.me.role = role
        self.me.group = group
        rb_store_rlx64(&self.me.held, 0)
        rb_store_rel32(&self.me.held_n, 0)
        self.base = rb_load_acq64(&self.me.published if role == RB_ROLE_WRITER else &self.me.consumed)
        self.me.base = self.base
        self.own_count = 0
        rb_store_sc64(&self.me.owner, rb_self_ident())  # registered
        self.next_liveness = rb_mono_time() + LIVENESS_PERIOD
        return 0

    cdef int _check_open(self) except -1:
        if self.hdr == NULL:
            raise ValueError("this endpoint is closed")
        if self.busy:
            raise RuntimeError("this endpoint is waiting in another thread; one endpoint serves one thread "
                               "(close() from another thread is allowed)")
        return 0

    cdef int _liveness(self) noexcept nogil:
        """Called from long waits: reap the dead, notice a dead owner."""
        cdef double now = rb_mono_time()
        if now < self.next_liveness:
            return W_OK
        self.next_liveness = now + LIVENESS_PERIOD
        _reap(self.hdr, self.slots, self.done)
        if not rb_ident_alive(self.hdr.owner_id):
            return W_OWNER_GONE
        if self.spin_forever:
            return W_SIGNAL  # a spinning waiter never sleeps into EINTR: let Python look at signals
        return W_OK

    cdef int _raise_for(self, int r) except -1:
        if r == W_SIGNAL:
            PyErr_CheckSignals()
            return 0
        if r == W_OWNER_GONE:
            raise OwnerGone(f"mimocorb: the process that created ring buffer {self.seg.name!r} "
                            f"(pid {RB_ID_PID(self.hdr.owner_id)}) has ended; stopping this worker")
        if r == W_CLOSING:
            raise SystemExit("mimocorb: the endpoint was closed from another thread")
        raise SystemExit()

    cdef void _close_from_other_thread(self) noexcept:
        """close() while a call waits: let that call finish the close."""
        self.closing = True
        rb_wake_always(&self.hdr.data_futex)
        rb_wake_always(&self.hdr.space_futex)

    cdef void _finish_close(self) noexcept:
        pass  # the roles give back what they hold, then unregister

    def set_spin(self, double spin_s, bint spin_forever=False):
        """Spin this long before sleeping on the futex; spin_forever for the
        low-latency mode (costs a core while waiting)."""
        self.spin_s = spin_s
        self.spin_forever = spin_forever

    @property
    def state(self):
        if self.hdr == NULL:
            raise ValueError("this endpoint is closed")
        return rb_load_acq32(&self.hdr.state)

    @property
    def paused(self):
        if self.hdr == NULL:
            raise ValueError("this endpoint is closed")
        return rb_load_acq32(&self.hdr.paused) != 0

    @property
    def active(self):
        """False once the run is ending (writers stopped) or over."""
        if self.hdr == NULL:
            return False
        return rb_load_acq32(&self.hdr.state) == RB_RUNNING

    cdef void _unregister(self) noexcept:
        if self.me != NULL:
            rb_store_sc32(&self.me.held_n, 0)
            rb_store_rel64(&self.me.owner, 0)  # the entry's statistics stay: totals are sums
            self.me = NULL
        self.hdr = NULL
        self.views = None
        self.base2d = None


# ===========================================================================
# Writers
#
# I1   fill seq s only when its slot's previous sequence is finished (a) and
#      every gating group released it (b): _blocked().
# I2   publish with a store-release of pub after the payload; the last of a
#      batch seq_cst (the store-load barrier before looking for sleepers).
# I4   wseq before the payload (_begin_fill).
# I5   announce (held, held_n) before the claim's CAS; withdraw after publishing.
# A writer's own abandon/void marks are plain stores: it holds those
# sequences, and the reaper touches only sequences that no live entry announces.
# ===========================================================================

cdef class WriterCore(_Endpoint):
    """Claims slots, lets the caller fill them, publishes them.

    get_new_buffer() publishes the slots held from the previous call, claims
    the next sequence, waits (spin, then futex) until the slot may be filled
    (I1), and returns the slot's view.
    """

    cdef uint64_t held
    cdef uint64_t held_n
    cdef uint64_t cached_tail
    cdef uint32_t cached_epoch
    cdef double dt_entry      # the entry's dead-time sum, kept here for the next store

    def _attach_core(self, Segment seg, list views, object base2d, double spin_s=1e-5, bint spin_forever=False):
        self._setup(seg, views, base2d, RB_ROLE_WRITER, 0, spin_s, spin_forever)
        self.held_n = 0
        self.dt_entry = rb_load_acq_f64(&self.me.deadtime_sum)
        self.cached_epoch = rb_load_sc32(&self.hdr.group_epoch) - 1  # expired: look at the groups first
        self.cached_tail = 0

    # -- claim ----------------------------------------------------------------
    cdef int _claim(self, uint64_t k) noexcept nogil:
        """Claim up to k consecutive sequences that do not wrap the ring end."""
        cdef rb_header *h = self.hdr
        cdef uint64_t s, m, idx, lim, q
        while True:
            if rb_load_acq32(&h.state) != RB_RUNNING:
                rb_store_rel32(&self.me.held_n, 0)
                return W_STOPPED
            s = rb_load_rlx64(&h.write_claim)
            lim = rb_load_acq64(&h.claim_limit)  # on the run-state line: read-mostly, no transfer
            if s >= lim:
                rb_store_rel32(&self.me.held_n, 0)
                return W_STOPPED
            idx = s % self.nslots
            m = self.nslots - idx
            if m > k:
                m = k
            if m > lim - s:
                m = lim - s
            rb_store_rlx64(&self.me.held, s)
            rb_store_rel32(&self.me.held_n, <uint32_t>m)  # I5: announce, then claim
            _fault(FP_WRITER_ANNOUNCED)
            if rb_cas64(&h.write_claim, s, s + m):
                rb_store_rel64(&self.me.won, s + 1)  # this announcement's claim is ours (I6)
                break
        # A limit lowered while we claimed: give back (void) what lies beyond it.
        lim = rb_load_sc64(&h.claim_limit)
        if s + m > lim:
            for q in range(s if s > lim else lim, s + m):
                rb_store_sc64(&self.slots[q % self.nslots].abandoned, (q + 1) | RB_VOID)
            rb_add64(&h.void_total, s + m - (s if s > lim else lim))
            m = lim - s if lim > s else 0
            rb_store_rel32(&self.me.held_n, <uint32_t>m)
            rb_wake_if_waiting(&h.data_futex, &h.data_waiting)
            if m == 0:
                return W_STOPPED
        self.held = s
        self.held_n = m
        _fault(FP_WRITER_CLAIMED)
        return W_OK

    cdef inline int _blocked(self) noexcept nogil:
        """Why the held sequences cannot be filled yet (B_FREE when they can)."""
        cdef rb_header *h = self.hdr
        cdef uint64_t n = self.nslots
        cdef uint64_t last = self.held + self.held_n - 1
        cdef uint64_t q, prev
        cdef uint32_t e
        cdef rb_slot *sl
        # I1a: the slot's previous sequence is published or abandoned
        if last >= n:
            q = self.held if self.held >= n else n
            while q <= last:
                sl = &self.slots[q % n]
                prev = q - n + 1
                if rb_load_acq64(&sl.pub) < prev and (rb_load_acq64(&sl.abandoned) & ~RB_VOID) < prev:
                    return B_LAP
                q += 1
        # I1b: every gating group released it; the cached tail holds for one epoch
        e = rb_load_sc32(&h.group_epoch)  # seq_cst: after our claim's CAS (see _group_start)
        if e != self.cached_epoch:
            self.cached_epoch = e
            self.cached_tail = _gating_tail(h)
        elif self.cached_tail != NO_TAIL and last >= self.cached_tail + n:
            self.cached_tail = _gating_tail(h)
        if self.cached_tail == NO_TAIL or last < self.cached_tail + n:
            return B_FREE
        return B_GATE

    cdef int _wait_space(self) noexcept nogil:
        cdef rb_header *h = self.hdr
        cdef double t_end
        cdef int r, why
        cdef uint32_t v
        cdef int _i
        if self._blocked() == B_FREE:
            return W_OK
        t_end = rb_mono_time() + self.spin_s
        while True:
            # spin a little: the readers are usually a few hundred ns behind
            for _i in range(64):
                rb_cpu_relax()
                if self._blocked() == B_FREE:
                    return W_OK
            if rb_load_acq32(&h.state) != RB_RUNNING:
                return W_STOPPED
            if self.closing:
                return W_CLOSING
            if self.spin_forever:
                r = self._liveness()
                if r != W_OK:
                    return r
                continue
            if rb_mono_time() < t_end:
                continue
            # sleep: read the word, announce, re-check, then wait while the word holds
            v = rb_load_sc32(&h.space_futex)
            why = self._blocked()
            if why == B_FREE:
                return W_OK
            rb_announce_sleep(&h.lap_waiting if why == B_LAP else &h.space_waiting)
            _fault(FP_SLEEP_ANNOUNCED)
            if self._blocked() == B_FREE:
                return W_OK
            if rb_load_acq32(&h.state) != RB_RUNNING:
                return W_STOPPED
            if self.closing:
                return W_CLOSING
            r = rb_futex_wait(&h.space_futex, v, SLEEP_SLICE)
            if r == EINTR:
                return W_SIGNAL
            t_end = rb_mono_time() + self.spin_s  # woken: events flow again, spin before the next sleep
            r = self._liveness()
            if r != W_OK:
                return r

    cdef void _begin_fill(self) noexcept nogil:
        cdef uint64_t q
        cdef rb_slot *sl
        for q in range(self.held, self.held + self.held_n):
            rb_store_rlx64(&self.slots[q % self.nslots].wseq, q + 1)
        rb_fence_rel()  # I4: the wseq marks are visible before any byte of the slot changes
        for q in range(self.held, self.held + self.held_n):
            # default metadata of every held slot; set_metadata() overwrites the first
            sl = &self.slots[q % self.nslots]
            sl.counter = <int64_t>(self.own_count + (q - self.held))
            sl.timestamp = -1.0  # stamped at publication
            sl.deadtime = 0.0

    cdef void _abandon_claim(self, bint void) noexcept nogil:
        """Readers skip the held sequences; unless `void` (nothing was ever
        written into them) each counts as lost for every group."""
        cdef uint64_t q
        for q in range(self.held, self.held + self.held_n):
            rb_store_sc64(&self.slots[q % self.nslots].abandoned, (q + 1) | (RB_VOID if void else 0))
        rb_add64(&self.hdr.void_total if void else &self.hdr.abandoned_total, self.held_n)
        self.held_n = 0
        rb_store_sc32(&self.me.held_n, 0)  # I5: withdrawn after the marks
        rb_wake_if_waiting(&self.hdr.data_futex, &self.hdr.data_waiting)
        rb_wake_if_waiting(&self.hdr.space_futex, &self.hdr.lap_waiting)

    cdef int _acquire(self, uint64_t k) except -1:
        """Claim and wait for space, handling signals and the end of the run.
        Returns the first slot index."""
        cdef int r = self._claim(k)
        if r != W_OK:
            raise SystemExit()
        if self._blocked() != B_FREE:
            self.busy = True
            try:
                while True:
                    with nogil:
                        r = self._wait_space()
                    if r == W_OK:
                        break
                    if r == W_SIGNAL:
                        try:
                            PyErr_CheckSignals()
                        except BaseException:
                            self._abandon_claim(True)
                            raise
                        continue
                    self._abandon_claim(True)
                    self._raise_for(r)
            finally:
                self.busy = False
                if self.closing:
                    self._finish_close()
            if self.hdr == NULL:
                self._raise_for(W_CLOSING)
        self._begin_fill()
        return <int>(self.held % self.nslots)

    # -- publish --------------------------------------------------------------
    cdef void _publish(self) noexcept nogil:
        cdef uint64_t q
        cdef uint64_t last = self.held + self.held_n
        cdef rb_slot *sl
        cdef double now = 0.0
        cdef double dts = 0.0
        rb_store_rel64(&self.me.pub_target, self.base + self.own_count + self.held_n)  # I6
        for q in range(self.held, last):
            sl = &self.slots[q % self.nslots]
            if sl.timestamp < 0.0:
                if now == 0.0:
                    now = rb_wall_time()
                sl.timestamp = now
            dts += sl.deadtime
            if q + 1 == last:
                rb_store_sc64(&sl.pub, q + 1)  # I2; seq_cst: the store-load barrier before looking for sleepers
            else:
                rb_store_rel64(&sl.pub, q + 1)
                if q == self.held:
                    _fault(FP_WRITER_PUBLISHING)
        self.own_count += self.held_n
        rb_store_rel64(&self.me.published, self.base + self.own_count)
        self.dt_entry += dts
        rb_store_rel_f64(&self.me.deadtime_sum, self.dt_entry)
        _fault(FP_WRITER_PUBLISHED)
        self.held_n = 0
        rb_store_rel32(&self.me.held_n, 0)  # I5: withdrawn after publishing
        rb_wake_if_waiting(&self.hdr.data_futex, &self.hdr.data_waiting)
        rb_wake_if_waiting(&self.hdr.space_futex, &self.hdr.lap_waiting)

    # -- the 1.x calls --------------------------------------------------------
    def get_new_buffer(self):
        """Publish the slot held from the previous call, claim the next one and
        return its writable view. Blocks while the buffer is full; SystemExit
        once the run is ending."""
        if self.hdr == NULL or self.busy:
            self._check_open()
        if self.held_n:
            self._publish()
        cdef int idx = self._acquire(1)
        return self.views[idx]

    def process_buffer(self):
        """Publish the slot(s) now held (no-op when none is held)."""
        if self.held_n:
            self._publish()

    def set_metadata(self, int64_t counter, double timestamp, double deadtime):
        """Metadata of the (first) slot now held (no-op when none is held)."""
        cdef rb_slot *sl
        if self.held_n:
            sl = &self.slots[self.held % self.nslots]
            sl.counter = counter
            sl.timestamp = timestamp
            sl.deadtime = deadtime

    def put(self, data, counter=None, timestamp=None, double deadtime=0.0):
        """Write one whole event with one memcpy and publish it.

        `data` is any C-contiguous buffer of exactly the slot's size (a NumPy
        record array of the buffer's dtype, or raw bytes)."""
        cdef Py_buffer view
        cdef int idx
        cdef rb_slot *sl
        if self.hdr == NULL or self.busy:
            self._check_open()
        if self.held_n:
            self._publish()
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            if <uint64_t>view.len != self.payload:
                raise ValueError(f"put() needs exactly {self.payload} bytes (one slot), got {view.len}")
            idx = self._acquire(1)
            if self.payload >= 65536:
                self.busy = True
                with nogil:
                    memcpy(self.data + <uint64_t>idx * self.stride, view.buf, self.payload)
                self.busy = False
                if self.closing:
                    self._finish_close()
                    raise SystemExit("mimocorb: the endpoint was closed from another thread")
            else:
                memcpy(self.data + <uint64_t>idx * self.stride, view.buf, self.payload)
        finally:
            PyBuffer_Release(&view)
        sl = &self.slots[idx]
        if counter is not None:
            sl.counter = <int64_t>counter
        if timestamp is not None:
            sl.timestamp = <double>timestamp
        sl.deadtime = deadtime
        self._publish()

    def get_new_buffers(self, Py_ssize_t k):
        """Batch call: publish what is held, claim up to k consecutive slots (fewer
        at the end of the ring) and return them as one 2-D view (m, values_per_slot).
        Each slot gets default metadata; set_metadata() sets the first one's."""
        if self.hdr == NULL or self.busy:
            self._check_open()
        if k < 1:
            raise ValueError(f"get_new_buffers(k) needs k >= 1, got {k}")
        if self.held_n:
            self._publish()
        cdef int idx = self._acquire(<uint64_t>k)
        return self.base2d[idx:idx + <Py_ssize_t>self.held_n]

    @property
    def held_count(self):
        return self.held_n

    @property
    def published_count(self):
        return self.own_count

    def discard(self):
        """Give back the slot(s) now held without publishing them; readers skip
        them and they are counted as abandoned by a writer."""
        if self.held_n:
            self._abandon_claim(False)

    cdef void _finish_close(self) noexcept:
        if self.hdr == NULL:
            return
        if self.held_n:
            self._abandon_claim(False)
        self._unregister()

    def close(self):
        """Leave the registry. A slot still held (taken by get_new_buffer() but
        never published with process_buffer()) may be half-written: it is not
        published but counted as abandoned. From another thread while this
        writer waits: that call ends with SystemExit and closes it."""
        if self.hdr == NULL:
            return
        if self.busy:
            self._close_from_other_thread()
            return
        self._finish_close()

    def __dealloc__(self):
        if self.hdr != NULL and self.me != NULL and self.seg is not None and self.seg.mapped:
            self._finish_close()


# ===========================================================================
# Readers
#
# I3   take seq c once (CAS on claim) and only when c is published or
#      abandoned; release in order: the holder of the oldest events moves the
#      cursor itself, others leave done marks that whoever is oldest walks over.
# I5   announce before the CAS; withdraw after releasing.
# A member that meets a hold (I8) settles the group under its lock: it is a
# live member, so the group continues, or starts again if it was orphaned.
# ===========================================================================

cdef inline void _advance_release(rb_group *grp, uint64_t *done_g, uint64_t nslots) noexcept nogil:
    """Move the group's release cursor over every contiguous done sequence.
    Any member may do it; the CAS makes each step happen once."""
    cdef uint64_t r
    while True:
        r = rb_load_sc64(&grp.release)
        if rb_load_sc64(&done_g[r % nslots]) != r + 1:
            return
        rb_cas64(&grp.release, r, r + 1)


cdef class ReaderCore(_Endpoint):
    """A member of a reader group: takes the group's next event, releases it
    at the next call."""

    cdef uint32_t group
    cdef rb_group *grp
    cdef uint64_t *done_g
    cdef uint64_t held
    cdef uint64_t held_n

    def _attach_core(self, Segment seg, list views, object base2d, uint32_t group,
                     double spin_s=1e-5, bint spin_forever=False):
        cdef rb_header *h = seg.hdr
        if group >= rb_load_acq32(&h.ngroups):
            raise RingError(f"reader group {group} does not exist in this buffer")
        self._setup(seg, views, base2d, RB_ROLE_READER, group, spin_s, spin_forever)
        self.group = group
        self.grp = &h.groups[group]
        self.done_g = self.done + <uint64_t>group * self.nslots
        self.held_n = 0
        rb_add32(&self.grp.members_ever, 1)
        _fault(FP_REGISTERED)
        self._join_group()

    cdef int _join_group(self) except -1:
        # I8: registered (seq_cst) above, now look at the claim word (seq_cst)
        cdef bint settled
        while True:
            if (rb_load_sc32(&self.grp.state) == RB_GROUP_ACTIVE
                    and not (rb_load_sc64(&self.grp.claim) & RB_HOLD)):
                return 0
            with nogil:
                settled = self._member_settle()
            if not settled:
                PyErr_CheckSignals()
                with nogil:
                    rb_sleep_s(HOLD_PAUSE)

    cdef bint _member_settle(self) noexcept nogil:
        """A live member met a hold: settle the group, unless another process
        holds its lock (then it wakes us when done)."""
        if not _group_trylock(self.hdr, self.done, self.group):
            return False
        _group_settle(self.hdr, self.group, True)
        _group_unlock(self.grp)
        return True

    cdef int _try_claim(self, uint64_t k) noexcept nogil:
        """Take up to k consecutive published events (C_TOOK), or say why not."""
        cdef rb_group *grp = self.grp
        cdef uint64_t c, idx, m, a
        cdef uint64_t n = self.nslots
        while True:
            c = rb_load_acq64(&grp.claim)
            if c & RB_HOLD:
                rb_store_rel32(&self.me.held_n, 0)
                return C_HOLD
            idx = c % n
            if rb_load_acq64(&self.slots[idx].pub) == c + 1:
                m = 1
                while m < k and idx + m < n and rb_load_acq64(&self.slots[idx + m].pub) == c + m + 1:
                    m += 1
                rb_store_rlx64(&self.me.held, c)
                rb_store_rel32(&self.me.held_n, <uint32_t>m)  # I5: announce, then claim
                _fault(FP_READER_ANNOUNCED)
                if rb_cas64(&grp.claim, c, c + m):
                    self.held = c
                    self.held_n = m
                    return C_TOOK
                continue
            a = rb_load_acq64(&self.slots[idx].abandoned)
            if (a & ~RB_VOID) == c + 1:
                # a writer died before publishing c, or gave it back: skip it (rare: under the lock)
                if self._skip_abandoned(c, a):
                    continue
                rb_store_rel32(&self.me.held_n, 0)
                return C_HOLD  # the lock is busy: try again soon
            rb_store_rel32(&self.me.held_n, 0)
            return C_NONE

    cdef bint _skip_abandoned(self, uint64_t c, uint64_t a) noexcept nogil:
        """Move the group past abandoned seq c, counted once (I6). False when
        the group's lock is busy."""
        cdef rb_group *grp = self.grp
        cdef uint64_t n = self.nslots
        if not _group_trylock(self.hdr, self.done, self.group):
            return False
        if rb_load_sc64(&grp.claim) == c:  # else: moved on, or on hold, meanwhile
            _log_step(grp, RB_LOG_SKIP, c + 1, rb_load_acq64(&grp.lost_abandoned) + (0 if a & RB_VOID else 1))
            rb_store_rlx64(&self.me.held, c)
            rb_store_rel32(&self.me.held_n, 1)  # I5
            if rb_cas64(&grp.claim, c, c + 1):
                rb_store_sc64(&self.done_g[c % n], c + 1)
                rb_store_rel64(&grp.lost_abandoned, rb_load_acq64(&grp.log_target))
            _log_clear(grp)
            rb_store_rel32(&self.me.held_n, 0)
            _advance_release(grp, self.done_g, n)
        _group_unlock(grp)
        rb_wake_if_waiting(&self.hdr.space_futex, &self.hdr.space_waiting)
        return True

    cdef void _release(self) noexcept nogil:
        cdef uint64_t q
        # Fast path, the usual case: we hold the group's oldest events, so move
        # the release cursor over them directly (no marks needed). Otherwise
        # leave done marks for the member holding older events; both sides end
        # in _advance_release, whose seq_cst accesses pair with ours (I3).
        if not rb_cas64(&self.grp.release, self.held, self.held + self.held_n):
            for q in range(self.held, self.held + self.held_n):
                rb_store_sc64(&self.done_g[q % self.nslots], q + 1)
        _fault(FP_READER_RELEASING)
        _advance_release(self.grp, self.done_g, self.nslots)
        self.own_count += self.held_n
        rb_store_rel64(&self.me.consumed, self.base + self.own_count)
        self.held_n = 0
        rb_store_rel32(&self.me.held_n, 0)  # I5: withdrawn after releasing
        rb_wake_if_waiting(&self.hdr.space_futex, &self.hdr.space_waiting)

    cdef int _wait_claim(self, uint64_t k, double t_end) noexcept nogil:
        """Wait for events until the monotonic deadline t_end (< 0: none)."""
        cdef rb_header *h = self.hdr
        cdef double t_spin_end, now, slice_s
        cdef int r, c, _i
        cdef uint32_t v, st
        t_spin_end = rb_mono_time() + self.spin_s
        while True:
            c = self._try_claim(k)
            for _i in range(64):
                if c != C_NONE:
                    break
                rb_cpu_relax()
                c = self._try_claim(k)
            if c == C_TOOK:
                return W_OK
            if c == C_HOLD and self._member_settle():
                continue
            st = rb_load_acq32(&h.state)
            if st >= RB_SHUTDOWN:
                if self._try_claim(k) == C_TOOK:
                    return W_OK
                return W_END
            if self.closing:
                return W_CLOSING
            now = rb_mono_time()
            if t_end >= 0.0 and now >= t_end:
                return W_TIMEOUT
            if self.spin_forever and c != C_HOLD:
                r = self._liveness()
                if r != W_OK:
                    return r
                continue
            if now < t_spin_end and c != C_HOLD:
                continue
            # sleep: read the word, announce, re-check, then wait while the word holds
            v = rb_load_sc32(&h.data_futex)
            rb_announce_sleep(&h.data_waiting)
            _fault(FP_SLEEP_ANNOUNCED)
            c = self._try_claim(k)
            if c == C_TOOK:
                return W_OK
            if rb_load_acq32(&h.state) >= RB_SHUTDOWN or self.closing:
                continue  # handled at the top of the loop
            slice_s = HOLD_PAUSE if c == C_HOLD else SLEEP_SLICE
            if t_end >= 0.0 and t_end - now < slice_s:
                slice_s = t_end - now
            r = rb_futex_wait(&h.data_futex, v, slice_s)
            if r == EINTR:
                return W_SIGNAL
            t_spin_end = rb_mono_time() + self.spin_s  # woken: spin before the next sleep
            r = self._liveness()
            if r != W_OK:
                return r

    cdef int _take(self, uint64_t k, double timeout) except -2:
        """Release what is held, wait for up to k events; -1 on timeout."""
        cdef int r
        cdef double t_end = -1.0
        if self.hdr == NULL or self.busy:
            self._check_open()
        if self.held_n:
            self._release()
        if self._try_claim(k) == C_TOOK:
            return <int>(self.held % self.nslots)
        if timeout >= 0.0:
            t_end = rb_mono_time() + timeout
        self.busy = True
        try:
            while True:
                with nogil:
                    r = self._wait_claim(k, t_end)
                if r == W_OK or r == W_TIMEOUT:
                    break
                self._raise_for(r)
        finally:
            self.busy = False
            if self.closing:
                self._finish_close()
        if self.hdr == NULL:
            self._raise_for(W_CLOSING)
        if r == W_TIMEOUT:
            return -1
        return <int>(self.held % self.nslots)

    def get(self):
        """Release the previous event, wait for the next one of this group and
        return its read-only view. SystemExit once the run has ended and
        nothing is left for this group."""
        cdef int idx = self._take(1, -1.0)  # first: it raises for a closed endpoint
        return self.views[idx]

    def get_timeout(self, double timeout):
        """Like get(), but returns None after `timeout` seconds without an event."""
        cdef int idx = self._take(1, timeout)
        if idx < 0:
            return None
        return self.views[idx]

    def get_many(self, Py_ssize_t k, double timeout=-1.0):
        """Batch call: release what is held and take up to k consecutive events
        (at least one; fewer at the end of the ring or when fewer are ready),
        returned as one read-only 2-D view (m, values_per_slot)."""
        if k < 1:
            raise ValueError(f"get_many(k) needs k >= 1, got {k}")
        cdef int idx = self._take(<uint64_t>k, timeout)
        if idx < 0:
            return None
        return self.base2d[idx:idx + <Py_ssize_t>self.held_n]

    def release(self):
        """Give back the event(s) now held without taking a new one."""
        if self.held_n:
            self._release()

    def data_available(self):
        """True when get() would return at once."""
        cdef uint64_t c
        if self.hdr == NULL:
            return False
        c = rb_load_acq64(&self.grp.claim)
        if c & RB_HOLD:
            return False
        return rb_load_acq64(&self.slots[c % self.nslots].pub) == c + 1

    def get_metadata(self):
        """(counter, timestamp, deadtime) of the event now held, else (0, -1, -1)."""
        cdef rb_slot *sl
        if self.held_n == 0:
            return 0, -1, -1
        sl = &self.slots[self.held % self.nslots]
        return sl.counter, sl.timestamp, sl.deadtime

    def metadata_many(self):
        """Metadata of every held event: list of (counter, timestamp, deadtime)."""
        cdef uint64_t q
        cdef rb_slot *sl
        out = []
        for q in range(self.held, self.held + self.held_n):
            sl = &self.slots[q % self.nslots]
            out.append((sl.counter, sl.timestamp, sl.deadtime))
        return out

    @property
    def held_seq(self):
        """Sequence number of the first held event (None when none is held)."""
        return self.held if self.held_n else None

    @property
    def held_count(self):
        return self.held_n

    @property
    def consumed_count(self):
        return self.own_count

    @property
    def group(self):
        return self.group

    cdef void _finish_close(self) noexcept:
        if self.hdr == NULL:
            return
        if self.held_n:
            self._release()
        self._unregister()

    def close(self):
        """Release what is held and leave the group (it keeps gating, as in 1.x).
        From another thread while this reader waits: that call ends with
        SystemExit and closes it."""
        if self.hdr == NULL:
            return
        if self.busy:
            self._close_from_other_thread()
            return
        self._finish_close()

    def __dealloc__(self):
        if self.hdr != NULL and self.me != NULL and self.seg is not None and self.seg.mapped:
            self._finish_close()


# ===========================================================================
# The reaper
#
# A dead process's entry is taken by a CAS of its owner word (an identity:
# pid and start time, so a reused pid is not mistaken for it) to the reaper's
# identity with the REAPING flag; an entry whose reaper died is taken over and
# reaped again from the start. For each sequence the entry announces (I5):
#   1. not claimed by anyone: nothing to do;
#   2. a live entry announces it: that one holds it (or lost its CAS and will
#      announce something else); try again later;
#   3. already finished (published, abandoned, released): nothing to do;
#   4. otherwise a dead entry held it: finish it with a CAS that only moves
#      the mark forward, and count the loss if this CAS won (I6).
# Dead entries that announce the same sequence (one lost its CAS, one won)
# never wait for each other: only live ones are waited for. After a reader's
# sequences, the group's orphan decision (I8) is made under its lock, then
# the entry is freed; a reaper that dies anywhere in between leaves the entry
# REAPING, and the next pass redoes it all.
# A loss is counted by the process that wins the finishing CAS, right after
# it; a reaper killed between the two leaves that one loss uncounted.
# ===========================================================================

cdef bint _live_announcer(rb_header *h, int skip, uint32_t role, uint32_t group, uint64_t seq) noexcept nogil:
    """Does a live registered entry other than `skip` announce that it holds seq?"""
    cdef int i
    cdef rb_proc *p
    cdef uint64_t o, first
    cdef uint32_t n
    for i in range(RB_MAX_PROCS):
        if i == skip:
            continue
        p = &h.procs[i]
        o = rb_load_sc64(&p.owner)
        if o == 0 or (o & RB_ID_FLAGS) or p.role != role or (role == RB_ROLE_READER and p.group != group):
            continue
        n = rb_load_acq32(&p.held_n)
        if n == 0:
            continue
        first = rb_load_rlx64(&p.held)
        if first <= seq < first + n and rb_ident_alive(o):
            return True
    return False


cdef int _reap_reader(rb_header *h, uint64_t *done, int i) noexcept nogil:
    """Finish what dead reader entry i held. 0: try again later, 1: done."""
    cdef rb_proc *p = &h.procs[i]
    cdef uint64_t n = h.nslots
    cdef uint32_t g = p.group
    cdef rb_group *grp
    cdef uint64_t *done_g
    cdef uint64_t q, d, first
    cdef uint32_t held_n
    if g >= rb_load_acq32(&h.ngroups):
        return 1  # never a member of a real group
    grp = &h.groups[g]
    done_g = done + <uint64_t>g * n
    if not _group_trylock(h, done, g):
        return 0  # a state change under way: after it
    held_n = rb_load_acq32(&p.held_n)
    first = rb_load_rlx64(&p.held)
    for q in range(first, first + held_n):
        if (rb_load_sc64(&grp.claim) & ~RB_HOLD) <= q:
            continue  # 1. announced, never claimed
        if _live_announcer(h, i, RB_ROLE_READER, g, q):
            _group_unlock(grp)
            return 0  # 2.
        if rb_load_sc64(&grp.release) > q:
            continue  # 3. released
        d = rb_load_sc64(&done_g[q % n])
        if d >= q + 1:
            continue  # 3. marked done
        # 4. (I6) log, mark, count: nobody else finishes q now (no live holder, lock held)
        _log_step(grp, RB_LOG_DEAD, q + 1, rb_load_acq64(&grp.lost_dead_reader) + 1)
        if rb_cas64(&done_g[q % n], d, q + 1):
            _fault(FP_REAPER_MARKED)
            rb_store_rel64(&grp.lost_dead_reader, rb_load_acq64(&grp.log_target))
        _log_clear(grp)
    _advance_release(grp, done_g, n)
    rb_store_sc32(&p.held_n, 0)
    _group_settle(h, g, False)  # the last live member gone: the group stops gating (I8)
    _group_unlock(grp)
    return 1


cdef int _reap_writer(rb_header *h, rb_slot *slots, int i) noexcept nogil:
    """Abandon what dead writer entry i claimed and never published. 0: try again later."""
    cdef rb_proc *p = &h.procs[i]
    cdef uint64_t n = h.nslots
    cdef uint64_t q, a, first, out, published
    cdef uint32_t held_n = rb_load_acq32(&p.held_n)
    cdef rb_slot *sl
    first = rb_load_rlx64(&p.held)
    # I6: a writer that died while publishing its batch published a prefix of
    # it (in order, and nobody else finishes a claim it won): count that prefix.
    published = rb_load_acq64(&p.published)
    if held_n and rb_load_acq64(&p.won) == first + 1 and rb_load_acq64(&p.pub_target) > published:
        out = 0
        while out < held_n:
            sl = &slots[(first + out) % n]
            if rb_load_acq64(&sl.pub) < first + out + 1 and (rb_load_acq64(&sl.abandoned) & ~RB_VOID) < first + out + 1:
                break
            out += 1
        rb_store_rel64(&p.published, published + out)
        rb_store_rel64(&p.pub_target, published + out)
    for q in range(first, first + held_n):
        if rb_load_sc64(&h.write_claim) <= q:
            continue  # 1. never claimed
        if _live_announcer(h, i, RB_ROLE_WRITER, 0, q):
            return 0  # 2.
        sl = &slots[q % n]
        if rb_load_acq64(&sl.pub) >= q + 1:
            continue  # 3. published (a later lap implies this one finished: I1a)
        a = rb_load_sc64(&sl.abandoned)
        if (a & ~RB_VOID) >= q + 1:
            continue  # 3. abandoned
        if rb_cas64(&sl.abandoned, a, q + 1):  # 4. (I6)
            _fault(FP_REAPER_MARKED)
            rb_add64(&h.abandoned_total, 1)
    rb_store_sc32(&p.held_n, 0)
    return 1


cdef int _reap(rb_header *h, rb_slot *slots, uint64_t *done) noexcept nogil:
    cdef int i
    cdef int reaped = 0
    cdef int ok
    cdef uint64_t o
    cdef uint64_t me = rb_self_ident() | RB_ID_REAPING
    cdef rb_proc *p
    for i in range(RB_MAX_PROCS):
        p = &h.procs[i]
        o = rb_load_acq64(&p.owner)
        if o == 0 or (o & ~RB_ID_FLAGS) == (me & ~RB_ID_FLAGS) or rb_ident_alive(o):
            continue  # free, ours, or alive
        if o & RB_ID_JOINING:
            rb_cas64(&p.owner, o, 0)  # died while registering: it announced nothing
            continue
        if not rb_cas64(&p.owner, o, me):
            continue  # another reaper took it, or it changed
        _fault(FP_REAPER_TOOK)
        if p.role == RB_ROLE_READER:
            ok = _reap_reader(h, done, i)
        else:
            ok = _reap_writer(h, slots, i)
        if ok:
            _fault(FP_REAPER_RELEASED)
            if rb_cas64(&p.owner, me, 0):
                rb_add64(&h.reaped_readers if p.role == RB_ROLE_READER else &h.reaped_writers, 1)
                reaped += 1
        else:
            rb_cas64(&p.owner, me, o)  # give it back as a dead process's entry, for a later pass
    if reaped:
        rb_wake_always(&h.space_futex)
        rb_wake_always(&h.data_futex)
    return reaped


# ===========================================================================
# Observers
#
# I4 read from the other side: copy the newest published slot, then check
# that its wseq and pub still name the same sequence; a writer that started
# on the slot meanwhile changed wseq first, so a torn copy is never returned.
# By I1a only one writer writes a slot at a time, so the check is exact.
# ===========================================================================

cdef class ObserverCore:
    """Copies the newest published event without taking part in the gating."""

    cdef Segment seg
    cdef rb_header *hdr
    cdef rb_slot *slots
    cdef char *data
    cdef uint64_t nslots
    cdef uint64_t stride
    cdef uint64_t payload

    def __init__(self, Segment seg):
        self.seg = seg
        self.hdr = seg.hdr
        self.slots = seg.slots
        self.data = seg.data
        self.nslots = seg.hdr.nslots
        self.stride = seg.hdr.slot_stride
        self.payload = seg.hdr.payload_bytes

    cdef uint64_t _copy_newest(self, char *dst, uint64_t after, int64_t *counter, double *ts,
                               double *dt) noexcept nogil:
        cdef rb_header *h = self.hdr
        cdef uint64_t w, lo, s, idx
        cdef rb_slot *sl
        cdef int _attempt
        for _attempt in range(100):
            w = rb_load_acq64(&h.write_claim)
            lo = w - self.nslots if w > self.nslots else 0
            if lo < after:
                lo = after
            s = w
            while s > lo:
                s -= 1
                idx = s % self.nslots
                sl = &self.slots[idx]
                if rb_load_acq64(&sl.pub) != s + 1:
                    continue
                memcpy(dst, self.data + idx * self.stride, self.payload)
                counter[0] = sl.counter
                ts[0] = sl.timestamp
                dt[0] = sl.deadtime
                rb_fence_acq()
                if rb_load_rlx64(&sl.wseq) == s + 1 and rb_load_rlx64(&sl.pub) == s + 1:
                    return s + 1
                break  # torn: a writer took the slot meanwhile; look again
            else:
                return 0
        return 0

    def copy_newest(self, out, uint64_t after=0):
        """Copy the newest event with sequence >= after into `out` (a writable
        buffer of one slot's size). Returns (seq + 1, counter, timestamp,
        deadtime), or None when there is no such event."""
        cdef Py_buffer view
        cdef int64_t counter = 0
        cdef double ts = 0.0
        cdef double dt = 0.0
        cdef uint64_t got
        if not self.seg.mapped:
            return None
        PyObject_GetBuffer(out, &view, PyBUF_WRITABLE)
        try:
            if <uint64_t>view.len != self.payload:
                raise ValueError(f"copy_newest needs a buffer of {self.payload} bytes, got {view.len}")
            self.seg._enter()
            try:
                with nogil:
                    got = self._copy_newest(<char *>view.buf, after, &counter, &ts, &dt)
            finally:
                self.seg._leave()
        finally:
            PyBuffer_Release(&view)
        if got == 0:
            return None
        return got, counter, ts, dt

    @property
    def state(self):
        if not self.seg.mapped:
            return RB_CLOSED
        return rb_load_acq32(&self.hdr.state)

    def owner_alive(self):
        return self.seg.mapped and bool(rb_ident_alive(self.hdr.owner_id))


def pid_alive(int pid):
    """True when the process runs (zombies count as dead)."""
    return bool(rb_pid_alive(pid))


def shm_unlink_name(str name):
    """Unlink a segment by name; False when it did not exist."""
    return shm_unlink(name.encode()) == 0
