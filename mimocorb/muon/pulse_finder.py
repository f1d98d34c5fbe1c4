"""Find the muon-decay double pulses in digitiser events (1.x ``calculate_decay_time``).

Peaks: the guarantee
--------------------
The peaks of channel X of an event are exactly those of::

    t = (np.asarray(x, np.float64) - analogue_offset_mV) * chX_scaling
    scipy.signal.find_peaks(t, prominence=peak_minimal_prominence_secondary,
                            distance=peak_minimal_distance, width=peak_minimal_width)

the same positions and bitwise the same heights ``t[peak]``, prominences, widths,
``left_ips``/``right_ips`` and bases (:meth:`PulseFinder.channel_peaks`), including
plateaus, peaks next to the trace ends, thresholds met exactly, NaN, infinite and
float64-extreme samples, and equal heights within the distance (decided by the
installed SciPy's own call: its order comes from NumPy's unstable argsort). It holds
one event at a time and in batches (:meth:`PulseFinder.analyse_batch`,
:meth:`PulseFinder.batch_peaks`), for 2-D ``(channels, samples)``, 3-D ``(events,
channels, samples)`` and structured input (a field per channel, packed or not), any
strides or memory order, float32, float64 or integer samples. The offset in mV is
``analogue_offset`` (V) times 1000. ``t`` is float64 as ``find_peaks`` works in float64
(``np.asarray(x, dtype=np.float64)``, exact for float32 and integer samples); note that
NumPy computes ``x - offset`` of a float32 ``x`` in float32, a trace that can differ
in the last bit (and so at a threshold). Why the fast search gives exactly these
results: :mod:`mimocorb.muon.peak_search`; ``tests/test_pulse_finder_scipy.py`` checks
it against SciPy. The record's integrals use ``peak_widths(t, ..., rel_height=0.9)``,
computed the same way.

Double pulses
-------------
Peaks of different channels closer than ``trigger_position_tolerance`` samples form
one coincidence (a row). The first row must sit at the trigger (``pre_trigger_samples``
+- tolerance) and its peaks need a prominence of at least
``peak_minimal_prominence_initial``. The first two rows are then matched against the
``signatures`` ([start, stop], one of "+", "-", "0" per channel). Speed
(``benchmarks/bench_muon.py``, 4 x 4250 float32 samples): 20,000-24,000 events/s per
core one at a time, 29,000-36,000 in batches of 32; ``find_peaks`` on every trace
(``fast=False``) 1,400. Traces in 4 mV steps (equal maxima that SciPy's own call
orders) give about 14,000 and 19,000.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from mimocorb.muon.peak_search import ChannelFields, Peaks, PeakSearch

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
        Use the compiled peak search (default) instead of ``find_peaks`` on every
        whole trace; both give the same peaks (see the module notes).

    Attributes
    ----------
    use_compiled : bool
        Whether the compiled kernel ``mimocorb.muon._peaks`` does the work (True when
        it is built); False gives every trace to ``find_peaks`` (same results).
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
        if not self.distance >= 1:
            raise ValueError(f"PulseFinder: peak_minimal_distance must be >= 1, got {self.distance}")
        if not (self.prominence_secondary > 0 and self.prominence_initial > 0):
            raise ValueError(
                "PulseFinder: peak_minimal_prominence_initial/secondary must be > 0, got "
                f"{self.prominence_initial}/{self.prominence_secondary}"
            )
        self.fast = bool(fast)
        self._search = PeakSearch(self.prominence_secondary, self.distance, self.width)
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
        self.n_events = 0
        self.n_accepted = 0

    @property
    def use_compiled(self) -> bool:
        """Whether the compiled kernel does the work (see the class notes)."""
        return self._search.compiled

    @use_compiled.setter
    def use_compiled(self, value: bool) -> None:
        self._search = PeakSearch(self.prominence_secondary, self.distance, self.width, compiled=bool(value))

    # ------------------------------------------------------------------ config
    def _set_channels(self, names: List[str]) -> None:
        self.channel_names = names
        self.nch = len(names)
        self.scaling = np.array([float(self.config.get(f"{ch}_scaling", 1.0)) for ch in names])
        # multiplying by 1.0 changes nothing: only scaled channels need the product
        self._scaling = self.scaling if bool(np.any(self.scaling != 1.0)) else None
        self._fields: Optional[ChannelFields] = None  # layout of the structured dtype last seen
        self.dtype = np.dtype(output_dtype(names))

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

    # ------------------------------------------------------------------- input
    def _check_structured(self, data: np.ndarray, ndim: int) -> ChannelFields:
        """Validate a structured event's (ndim 1) or batch's (ndim 2) channel fields."""
        if data.ndim != ndim:
            what = "event must be 1-D (samples)" if ndim == 1 else "events must be 2-D (events, samples)"
            raise ValueError(f"PulseFinder: a structured {what}, got shape {data.shape}")
        known = self._fields is not None and (data.dtype is self._fields.dtype or data.dtype == self._fields.dtype)
        if not known:
            names = data.dtype.names
            if not self._explicit_channels and tuple(self.channel_names) != tuple(names):
                self._set_channels(list(names))
            missing = [ch for ch in self.channel_names if ch not in names]
            if missing:
                raise ValueError(f"PulseFinder: event lacks channel fields {missing}, has {list(names)}")
            self._fields = ChannelFields(data.dtype, self.channel_names)
        return self._fields

    def _samples(self, data: np.ndarray, batch: bool) -> np.ndarray:
        """``(events, samples, channels)`` view of one event or a batch."""
        if data.dtype.names is not None:
            return self._check_structured(data, 2 if batch else 1).samples(data, batch)
        if batch:
            if data.ndim != 3 or data.shape[1] != self.nch:
                raise ValueError(
                    f"PulseFinder: events must be 3-D (events, {self.nch} channels, samples), got {data.shape}"
                )
            return data.transpose(0, 2, 1)
        if data.ndim != 2 or data.shape[0] != self.nch:
            raise ValueError(
                f"PulseFinder: a plain event must be 2-D ({self.nch} channels, samples), got shape {data.shape}"
            )
        return data.T[None]

    def _load(self, data: np.ndarray, batch: bool = False) -> int:
        samples = self._samples(data, batch)
        k, n = samples.shape[:2]
        if k * self.nch != self._search.rows or n != self._search.n:
            self._search.layout(k * self.nch, n)
        self._search.load(samples, self.baseline_mv, self._scaling)
        return k

    def load(self, event: np.ndarray) -> np.ndarray:
        """Load one event: its channel traces ``(x - baseline) * scaling`` in float64.

        Parameters
        ----------
        event : ndarray
            Structured 1-D array with one field per channel, or 2-D array
            ``(channels, samples)``, in mV including the analogue offset.

        Returns
        -------
        ndarray
            View ``(channels, samples)`` of the traces the peaks are searched in
            (valid until the next call).
        """
        self._load(event)
        return self._search.traces

    def _peaks(self, fast: Optional[bool]) -> Peaks:
        return self._search.search(self.fast if fast is None else bool(fast))

    # ------------------------------------------------------------------- peaks
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
            ``left_bases``, ``right_bases``: those of :func:`scipy.signal.find_peaks`
            on the channel's trace (see the module notes).
        """
        self._load(event)
        return self._channel_dicts(self._peaks(fast), 0)

    def batch_peaks(self, events: np.ndarray, fast: Optional[bool] = None) -> List[List[Dict[str, np.ndarray]]]:
        """:meth:`channel_peaks` of each event of a batch (as :meth:`analyse_batch` finds them).

        Parameters
        ----------
        events : ndarray
            3-D array ``(events, channels, samples)`` or 2-D structured array
            ``(events, samples)`` with one field per channel.
        fast : bool, optional
            Override the finder's ``fast`` setting.
        """
        if events.shape[0] == 0:
            self._samples(events, batch=True)
            return []
        k = self._load(events, batch=True)
        pk = self._peaks(fast)
        return [self._channel_dicts(pk, e) for e in range(k)]

    def _channel_dicts(self, pk: Peaks, event: int) -> List[Dict[str, np.ndarray]]:
        lb, rb = self._search.bases(pk)
        heights = self._search.work[pk.index]
        out = []
        for i in range(self.nch):
            sel = pk.row == event * self.nch + i
            out.append(
                {
                    "positions": pk.position[sel],
                    "heights": heights[sel],
                    "prominences": pk.prominences[sel],
                    "widths": pk.widths[sel],
                    "left_ips": pk.left_ips[sel],
                    "right_ips": pk.right_ips[sel],
                    "left_bases": lb[sel],
                    "right_bases": rb[sel],
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
        self._load(event)
        pk = self._peaks(fast)
        chl, posl = pk.row.tolist(), pk.position.tolist()
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
            2-D array ``(channels, samples)``, in mV with the analogue offset.
        fast : bool, optional
            Override the finder's ``fast`` setting.

        Returns
        -------
        Match or None
            The record, matched signature and electron direction, or None when the
            event is rejected.
        """
        self.n_events += 1
        self._load(event)
        pk = self._peaks(fast)
        if pk.index.size < 2:
            return None
        return self._decide(pk.row.tolist(), pk.position.tolist(), pk, 0)

    def analyse_batch(self, events: np.ndarray) -> List[Optional[Match]]:
        """:meth:`analyse` for many events at once (same results, less overhead).

        Parameters
        ----------
        events : ndarray
            3-D array ``(events, channels, samples)`` or 2-D structured array
            ``(events, samples)`` with one field per channel.

        Returns
        -------
        list
            One :class:`Match` or None per event.
        """
        if events.shape[0] == 0:
            self._samples(events, batch=True)  # the layout is still checked
            return []
        k = self._load(events, batch=True)
        self.n_events += k
        pk = self._peaks(None)
        results: List[Optional[Match]] = [None] * k
        if pk.index.size == 0:
            return results
        evl = (pk.row // self.nch).tolist()
        chl = (pk.row % self.nch).tolist()
        pos = pk.position.tolist()
        start = 0
        total = len(evl)
        while start < total:  # peaks are sorted by row: event, then channel, then position
            e = evl[start]
            stop = start + 1
            while stop < total and evl[stop] == e:
                stop += 1
            if stop - start >= 2:
                results[e] = self._decide(chl[start:stop], pos[start:stop], pk, start)
            start = stop
        return results

    def _decide(self, chl: List[int], posl: List[int], pk: Peaks, start: int) -> Optional[Match]:
        """Coincidences, trigger and signature checks of one event's peaks
        ``pk[start : start + len(chl)]``."""
        if max(posl) - min(posl) < self.tolerance and len(set(chl)) == len(chl):
            return None  # a single coincidence (the common crossing muon)
        rows = self._rows(chl, posl)
        if len(rows) < 2:
            return None
        # the first coincidence needs the initial prominence and must be at the trigger
        first = rows[0]
        for i, k in enumerate(first):
            if k >= 0 and pk.prominences[start + k] < self.prominence_initial:
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
        record = self._record(pk, start, rows, posl)
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

    def _record(self, pk: Peaks, start: int, rows: List[List[int]], posl: List[int]) -> np.ndarray:
        x = self._search.work
        values: List[Any] = [0]
        mean_pos = []
        for r in (0, 1):
            sel = [k for k in rows[r] if k >= 0]
            ks = start + np.array(sel, dtype=np.intp)
            # integral over the full width at 10 % of the prominence (SciPy's peak_widths
            # at rel_height 0.9, positions in the channel)
            _, lips, rips = self._search.widths(pk.index[ks], pk.prominences[ks], 0.9, pk.lo[ks], pk.hi[ks])
            j = 0
            for k in rows[r]:
                if k < 0:
                    values += [0.0, -1, 0.0]
                    continue
                index = int(pk.index[start + k])
                origin = index - posl[k]
                lo = origin + int(np.floor(lips[j]))
                hi = origin + int(np.ceil(rips[j])) + 1
                j += 1
                values += [float(x[index]), posl[k], float(x[lo:hi].sum()) * self.sample_time_ns]
            mean_pos.append(sum(posl[k] for k in sel) / len(sel) if sel else float("nan"))
        if np.isfinite(mean_pos[0]) and np.isfinite(mean_pos[1]):
            values[0] = int(round((mean_pos[1] - mean_pos[0]) * self.sample_time_ns))
        rec = np.empty(1, dtype=self.dtype)
        rec[0] = tuple(values)
        return rec
