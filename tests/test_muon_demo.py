"""The muon demo as the default main job: ``mimocorb demo``, ``mimocorb run`` without a
setup, ``--copy`` then ``run`` of the copy, the fit and the files of the run folder.

The runs are real subprocesses (with a bound on every wait); the autouse fixture of
conftest checks that no shared-memory segment is left behind.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from daq_helpers import pid_alive, read_table, run_cli, run_folder, summary

from mimocorb.demo.analysis import analyse_run, read_decays
from mimocorb.demo.command import DEMO_DIR, copy_demo
from mimocorb.muon.pulse_finder import PulseFinder
from mimocorb.muon.simulator import TAU_MU_NS, pulseSimulator

#: Big enough for sigma/tau <= 5 % (about 1,300 decays in the fit range), small enough for CI.
CI_EVENTS = 20000
TAU_LINE = re.compile(r"^tau = (\d+) \+- (\d+) ns$", re.M)
PLOTS = ("decay_time.png", "pulse_heights.png", "double_pulse.png")


def _printed_tau(out: str) -> tuple[float, float]:
    m = TAU_LINE.search(out)
    assert m, f"no 'tau = ... +- ... ns' line in the output:\n{out}"
    return float(m.group(1)), float(m.group(2))


def _workers_gone(s: dict) -> None:
    alive = [w["pid"] for w in s["workers"] if w["pid"] and pid_alive(w["pid"])]
    assert not alive, f"worker processes still running: {alive}"


def _check_run_folder(folder: Path, out: str) -> dict:
    """Files of a demo run folder, and that summary.json agrees with the printed result."""
    s = summary(folder)
    assert s["exit_code"] == 0, s
    _workers_gone(s)
    for name in PLOTS:
        assert (folder / name).stat().st_size > 1000, name
    decays = read_decays(folder / "decays.csv")
    t = decays["decay_time"]
    # every accepted event is in the export, once, and summary.json says so
    assert s["accepted"] == t.size == s["buffers"]["RB_2"]["events"]
    assert len(set(decays["counter"].tolist())) == t.size
    up = read_table(folder / "decays_up.csv", ",")
    down = read_table(folder / "decays_down.csv", ",")
    assert len(up) + len(down) == t.size
    assert s["muon"]["up"] == len(up) and s["muon"]["down"] == len(down)
    assert s["events"] == s["buffers"]["RB_1"]["events"]
    assert s["muon"]["mean_rate_hz"] == pytest.approx(s["buffers"]["RB_1"]["mean_rate_hz"])
    assert s["rate_hz"] >= 0.9 * s["muon"]["mean_rate_hz"]  # start-up and end excluded
    assert f"rate {s['rate_hz']:.0f} Hz while taking data" in out
    tau, err = _printed_tau(out)
    assert tau == round(s["tau_ns"]) and err == round(s["tau_err_ns"])
    assert f"events {s['events']}, accepted double pulses {s['accepted']}" in out
    # waveforms of accepted events, the first of them double pulses
    wf = np.load(folder / "waveforms.npy")
    assert 0 < wf.size <= 200
    assert int(wf["counter"][0]) in set(decays["counter"].astype(int).tolist())
    return s


# ----------------------------------------------------------------- pipeline
@pytest.fixture(scope="module")
def ci_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("demo")
    r = run_cli(["demo", "--events", CI_EVENTS, "--output", out_dir, "--headless", "-q"], timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    return run_folder(out_dir), r.stdout


def test_demo_fits_the_muon_lifetime(ci_run):
    folder, out = ci_run
    s = summary(folder)
    assert s["events"] == CI_EVENTS  # the source stops after exactly N events
    assert 0.06 < s["accepted"] / s["events"] < 0.10  # 7-8 % double pulses (docs/muon-demo.md)
    tau, err = s["tau_ns"], s["tau_err_ns"]
    assert err / tau <= 0.05, f"tau = {tau:.0f} +- {err:.0f} ns: not precise enough"
    assert abs(tau - TAU_MU_NS) <= 3 * err, f"tau = {tau:.0f} +- {err:.0f} ns, expected {TAU_MU_NS}"
    assert s["muon"]["fit"]["n_used"] >= 1000


def test_demo_run_folder_agrees_with_printed_result(ci_run):
    folder, out = ci_run
    _check_run_folder(folder, out)
    for name in ("setup.yaml", "simulation.yaml", "demo_config.yaml", "run.log"):
        assert (folder / name).is_file(), name
    assert folder.name.startswith("muon_demo_")


def test_analysis_rerun_gives_the_same_fit(ci_run):
    folder, _ = ci_run
    again = analyse_run(folder, plots=False, update_summary=False)
    s = summary(folder)
    assert again.tau_ns == pytest.approx(s["tau_ns"]) and again.accepted == s["accepted"]


def test_run_without_setup_runs_the_demo(tmp_path):
    r = run_cli(["run", "--events", 3000, "--output", tmp_path, "--headless", "-qq"], timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    folder = run_folder(tmp_path)
    s = _check_run_folder(folder, r.stdout)
    assert s["setup_file"] == str(DEMO_DIR / "setup.yaml")


# --------------------------------------------------------------- the template
def test_copy_then_run_the_copy(tmp_path):
    dst = tmp_path / "my_demo"
    r = run_cli(["demo", "--copy", dst], timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    for name in ("setup.yaml", "config/simulation.yaml", "config/demo_config.yaml", "modules/muon_filter.py"):
        assert (dst / name).is_file(), name
    assert not list(dst.rglob("__init__.py")) and not list(dst.rglob("__pycache__"))
    # a second copy would overwrite: refused, nothing changed
    again = run_cli(["demo", "--copy", dst], timeout=30)
    assert again.returncode == 2 and "would overwrite" in again.stderr

    # an edit of the copy takes effect: the source ends by itself after 1500 events
    sim = dst / "config" / "simulation.yaml"
    sim.write_text(sim.read_text().replace("# number_of_events: 0", "number_of_events: 1500"))
    r = run_cli(["run", dst / "setup.yaml", "--headless", "-qq"], timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    folder = run_folder(dst / "target")  # the copy's own output_directory
    s = summary(folder)
    assert s["stop_reason"] == "source exhausted"
    assert s["buffers"]["RB_1"]["events"] == 1500
    _workers_gone(s)
    assert (folder / "decays.csv").is_file() and (folder / "waveforms.npy").is_file()

    # the demo command runs a copy too, and fits it
    r = run_cli(["demo", "--setup", dst / "setup.yaml", "--output", tmp_path / "out", "--headless", "-qq"], timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    _check_run_folder(run_folder(tmp_path / "out"), r.stdout)


def test_packaged_setup_names_packaged_functions_and_the_copy_names_its_files(tmp_path):
    from mimocorb.daq.setup_file import load_setup

    packaged = load_setup(DEMO_DIR / "setup.yaml")
    assert all(f.module_path is None for f in packaged.functions)  # no file of the user's
    assert {f.file_name for f in packaged.functions} == {"mimocorb.sources", "mimocorb.demo", "mimocorb.exporters"}
    copy_demo(tmp_path)
    copied = {f.fkt_name: f for f in load_setup(tmp_path / "setup.yaml").functions}
    for f in packaged.functions:
        c = copied[f.fkt_name]
        if f.file_name == "mimocorb.demo":  # the demo's own functions: the template's files, to edit
            assert c.module_path is not None and c.module_path.parent == tmp_path / "modules"
        else:
            assert c.file_name == f.file_name


def test_template_refuses_a_demo_function_outside_its_modules():
    from mimocorb.demo.command import template_setup

    good = "  - Fkt_2:\n      file_name: mimocorb.demo\n      fkt_name: calculate_decay_time\n"
    assert "file_name: modules/muon_filter\n" in template_setup(good)
    with pytest.raises(ValueError, match="simulation_source is not a function of the demo's modules"):
        template_setup(good.replace("calculate_decay_time", "simulation_source"))
    with pytest.raises(ValueError, match="not followed by its fkt_name"):
        template_setup("  - Fkt_2:\n      file_name: mimocorb.demo\n      num_process: 2\n")


def test_copy_demo_lists_what_it_wrote(tmp_path):
    files = copy_demo(tmp_path)
    rel = sorted(str(f.relative_to(tmp_path)) for f in files)
    assert "setup.yaml" in rel and all(not r.endswith("__init__.py") for r in rel)
    with pytest.raises(FileExistsError):
        copy_demo(tmp_path)


# ------------------------------------------------------------ the batch filter
def test_batches_of_any_size_give_the_single_event_results():
    cfg = {"number_of_samples": 4250, "sample_time_ns": 4, "pre_trigger_samples": 500, "analogue_offset": -0.48}
    sim = pulseSimulator({**cfg, "trigger_level": -440, "prb2ndPulse": 0.5, "seed": 7})
    names = ["chA", "chB", "chC", "chD"]
    sim.init(4, 4250, names)
    slots = np.zeros((200, 4250), dtype=[(c, "f4") for c in names])
    for i in range(len(slots)):
        ev = sim()
        for k, c in enumerate(names):
            slots[i][c] = ev[k]
    single = PulseFinder(cfg)
    expected = [single.analyse(e) for e in slots]
    assert sum(m is not None for m in expected) > 20
    finder = PulseFinder(cfg)
    got = []
    i = 0
    for k in [32, 1, 5, 32, 17, 3, 32, 64, 2, 1000]:  # growing, shrinking and single batches in turn
        got += finder.analyse_batch(slots[i : i + k])
        i += k
        if k == 1:
            got.append(finder.analyse(slots[i]))  # single events in between reuse the arrays too
            i += 1
    assert len(got) == len(slots)
    for e, g in zip(expected, got):
        assert (e is None) == (g is None)
        if e is not None:
            assert e.record.tobytes() == g.record.tobytes() and e.direction == g.direction


def test_packaged_setup_is_valid_and_names_the_displays():
    from mimocorb.daq.setup_file import load_setup

    s = load_setup(DEMO_DIR / "setup.yaml")
    fk = {f.fkt_name: f for f in s.functions}
    assert fk["calculate_decay_time"].num_process >= 2
    assert fk["plot_waveform"].rb_assign == {"RB_1": "observe"}
    assert fk["plot_histograms"].rb_assign == {"RB_2": "read"}
    assert "signatures" in fk["calculate_decay_time"].config
    assert not s.warnings, s.warnings
