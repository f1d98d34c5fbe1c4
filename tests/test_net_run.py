"""The bridge in whole runs on one host (loopback TCP): a front end (source -> RB_1 -> send) and
an analysis (receive -> RB_1 -> passthrough -> RB_2 -> recorder), each a run of its own.

Link statistics in the outputs of both runs (status line, summary.json, buffer_stats.csv)
agree with the events counted; the end of the front end's run ends the analysis in
data-flow order after its last event; a pause of the analysis reaches the front end as
back-pressure (its source is held back). Every wait bounded."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("zmq")

from tests.daq_helpers import REPO, LineReader, env, kill_group, read_table, status_lines  # noqa: E402
from tests.net_setups import Runs, recorded, write_setup  # noqa: E402

pytestmark = pytest.mark.timeout(150)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def runs():
    r = Runs()
    yield r
    r.close()


def run_folder(setup: Path) -> Path:
    (folder,) = list((setup.parent / "target").iterdir())
    return folder


def summary(setup: Path) -> dict:
    return json.loads((run_folder(setup) / "summary.json").read_text())


def last_link_rows(setup: Path) -> dict[str, dict]:
    """The last buffer_stats.csv row of each link ("<role> <link>" -> row)."""
    rows = read_table(run_folder(setup) / "buffer_stats.csv", sep=",")
    return {f"{r['role']} {r['link']}": r for r in rows if r["link"]}


def pair(tmp_path: Path, n: int, rate: float, **rx):
    port = free_port()
    fe = write_setup(tmp_path / "frontend", "frontend", {"bind": port, "name": "front"}, n, rate)
    link = {"connect": f"127.0.0.1:{port}", "name": "back", **rx}
    an = write_setup(tmp_path / "analysis", "analysis", link)
    return fe, an


def test_link_statistics_in_both_runs_agree_with_the_events(runs, tmp_path):
    n = 5000
    fe, an = pair(tmp_path, n, 0.0)
    back = runs.run(None, an)
    front = runs.run(None, fe)
    code_f, out_f = runs.wait(front, 90)
    code_b, out_b = runs.wait(back, 60)
    assert code_f == 0 and code_b == 0, out_f + out_b
    assert recorded(an.parent) == list(range(n))
    sf, sb = summary(fe), summary(an)
    tx, rx = sf["links"]["sender front"], sb["links"]["receiver back"]
    assert sf["buffers"]["RB_1"]["events"] == n == sb["buffers"]["RB_1"]["events"]
    assert (tx["sent"], tx["acked"], tx["resent"], tx["in_flight"], tx["reconnects"]) == (n, n, 0, 0, 0), tx
    assert (rx["published"], rx["duplicates"], rx["received"]) == (n, 0, n), rx
    assert tx["bytes"] >= n * 16 and rx["bytes"] >= n * 16 and tx["state"].startswith("ended")
    for setup, key, s in ((fe, "sender front", tx), (an, "receiver back", rx)):
        row = last_link_rows(setup)[key]
        assert row["state"] == "ended" and row["link_buffer"] == "RB_1" and row["buffer"] == ""
        for k in ("sent", "acked", "resent", "in_flight", "received", "published", "duplicates", "reconnects"):
            assert int(row[k]) == s[k], (key, k, row)
        assert float(row["mb_per_s"]) == pytest.approx(s["mb_per_s"])
    last_f, last_b = status_lines(out_f)[-1], status_lines(out_b)[-1]
    assert f"sender front: sent {n} acked {n} resent 0 in flight 0 reconn 0" in last_f, last_f
    assert f"receiver back: received {n} published {n} dup 0 reconn 0" in last_b, last_b
    assert sb["stop_reason"] == "source exhausted"  # the receiver returned after the sender's END


def test_end_of_the_front_run_ends_the_analysis_after_its_last_event(runs, tmp_path):
    """Ctrl-C on the front end (an endless source): its run ends buffer by buffer, the sender
    sends what was published and then END; the analysis's receiver returns, and the analysis
    run ends in data-flow order with every event of the front end, once."""
    fe, an = pair(tmp_path, 0, 2000.0)
    back = runs.run(None, an)
    front = runs.run(None, fe)
    deadline = time.monotonic() + 30
    while len(recorded(an.parent)) < 500:
        assert time.monotonic() < deadline and front.poll() is None and back.poll() is None
        time.sleep(0.1)
    front.send_signal(signal.SIGINT)
    code_f, out_f = runs.wait(front, 60)
    code_b, out_b = runs.wait(back, 60)
    assert code_f == 0 and code_b == 0, out_f + out_b
    sf, sb = summary(fe), summary(an)
    assert sf["stop_reason"] == "interrupted (Ctrl-C)"
    assert sb["stop_reason"] == "source exhausted", sb["stop_reason"]
    n = sf["buffers"]["RB_1"]["events"]
    assert recorded(an.parent) == list(range(n)), "every event the front end published, once, in order"
    assert sb["buffers"]["RB_2"]["events"] == n and not any(w["failed"] for w in sb["workers"])
    assert sf["links"]["sender front"]["acked"] == n


PAUSING = """
import sys, time
from mimocorb.daq.console import Console
from mimocorb.daq.run_control import RunControl

run = RunControl(sys.argv[1], verbose=1, headless=True, console=Console(verbose=1), status_interval=0.2)
import threading

def steer():
    deadline = time.monotonic() + 30
    while run.state != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
    run.pause()
    print("PAUSED", flush=True)
    line = sys.stdin.readline()  # the test says when (bounded on its side)
    run.resume()
    print("RESUMED", flush=True)

threading.Thread(target=steer, daemon=True).start()
sys.exit(run.run())
"""


def test_pause_of_the_analysis_reaches_the_front_end_as_back_pressure(runs, tmp_path):
    """The analysis pauses before any event arrives: its receiver takes nothing, the sender's
    window fills, the front end's buffer fills and its source is held back -- the front run
    cannot end while the analysis is paused, however fast the machine. After the resume every
    event arrives once."""
    n = 3000  # far more than the receiver's window plus the buffers' slots
    fe, an = pair(tmp_path, n, 0.0, window=64, stats_interval=0.1)
    script = tmp_path / "pausing.py"
    script.write_text(PAUSING)
    back = subprocess.Popen(
        [sys.executable, str(script), str(an)],
        cwd=REPO,
        env=env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        lines = LineReader(back.stdout)
        lines.wait_for(lambda s: s.startswith("PAUSED"), 30)
        front = runs.run(None, fe)
        link = None
        deadline = time.monotonic() + 30
        while True:  # the sender has filled the receiver's window and waits
            f = next((fe.parent / "target").glob("*/net-sender-*.json"), None)
            link = json.loads(f.read_text()) if f else None
            if link and link["in_flight"] > 0 and link["sent"] >= 64:
                break
            assert time.monotonic() < deadline, f"the sender did not fill the window: {link}"
            time.sleep(0.1)
        time.sleep(2.0)
        link = json.loads(f.read_text())
        assert front.poll() is None, "the front run ended while the analysis was paused"
        assert link["acked"] == 0 and link["sent"] <= 64 + 2 * 64, link  # no more than the window (and a batch)
        assert recorded(an.parent) == []
        back.stdin.write("resume\n")
        back.stdin.flush()
        lines.wait_for(lambda s: s.startswith("RESUMED"), 10)
        code_f, out_f = runs.wait(front, 60)
        back.wait(60)
        assert code_f == 0 and back.returncode == 0, out_f + lines.text()
    finally:
        if back.poll() is None:
            kill_group(back)
            back.wait(10)
        back.stdin.close()
        back.stdout.close()
    assert recorded(an.parent) == list(range(n))
    assert summary(fe)["links"]["sender front"]["acked"] == n
    assert summary(an)["paused_s"] >= 2.0
