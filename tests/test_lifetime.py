"""Tests of the lifetime fit, and the end-to-end physics check of the muon demo."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from mimocorb.muon.lifetime import fit_lifetime
from mimocorb.muon.pulse_finder import PulseFinder
from mimocorb.muon.simulator import TAU_MU_NS, pulseSimulator

logger = logging.getLogger(__name__)


def test_pure_exponential():
    rng = np.random.default_rng(1)
    t = rng.exponential(2197.0, 5000)
    fit = fit_lifetime(t)
    assert fit.n_total == 5000 and fit.n_used == np.count_nonzero((t >= 500) & (t <= 14000))
    assert abs(fit.tau - 2197.0) < 3 * fit.tau_error
    assert 0.8 < fit.tau_error / (fit.tau / np.sqrt(fit.n_used)) < 1.6
    assert fit.background_fraction < 0.05


def test_exponential_plus_flat_background():
    rng = np.random.default_rng(2)
    t = np.concatenate([rng.exponential(2197.0, 4000), rng.uniform(0, 14000, 800)])
    fit = fit_lifetime(t)
    true_f = 800 * 13500 / 14000 / fit.n_used
    assert abs(fit.tau - 2197.0) < 3 * fit.tau_error
    assert abs(fit.background_fraction - true_f) < 3 * fit.background_error


def test_error_coverage():
    rng = np.random.default_rng(3)
    pulls = []
    for _ in range(60):
        fit = fit_lifetime(rng.exponential(2197.0, 1500), fit_background=False)
        pulls.append((fit.tau - 2197.0) / fit.tau_error)
    pulls = np.array(pulls)
    assert abs(pulls.mean()) < 0.5 and 0.7 < pulls.std() < 1.3


def test_too_few_events_and_bad_range():
    with pytest.raises(ValueError, match="got 3"):
        fit_lifetime([600.0, 700.0, 800.0])
    with pytest.raises(ValueError, match="t_min < t_max"):
        fit_lifetime(np.arange(1000.0, 2000.0), t_min=3000, t_max=1000)


@pytest.mark.timeout(300)
def test_end_to_end_simulate_find_fit():
    """Simulate, find double pulses, fit: the lifetime comes back (no ring buffer)."""
    cfg = {
        "number_of_samples": 4250,
        "sample_time_ns": 4,
        "pre_trigger_samples": 500,
        "analogue_offset": -0.48,
        "trigger_level": -440,
        "seed": 20240601,
    }
    sim = pulseSimulator(cfg)
    sim.init(4, 4250, ["chA", "chB", "chC", "chD"])
    finder = PulseFinder(cfg)
    n_events = 30000
    out = np.empty((4, 4250), np.float32)
    decay_times, directions = [], []
    for _ in range(n_events):
        m = finder.analyse(sim(out))
        if m is not None:
            decay_times.append(m.decay_time_ns)
            directions.append(m.direction)
    acceptance = len(decay_times) / n_events
    fit = fit_lifetime(decay_times)
    logger.warning(
        "end-to-end: acceptance %.4f, tau = %.0f +- %.0f ns, background %.3f, %d fitted",
        acceptance,
        fit.tau,
        fit.tau_error,
        fit.background_fraction,
        fit.n_used,
    )
    assert 0.07 <= acceptance <= 0.09
    assert abs(fit.tau - TAU_MU_NS) < 3 * fit.tau_error
    assert fit.tau_error / fit.tau <= 0.05
    up = directions.count("up") / len(directions)
    assert abs(up - 0.5) < 0.06
