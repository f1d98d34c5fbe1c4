"""The restart policy of a run (``restart: {max, within}`` in a function's entry): real runs in
subprocesses, every wait bounded."""

from __future__ import annotations

import re

import pytest
from daq_helpers import copy_setup, our_segments, read_table, run_cli, run_folder, summary

from mimocorb.daq.setup_file import SetupFileError, load_setup

pytestmark = pytest.mark.timeout(120)

N = 3000


def set_yaml(path, **values) -> None:
    path.write_text("".join(f"{k}: {v}\n" for k, v in values.items()))


def exported_counters(folder) -> list[int]:
    return [int(r["counter"]) for r in read_table(folder / "exported.txt")]


def flaky(summary_: dict) -> dict:
    (w,) = [w for w in summary_["workers"] if w["function"] == "flaky_filter"]
    return w


def test_failed_filter_is_started_again_and_every_event_exported_once(tmp_path):
    setup = copy_setup("restart", tmp_path)
    out = tmp_path / "out"
    res = run_cli(["run", setup / "restart_setup.yaml", "--headless", "--output", out], timeout=90)
    assert res.returncode == 0, res.stdout + res.stderr
    folder = run_folder(out)
    assert exported_counters(folder) == list(range(1, N + 1)), "every event exported once, in order"
    s = summary(folder)
    w = flaky(s)
    assert w["restarts"] == 1 and not w["failed"], w
    (r,) = w["restarted"]
    assert r["cause"] == "exit code 3" and r["pid"] != w["pid"], w
    assert len(list(folder.glob("flaky-failed-*"))) == 1
    assert s["stop_reason"] == "source exhausted"
    assert s["buffers"]["RB_1"]["lost"] == 0 and s["buffers"]["RB_2"]["events"] == N
    (group,) = s["buffers"]["RB_1"]["groups"]
    assert group["retired"] is False and group["consumed"] == N
    said = re.compile(
        rf"worker flaky_filter \(pid {r['pid']}\) failed \(exit code 3(, when last seen \(held .*\))?\): "
        rf"started again as pid {w['pid']} "
        r"\(restart 1 of at most 3 within 60 s\)"
    )
    assert said.search(res.stdout), res.stdout
    assert said.search((folder / "run.log").read_text())
    assert our_segments(0) == []


def test_restarts_beyond_the_policy_are_a_failure(tmp_path):
    """Three failures, at most two restarts within 60 s: the third ends the run as without a policy."""
    setup = copy_setup("restart", tmp_path)
    set_yaml(setup / "flaky.yaml", fail_after=100, failures=3)
    text = (setup / "restart_setup.yaml").read_text().replace("{max: 3, within: 60}", "{max: 2, within: 60}")
    (setup / "restart_setup.yaml").write_text(text)
    out = tmp_path / "out"
    res = run_cli(["run", setup / "restart_setup.yaml", "--headless", "--output", out], timeout=90)
    assert res.returncode == 1, res.stdout + res.stderr
    folder = run_folder(out)
    s = summary(folder)
    w = flaky(s)
    assert w["restarts"] == 2 and w["failed"] and w["error"] == "exit code 3", w
    assert [r["cause"] for r in w["restarted"]] == ["exit code 3", "exit code 3"]
    assert "after 2 restarts within 60 s (restart policy: at most 2): not started again" in res.stdout
    (group,) = s["buffers"]["RB_1"]["groups"]
    assert group["retired"] is True  # issue 11's rule: a failed consumer's group is retired
    got = exported_counters(folder)
    assert got == list(range(1, len(got) + 1)) and len(got) == 300, "what was handed on, once"


def test_no_policy_no_restart(tmp_path):
    setup = copy_setup("restart", tmp_path)
    text = (setup / "restart_setup.yaml").read_text().replace(", restart: {max: 3, within: 60}", "")
    (setup / "restart_setup.yaml").write_text(text)
    out = tmp_path / "out"
    res = run_cli(["run", setup / "restart_setup.yaml", "--headless", "--output", out], timeout=90)
    assert res.returncode == 1, res.stdout + res.stderr
    w = flaky(summary(run_folder(out)))
    assert w["restarts"] == 0 and w["restarted"] == [] and w["error"] == "exit code 3"


@pytest.mark.parametrize(
    "policy, problem",
    [
        ("{max: 0, within: 60}", "Fkt_2.restart.max: expected an integer >= 1, got 0"),
        ("{max: 2, within: 0}", "Fkt_2.restart.within: expected a number of seconds > 0, got 0"),
        ("{max: 2}", "Fkt_2.restart.within: missing"),
        ("3", "Fkt_2.restart: expected a mapping with max (restarts) and within (seconds)"),
    ],
)
def test_bad_restart_policy_is_a_setup_error(tmp_path, policy, problem):
    setup = copy_setup("restart", tmp_path)
    text = (setup / "restart_setup.yaml").read_text().replace("{max: 3, within: 60}", policy)
    (setup / "restart_setup.yaml").write_text(text)
    with pytest.raises(SetupFileError) as err:
        load_setup(setup / "restart_setup.yaml", check_functions=False)
    assert any(problem in e and "restart_setup.yaml" in e for e in err.value.errors), err.value.errors


def test_policy_is_read(tmp_path):
    spec = load_setup(copy_setup("restart", tmp_path) / "restart_setup.yaml", check_functions=False)
    policies = {f.key: f.restart for f in spec.functions}
    assert policies["Fkt_1"] is None
    assert (policies["Fkt_2"].max, policies["Fkt_2"].within) == (3, 60.0)
