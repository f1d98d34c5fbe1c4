"""Exactly the peaks of :func:`scipy.signal.find_peaks`, for many traces at once, fast.

:class:`PeakSearch` finds in each trace ("row") what
``find_peaks(trace, prominence=P, distance=D, width=W)`` finds, with the same
``prominences``, ``widths``, ``left_ips``/``right_ips`` and ``left_bases``/``right_bases``,
bit for bit, ties included. The trace of a channel is ``(x - offset) * scaling``
computed in float64 (the conversion :func:`find_peaks` itself does, exact for float32
and integer samples). It reads each sample once or twice and hands SciPy only what is
near a peak.

Why the result is exact
-----------------------
1. **Layout.** All rows sit in one float64 work array, each followed by
   ``min(ceil(D), n)`` (at least one) ``+inf`` separators, one more before the first.
   A separator is never lower than a sample, so no row end becomes a peak and every
   prominence or width search stops at it as it would at the end of the row. Two
   samples of different rows are more than that apart, so the distance rule never
   acts across rows (channels or events); within a row any two samples are closer
   than ``n``, so a distance above ``n`` selects as ``n`` does.
2. **Candidates.** A sample ``v`` of a row with minimum ``m`` is a candidate when
   ``v - m >= P`` in float64. A peak's prominence is ``peak - base`` with
   ``base >= m``; float64 subtraction is monotonic, so every peak of prominence >= P
   is a candidate, and so is every sample as high as a candidate. The kernel finds
   the least such ``v`` once per row (bisection over the doubles), so the test is one
   comparison, and skips blocks of 64 samples whose maximum is below it.
3. **Local maxima** are tested on the candidates against their true neighbours
   (plateaus as in SciPy), so they are the row's maxima of at least candidate height.
4. **Distance selection** (SciPy's: highest first, each removing the others closer
   than ``ceil(D)``). Whether a candidate survives depends only on the maxima at
   least as high, all candidates, and on the order among equal heights. SciPy takes
   that order from ``np.argsort`` of all the row's maxima (NumPy's sort is not
   stable); it matters only when two maxima of equal height are closer than the
   distance (otherwise neither removes the other, and each removes the same lower
   ones in any order). The kernel selects in C when no such tie exists; a row with
   such a tie (or with a chain of more than 64 close maxima) is selected by SciPy's
   ``find_peaks(row, distance=D)`` on all its maxima, so ties go exactly SciPy's way.
5. **Prominences** come from SciPy's kernel on a compressed trace: each candidate
   as is, each gap of non-candidates (all lower than any candidate peak) as its
   minimum. A prominence scan passes whole gaps and stops only at a higher sample, a
   candidate, so the same minima are subtracted from the same peak values. The bases
   are mapped back to the row (the minimum nearest the peak, as SciPy keeps the first
   strictly lower sample it meets).
6. **Widths** come from SciPy's width loop (compiled here, ``-ffp-contract=off``)
   with positions counted from the row start, as in ``peak_widths`` on the row. The
   search is bounded by the row instead of the bases: it stops at the first sample at
   or below ``peak - prominence / 2``, and the base is such a sample (while the
   prominence is finite, ``peak - prominence * r`` rounds to no less than the base
   for ``r <= 0.99``), so it stops where SciPy's does.
7. **Rows that break an assumption** -- a NaN, an infinite sample, or a sample whose
   difference to the row minimum overflows float64 -- are given whole to
   ``find_peaks``.

Without the compiled kernel (``mimocorb.muon._peaks``), every row is given to
``find_peaks`` (same results, about 10x slower).
"""

from __future__ import annotations

import logging
import math
import warnings
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
from scipy.signal import find_peaks, peak_prominences, peak_widths

try:  # SciPy's compiled kernels behind find_peaks; fall back to the public API.
    from scipy.signal._peak_finding_utils import PeakPropertyWarning, _peak_prominences, _peak_widths
except ImportError:  # pragma: no cover - depends on the SciPy version
    PeakPropertyWarning = RuntimeWarning  # its base class

    def _peak_prominences(x, peaks, wlen):  # noqa: ANN001, ANN202
        return peak_prominences(x, peaks)

    def _peak_widths(x, peaks, rel_height, prominences, left_bases, right_bases):  # noqa: ANN001, ANN202
        return peak_widths(x, peaks, rel_height=rel_height, prominence_data=(prominences, left_bases, right_bases))


try:  # the compiled passes (src/peaks.pyx); find_peaks does every row without them
    from mimocorb.muon import _peaks
except ImportError:  # pragma: no cover - not built
    _peaks = None

logger = logging.getLogger(__name__)

ROW_SELECT = 1  # scan flag: SciPy selects by distance among all the row's maxima
ROW_REFERENCE = 2  # scan flag: find_peaks does the whole row


@dataclass
class Peaks:
    """Peaks of all rows, ordered by row and position (see :meth:`PeakSearch.search`).

    Attributes
    ----------
    index : ndarray of intp
        Position in the work array (``x[index]`` is the peak value).
    row, position : ndarray of intp
        Row and position in the row.
    prominences, widths, left_ips, right_ips : ndarray of float64
        As :func:`scipy.signal.find_peaks` reports them for the row.
    lo, hi : ndarray of intp
        Search bounds for more widths (:meth:`PeakSearch.widths`): ``-1`` (the row
        bounds, exact) or, for rows done by ``find_peaks``, the bases (work-array
        positions).
    """

    index: np.ndarray
    row: np.ndarray
    position: np.ndarray
    prominences: np.ndarray
    widths: np.ndarray
    left_ips: np.ndarray
    right_ips: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def _empty_peaks() -> Peaks:
    i, f = np.empty(0, np.intp), np.empty(0)
    return Peaks(i, i, i, f, f, f, f, i, i)


class ChannelFields:
    """How the channel fields of one structured dtype are viewed as samples.

    Parameters
    ----------
    dtype : numpy.dtype
        Structured dtype holding (at least) the fields ``names``.
    names : sequence of str
        The channel fields, in channel order.
    """

    def __init__(self, dtype: np.dtype, names: Sequence[str]) -> None:
        self.dtype = dtype
        self.names = list(names)
        fields = dtype.fields
        types = {fields[ch][0] for ch in self.names}
        offsets = [fields[ch][1] for ch in self.names]
        self.type = types.pop() if len(types) == 1 else None
        self.step = None  # bytes from channel to channel when one type, evenly spaced
        if self.type is not None:
            step = offsets[1] - offsets[0] if len(offsets) > 1 else self.type.itemsize
            if step != 0 and offsets == [offsets[0] + i * step for i in range(len(offsets))]:
                self.step = step
        self.packed = (
            self.step is not None
            and self.step == self.type.itemsize
            and offsets[0] == 0
            and dtype.itemsize == len(offsets) * self.step
        )

    def samples(self, data: np.ndarray, batch: bool) -> np.ndarray:
        """``(events, samples, channels)`` of one event ``(samples,)`` or a batch
        ``(events, samples)``: a view, or a copy when the channels differ in type or
        are unevenly spaced (NumPy's common type then holds each value as float64
        would, e.g. float64 for float32 and int32)."""
        shape = data.shape if batch else (1,) + data.shape
        if self.packed and data.flags.c_contiguous:
            return data.view(self.type).reshape(shape + (len(self.names),))
        if self.step is not None:
            first = data[self.names[0]].reshape(shape)
            return np.lib.stride_tricks.as_strided(
                first, shape + (len(self.names),), first.strides + (self.step,), writeable=False
            )
        return np.stack([data[ch].reshape(shape) for ch in self.names], axis=-1)


class PeakSearch:
    """``find_peaks(row, prominence=P, distance=D, width=W)`` of every row of a work array.

    Parameters
    ----------
    prominence, distance, width : float
        ``P`` (> 0), ``D`` (>= 1) and ``W`` of :func:`scipy.signal.find_peaks`.
    compiled : bool
        Use the compiled kernel when it is built (default); False gives every row to
        ``find_peaks``.
    """

    def __init__(self, prominence: float, distance: float, width: float, compiled: bool = True) -> None:
        if not prominence > 0:
            raise ValueError(f"PeakSearch: prominence must be > 0, got {prominence}")
        if not distance >= 1:
            raise ValueError(f"PeakSearch: distance must be >= 1, got {distance}")
        self.prominence = float(prominence)
        self.distance = float(distance)
        self.width = float(width)
        self.compiled = bool(compiled) and _peaks is not None
        self.rows = 0
        self.n = -1
        self._cap = 0
        self._state: Optional[tuple] = None

    # ------------------------------------------------------------------ layout
    def layout(self, rows: int, n: int) -> None:
        """Set up the work array for ``rows`` traces of ``n`` samples.

        Arrays are kept for the largest number of rows seen; fewer rows use their
        beginning, which has the layout of its own size (separators are never
        overwritten), so batches of changing size cost no allocation.
        """
        if n != self.n or rows > self._cap:
            cap = max(rows, self._cap if n == self.n else 1)
            # within a row every two peaks are closer than n, so a distance above n
            # selects as n does; the separators only need to cover that
            self._dist = min(math.ceil(self.distance), max(n, 1))
            stride = n + max(1, self._dist)
            size = 1 + cap * stride
            self._full = np.full(size, np.inf)
            self._full_rows = self._full[1:].reshape(cap, stride)[:, :n]
            self._mins = np.empty(cap)
            nb = _peaks.blocks(n) if _peaks is not None else 0
            self._bmin, self._bmax = np.empty(cap * nb), np.empty(cap * nb)
            self._cand = np.empty(size, np.intp)
            self._z = np.empty(2 * size)
            half = (size + 1) // 2  # local maxima are at least two samples apart
            self._pk = np.empty(half, np.intp)
            self._zpk = np.empty(half, np.intp)
            self._h = np.empty(half)
            self._keep = np.empty(half, np.uint8)
            self._rowstart = np.empty(cap + 1, np.intp)
            self._rowflag = np.empty(cap, np.int8)
            self.stride, self.n, self._cap = stride, n, cap
        self.rows = rows
        self.work = self._full[: 1 + rows * self.stride]
        #: view (rows, n) of the traces in the work array
        self.traces = self._full_rows[:rows]
        self._state = None

    def origin(self, row: np.ndarray) -> np.ndarray:
        """Work-array position of the first sample of each ``row``."""
        return 1 + row * self.stride

    # -------------------------------------------------------------------- load
    def load(self, samples: np.ndarray, offset: float, scaling: Optional[np.ndarray] = None) -> None:
        """Write the traces ``(samples - offset) * scaling`` (float64) into the rows.

        Parameters
        ----------
        samples : ndarray
            ``(events, samples, channels)``, any strides and real dtype; row
            ``event * channels + channel``. :meth:`layout` must have been called
            for ``events * channels`` rows of ``samples`` samples.
        offset : float
            Subtracted from every sample.
        scaling : ndarray, optional
            One factor per channel (None: no multiplication).
        """
        k, n, nch = samples.shape
        if k * nch != self.rows or n != self.n:
            raise ValueError(f"PeakSearch.load: {samples.shape} does not fit {self.rows} rows of {self.n} samples")
        self._state = None
        scaled = scaling is not None
        sc = np.ascontiguousarray(scaling, np.float64) if scaled else np.ones(0)
        dt = samples.dtype
        if self.compiled and dt.isnative and dt in (np.float32, np.float64):
            load = _peaks.load_float32 if dt == np.float32 else _peaks.load_float64
            load(samples, offset, sc, scaled, self.work, self.stride, self._mins, self._bmin, self._bmax)
            return
        v3 = self.traces.reshape(k, nch, n)
        with np.errstate(over="ignore", invalid="ignore"):  # inf and NaN are values like others here
            for ch in range(nch):
                out = v3[:, ch, :]
                np.subtract(samples[:, :, ch], offset, out=out, dtype=np.float64)
                if scaled:
                    out *= sc[ch]
        if self.compiled:
            _peaks.row_stats(self.work, self.rows, n, self.stride, self._mins, self._bmin, self._bmax)

    # ------------------------------------------------------------------ search
    def search(self, fast: bool = True) -> Peaks:
        """Peaks of all rows, as ``find_peaks`` finds them in each row.

        Parameters
        ----------
        fast : bool
            False gives every row to ``find_peaks`` (the reference).
        """
        if self.rows == 0 or self.n == 0:
            self._state = None
            return _empty_peaks()
        if not (fast and self.compiled):
            self._state = None
            return self._reference(np.arange(self.rows))
        x = self.work
        nc, npk = _peaks.scan(
            x,
            self.rows,
            self.n,
            self.stride,
            self._mins,
            self._bmin,
            self._bmax,
            self.prominence,
            self._dist,
            self._cand,
            self._z,
            self._pk,
            self._zpk,
            self._h,
            self._keep,
            self._rowstart,
            self._rowflag,
        )
        flags = self._rowflag[: self.rows]
        special = np.flatnonzero(flags) if flags.any() else ()
        for r in special:
            if flags[r] == ROW_SELECT:  # a tie within the distance: SciPy's own order decides
                a, b = self._rowstart[r], self._rowstart[r + 1]
                kept = np.zeros(self.n, bool)
                kept[find_peaks(self.traces[r], distance=self.distance)[0]] = True
                self._keep[a:b] = kept[self._pk[a:b] - self.origin(r)]
        keep = self._keep[:npk].view(bool)
        peaks, zpeaks = self._pk[:npk][keep], self._zpk[:npk][keep]
        prom, zlb, zrb = _peak_prominences(self._z[: 2 * nc - 1], zpeaks, -1)
        # prominence and width cuts (SciPy's `>=`), one compiled loop
        ints, floats = np.empty((5, peaks.size), np.intp), np.empty((4, peaks.size))
        k = _peaks.finish(
            self.work, self.n, self.stride, self.prominence, self.width, peaks, zlb, zrb, prom, ints, floats
        )
        index, row, position, zlb, zrb = ints[:, :k]
        self._state = (self._cand[:nc], zlb, zrb)
        unbounded = np.full(k, -1, np.intp)  # the rows bound later width searches exactly
        out = Peaks(index, row, position, *floats[:, :k], unbounded, unbounded)
        reference = [r for r in special if flags[r] == ROW_REFERENCE]
        if reference:
            # all peaks then carry their exact bases as bounds (see bases())
            fast_bases = self._fast_bases(out)
            self._state = None
            out = _merge(out, self._reference(np.array(reference)), fast_bases)
        return out

    def _reference(self, rows: np.ndarray) -> Peaks:
        """``find_peaks`` on the given rows."""
        parts = []
        for r in rows.tolist():
            with warnings.catch_warnings():  # zero prominences or widths are cut anyway
                warnings.simplefilter("ignore", PeakPropertyWarning)
                p, props = find_peaks(
                    self.traces[r], prominence=self.prominence, distance=self.distance, width=self.width
                )
            o = 1 + r * self.stride
            parts.append(
                Peaks(
                    p + o,
                    np.full(p.size, r, np.intp),
                    p,
                    props["prominences"],
                    props["widths"],
                    props["left_ips"],
                    props["right_ips"],
                    props["left_bases"] + o,
                    props["right_bases"] + o,
                )
            )
        return _concat(parts)

    def widths(
        self,
        index: np.ndarray,
        prominences: np.ndarray,
        rel_height: float,
        lo: Optional[np.ndarray] = None,
        hi: Optional[np.ndarray] = None,
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """SciPy's widths at ``rel_height`` (<= 0.99) of peaks at work-array positions ``index``.

        Positions (``left_ips``, ``right_ips``) are counted from each row's start.
        ``lo``/``hi``: the search bounds of :class:`Peaks` (default: the rows).
        """
        k = index.size
        lo = np.empty(0, np.intp) if lo is None else lo
        hi = np.empty(0, np.intp) if hi is None else hi
        out = np.empty(k), np.empty(k), np.empty(k)
        if k == 0:
            return out
        if self.compiled:
            _peaks.widths(self.work, index, prominences, rel_height, self.n, self.stride, lo, hi, *out)
            return out
        row = (index - 1) // self.stride
        origin = self.origin(row)
        for i in range(k):  # without the compiled kernel: SciPy's loop on each row
            has = lo.size and lo[i] >= 0
            lb = lo[i] - origin[i] if has else 0
            rb = hi[i] - origin[i] if has else self.n - 1
            res = _peak_widths(self.traces[row[i]], index[i : i + 1] - origin[i], rel_height, prominences[i : i + 1],
                               np.array([lb], np.intp), np.array([rb], np.intp))  # fmt: skip
            out[0][i], out[1][i], out[2][i] = res[0][0], res[2][0], res[3][0]
        return out

    def bases(self, peaks: Peaks) -> Tuple[np.ndarray, np.ndarray]:
        """``left_bases`` and ``right_bases`` (positions in the row) of the last :meth:`search`."""
        if self._state is None:  # reference rows: the bases are the bounds
            lb, rb = peaks.lo.copy(), peaks.hi.copy()
            fast = lb < 0
            if fast.any():
                raise RuntimeError("PeakSearch.bases: the peaks are not those of the last search")
        else:
            lb, rb = self._fast_bases(peaks)
        o = self.origin(peaks.row)
        return lb - o, rb - o

    def _fast_bases(self, peaks: Peaks) -> Tuple[np.ndarray, np.ndarray]:
        """Bases (work-array positions) of the kernel's peaks from their compressed-trace
        bases: a candidate, or in a gap the minimum nearest the peak (SciPy updates the
        base only on a strictly lower sample)."""
        if self._state is None:
            raise RuntimeError("PeakSearch.bases: no fast search to take the bases from")
        c, zlb, zrb = self._state
        x = self.work
        lb = np.empty(zlb.size, np.intp)
        rb = np.empty(zrb.size, np.intp)
        for k, (zl, zr) in enumerate(zip(zlb.tolist(), zrb.tolist())):
            j = zl >> 1
            if zl & 1:  # in the gap after candidate j (the next candidate when there is none)
                lo, hi = c[j] + 1, max(c[j + 1], c[j] + 2)
                gap = x[lo:hi]
                lb[k] = lo + gap.size - 1 - int(np.argmin(gap[::-1]))
            else:
                lb[k] = c[j]
            j = zr >> 1
            if zr & 1:
                lo, hi = c[j] + 1, max(c[j + 1], c[j] + 2)
                rb[k] = lo + int(np.argmin(x[lo:hi]))
            else:
                rb[k] = c[j]
        return lb, rb


def _concat(parts: Sequence[Peaks]) -> Peaks:
    if not parts:
        return _empty_peaks()
    if len(parts) == 1:
        return parts[0]
    return Peaks(*(np.concatenate([getattr(p, f) for p in parts]) for f in Peaks.__dataclass_fields__))


def _merge(fast: Peaks, reference: Peaks, fast_bases: Tuple[np.ndarray, np.ndarray]) -> Peaks:
    """Both sets in row order; the kernel's peaks get their exact bases as bounds."""
    fast.lo, fast.hi = fast_bases
    both = _concat([fast, reference])
    order = np.argsort(both.index, kind="stable")
    return Peaks(*(getattr(both, f)[order] for f in Peaks.__dataclass_fields__))
