"""The network instrument sources against their simulators on loopback.

Each test starts a simulator (a TCP server on 127.0.0.1, port 0) in a thread and the
source in a forked process writing into a fresh buffer; every wait is bounded and
everything is stopped at the end. The kinds: the SCPI source with the Red Pitaya and
the Rigol DS1000Z command families, and the Red Pitaya MCPHA source.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest

from mimocorb.sources import redpitaya_mcpha, scpi_scope
from mimocorb.sources.simulators import Faults, McphaSimulator, ScpiSimulator, WaveformSettings
from tests.source_helpers import SourceRun

pytest.importorskip("pyvisa")
pytest.importorskip("pyvisa_py")

PRE = 200
F4 = [("chA", "f4"), ("chB", "f4")]


@dataclass
class Kind:
    name: str
    fn: Callable
    samples: int
    dtype: list
    make_sim: Callable  # faults -> simulator
    config: Callable  # simulator -> config dict
    expected: Callable  # (simulator, trigger number) -> {field: values}


def _rp_sim(faults):
    w = WaveformSettings(channels=2, samples=2000, sample_time_ns=8, pre_trigger_samples=PRE, rate=200, seed=7)
    return ScpiSimulator("redpitaya", w, record=True, faults=faults)


def _rigol_sim(faults):
    w = WaveformSettings(channels=4, samples=1200, sample_time_ns=1, pre_trigger_samples=PRE, rate=200, seed=8)
    return ScpiSimulator("rigol_ds1000z", w, record=True, faults=faults)


def _mcpha_sim(faults):
    w = WaveformSettings(channels=2, samples=2000, sample_time_ns=8, pre_trigger_samples=PRE, rate=200, seed=9)
    return McphaSimulator(w, record=True, faults=faults)


def _scpi_config(family, st):
    return lambda sim: {
        "resource": f"TCPIP::127.0.0.1::{sim.port}::SOCKET",
        "family": family,
        "sample_time_ns": st,
        "pre_trigger_samples": PRE,
        "timeout": 0.5,
        "trigger": {"source": "chA", "level_mv": -440, "slope": "rising"},
    }


KINDS = {
    "redpitaya": Kind(
        "redpitaya",
        scpi_scope,
        2000,
        F4,
        _rp_sim,
        _scpi_config("redpitaya", 8),
        lambda sim, k: {"chA": sim.sent[k][1] * 1000.0, "chB": sim.sent[k][2] * 1000.0},
    ),
    "rigol": Kind(
        "rigol",
        scpi_scope,
        1200,
        F4,
        _rigol_sim,
        _scpi_config("rigol_ds1000z", 1),
        lambda sim, k: {"chA": sim.rigol_to_mv(sim.sent[k][1]), "chB": sim.rigol_to_mv(sim.sent[k][2])},
    ),
    "mcpha": Kind(
        "mcpha",
        redpitaya_mcpha,
        2000,
        [("chA", "i2"), ("chB", "i2")],
        _mcpha_sim,
        lambda sim: {"host": "127.0.0.1", "port": sim.port, "pre_trigger_samples": PRE, "timeout": 0.5},
        lambda sim, k: {"chA": sim.sent[k].reshape(-1, 2)[:, 0], "chB": sim.sent[k].reshape(-1, 2)[:, 1]},
    ),
}


@pytest.fixture(params=list(KINDS))
def kind(request) -> Kind:
    return KINDS[request.param]


def _same(data, expected) -> bool:
    return all(np.allclose(data[f], v, rtol=1e-6, atol=1e-3) for f, v in expected.items())


def _sent_whole(kind, sim, k) -> dict:
    """What the simulator sent of event k, {} when not every channel was sent (a fault struck)."""
    try:
        return kind.expected(sim, k)
    except KeyError:
        return {}


def _match(kind, sim, events) -> list[int]:
    """The simulator's trigger number of every published event (matched by content)."""
    ks = []
    for ev in events:
        found = [k for k in sorted(sim.sent) if (exp := _sent_whole(kind, sim, k)) and _same(ev.data, exp)]
        assert found, f"published event {ev.counter} is none of the events the simulator sent"
        ks.append(found[0])
    return ks


def _wait(pred, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def test_events_are_what_the_instrument_sent(kind):
    with kind.make_sim(Faults()) as sim:
        cfg = dict(kind.config(sim), number_of_events=6)
        t0 = time.time()
        with SourceRun(kind.fn, cfg, kind.samples, kind.dtype, after_fork=sim.forget_in_child).start() as run:
            events = run.events(6)
            assert run.join() == 0, run.error()
        t1 = time.time()
        assert [e.counter for e in events] == [1, 2, 3, 4, 5, 6]
        for e in events:
            exp = kind.expected(sim, e.counter)
            for f, v in exp.items():
                np.testing.assert_allclose(e.data[f], v, rtol=1e-6, atol=1e-3)
            assert 0.0 <= e.deadtime <= 1.0
        stamps = [e.timestamp for e in events]
        assert t0 <= stamps[0] and stamps[-1] <= t1 and stamps == sorted(stamps)
        assert sim.connections == 1
        assert _wait(lambda: not sim.client_connected, 5), "the source did not close its connection"


def test_dropped_connection_is_restored_and_the_torn_event_never_published(kind):
    with kind.make_sim(Faults(drop_at_event=3)) as sim:
        cfg = dict(kind.config(sim), number_of_events=6)
        with SourceRun(kind.fn, cfg, kind.samples, kind.dtype, after_fork=sim.forget_in_child).start() as run:
            events = run.events(6)
            assert run.join() == 0, run.error()
        assert sim.faults.fired == ["drop"] and sim.connections == 2
        ks = _match(kind, sim, events)
        assert len(events) == 6 and 3 not in ks and ks == sorted(set(ks))
        counters = [e.counter for e in events]
        assert counters == sorted(set(counters))


def test_instrument_gone_for_good_ends_the_run_naming_it(kind):
    with kind.make_sim(Faults(drop_at_event=2, refuse_after_drop=True)) as sim:
        cfg = dict(kind.config(sim), reconnect_timeout=0.5)
        with SourceRun(kind.fn, cfg, kind.samples, kind.dtype, after_fork=sim.forget_in_child).start() as run:
            events = run.events(3, timeout=5)
            code = run.join(15)
            message = run.error()
        assert code == 1
        assert "InstrumentError" in message and str(sim.port) in message and "not restored within 0.5 s" in message
        assert [e.counter for e in events] == [1]
        assert _same(events[0].data, kind.expected(sim, 1))


@pytest.mark.parametrize("fault", ["short", "malformed"])
def test_short_or_malformed_block_is_dropped(kind, fault):
    faults = Faults(short_block_at=3) if fault == "short" else Faults(malformed_block_at=3)
    with kind.make_sim(faults) as sim:
        cfg = dict(kind.config(sim), number_of_events=5)
        with SourceRun(kind.fn, cfg, kind.samples, kind.dtype, after_fork=sim.forget_in_child).start() as run:
            events = run.events(5)
            assert run.join() == 0, run.error()
        assert sim.faults.fired == [fault] and sim.connections == 2
        ks = _match(kind, sim, events)
        assert len(events) == 5 and ks == sorted(set(ks))
        if kind.name != "mcpha" or fault == "short":  # a short MCPHA status reply comes before event 3's data
            assert 3 not in ks


def test_wrong_channel_name_is_a_config_error_before_anything_starts(kind):
    with kind.make_sim(Faults()) as sim:
        cfg = dict(kind.config(sim), channels={"chA": 1, "chX": 2})
        sink = {"dtype": kind.dtype, "values_per_slot": kind.samples, "name": "RB_1"}
        with pytest.raises(ValueError, match=r"config key 'channels.chX': got 'chX', expected a field of buffer"):
            kind.fn.check_config(cfg, [sink])
        with SourceRun(kind.fn, cfg, kind.samples, kind.dtype, after_fork=sim.forget_in_child).start() as run:
            assert run.join() == 1
            assert "channels.chX" in run.error()
        assert sim.connections == 0


def test_samples_must_equal_the_buffer(kind):
    with kind.make_sim(Faults()) as sim:
        cfg = dict(kind.config(sim), samples=kind.samples + 1)
        sink = {"dtype": kind.dtype, "values_per_slot": kind.samples}
        with pytest.raises(ValueError, match=rf"'samples': got {kind.samples + 1}, expected the values per slot"):
            kind.fn.check_config(cfg, [sink])


def test_trigger_timeout_ends_the_source_cleanly(kind):
    with kind.make_sim(Faults(never_trigger=True)) as sim:
        cfg = dict(kind.config(sim), trigger_timeout=0.5)
        with SourceRun(kind.fn, cfg, kind.samples, kind.dtype, after_fork=sim.forget_in_child).start() as run:
            assert run.join(10) == 0, run.error()
            assert run.events(1, timeout=0.1) == []
        assert sim.connections == 1


@pytest.mark.parametrize("stop", ["end_of_run", "sigint"])
def test_waiting_for_a_trigger_stops_promptly(kind, stop):
    with kind.make_sim(Faults(never_trigger=True)) as sim:
        with SourceRun(
            kind.fn, kind.config(sim), kind.samples, kind.dtype, after_fork=sim.forget_in_child
        ).start() as run:
            assert _wait(lambda: sim.client_connected, 10)
            time.sleep(0.3)  # polling the trigger state by now
            t = time.monotonic()
            if stop == "end_of_run":
                run.buf.set_ending()
            else:
                os.kill(run.proc.pid, signal.SIGINT)
            code = run.join(5)
            assert time.monotonic() - t < 3.0
            assert code == (0 if stop == "end_of_run" else 1)
            if stop == "sigint":
                assert "KeyboardInterrupt" in run.error()
        assert _wait(lambda: not sim.client_connected, 5), "the source did not close its connection"


def test_unknown_resource():
    sink = {"dtype": F4, "values_per_slot": 2000}
    with pytest.raises(ValueError, match=r"scpi_scope: config key 'resource': got 'TCPIP::nowhere::SOCKET'"):
        scpi_scope.check_config({"resource": "TCPIP::nowhere::SOCKET"}, [sink])
    with pytest.raises(ValueError, match=r"config key 'resource': got None"):
        scpi_scope.check_config({}, [sink])
    with pytest.raises(ValueError, match=r"config key 'family': got 'tek', expected one of 'redpitaya'"):
        scpi_scope.check_config({"resource": "TCPIP::h::5000::SOCKET", "family": "tek"}, [sink])
    # a resource nobody answers at: the run ends at once with a message naming it
    with ScpiSimulator("redpitaya") as sim:
        port = sim.port
    for fn, cfg in (
        (scpi_scope, {"resource": f"TCPIP::127.0.0.1::{port}::SOCKET", "timeout": 0.5}),
        (redpitaya_mcpha, {"host": "127.0.0.1", "port": port, "timeout": 0.5}),
    ):
        with SourceRun(fn, cfg, 2000, F4 if fn is scpi_scope else [("chA", "i2")]).start() as run:
            assert run.join(10) == 1
            message = run.error()
        assert "InstrumentError" in message and "cannot connect" in message and str(port) in message


def test_mcpha_float_fields_are_scaled_to_mv():
    kind = KINDS["mcpha"]
    with kind.make_sim(Faults()) as sim:
        cfg = dict(kind.config(sim), number_of_events=3, channels={"chA": 2, "chB": 1}, mv_per_count=0.5)
        with SourceRun(kind.fn, cfg, kind.samples, F4, after_fork=sim.forget_in_child).start() as run:
            events = run.events(3)
            assert run.join() == 0, run.error()
        for e in events:
            pairs = sim.sent[e.counter].reshape(-1, 2).astype(np.float64)
            np.testing.assert_allclose(e.data["chA"], pairs[:, 1] * 0.5)
            np.testing.assert_allclose(e.data["chB"], pairs[:, 0] * 0.5)


def test_mcpha_config_errors():
    sink = [{"dtype": [("chA", "i2"), ("chB", "f4")], "values_per_slot": 100}]
    with pytest.raises(ValueError, match="expected all float fields .mV. or all integer fields"):
        redpitaya_mcpha.check_config({"host": "h"}, sink)
    sink = [{"dtype": [("chA", "i2")], "values_per_slot": 100}]
    with pytest.raises(ValueError, match=r"'sample_time_ns': got 16.0, expected 8 ns x 1, or 8 ns x an integer"):
        redpitaya_mcpha.check_config({"host": "h", "sample_time_ns": 16.0}, sink)
    with pytest.raises(ValueError, match=r"'trigger.level_mv': got 5000.0, expected a level within"):
        redpitaya_mcpha.check_config({"host": "h", "trigger": {"level_mv": 5000.0}}, sink)
    with pytest.raises(ValueError, match=r"'channels.chA': got 3, expected an instrument channel, one of 1, 2"):
        redpitaya_mcpha.check_config({"host": "h", "channels": {"chA": 3}}, sink)


def test_scpi_redpitaya_sample_time_and_float_fields():
    sink = [{"dtype": F4, "values_per_slot": 2000}]
    base = {"resource": "TCPIP::127.0.0.1::5000::SOCKET"}
    with pytest.raises(ValueError, match=r"'sample_time_ns': got 12.0, expected redpitaya: one of 8, 16, 32"):
        scpi_scope.check_config(dict(base, sample_time_ns=12.0), sink)
    with pytest.raises(ValueError, match=r"expected float fields \(mV\)"):
        scpi_scope.check_config(base, [{"dtype": [("chA", "i2")], "values_per_slot": 2000}])
    with pytest.raises(ValueError, match=r"'trigger.source': got 'chC', expected a buffer field or an instrument"):
        scpi_scope.check_config(dict(base, trigger={"source": "chC"}), sink)


def test_link_that_opens_but_never_answers_ends_the_run():
    """A server that accepts connections but never answers: reconnecting does not go on forever."""
    import socket
    import threading

    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    held, stop = [], threading.Event()

    def accept():
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except socket.timeout:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    port = listener.getsockname()[1]
    cfg = {"host": "127.0.0.1", "port": port, "timeout": 0.2, "reconnect_timeout": 1.0}
    try:
        with SourceRun(redpitaya_mcpha, cfg, 100, [("chA", "i2")], after_fork=listener.close).start() as run:
            assert run.join(15) == 1
            message = run.error()
    finally:
        stop.set()
        t.join(5)
        listener.close()
        for s in held:
            s.close()
    assert "not restored within 1 s" in message and f"127.0.0.1:{port}" in message
    assert len(held) >= 2  # it did try again


def test_rigol_sample_time_other_than_configured_ends_the_run():
    kind = KINDS["rigol"]
    with kind.make_sim(Faults()) as sim:
        cfg = dict(kind.config(sim), sample_time_ns=2.0)
        with SourceRun(kind.fn, cfg, kind.samples, kind.dtype, after_fork=sim.forget_in_child).start() as run:
            assert run.join(15) == 1
            message = run.error()
            assert run.events(1, timeout=0.1) == []
    assert "InstrumentError" in message and "sampled every 1 ns, configured sample_time_ns is 2" in message


def test_a_third_family_is_a_table(monkeypatch):
    """A new command family is a new ScpiFamily table: here the Red Pitaya's with the short form of TRig."""
    import dataclasses

    from mimocorb.sources import scpi

    table = dataclasses.replace(
        scpi.FAMILIES["redpitaya"],
        name="redpitaya_short",
        arm=("ACQ:START", "ACQ:TR {trigger}_{slope}"),
        completion=(("ACQ:TR:STAT?", ("TD",), ("WAIT",)), ("ACQ:TR:FILL?", ("1",), ("0",))),
    )
    monkeypatch.setitem(scpi.FAMILIES, "redpitaya_short", table)
    kind = KINDS["redpitaya"]
    with kind.make_sim(Faults()) as sim:
        cfg = dict(kind.config(sim), family="redpitaya_short", number_of_events=3)
        with SourceRun(kind.fn, cfg, kind.samples, kind.dtype, after_fork=sim.forget_in_child).start() as run:
            events = run.events(3)
            assert run.join() == 0, run.error()
    assert [e.counter for e in events] == [1, 2, 3]
    for e in events:
        assert _same(e.data, kind.expected(sim, e.counter))
