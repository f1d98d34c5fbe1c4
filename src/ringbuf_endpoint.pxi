# Part of src/ringbuf.pyx (the module mimocorb._ringbuf), included there in the order
# of the segment's layout; it shares that file's imports and declarations.

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
        if rb_load_rlx64(&h.procs[i].owner) == 0 and rb_cas_sc64(&h.procs[i].owner, 0, me):
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
        # Plain stores: the entry carries the JOINING flag until the owner word is
        # stored (seq_cst) below; nobody reads role, group or base before that.
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

    def seq_state(self, uint64_t seq):
        """What became of sequence `seq`: "published", "abandoned" (a dead or
        stopped writer gave it up), "later" (its slot holds a later lap: it was
        published or abandoned, which cannot be told any more) or "pending"."""
        cdef rb_slot *sl
        cdef uint64_t p, a
        if self.hdr == NULL:
            raise ValueError("this endpoint is closed")
        sl = &self.slots[seq % self.nslots]
        p = rb_load_acq64(&sl.pub)
        a = rb_load_acq64(&sl.abandoned) & ~RB_VOID
        if p == seq + 1:
            return "published"
        if a == seq + 1:
            return "abandoned"
        if p > seq + 1 or a > seq + 1:
            return "later"
        return "pending"

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
