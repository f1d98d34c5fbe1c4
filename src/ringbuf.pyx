# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""mimocorb._ringbuf -- the compiled core of the ring buffer.

It knows bytes and sequence numbers, nothing of NumPy dtypes: a POSIX shared
memory segment (layout in ringbuf_shm.h), writers that claim and publish slots,
reader groups whose members share the events of their group, observers that
copy the newest event, blocking waits that spin briefly and then sleep on a
futex in the segment, and a reaper that frees what dead processes held.

The Python layer (mimocorb.mimo_buffer) builds the NumPy views, once per slot,
and hands them to the endpoints here, which return them without allocating.
"""

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_FillInfo, PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.exc cimport PyErr_CheckSignals
from libc.stdint cimport int32_t, int64_t, uint32_t, uint64_t
from libc.string cimport memcpy, memset

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

cdef extern from "<errno.h>" nogil:
    int errno
    int EINTR
    int ETIMEDOUT

cdef extern from "ringbuf_shm.h" nogil:
    uint64_t RB_MAGIC
    uint32_t RB_VERSION
    int RB_LINE
    int RB_MAX_GROUPS
    int RB_MAX_PROCS
    uint32_t RB_RUNNING
    uint32_t RB_STOPPING
    uint32_t RB_SHUTDOWN
    uint32_t RB_CLOSED
    uint32_t RB_GROUP_UNUSED
    uint32_t RB_GROUP_ACTIVE
    uint32_t RB_GROUP_ORPHANED
    uint32_t RB_ROLE_WRITER
    uint32_t RB_ROLE_READER
    int32_t RB_PID_REAPING

    ctypedef struct rb_group:
        uint64_t claim
        uint64_t release
        uint32_t state
        uint32_t members_attached
        uint32_t members_ever
        uint64_t start_seq
        uint64_t lost_dead_reader
        uint64_t lost_orphaned
        uint64_t lost_abandoned

    ctypedef struct rb_proc:
        int32_t pid
        uint32_t role
        uint32_t group
        uint32_t held_n
        uint64_t held
        uint64_t count
        double deadtime_sum
        uint64_t start_time

    ctypedef struct rb_header:
        uint64_t magic
        uint32_t version
        uint32_t header_bytes
        uint64_t nslots
        uint64_t slot_stride
        uint64_t payload_bytes
        uint64_t slots_offset
        uint64_t done_offset
        uint64_t data_offset
        uint64_t total_bytes
        uint64_t token
        uint64_t dtype_hash
        int32_t owner_pid
        uint32_t values_per_slot
        uint64_t owner_start_time
        double created
        uint64_t write_claim
        uint32_t state
        uint32_t paused
        uint32_t ngroups
        uint64_t abandoned_total
        uint64_t retired_published
        double retired_deadtime
        uint64_t reaped_readers
        uint64_t reaped_writers
        uint64_t claim_limit
        uint32_t data_futex
        uint32_t data_waiting
        uint32_t space_futex
        uint32_t space_waiting
        rb_group groups[16]
        rb_proc procs[256]

    ctypedef struct rb_slot:
        uint64_t pub
        uint64_t wseq
        uint64_t abandoned
        int64_t counter
        double timestamp
        double deadtime

    size_t rb_header_size()
    size_t rb_slot_size()
    uint64_t rb_load_acq64(const uint64_t *p)
    uint64_t rb_load_rlx64(const uint64_t *p)
    uint64_t rb_load_sc64(const uint64_t *p)
    void rb_store_rel64(uint64_t *p, uint64_t v)
    void rb_store_rlx64(uint64_t *p, uint64_t v)
    void rb_store_sc64(uint64_t *p, uint64_t v)
    int rb_cas64(uint64_t *p, uint64_t expected, uint64_t desired)
    uint64_t rb_add64(uint64_t *p, uint64_t v)
    uint64_t rb_max64(uint64_t *p, uint64_t v)
    uint32_t rb_load_acq32(const uint32_t *p)
    uint32_t rb_load_sc32(const uint32_t *p)
    void rb_store_rel32(uint32_t *p, uint32_t v)
    void rb_store_sc32(uint32_t *p, uint32_t v)
    uint32_t rb_add32(uint32_t *p, uint32_t v)
    uint32_t rb_sub32(uint32_t *p, uint32_t v)
    int rb_cas32(uint32_t *p, uint32_t expected, uint32_t desired)
    int rb_cas_i32(int32_t *p, int32_t expected, int32_t desired)
    int32_t rb_load_acq_i32(const int32_t *p)
    void rb_store_rel_i32(int32_t *p, int32_t v)
    void rb_fence_acq()
    void rb_fence_rel()
    void rb_fence_sc()
    void rb_cpu_relax()
    int rb_futex_wait(uint32_t *word, uint32_t expected, double timeout_s)
    void rb_announce_sleep(uint32_t *waiting)
    void rb_wake_if_waiting(uint32_t *word, uint32_t *waiting)
    void rb_wake_always(uint32_t *word)
    double rb_wall_time()
    double rb_mono_time()
    int rb_pid_alive(int pid, uint64_t start_time)
    uint64_t rb_self_start_time()


# An abandoned sequence carries this bit when nothing was ever written into it
# (a writer stopped by the end of the run): readers skip it without counting a loss.
cdef uint64_t VOID_BIT = (<uint64_t>1) << 63
cdef uint64_t NO_TAIL = <uint64_t>0xFFFFFFFFFFFFFFFF

# results of the waiting loops
cdef enum:
    W_OK = 0
    W_STOPPED = 1      # writers: the run is ending
    W_END = 2          # readers: nothing left, the run has ended
    W_SIGNAL = 3       # a signal arrived: Python must run its handlers
    W_OWNER_GONE = 4   # the creating process died
    W_TIMEOUT = 5

# how long a waiter sleeps on the futex before it looks at liveness again
cdef double SLEEP_SLICE = 0.1
cdef double LIVENESS_PERIOD = 0.25

MAX_GROUPS = RB_MAX_GROUPS
MAX_PROCS = RB_MAX_PROCS
LAYOUT_VERSION = RB_VERSION
STATE_NAMES = {RB_RUNNING: "running", RB_STOPPING: "stopping", RB_SHUTDOWN: "shutdown", RB_CLOSED: "closed"}


class RingError(RuntimeError):
    """The segment is missing, foreign, of another layout, or cannot be created."""


class OwnerGone(SystemExit):
    """The process that created the buffer has died: end this worker."""


cdef inline uint64_t _round_up(uint64_t n, uint64_t to) noexcept nogil:
    return (n + to - 1) // to * to


def layout_sizes(uint64_t nslots, uint64_t payload_bytes):
    """Bytes of (header, slot table, done marks, data, total) for a geometry."""
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
    cdef readonly str name
    cdef readonly bint is_owner
    cdef object __weakref__

    def __cinit__(self):
        self.base = NULL
        self.exports = 0

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
        h.owner_pid = getpid()
        h.owner_start_time = rb_self_start_time()
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
        """Unmap now, or as soon as the last NumPy view of the slots is gone."""
        if self.base == NULL:
            return
        if self.exports > 0:
            return  # NumPy views still use the mapping: __dealloc__ unmaps it
        munmap(self.base, self.size)
        self.base = NULL
        self.hdr = NULL

    def __dealloc__(self):
        if self.base != NULL:
            munmap(self.base, self.size)
            self.base = NULL

    def unlink(self):
        """Remove the segment's name; memory is freed when the last process unmaps it."""
        if self.name is not None:
            shm_unlink(self.name.encode())

    @property
    def mapped(self):
        return self.base != NULL

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
        return self.hdr.owner_pid

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
        return bool(rb_pid_alive(self.hdr.owner_pid, self.hdr.owner_start_time))

    @property
    def claim_limit(self):
        """Writers stop (SystemExit) once this many sequences were claimed; None: no limit."""
        cdef uint64_t lim = rb_load_acq64(&self.hdr.claim_limit)
        return None if lim == NO_TAIL else lim

    @claim_limit.setter
    def claim_limit(self, value):
        rb_store_sc64(&self.hdr.claim_limit, NO_TAIL if value is None else <uint64_t>value)
        rb_wake_always(&self.hdr.space_futex)

    def set_state(self, uint32_t new_state):
        """Move the run state forward (never back) and wake every sleeper."""
        cdef uint32_t cur
        while True:
            cur = rb_load_acq32(&self.hdr.state)
            if cur >= new_state or rb_cas32(&self.hdr.state, cur, new_state):
                break
        rb_wake_always(&self.hdr.data_futex)
        rb_wake_always(&self.hdr.space_futex)

    def add_group(self):
        """Add a reader group that receives the events published from now on.

        Only the owning process adds groups. Protocol against writers that
        claim meanwhile: the group gates from a conservative start W, then is
        moved to the claim cursor W2 read after it was activated; any writer
        that claimed before W2 without seeing the group wrote a sequence the
        group never reads.
        """
        cdef rb_header *h = self.hdr
        cdef uint32_t g = h.ngroups
        if g >= <uint32_t>RB_MAX_GROUPS:
            raise RingError(f"a buffer has at most {RB_MAX_GROUPS} reader groups")
        cdef rb_group *grp = &h.groups[g]
        cdef uint64_t w = rb_load_sc64(&h.write_claim)
        cdef uint64_t lo = w - h.nslots if w > h.nslots else 0
        grp.start_seq = w
        rb_store_sc64(&grp.claim, w)
        rb_store_sc64(&grp.release, lo)  # gate at least as hard as any group could need
        rb_store_sc32(&grp.state, RB_GROUP_ACTIVE)
        rb_store_sc32(&h.ngroups, g + 1)
        cdef uint64_t w2 = rb_load_sc64(&h.write_claim)
        grp.start_seq = w2
        rb_store_sc64(&grp.claim, w2)
        rb_store_sc64(&grp.release, w2)
        return g

    def retire_group(self, uint32_t g):
        """Every member of group g has ended for good (its workers returned):
        the group stops holding back the writers, as when its last member
        dies. What it had not consumed, and what is published while it has
        no member, counts as lost (orphaned); a member joining later
        re-activates it with the events published from then on."""
        cdef rb_header *h = self.hdr
        if g >= rb_load_acq32(&h.ngroups):
            raise RingError(f"reader group {g} does not exist in this buffer")
        rb_cas32(&h.groups[g].state, RB_GROUP_ACTIVE, RB_GROUP_ORPHANED)
        if rb_load_sc32(&h.groups[g].members_attached) != 0:
            _reactivate(h, &h.groups[g])  # a member joined meanwhile
        rb_wake_always(&h.space_futex)

    def reap(self):
        """Free what dead writers and readers held; returns the number reaped."""
        cdef int n
        with nogil:
            n = _reap(self.hdr, self.slots, self.done)
        return n

    def snapshot(self):
        """Raw counters for the statistics of the Python layer."""
        cdef rb_header *h = self.hdr
        cdef int i
        cdef uint32_t g
        cdef rb_group *grp
        cdef rb_proc *p
        groups = []
        for g in range(rb_load_acq32(&h.ngroups)):
            grp = &h.groups[g]
            groups.append({
                "state": rb_load_acq32(&grp.state),
                "claim": rb_load_acq64(&grp.claim),
                "release": rb_load_acq64(&grp.release),
                "start": grp.start_seq,
                "members_attached": rb_load_acq32(&grp.members_attached),
                "members_ever": rb_load_acq32(&grp.members_ever),
                "lost_dead_reader": rb_load_acq64(&grp.lost_dead_reader),
                "lost_orphaned": rb_load_acq64(&grp.lost_orphaned),
                "lost_abandoned": rb_load_acq64(&grp.lost_abandoned),
            })
        published = rb_load_acq64(&h.retired_published)
        deadtime = h.retired_deadtime
        procs = []
        for i in range(RB_MAX_PROCS):
            p = &h.procs[i]
            pid = rb_load_acq_i32(&p.pid)
            if pid == 0:
                continue
            procs.append({"pid": pid, "role": p.role, "group": p.group, "held_n": p.held_n, "held": p.held,
                          "count": p.count})
            if p.role == RB_ROLE_WRITER:
                published += p.count
                deadtime += p.deadtime_sum
        return {
            "state": rb_load_acq32(&h.state),
            "paused": rb_load_acq32(&h.paused) != 0,
            "write_claim": rb_load_acq64(&h.write_claim),
            "published": published,
            "deadtime_sum": deadtime,
            "abandoned": rb_load_acq64(&h.abandoned_total),
            "reaped_readers": h.reaped_readers,
            "reaped_writers": h.reaped_writers,
            "groups": groups,
            "procs": procs,
        }

    def drained(self):
        """True when every group that has a live member has consumed all
        claimed sequences and no live writer holds an unpublished slot."""
        cdef rb_header *h = self.hdr
        cdef uint64_t w = rb_load_sc64(&h.write_claim)
        cdef uint32_t g
        cdef int i
        cdef rb_group *grp
        for g in range(rb_load_acq32(&h.ngroups)):
            grp = &h.groups[g]
            if rb_load_acq32(&grp.state) != RB_GROUP_ACTIVE or rb_load_acq32(&grp.members_attached) == 0:
                continue
            if rb_load_acq64(&grp.release) < w:
                return False
        for i in range(RB_MAX_PROCS):
            if (rb_load_acq_i32(&h.procs[i].pid) > 0 and h.procs[i].role == RB_ROLE_WRITER
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


# ---------------------------------------------------------------------------
# helpers on raw pointers, shared by the endpoints and the reaper
# ---------------------------------------------------------------------------

cdef inline void _advance_release(rb_group *grp, uint64_t *done_g, uint64_t nslots) noexcept nogil:
    """Move the group's release cursor over every contiguous done sequence.
    Any member may do it; the CAS makes each step happen once."""
    cdef uint64_t r
    while True:
        r = rb_load_sc64(&grp.release)
        if rb_load_sc64(&done_g[r % nslots]) != r + 1:
            return
        rb_cas64(&grp.release, r, r + 1)


cdef inline void _mark_done(uint64_t *done_g, uint64_t seq, uint64_t nslots) noexcept nogil:
    # seq_cst: the store must be visible before we read the release cursor,
    # or two members releasing neighbours could both miss each other's mark.
    rb_store_sc64(&done_g[seq % nslots], seq + 1)


cdef inline uint64_t _gating_tail(rb_header *h) noexcept nogil:
    """Smallest release cursor of the groups that gate the writers
    (NO_TAIL when none does)."""
    cdef uint32_t ng = rb_load_acq32(&h.ngroups)
    cdef uint32_t g
    cdef uint64_t t = NO_TAIL
    cdef uint64_t r
    for g in range(ng):
        if rb_load_acq32(&h.groups[g].state) == RB_GROUP_ACTIVE:
            r = rb_load_acq64(&h.groups[g].release)
            if r < t:
                t = r
    return t


cdef bint _other_holds(rb_header *h, int skip, uint32_t role, uint32_t group, uint64_t seq) noexcept nogil:
    """Does a live registry entry other than `skip` announce that it holds seq?"""
    cdef int i
    cdef rb_proc *p
    cdef int32_t pid
    cdef uint32_t n
    for i in range(RB_MAX_PROCS):
        if i == skip:
            continue
        p = &h.procs[i]
        pid = rb_load_acq_i32(&p.pid)
        if pid <= 0 or p.role != role or (role == RB_ROLE_READER and p.group != group):
            continue
        n = rb_load_acq32(&p.held_n)
        if n != 0 and p.held <= seq < p.held + n:
            return True
    return False


cdef void _reactivate(rb_header *h, rb_group *grp) noexcept nogil:
    """An orphaned group gets a live member again: it starts over with the
    events published from now on (the protocol of add_group), counting what it
    skipped as lost."""
    cdef uint64_t n = h.nslots
    cdef uint64_t old = rb_load_sc64(&grp.release)
    cdef uint64_t w = rb_load_sc64(&h.write_claim)
    rb_max64(&grp.claim, w - n if w > n else 0)
    rb_max64(&grp.release, w - n if w > n else 0)
    if rb_cas32(&grp.state, RB_GROUP_ORPHANED, RB_GROUP_ACTIVE):
        w = rb_load_sc64(&h.write_claim)
        rb_max64(&grp.claim, w)
        rb_max64(&grp.release, w)
        if w > old:
            rb_add64(&grp.lost_orphaned, w - old)


cdef int _reap_reader(rb_header *h, rb_slot *slots, uint64_t *done, int i) noexcept nogil:
    """Release what dead reader entry i held. 0: try again later (someone
    else may hold the same sequence for a moment), 1: done."""
    cdef rb_proc *p = &h.procs[i]
    cdef uint64_t n = h.nslots
    cdef uint32_t g = p.group
    cdef rb_group *grp = &h.groups[g]
    cdef uint64_t *done_g = done + <uint64_t>g * n
    cdef uint64_t q
    cdef uint32_t held_n = rb_load_acq32(&p.held_n)
    for q in range(p.held, p.held + held_n):
        if rb_load_sc64(&grp.release) > q or rb_load_sc64(&done_g[q % n]) >= q + 1:
            continue  # released already
        if rb_load_sc64(&grp.claim) <= q:
            continue  # announced but never claimed (I5)
        if _other_holds(h, i, RB_ROLE_READER, g, q):
            return 0
        _mark_done(done_g, q, n)
        rb_add64(&grp.lost_dead_reader, 1)
    _advance_release(grp, done_g, n)
    if rb_sub32(&grp.members_attached, 1) == 0:
        # the last live member died: the group no longer holds back the writers
        rb_cas32(&grp.state, RB_GROUP_ACTIVE, RB_GROUP_ORPHANED)
        if rb_load_sc32(&grp.members_attached) != 0:
            _reactivate(h, grp)  # a new member joined meanwhile
    rb_add64(&h.reaped_readers, 1)
    return 1


cdef int _reap_writer(rb_header *h, rb_slot *slots, int i) noexcept nogil:
    cdef rb_proc *p = &h.procs[i]
    cdef uint64_t n = h.nslots
    cdef uint64_t q
    cdef uint32_t held_n = rb_load_acq32(&p.held_n)
    cdef rb_slot *sl
    for q in range(p.held, p.held + held_n):
        if rb_load_sc64(&h.write_claim) <= q:
            continue  # never claimed
        sl = &slots[q % n]
        if rb_load_acq64(&sl.pub) >= q + 1 or (rb_load_acq64(&sl.abandoned) & ~VOID_BIT) >= q + 1:
            continue  # published or abandoned already
        if _other_holds(h, i, RB_ROLE_WRITER, 0, q):
            return 0
        rb_store_sc64(&sl.abandoned, q + 1)
        rb_add64(&h.abandoned_total, 1)
    rb_add64(&h.retired_published, p.count)
    h.retired_deadtime += p.deadtime_sum
    rb_add64(&h.reaped_writers, 1)
    return 1


cdef int _reap(rb_header *h, rb_slot *slots, uint64_t *done) noexcept nogil:
    cdef int i
    cdef int reaped = 0
    cdef int ok
    cdef int32_t pid
    cdef rb_proc *p
    for i in range(RB_MAX_PROCS):
        p = &h.procs[i]
        pid = rb_load_acq_i32(&p.pid)
        if pid <= 0 or rb_pid_alive(pid, p.start_time):
            continue
        if not rb_cas_i32(&p.pid, pid, RB_PID_REAPING):
            continue  # another reaper took it
        if p.role == RB_ROLE_READER:
            ok = _reap_reader(h, slots, done, i)
        else:
            ok = _reap_writer(h, slots, i)
        if ok:
            rb_store_sc32(&p.held_n, 0)
            rb_store_rel_i32(&p.pid, 0)
            reaped += 1
        else:
            rb_store_rel_i32(&p.pid, pid)
    if reaped:
        rb_wake_always(&h.space_futex)
        rb_wake_always(&h.data_futex)
    return reaped


cdef rb_proc *_take_entry(rb_header *h) noexcept nogil:
    """A free registry entry, reserved (pid = RB_PID_REAPING) until filled in; NULL when full."""
    cdef int i
    for i in range(RB_MAX_PROCS):
        if rb_cas_i32(&h.procs[i].pid, 0, RB_PID_REAPING):
            return &h.procs[i]
    return NULL


# ---------------------------------------------------------------------------
# endpoints
# ---------------------------------------------------------------------------

cdef class _Endpoint:
    """What writers and readers share: the mapping, a registry entry, waiting."""

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

    def __cinit__(self):
        self.hdr = NULL
        self.me = NULL

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
        cdef int32_t mypid = getpid()
        self.me = _take_entry(self.hdr)
        if self.me == NULL:
            _reap(self.hdr, self.slots, self.done)  # dead processes may hold entries
            self.me = _take_entry(self.hdr)
        if self.me == NULL:
            raise RingError(f"too many processes attached to this buffer (at most {RB_MAX_PROCS})")
        self.me.role = role
        self.me.group = group
        self.me.held_n = 0
        self.me.held = 0
        self.me.count = 0
        self.me.deadtime_sum = 0.0
        self.me.start_time = rb_self_start_time()
        rb_store_rel_i32(&self.me.pid, mypid)
        self.next_liveness = rb_mono_time() + LIVENESS_PERIOD
        return 0

    cdef int _check_open(self) except -1:
        if self.hdr == NULL:
            raise ValueError("this endpoint is closed")
        return 0

    cdef int _liveness(self) noexcept nogil:
        """Called from long waits: reap the dead, notice a dead owner."""
        cdef double now = rb_mono_time()
        if now < self.next_liveness:
            return W_OK
        self.next_liveness = now + LIVENESS_PERIOD
        _reap(self.hdr, self.slots, self.done)
        if not rb_pid_alive(self.hdr.owner_pid, self.hdr.owner_start_time):
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
                            f"(pid {self.hdr.owner_pid}) has ended; stopping this worker")
        raise SystemExit()

    def set_spin(self, double spin_s, bint spin_forever=False):
        """Spin this long before sleeping on the futex; spin_forever for the
        low-latency mode (costs a core while waiting)."""
        self.spin_s = spin_s
        self.spin_forever = spin_forever

    @property
    def state(self):
        self._check_open()
        return rb_load_acq32(&self.hdr.state)

    @property
    def paused(self):
        self._check_open()
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
            if self.me.role == RB_ROLE_WRITER:
                rb_add64(&self.hdr.retired_published, self.me.count)
                self.hdr.retired_deadtime += self.me.deadtime_sum
            rb_store_rel_i32(&self.me.pid, 0)
            self.me = NULL
        self.hdr = NULL
        self.views = None
        self.base2d = None


cdef class WriterCore(_Endpoint):
    """Claims slots, lets the caller fill them, publishes them.

    get_new_buffer() publishes the slots held from the previous call, claims
    the next sequence, waits (spin, then futex) until every gating group is
    done with the slot's previous use, and returns the slot's view.
    """

    cdef uint64_t held
    cdef uint64_t held_n
    cdef uint64_t cached_tail
    cdef bint meta_set
    cdef uint64_t own_count

    def _attach_core(self, Segment seg, list views, object base2d, double spin_s=1e-5, bint spin_forever=False):
        self._setup(seg, views, base2d, RB_ROLE_WRITER, 0, spin_s, spin_forever)
        self.held_n = 0
        self.cached_tail = 0
        self.own_count = 0

    # -- claim ----------------------------------------------------------------
    cdef int _claim(self, uint64_t k) noexcept nogil:
        """Claim up to k consecutive sequences that do not wrap the ring end."""
        cdef rb_header *h = self.hdr
        cdef uint64_t s, m, idx, lim
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
            # I5: announce before the CAS; the CAS (seq_cst) publishes it
            self.me.held = s
            rb_store_rel32(&self.me.held_n, <uint32_t>m)
            if rb_cas64(&h.write_claim, s, s + m):
                break
        self.held = s
        self.held_n = m
        self.meta_set = False
        return W_OK

    cdef inline bint _has_space(self, uint64_t last) noexcept nogil:
        # I1: fill seq `last` only when every gating group released last - nslots
        if last < self.cached_tail + self.nslots:
            return True
        self.cached_tail = _gating_tail(self.hdr)
        return self.cached_tail == NO_TAIL or last < self.cached_tail + self.nslots

    cdef int _wait_space(self) noexcept nogil:
        cdef rb_header *h = self.hdr
        cdef uint64_t last = self.held + self.held_n - 1
        cdef double t_end
        cdef int r
        cdef uint32_t v
        cdef int _i
        if self._has_space(last):
            return W_OK
        t_end = rb_mono_time() + self.spin_s
        while True:
            # spin a little: the readers are usually a few hundred ns behind
            for _i in range(64):
                rb_cpu_relax()
                if self._has_space(last):
                    return W_OK
            if rb_load_acq32(&h.state) != RB_RUNNING:
                return W_STOPPED
            if self.spin_forever:
                r = self._liveness()
                if r != W_OK:
                    return r
                continue
            if rb_mono_time() < t_end:
                continue
            # sleep: announce, re-check, then wait on the futex word
            rb_announce_sleep(&h.space_waiting)
            v = rb_load_sc32(&h.space_futex)
            if self._has_space(last):
                return W_OK
            if rb_load_acq32(&h.state) != RB_RUNNING:
                return W_STOPPED
            r = rb_futex_wait(&h.space_futex, v, SLEEP_SLICE)
            if r == EINTR:
                return W_SIGNAL
            t_end = rb_mono_time() + self.spin_s  # woken: events flow again, spin before the next sleep
            r = self._liveness()
            if r != W_OK:
                return r

    cdef void _begin_fill(self) noexcept nogil:
        cdef uint64_t q
        for q in range(self.held, self.held + self.held_n):
            rb_store_rlx64(&self.slots[q % self.nslots].wseq, q + 1)
        # I4: the wseq marks must be visible before any payload byte changes
        rb_fence_rel()

    cdef void _void_claim(self) noexcept nogil:
        """Give back claimed sequences that were never filled (end of run, signal)."""
        self._abandon_claim(True)

    cdef void _abandon_claim(self, bint void) noexcept nogil:
        """Readers skip the held sequences; unless `void` (nothing was ever
        written into them) each counts as lost for every group."""
        cdef uint64_t q
        for q in range(self.held, self.held + self.held_n):
            rb_store_sc64(&self.slots[q % self.nslots].abandoned, (q + 1) | (VOID_BIT if void else 0))
            if not void:
                rb_add64(&self.hdr.abandoned_total, 1)
        self.held_n = 0
        rb_store_sc32(&self.me.held_n, 0)
        rb_wake_if_waiting(&self.hdr.data_futex, &self.hdr.data_waiting)

    cdef int _acquire(self, uint64_t k) except -1:
        """Claim and wait for space, handling signals and the end of the run.
        Returns the first slot index."""
        cdef int r = self._claim(k)
        if r != W_OK:
            raise SystemExit()
        while not self._has_space(self.held + self.held_n - 1):
            with nogil:
                r = self._wait_space()
            if r == W_OK:
                break
            if r == W_SIGNAL:
                try:
                    PyErr_CheckSignals()
                except BaseException:
                    self._void_claim()
                    raise
                continue
            self._void_claim()
            self._raise_for(r)
        self._begin_fill()
        return <int>(self.held % self.nslots)

    # -- publish --------------------------------------------------------------
    cdef void _publish(self) noexcept nogil:
        cdef uint64_t q
        cdef uint64_t last = self.held + self.held_n
        cdef rb_slot *sl
        cdef double now = 0.0
        cdef double dts = 0.0
        for q in range(self.held, last):
            sl = &self.slots[q % self.nslots]
            if not self.meta_set:
                sl.counter = <int64_t>self.own_count
                sl.deadtime = 0.0
                sl.timestamp = -1.0
            if sl.timestamp < 0.0:
                if now == 0.0:
                    now = rb_wall_time()
                sl.timestamp = now
            dts += sl.deadtime
            self.own_count += 1
            if q + 1 == last:
                # seq_cst: the store-load barrier before looking for a sleeper (I2)
                rb_store_sc64(&sl.pub, q + 1)
            else:
                rb_store_rel64(&sl.pub, q + 1)
        self.me.count = self.own_count
        self.me.deadtime_sum += dts
        self.held_n = 0
        rb_store_rel32(&self.me.held_n, 0)
        rb_wake_if_waiting(&self.hdr.data_futex, &self.hdr.data_waiting)

    # -- the 1.x calls --------------------------------------------------------
    def get_new_buffer(self):
        """Publish the slot held from the previous call, claim the next one and
        return its writable view. Blocks while the buffer is full; SystemExit
        once the run is ending."""
        if self.hdr == NULL:
            self._check_open()
        if self.held_n:
            self._publish()
        return self.views[self._acquire(1)]

    def process_buffer(self):
        """Publish the slot(s) now held (no-op when none is held)."""
        if self.held_n:
            self._publish()

    def set_metadata(self, int64_t counter, double timestamp, double deadtime):
        """Metadata of the slot now held (no-op when none is held)."""
        cdef rb_slot *sl
        if self.held_n:
            sl = &self.slots[self.held % self.nslots]
            sl.counter = counter
            sl.timestamp = timestamp
            sl.deadtime = deadtime
            self.meta_set = True

    def put(self, data, counter=None, timestamp=None, double deadtime=0.0):
        """Write one whole event with one memcpy and publish it.

        `data` is any C-contiguous buffer of exactly the slot's size (a NumPy
        record array of the buffer's dtype, or raw bytes)."""
        cdef Py_buffer view
        cdef int idx
        cdef rb_slot *sl
        if self.hdr == NULL:
            self._check_open()
        if self.held_n:
            self._publish()
        PyObject_GetBuffer(data, &view, PyBUF_SIMPLE)
        try:
            if <uint64_t>view.len != self.payload:
                raise ValueError(f"put() needs exactly {self.payload} bytes (one slot), got {view.len}")
            idx = self._acquire(1)
            if self.payload >= 65536:
                with nogil:
                    memcpy(self.data + <uint64_t>idx * self.stride, view.buf, self.payload)
            else:
                memcpy(self.data + <uint64_t>idx * self.stride, view.buf, self.payload)
        finally:
            PyBuffer_Release(&view)
        sl = &self.slots[idx]
        sl.counter = <int64_t>self.own_count if counter is None else <int64_t>counter
        sl.timestamp = -1.0 if timestamp is None else <double>timestamp
        sl.deadtime = deadtime
        self.meta_set = True
        self._publish()

    def get_new_buffers(self, Py_ssize_t k):
        """Batch call: publish what is held, claim up to k consecutive slots (fewer
        at the end of the ring) and return them as one 2-D view (m, values_per_slot)."""
        if self.hdr == NULL:
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

    def close(self):
        """Leave the registry. A slot still held (taken by get_new_buffer() but
        never published with process_buffer()) may be half-written: it is not
        published but counted as abandoned."""
        if self.hdr == NULL:
            return
        if self.held_n:
            self._abandon_claim(False)
        self._unregister()

    def __dealloc__(self):
        if self.hdr != NULL and self.me != NULL and self.seg is not None and self.seg.mapped:
            if self.held_n:
                self._abandon_claim(False)
            self._unregister()


cdef class ReaderCore(_Endpoint):
    """A member of a reader group: takes the group's next event, releases it
    at the next call."""

    cdef uint32_t group
    cdef rb_group *grp
    cdef uint64_t *done_g
    cdef uint64_t held
    cdef uint64_t held_n
    cdef uint64_t own_count
    cdef object ro_base2d

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
        self._join_group()

    cdef void _join_group(self) noexcept:
        # Count ourselves in first, then look at the state: a reaper that
        # orphans the group concurrently sees our count and reactivates it.
        rb_add32(&self.grp.members_attached, 1)
        rb_add32(&self.grp.members_ever, 1)
        if rb_load_sc32(&self.grp.state) == RB_GROUP_ORPHANED:
            _reactivate(self.hdr, self.grp)

    cdef int _try_claim(self, uint64_t k) noexcept nogil:
        """Take up to k consecutive published events; 1 when some were taken."""
        cdef rb_group *grp = self.grp
        cdef uint64_t c, idx, m, a
        cdef uint64_t n = self.nslots
        while True:
            c = rb_load_acq64(&grp.claim)
            idx = c % n
            if rb_load_acq64(&self.slots[idx].pub) == c + 1:
                m = 1
                while m < k and idx + m < n and rb_load_acq64(&self.slots[idx + m].pub) == c + m + 1:
                    m += 1
                self.me.held = c  # I5
                rb_store_rel32(&self.me.held_n, <uint32_t>m)
                if rb_cas64(&grp.claim, c, c + m):
                    self.held = c
                    self.held_n = m
                    return 1
                continue
            a = rb_load_acq64(&self.slots[idx].abandoned)
            if (a & ~VOID_BIT) == c + 1:
                # a writer died before publishing c, or gave it back unfilled: skip it
                self.me.held = c
                rb_store_rel32(&self.me.held_n, 1)
                if rb_cas64(&grp.claim, c, c + 1):
                    _mark_done(self.done_g, c, n)
                    _advance_release(grp, self.done_g, n)
                    rb_store_rel32(&self.me.held_n, 0)
                    if not (a & VOID_BIT):
                        rb_add64(&grp.lost_abandoned, 1)
                    rb_wake_if_waiting(&self.hdr.space_futex, &self.hdr.space_waiting)
                continue
            rb_store_rel32(&self.me.held_n, 0)
            return 0

    cdef void _release(self) noexcept nogil:
        cdef uint64_t q
        # Fast path, the usual case: we hold the group's oldest events, so move
        # the release cursor over them directly (no marks needed). Otherwise
        # leave done marks for the member holding older events; both sides end
        # in _advance_release, whose seq_cst accesses pair with ours (I3).
        if not rb_cas64(&self.grp.release, self.held, self.held + self.held_n):
            for q in range(self.held, self.held + self.held_n):
                _mark_done(self.done_g, q, self.nslots)
        _advance_release(self.grp, self.done_g, self.nslots)
        self.own_count += self.held_n
        self.me.count = self.own_count
        self.held_n = 0
        rb_store_rel32(&self.me.held_n, 0)
        rb_wake_if_waiting(&self.hdr.space_futex, &self.hdr.space_waiting)

    cdef int _wait_claim(self, uint64_t k, double t_end) noexcept nogil:
        """Wait for events until the monotonic deadline t_end (< 0: none)."""
        cdef rb_header *h = self.hdr
        cdef double t_spin_end
        cdef int r, _i
        cdef uint32_t v, st
        if self._try_claim(k):
            return W_OK
        t_spin_end = rb_mono_time() + self.spin_s
        while True:
            for _i in range(64):
                rb_cpu_relax()
                if self._try_claim(k):
                    return W_OK
            st = rb_load_acq32(&h.state)
            if st >= RB_SHUTDOWN:
                if self._try_claim(k):
                    return W_OK
                return W_END
            if t_end >= 0.0 and rb_mono_time() >= t_end:
                return W_TIMEOUT
            if self.spin_forever:
                r = self._liveness()
                if r != W_OK:
                    return r
                continue
            if rb_mono_time() < t_spin_end:
                continue
            rb_announce_sleep(&h.data_waiting)
            v = rb_load_sc32(&h.data_futex)
            if self._try_claim(k):
                return W_OK
            if rb_load_acq32(&h.state) >= RB_SHUTDOWN:
                continue  # handled at the top of the loop
            r = rb_futex_wait(&h.data_futex, v, SLEEP_SLICE)
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
        if self.hdr == NULL:
            self._check_open()
        if self.held_n:
            self._release()
        if self._try_claim(k):
            return <int>(self.held % self.nslots)
        if timeout >= 0.0:
            t_end = rb_mono_time() + timeout
        while True:
            with nogil:
                r = self._wait_claim(k, t_end)
            if r == W_OK:
                return <int>(self.held % self.nslots)
            if r == W_TIMEOUT:
                return -1
            self._raise_for(r)

    def get(self):
        """Release the previous event, wait for the next one of this group and
        return its read-only view. SystemExit once the run has ended and
        nothing is left for this group."""
        return self.views[self._take(1, -1.0)]

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
        cdef uint64_t idx
        if self.hdr == NULL:
            return False
        c = rb_load_acq64(&self.grp.claim)
        idx = c % self.nslots
        return rb_load_acq64(&self.slots[idx].pub) == c + 1

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

    def close(self):
        """Release what is held and leave the group (it keeps gating, as in 1.x)."""
        if self.hdr == NULL:
            return
        if self.held_n:
            self._release()
        rb_sub32(&self.grp.members_attached, 1)
        self._unregister()

    def __dealloc__(self):
        if self.hdr != NULL and self.me != NULL and self.seg is not None and self.seg.mapped:
            if self.held_n:
                self._release()
            rb_sub32(&self.grp.members_attached, 1)
            self._unregister()


cdef class ObserverCore:
    """Copies the newest published event without taking part in the gating:
    copy, then check that no writer claimed the slot meanwhile (I4), else retry."""

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
            with nogil:
                got = self._copy_newest(<char *>view.buf, after, &counter, &ts, &dt)
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
        return self.seg.mapped and bool(rb_pid_alive(self.hdr.owner_pid, self.hdr.owner_start_time))


def pid_alive(int pid):
    """True when the process runs (zombies count as dead)."""
    return bool(rb_pid_alive(pid, 0))


def shm_unlink_name(str name):
    """Unlink a segment by name; False when it did not exist."""
    return shm_unlink(name.encode()) == 0
