# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
"""A bare single-writer single-reader ring: the limit case of the benchmarks.

Two cursors on their own cache lines in an anonymous shared mapping made before
the fork, each side caching the other's cursor, one Python call per event per
side returning a NumPy view made once per slot -- what mimocorb does for one
writer and one reader, without groups, several writers, crash safety, metadata
or sleeping (it spins, then yields the core). Built by the benchmark at run time
(benchmarks/bare.py); not part of the package.
"""

from cpython.buffer cimport PyBUF_WRITABLE, PyBuffer_Release, PyObject_GetBuffer
from libc.stdint cimport uint64_t

cdef extern from *:
    """
    #include <stdint.h>
    static inline uint64_t br_load_acq(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
    static inline void br_store_rel(uint64_t *p, uint64_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
    static inline void br_relax(void) {
    #if defined(__x86_64__) || defined(__i386__)
        __builtin_ia32_pause();
    #endif
    }
    """
    uint64_t br_load_acq(const uint64_t *p) nogil
    void br_store_rel(uint64_t *p, uint64_t v) nogil
    void br_relax() nogil

cdef extern from "<sched.h>" nogil:
    int sched_yield()

HEADER = 192  # head, tail and the end flag, one 64-byte line each


cdef class _Side:
    cdef Py_buffer mem
    cdef uint64_t *head
    cdef uint64_t *tail
    cdef uint64_t *ended
    cdef uint64_t n
    cdef uint64_t pos
    cdef uint64_t cached
    cdef bint held
    cdef list views

    def __init__(self, mem, list views):
        PyObject_GetBuffer(mem, &self.mem, PyBUF_WRITABLE)
        cdef char *base = <char *>self.mem.buf
        self.head = <uint64_t *>base
        self.tail = <uint64_t *>(base + 64)
        self.ended = <uint64_t *>(base + 128)
        self.views = views
        self.n = len(views)
        self.pos = 0
        self.cached = 0
        self.held = False

    def __dealloc__(self):
        PyBuffer_Release(&self.mem)


cdef inline void _pause(int *spins) noexcept nogil:
    spins[0] += 1
    if spins[0] < 1000:
        br_relax()
    else:
        sched_yield()


cdef uint64_t _wait_above(uint64_t *word, uint64_t bound, uint64_t *stop) noexcept nogil:
    """Spin, then yield, until *word > bound (or *stop is set); returns *word."""
    cdef int spins = 0
    cdef uint64_t v = br_load_acq(word)
    while v <= bound:
        if stop != NULL and br_load_acq(stop):
            return br_load_acq(word)
        _pause(&spins)
        v = br_load_acq(word)
    return v


cdef class BareWriter(_Side):
    def get_new_buffer(self):
        if self.held:
            br_store_rel(self.head, self.pos)
        if self.pos - self.cached >= self.n:
            self.cached = br_load_acq(self.tail)
            if self.pos - self.cached >= self.n:
                with nogil:  # a waiting process lets its other threads run, as mimocorb's do
                    self.cached = _wait_above(self.tail, self.pos - self.n, NULL)
        self.held = True
        self.pos += 1
        return self.views[(self.pos - 1) % self.n]

    def process_buffer(self):
        if self.held:
            br_store_rel(self.head, self.pos)
            self.held = False

    def end(self):
        self.process_buffer()
        br_store_rel(self.ended, 1)


cdef class BareReader(_Side):
    def get(self):
        if self.held:
            br_store_rel(self.tail, self.pos)
        if self.cached <= self.pos:
            self.cached = br_load_acq(self.head)
            if self.cached <= self.pos:
                with nogil:
                    self.cached = _wait_above(self.head, self.pos, self.ended)
                if self.cached <= self.pos:
                    raise SystemExit()
        self.held = True
        self.pos += 1
        return self.views[(self.pos - 1) % self.n]
