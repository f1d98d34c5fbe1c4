# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""mimocorb.muon._peaks -- the whole-trace passes of the pulse finder's fast path.

:func:`scan` does for one float32 event what ``PulseFinder.load`` and the first
half of ``PulseFinder._peaks_fast`` do with ~20 NumPy calls: per-channel minima,
the shifted float64 work array, the candidate samples (``>= thr``, with the
``+inf`` separators), the compressed trace (candidates as they are, each gap of
non-candidates replaced by its minimum, as ``np.minimum.reduceat`` gives it) and
the local maxima among the candidates (plateaus as in SciPy). The arithmetic is
the same float64 arithmetic as the NumPy code, so the results are identical.
"""

from libc.math cimport INFINITY


cdef inline float _channel_min(const char *p, Py_ssize_t n, Py_ssize_t stride) noexcept nogil:
    """Minimum of ``n`` float32 values ``stride`` bytes apart (a NaN is skipped
    unless it is the first value; :func:`scan` detects NaN in its second pass)."""
    cdef float f0, f1, f2, f3, m0, m1, m2, m3
    cdef Py_ssize_t s = 0
    m0 = m1 = (<const float *>p)[0]
    m2 = m3 = m0
    while s + 4 <= n:  # four independent chains
        f0 = (<const float *>(p + s * stride))[0]
        f1 = (<const float *>(p + (s + 1) * stride))[0]
        f2 = (<const float *>(p + (s + 2) * stride))[0]
        f3 = (<const float *>(p + (s + 3) * stride))[0]
        m0 = f0 if f0 < m0 else m0
        m1 = f1 if f1 < m1 else m1
        m2 = f2 if f2 < m2 else m2
        m3 = f3 if f3 < m3 else m3
        s += 4
    m0 = m2 if m2 < m0 else m0
    m1 = m3 if m3 < m1 else m1
    while s + 2 <= n:
        f0 = (<const float *>(p + s * stride))[0]
        f1 = (<const float *>(p + (s + 1) * stride))[0]
        m0 = f0 if f0 < m0 else m0
        m1 = f1 if f1 < m1 else m1
        s += 2
    if s < n:
        f0 = (<const float *>(p + s * stride))[0]
        m0 = f0 if f0 < m0 else m0
    return m1 if m1 < m0 else m0


cdef enum:
    MAX_SELECT = 64  # most peaks _select orders (insertion sort)


cdef Py_ssize_t _select(Py_ssize_t *pk, Py_ssize_t *zpk, double *h, Py_ssize_t npk,
                        Py_ssize_t dist) noexcept nogil:
    """SciPy's ``_select_by_peak_distance`` (``dist`` = ceil of the distance), in place.

    Peaks are taken from the highest down; each removes the lower ones closer than
    ``dist``. SciPy orders them with ``np.argsort``, whose order of equal heights is
    an implementation detail, so with a tie (or more than MAX_SELECT peaks) nothing
    is done and -1 returned: the caller then asks SciPy. Otherwise the kept peaks
    (with their ``zpk`` and ``h``) are moved to the front and their number returned.
    """
    cdef Py_ssize_t order[MAX_SELECT]
    cdef char keep[MAX_SELECT]
    cdef Py_ssize_t i, j, k, nk
    if npk > MAX_SELECT:
        return -1
    for i in range(npk):  # insertion sort of the indices by height, ascending
        j = i
        while j > 0 and h[order[j - 1]] > h[i]:
            order[j] = order[j - 1]
            j -= 1
        order[j] = i
        keep[i] = 1
    for i in range(1, npk):
        if h[order[i - 1]] == h[order[i]]:
            return -1
    for i in range(npk - 1, -1, -1):
        j = order[i]
        if not keep[j]:
            continue
        k = j - 1
        while k >= 0 and pk[j] - pk[k] < dist:
            keep[k] = 0
            k -= 1
        k = j + 1
        while k < npk and pk[k] - pk[j] < dist:
            keep[k] = 0
            k += 1
    nk = 0
    for i in range(npk):
        if keep[i]:
            pk[nk] = pk[i]
            zpk[nk] = zpk[i]
            h[nk] = h[i]
            nk += 1
    return nk


def select_by_distance(Py_ssize_t[::1] peaks, Py_ssize_t[::1] zpeaks, double[::1] heights, Py_ssize_t dist):
    """:func:`_select` for tests: number of kept peaks (moved to the front), or -1."""
    if zpeaks.shape[0] < peaks.shape[0] or heights.shape[0] < peaks.shape[0]:
        raise ValueError("select_by_distance: zpeaks and heights must be as long as peaks")
    if peaks.shape[0] == 0:
        return 0
    return _select(&peaks[0], &zpeaks[0], &heights[0], peaks.shape[0], dist)


def scan(const float[:, :] ev, double offset, double thr, double[::1] work, double[::1] shift,
         Py_ssize_t[::1] cand, double[::1] z, Py_ssize_t[::1] peaks, Py_ssize_t[::1] zpeaks,
         double[::1] heights, Py_ssize_t dist):
    """Load one event into the work array and find its candidate peaks.

    Parameters
    ----------
    ev : float32 memoryview (samples, channels)
        The event, any strides (an interleaved ring-buffer slot or a transposed
        channel-major array).
    offset : float
        Baseline (mV) subtracted from the minimum to give ``shift``.
    thr : float
        Candidate threshold on the shifted samples.
    work : float64 (1 + channels * (samples + 1))
        Work array; its ``+inf`` separators must already be in place.
    shift : float64 (channels)
        Out: channel minimum minus ``offset``.
    cand, z, peaks, zpeaks, heights
        Out: candidate indices (with separators), compressed trace
        (``2 * ncand - 1`` values), local maxima, their indices in ``z`` and
        their work-array values. Each must be as long as ``work`` (``z`` twice).
    dist : int
        Peak distance in samples, rounded up.

    Returns
    -------
    (int, int, bool)
        Number of candidates, of local maxima, and whether the maxima are already
        selected by distance as SciPy's ``_select_by_peak_distance`` would with
        ``dist`` (the ceiling of the distance); when False (a tie in height, or
        many maxima) the caller must do that selection. ``(-1, 0, False)`` when a channel
        holds a NaN or has a non-finite minimum, or the event is empty (the
        caller then uses the NumPy path, whose results on such input this
        routine does not reproduce).
    """
    cdef Py_ssize_t n = ev.shape[0]
    cdef Py_ssize_t nch = ev.shape[1]
    cdef Py_ssize_t ch, s, i, j, e, m, base, nc, npk, st0, mingap
    cdef const char *p
    cdef double *w
    cdef float mnf
    cdef double mn, v, r, gap
    if n == 0 or nch == 0 or shift.shape[0] < nch or work.shape[0] != 1 + nch * (n + 1):
        return -1, 0, False
    if cand.shape[0] < work.shape[0] or z.shape[0] < 2 * work.shape[0] or peaks.shape[0] < work.shape[0]:
        return -1, 0, False
    if zpeaks.shape[0] < work.shape[0] or heights.shape[0] < work.shape[0]:
        return -1, 0, False
    st0 = ev.strides[0]
    # channel minima (float32 minimum == minimum of the float64 values)
    for ch in range(nch):
        mnf = _channel_min(<const char *>&ev[0, ch], n, st0)
        if mnf != mnf or mnf == INFINITY or mnf == -INFINITY:
            return -1, 0, False
        shift[ch] = <double>mnf
    # shifted samples, candidates and compressed trace in one pass (a NaN sample
    # gives a NaN work value: the event is then left to the NumPy path)
    cand[0] = 0
    z[0] = work[0]
    nc = 1
    gap = INFINITY
    for ch in range(nch):
        base = 1 + ch * (n + 1)
        mn = shift[ch]
        p = <const char *>&ev[0, ch]
        w = &work[base]
        for s in range(n):
            v = <double>(<const float *>(p + s * st0))[0] - mn
            w[s] = v
            if not (v < thr):  # a candidate, or NaN
                if v != v:
                    return -1, 0, False
                z[2 * nc - 1] = gap if base + s > cand[nc - 1] + 1 else v
                z[2 * nc] = v
                cand[nc] = base + s
                nc += 1
                gap = INFINITY
            else:
                gap = v if v < gap else gap
        # the separator after the channel (+inf, always a candidate)
        j = base + n
        v = work[j]
        z[2 * nc - 1] = gap if j > cand[nc - 1] + 1 else v
        z[2 * nc] = v
        cand[nc] = j
        nc += 1
        gap = INFINITY
        shift[ch] = mn - offset
    # local maxima among the finite candidates
    npk = 0
    mingap = work.shape[0]
    for i in range(1, nc):
        j = cand[i]
        v = work[j]
        if v == INFINITY or not (work[j - 1] < v):
            continue
        r = work[j + 1]
        if r < v:
            m = j
        elif r == v:  # plateau: the peak is the middle of the flat top
            e = j + 1
            while work[e] == v:
                e += 1
            if not (work[e] < v):
                continue
            m = (j + e - 1) // 2
        else:
            continue
        if npk > 0 and m - peaks[npk - 1] < mingap:
            mingap = m - peaks[npk - 1]
        peaks[npk] = m
        zpeaks[npk] = 2 * (i + m - j)  # plateau samples are consecutive candidates
        heights[npk] = v
        npk += 1
    if mingap >= dist:  # SciPy's selection keeps them all
        return nc, npk, True
    m = _select(&peaks[0], &zpeaks[0], &heights[0], npk, dist)
    if m < 0:
        return nc, npk, False
    return nc, m, True
