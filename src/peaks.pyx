# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
"""mimocorb.muon._peaks -- the whole-trace passes of the exact peak search.

The Python side (``mimocorb.muon.peak_search``) owns the layout and the rules, and
explains why the results are exact; this module only runs loops over the layout. The
work array holds ``rows`` traces of ``n`` float64 samples, row ``r`` at
``1 + r * stride``; every other element is ``+inf`` (a separator: one before the
first row, ``stride - n`` after each row).

- :func:`load_float32` / :func:`load_float64` (or NumPy and :func:`row_stats`): the
  traces ``(x - offset) * scaling`` of events of any strides into the rows, with each
  row's minimum (NaN for a row holding NaN or infinities) and the minimum and maximum
  of each block of 64 samples.
- :func:`scan`: per row the candidate samples, the compressed trace, the local maxima
  among the candidates and SciPy's distance selection among them, or a flag that
  leaves the row (or its selection) to SciPy.
- :func:`finish`: the prominence and width cuts of the selected maxima.
- :func:`widths`: SciPy's ``_peak_widths`` loop, with the positions counted from the
  start of each peak's row.

Every float64 operation here is the one SciPy or NumPy does for the same value
(setup.py compiles this module with ``-ffp-contract=off`` so that no multiply-add is
fused), so the values are bitwise those of ``find_peaks`` on each row.
"""

from libc.math cimport INFINITY, NAN
from libc.string cimport memcpy

ctypedef fused sample_t:
    float
    double

cdef enum:
    MAX_SELECT = 64  # largest cluster of close maxima the distance selection orders here
    ROW_OK = 0  # row fully handled here
    ROW_SELECT = 1  # candidates and maxima here; the distance selection is left to SciPy
    ROW_REFERENCE = 2  # NaN, infinity or overflow in the row: find_peaks does the whole row


cdef enum:
    BLOCK = 64  # samples per block of the row statistics


def blocks(Py_ssize_t n):
    """Number of blocks of a row of ``n`` samples (``ceil(n / BLOCK)``)."""
    return (n + BLOCK - 1) // BLOCK


cdef inline double _block_stats(const double *w, Py_ssize_t n, double *bmin, double *bmax) noexcept nogil:
    """Minimum and maximum of ``w[:n]`` (one block) into ``bmin[0]``/``bmax[0]``; returns
    the sum, which is not finite when the block holds a NaN or an infinity (or, rarely,
    huge values). Four independent chains of each, for speed."""
    cdef double m0, m1, m2, m3, x0, x1, x2, x3, a0 = 0, a1 = 0, a2 = 0, a3 = 0
    cdef Py_ssize_t s = 0
    m0 = m1 = m2 = m3 = INFINITY
    x0 = x1 = x2 = x3 = -INFINITY
    while s + 4 <= n:
        m0 = w[s] if w[s] < m0 else m0
        m1 = w[s + 1] if w[s + 1] < m1 else m1
        m2 = w[s + 2] if w[s + 2] < m2 else m2
        m3 = w[s + 3] if w[s + 3] < m3 else m3
        x0 = w[s] if w[s] > x0 else x0
        x1 = w[s + 1] if w[s + 1] > x1 else x1
        x2 = w[s + 2] if w[s + 2] > x2 else x2
        x3 = w[s + 3] if w[s + 3] > x3 else x3
        a0 += w[s]
        a1 += w[s + 1]
        a2 += w[s + 2]
        a3 += w[s + 3]
        s += 4
    while s < n:
        m0 = w[s] if w[s] < m0 else m0
        x0 = w[s] if w[s] > x0 else x0
        a0 += w[s]
        s += 1
    m0 = m1 if m1 < m0 else m0
    m2 = m3 if m3 < m2 else m2
    x0 = x1 if x1 > x0 else x0
    x2 = x3 if x3 > x2 else x2
    bmin[0] = m2 if m2 < m0 else m0
    bmax[0] = x2 if x2 > x0 else x0
    return (a0 + a1) + (a2 + a3)


cdef inline void _row_stats(const double *w, Py_ssize_t n, double *mins, double *bmin,
                            double *bmax) noexcept nogil:
    """Block minima and maxima of a row (:func:`_block_stats`) and its minimum into
    ``mins[0]`` -- NaN when a block sum is not finite: the row then goes to SciPy, which
    is exact for NaN and infinities (and for the rare huge finite values too)."""
    cdef Py_ssize_t b = 0, s = 0
    cdef double rmin = INFINITY, a = 0
    while s < n:
        a += _block_stats(&w[s], BLOCK if s + BLOCK < n else n - s, &bmin[b], &bmax[b])
        rmin = bmin[b] if bmin[b] < rmin else rmin
        s += BLOCK
        b += 1
    mins[0] = rmin if a - a == 0 else NAN


cdef int _load(const sample_t[:, :, :] ev, double offset, const double[::1] scaling, bint scaled,
               double[::1] work, Py_ssize_t stride, double[::1] mins, double[::1] bmin,
               double[::1] bmax) except -1:
    cdef Py_ssize_t k = ev.shape[0]
    cdef Py_ssize_t n = ev.shape[1]
    cdef Py_ssize_t nch = ev.shape[2]
    cdef Py_ssize_t e, ch, s, r, b, a, end
    cdef Py_ssize_t st1 = ev.strides[1]
    cdef const char *p
    cdef const sample_t *q
    cdef double *w
    cdef double sc, rmin, total
    cdef Py_ssize_t nb = (n + BLOCK - 1) // BLOCK
    if stride < n + 1 or work.shape[0] < 1 + k * nch * stride or mins.shape[0] < k * nch:
        raise ValueError("load: work or mins too small for the events")
    if bmin.shape[0] < k * nch * nb or bmax.shape[0] < k * nch * nb:
        raise ValueError("load: bmin and bmax need blocks(n) entries per row")
    if scaled and scaling.shape[0] < nch:
        raise ValueError("load: scaling needs one value per channel")
    with nogil:
        for e in range(k):
            for ch in range(nch):
                r = e * nch + ch
                w = &work[1 + r * stride]
                p = <const char *>&ev[e, 0, ch]
                q = <const sample_t *>p
                sc = scaling[ch] if scaled else 1.0
                rmin = INFINITY
                total = 0
                # block by block, so that the statistics read what was just written (L1)
                for b in range(nb):
                    a = b * BLOCK
                    end = a + BLOCK if a + BLOCK < n else n
                    # the trace in float64, as NumPy computes (x - offset) * scaling
                    if st1 == sizeof(sample_t):  # contiguous samples: a loop the compiler vectorises
                        for s in range(a, end):
                            w[s] = <double>q[s] - offset
                    else:
                        for s in range(a, end):
                            w[s] = <double>(<const sample_t *>(p + s * st1))[0] - offset
                    if scaled:
                        for s in range(a, end):
                            w[s] = w[s] * sc
                    total += _block_stats(&w[a], end - a, &bmin[r * nb + b], &bmax[r * nb + b])
                    rmin = bmin[r * nb + b] if bmin[r * nb + b] < rmin else rmin
                mins[r] = rmin if total - total == 0 else NAN
    return 0


def load_float32(const float[:, :, :] ev, double offset, const double[::1] scaling, bint scaled,
                 double[::1] work, Py_ssize_t stride, double[::1] mins, double[::1] bmin, double[::1] bmax):
    """Write the traces of float32 events ``(events, samples, channels)`` (any strides)
    into the rows ``event * channels + channel`` of ``work``; ``scaling`` (one per
    channel) is applied when ``scaled``. ``mins``: each row's minimum, or NaN when the
    row holds a NaN or an infinity; ``bmin``/``bmax``: minimum and maximum of each block
    of the rows (:func:`blocks` per row)."""
    _load(ev, offset, scaling, scaled, work, stride, mins, bmin, bmax)


def load_float64(const double[:, :, :] ev, double offset, const double[::1] scaling, bint scaled,
                 double[::1] work, Py_ssize_t stride, double[::1] mins, double[::1] bmin, double[::1] bmax):
    """:func:`load_float32` for float64 events."""
    _load(ev, offset, scaling, scaled, work, stride, mins, bmin, bmax)


def row_stats(const double[::1] work, Py_ssize_t rows, Py_ssize_t n, Py_ssize_t stride, double[::1] mins,
              double[::1] bmin, double[::1] bmax):
    """``mins``, ``bmin`` and ``bmax`` of rows written by NumPy (as the load functions
    give them)."""
    cdef Py_ssize_t r
    cdef Py_ssize_t nb = (n + BLOCK - 1) // BLOCK
    if work.shape[0] < 1 + rows * stride or mins.shape[0] < rows:
        raise ValueError("row_stats: work or mins too small")
    if bmin.shape[0] < rows * nb or bmax.shape[0] < rows * nb:
        raise ValueError("row_stats: bmin and bmax need blocks(n) entries per row")
    with nogil:
        for r in range(rows):
            _row_stats(&work[1 + r * stride], n, &mins[r], &bmin[r * nb], &bmax[r * nb])
    return None


cdef inline long long _key(double x) noexcept nogil:
    """Integer with the order of the doubles (-0.0 just below +0.0); its own inverse."""
    cdef long long b
    memcpy(&b, &x, sizeof(double))
    return b ^ ((b >> 63) & 0x7FFFFFFFFFFFFFFFLL)


cdef inline double _unkey(long long b) noexcept nogil:
    cdef double x
    b = b ^ ((b >> 63) & 0x7FFFFFFFFFFFFFFFLL)
    memcpy(&x, &b, sizeof(double))
    return x


cdef double _threshold(double mn, double pmin) noexcept nogil:
    """The least double ``t`` with ``t - mn >= pmin`` in float64 (``mn`` finite,
    ``pmin > 0``). ``t - mn`` rounds monotonically in ``t``, so ``v >= t`` is exactly
    ``v - mn >= pmin``; found by bisection in the order of the doubles (at most 64
    steps): ``mn`` fails the test, ``+inf`` passes it."""
    cdef long long lo = _key(mn), hi = _key(INFINITY), mid
    while lo + 1 < hi:  # (hi - lo may overflow)
        mid = (lo >> 1) + (hi >> 1) + (lo & hi & 1)  # floor of the mean, in (lo, hi)
        if _unkey(mid) - mn >= pmin:
            hi = mid
        else:
            lo = mid
    return _unkey(hi)


def threshold(double mn, double pmin):
    """:func:`_threshold` for tests."""
    if not (mn - mn == 0 and pmin > 0):
        raise ValueError(f"threshold: needs a finite minimum and pmin > 0, got {mn}, {pmin}")
    return _threshold(mn, pmin)


cdef inline double _gap_min(const double *w, const double *bmin, Py_ssize_t base, Py_ssize_t a,
                            Py_ssize_t b) noexcept nogil:
    """Minimum of ``w[a:b]`` (``b <= base + n``) of the row at ``base`` with block minima
    ``bmin``; the part before ``base`` is separators (+inf)."""
    cdef Py_ssize_t fa, fb, k
    cdef double m, v
    a = a if a > base else base
    fa = (a - base + BLOCK - 1) // BLOCK  # first whole block
    fb = (b - base) // BLOCK  # end of the whole blocks
    if fa >= fb:
        return _range_min(w, a, b)
    m = _range_min(w, a, base + fa * BLOCK)
    v = _range_min(w, base + fb * BLOCK, b)
    m = v if v < m else m
    for k in range(fa, fb):
        m = bmin[k] if bmin[k] < m else m
    return m


cdef inline double _range_min(const double *w, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    """Minimum of ``w[a:b]`` (``+inf`` when empty), four chains."""
    cdef double m0 = INFINITY, m1 = INFINITY, m2 = INFINITY, m3 = INFINITY
    while a + 4 <= b:
        m0 = w[a] if w[a] < m0 else m0
        m1 = w[a + 1] if w[a + 1] < m1 else m1
        m2 = w[a + 2] if w[a + 2] < m2 else m2
        m3 = w[a + 3] if w[a + 3] < m3 else m3
        a += 4
    while a < b:
        m0 = w[a] if w[a] < m0 else m0
        a += 1
    m0 = m1 if m1 < m0 else m0
    m2 = m3 if m3 < m2 else m2
    return m2 if m2 < m0 else m0


cdef int _select(const Py_ssize_t *pk, const double *h, Py_ssize_t npk, Py_ssize_t dist,
                 unsigned char *keep) noexcept nogil:
    """SciPy's ``_select_by_peak_distance`` on one row's maxima ``pk`` (ascending).

    Peaks are taken from the highest down; each removes the others closer than
    ``dist`` (the ceiling of the distance). Maxima whose gaps are all >= ``dist``
    never interact, so each cluster of closer ones is ordered on its own. SciPy
    orders by ``np.argsort`` of all the row's maxima, whose order of equal heights
    depends on the whole array. The outcome depends on that order only when, as a
    height is reached, two maxima of that height are both still kept and closer than
    ``dist``: otherwise none of them removes another, and each removes the same lower
    ones in any order. In that case, or for a cluster of more than MAX_SELECT maxima,
    nothing is decided and 1 returned: the caller then lets SciPy select on the whole
    row. Otherwise ``keep`` is set, 0 returned.
    """
    cdef Py_ssize_t order[MAX_SELECT]
    cdef Py_ssize_t a = 0, b, c, i, j, g, q
    while a < npk:
        b = a + 1
        while b < npk and pk[b] - pk[b - 1] < dist:
            b += 1
        c = b - a
        if c > 1:
            if c > MAX_SELECT:
                return 1
            for i in range(c):  # insertion sort of the cluster by height, ascending
                j = i
                while j > 0 and h[a + order[j - 1]] > h[a + i]:
                    order[j] = order[j - 1]
                    j -= 1
                order[j] = i
            i = c - 1
            while i >= 0:
                g = i  # order[g..i] (g <= i): the maxima of this height
                while g > 0 and h[a + order[g - 1]] == h[a + order[i]]:
                    g -= 1
                for j in range(g, i + 1):  # two kept ones closer than dist: the order decides
                    for q in range(j + 1, i + 1):
                        if keep[a + order[j]] and keep[a + order[q]]:
                            if -dist < pk[a + order[q]] - pk[a + order[j]] < dist:
                                return 1
                for j in range(g, i + 1):
                    _remove_near(pk, keep, a + order[j], a, b, dist)
                i = g - 1
        a = b
    return 0


cdef inline void _remove_near(const Py_ssize_t *pk, unsigned char *keep, Py_ssize_t j, Py_ssize_t a,
                              Py_ssize_t b, Py_ssize_t dist) noexcept nogil:
    """SciPy's step for a kept peak ``j``: the others in ``[a, b)`` closer than ``dist``
    are removed (a removed peak does nothing)."""
    cdef Py_ssize_t q
    if not keep[j]:
        return
    q = j - 1
    while q >= a and pk[j] - pk[q] < dist:
        keep[q] = 0
        q -= 1
    q = j + 1
    while q < b and pk[q] - pk[j] < dist:
        keep[q] = 0
        q += 1


def select_by_distance(const Py_ssize_t[::1] peaks, const double[::1] heights, Py_ssize_t dist,
                       unsigned char[::1] keep):
    """:func:`_select` for tests: fills ``keep`` (set to 1 first) and returns True, or
    returns False when SciPy must decide (a tie closer than ``dist`` or a long cluster)."""
    cdef Py_ssize_t npk = peaks.shape[0]
    if heights.shape[0] < npk or keep.shape[0] < npk:
        raise ValueError("select_by_distance: heights and keep must be as long as peaks")
    keep[:] = 1
    if npk == 0:
        return True
    return _select(&peaks[0], &heights[0], npk, dist, &keep[0]) == 0


def scan(const double[::1] work, Py_ssize_t rows, Py_ssize_t n, Py_ssize_t stride, const double[::1] mins,
         const double[::1] bmin, const double[::1] bmax, double pmin, Py_ssize_t dist, Py_ssize_t[::1] cand,
         double[::1] z, Py_ssize_t[::1] peaks, Py_ssize_t[::1] zpeaks, double[::1] heights, unsigned char[::1] keep,
         Py_ssize_t[::1] rowstart, signed char[::1] rowflag):
    """Candidates, compressed trace, local maxima and their distance selection, per row.

    A sample ``v`` of a row with minimum ``m`` is a candidate when ``v - m >= pmin``
    (float64, as SciPy's prominence ``peak - base`` with ``base >= m``: rounding is
    monotonic, so no peak of prominence >= ``pmin`` is left out, and every sample
    as high as a candidate is one). The first separator after each row is one too.
    The compressed trace ``z`` holds every candidate's value at ``2 * i`` and at
    ``2 * i - 1`` the minimum of the gap of non-candidates before it (its own value
    when there is no gap); a prominence scan from a candidate peak passes every gap
    whole and stops only at a higher candidate or a separator, so
    ``_peak_prominences`` on ``z`` gives SciPy's values.

    Parameters
    ----------
    work, rows, n, stride
        The loaded work array and its layout (see the module notes).
    mins, bmin, bmax : float64
        Row minima (NaN for a row with a NaN or an infinity) and block minima and
        maxima, as the load functions and :func:`row_stats` give them. Only blocks
        whose maximum reaches the threshold are searched for candidates, and the
        minimum of a gap is taken from the minima of the whole blocks in it.
    pmin : float
        Least prominence (> 0).
    dist : int
        Distance in samples, rounded up.
    cand, z, peaks, zpeaks, heights, keep
        Out: candidate indices, compressed trace (``2 * ncand - 1`` values), local
        maxima among the candidates (work-array indices, ascending), their indices
        in ``z``, their values, and whether the distance selection keeps them.
        ``cand`` as long as ``work``, ``z`` twice that, the others half.
    rowstart : intp (rows + 1)
        Out: the maxima of row ``r`` are ``peaks[rowstart[r]:rowstart[r + 1]]``.
    rowflag : int8 (rows)
        Out: 0 all done here; 1 the row's ``keep`` is undecided (SciPy must select
        among all the row's maxima: a tie closer than the distance, or a long chain
        of close maxima); 2 the row holds a NaN, an infinity, or a sample whose
        difference to the minimum overflows, and has no candidates or maxima here
        (``find_peaks`` must do it).

    Returns
    -------
    (int, int)
        Number of candidates and of local maxima.
    """
    cdef Py_ssize_t r, s, i, j, e, m, b, base, nc, nc0, npk, sep, end
    cdef Py_ssize_t nb = (n + BLOCK - 1) // BLOCK
    cdef const double *rmin
    cdef const double *rmax
    cdef double mn, thr, v, rv
    cdef const double *w = &work[0]
    if pmin <= 0 or dist < 1:
        raise ValueError(f"scan: pmin must be > 0 and dist >= 1, got {pmin}, {dist}")
    if work.shape[0] < 1 + rows * stride or stride < n + 1 or mins.shape[0] < rows:
        raise ValueError("scan: work or mins too small for the layout")
    if bmin.shape[0] < rows * nb or bmax.shape[0] < rows * nb or n < 1:
        raise ValueError("scan: bmin and bmax need blocks(n) entries per row, n >= 1")
    if cand.shape[0] < work.shape[0] or z.shape[0] < 2 * work.shape[0]:
        raise ValueError("scan: cand must be as long as work, z twice")
    if peaks.shape[0] < (work.shape[0] + 1) // 2:  # local maxima are at least two samples apart
        raise ValueError("scan: peaks must hold half the length of work")
    if zpeaks.shape[0] < peaks.shape[0] or heights.shape[0] < peaks.shape[0] or keep.shape[0] < peaks.shape[0]:
        raise ValueError("scan: zpeaks, heights and keep must be as long as peaks")
    if rowstart.shape[0] < rows + 1 or rowflag.shape[0] < rows:
        raise ValueError("scan: rowstart needs rows + 1 entries, rowflag rows")
    with nogil:
        cand[0] = 0  # the separator before the first row
        z[0] = w[0]
        nc = 1
        npk = 0
        for r in range(rows):
            base = 1 + r * stride
            sep = base + n
            mn = mins[r]
            rmin = &bmin[r * nb]
            rmax = &bmax[r * nb]
            nc0 = nc
            rowstart[r] = npk
            rowflag[r] = ROW_OK
            if mn == mn:
                thr = _threshold(mn, pmin)
                for b in range(nb):
                    if rmax[b] >= thr:  # else no candidate in this block
                        end = base + (b + 1) * BLOCK if (b + 1) * BLOCK < n else sep
                        for s in range(base + b * BLOCK, end):
                            if w[s] >= thr:
                                cand[nc] = s
                                nc += 1
                # the differences to the minimum are finite (the row is finite), except
                # where they overflow; only candidates can (their difference is >= pmin)
                for i in range(nc0, nc):
                    if not (w[cand[i]] - mn < INFINITY):
                        rowflag[r] = ROW_REFERENCE
                        nc = nc0
                        break
            else:
                rowflag[r] = ROW_REFERENCE
            # the first separator after the row stands for all of them; a row left to
            # find_peaks is then one gap that no scan of another row enters
            cand[nc] = sep
            nc += 1
            for i in range(nc0, nc):
                j = cand[i]
                z[2 * i] = w[j]
                z[2 * i - 1] = _gap_min(w, rmin, base, cand[i - 1] + 1, j) if j > cand[i - 1] + 1 else w[j]
            if rowflag[r] == ROW_REFERENCE:
                continue
            # local maxima among the row's candidates, plateaus as in SciPy
            for i in range(nc0, nc - 1):
                j = cand[i]
                v = w[j]
                if not (w[j - 1] < v):
                    continue
                rv = w[j + 1]
                if rv < v:
                    m = j
                elif rv == v:  # plateau: the peak is the middle of the flat top (rounded down)
                    e = j + 1
                    while w[e] == v:  # stops at the separator at the latest
                        e += 1
                    if not (w[e] < v):
                        continue
                    # SciPy's (left + right) // 2 on row positions; the row offset enters
                    # twice, so the floor is the same
                    m = (j + e - 1) // 2
                else:
                    continue
                peaks[npk] = m
                zpeaks[npk] = 2 * (i + m - j)  # plateau samples are consecutive candidates
                heights[npk] = v
                keep[npk] = 1
                npk += 1
            if npk - rowstart[r] > 1:
                if _select(&peaks[rowstart[r]], &heights[rowstart[r]], npk - rowstart[r], dist,
                           &keep[rowstart[r]]):
                    rowflag[r] = ROW_SELECT
        rowstart[rows] = npk
    return nc, npk


cdef inline double _width(const double *x, Py_ssize_t peak, double prominence, double rel_height,
                          Py_ssize_t i_min, Py_ssize_t i_max, Py_ssize_t origin, double *left,
                          double *right) noexcept nogil:
    """SciPy's ``_peak_widths`` loop for one peak, every float64 operation as there,
    with the positions counted from ``origin`` (the start of the peak's row). Returns
    the width, ``right - left``."""
    cdef Py_ssize_t i
    cdef double height, left_ip, right_ip
    height = x[peak] - prominence * rel_height
    i = peak
    while i_min < i and height < x[i]:
        i -= 1
    left_ip = <double>(i - origin)
    if x[i] < height:
        if x[i + 1] != x[i]:
            left_ip += (height - x[i]) / (x[i + 1] - x[i])
    i = peak
    while i < i_max and height < x[i]:
        i += 1
    right_ip = <double>(i - origin)
    if x[i] < height:
        if x[i - 1] != x[i]:
            right_ip -= (height - x[i]) / (x[i - 1] - x[i])
    left[0] = left_ip
    right[0] = right_ip
    return right_ip - left_ip


def widths(const double[::1] work, const Py_ssize_t[::1] peaks, const double[::1] prominences,
           double rel_height, Py_ssize_t n, Py_ssize_t stride, const Py_ssize_t[::1] lo,
           const Py_ssize_t[::1] hi, double[::1] out_widths, double[::1] out_left, double[::1] out_right):
    """SciPy's ``_peak_widths`` for peaks of the work array, positions per row.

    The loop and every float64 operation are SciPy's; only the positions are counted
    from the start of each peak's row, so ``left_ips``/``right_ips`` (and the widths,
    their difference) are bitwise those of ``peak_widths`` on the row itself. The
    search of a peak runs in ``[lo[i], hi[i]]`` (work-array indices; SciPy's bases),
    or, where ``lo[i] < 0``, in its whole row: the search stops at the first sample at
    or below ``peak - rel_height * prominence``, and for a finite prominence and
    ``rel_height <= 0.99`` the base is such a sample (``rel_height * prominence``
    rounds to less than ``peak - base``, or is exact where that difference is
    subnormal), so the row bounds give SciPy's result. ``lo``/``hi`` may be empty (row
    bounds for all).
    """
    cdef Py_ssize_t p, peak, i_min, i_max, origin
    cdef Py_ssize_t npk = peaks.shape[0]
    cdef bint bounds = lo.shape[0] > 0
    if prominences.shape[0] < npk or out_widths.shape[0] < npk or out_left.shape[0] < npk:
        raise ValueError("widths: prominences and outputs must be as long as peaks")
    if out_right.shape[0] < npk or (bounds and (lo.shape[0] < npk or hi.shape[0] < npk)):
        raise ValueError("widths: outputs and bounds must be as long as peaks")
    if not (0 <= rel_height <= 0.99):
        raise ValueError(f"widths: rel_height must be in [0, 0.99], got {rel_height}")
    for p in range(npk):
        peak = peaks[p]
        if not (1 <= peak < work.shape[0]):
            raise ValueError(f"widths: peak {peak} is outside the work array")
        origin = 1 + ((peak - 1) // stride) * stride
        if bounds and lo[p] >= 0:
            if not (origin <= lo[p] <= peak <= hi[p] < origin + n):
                raise ValueError(f"widths: bounds [{lo[p]}, {hi[p]}] of peak {peak} are not in its row")
        elif peak >= origin + n:
            raise ValueError(f"widths: peak {peak} is on a separator")
    with nogil:
        for p in range(npk):
            peak = peaks[p]
            origin = 1 + ((peak - 1) // stride) * stride
            if bounds and lo[p] >= 0:
                i_min = lo[p]
                i_max = hi[p]
            else:
                i_min = origin
                i_max = origin + n - 1
            out_widths[p] = _width(&work[0], peak, prominences[p], rel_height, i_min, i_max, origin,
                                   &out_left[p], &out_right[p])
    return None


def finish(const double[::1] work, Py_ssize_t n, Py_ssize_t stride, double pmin, double wmin,
           const Py_ssize_t[::1] peaks, const Py_ssize_t[::1] zpeaks_left, const Py_ssize_t[::1] zpeaks_right,
           const double[::1] prominences, Py_ssize_t[:, ::1] out_int, double[:, ::1] out_float):
    """The prominence and width cuts of ``find_peaks`` for the distance-selected maxima
    ``peaks`` of :func:`scan` (finite rows), with their ``prominences`` and compressed-trace
    bases from SciPy's ``_peak_prominences``.

    Keeps the peaks with ``prominence >= pmin`` and then ``width >= wmin`` (widths at
    half the prominence, as :func:`widths` with row bounds) and writes, for the kept
    ones in order, ``out_int`` rows: work-array index, row, position in the row, left
    and right base in the compressed trace; ``out_float`` rows: prominence, width,
    left and right interpolated position. Returns their number.
    """
    cdef Py_ssize_t p, k = 0, peak, row, origin
    cdef Py_ssize_t npk = peaks.shape[0]
    cdef double w, left, right
    if zpeaks_left.shape[0] < npk or zpeaks_right.shape[0] < npk or prominences.shape[0] < npk:
        raise ValueError("finish: bases and prominences must be as long as peaks")
    if out_int.shape[0] < 5 or out_float.shape[0] < 4 or out_int.shape[1] < npk or out_float.shape[1] < npk:
        raise ValueError("finish: out_int needs (5, peaks), out_float (4, peaks)")
    for p in range(npk):
        peak = peaks[p]
        if not (1 <= peak < work.shape[0]) or (peak - 1) % stride >= n:
            raise ValueError(f"finish: peak {peak} is not a sample of a row")
    with nogil:
        for p in range(npk):
            if not (prominences[p] >= pmin):
                continue
            peak = peaks[p]
            row = (peak - 1) // stride
            origin = 1 + row * stride
            w = _width(&work[0], peak, prominences[p], 0.5, origin, origin + n - 1, origin, &left, &right)
            if not (w >= wmin):
                continue
            out_int[0, k] = peak
            out_int[1, k] = row
            out_int[2, k] = peak - origin
            out_int[3, k] = zpeaks_left[p]
            out_int[4, k] = zpeaks_right[p]
            out_float[0, k] = prominences[p]
            out_float[1, k] = w
            out_float[2, k] = left
            out_float[3, k] = right
            k += 1
    return k
