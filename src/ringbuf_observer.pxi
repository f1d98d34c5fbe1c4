# Part of src/ringbuf.pyx (the module mimocorb._ringbuf), included there in the order
# of the segment's layout; it shares that file's imports and declarations.

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
