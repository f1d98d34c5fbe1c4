"""The sources package: lazy names and imports, the extras named when missing, the simulator
source in a setup-file run, and the instrument simulators' command line."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import mimocorb.sources as sources
from tests.daq_helpers import LineReader, env, kill_group, run_cli, run_folder

LIBRARIES = ("pyvisa", "pyvisa_py", "picosdk", "h5py", "pyarrow")


def test_names_and_check_config():
    for name in sources.__all__:
        fn = getattr(sources, name)
        assert fn.__name__ == name and callable(fn.check_config), name
        assert "Config keys" in fn.__doc__ or "config" in fn.__doc__.lower()
    with pytest.raises(AttributeError):
        sources.no_such_source  # noqa: B018


def test_importing_the_sources_loads_no_instrument_library():
    code = (
        "import sys, mimocorb.sources as s\n"
        "fns = [getattr(s, n) for n in s.__all__]\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {LIBRARIES!r}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_missing_pyvisa_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "pyvisa", None)
    sink = [{"dtype": [("chA", "f4")], "values_per_slot": 100}]
    with pytest.raises(
        ImportError, match=r"scpi_scope needs pyvisa, which is not installed: pip install 'mimocorb\[instruments\]'"
    ):
        sources.scpi_scope.check_config({"resource": "TCPIP::h::5000::SOCKET"}, sink)


def test_sink_must_be_one_buffer_with_fields():
    with pytest.raises(ValueError, match=r"redpitaya_mcpha: needs exactly one buffer to write"):
        sources.redpitaya_mcpha.check_config({"host": "h"}, [])
    with pytest.raises(ValueError, match=r"has no named fields"):
        sources.redpitaya_mcpha.check_config({"host": "h"}, [{"dtype": "i2", "values_per_slot": 10}])
    with pytest.raises(ValueError, match=r"writes exactly one buffer, got 2"):
        sink = {"dtype": [("chA", "i2")], "values_per_slot": 10}
        sources.redpitaya_mcpha.check_config({"host": "h"}, [sink, sink])


def test_unknown_keys_are_reported(caplog):
    sink = [{"dtype": [("chA", "i2")], "values_per_slot": 10}]
    sources.redpitaya_mcpha.check_config({"host": "h", "sampels": 10, "trigger": {"levl": 3}}, sink)
    text = caplog.text
    assert "config keys sampels are not used" in text and "trigger.levl" in text


def test_simulator_is_the_demos_source():
    from mimocorb import demo as muon_source
    from mimocorb.sources import simulated

    assert simulated.simulation_source is muon_source.simulation_source
    sink = [{"dtype": [("chA", "f4"), ("chB", "f4")], "values_per_slot": 1000}]
    cfg = {"sample_time_ns": 4, "pre_trigger_samples": 100, "analogue_offset": -0.48}
    sources.simulator.check_config(cfg, sink)
    with pytest.raises(ValueError, match=r"simulator: config key 'number_of_samples': got 999, expected the values"):
        sources.simulator.check_config(dict(cfg, number_of_samples=999), sink)
    with pytest.raises(ValueError, match=r"simulator: config key 'analogue_offset': got None"):
        sources.simulator.check_config({"sample_time_ns": 4, "pre_trigger_samples": 100}, sink)


def test_simulator_source_in_a_setup_file_run(tmp_path):
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "src.py").write_text("from mimocorb.sources import simulator  # noqa: F401\n")
    (tmp_path / "modules" / "save.py").write_text(
        textwrap.dedent("""
        from mimocorb.buffer_control import rb_toWaveformfile

        def save(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
            rb_toWaveformfile(source_list=source_list, config_dict=config_dict, **rb_info)()
        """)
    )
    (tmp_path / "sim.yaml").write_text(
        "sample_time_ns: 4\npre_trigger_samples: 100\nanalogue_offset: -0.48\ntrigger_level: -440\n"
        "sleeptime: 0\nnumber_of_events: 25\nseed: 3\n"
    )
    (tmp_path / "save.yaml").write_text("filename: wf\n")
    (tmp_path / "setup.yaml").write_text(
        textwrap.dedent("""
        RingBuffer:
          - RB_1: {number_of_slots: 8, channel_per_slot: 1000,
                   data_type: {1: ['chA', 'float32'], 2: ['chB', 'float32']}}
        Functions:
          - Fkt_1: {file_name: modules/src, fkt_name: simulator, num_process: 1, RB_assign: {RB_1: write},
                    config_file: sim.yaml}
          - Fkt_2: {file_name: modules/save, fkt_name: save, num_process: 1, RB_assign: {RB_1: read},
                    config_file: save.yaml}
        """)
    )
    res = run_cli(["run", tmp_path / "setup.yaml", "--headless", "--output", tmp_path / "out"], timeout=90)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = np.load(run_folder(tmp_path / "out") / "wf.npy")
    assert len(rec) == 25 and list(rec["counter"]) == list(range(1, 26))
    assert abs(float(np.median(rec["data"]["chA"])) + 480) < 10  # the baseline at -480 mV


def test_simulators_command_line():
    p = subprocess.Popen(
        [sys.executable, "-m", "mimocorb.sources.simulators", "mcpha", "--port", "0", "--rate", "1000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env(),
        start_new_session=True,
    )
    try:
        lines = LineReader(p.stdout)
        line = lines.wait_for(lambda s: "simulator on" in s, timeout=30)
        port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
            s.settimeout(5)
            s.sendall((11 << 56).to_bytes(8, "little"))  # read status
            status = b""
            while len(status) < 36:
                status += s.recv(36 - len(status))
        assert len(status) == 36
        p.send_signal(signal.SIGINT)
        assert p.wait(timeout=10) == 0
    finally:
        if p.poll() is None:
            kill_group(p)
            p.wait(timeout=10)
        p.stdout.close()
        p.stderr.close()
