# Part of src/ringbuf.pyx (the module mimocorb._ringbuf), included there in the order
# of the segment's layout; it shares that file's imports and declarations.

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
        # Plain stores: nobody can see the segment before the magic number is
        # stored with release below; attach() loads it with acquire first.
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
            if cur >= new_state or rb_cas_sc32(&self.hdr.state, cur, new_state):
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
        # Plain stores: the group is invisible until ngroups is stored (seq_cst) below.
        grp.start_seq = w0
        grp.first_start = w0
        grp.skipped_void = 0
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
                "first_start": rb_load_acq64(&grp.first_start),
                "skipped_void": rb_load_acq64(&grp.skipped_void),
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
