"""The demo's run-folder analysis fits the spin precession from the exported decays."""

from __future__ import annotations

import json

import pytest

from mimocorb.demo.analysis import PLOT_PRECESSION, analyse_run, format_result
from mimocorb.muon.simulator import A_SPIN, T_SPIN_NS, pulseSimulator

HEADER = "counter,timestamp,deadtime,decay_time"


def _write(path, t):
    rows = [HEADER] + [f"{i},{i * 1e-4:.4f},0.0,{int(x)}" for i, x in enumerate(t)]
    path.write_text("\n".join(rows) + "\n")


def _run_folder(tmp_path, n: int, seed: int):
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
    t, up = sim.draw_decays(n)
    _write(tmp_path / "decays.csv", t)
    _write(tmp_path / "decays_up.csv", t[up])
    _write(tmp_path / "decays_down.csv", t[~up])
    (tmp_path / "summary.json").write_text(json.dumps({"buffers": {"RB_1": {"events": 13 * n}}}))
    return tmp_path


def test_precession_recovered_from_the_run_folder(tmp_path):
    pytest.importorskip("matplotlib")
    folder = _run_folder(tmp_path, 90_000, seed=11)
    r = analyse_run(folder)
    p = r.precession
    assert p is not None, r.precession_note
    assert abs(p.asymmetry - A_SPIN) < 3 * p.asymmetry_error, p.summary()
    assert abs(p.period - T_SPIN_NS) < 3 * p.period_error, p.summary()
    assert r.precession_note == ""  # enough decays: nothing to add
    assert PLOT_PRECESSION in r.plots and (folder / PLOT_PRECESSION).stat().st_size > 0
    text = "\n".join(format_result(r))
    assert text.splitlines()[0].startswith("tau = ") and "precession: A = " in text
    muon = json.loads((folder / "summary.json").read_text())["muon"]
    assert muon["precession"]["asymmetry"] == pytest.approx(p.asymmetry)
    assert muon["precession"]["period"] == pytest.approx(p.period)


def test_too_few_decays_says_how_many_are_needed(tmp_path):
    folder = _run_folder(tmp_path, 150, seed=3)
    r = analyse_run(folder, plots=False)
    assert r.precession is None
    assert "14,000 decays" in r.precession_note and "no fit" in r.precession_note
    assert "precession: no fit" in "\n".join(format_result(r))


def test_without_the_direction_files_the_note_names_them(tmp_path):
    folder = _run_folder(tmp_path, 300, seed=4)
    (folder / "decays_down.csv").unlink()
    r = analyse_run(folder, plots=False)
    assert r.precession is None and "decays_down.csv" in r.precession_note
