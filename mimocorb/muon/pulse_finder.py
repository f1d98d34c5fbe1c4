"""Find the muon-decay double pulses in digitiser events (1.x ``calculate_decay_time``).

The peaks of each channel are those :func:`scipy.signal.find_peaks` finds with
``prominence=peak_minimal_prominence_secondary``, ``distance=peak_minimal_distance``
and ``width=peak_minimal_width`` on the baseline-subtracted, scaled trace
``(x - analogue_offset) * chX_scaling``. Peaks of different channels closer than
``trigger_position_tolerance`` samples form one coincidence (a row). The first row must
sit at the trigger (``pre_trigger_samples`` +- tolerance) and its peaks need a
prominence of at least ``peak_minimal_prominence_initial``. The first two rows are
then matched against the ``signatures`` ([start, stop], one of "+", "-", "0" per
channel).

Fast path
---------
Most samples are noise, and scanning all of them is what made 1.x slow. The fast path
gives the same peaks as ``find_peaks`` on the whole trace, by these steps:

1. All channels go into one float64 work array, separated by ``+inf`` samples. An
   ``inf`` neighbour is never lower than a sample, so no channel edge becomes a peak,
   and a prominence or width search stops at it exactly where it would stop at the
   end of a single trace.
2. A peak of prominence >= P is at least P above the minimum of its channel, so only
   samples ``>= min + P`` (candidates) can give peaks that survive. Their local-maximum
   test is vectorised (plateaus handled as in SciPy).
3. The distance filter only removes a peak in favour of a higher one within the
   distance; a higher peak is itself a candidate, so filtering the candidates alone
   keeps exactly the candidates the full filter keeps. Non-candidate peaks would fail
   the prominence cut anyway.
4. Prominences are computed by SciPy's own kernel on a compressed trace: every
   candidate sample as is, every run of non-candidates replaced by its minimum. A
   prominence scan stops only at a higher sample (always a candidate or a separator)
   and takes the minimum of what it passed, so the values are exact. Widths are
   computed by SciPy's kernel on the full trace; their search stops at the first
   sample at or below the half height, before the base, so it needs no base.

Per event this is 5-8x faster than ``find_peaks`` on every trace; most of the
remaining time is the fixed cost of ~40 small NumPy calls, which
:meth:`PulseFinder.analyse_batch` shares among many events.

For single float32 events (a packed structured slot or a 2-D array, unscaled) the
compiled kernel ``mimocorb.muon._peaks`` (src/peaks.pyx) replaces most of those calls:
in two passes over the samples (channel minima; then shift, candidates and the
compressed trace of step 4) and one over the candidates (local maxima, and the
distance selection when no two maxima have the same height) it does the same float64
arithmetic, so the results are identical, about twice as fast per event. Without it
(ImportError), or for events it declines (NaN, infinite minimum), NumPy does the work.

The only theoretical difference is the tie order of two candidate peaks of exactly
equal height within the distance (SciPy's sort of all peaks versus of the candidates).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy.signal import find_peaks, peak_widths

try:  # SciPy's compiled kernels behind find_peaks; fall back to the public API.
    from scipy.signal._peak_finding_utils import (
        _peak_prominences,
        _peak_widths,
        _select_by_peak_distance,
    )
except ImportError:  # pragma: no cover - depends on the SciPy version
    _peak_prominences = None
    _select_by_peak_distance = None

    def _peak_widths(x, peaks, rel_height, prominences, left_bases, right_bases):  # noqa: ANN001, ANN202
        return peak_widths(x, peaks, rel_height=rel_height, prominence_data=(prominences, left_bases, right_bases))


try:  # compiled whole-trace passes of the fast path (src/peaks.pyx); NumPy does them without it
    from mimocorb.muon import _peaks
except ImportError:  # pragma: no cover - not built
    _peaks = None

logger = logging.getLogger(__name__)

DEFAULT_CHANNELS: Tuple[str, ...] = ("chA", "chB", "chC", "chD")

#: The three signatures of the 1.x demo configuration.
DEFAULT_SIGNATURES: List[List[List[str]]] = [
    [["+", "+", "-", "-"], ["0", "+", "-", "-"]],  # stopped in the absorber, electron up
    [["+", "+", "-", "-"], ["-", "-", "+", "0"]],  # stopped in the absorber, electron down
    [["+", "+", "+", "+"], ["0", "0", "0", "+"]],  # stopped below the stack, electron up
]
_DEFAULT_DIRECTIONS = ["up", "down", "up"]

#: 1.x defaults of the ``calculate_decay_time`` block (the first three have no default).
DEFAULTS: Dict[str, Any] = {
    "peak_minimal_prominence_initial": 90.0,
    "peak_minimal_prominence_secondary": 35.0,
    "peak_minimal_distance": 10,
    "peak_minimal_width": 10,
    "trigger_position_tolerance": 20,
}


def output_dtype(channel_names: Sequence[str] = DEFAULT_CHANNELS) -> List[Tuple[str, str]]:
    """Record layout of an accepted event.

    Parameters
    ----------
    channel_names : sequence of str
        The channels, in buffer order.

    Returns
    -------
    list of (str, str)
        ``decay_time`` (int32, ns) then, for ``1st`` and ``2nd`` pulse and each channel
        X: ``<k>_X_h`` (float32, mV above baseline), ``<k>_X_p`` (int32, samples; -1
        when the channel has no pulse) and ``<k>_X_int`` (float32, mV ns: the sum of the
        baseline-subtracted samples over the pulse's full width at 10 % of its
        prominence, times the sample time). ``decay_time`` is the mean position of the
        second pulses minus that of the first, times the sample time.
    """
    dtype: List[Tuple[str, str]] = [("decay_time", "int32")]
    for k in ("1st", "2nd"):
        for ch in channel_names:
            dtype += [(f"{k}_{ch}_h", "float32"), (f"{k}_{ch}_p", "int32"), (f"{k}_{ch}_int", "float32")]
    return dtype


def _direction_of(signature: Sequence[Sequence[str]], nch: int) -> str:
    """Best guess of the electron direction from a stop pattern (for custom signatures)."""
    stop = list(signature[1]) if len(signature) > 1 else []
    upper = any(s == "+" for s in stop[: min(2, nch)])
    lower = any(s == "+" for s in stop[min(2, nch) :])
    if upper and not lower:
        return "up"
    if lower and not upper:
        return "down"
    return "unknown"


@dataclass
class Match:
    """Outcome of :meth:`PulseFinder.find` for an accepted event.

    Attributes
    ----------
    record : ndarray
        One record of :func:`output_dtype` (shape ``(1,)``).
    signature_index : int
        Index of the first matching signature in the configuration.
    direction : str
        "up", "down" (decay electron direction) or "unknown".
    decay_time_ns : int
        Same as ``record["decay_time"][0]``.
    """

    record: np.ndarray
    signature_index: int
    direction: str
    decay_time_ns: int


class PulseFinder:
    """Double-pulse finder of the 1.x ``calculate_decay_time`` filter.

    Parameters
    ----------
    config : dict
        The ``calculate_decay_time`` block: ``sample_time_ns``, ``analogue_offset`` (V),
        ``pre_trigger_samples``, and optionally ``chA_scaling`` .. ``chD_scaling`` (1.0),
        ``peak_minimal_prominence_initial`` (90 mV),
        ``peak_minimal_prominence_secondary`` (35 mV), ``peak_minimal_distance`` (10),
        ``peak_minimal_width`` (10), ``trigger_position_tolerance`` (20),
        ``signatures`` (the three 1.x ones), ``signature_directions`` (list of
        "up"/"down" per signature; default: the 1.x labels, or guessed from the stop
        pattern).
    channel_names : sequence of str, optional
        Channel order of 2-D input and of the output record (default chA..chD; for
        structured input the field names are used when this is not given).
    fast : bool
        Use the candidate pre-selection (default) instead of ``find_peaks`` on every
        whole trace; both give the same peaks.

    Attributes
    ----------
    use_compiled : bool
        Whether single float32 events are loaded and scanned by the compiled kernel
        (True when ``mimocorb.muon._peaks`` is built); set it to False for the pure
        NumPy fast path (same results).
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        channel_names: Optional[Sequence[str]] = None,
        fast: bool = True,
    ) -> None:
        cfg = dict(DEFAULTS)
        cfg.update({k: v for k, v in dict(config).items() if v is not None})
        for key in ("sample_time_ns", "analogue_offset", "pre_trigger_samples"):
            if key not in cfg:
                raise KeyError(f"PulseFinder: config key '{key}' is required, got keys {sorted(config)}")
        self.config = cfg
        self.sample_time_ns = float(cfg["sample_time_ns"])
        self.baseline_mv = float(cfg["analogue_offset"]) * 1000.0
        self.pre_trigger_samples = int(cfg["pre_trigger_samples"])
        self.prominence_initial = float(cfg["peak_minimal_prominence_initial"])
        self.prominence_secondary = float(cfg["peak_minimal_prominence_secondary"])
        self.distance = float(cfg["peak_minimal_distance"])
        self.width = float(cfg["peak_minimal_width"])
        self.tolerance = int(cfg["trigger_position_tolerance"])
        if self.distance < 1:
            raise ValueError(f"PulseFinder: peak_minimal_distance must be >= 1, got {self.distance}")
        if self.prominence_secondary <= 0 or self.prominence_initial <= 0:
            raise ValueError(
                "PulseFinder: peak_minimal_prominence_initial/secondary must be > 0, got "
                f"{self.prominence_initial}/{self.prominence_secondary}"
            )
        self.fast = bool(fast) and _select_by_peak_distance is not None
        self.use_compiled = _peaks is not None
        self._scanned: Optional[tuple] = None  # kernel result for the loaded event (see _scan)
        self._explicit_channels = channel_names is not None
        self._set_channels(list(channel_names) if channel_names is not None else list(DEFAULT_CHANNELS))
        signatures = cfg.get("signatures", DEFAULT_SIGNATURES)
        self.signatures = self._check_signatures(signatures)
        directions = cfg.get("signature_directions")
        if directions is None:
            directions = [
                _DEFAULT_DIRECTIONS[DEFAULT_SIGNATURES.index(s)]
                if s in DEFAULT_SIGNATURES
                else _direction_of(s, self.nch)
                for s in self.signatures
            ]
        if len(directions) != len(self.signatures):
            raise ValueError(
                f"PulseFinder: signature_directions needs one entry per signature ({len(self.signatures)}), "
                f"got {len(directions)}"
            )
        self.signature_directions = [str(d) for d in directions]
        self._n = -1
        self.n_events = 0
        self.n_accepted = 0

    # ------------------------------------------------------------------ config
    def _set_channels(self, names: List[str]) -> None:
        self.channel_names = names
        self.nch = len(names)
        self.scaling = np.array([float(self.config.get(f"{ch}_scaling", 1.0)) for ch in names])
        self._scaled = bool(np.any(self.scaling != 1.0))
        self._packed_dtype = None  # structured dtype last checked by _check_structured
        self._packed = False
        self.dtype = np.dtype(output_dtype(names))
        self._n = -1  # work arrays are rebuilt for the new layout
        self._cap = 0

    def _check_signatures(self, signatures: Any) -> List[List[List[str]]]:
        out = []
        for i, sig in enumerate(signatures):
            sig = [list(row) for row in sig]
            if len(sig) != 2 or any(len(row) != self.nch for row in sig):
                raise ValueError(
                    f"PulseFinder: signature {i} must be a [start, stop] pair of {self.nch} entries each "
                    f"(one per channel), got {sig}"
                )
            for row in sig:
                for s in row:
                    if s not in ("+", "-", "0"):
                        raise ValueError(f"PulseFinder: signature {i} entries must be '+', '-' or '0', got {s!r}")
            out.append(sig)
        if not out:
            raise ValueError("PulseFinder: signatures must hold at least one [start, stop] pair, got []")
        return out

    def _prepare(self, n: int, k: int = 1) -> None:
        """Set up the inf-separated work array for ``k`` events of ``n`` samples.

        The arrays are allocated for the largest ``k`` seen so far; a smaller batch
        uses their beginning, which has exactly the layout of its own size (the
        separators are never overwritten). So batches of changing size, as a ring
        buffer hands them out, cost no new allocation.
        """
        if n != self._n or k > self._cap:
            cap = max(k, self._cap if n == self._n else 1)
            rows = cap * self.nch
            size = 1 + rows * (n + 1)
            self._full = np.full(size, np.inf)
            self._full_view = self._full[1:].reshape(rows, n + 1)[:, :n]
            self._full_offsets = 1 + np.arange(rows) * (n + 1)
            self._full_shift = np.zeros(rows)
            # loose lower search bound for peak widths: the start of the work array
            self._lo = np.zeros(rows * n, dtype=np.intp)
            self._n = n
            self._cap = cap
        rows = k * self.nch
        size = 1 + rows * (n + 1)
        self._k = k
        self._work = self._full[:size]
        # view (rows, n) of the channel samples; column n of the reshape is the separator
        self._view = self._full_view[:rows]
        self._offsets = self._full_offsets[:rows]
        self._shift = self._full_shift[:rows]  # work value + shift = height above baseline
        self._hi_bound = size - 1  # loose upper search bound for peak widths: the end of the work array
        self._hi_cache = np.empty(0, np.intp)
        self._no_peaks = (np.empty(0, np.intp), np.empty(0))
        self._scanned = None
        if k == 1 and getattr(self, "_kbuf_size", -1) != size:
            # outputs of the compiled kernel (candidates, compressed trace, local maxima)
            self._kcand = np.empty(size, np.intp)
            self._kz = np.empty(2 * size)
            self._kpeaks = np.empty(size, np.intp)
            self._kzpeaks = np.empty(size, np.intp)
            self._kheights = np.empty(size)
            self._kbuf_size = size

    def _hi(self, k: int) -> np.ndarray:
        if self._hi_cache.size < k:  # reset by _prepare, which sets _hi_bound
            self._hi_cache = np.full(max(k, 16), self._hi_bound, dtype=np.intp)
        return self._hi_cache[:k]

    # ------------------------------------------------------------------- input
    def _check_structured(self, event: np.ndarray) -> None:
        """Validate a structured event's layout; remember whether it is packed float32."""
        names = event.dtype.names
        if not self._explicit_channels and tuple(self.channel_names) != tuple(names):
            self._set_channels(list(names))
        missing = [ch for ch in self.channel_names if ch not in names]
        if missing:
            raise ValueError(f"PulseFinder: event lacks channel fields {missing}, has {list(names)}")
        if event.ndim != 1:
            raise ValueError(f"PulseFinder: a structured event must be 1-D, got shape {event.shape}")
        fields = event.dtype.fields
        self._packed = (
            event.dtype.itemsize == 4 * self.nch
            and all(fields[ch][0] == np.dtype(np.float32) for ch in self.channel_names)
            and [fields[ch][1] for ch in self.channel_names] == [4 * i for i in range(self.nch)]
        )
        self._packed_dtype = event.dtype

    def load(self, event: np.ndarray) -> np.ndarray:
        """Copy one event into the work array, shifted so each channel's minimum is 0.

        The work array holds ``(x - baseline) * scaling - min`` per channel: peak
        positions, prominences and widths do not depend on a constant shift, and the
        minimum at 0 makes the candidate cut one comparison with a scalar. Heights
        above the baseline are ``work + shift`` (see :attr:`shift`).

        Parameters
        ----------
        event : ndarray
            Structured 1-D array with one field per channel, or 2-D float array
            ``(channels, samples)``, in mV including the analogue offset.

        Returns
        -------
        ndarray
            View ``(channels, samples)`` of the loaded traces.
        """
        scaled = self._scaled
        self._scanned = None
        if event.dtype.names is not None:
            if event.dtype is not self._packed_dtype:
                self._check_structured(event)
            n = event.shape[0]
            if n != self._n or self._k != 1:
                self._prepare(n)
            if self._packed and event.flags.c_contiguous and not scaled:
                if self.use_compiled and self._scan(event.view(np.float32).reshape(n, self.nch)):
                    return self._view
                # all channels float32, packed in channel order: copy through one 2-D
                # view (a reduction over the interleaved layout would be slow)
                v = self._view
                np.copyto(v, event.view(np.float32).reshape(n, self.nch).T)
                mn = np.minimum.reduce(v, axis=1)
                v -= mn[:, None]
                self._shift[:] = mn - self.baseline_mv
                return v
            traces = [event[ch] for ch in self.channel_names]
        else:
            if event.ndim != 2 or event.shape[0] != self.nch:
                raise ValueError(
                    f"PulseFinder: a plain event must be 2-D ({self.nch} channels, samples), got shape {event.shape}"
                )
            n = event.shape[1]
            if n != self._n or self._k != 1:
                self._prepare(n)
            if self.use_compiled and not scaled and event.dtype == np.float32 and self._scan(event.T):
                return self._view
            traces = event
        v = self._view
        shift = self._shift
        if scaled:
            for i in range(self.nch):
                np.subtract(traces[i], self.baseline_mv, out=v[i])
            v *= self.scaling[:, None]
            mn = v.min(axis=1)
            v -= mn[:, None]
            shift[:] = mn
        elif event.dtype.names is None:
            # float64 minimum: the subtraction is then done (exactly) in float64
            mn = np.minimum.reduce(event, axis=1).astype(np.float64)
            np.subtract(event, mn[:, None], out=v)
            shift[:] = mn - self.baseline_mv
        else:
            for i in range(self.nch):
                mn = float(traces[i].min())
                np.subtract(traces[i], mn, out=v[i])
                shift[i] = mn - self.baseline_mv
        return v

    def _scan(self, samples: np.ndarray) -> bool:
        """Load one float32 event ``(samples, channels)`` with the compiled kernel.

        Returns False (nothing usable done) when the kernel declines the event (NaN
        or non-finite channel minimum); :meth:`load` then takes the NumPy path.
        """
        thr = self.prominence_secondary * (1.0 - 1e-12)
        nc, npk, selected = _peaks.scan(
            samples,
            self.baseline_mv,
            thr,
            self._work,
            self._shift,
            self._kcand,
            self._kz,
            self._kpeaks,
            self._kzpeaks,
            self._kheights,
            math.ceil(self.distance),
        )
        if nc < 0:
            return False
        self._scanned = (nc, npk, selected, self.prominence_secondary, self.distance)
        return True

    # ------------------------------------------------------------------- peaks
    def _peaks_fast(self) -> Tuple[np.ndarray, np.ndarray]:
        """Peaks and prominences of all channels, in work-array coordinates.

        See the module notes; :meth:`_fast_details` gives the other properties.
        """
        x = self._work
        p_min = self.prominence_secondary
        scanned = self._scanned
        if scanned is not None and scanned[3:] == (p_min, self.distance):
            # candidates, compressed trace and local maxima from the compiled kernel
            nc, npk, selected = scanned[:3]
            if npk == 0:
                return self._no_peaks
            c = self._kcand[:nc]
            peaks = self._kpeaks[:npk]
            zpeaks = self._kzpeaks[:npk]
            if not selected:  # the kernel left the distance selection to SciPy
                keep = _select_by_peak_distance(peaks, self._kheights[:npk], self.distance)
                peaks, zpeaks = peaks[keep], zpeaks[keep]
            z = self._kz[: 2 * nc - 1]
            return self._prominences_widths(x, c, z, peaks, zpeaks, p_min)
        # candidates, with the +inf separators (they bound every search)
        c = np.flatnonzero(x >= p_min * (1.0 - 1e-12))
        xc = x[c]
        finite = xc != np.inf
        cf, xcf = c[finite], xc[finite]
        if cf.size == 0:
            return self._no_peaks
        rising = x[cf - 1] < xcf
        right = x[cf + 1]
        peaks = cf[rising & (right < xcf)]
        flat = cf[rising & (right == xcf)]
        if flat.size:  # plateaus: the peak is the middle of the flat top, as in SciPy
            extra = []
            for i in flat:
                j = i + 1
                while x[j] == x[i]:
                    j += 1
                if x[j] < x[i]:
                    extra.append((i + j - 1) // 2)
            if extra:
                peaks = np.sort(np.concatenate([peaks, np.array(extra, dtype=np.intp)]))
        if peaks.size == 0:
            return self._no_peaks
        peaks = peaks[_select_by_peak_distance(peaks, x[peaks], self.distance)]
        # Compressed trace: every candidate as is, every gap of non-candidates (all
        # below any candidate peak) replaced by its minimum. The prominence scans stop
        # at the same samples and see the same minima, so the prominences are exact.
        idx = np.empty(2 * c.size - 1, dtype=np.intp)
        idx[0::2] = c
        idx[1::2] = c[:-1] + 1
        z = np.minimum.reduceat(x, idx)
        zpeaks = 2 * np.searchsorted(c, peaks)
        return self._prominences_widths(x, c, z, peaks, zpeaks, p_min)

    def _prominences_widths(
        self, x: np.ndarray, c: np.ndarray, z: np.ndarray, peaks: np.ndarray, zpeaks: np.ndarray, p_min: float
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Prominence and width cuts of the distance-selected local maxima ``peaks``
        (``zpeaks``: their indices in the compressed trace ``z`` of candidates ``c``)."""
        prom, zlb, zrb = _peak_prominences(z, zpeaks, -1)
        keep = prom >= p_min
        peaks, prom = peaks[keep], prom[keep]
        # The width search stops at the first sample at or below its height, which is
        # never beyond the base (the base is lower still), so the ends of the work array
        # bound it as well as the exact bases do.
        k = peaks.size
        widths, _, lips, rips = _peak_widths(x, peaks, 0.5, prom, self._lo[:k], self._hi(k))
        keep2 = widths >= self.width
        self._fast_state = (c, zlb, zrb, keep, keep2, widths, lips, rips)
        return peaks[keep2], prom[keep2]

    def _fast_details(self) -> Tuple[np.ndarray, ...]:
        """Bases (as SciPy reports them), widths and interpolated positions of the
        peaks of the last :meth:`_peaks_fast` call."""
        x = self._work
        c, zlb, zrb, keep, keep2, widths, lips, rips = self._fast_state
        zlb, zrb = zlb[keep][keep2], zrb[keep][keep2]
        widths, lips, rips = widths[keep2], lips[keep2], rips[keep2]
        lb = np.empty(zlb.size, dtype=np.intp)
        rb = np.empty(zrb.size, dtype=np.intp)
        for k, (zl, zr) in enumerate(zip(zlb.tolist(), zrb.tolist())):
            j = zl >> 1
            if zl & 1:  # in the gap after candidate j: the minimum nearest the peak
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
        return lb, rb, widths, lips, rips

    def _peaks_naive(self) -> Tuple[np.ndarray, np.ndarray]:
        """``find_peaks`` on each whole trace (the reference), in work-array coordinates."""
        keys = ("left_bases", "right_bases", "widths", "left_ips", "right_ips")
        parts: List[List[np.ndarray]] = [[] for _ in range(7)]
        for i in range(self._view.shape[0]):
            p, props = find_peaks(
                self._view[i], prominence=self.prominence_secondary, distance=self.distance, width=self.width
            )
            off = self._offsets[i]
            parts[0].append(p + off)
            parts[1].append(props["prominences"])
            for j, key in enumerate(keys, start=2):
                parts[j].append(props[key] if key == "widths" else props[key] + off)
        full = tuple(np.concatenate(part) for part in parts)
        self._naive_details = full[2:]
        return full[0], full[1]

    def _use_fast(self, fast: Optional[bool]) -> bool:
        return self.fast if fast is None else (bool(fast) and _select_by_peak_distance is not None)

    def _positions(self, peaks: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        ch = (peaks - 1) // (self._n + 1)
        return ch, peaks - self._offsets[ch]

    def channel_peaks(self, event: np.ndarray, fast: Optional[bool] = None) -> List[Dict[str, np.ndarray]]:
        """Peaks of each channel of one event.

        Parameters
        ----------
        event : ndarray
            Structured or 2-D event (see :meth:`load`).
        fast : bool, optional
            Override the finder's ``fast`` setting.

        Returns
        -------
        list of dict
            Per channel: ``positions`` (samples), ``heights`` (mV above baseline,
            scaled), ``prominences``, ``widths``, ``left_ips``, ``right_ips``,
            ``left_bases``, ``right_bases`` (positions in samples of the channel), as
            :func:`scipy.signal.find_peaks` gives them for the whole trace.
        """
        self.load(event)
        if self._use_fast(fast):
            peaks, prom = self._peaks_fast()
            details = self._fast_details() if peaks.size else (np.empty(0, np.intp),) * 2 + (np.empty(0),) * 3
        else:
            peaks, prom = self._peaks_naive()
            details = self._naive_details
        lb, rb, widths, lips, rips = details
        ch, pos = self._positions(peaks)
        out = []
        for i in range(self.nch):
            sel = ch == i
            off = self._offsets[i]
            out.append(
                {
                    "positions": pos[sel],
                    "heights": self._work[peaks[sel]] + self._shift[i],
                    "prominences": prom[sel],
                    "widths": widths[sel],
                    "left_ips": lips[sel] - off,
                    "right_ips": rips[sel] - off,
                    "left_bases": lb[sel] - off,
                    "right_bases": rb[sel] - off,
                }
            )
        return out

    # -------------------------------------------------------------- coincidence
    def _rows(self, ch: List[int], pos: List[int]) -> List[List[int]]:
        """Coincidence rows of peak indices (-1: no peak in that channel)."""
        per: List[List[int]] = [[] for _ in range(self.nch)]
        for k, c in enumerate(ch):
            per[c].append(k)
        nxt = [0] * self.nch
        rows = []
        tol = self.tolerance
        while True:
            heads = [(per[i][nxt[i]] if nxt[i] < len(per[i]) else -1) for i in range(self.nch)]
            present = [pos[k] for k in heads if k >= 0]
            if not present:
                return rows
            m = min(present)
            row = [-1] * self.nch
            for i, k in enumerate(heads):
                if k >= 0 and pos[k] - m < tol:
                    row[i] = k
                    nxt[i] += 1
            rows.append(row)

    def coincidences(self, event: np.ndarray, fast: Optional[bool] = None) -> List[List[Tuple[int, int]]]:
        """Coincidences of one event: rows in time order of ``(channel, position)``.

        Peaks of different channels form one row when they are less than
        ``trigger_position_tolerance`` samples after the row's earliest peak; each
        channel contributes at most one peak per row.
        """
        self.load(event)
        peaks = (self._peaks_fast() if self._use_fast(fast) else self._peaks_naive())[0]
        ch, pos = self._positions(peaks)
        chl, posl = ch.tolist(), pos.tolist()
        return [[(i, posl[k]) for i, k in enumerate(row) if k >= 0] for row in self._rows(chl, posl)]

    @staticmethod
    def _matches(rows: List[List[int]], signature: Sequence[Sequence[str]]) -> bool:
        if len(signature) > len(rows):
            return False
        for row, pattern in zip(rows, signature):
            for k, s in zip(row, pattern):
                if (s == "+" and k < 0) or (s == "-" and k >= 0):
                    return False
        return True

    # ---------------------------------------------------------------- the work
    def analyse(self, event: np.ndarray, fast: Optional[bool] = None) -> Optional[Match]:
        """Look for an accepted double pulse in one event.

        Parameters
        ----------
        event : ndarray
            Structured 1-D array with fields per channel (a ring-buffer slot), or a
            2-D float array ``(channels, samples)``, in mV with the analogue offset.
        fast : bool, optional
            Override the finder's ``fast`` setting.

        Returns
        -------
        Match or None
            The record, matched signature and electron direction, or None when the
            event is rejected.
        """
        self.n_events += 1
        self.load(event)
        peaks, prom = self._peaks_fast() if self._use_fast(fast) else self._peaks_naive()
        if peaks.size < 2:
            return None
        ch, pos = self._positions(peaks)
        return self._decide(ch.tolist(), pos.tolist(), peaks, prom, 0)

    def analyse_batch(self, events: np.ndarray) -> List[Optional[Match]]:
        """:meth:`analyse` for many events at once (same results, less overhead).

        Parameters
        ----------
        events : ndarray
            3-D float array ``(events, channels, samples)`` or 2-D structured array
            ``(events, samples)`` with one field per channel.

        Returns
        -------
        list
            One :class:`Match` or None per event.
        """
        k = events.shape[0]
        if events.dtype.names is not None:
            if events.ndim != 2:
                raise ValueError(f"PulseFinder: structured events must be 2-D (events, samples), got {events.shape}")
            n = events.shape[1]
        else:
            if events.ndim != 3 or events.shape[1] != self.nch:
                raise ValueError(
                    f"PulseFinder: events must be 3-D (events, {self.nch} channels, samples), got {events.shape}"
                )
            n = events.shape[2]
        if k == 0:
            return []
        if n != self._n or self._k != k:
            self._prepare(n, k)
        self._scanned = None
        v3 = self._view.reshape(k, self.nch, n)
        shift = self._shift.reshape(k, self.nch)
        for i, name in enumerate(self.channel_names):
            tr = events[name] if events.dtype.names is not None else events[:, i, :]
            if self._scaled:
                np.subtract(tr, self.baseline_mv, out=v3[:, i, :])
                v3[:, i, :] *= self.scaling[i]
                mn = np.minimum.reduce(v3[:, i, :], axis=1)
                v3[:, i, :] -= mn[:, None]
                shift[:, i] = mn
            else:
                mn = np.minimum.reduce(tr, axis=1).astype(np.float64)
                np.subtract(tr, mn[:, None], out=v3[:, i, :])
                shift[:, i] = mn - self.baseline_mv
        self.n_events += k
        peaks, prom = self._peaks_fast() if self.fast else self._peaks_naive()
        results: List[Optional[Match]] = [None] * k
        if peaks.size == 0:
            return results
        row = (peaks - 1) // (n + 1)
        pos = (peaks - self._offsets[row]).tolist()
        evl = (row // self.nch).tolist()
        chl = (row % self.nch).tolist()
        start = 0
        total = len(evl)
        while start < total:  # peaks are sorted by event, then channel, then position
            e = evl[start]
            stop = start + 1
            while stop < total and evl[stop] == e:
                stop += 1
            if stop - start >= 2:
                sl = slice(start, stop)
                results[e] = self._decide(chl[sl], pos[sl], peaks[sl], prom[sl], e * self.nch)
            start = stop
        return results

    def _decide(
        self, chl: List[int], posl: List[int], peaks: np.ndarray, prom: np.ndarray, rowbase: int
    ) -> Optional[Match]:
        """Coincidences, trigger and signature checks of one event's peaks."""
        if max(posl) - min(posl) < self.tolerance and len(set(chl)) == len(chl):
            return None  # a single coincidence (the common crossing muon)
        rows = self._rows(chl, posl)
        if len(rows) < 2:
            return None
        # the first coincidence needs the initial prominence and must be at the trigger
        first = rows[0]
        for i, k in enumerate(first):
            if k >= 0 and prom[k] < self.prominence_initial:
                first[i] = -1
        if max(first) < 0:
            return None
        for k in first:
            if k >= 0 and abs(posl[k] - self.pre_trigger_samples) > self.tolerance:
                return None
        isig = next((i for i, sig in enumerate(self.signatures) if self._matches(rows, sig)), None)
        if isig is None:
            return None
        self.n_accepted += 1
        record = self._record(peaks, prom, rows, posl, rowbase)
        return Match(
            record=record,
            signature_index=isig,
            direction=self.signature_directions[isig],
            decay_time_ns=int(record["decay_time"][0]),
        )

    def find(self, event: np.ndarray) -> Optional[np.ndarray]:
        """Output record of an accepted event, or None (1.x filter behaviour).

        See :meth:`analyse` for the input; use it to also learn the signature and
        electron direction.
        """
        m = self.analyse(event)
        return None if m is None else m.record

    def _record(
        self, peaks: np.ndarray, prom: np.ndarray, rows: List[List[int]], posl: List[int], rowbase: int = 0
    ) -> np.ndarray:
        x = self._work
        values: List[Any] = [0]
        mean_pos = []
        for r in (0, 1):
            sel = [k for k in rows[r] if k >= 0]
            ks = np.array(sel, dtype=np.intp)
            # integral over the full width at 10 % of the prominence (the ends of the
            # work array bound the search as well as the bases, see _peaks_fast)
            n = ks.size
            _, _, lips, rips = _peak_widths(x, peaks[ks], 0.9, prom[ks], self._lo[:n], self._hi(n))
            j = 0
            for i, k in enumerate(rows[r]):
                if k < 0:
                    values += [0.0, -1, 0.0]
                    continue
                shift = float(self._shift[rowbase + i])
                lo = int(np.floor(lips[j]))
                hi = int(np.ceil(rips[j])) + 1
                j += 1
                integral = (float(x[lo:hi].sum()) + shift * (hi - lo)) * self.sample_time_ns
                values += [float(x[peaks[k]]) + shift, posl[k], integral]
            mean_pos.append(sum(posl[k] for k in sel) / len(sel) if sel else float("nan"))
        if np.isfinite(mean_pos[0]) and np.isfinite(mean_pos[1]):
            values[0] = int(round((mean_pos[1] - mean_pos[0]) * self.sample_time_ns))
        rec = np.empty(1, dtype=self.dtype)
        rec[0] = tuple(values)
        return rec


def calculate_decay_time(
    source_list: Optional[list] = None,
    sink_list: Optional[list] = None,
    observe_list: Optional[list] = None,
    config_dict: Optional[dict] = None,
    **rb_info: Any,
) -> None:
    """1.x user function: read events, write the record of every accepted double pulse.

    Sinks: the first gets the record (:func:`output_dtype`); with three sinks, the
    second and third get a copy of the raw event for electrons going up and down
    (e.g. for separate oscilloscope views or exports).
    """
    from mimocorb.buffer_control import rbTransfer  # needs the ring buffer: import late

    if config_dict is None:
        raise ValueError("calculate_decay_time: config_dict with the calculate_decay_time block is required, got None")
    finder = PulseFinder(config_dict)
    n_sinks = len(sink_list) if sink_list else 0

    def ufunc(data: np.ndarray) -> Optional[list]:
        m = finder.analyse(data)
        if m is None:
            return None
        out: List[Any] = [m.record]
        if n_sinks >= 3:
            out += [True, None] if m.direction == "up" else [None, True]
        elif n_sinks == 2:
            out.append(True)
        return out

    process = rbTransfer(source_list=source_list, sink_list=sink_list, config_dict=config_dict, ufunc=ufunc, **rb_info)
    process()
    logger.info(
        "calculate_decay_time: %d events, %d accepted (%.1f %%)",
        finder.n_events,
        finder.n_accepted,
        100.0 * finder.n_accepted / max(finder.n_events, 1),
    )
