"""The bridge between two network namespaces joined by a veth pair: a front end
(source -> buffer -> send) with ``mimocorb run`` in one, an analysis
(receive -> buffer -> filter -> recorder) in the other; every event checked by sequence.
Faults: the link down for 10 s, the sending run killed, the whole receiving run killed
and started again, the receiving worker killed and started again, another layout.

Needs root and ``ip`` (skipped otherwise). The namespaces and veth pair are made per
test and always removed; leftovers of a crashed earlier run (prefix ``mcbt``, its pid
gone) are removed first. The receiving worker's restart is the run's restart policy
(``restart`` in the receive function's entry of the analysis setup).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

pytest.importorskip("zmq")

from tests.daq_helpers import kill_group, pid_alive  # noqa: E402
from tests.net_setups import Runs, recorded, write_setup  # noqa: E402

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("ip") is None,
    reason="needs root and the ip command (network namespaces joined by a veth pair)",
)
PREFIX = "mcbt"
PORT = 5757


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


def _remove_leftovers() -> None:
    for line in ip("netns", "list").stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name.startswith(PREFIX) and name[len(PREFIX) : -1].isdigit() and not pid_alive(int(name[len(PREFIX) : -1])):
            ip("netns", "delete", name, check=False)


class Net:
    """Two namespaces ``<prefix><pid>a`` (front end, 10.213.N.1) and ``...b`` (analysis, .2)."""

    def __init__(self) -> None:
        tag = f"{PREFIX}{os.getpid()}"
        self.a, self.b = f"{tag}a", f"{tag}b"
        n = os.getpid() % 250 + 1
        self.addr_a, self.addr_b = f"10.213.{n}.1", f"10.213.{n}.2"
        for ns in (self.a, self.b):
            ip("netns", "add", ns)
        ip("link", "add", self.a, "type", "veth", "peer", "name", self.b)
        for ns, addr in ((self.a, self.addr_a), (self.b, self.addr_b)):
            ip("link", "set", ns, "netns", ns)
            ip("-n", ns, "addr", "add", f"{addr}/24", "dev", ns)
            ip("-n", ns, "link", "set", ns, "up")
            ip("-n", ns, "link", "set", "lo", "up")

    def link(self, up: bool) -> None:
        ip("-n", self.a, "link", "set", self.a, "up" if up else "down")

    def close(self) -> None:
        for ns in (self.a, self.b):
            ip("netns", "delete", ns, check=False)  # the veth pair goes with them


@pytest.fixture
def net():
    _remove_leftovers()
    n = Net()
    yield n
    n.close()
    left = [x for x in ip("netns", "list").stdout.split() if x in (n.a, n.b)]
    assert not left, f"namespaces left: {left}"


@pytest.fixture
def runs():
    r = Runs()
    yield r
    r.close()


def wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout} s"
        time.sleep(0.1)


def front_and_back(net: Net, tmp_path: Path, n: int, rate: float, rx_extra: dict | None = None):
    fe = write_setup(tmp_path / "frontend", "frontend", {"bind": f"tcp://{net.addr_a}:{PORT}"}, n, rate)
    an = write_setup(tmp_path / "analysis", "analysis", {"connect": f"{net.addr_a}:{PORT}", **(rx_extra or {})})
    return fe, an


def test_every_event_once_across_hosts_and_through_a_link_down_for_10s(net, runs, tmp_path):
    n, rate = 6000, 300.0  # 20 s of data
    fe, an = front_and_back(net, tmp_path, n, rate)
    back = runs.run(net.b, an)
    front = runs.run(net.a, fe)
    wait_for(lambda: len(recorded(an.parent)) > 1000, 30, "the first 1000 events")
    net.link(False)
    time.sleep(10)
    during = len(recorded(an.parent))
    net.link(True)
    code_f, out_f = runs.wait(front, 90)
    code_b, out_b = runs.wait(back, 60)
    assert code_f == 0, out_f
    assert code_b == 0, out_b
    got = recorded(an.parent)
    assert got == list(range(n)), f"{len(got)} events, {len(set(got))} distinct"
    assert during < n
    fstats = json.loads(next((an.parent / "target").glob("*/net-receiver-*.json")).read_text())
    assert fstats["duplicates"] >= 0 and fstats["published"] >= n


def test_sending_run_killed_the_receiver_notices_within_3s(net, runs, tmp_path):
    fe, an = front_and_back(net, tmp_path, 100000, 500.0, {"on_sender_lost": "end"})
    back = runs.run(net.b, an)
    front = runs.run(net.a, fe)
    wait_for(lambda: len(recorded(an.parent)) > 200, 30, "the first 200 events")
    kill_group(front)
    t_kill = time.time()
    code_b, out_b = runs.wait(back, 30)
    stats = json.loads(next((an.parent / "target").glob("*/net-receiver-*.json")).read_text())
    assert stats["state"] == "ended: lost", out_b
    assert stats["time"] - t_kill < 3.0
    got = recorded(an.parent)
    assert got == list(range(len(got)))  # what arrived, once and in order


def test_whole_receiving_run_killed_and_started_again(net, runs, tmp_path):
    """What the killed analysis had not acknowledged is sent again to the new one. Lost with
    it: only what its buffers held (acknowledged, not yet recorded) -- at most 2 x 4 slots."""
    n = 3000
    fe = write_setup(tmp_path / "frontend", "frontend", {"bind": f"tcp://{net.addr_a}:{PORT}"}, n, 300.0)
    link = {"connect": f"{net.addr_a}:{PORT}", "window": 16}
    an1 = write_setup(tmp_path / "analysis1", "analysis", link, slots=4)
    an2 = write_setup(tmp_path / "analysis2", "analysis", link, slots=4)
    back = runs.run(net.b, an1)
    front = runs.run(net.a, fe)
    wait_for(lambda: len(recorded(an1.parent)) > 500, 30, "the first 500 events")
    kill_group(back)
    back.wait(10)
    time.sleep(1.0)
    back2 = runs.run(net.b, an2)
    code_f, out_f = runs.wait(front, 90)
    code_b, out_b = runs.wait(back2, 60)
    assert code_f == 0 and code_b == 0, out_f + out_b
    old, new = recorded(an1.parent), recorded(an2.parent)
    assert old == list(range(len(old)))
    assert new == list(range(new[0], n)), "the new analysis got every event from where it resumed, once"
    assert new[0] <= len(old) + 8, f"lost in transit: {len(old)}..{new[0]}"


def receiver_stats(folder: Path) -> dict:
    """The analysis's receiver statistics file ({} before it is there)."""
    f = next((folder / "target").glob("*/net-receiver-*.json"), None)
    try:
        return json.loads(f.read_text()) if f else {}
    except (OSError, ValueError):
        return {}


def test_receiving_worker_killed_and_restarted(net, runs, tmp_path):
    """The analysis's receiving worker is killed (SIGKILL) twice; the run's restart policy starts
    it again (same name: its journal) and the stream resumes: nothing lost, nothing doubled."""
    n = 4000
    fe = write_setup(tmp_path / "frontend", "frontend", {"bind": f"tcp://{net.addr_a}:{PORT}"}, n, 400.0)
    link = {"connect": f"{net.addr_a}:{PORT}", "stats_interval": 0.1}
    an = write_setup(tmp_path / "analysis", "analysis", link, restart={"max": 3, "within": 60})
    back = runs.run(net.b, an)
    front = runs.run(net.a, fe)
    killed = []
    for k in (800, 2000):
        wait_for(lambda k=k: len(recorded(an.parent)) > k, 30, f"{k} events")
        wait_for(lambda: receiver_stats(an.parent).get("pid") not in (None, *killed), 30, "the new receiver")
        pid = receiver_stats(an.parent)["pid"]
        os.kill(pid, signal.SIGKILL)
        killed.append(pid)
    code_f, out_f = runs.wait(front, 90)
    code_b, out_b = runs.wait(back, 60)
    assert code_f == 0 and code_b == 0, out_f + out_b
    assert recorded(an.parent) == list(range(n))
    s = json.loads(next((an.parent / "target").glob("*/summary.json")).read_text())
    (rx,) = [w for w in s["workers"] if w["function"] == "receive"]
    assert rx["restarts"] == 2 and [r["pid"] for r in rx["restarted"]] == killed, rx
    assert all(r["cause"].startswith("killed by signal 9") for r in rx["restarted"]), rx
    assert s["stop_reason"] == "source exhausted"  # the receiver returned after the sender's END


def test_other_layout_refused_across_hosts(net, runs, tmp_path):
    fe = write_setup(tmp_path / "frontend", "frontend", {"bind": f"tcp://{net.addr_a}:{PORT}"}, 200, 100.0)
    an = write_setup(tmp_path / "analysis", "analysis", {"connect": f"{net.addr_a}:{PORT}"}, dtype="float32")
    front = runs.run(net.a, fe)
    back = runs.run(net.b, an)
    code_b, out_b = runs.wait(back, 30)
    assert code_b == 1
    log = next((an.parent / "target").glob("*/run.log")).read_text()
    assert "event layouts differ" in log and "2 x <i8" in log and "2 x <f4" in log, log
    os.killpg(front.pid, signal.SIGINT)
    runs.wait(front, 30)
