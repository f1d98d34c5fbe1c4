"""Whole DAQ runs from setup files, in real subprocesses (headless, every wait bounded)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import numpy as np
import pytest
from daq_helpers import (
    LineReader,
    copy_setup,
    env,
    kill_group,
    our_segments,
    pid_alive,
    read_table,
    run_cli,
    run_folder,
    summary,
)

pytestmark = pytest.mark.timeout(120)


def expected_row(i: int, n: int = 8) -> tuple:
    """What the chain's filter makes of source event i (see daq_setups/chain/modules)."""
    cha = np.float32(i) + np.float32(0.5) * np.arange(n).astype(np.float32)
    return i, float(cha.astype(np.float64).sum()), float(cha.max())


def check_chain(folder, n_produced: int | None = None) -> list[dict]:
    """Every exported row matches what the source produced, and no selected event is missing."""
    produced = [int(x) for x in (folder / "produced.txt").read_text().split()]
    if n_produced is not None:
        assert produced == list(range(n_produced))
    rows = read_table(folder / "selected.txt")
    s = summary(folder)
    published = s["buffers"]["RB_1"]["events"]
    # the counter is the source's event number (1-based); the source may have produced one event
    # more than it published when the run was stopped
    assert published <= len(produced) <= published + 1
    selected = [i for i in produced[:published] if i % 3 != 0]
    got = sorted(rows, key=lambda r: int(r["counter"]))
    assert [int(r["index"]) for r in got] == selected
    for r in got:
        i, total, peak = expected_row(int(r["index"]))
        assert int(r["counter"]) == i + 1
        assert float(r["total"]) == total
        assert np.float32(r["peak"]) == np.float32(peak)
        assert 0 <= float(r["deadtime"]) <= 1
    assert s["buffers"]["RB_2"]["events"] == len(selected)
    return got


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_chain_event_by_event(tmp_path, method):
    out = tmp_path / "out"
    res = run_cli(
        [
            "run",
            copy_setup("chain", tmp_path) / "chain_setup.yaml",
            "--headless",
            "--output",
            out,
            "--start-method",
            method,
        ],
        timeout=90,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    folder = run_folder(out)
    check_chain(folder, n_produced=400)
    s = summary(folder)
    assert s["stop_reason"] == "source exhausted"
    assert s["start_method"] == method
    assert [w["name"] for w in s["workers"]] == ["counting_source", "select-1", "select-2", "to_text"]
    assert not any(w["failed"] or w["terminated"] for w in s["workers"])
    assert all(not pid_alive(w["pid"]) for w in s["workers"])
    # run folder: copies of setup and config files, run log with worker output, statistics
    for name in ("chain_setup.yaml", "common.yaml", "export.yaml", "run.log", "buffer_stats.csv"):
        assert (folder / name).is_file(), name
    log = (folder / "run.log").read_text()
    assert "counting_source" in log and "counting_source done" in log  # worker stdout, prefixed by its name
    stats = read_table(folder / "buffer_stats.csv", sep=",")
    assert {r["buffer"] for r in stats} == {"RB_1", "RB_2"}
    assert int(stats[-1]["events"]) == s["buffers"]["RB_2"]["events"]
    assert "Run ended: source exhausted" in res.stdout
    assert "exit code   0" in res.stdout


def test_runtime_and_events_options(tmp_path):
    setup = copy_setup("chain", tmp_path)
    (setup / "config" / "common.yaml").write_text("counting_source: {events: 0, sleeptime: 0.001}\n")
    out = tmp_path / "out"
    res = run_cli(["run", setup / "chain_setup.yaml", "--headless", "--output", out, "--events", "100"])
    assert res.returncode == 0, res.stdout + res.stderr
    s = summary(run_folder(out))
    assert s["stop_reason"] == "100 events reached"
    assert s["buffers"]["RB_1"]["events"] == 100  # exact: the source stops at the count
    check_chain(run_folder(out))

    out2 = tmp_path / "out2"
    res = run_cli(["run", setup / "chain_setup.yaml", "--headless", "--output", out2, "--runtime", "1.5"])
    assert res.returncode == 0, res.stdout + res.stderr
    s = summary(run_folder(out2))
    assert s["stop_reason"] == "run time of 1.5 s reached"
    assert 1.5 <= s["active_time_s"] < 5
    check_chain(run_folder(out2))


def test_v1_user_modules_unchanged(tmp_path):
    """1.x lab code (rbImport source, rbTransfer filter with two sinks, rb_toTxtfile) through run_mimoDAQ."""
    setup = copy_setup("v1_style", tmp_path)
    script = (
        "from mimocorb.buffer_control import run_mimoDAQ\n"
        "daq = run_mimoDAQ('simul_setup.yaml')\n"
        "daq.setup()\n"
        "raise SystemExit(daq.run())\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", script],
        cwd=setup,
        env=env(),
        capture_output=True,
        text=True,
        timeout=90,
        stdin=subprocess.DEVNULL,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    folder = run_folder(setup / "target")  # output_directory is relative to the setup file
    s = summary(folder)
    assert s["stop_reason"] == "150 events reached"
    rows = read_table(folder / "peaks.txt")
    assert list(rows[0]) == ["event id", "timestamp", "deadtime", "height", "position"]  # header_alias
    assert len(rows) == s["buffers"]["RB_3"]["events"] == s["buffers"]["RB_2"]["events"] > 0
    for r in rows:  # the source puts a pulse of height 1..2 at sample (event - 1) % 50
        assert int(r["position"]) == (int(r["event id"]) - 1) % 50
        assert 1.5 <= float(r["height"]) < 2.0
    assert "** simul_source ** started" in (folder / "run.log").read_text()
    assert (folder / "simul_config.yaml").is_file() and (folder / "simul_setup.yaml").is_file()


def test_crashing_worker(tmp_path):
    out = tmp_path / "out"
    res = run_cli(["run", copy_setup("crash", tmp_path) / "crash_setup.yaml", "--headless", "--output", out])
    assert res.returncode == 1, res.stdout + res.stderr
    text = res.stdout + res.stderr
    assert "worker fragile_filter failed" in text
    assert "Traceback (most recent call last)" in text
    assert "ZeroDivisionError: calibration constant is zero at event 20" in text
    folder = run_folder(out)
    s = summary(folder)
    assert s["stop_reason"] == "worker fragile_filter failed"
    assert s["exit_code"] == 1
    failed = [w for w in s["workers"] if w["failed"]]
    assert [w["name"] for w in failed] == ["fragile_filter"]
    assert "ZeroDivisionError" in failed[0]["traceback"]
    assert all(not pid_alive(w["pid"]) for w in s["workers"])
    assert "ZeroDivisionError" in (folder / "run.log").read_text()


def test_sigint_mid_run(tmp_path):
    pytest.importorskip("pyarrow")
    pd = pytest.importorskip("pandas")
    setup = copy_setup("chain", tmp_path)
    cfg = setup / "config" / "common.yaml"
    cfg.write_text(cfg.read_text().replace("events: 400", "events: 0"))
    out = tmp_path / "out"
    p = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mimocorb",
            "run",
            str(setup / "full_chain_setup.yaml"),
            "--headless",
            "--output",
            str(out),
            "--status-interval",
            "0.3",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=env(),
        start_new_session=True,
    )
    try:
        lines = LineReader(p.stdout)

        def busy(line: str) -> bool:
            return "RB_2: " in line and "RB_2: 0 ev" not in line and "workers 6/6" in line

        lines.wait_for(busy, timeout=30)
        os.killpg(p.pid, signal.SIGINT)  # like Ctrl-C in a terminal: the whole process group
        p.wait(timeout=60)
    finally:
        if p.poll() is None:
            kill_group(p)
            p.wait(timeout=10)
    text = lines.text()
    assert p.returncode == 0, text
    assert "Run ended: interrupted (Ctrl-C)" in text
    assert our_segments(p.pid) == []
    folder = run_folder(out)
    s = summary(folder)
    assert all(not pid_alive(w["pid"]) for w in s["workers"])
    assert not any(w["failed"] or w["terminated"] for w in s["workers"])
    rows = check_chain(folder)
    # every file complete and readable, every published event in it
    df = pd.read_parquet(folder / "selected.parquet")
    assert list(df.columns) == ["counter", "timestamp", "deadtime", "index", "total", "peak"]
    assert sorted(df["counter"]) == [int(r["counter"]) for r in rows]
    wf = np.load(folder / "waveforms.npy")
    assert len(wf) == s["buffers"]["RB_1"]["events"]
    for rec in wf[:50]:
        i = int(rec["counter"]) - 1
        assert np.array_equal(rec["data"]["chB"], 10 * i + np.arange(8))


def test_failed_consumer_releases_its_buffer(tmp_path):
    """The crash setup's filter is the only process of its function: when it fails, its reader group
    is retired (the source is not held back by it), and the summary and the run say so."""
    out = tmp_path / "out"
    res = run_cli(["run", copy_setup("crash", tmp_path) / "crash_setup.yaml", "--headless", "--output", out])
    assert res.returncode == 1, res.stdout + res.stderr
    s = summary(run_folder(out))
    (group,) = s["buffers"]["RB_1"]["groups"]
    assert group["function"] == "fragile_filter" and group["retired"] is True
    assert group["lost"]["dead_reader"] == 1  # the event it failed on
    assert group["consumed"] + group["lost_total"] == s["buffers"]["RB_1"]["events"]
    assert "fragile_filter (Fkt_2) has ended while the run goes on" in res.stdout


def test_setup_warnings_are_shown_once(tmp_path):
    setup = copy_setup("chain", tmp_path)
    text = (
        (setup / "chain_setup.yaml")
        .read_text()
        .replace("output_directory: target", "output_directory: target\ncolour: blue")
    )
    (setup / "chain_setup.yaml").write_text(text)
    out = tmp_path / "out"
    res = run_cli(["run", setup / "chain_setup.yaml", "--headless", "--output", out])
    assert res.returncode == 0, res.stdout + res.stderr
    assert (res.stdout + res.stderr).count("colour: unknown key") == 1
    assert (run_folder(out) / "run.log").read_text().count("colour: unknown key") == 1


def test_a_run_leaves_no_file_descriptor_to_the_garbage_collector(tmp_path):
    setup = copy_setup("chain", tmp_path) / "chain_setup.yaml"
    script = (
        "import gc, io, os, sys\n"
        "gc.disable()  # what is not closed explicitly stays open\n"
        "from mimocorb.daq.console import Console\n"
        "from mimocorb.daq.run_control import RunControl\n"
        "before = set(os.listdir('/proc/self/fd'))\n"
        f"run = RunControl({str(setup)!r}, verbose=0, headless=True, output_directory={str(tmp_path / 'out')!r},\n"
        "                 console=Console(io.StringIO(), verbose=0))\n"
        "code = run.run()\n"
        "left = set(os.listdir('/proc/self/fd')) - before\n"
        "print(code, sorted(os.readlink(f'/proc/self/fd/{f}') for f in left if os.path.exists(f'/proc/self/fd/{f}')))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", script], env=env(), capture_output=True, text=True, timeout=90, stdin=subprocess.DEVNULL
    )
    assert p.returncode == 0 and p.stdout.strip() == "0 []", p.stdout + p.stderr
