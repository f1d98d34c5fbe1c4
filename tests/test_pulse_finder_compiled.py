"""The compiled kernel of the peak search (mimocorb.muon._peaks), piece by piece
against NumPy and SciPy, and the finder with it against the finder without it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.signal import find_peaks, peak_widths
from scipy.signal._peak_finding_utils import _select_by_peak_distance

from mimocorb.muon.peak_search import PeakSearch
from mimocorb.muon.pulse_finder import PulseFinder
from mimocorb.muon.simulator import pulseSimulator

_peaks = pytest.importorskip("mimocorb.muon._peaks")

CHANNELS = ["chA", "chB", "chC", "chD"]
N = 4250
PRE = 500
CONFIG = {
    "number_of_samples": N,
    "sample_time_ns": 4,
    "pre_trigger_samples": PRE,
    "analogue_offset": -0.48,
    "trigger_level": -440,
    "seed": 91,
    "prb2ndPulse": 0.5,  # many double pulses, also overlapping ones
}
KEYS = ("positions", "heights", "prominences", "widths", "left_ips", "right_ips", "left_bases", "right_bases")


def finders() -> tuple[PulseFinder, PulseFinder]:
    compiled = PulseFinder(CONFIG)
    plain = PulseFinder(CONFIG)
    plain.use_compiled = False
    assert compiled.use_compiled and not plain.use_compiled
    return compiled, plain


def to_structured(ev: np.ndarray) -> np.ndarray:
    st = np.zeros(ev.shape[1], dtype=[(c, "f4") for c in CHANNELS])
    for i, c in enumerate(CHANNELS):
        st[c] = ev[i]
    return st


def assert_same(compiled: PulseFinder, plain: PulseFinder, ev: np.ndarray) -> bool:
    """Traces, peaks and records of both finders bitwise equal; True if accepted."""
    np.testing.assert_array_equal(compiled.load(ev), plain.load(ev))
    for ca, cb in zip(compiled.channel_peaks(ev), plain.channel_peaks(ev)):
        for key in KEYS:
            assert ca[key].dtype == cb[key].dtype and ca[key].tobytes() == cb[key].tobytes(), key
    ra, rb = compiled.analyse(ev), plain.analyse(ev)
    assert (ra is None) == (rb is None)
    if ra is None:
        return False
    assert ra.record.tobytes() == rb.record.tobytes()
    assert ra.signature_index == rb.signature_index and ra.direction == rb.direction
    return True


def test_compiled_equals_find_peaks_on_simulated_events():
    sim = pulseSimulator(CONFIG)
    sim.init(4, N, CHANNELS)
    compiled, plain = finders()
    n_acc = 0
    for _ in range(150):
        ev = sim().copy()
        accepted = assert_same(compiled, plain, to_structured(ev))  # ring-buffer slot
        assert assert_same(compiled, plain, ev) == accepted  # 2-D float32
        n_acc += accepted
    assert n_acc > 15


def test_compiled_equals_find_peaks_on_edge_cases():
    rng = np.random.default_rng(5)
    compiled, plain = finders()
    base = (-480.0 + 8.0 * (rng.random((4, N)) - 0.5)).astype(np.float32)
    cases = []
    ev = base.copy()  # plateaus (flat tops of even and odd length), a pulse at each end
    ev[0, PRE : PRE + 30] += 150.0
    ev[1, PRE : PRE + 31] += 200.0
    ev[1, 2000:2040] += 120.0
    ev[2, :60] += 100.0
    ev[3, N - 60 :] += 100.0
    cases.append(ev)
    ev = base.copy()  # a whole channel above the threshold (no gaps), one constant channel
    ev[0] += 100.0 * np.sin(np.linspace(0, 20, N)).astype(np.float32) + 100.0
    ev[1] = -480.0
    ev[2, PRE : PRE + 100] += 300.0 * np.exp(-np.arange(100) / 25.0).astype(np.float32)
    cases.append(ev)
    ev = base.copy()  # samples exactly at the threshold above the minimum
    ev[2] = -480.0
    ev[2, 1000:1012] = -480.0 + 35.0
    ev[2, 3000:3015] = -480.0 + 35.0 + np.arange(15, dtype=np.float32)
    cases.append(ev)
    ev = base.copy()  # two maxima of equal height within the distance: SciPy's selection decides
    ev[3, 2000:2003] = [-380.0, -420.0, -380.0]
    ev[3, 1990:2000] = np.linspace(-470.0, -390.0, 10)
    ev[3, 2003:2013] = np.linspace(-390.0, -470.0, 10)
    cases.append(ev)
    for value in (np.nan, np.inf, -np.inf):  # rows given whole to find_peaks
        ev = base.copy()
        ev[1, 100] = value
        cases.append(ev)
    for ev in cases:
        assert_same(compiled, plain, ev)
        assert_same(compiled, plain, to_structured(ev))
        assert_same(compiled, plain, np.asfortranarray(ev))  # other strides


def test_batch_after_single_events_reuses_arrays():
    """analyse_batch between single events (the work array grows and shrinks) and
    single events after a batch give the results of a fresh finder."""
    sim = pulseSimulator(CONFIG)
    sim.init(4, N, CHANNELS)
    events = np.stack([sim().copy() for _ in range(40)])
    compiled, plain = finders()
    want = [plain.analyse(e) for e in events]
    compiled.analyse(events[0])
    got = compiled.analyse_batch(events)
    got_single = [compiled.analyse(e) for e in events]
    got_small = compiled.analyse_batch(events[:7]) + compiled.analyse_batch(events[7:])
    for a, b, c, d in zip(want, got, got_single, got_small):
        assert (a is None) == (b is None) == (c is None) == (d is None)
        if a is not None:
            assert a.record.tobytes() == b.record.tobytes() == c.record.tobytes() == d.record.tobytes()


# ------------------------------------------------------------- kernel pieces
def test_threshold_is_exactly_the_prominence_bound():
    """``v >= threshold(m, p)`` is ``v - m >= p`` in float64: the least such v."""
    rng = np.random.default_rng(3)
    mins = np.concatenate(
        [
            rng.normal(0, 500, 300),
            -480.0 + rng.random(100),
            [0.0, -0.0, 5e-324, -5e-324, -1e308, -1.7976931348623157e308, 1e308, 1e-300, -35.0],
        ]
    )
    for m in mins.tolist():
        for p in (35.0, 1e-300, 0.1, 1e300, 34.999999999999996):
            t = _peaks.threshold(m, p)
            with np.errstate(over="ignore"):
                assert t - m >= p, (m, p, t)
                below = np.nextafter(t, -np.inf)
                assert not (below - m >= p), (m, p, t)
    with pytest.raises(ValueError, match="finite minimum"):
        _peaks.threshold(np.nan, 35.0)


def _close_tie(peaks: np.ndarray, heights: np.ndarray, dist: int) -> bool:
    return any(
        heights[i] == heights[j] and abs(peaks[i] - peaks[j]) < dist
        for i in range(peaks.size)
        for j in range(i + 1, peaks.size)
    )


def test_distance_selection_equals_scipy_unless_the_tie_order_decides():
    """The kernel's selection is SciPy's; it declines only where two equal maxima,
    both still kept when their height is reached, are closer than the distance (or a
    chain of > 64 close maxima): then SciPy's order of equal heights decides."""
    rng = np.random.default_rng(7)
    n_done = n_left = n_ties_done = 0
    for _ in range(3000):
        npk = int(rng.integers(0, 90))
        peaks = np.cumsum(rng.integers(2, 15, npk)).astype(np.intp)
        heights = rng.integers(0, 8, npk).astype(np.float64) if rng.random() < 0.5 else rng.random(npk)
        dist = int(rng.integers(1, 20))
        want = _select_by_peak_distance(peaks, heights, float(dist))
        keep = np.zeros(npk, np.uint8)
        if not _peaks.select_by_distance(peaks, heights, dist, keep):
            gaps = np.diff(peaks) < dist
            long_chain = np.max(np.diff(np.flatnonzero(np.r_[True, ~gaps, True])), initial=0) > 64
            assert long_chain or _close_tie(peaks, heights, dist)
            n_left += 1
            continue
        n_done += 1
        n_ties_done += _close_tie(peaks, heights, dist)  # ties that a higher peak settles
        np.testing.assert_array_equal(keep.view(bool), want)
    assert n_done > 1000 and n_left > 100 and n_ties_done > 100


@pytest.mark.filterwarnings("ignore:some peaks have a width of 0")
def test_widths_equal_scipy_in_row_coordinates():
    """The width loop gives peak_widths of the row itself, bitwise, with the row or the
    bases as bounds."""
    rng = np.random.default_rng(11)
    search = PeakSearch(35.0, 10.0, 0.0)
    for _ in range(200):
        rows, n = int(rng.integers(1, 6)), int(rng.integers(10, 300))
        values = -480.0 + np.cumsum(rng.normal(0, 20, (rows, n)), axis=1)
        search.layout(rows, n)
        search.load(values.T[None], 0.0)
        for r in range(rows):
            x = search.traces[r]
            p, props = find_peaks(x, prominence=35.0)
            if p.size == 0:
                continue
            origin = search.origin(np.intp(r))
            prom_data = (props["prominences"], props["left_bases"], props["right_bases"])
            for rel in (0.5, 0.9, 0.0):
                want = peak_widths(x, p, rel_height=rel, prominence_data=prom_data)
                want = b"".join(want[i].tobytes() for i in (0, 2, 3))
                got = search.widths(p + origin, props["prominences"], rel)  # row bounds
                assert b"".join(a.tobytes() for a in got) == want
                got = search.widths(p + origin, props["prominences"], rel, prom_data[1] + origin, prom_data[2] + origin)
                assert b"".join(a.tobytes() for a in got) == want


def test_load_equals_numpy_and_flags_rows():
    """The float32/float64 loads give NumPy's (x - offset) * scaling bitwise; rows with
    NaN, infinities or an overflowing range are flagged for find_peaks."""
    rng = np.random.default_rng(13)
    n = 300
    values = -480.0 + 50 * rng.random((3, n, 4))
    values[1, 17, 2] = np.nan
    values[2, 5, 0] = np.inf
    values[2, :, 3] = -1e308
    values[2, 40:50, 3] = 1e308
    scaling = np.array([1.0, 0.3, 1.7, 2.0])
    for dtype in (np.float32, np.float64, np.int32):
        with np.errstate(invalid="ignore", over="ignore"):
            data = values.astype(dtype)
            want = ((data.astype(np.float64) + 480.0) * scaling).transpose(0, 2, 1).reshape(12, n)
        search = PeakSearch(35.0, 10.0, 10.0)
        search.layout(12, n)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            search.load(data, -480.0, scaling)
            search.search()
        assert search.traces.tobytes() == want.tobytes()
        flags = search._rowflag[:12].tolist()
        if dtype is np.int32:
            assert 2 not in flags
        else:
            assert flags[6] == 2 and flags[8] == 2 and flags[11] == 2  # NaN, inf, overflow
            assert flags.count(2) == 3
