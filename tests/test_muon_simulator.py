"""Tests of the muon-demo waveform simulator (no ring buffer)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from mimocorb.muon.lifetime import fit_lifetime
from mimocorb.muon.simulator import TAU_MU_NS, pulseSimulator

CHANNELS = ["chA", "chB", "chC", "chD"]
CONFIG = {
    "number_of_samples": 4250,
    "sample_time_ns": 4,
    "pre_trigger_samples": 500,
    "analogue_offset": -0.48,
    "trigger_level": -440,
    "seed": 2024,
}


def make_sim(**extra) -> pulseSimulator:
    sim = pulseSimulator({**CONFIG, **extra})
    sim.init(4, 4250, CHANNELS)
    return sim


def test_shape_dtype_baseline_and_noise():
    sim = make_sim()
    ev = sim()
    assert ev.shape == (4, 4250)
    assert ev.dtype == np.float32
    pre = ev[:, :480]  # before the trigger: noise only
    assert np.all(np.abs(pre.mean(axis=1) + 480.0) < 0.6)
    half = 250.0 / 30.0 / 2.0
    assert pre.min() >= -480.0 - half - 1e-3 and pre.max() <= -480.0 + half + 1e-3
    # uniform noise of full width 250/30 mV: standard deviation width / sqrt(12)
    assert abs(pre.std() - 250.0 / 30.0 / np.sqrt(12)) < 0.15


def test_import_path_of_1x():
    from mimocorb.pulseSimulator import pulseSimulator as legacy

    assert legacy is pulseSimulator


def test_trigger_crossing_at_pre_trigger_position():
    sim = make_sim()
    n_fired = 0
    for _ in range(500):
        ev = sim()
        fired = any(ch == 0 and pos == 500 for ch, pos, _ in sim.last_truth.pulses)
        crossing = np.flatnonzero(ev[0, :600] > -440.0)
        if fired:
            n_fired += 1
            assert crossing[0] == 500
        else:
            assert crossing.size == 0
    assert 0.92 * 500 < n_fired < 0.98 * 500  # layer efficiency 0.95


def test_stopped_fraction_direction_and_truth():
    sim = make_sim()
    n = 6000
    stopped, up, times = 0, 0, []
    for _ in range(n):
        sim()
        tr = sim.last_truth
        if tr.stopped:
            stopped += 1
            up += tr.up
            times.append(tr.decay_time_ns)
            first = [p for p in tr.pulses if p[1] == 500]
            assert all(ch in (0, 1) for ch, _, _ in first)  # stopped: upper layers only
            second = [p for p in tr.pulses if p[1] != 500]
            for ch, pos, _ in second:
                assert pos == 500 + int(tr.decay_time_ns / 4)
                assert (ch in (0, 1)) == tr.up
        else:
            assert np.isnan(tr.decay_time_ns) and len(tr.pulses) <= 4
    frac = stopped / n
    assert abs(frac - 0.10) < 4 * np.sqrt(0.1 * 0.9 / n)
    assert abs(up / stopped - 0.5) < 4 * np.sqrt(0.25 / stopped)
    fit = fit_lifetime(times, t_min=0.0, t_max=1e6, fit_background=False)
    assert abs(fit.tau - TAU_MU_NS) < 3 * fit.tau_error


def test_pulse_shape_in_the_event():
    sim = make_sim(seed=5)
    ev = sim()
    for ch, pos, h in sim.last_truth.pulses:
        seg = ev[ch, pos : pos + 100] + 480.0
        expected = h * np.exp(-np.arange(100) / 25.0)
        assert np.max(np.abs(seg - expected)) < 250.0 / 60.0 + 1e-3  # within the noise


def test_seed_reproducible_and_noise_changes():
    a, b = make_sim(seed=11), make_sim(seed=11)
    for _ in range(5):
        assert np.array_equal(a(), b())
    sim = make_sim(seed=3)
    prev = sim()[:, :450].copy()
    for _ in range(200):
        cur = sim()[:, :450].copy()
        for ch in range(4):
            r = np.corrcoef(prev[ch], cur[ch])[0, 1]
            assert abs(r) < 0.25
        assert not np.array_equal(prev, cur)
        prev = cur


def test_height_list_and_spread():
    sim = make_sim(pulseHeight=[100.0, 400.0], pulseSpread=1.0, prbInteraction=1.0, seed=9)
    heights = []
    for _ in range(300):
        sim()
        heights += [h for ch, pos, h in sim.last_truth.pulses if ch != 0]
    heights = np.array(heights)
    assert np.all((np.abs(heights - 100.0) < 6) | (np.abs(heights - 400.0) < 6))
    assert 0.3 < np.mean(heights > 250) < 0.7


def test_wait_time_and_no_sleep_in_call():
    sim = make_sim(sleeptime=1.0, random=False)
    t0 = time.perf_counter()
    for _ in range(50):
        sim()
    assert time.perf_counter() - t0 < 1.0  # the call never sleeps
    assert sim.wait_time() == 1.0
    rnd = make_sim(sleeptime=0.2, random=True)
    waits = np.array([rnd.wait_time() for _ in range(4000)])
    assert abs(waits.mean() - 0.2) < 0.02 and waits.min() >= 0
    assert abs(np.median(waits) - 0.2 * np.log(2)) < 0.02  # exponential, not fixed


def test_out_argument_and_errors():
    sim = make_sim()
    out = np.empty((4, 4250), np.float32)
    assert sim(out) is out
    with pytest.raises(ValueError, match="out must be float32"):
        sim(np.empty((4, 10), np.float32))
    with pytest.raises(KeyError, match="sample_time_ns"):
        pulseSimulator({"number_of_samples": 10, "pre_trigger_samples": 1, "analogue_offset": 0})
    with pytest.raises(ValueError, match="prbInteraction"):
        pulseSimulator({**CONFIG, "prbInteraction": 1.5})
    small = pulseSimulator(CONFIG)
    with pytest.raises(ValueError, match="number_of_values"):
        small.init(4, 550, CHANNELS)
