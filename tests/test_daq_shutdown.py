"""The end of a run: workers are asked to finish with SIGTERM, the waits run in parallel and a
second Ctrl-C cuts them, late workers are named with what they held, nothing is left running
when the run control itself is killed, and Ctrl-C before the start is no bad setup."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys

import pytest
import yaml
from daq_helpers import (
    Run,
    copy_setup,
    drop_segments_of,
    env,
    pid_alive,
    read_table,
    run_folder,
    summary,
    wait_until,
    worker_pids,
)

pytestmark = pytest.mark.timeout(150)


def write_setup(folder, buffers: dict, functions: list, config: dict) -> str:
    """A setup file in the copied chain folder (its modules and config/export.yaml are there)."""
    d = {
        "RingBuffer": [{k: v} for k, v in buffers.items()],
        "Functions": [{"Fkt_main": {"config_file": "config/common.yaml"}}]
        + [{f"Fkt_{i + 1}": f} for i, f in enumerate(functions)],
    }
    (folder / "config" / "common.yaml").write_text(yaml.safe_dump({"general": {"runtime": 60}, **config}))
    path = folder / "test_setup.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


RB = {"number_of_slots": 16, "channel_per_slot": 8, "data_type": {1: ["chA", "float32"], 2: ["chB", "int32"]}}
RB_SMALL = {
    "number_of_slots": 8,
    "channel_per_slot": 1,
    "data_type": {1: ["index", "int64"], 2: ["total", "float64"], 3: ["peak", "float32"]},
}
SOURCE = {"file_name": "modules/source", "fkt_name": "counting_source", "RB_assign": {"RB_1": "write"}}


def fn(module: str, name: str, assign: dict, **more) -> dict:
    return {"file_name": f"modules/{module}", "fkt_name": name, "RB_assign": assign, **more}


def test_second_ctrl_c_cuts_the_wait_and_the_slow_exporter_closes_its_file(tmp_path):
    """Ctrl-C while a slow Parquet exporter has a backlog; Ctrl-C again: the shutdown wait (60 s)
    is cut, the exporter is asked to finish (SIGTERM) and closes a complete, readable file."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    folder = copy_setup("chain", tmp_path)
    setup = write_setup(
        folder,
        {"RB_1": {**RB, "number_of_slots": 256}},
        [SOURCE, fn("misbehave", "slow_parquet", {"RB_1": "read"})],
        {"counting_source": {"events": 0, "sleeptime": 0}, "slow_parquet": {"filename": "slow", "delay": 0.02}},
    )
    out = tmp_path / "out"
    run = Run([setup, "--headless", "--output", out, "--status-interval", "0.2", "--shutdown-timeout", "60"])
    try:
        run.lines.wait_for(lambda line: line.startswith("running") and "fill 256/256" in line, timeout=40)
        os.killpg(run.pid, signal.SIGINT)
        run.lines.wait_for(lambda line: line.startswith("stopping"), timeout=20)
        os.killpg(run.pid, signal.SIGINT)  # the backlog would take about 5 s, the timeout is 60 s
        rc = run.wait(timeout=30)
    finally:
        run.close()
    text = run.text()
    assert rc == 1, text  # the exporter did not get through its backlog
    s = summary(run_folder(out))
    assert s["stop_reason"] == "interrupted (Ctrl-C)"
    (exporter,) = [w for w in s["workers"] if w["function"] == "slow_parquet"]
    assert exporter["ended_by"] == "timed out" and exporter["failed"], exporter
    assert "asking it to finish (SIGTERM)" in text
    df = pd.read_parquet(run_folder(out) / "slow.parquet")  # the footer was written: the file is complete
    (f,) = s["files"]
    (group,) = s["buffers"]["RB_1"]["groups"]
    assert len(df) == f["events"] == group["consumed"] > 0
    assert sorted(df["counter"]) == list(range(1, len(df) + 1))
    b = s["buffers"]["RB_1"]
    assert group["lost_total"] == b["events"] + b["voided"] - group["consumed"] > 0


def log_time(folder, text: str) -> datetime.datetime:
    (line,) = [x for x in (folder / "run.log").read_text().splitlines() if text in x]
    return datetime.datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


def test_late_workers_are_ended_together_and_named_with_what_they_held(tmp_path):
    """A consumer that catches SystemExit, one asleep in user code holding an event, a source whose
    trigger never comes: each is asked to finish at the deadline (together, not one after the
    other), the first is killed; the run says exit 1 and names each with what it held."""
    folder = copy_setup("chain", tmp_path)
    setup = write_setup(
        folder,
        {"RB_1": RB, "RB_2": RB_SMALL},
        [
            SOURCE,
            fn("misbehave", "stubborn", {"RB_1": "read"}),
            fn("misbehave", "sleeper", {"RB_1": "read"}),
            fn("export", "to_waveforms", {"RB_1": "read"}),
            fn("misbehave", "silent_source", {"RB_2": "write"}),
            fn("export", "to_text", {"RB_2": "read"}, config_file="config/export.yaml"),
        ],
        {"counting_source": {"events": 0, "sleeptime": 0.001}, "sleeper": {"events": 3}},
    )
    out = tmp_path / "out"
    run = Run([setup, "--headless", "--output", out, "--runtime", "1", "--shutdown-timeout", "3"])
    try:
        rc = run.wait(timeout=60)
    finally:
        run.close()
    text = run.text()
    assert rc == 1, text
    folder = run_folder(out)
    s = summary(folder)
    w = {x["name"]: x for x in s["workers"]}
    assert {n for n, x in w.items() if x["failed"]} == {"stubborn", "sleeper", "silent_source"}
    assert w["stubborn"]["ended_by"] == "killed" and "killed" in w["stubborn"]["error"]
    assert w["sleeper"]["ended_by"] == "timed out"
    (held,) = w["sleeper"]["held"]
    groups = {g["function"]: g for g in s["buffers"]["RB_1"]["groups"]}
    assert held == {"buffer": "RB_1", "role": "reader", "group": groups["sleeper"]["group"], "events": 1}
    assert "held 1 event of RB_1 group" in w["sleeper"]["error"]
    assert w["silent_source"]["ended_by"] == "timed out" and w["silent_source"]["held"] == []
    # the event the sleeper held was not consumed: it is lost to a dead reader; the rest it never got
    assert groups["sleeper"]["consumed"] == 2 and groups["sleeper"]["lost"]["dead_reader"] == 1
    for g in groups.values():
        # every claim is consumed, lost, or (given back unfilled) voided; the group passed all of them
        assert (
            g["consumed"] + g["lost_total"] + g["voided"]
            == s["buffers"]["RB_1"]["events"] + s["buffers"]["RB_1"]["voided"]
        )
    # one message each, and the two late consumers of RB_1 were asked at the same deadline
    for name in ("stubborn", "sleeper", "silent_source"):
        assert text.count(f"worker {name} did not end within 3 s") == 1, text
    asked = [log_time(folder, f"worker {n} did not end within") for n in ("stubborn", "sleeper")]
    assert abs((asked[0] - asked[1]).total_seconds()) < 1.0  # in sequence they would be >= 3 s apart
    assert all(not pid_alive(x["pid"]) for x in s["workers"])


def test_workers_end_when_the_run_control_is_killed(tmp_path):
    """SIGKILL of the run control: a chatty source whose buffer is only observed (it never waits)
    and the oscilloscope display both end on their own, each within a bound."""
    pytest.importorskip("matplotlib")
    folder = copy_setup("chain", tmp_path)
    setup = write_setup(
        folder,
        {"RB_1": RB},
        [fn("misbehave", "printing_source", {"RB_1": "write"}), fn("misbehave", "scope", {"RB_1": "observe"})],
        {},
    )
    out = tmp_path / "out"
    run = Run([setup, "--headless", "--output", out, "--status-interval", "0.2", "-q"])
    try:
        run.lines.wait_for(lambda line: line.startswith("running") and "RB_1: 0 ev" not in line, timeout=40)
        pids = wait_until(lambda: worker_pids(run_folder(out)), 10, "worker pids in run.log")
        assert set(pids) == {"printing_source", "scope"}
        os.kill(run.pid, signal.SIGKILL)
        run.proc.wait(timeout=10)
        wait_until(lambda: not any(pid_alive(p) for p in pids.values()), 30, f"the workers {pids} ending")
    finally:
        for p in worker_pids(run_folder(out)).values() if out.exists() else ():
            if pid_alive(p):
                os.kill(p, signal.SIGKILL)
        run.close()
        drop_segments_of(run.pid)


def test_ctrl_c_while_the_modules_are_checked_is_no_bad_setup(tmp_path):
    folder = copy_setup("chain", tmp_path)
    marker = tmp_path / "importing"
    (folder / "modules" / "waits.py").write_text(
        f"import time\nopen({str(marker)!r}, 'w').close()\ntime.sleep(60)\n\ndef f(*a, **k):\n    pass\n"
    )
    setup = write_setup(folder, {"RB_1": RB}, [SOURCE, fn("waits", "f", {"RB_1": "read"})], {})
    out = tmp_path / "out"
    run = Run([setup, "--headless", "--output", out])
    try:
        wait_until(marker.exists, 30, "the module import")
        os.killpg(run.pid, signal.SIGINT)
        rc = run.wait(timeout=30)
    finally:
        run.close()
    text = run.text()
    assert rc == 130, text
    assert "interrupted while checking the setup" in text and "invalid setup" not in text
    assert not out.exists()


def test_ctrl_c_during_the_set_up_still_writes_the_summary(tmp_path):
    """Ctrl-C after the run folder exists but before the workers start: no traceback, a summary."""
    folder = copy_setup("chain", tmp_path)
    out = tmp_path / "out"
    script = (
        "import os, signal, sys\n"
        "from mimocorb.daq.run_folder import RunFolder\n"
        "copy = RunFolder.copy_inputs\n"
        "def interrupted(self, files):\n"
        "    copy(self, files)\n"
        "    os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C right after the run folder is made\n"
        "RunFolder.copy_inputs = interrupted\n"
        "from mimocorb.cli import main\n"
        f"sys.exit(main(['run', {str(folder / 'chain_setup.yaml')!r}, '--headless', '--output', {str(out)!r}]))\n"
    )
    p = subprocess.run(
        [sys.executable, "-c", script], env=env(), capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Traceback" not in p.stderr
    s = summary(run_folder(out))
    assert s["stop_reason"].startswith("interrupted (Ctrl-C)")
    assert all(w["pid"] is None for w in s["workers"])  # nothing was started
    assert not (run_folder(out) / "produced.txt").exists()


def test_runtime_excludes_the_shutdown(tmp_path):
    """active_time_s and the mean rates end where data taking ended, not after a long shutdown."""
    folder = copy_setup("chain", tmp_path)
    setup = write_setup(
        folder,
        {"RB_1": RB},
        [SOURCE, fn("misbehave", "stubborn", {"RB_1": "read"})],
        {"counting_source": {"events": 0, "sleeptime": 0.001}},
    )
    out = tmp_path / "out"
    run = Run([setup, "--headless", "--output", out, "--runtime", "1", "--shutdown-timeout", "2"])
    try:
        run.wait(timeout=60)
    finally:
        run.close()
    s = summary(run_folder(out))
    assert s["run_time_s"] > 3  # the stubborn consumer took the shutdown timeout and the grace
    assert 1.0 <= s["active_time_s"] < 2.0
    b = s["buffers"]["RB_1"]
    assert b["mean_rate_hz"] == pytest.approx(b["events"] / s["active_time_s"], rel=0.01)
    stats = read_table(run_folder(out) / "buffer_stats.csv", sep=",")
    assert stats[-1]["state"] == "ended"
