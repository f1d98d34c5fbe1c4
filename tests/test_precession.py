"""The spin-precession fit recovers the simulator's asymmetry and period."""

from __future__ import annotations

import numpy as np
import pytest

from mimocorb.muon.precession import MIN_EVENTS, fit_precession
from mimocorb.muon.simulator import A_SPIN, T_SPIN_NS, pulseSimulator


def _simulator(seed: int) -> pulseSimulator:
    sim = pulseSimulator(
        {
            "number_of_samples": 4250,
            "sample_time_ns": 4,
            "pre_trigger_samples": 500,
            "analogue_offset": -0.48,
            "trigger_level": -440,
            "seed": seed,
        }
    )
    return sim


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_asymmetry_and_period_recovered_within_3_sigma(seed):
    t, up = _simulator(seed).draw_decays(120_000)
    # electrons going down are seen less often (another acceptance): c absorbs it, A and T stay
    rng = np.random.default_rng(seed + 100)
    keep = up | (rng.random(t.size) < 0.85)
    fit = fit_precession(t[keep], up[keep])
    assert fit is not None
    assert abs(fit.asymmetry - A_SPIN) < 3 * fit.asymmetry_error, fit.summary()
    assert abs(fit.period - T_SPIN_NS) < 3 * fit.period_error, fit.summary()
    assert fit.significance > 5
    assert 0.0015 < fit.asymmetry_error < 0.003  # about 1 / sqrt(2 n)
    assert fit.offset > 0.5  # the down-going ones were thinned


def test_no_oscillation_gives_a_small_asymmetry():
    rng = np.random.default_rng(7)
    t = rng.exponential(2197.0, 60_000)
    up = rng.random(t.size) < 0.5
    fit = fit_precession(t, up)
    assert fit is not None and fit.asymmetry < 4 * fit.asymmetry_error


def test_fixed_phase_and_p_up():
    t, up = _simulator(4).draw_decays(80_000)
    fit = fit_precession(t, up, fix_phase=True)
    assert fit.phase == 0.0 and fit.phase_error == 0.0
    assert abs(fit.asymmetry - A_SPIN) < 3 * fit.asymmetry_error
    assert np.allclose(fit.p_up([0.0]), fit.offset + fit.asymmetry)


def test_too_few_decays_and_bad_input():
    assert fit_precession(np.full(MIN_EVENTS - 1, 1000.0), np.ones(MIN_EVENTS - 1, bool)) is None
    with pytest.raises(ValueError, match="one shape"):
        fit_precession(np.ones(10), np.ones(9, bool))
