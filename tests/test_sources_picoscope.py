"""The PicoScope source at its boundary: a stand-in for picosdk's driver calls (tests/fake_picosdk.py).

No PicoScope and no Pico C library are needed: the fake checks the argument lists of
each driver family and delivers known samples; the real picosdk package is used to
check the message when Pico's C library is missing.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from mimocorb.sources import picoscope
from mimocorb.sources.pico import load_driver
from tests import fake_picosdk
from tests.source_helpers import SourceRun

F4 = [("chA", "f4"), ("chB", "f4")]
SAMPLES = 500


@pytest.fixture
def fake(request, tmp_path):
    family = getattr(request, "param", "ps5000a")
    log = tmp_path / "calls.jsonl"
    log.touch()
    old = fake_picosdk.install(family, str(log))
    yield family, str(log)
    sys.modules.pop(f"picosdk.{family}", None)
    if old is not None:
        sys.modules[f"picosdk.{family}"] = old


@pytest.mark.parametrize("fake", ["ps2000a", "ps3000a", "ps4000a", "ps5000a"], indirect=True)
def test_rapid_block_events_are_the_captures(fake):
    family, log = fake
    cfg = {
        "family": family,
        "range_mv": 500,
        "captures_per_block": 4,
        "pre_trigger_samples": 50,
        "timebase": 4,
        "number_of_events": 8,
        "channels": {"chA": "A", "chB": "C"},
        "trigger": {"source": "chB", "level_mv": 100, "slope": "falling"},
    }
    with SourceRun(picoscope, cfg, SAMPLES, F4).start() as run:
        events = run.events(8)
        assert run.join() == 0, run.error()
    assert [e.counter for e in events] == list(range(1, 9))
    scale = 500 / fake_picosdk.MAX_ADC
    for i, e in enumerate(events):
        block, capture = divmod(i, 4)
        np.testing.assert_allclose(e.data["chA"], fake_picosdk.counts(block, capture, 0, SAMPLES) * scale, rtol=1e-6)
        np.testing.assert_allclose(e.data["chB"], fake_picosdk.counts(block, capture, 2, SAMPLES) * scale, rtol=1e-6)
    assert len({e.timestamp for e in events[:4]}) == 1  # one block, one time
    calls = fake_picosdk.calls(log)
    names = [c[0] for c in calls]
    assert names[0] == "OpenUnit" and names[-2:] == ["Stop", "CloseUnit"]
    assert names.count("RunBlock") == 2 and names.count("GetValuesBulk") == 2
    trigger = next(args for name, args in calls if name == "SetSimpleTrigger")
    assert trigger[2] == 2 and trigger[3] == round(100 / 500 * fake_picosdk.MAX_ADC) and trigger[4] == 3  # C, falling
    assert ["MemorySegments", ["c_short", 4, "CArgObject"]] in calls and ["SetNoOfCaptures", ["c_short", 4]] in calls
    run_block = next(args for name, args in calls if name == "RunBlock")
    assert run_block[1:4] == [50, SAMPLES - 50, 4]


def test_no_trigger_ends_cleanly_after_trigger_timeout(tmp_path):
    log = str(tmp_path / "calls.jsonl")
    old = fake_picosdk.install("ps5000a", log, never_ready=True)
    try:
        cfg = {"trigger_timeout": 0.3, "captures_per_block": 2}
        with SourceRun(picoscope, cfg, SAMPLES, F4).start() as run:
            assert run.join(10) == 0, run.error()
            assert run.events(1, timeout=0.1) == []
        names = [c[0] for c in fake_picosdk.calls(log)]
        assert "IsReady" in names and "GetValuesBulk" not in names and names[-1] == "CloseUnit"
    finally:
        sys.modules.pop("picosdk.ps5000a", None)
        if old is not None:
            sys.modules["picosdk.ps5000a"] = old


def test_missing_c_library_is_named():
    pytest.importorskip("picosdk")
    if "picosdk.ps4000a" in sys.modules:
        pytest.skip("a ps4000a driver is loaded in this process")
    try:
        import picosdk.ps4000a  # noqa: F401
    except Exception:  # noqa: BLE001 - the C library is missing here, as expected on CI
        pass
    else:
        pytest.skip("Pico's C library is installed on this machine")
    with pytest.raises(ImportError, match=r"Pico's C library for ps4000a \(libps4000a\) could not be loaded.*PicoSDK"):
        load_driver("ps4000a")


def test_missing_picosdk_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "picosdk", None)
    with pytest.raises(ImportError, match=r"pip install 'mimocorb\[picoscope\]'"):
        load_driver("ps5000a")


def test_config_errors():
    sink = [{"dtype": F4, "values_per_slot": SAMPLES}]
    with pytest.raises(ValueError, match=r"'family': got 'ps6000', expected one of 'ps2000a'"):
        picoscope.check_config({"family": "ps6000"}, sink)
    with pytest.raises(ValueError, match=r"'range_mv': got 300, expected one of 10, 20, 50"):
        picoscope.check_config({"range_mv": 300}, sink)
    with pytest.raises(ValueError, match=r"'channels.chA': got 'E', expected an instrument channel, one of A, B, C, D"):
        picoscope.check_config({"channels": {"chA": "E", "chB": "B"}}, sink)
    with pytest.raises(ValueError, match=r"'trigger.level_mv': got 2000.0, expected a number in mV <= 1000"):
        picoscope.check_config({"trigger": {"level_mv": 2000.0}}, sink)
