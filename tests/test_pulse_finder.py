"""Tests of the muon-demo pulse finder (no ring buffer)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import yaml

from mimocorb.muon import CONFIG_DIR
from mimocorb.muon.pulse_finder import DEFAULT_SIGNATURES, PulseFinder, output_dtype
from mimocorb.muon.simulator import pulseSimulator

CHANNELS = ["chA", "chB", "chC", "chD"]
N = 4250
PRE = 500
BASE = -480.0
TEMPLATE = np.exp(-np.arange(100) / 25.0)


def config(**extra) -> dict:
    with open(os.path.join(CONFIG_DIR, "calculate_decay_time.yaml")) as f:
        cfg = yaml.safe_load(f)["calculate_decay_time"]
    cfg.update(extra)
    return cfg


def make_event(pulses, rng, noise=250.0 / 30.0) -> np.ndarray:
    """2-D event with uniform noise and exponential pulses ``(channel, position, height)``."""
    ev = (BASE + noise * (rng.random((4, N)) - 0.5)).astype(np.float32)
    for ch, pos, h in pulses:
        ev[ch, pos : pos + 100] += np.float32(h) * TEMPLATE[: N - pos].astype(np.float32)
    return ev


def to_structured(ev: np.ndarray) -> np.ndarray:
    st = np.zeros(ev.shape[1], dtype=[(c, "f4") for c in CHANNELS])
    for i, c in enumerate(CHANNELS):
        st[c] = ev[i]
    return st


def test_config_file_has_1x_defaults():
    cfg = config()
    assert cfg["peak_minimal_prominence_initial"] == 90
    assert cfg["peak_minimal_prominence_secondary"] == 35
    assert cfg["peak_minimal_distance"] == 10 and cfg["peak_minimal_width"] == 10
    assert cfg["trigger_position_tolerance"] == 20
    assert cfg["signatures"] == DEFAULT_SIGNATURES


def test_output_dtype():
    names = [n for n, _ in output_dtype(CHANNELS)]
    assert names[0] == "decay_time" and len(names) == 1 + 2 * 4 * 3
    assert "1st_chA_h" in names and "2nd_chD_int" in names and "2nd_chC_p" in names
    assert dict(output_dtype(CHANNELS))["decay_time"] == "int32"


@pytest.mark.parametrize("fast", [True, False])
def test_known_pulses_positions_and_heights(fast):
    rng = np.random.default_rng(1)
    pf = PulseFinder(config(), fast=fast)
    for _ in range(50):
        pulses = []
        for ch in range(4):
            for pos in sorted(rng.choice(np.arange(150, 4100, 250), size=rng.integers(0, 4), replace=False)):
                pulses.append((ch, int(pos), float(rng.uniform(100, 500))))
        ev = make_event(pulses, rng)
        found = pf.channel_peaks(ev)
        for ch in range(4):
            want = sorted((p, h) for c, p, h in pulses if c == ch)
            got = found[ch]
            assert len(got["positions"]) == len(want)
            for (p, h), gp, gh in zip(want, got["positions"], got["heights"]):
                assert abs(gp - p) <= 1
                assert abs(gh - h) <= 0.05 * h


def test_structured_and_plain_input_agree():
    rng = np.random.default_rng(2)
    pf = PulseFinder(config())
    ev = make_event([(0, PRE, 200), (1, PRE, 220), (1, 1500, 150)], rng)
    rec2d = pf.find(ev)
    recst = pf.find(to_structured(ev))
    assert rec2d is not None and recst is not None
    assert rec2d.tobytes() == recst.tobytes()
    assert rec2d["decay_time"][0] == (1500 - PRE) * 4
    assert rec2d["1st_chA_p"][0] == PRE and rec2d["2nd_chB_p"][0] == 1500 and rec2d["2nd_chA_p"][0] == -1
    assert abs(rec2d["2nd_chB_h"][0] - 150) < 7.5
    # integral of an exponential pulse: height x tau (25 samples x 4 ns), most of it in the window
    assert 0.8 * 150 * 100 < rec2d["2nd_chB_int"][0] < 1.05 * 150 * 100


def test_no_pulses_in_pure_noise():
    rng = np.random.default_rng(3)
    pf = PulseFinder(config())
    for _ in range(3000):
        ev = make_event([], rng)
        assert all(len(c["positions"]) == 0 for c in pf.channel_peaks(ev))
        assert pf.find(ev) is None


def _pulses_for(pattern, pos, rng, height=200.0):
    return [(ch, pos, height * rng.uniform(0.8, 1.2)) for ch, s in enumerate(pattern) if s == "+"]


@pytest.mark.parametrize("index", range(len(DEFAULT_SIGNATURES)))
def test_each_signature_accepted(index):
    rng = np.random.default_rng(10 + index)
    pf = PulseFinder(config())
    start, stop = DEFAULT_SIGNATURES[index]
    ev = make_event(_pulses_for(start, PRE, rng) + _pulses_for(stop, 2000, rng), rng)
    m = pf.analyse(ev)
    assert m is not None
    assert m.signature_index == index
    assert m.direction == ["up", "down", "up"][index]
    assert m.decay_time_ns == (2000 - PRE) * 4


@pytest.mark.parametrize(
    "start, stop",
    [
        ("++--", "-+-+"),  # stop has a pulse up and down
        ("+---", "-+--"),  # start lacks chB
        ("++-+", "-+--"),  # start has a forbidden chD pulse
        ("+++-", "---+"),  # passing muon missing chD
        ("++--", "----"),  # no second pulse at all
        ("++--", "+-+-"),  # electron in both halves
    ],
)
def test_violating_patterns_rejected(start, stop):
    rng = np.random.default_rng(20)
    pf = PulseFinder(config())
    ev = make_event(_pulses_for(start, PRE, rng) + _pulses_for(stop, 2000, rng), rng)
    assert pf.analyse(ev) is None


def test_first_pulse_away_from_trigger_or_too_small_rejected():
    rng = np.random.default_rng(30)
    pf = PulseFinder(config())
    late = [(0, PRE + 40, 200), (1, PRE + 40, 200), (1, 2000, 200)]
    assert pf.analyse(make_event(late, rng)) is None
    small = [(0, PRE, 200), (1, PRE, 60), (1, 2000, 200)]  # chB first pulse below 90 mV
    assert pf.analyse(make_event(small, rng)) is None
    ok = [(0, PRE, 200), (1, PRE + 10, 200), (1, 2000, 50)]  # second pulse 50 mV > 35 mV
    m = pf.analyse(make_event(ok, rng))
    assert m is not None and m.direction == "up"


def test_scaling_and_custom_signature():
    rng = np.random.default_rng(40)
    ev = make_event([(0, PRE, 100), (1, PRE, 100), (2, 1200, 100)], rng)
    pf = PulseFinder(config(chA_scaling=2.0))
    found = pf.channel_peaks(ev)
    assert abs(found[0]["heights"][0] - 200) < 10 and abs(found[1]["heights"][0] - 100) < 5
    custom = PulseFinder(config(signatures=[[["+", "0", "0", "0"], ["0", "0", "+", "0"]]]))
    m = custom.analyse(ev)
    assert m is not None and m.signature_index == 0 and m.direction == "down"
    with pytest.raises(ValueError, match="signature 0"):
        PulseFinder(config(signatures=[[["+", "x", "0", "0"], ["0", "0", "+", "0"]]]))
    with pytest.raises(ValueError, match="2-D"):
        pf.find(np.zeros((3, 100), np.float32))


def test_fast_path_equals_find_peaks_on_whole_traces():
    sim = pulseSimulator(
        {
            "number_of_samples": N,
            "sample_time_ns": 4,
            "pre_trigger_samples": PRE,
            "analogue_offset": -0.48,
            "trigger_level": -440,
            "seed": 77,
            "prb2ndPulse": 0.5,  # many double pulses, also overlapping ones
        }
    )
    sim.init(4, N, CHANNELS)
    fast = PulseFinder(config(), fast=True)
    naive = PulseFinder(config(), fast=False)
    n_acc = 0
    for _ in range(800):
        ev = sim()
        a, b = fast.channel_peaks(ev), naive.channel_peaks(ev)
        for ca, cb in zip(a, b):  # bitwise: the fast path gives find_peaks' own values
            for key in ("positions", "heights", "prominences", "widths", "left_ips", "right_ips"):
                assert ca[key].dtype == cb[key].dtype and ca[key].tobytes() == cb[key].tobytes(), key
            assert np.array_equal(ca["left_bases"], cb["left_bases"])
            assert np.array_equal(ca["right_bases"], cb["right_bases"])
        ra, rb = fast.analyse(ev), naive.analyse(ev)
        assert (ra is None) == (rb is None)
        if ra is not None:
            n_acc += 1
            assert ra.record.tobytes() == rb.record.tobytes() and ra.signature_index == rb.signature_index
    assert n_acc > 100


def test_batch_equals_single_events():
    sim = pulseSimulator(
        {
            "number_of_samples": N,
            "sample_time_ns": 4,
            "pre_trigger_samples": PRE,
            "analogue_offset": -0.48,
            "trigger_level": -440,
            "seed": 78,
            "prb2ndPulse": 0.5,
        }
    )
    sim.init(4, N, CHANNELS)
    events = np.stack([sim().copy() for _ in range(96)])
    single = PulseFinder(config())
    batch = PulseFinder(config())
    want = [single.analyse(e) for e in events]
    slots = np.stack([to_structured(e) for e in events])
    for data in (events, slots):
        got = batch.analyse_batch(data[:50]) + batch.analyse_batch(data[50:])
        assert len(got) == len(want)
        for a, b in zip(want, got):
            assert (a is None) == (b is None)
            if a is not None:
                assert a.record.tobytes() == b.record.tobytes() and a.direction == b.direction
    assert sum(m is not None for m in want) > 20


@pytest.mark.timeout(120)
def test_calculate_decay_time_with_ring_buffers():
    """The 1.x user function between two real ring buffers (threads, one process)."""
    import threading

    mimo_buffer = pytest.importorskip("mimocorb.mimo_buffer")
    from mimocorb.demo.per_event import decay_time_per_event as calculate_decay_time

    sim_cfg = {
        "number_of_samples": N,
        "sample_time_ns": 4,
        "pre_trigger_samples": PRE,
        "analogue_offset": -0.48,
        "trigger_level": -440,
        "seed": 99,
        "prb2ndPulse": 0.5,
    }
    sim = pulseSimulator(sim_cfg)
    sim.init(4, N, CHANNELS)
    slot_dtype = [(c, "f4") for c in CHANNELS]
    src = mimo_buffer.NewBuffer(16, N, slot_dtype)
    snk = mimo_buffer.NewBuffer(256, 1, output_dtype(CHANNELS))
    try:
        sink_reader = mimo_buffer.Reader(snk.new_reader_group())
        reader_setup = src.new_reader_group()
        worker = threading.Thread(
            target=calculate_decay_time,
            kwargs={
                "source_list": [reader_setup],
                "sink_list": [snk.new_writer()],
                "config_dict": config(),
                "RB_1": "read",
                "RB_2": "write",
            },
            daemon=True,
        )
        worker.start()
        writer = mimo_buffer.Writer(src.new_writer())
        reference = PulseFinder(config())
        expected = []
        for _ in range(200):
            ev = sim()
            slot = writer.get_new_buffer()
            for i, c in enumerate(CHANNELS):
                slot[c] = ev[i]
            m = reference.analyse(ev)
            if m is not None:
                expected.append(m.record)
        writer.process_buffer()
        src.shutdown(timeout=20)
        worker.join(30)
        assert not worker.is_alive()
        got = []
        while sink_reader.data_available():
            got.append(np.array(sink_reader.get()).copy())
        sink_reader.release()
        snk.shutdown(timeout=10)
        assert len(expected) > 30
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert a.tobytes() == b.tobytes()
    finally:
        src.close()
        snk.close()
