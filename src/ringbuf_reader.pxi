# Part of src/ringbuf.pyx (the module mimocorb._ringbuf), included there in the order
# of the segment's layout; it shares that file's imports and declarations.

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
        rb_cas_sc64(&grp.release, r, r + 1)


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
        rb_add_sc32(&self.grp.members_ever, 1)
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
                if rb_cas_sc64(&grp.claim, c, c + m):
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
        cdef uint64_t *counter
        if not _group_trylock(self.hdr, self.done, self.group):
            return False
        if rb_load_sc64(&grp.claim) == c:  # else: moved on, or on hold, meanwhile
            counter = &grp.skipped_void if a & RB_VOID else &grp.lost_abandoned
            _log_step(grp, RB_LOG_SKIP, (c + 1) | (RB_LOG_VOID if a & RB_VOID else 0), rb_load_acq64(counter) + 1)
            rb_store_rlx64(&self.me.held, c)
            rb_store_rel32(&self.me.held_n, 1)  # I5
            if rb_cas_sc64(&grp.claim, c, c + 1):
                rb_store_sc64(&self.done_g[c % n], c + 1)
                rb_store_rel64(counter, rb_load_acq64(&grp.log_target))
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
        if not rb_cas_sc64(&self.grp.release, self.held, self.held + self.held_n):
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
        self.spin_prev = 0.0  # the time between two waits is the caller's, not a preemption
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
            if self.spin_forever and c != C_HOLD and self._keep_spinning(now):
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
            self.spin_prev = 0.0
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
