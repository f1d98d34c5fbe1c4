"""Live displays (oscilloscope, histograms): config parsing, drawing, and headless
snapshots from real runs (``mimocorb run`` in a subprocess, and the 1.x functions on
real buffers in processes)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from daq_helpers import env, kill_group, our_segments, run_folder, summary  # noqa: E402

from mimocorb.gui.histograms import Histogram, HistogramDisplay  # noqa: E402
from mimocorb.gui.oscilloscope import Oscilloscope, ScopeConfig, min_max_reduce  # noqa: E402
from mimocorb.gui.snapshots import SnapshotSchedule, snapshot_path, write_png  # noqa: E402
from mimocorb.histogram_buffer import parse_histograms  # noqa: E402  (the 1.x fits: lifetime for decay_time)

BLUE = (31, 119, 180)  # tab:blue, first oscilloscope channel
GOLD = (218, 165, 32)  # goldenrod, histogram bars
RED = (214, 39, 40)  # tab:red, lifetime fit

SOURCE = '''
"""Pulses on a baseline: chA and chB, 1000 samples of 4 ns, trigger at sample 100."""
import time
import numpy as np
from mimocorb.buffer_control import rbImport, rbProcess


def pulses(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    n = sink_list[0]["values_per_slot"]
    sleeptime = float(config_dict.get("sleeptime", 0.002))
    rng = np.random.default_rng(7)
    t = np.arange(n)

    def generate():
        while True:
            h = rng.uniform(100, 400)
            a = -480 + rng.uniform(-4, 4, n) + h * np.exp(-(t - 100) / 25.0) * (t >= 100)
            b = -480 + rng.uniform(-4, 4, n) + 0.8 * h * np.exp(-(t - 103) / 25.0) * (t >= 103)
            yield [a.astype(np.float32), b.astype(np.float32)], None
            if sleeptime:
                time.sleep(sleeptime)

    rbImport(sink_list=sink_list, config_dict=config_dict, ufunc=generate, **rb_info)()


def decays(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    rng = np.random.default_rng(11)
    out = np.zeros(1, dtype=[("decay_time", "i4"), ("height", "f4")])

    def one(data):
        out["decay_time"] = int(rng.exponential(2197.0))
        out["height"] = float(data["chA"].max() + 480)
        return [out]

    rbProcess(source_list=source_list, sink_list=sink_list, config_dict=config_dict, ufunc=one, **rb_info)()
'''

DISPLAYS = """
from mimocorb.histogram_buffer import histogram_buffer
from mimocorb.plot_buffer import plot_buffer


def scope(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    plot_buffer(source_list, sink_list, observe_list, config_dict, **rb_info)()


def histos(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    histogram_buffer(source_list, sink_list, observe_list, config_dict, **rb_info)()
"""

SETUP = """
output_directory: target
RingBuffer:
  - RB_1: {{number_of_slots: 16, channel_per_slot: 1000, data_type: {{1: ['chA', 'float32'], 2: ['chB', 'float32']}}}}
  - RB_2: {{number_of_slots: 8, channel_per_slot: 1,
           data_type: {{1: ['decay_time', 'int32'], 2: ['height', 'float32']}}}}
Functions:
  - Fkt_main: {{config_file: config/common.yaml}}
  - Fkt_1: {{file_name: modules/source, fkt_name: pulses, num_process: 1, RB_assign: {{RB_1: write}}}}
  - Fkt_2: {{file_name: modules/source, fkt_name: decays, num_process: 1, RB_assign: {{RB_1: read, RB_2: write}}}}
{displays}
"""

DISPLAY_FUNCTIONS = """
  - Fkt_3: {file_name: modules/displays, fkt_name: scope, num_process: 1, RB_assign: {RB_1: observe},
            config_file: config/scope.yaml}
  - Fkt_4: {file_name: modules/displays, fkt_name: histos, num_process: 1, RB_assign: {RB_2: read},
            config_file: config/histos.yaml}
"""

COMMON = """
general:
  runtime: {runtime}
pulses:
  sleeptime: {sleeptime}
"""

SCOPE = """
title: Test pulses
sample_time_ns: 4
pre_trigger_samples: 100
analogue_offset: -0.48
trigger_level: -440
trigger_channel: chA
trigger_direction: rising
min_sleeptime: 0.2
snapshot_interval: 1
"""

HISTOS = """
title: Decay times
interval: 0.5
snapshot_interval: 1
histograms:
  decay_time: {range: [0, 15000], bins: 40, label: "decay time (ns)"}
  height: [0., 500., 50, 5., "pulse height (mV)", 1]
"""


def write_setup(folder: Path, runtime: float = 6.0, sleeptime: float = 0.002, displays: bool = True) -> Path:
    """A small DAQ with an oscilloscope on RB_1 and histograms of RB_2; returns the setup file."""
    (folder / "modules").mkdir(parents=True, exist_ok=True)
    (folder / "config").mkdir(exist_ok=True)
    (folder / "modules" / "source.py").write_text(textwrap.dedent(SOURCE))
    (folder / "modules" / "displays.py").write_text(textwrap.dedent(DISPLAYS))
    (folder / "config" / "common.yaml").write_text(COMMON.format(runtime=runtime, sleeptime=sleeptime))
    (folder / "config" / "scope.yaml").write_text(SCOPE)
    (folder / "config" / "histos.yaml").write_text(HISTOS)
    setup = folder / "setup.yaml"
    setup.write_text(SETUP.format(displays=DISPLAY_FUNCTIONS if displays else ""))
    return setup


def color_pixels(png: Path, rgb: tuple[int, int, int], tol: int = 40) -> int:
    """Pixels of ``png`` within ``tol`` of colour ``rgb``."""
    import matplotlib.image

    img = matplotlib.image.imread(str(png))[..., :3] * 255.0
    return int(np.sum(np.all(np.abs(img - np.array(rgb)) <= tol, axis=-1)))


def assert_not_blank(png: Path) -> None:
    import matplotlib.image

    img = matplotlib.image.imread(str(png))[..., :3]
    assert img.shape[0] > 200 and img.shape[1] > 300, img.shape
    assert img.std() > 0.05, f"{png} looks blank (pixel std {img.std():.3f})"


def display_env(display: str | None, headless: bool = False) -> dict:
    e = env()
    e.pop("DISPLAY", None)
    e.pop("MIMOCORB_HEADLESS", None)
    if display is not None:
        e["DISPLAY"] = display
    return e


def start_run(setup: Path, args: list, e: dict) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "mimocorb", "run", str(setup), "--output", str(setup.parent / "target"), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=e,
        start_new_session=True,
    )


def finish(p: subprocess.Popen, timeout: float) -> str:
    try:
        out, _ = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(p)
        out, _ = p.communicate(timeout=10)
        raise AssertionError(f"run did not end within {timeout} s:\n{out}") from None
    return out


# ----------------------------------------------------------------- units
def test_min_max_reduce_keeps_narrow_pulses():
    y = np.zeros(4250)
    y[1234] = 250.0
    y[3000] = -90.0
    idx, v = min_max_reduce(y, 500)
    assert len(v) <= 500 + 2 * 4250 // 500
    assert v.max() == 250.0 and v.min() == -90.0
    assert 1234 in idx and 3000 in idx
    assert np.all(np.diff(idx) >= 0)
    idx, v = min_max_reduce(y[:100], 500)
    assert len(v) == 100


def test_scope_config_1x_keys_and_errors():
    cfg = ScopeConfig.from_config(
        {"sample_time_ns": 4, "analogue_offset": -0.48, "trigger_level": -440, "pre_trigger_samples": 500},
        ["chA", "chB"],
        "RB_1",
    )
    assert cfg.channels == ["chA", "chB"]
    assert cfg.trigger_level_mv == pytest.approx(40.0)
    assert cfg.analogue_offset_mv == pytest.approx(-480.0)
    with pytest.raises(ValueError, match=r"channels \['chX'\] are not fields of buffer RB_1"):
        ScopeConfig.from_config({"channels": ["chX"]}, ["chA"], "RB_1")
    with pytest.raises(ValueError, match="sample_time_ns must be > 0, got 0"):
        ScopeConfig.from_config({"sample_time_ns": 0}, ["chA"], "RB_1")


def test_oscilloscope_shows_event_number_and_rate():
    cfg = ScopeConfig.from_config({"sample_time_ns": 4, "pre_trigger_samples": 10}, ["chA"], "RB_1")
    scope = Oscilloscope(cfg, 100)
    data = np.zeros(100, dtype=[("chA", "f4")])
    data["chA"][20] = 300
    md = np.zeros(1, dtype=[("counter", "i8"), ("timestamp", "f8"), ("deadtime", "f8")])
    for i in range(5):
        md[0] = (10 * i, 1000.0 + i, 0.0)
        scope.show(data, md)
    assert scope.rate() == pytest.approx(10.0)
    assert "# 40" in scope.info.get_text() and "10 Hz" in scope.info.get_text()
    x, y = scope.lines[0].get_data()
    assert x[0] == -40.0 and y.max() == 300


def test_histogram_config_1x_and_readable_forms():
    specs = parse_histograms(
        {
            "histograms": {
                "decay_time": {"range": [0, 15000], "bins": 50, "label": "t (ns)"},
                "height": [0.0, 500.0, 25, 5.0, "h (mV)", 1],
            }
        },
        ["decay_time", "height"],
    )
    assert [(s.field, s.low, s.high, s.bins, s.label, s.log, s.fit) for s in specs] == [
        ("decay_time", 0.0, 15000.0, 50, "t (ns)", False, "lifetime"),
        ("height", 0.0, 500.0, 25, "h (mV)", True, None),
    ]
    with pytest.raises(ValueError, match=r"'energy' is not a field of buffer RB_2 \(fields: \['decay_time'\]\)"):
        parse_histograms({"histograms": {"energy": [0, 1, 10]}}, ["decay_time"], "RB_2")
    with pytest.raises(ValueError, match=r"histograms.decay_time: need min < max, got \[5.0, 1.0\]"):
        parse_histograms({"histograms": {"decay_time": [5, 1, 10]}}, ["decay_time"])
    with pytest.raises(ValueError, match="no 'histograms' block"):
        parse_histograms({}, ["decay_time"])
    with pytest.raises(ValueError, match="expected"):
        parse_histograms({"histograms": {"decay_time": "lots"}}, ["decay_time"])


def test_histogram_moments_and_lifetime_fit(tmp_path):
    rng = np.random.default_rng(3)
    spec = parse_histograms({"histograms": {"decay_time": [0, 15000, 50]}}, ["decay_time"])
    disp = HistogramDisplay(spec, "t")
    t = rng.exponential(2197.0, 3000)
    disp.fill({"decay_time": t[:1000]})
    disp.fill({"decay_time": np.append(t[1000:], [np.nan, 1e6])})
    disp.update(force_fit=True)
    h: Histogram = disp.hists[0]
    assert h.entries == 3001 and h.outside == int(np.sum(t > 15000)) + 1
    assert h.counts.sum() == h.entries - h.outside
    fit = disp.fits[0]
    assert fit is not None and abs(fit.tau - 2197.0) < 4 * fit.tau_error
    assert f"tau = {fit.tau:.0f}" in disp.texts[0].get_text()
    png = write_png(disp.figure, tmp_path / "h.png")
    assert color_pixels(png, GOLD) > 2000 and color_pixels(png, RED) > 100


def test_a_histogram_display_draws_the_fit_it_is_given(tmp_path):
    """The generic display knows no fit: it calls the one it is given and draws its curve and text."""
    from mimocorb.gui import histograms as gui

    calls = []

    class Flat:
        fit_range, n_used = (0.0, 100.0), 0

        def pdf(self, x):
            return np.full_like(x, 1 / 100.0)

        def describe(self):
            return "flat, as given"

    def flat_fit(values, low, high):
        calls.append((len(values), low, high))
        Flat.n_used = len(values)
        return Flat()

    cfg = {"histograms": {"x": {"range": [0, 100], "bins": 10, "fit": "flat"}, "y": [0, 1, 5]}}
    with pytest.raises(ValueError, match=r"histograms.x: fit must be one of the fits given \(none given\)"):
        gui.parse_histograms(cfg, ["x", "y"])
    specs = gui.parse_histograms(cfg, ["x", "y"], fits={"flat": flat_fit})
    assert [s.fit for s in specs] == ["flat", None] and specs[0].fitter is flat_fit
    disp = gui.HistogramDisplay(specs, "given")
    disp.fill({"x": np.linspace(0.5, 99.5, 1000), "y": np.zeros(3)})
    disp.update(force_fit=True)
    assert calls == [(1000, 0.0, 100.0)] and disp.fits == [disp.fits[0], None]
    assert "flat, as given" in disp.texts[0].get_text() and "(fit of 1000)" in disp.texts[0].get_text()
    x, y = disp.fit_lines[0].get_data()
    assert np.allclose(y, 100.0)  # 1000 entries over 10 bins: 100 expected per bin
    png = write_png(disp.figure, tmp_path / "flat.png")
    assert color_pixels(png, RED) > 100
    # a decay_time field gets no fit of its own in the generic display
    assert gui.parse_histograms({"histograms": {"decay_time": [0, 15000, 50]}}, ["decay_time"])[0].fitter is None


def test_a_fit_named_by_reference_in_the_config():
    from mimocorb.gui import histograms as gui
    from mimocorb.muon.lifetime import fit_lifetime_in_range

    ref = "mimocorb.muon.lifetime:fit_lifetime_in_range"
    (spec,) = gui.parse_histograms({"histograms": {"t": {"range": [0, 15000], "fit": ref}}}, ["t"])
    assert spec.fitter is fit_lifetime_in_range
    with pytest.raises(ValueError, match="fit 'mimocorb.muon.lifetime:nothing' cannot be loaded"):
        gui.parse_histograms({"histograms": {"t": {"range": [0, 1], "fit": "mimocorb.muon.lifetime:nothing"}}}, ["t"])


def test_snapshots_are_atomic_and_scheduled(tmp_path):
    from matplotlib.figure import Figure

    fig = Figure()
    fig.add_subplot().plot([0, 1], [0, 1])
    path = snapshot_path({"directory_prefix": str(tmp_path) + "/"}, "oscilloscope", "RB/1")
    assert path == tmp_path / "oscilloscope-RB_1.png"
    s = SnapshotSchedule(fig, path, interval=0.2)
    assert not s.due()
    time.sleep(0.25)
    assert s.due()
    assert s.save() == path and path.stat().st_size > 1000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["oscilloscope-RB_1.png"]  # no temporary left
    assert SnapshotSchedule(fig, tmp_path / "missing" / "x.png").save() is None  # logged, not raised


# ------------------------------------------------------ functions on buffers
def _pulse_writer(setup_dict, n):
    from mimocorb.mimo_buffer import Writer

    w = Writer(setup_dict)
    t = np.arange(setup_dict["values_per_slot"])
    for _ in range(n):
        s = w.get_new_buffer()
        s["chA"] = -480 + 200 * np.exp(-(t - 100) / 25.0) * (t >= 100)
        w.process_buffer()
        time.sleep(0.003)
    w.close()


def _scalar_writer(setup_dict, n):
    from mimocorb.mimo_buffer import Writer

    w = Writer(setup_dict)
    for i in range(n):
        w.put(np.array([(i % 97) * 100], dtype=[("decay_time", "i4")]))
    w.close()


def _run_scope(observe_dict, config):
    from mimocorb.plot_buffer import plot_buffer

    os.environ["MIMOCORB_HEADLESS"] = "1"
    n = plot_buffer(None, None, [observe_dict], config, RB_1="observe")()
    sys.exit(0 if n > 0 else 3)


def _run_histos(reader_dict, config):
    from mimocorb.histogram_buffer import histogram_buffer

    os.environ["MIMOCORB_HEADLESS"] = "1"
    n = histogram_buffer([reader_dict], None, None, config, RB_2="read")()
    sys.exit(0 if n == 5000 else 3)  # a reader group: every event, exactly


def test_1x_functions_on_real_buffers(procs, tmp_path):
    from mimocorb.mimo_buffer import NewBuffer

    prefix = str(tmp_path) + "/"
    with NewBuffer(8, 1000, [("chA", "f4")], name="RB_1") as b1, NewBuffer(4, 1, [("decay_time", "i4")]) as b2:
        scope = procs.start(
            _run_scope,
            b1.new_observer(),
            {"sample_time_ns": 4, "pre_trigger_samples": 100, "directory_prefix": prefix, "snapshot_interval": 0.5},
        )
        hist = procs.start(
            _run_histos,
            b2.new_reader_group(),
            {"histograms": {"decay_time": [0, 10000, 50]}, "directory_prefix": prefix, "snapshot_interval": 0.5},
        )
        w1 = procs.start(_pulse_writer, b1.new_writer(), 300)
        w2 = procs.start(_scalar_writer, b2.new_writer(), 5000)  # 4 slots: the histograms must keep up
        w1.join(30)
        w2.join(30)
        assert w1.exitcode == 0 and w2.exitcode == 0
        b1.shutdown(timeout=10)
        b2.shutdown(timeout=10)
        scope.join(20)
        hist.join(20)
        assert scope.exitcode == 0, "the oscilloscope showed no event"
        assert hist.exitcode == 0, "the histograms did not see every event"
    osc, his = tmp_path / "oscilloscope-RB_1.png", tmp_path / "histograms-RB_2.png"
    assert_not_blank(osc)
    assert_not_blank(his)
    assert color_pixels(osc, BLUE) > 100
    assert color_pixels(his, GOLD) > 2000


# ------------------------------------------------------------------ runs
@pytest.mark.parametrize("how", ["no-display", "headless-flag"])
def test_headless_run_writes_snapshots_during_and_after(tmp_path, how):
    """Without a screen (no $DISPLAY), or with --headless even if $DISPLAY is set, the
    displays write PNG snapshots into the run folder while the run goes on and at the end."""
    setup = write_setup(tmp_path, runtime=7.0)
    if how == "no-display":
        p = start_run(setup, ["-q"], display_env(None))
    else:  # a display that does not exist: a window attempt would fail loudly
        p = start_run(setup, ["--headless", "-q"], display_env(":4242"))
    try:
        deadline = time.monotonic() + 30
        folder = None
        while time.monotonic() < deadline and p.poll() is None:
            found = list((tmp_path / "target").glob("*/oscilloscope-RB_1.png"))
            if found and list(found[0].parent.glob("histograms-RB_2.png")):
                folder = found[0].parent
                break
            time.sleep(0.2)
        assert folder is not None and p.poll() is None, "no snapshot appeared while the run was going on"
        out = finish(p, 60)
    finally:
        kill_group(p)
    assert p.returncode == 0, out
    assert run_folder(tmp_path / "target") == folder
    s = summary(folder)
    assert s["exit_code"] == 0 and not any(w["failed"] or w["terminated"] for w in s["workers"]), s["workers"]
    osc, his = folder / "oscilloscope-RB_1.png", folder / "histograms-RB_2.png"
    assert_not_blank(osc)
    assert_not_blank(his)
    assert color_pixels(osc, BLUE) > 100, "no chA trace on the oscilloscope"
    assert color_pixels(his, GOLD) > 2000, "no histogram bars"
    assert not [f for f in folder.iterdir() if f.name.endswith(".tmp")]
    assert not our_segments(p.pid)
