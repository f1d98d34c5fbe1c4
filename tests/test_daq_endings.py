"""Every way a run can end: summary.json, buffer_stats.csv and the last status line agree
with the files on disk, event for event (real processes, signals at the moments named)."""

from __future__ import annotations

import os
import signal

import numpy as np
import pytest
import yaml
from daq_helpers import (
    Run,
    copy_setup,
    parse_status,
    pid_alive,
    read_table,
    run_folder,
    status_lines,
    summary,
    wait_until,
    worker_pids,
)

pytestmark = pytest.mark.timeout(150)

SOURCE = {"file_name": "modules/source", "fkt_name": "counting_source", "RB_assign": {"RB_1": "write"}}
FILTER = {
    "file_name": "modules/filter",
    "fkt_name": "select",
    "num_process": 2,
    "RB_assign": {"RB_1": "read", "RB_2": "write"},
}
TEXT = {
    "file_name": "modules/export",
    "fkt_name": "to_text",
    "num_process": 2,
    "RB_assign": {"RB_2": "read"},
    "config_file": "config/export.yaml",
}
WAVES = {"file_name": "modules/export", "fkt_name": "to_waveforms", "RB_assign": {"RB_1": "read"}}
SAMPLER = {"file_name": "modules/misbehave", "fkt_name": "sample_and_return", "RB_assign": {"RB_1": "read"}}


def make_setup(folder, extra_functions=(), config=None) -> str:
    """The chain (source -> 2 filters -> 2 text exporters, waveforms of RB_1) with the given config."""
    d = yaml.safe_load((folder / "chain_setup.yaml").read_text())
    d["Functions"] = [
        {"Fkt_main": {"config_file": "config/common.yaml"}},
        {"Fkt_1": SOURCE},
        {"Fkt_2": FILTER},
        {"Fkt_3": TEXT},
        {"Fkt_4": WAVES},
        *({f"Fkt_{5 + i}": f} for i, f in enumerate(extra_functions)),
    ]
    cfg = {
        "general": {"runtime": 60},
        "counting_source": {"events": 0, "sleeptime": 0.001},
        "to_waveforms": {"filename": "waveforms"},
    }
    for k, v in (config or {}).items():
        cfg.setdefault(k, {}).update(v)
    (folder / "config" / "common.yaml").write_text(yaml.safe_dump(cfg))
    path = folder / "endings_setup.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def flowing(line: str) -> bool:
    """A status line of the running run with events in RB_2."""
    return line.startswith("running") and "RB_2: " in line and "RB_2: 0 ev" not in line


def rows_on_disk(path) -> list:
    if path.suffix == ".npy":
        return list(np.load(path)["counter"])
    return [int(r["counter"]) for r in read_table(path)]


def check_agreement(folder, text: str) -> dict:
    """summary.json == last buffer_stats.csv rows == last status line == the exported files."""
    s = summary(folder)
    last_line = status_lines(text)[-1]
    assert last_line.startswith("ended"), last_line
    shown = parse_status(last_line)
    csv = {r["buffer"]: r for r in read_table(folder / "buffer_stats.csv", sep=",")}  # the last row of each
    for name, b in s["buffers"].items():
        assert shown[name] == {"events": b["events"], "lost": b["lost"]}, (name, last_line)
        assert (int(csv[name]["events"]), int(csv[name]["lost"])) == (b["events"], b["lost"])
        assert csv[name]["state"] == "ended"
        assert b["lost"] == sum(g["lost_total"] for g in b["groups"])
        assert b["voided"] == 0  # a source stopped while waiting for space still published its event
        for g in b["groups"]:
            assert g["pending"] == 0, g
            assert g["consumed"] + g["lost_total"] == b["events"] + b["abandoned"], (name, g)
    # every file an exporter reported is on disk with that many events, and they are what its group consumed
    by_worker = {}
    for f in s["files"]:
        got = rows_on_disk(folder / os.path.basename(f["path"]))
        assert len(got) == f["events"], f
        assert len(set(got)) == len(got)
        by_worker[f["worker"]] = (f, got)
    for name, b in s["buffers"].items():
        for g in b["groups"]:
            mine = [by_worker[w] for w in g["workers"] if w in by_worker]
            if mine:
                assert all(f["buffer"] == name for f, _ in mine)
                assert sum(f["events"] for f, _ in mine) == g["consumed"], (name, g)
    assert sorted(os.path.basename(f["path"]) for f in s["files"]) == [
        "selected-1.txt",
        "selected-2.txt",
        "waveforms.npy",
    ]
    # the chain: only selected events of the source, each once; none missing unless counted lost
    produced = [int(x) for x in (folder / "produced.txt").read_text().split()]
    published = s["buffers"]["RB_1"]["events"]
    assert published <= len(produced) <= published + 1
    exported = sorted(int(r["index"]) for p in ("selected-1.txt", "selected-2.txt") for r in read_table(folder / p))
    selected = [i for i in produced[:published] if i % 3 != 0]
    assert len(set(exported)) == len(exported) and set(exported) <= set(selected)
    filter_group = next(g for g in s["buffers"]["RB_1"]["groups"] if g["function"] == "select")
    missing = len(selected) - len(exported)
    assert 0 <= missing <= filter_group["lost_total"] + s["buffers"]["RB_2"]["lost"]
    assert all(not pid_alive(w["pid"]) for w in s["workers"])
    return s


ENDINGS = {
    # name: (config, extra functions, extra options, what is done while the data flow, exit code, stop reason)
    "clean": ({"counting_source": {"events": 300}}, (), [], None, 0, "source exhausted"),
    "runtime": ({}, (), ["--runtime", "1.5"], None, 0, "run time of 1.5 s reached"),
    "events": ({"counting_source": {"sleeptime": 0}}, (), ["--events", "200"], None, 0, "200 events reached"),
    "ctrl_c": ({}, (), [], "sigint", 0, "interrupted (Ctrl-C)"),
    "sigterm": ({}, (), [], "sigterm", 0, "terminated (SIGTERM)"),
    "failed_filter": ({"select": {"fail_at": 40}}, (), [], None, 1, "worker select-"),
    "consumer_returns_early": (
        {"sample_and_return": {"events": 5}},
        (SAMPLER,),
        ["--runtime", "2"],
        None,
        0,
        "run time",
    ),
    "killed_worker": ({}, (), [], "kill_filter", 1, "worker select-1 failed"),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_summary_stats_and_status_agree_with_the_files(tmp_path, ending):
    config, extra, options, action, code, reason = ENDINGS[ending]
    folder = copy_setup("chain", tmp_path)
    setup = make_setup(folder, extra, config)
    out = tmp_path / "out"
    run = Run([setup, "--headless", "--output", out, "--status-interval", "0.3", "--shutdown-timeout", "5", *options])
    try:
        if action:
            run.lines.wait_for(flowing, timeout=40)
            if action == "sigint":
                os.killpg(run.pid, signal.SIGINT)  # like Ctrl-C in a terminal: the whole process group
            elif action == "sigterm":
                os.kill(run.pid, signal.SIGTERM)
            else:
                pids = wait_until(lambda: worker_pids(run_folder(out)), 10, "worker pids in run.log")
                os.kill(pids["select-1"], signal.SIGKILL)
        rc = run.wait(timeout=90)
    finally:
        run.close()
    text = run.text()
    assert rc == code, text
    s = check_agreement(run_folder(out), text)
    assert s["stop_reason"].startswith(reason), s["stop_reason"]
    assert s["exit_code"] == code
    lost = {name: b["lost"] for name, b in s["buffers"].items()}
    if code == 0 and ending != "consumer_returns_early":
        assert lost == {"RB_1": 0, "RB_2": 0}, lost
        assert not any(w["failed"] for w in s["workers"])
    if ending == "failed_filter":
        failed = [w for w in s["workers"] if w["failed"]]
        assert len(failed) == 1 and "ZeroDivisionError" in failed[0]["traceback"]
        group = next(g for g in s["buffers"]["RB_1"]["groups"] if g["function"] == "select")
        assert group["lost"]["dead_reader"] == 1  # the event it crashed on: not consumed, lost
        assert group["retired"] is False or group["retired"] is True
    if ending == "consumer_returns_early":
        group = next(g for g in s["buffers"]["RB_1"]["groups"] if g["function"] == "sample_and_return")
        assert group["retired"] is True and group["consumed"] == 5
        assert group["lost"]["orphaned"] == s["buffers"]["RB_1"]["events"] - 5
        assert s["buffers"]["RB_1"]["events"] > 3 * 16  # the source was not held back by the ended group
        assert "sample_and_return (Fkt_5) has ended while the run goes on" in text
        assert "(1 group without readers)" in status_lines(text)[-1]
    if ending == "killed_worker":
        killed = [w for w in s["workers"] if w["failed"]]
        assert [w["name"] for w in killed] == ["select-1"]
        assert "killed by signal 9" in killed[0]["error"]
