"""The compiled kernel of the pulse finder (mimocorb.muon._peaks) against the NumPy path."""

from __future__ import annotations

import numpy as np
import pytest

from mimocorb.muon.pulse_finder import PulseFinder, _select_by_peak_distance
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
    assert compiled.use_compiled
    return compiled, plain


def to_structured(ev: np.ndarray) -> np.ndarray:
    st = np.zeros(ev.shape[1], dtype=[(c, "f4") for c in CHANNELS])
    for i, c in enumerate(CHANNELS):
        st[c] = ev[i]
    return st


def assert_same(compiled: PulseFinder, plain: PulseFinder, ev: np.ndarray, kernel_used: bool = True) -> bool:
    """Work arrays, peaks and records of both finders bitwise equal; True if accepted."""
    compiled.load(ev)
    plain.load(ev)
    assert (compiled._scanned is not None) == kernel_used
    assert plain._scanned is None
    np.testing.assert_array_equal(compiled._work, plain._work)
    assert compiled._shift.tobytes() == plain._shift.tobytes()
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


def test_compiled_equals_numpy_on_simulated_events():
    sim = pulseSimulator(CONFIG)
    sim.init(4, N, CHANNELS)
    compiled, plain = finders()
    n_acc = 0
    for _ in range(300):
        ev = sim().copy()
        accepted = assert_same(compiled, plain, to_structured(ev))  # ring-buffer slot
        assert assert_same(compiled, plain, ev) == accepted  # 2-D float32
        n_acc += accepted
    assert n_acc > 30


def test_compiled_equals_numpy_on_edge_cases():
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
    compiled.load(ev)
    assert compiled._scanned is not None and compiled._scanned[2] is False
    cases.append(ev)
    for ev in cases:
        assert_same(compiled, plain, ev)
        assert_same(compiled, plain, to_structured(ev))
        assert_same(compiled, plain, np.asfortranarray(ev))  # other strides
    # NaN or infinite samples: the kernel declines, the NumPy path runs (same results)
    for value in (np.nan, np.inf, -np.inf):
        ev = base.copy()
        ev[1, 100] = value
        with np.errstate(invalid="ignore"):
            assert_same(compiled, plain, ev, kernel_used=value == np.inf)


def test_batch_after_compiled_single_event():
    """analyse_batch (NumPy) after a kernel-loaded event does not reuse the kernel's result."""
    sim = pulseSimulator(CONFIG)
    sim.init(4, N, CHANNELS)
    events = np.stack([sim().copy() for _ in range(40)])
    compiled, plain = finders()
    want = [plain.analyse(e) for e in events]
    compiled.analyse(events[0])
    got = compiled.analyse_batch(events)
    got_single = [compiled.analyse(e) for e in events]
    for a, b, c in zip(want, got, got_single):
        assert (a is None) == (b is None) == (c is None)
        if a is not None:
            assert a.record.tobytes() == b.record.tobytes() == c.record.tobytes()


@pytest.mark.skipif(_select_by_peak_distance is None, reason="SciPy without _select_by_peak_distance")
def test_distance_selection_equals_scipy():
    rng = np.random.default_rng(7)
    n_done = 0
    for _ in range(3000):
        npk = int(rng.integers(0, 70))
        peaks = np.cumsum(rng.integers(1, 15, npk)).astype(np.intp)
        heights = rng.integers(0, 50, npk).astype(np.float64) if rng.random() < 0.3 else rng.random(npk)
        dist = int(rng.integers(1, 20))
        want = peaks[_select_by_peak_distance(peaks, heights, float(dist))]
        p, z, h = peaks.copy(), 2 * peaks + 1, heights.copy()
        m = _peaks.select_by_distance(p, z, h, dist)
        if len(set(heights.tolist())) < npk or npk > 64:
            assert m == -1  # ties (order up to np.argsort) and long lists are left to SciPy
            continue
        n_done += 1
        np.testing.assert_array_equal(p[:m], want)
        np.testing.assert_array_equal(z[:m], 2 * want + 1)
        np.testing.assert_array_equal(h[:m], heights[np.searchsorted(peaks, want)])
    assert n_done > 1000
