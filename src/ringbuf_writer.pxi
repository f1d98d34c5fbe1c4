# Part of src/ringbuf.pyx (the module mimocorb._ringbuf), included there in the order
# of the segment's layout; it shares that file's imports and declarations.

# ===========================================================================
# Writers
#
# I1   claim seq s only when its slot's previous sequence is finished (a:
#      _claim) and fill it only when every gating group released it (b: _gated).
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
    cdef bint meta_set        # set_metadata() or put() gave the first held slot its metadata
    cdef bint meta_all        # set_metadata_many() gave every held slot its metadata

    def _attach_core(self, Segment seg, list views, object base2d, double spin_s=1e-5, bint spin_forever=False):
        self._setup(seg, views, base2d, RB_ROLE_WRITER, 0, spin_s, spin_forever)
        self.held_n = 0
        self.dt_entry = rb_load_acq_f64(&self.me.deadtime_sum)
        self.cached_epoch = rb_load_sc32(&self.hdr.group_epoch) - 1  # expired: look at the groups first
        self.cached_tail = 0

    # -- claim ----------------------------------------------------------------
    cdef inline bint _lap_free(self, uint64_t s) noexcept nogil:
        """I1a for seq s: its slot's previous sequence is published or abandoned."""
        cdef rb_slot *sl
        cdef uint64_t prev
        if s < self.nslots:
            return True
        sl = &self.slots[s % self.nslots]
        prev = s - self.nslots + 1
        return rb_load_acq64(&sl.pub) >= prev or (rb_load_acq64(&sl.abandoned) & ~RB_VOID) >= prev

    cdef int _claim(self, uint64_t k) noexcept nogil:
        """Claim up to k consecutive sequences that do not wrap the ring end.

        I1a is checked before the claim, not after: a sequence is only claimed
        once its slot's previous sequence is finished, so whatever becomes of
        the claim (published, given back, its writer killed) its slot's words
        never run ahead of an unfinished earlier lap. W_LAP: the next
        sequence's slot is still being filled by a slower writer."""
        cdef rb_header *h = self.hdr
        cdef uint64_t s, m, j, idx, lim, q
        cdef rb_slot *sl
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
            # finished stays finished: what holds here holds at the CAS too. (A release
            # cursor does not prove it: a group's start moves its cursor past sequences
            # that writers still fill.) One load per slot when it is published.
            j = 0
            if s + m <= self.nslots:
                j = m
            else:
                sl = &self.slots[idx]
                while j < m:
                    q = s + j
                    if q >= self.nslots and rb_load_acq64(&sl[j].pub) <= q - self.nslots and (
                            rb_load_acq64(&sl[j].abandoned) & ~RB_VOID) <= q - self.nslots:
                        break
                    j += 1
            if j == 0:
                rb_store_rel32(&self.me.held_n, 0)
                return W_LAP
            m = j
            rb_store_rlx64(&self.me.held, s)
            rb_store_rel32(&self.me.held_n, <uint32_t>m)  # I5: announce, then claim
            _fault(FP_WRITER_ANNOUNCED)
            if rb_cas_sc64(&h.write_claim, s, s + m):
                break
        # A limit lowered while we claimed: give back (void) what lies beyond it.
        lim = rb_load_sc64(&h.claim_limit)
        if s + m > lim:
            for q in range(s if s > lim else lim, s + m):
                rb_store_sc64(&self.slots[q % self.nslots].abandoned, (q + 1) | RB_VOID)
            rb_add_sc64(&h.void_total, s + m - (s if s > lim else lim))
            m = lim - s if lim > s else 0
            rb_store_rel32(&self.me.held_n, <uint32_t>m)
            rb_wake_if_waiting(&h.data_futex, &h.data_waiting)
            if m == 0:
                return W_STOPPED
        self.held = s
        self.held_n = m
        self.meta_set = False
        self.meta_all = False
        _fault(FP_WRITER_CLAIMED)
        return W_OK

    cdef inline bint _gated(self) noexcept nogil:
        """I1b: a gating group has not yet released the previous use of a held slot."""
        cdef rb_header *h = self.hdr
        cdef uint64_t n = self.nslots
        cdef uint64_t last = self.held + self.held_n - 1
        cdef uint32_t e
        # the cached tail holds for one group epoch (see _group_start)
        e = rb_load_sc32(&h.group_epoch)  # seq_cst: after our claim's CAS
        if e != self.cached_epoch:
            self.cached_epoch = e
            self.cached_tail = _gating_tail(h)
        elif self.cached_tail != NO_TAIL and last >= self.cached_tail + n:
            self.cached_tail = _gating_tail(h)
        return self.cached_tail != NO_TAIL and last >= self.cached_tail + n

    cdef inline bint _ready(self, bint claimed) noexcept nogil:
        """Can the writer go on? Claimed: nothing gates its slots. Not yet
        claimed: the next sequence's slot is free of its previous lap (or a
        claim would stop)."""
        cdef uint64_t s
        if claimed:
            return not self._gated()
        s = rb_load_acq64(&self.hdr.write_claim)
        return s >= rb_load_acq64(&self.hdr.claim_limit) or self._lap_free(s)

    cdef int _wait_space(self, bint claimed) noexcept nogil:
        """Wait until _ready(claimed); writers that wait for a group raise
        space_waiting, those that wait for a slower writer lap_waiting."""
        cdef rb_header *h = self.hdr
        cdef double t_end
        cdef int r
        cdef uint32_t v
        cdef int _i
        if self._ready(claimed):
            return W_OK
        t_end = rb_mono_time() + self.spin_s
        while True:
            # spin a little: the readers are usually a few hundred ns behind
            for _i in range(64):
                rb_cpu_relax()
                if self._ready(claimed):
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
            rb_announce_sleep(&h.space_waiting if claimed else &h.lap_waiting)
            _fault(FP_SLEEP_ANNOUNCED)
            if self._ready(claimed):
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
        for q in range(self.held, self.held + self.held_n):
            rb_store_rlx64(&self.slots[q % self.nslots].wseq, q + 1)
        rb_fence_rel()  # I4: the wseq marks are visible before any byte of the slot changes

    cdef void _abandon_claim(self, bint void) noexcept nogil:
        """Readers skip the held sequences; unless `void` (nothing was ever
        written into them) each counts as lost for every group."""
        cdef uint64_t q
        for q in range(self.held, self.held + self.held_n):
            rb_store_sc64(&self.slots[q % self.nslots].abandoned, (q + 1) | (RB_VOID if void else 0))
        rb_add_sc64(&self.hdr.void_total if void else &self.hdr.abandoned_total, self.held_n)
        self.held_n = 0
        rb_store_sc32(&self.me.held_n, 0)  # I5: withdrawn after the marks
        rb_wake_if_waiting(&self.hdr.data_futex, &self.hdr.data_waiting)
        rb_wake_if_waiting(&self.hdr.space_futex, &self.hdr.lap_waiting)

    cdef int _wait(self, bint claimed) except -1:
        """_wait_space without the GIL, handling signals, close() from another
        thread and the end of the run; a claim given up is voided."""
        cdef int r
        self.busy = True
        try:
            while True:
                with nogil:
                    r = self._wait_space(claimed)
                if r == W_OK:
                    break
                if r == W_SIGNAL:
                    try:
                        PyErr_CheckSignals()
                    except BaseException:
                        if claimed:
                            self._abandon_claim(True)
                        raise
                    continue
                if claimed:
                    self._abandon_claim(True)
                self._raise_for(r)
        finally:
            self.busy = False
            if self.closing:
                self._finish_close()
        if self.hdr == NULL:
            self._raise_for(W_CLOSING)
        return 0

    cdef int _acquire(self, uint64_t k) except -1:
        """Claim (waiting for a slower writer's lap first), wait until no group
        gates the slots, begin the fill. Returns the first slot index."""
        cdef int r
        while True:
            r = self._claim(k)
            if r == W_OK:
                break
            if r == W_STOPPED:
                raise SystemExit()
            self._wait(False)  # W_LAP: nothing claimed yet
        if self._gated():
            self._wait(True)
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
            # The metadata are plain stores, like the payload: readers see them through
            # the release store of pub below (I2), observers through the seqlock (I4).
            if not self.meta_all and (q != self.held or not self.meta_set):
                # default metadata: this writer's running count, the time of publication, no dead time
                if now == 0.0:
                    now = rb_wall_time()
                sl.counter = <int64_t>(self.own_count + (q - self.held))
                sl.deadtime = 0.0
                sl.timestamp = now
            else:
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
            self.meta_set = True

    def set_metadata_many(self, meta):
        """Metadata of every slot now held (a batch from get_new_buffers()): `meta` is a
        C-contiguous array of (counter int64, timestamp float64, deadtime float64)
        records, one per held slot (METADATA_DTYPE of mimocorb.mimo_buffer). A
        timestamp < 0 is stamped at publication."""
        cdef Py_buffer view
        cdef const char *p
        cdef uint64_t i
        cdef rb_slot *sl
        PyObject_GetBuffer(meta, &view, PyBUF_SIMPLE)
        try:
            if <uint64_t>view.len != 24 * self.held_n:
                raise ValueError(f"set_metadata_many() needs {self.held_n} records of 24 bytes "
                                 f"(the slots now held), got {view.len} bytes")
            p = <const char *>view.buf
            for i in range(self.held_n):
                sl = &self.slots[(self.held + i) % self.nslots]
                memcpy(&sl.counter, p + 24 * i, 8)
                memcpy(&sl.timestamp, p + 24 * i + 8, 8)
                memcpy(&sl.deadtime, p + 24 * i + 16, 8)
        finally:
            PyBuffer_Release(&view)
        if self.held_n:
            self.meta_all = True

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
        sl.counter = <int64_t>self.own_count if counter is None else <int64_t>counter
        sl.timestamp = -1.0 if timestamp is None else <double>timestamp
        sl.deadtime = deadtime
        self.meta_set = True
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
    def held_seq(self):
        """Sequence number of the first held slot (None when none is held): a
        writer that journals what it writes can ask seq_state() about it later."""
        return self.held if self.held_n else None

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
