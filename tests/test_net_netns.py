"""The bridge between two network namespaces joined by a veth pair: a front end
(source -> buffer -> send) with ``mimocorb run`` in one, an analysis
(receive -> buffer -> filter -> recorder) in the other; every event checked by sequence.
Faults: the link down for 10 s, the sending run killed, the whole receiving run killed
and started again, the receiving worker killed and started again, another layout.

Needs root and ``ip`` (skipped otherwise). The namespaces and veth pair are made per
test and always removed; leftovers of a crashed earlier run (prefix ``mcbt``, its pid
gone) are removed first. Until the runner restarts failed workers, the receiving
worker's restart is done by the test: the analysis side then runs as a small driver
(``tests/net_netns_driver.py``) instead of ``mimocorb run``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("zmq")

from tests.daq_helpers import REPO, env, kill_group, pid_alive  # noqa: E402

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


SOURCE = """
import time
from mimocorb.mimo_buffer import Writer

def source(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    w = Writer(sink_list[0])
    n, rate = config_dict["events"], config_dict["rate"]
    t0 = time.monotonic()
    for i in range(n):
        wait = t0 + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        b = w.get_new_buffer()
        b[0] = i
        w.set_metadata(i, 1000.0 + i, 0.0)
    w.process_buffer()
"""

ANALYSIS = """
import os
from mimocorb.buffer_control import rbTransfer
from mimocorb.mimo_buffer import Reader

def passthrough(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    rbTransfer(source_list=source_list, sink_list=sink_list, config_dict=config_dict,
               ufunc=lambda e: [e], **rb_info)()

def recorder(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    r = Reader(source_list[0])
    fd = os.open(config_dict["file"], os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    while True:  # written before the event is released: what the buffer handed on is on file
        e = r.get()
        c = r.get_metadata()[0]
        os.write(fd, f"{int(e[0])} {c}\\n".encode())
"""

NET = "from mimocorb.net import send, receive  # noqa: F401\n"


def write_setup(
    folder: Path, kind: str, link: dict, n: int = 0, rate: float = 0.0, slots: int = 64, dtype: str = "int64"
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.py").write_text(NET)
    (folder / "link.yaml").write_text(json.dumps(link))
    if kind == "frontend":
        (folder / "workers.py").write_text(SOURCE)
        (folder / "source.yaml").write_text(json.dumps({"events": n, "rate": rate}))
        functions = [
            {
                "Fkt_1": {
                    "file_name": "workers",
                    "fkt_name": "source",
                    "RB_assign": {"RB_1": "write"},
                    "config_file": "source.yaml",
                }
            },
            {
                "Fkt_2": {
                    "file_name": "net",
                    "fkt_name": "send",
                    "RB_assign": {"RB_1": "read"},
                    "config_file": "link.yaml",
                }
            },
        ]
        buffers = [{"RB_1": {"number_of_slots": slots, "channel_per_slot": 2, "data_type": dtype}}]
    else:
        (folder / "workers.py").write_text(ANALYSIS)
        (folder / "record.yaml").write_text(json.dumps({"file": str(folder / "events.txt")}))
        functions = [
            {
                "Fkt_1": {
                    "file_name": "net",
                    "fkt_name": "receive",
                    "RB_assign": {"RB_1": "write"},
                    "config_file": "link.yaml",
                }
            },
            {
                "Fkt_2": {
                    "file_name": "workers",
                    "fkt_name": "passthrough",
                    "RB_assign": {"RB_1": "read", "RB_2": "write"},
                }
            },
            {
                "Fkt_3": {
                    "file_name": "workers",
                    "fkt_name": "recorder",
                    "RB_assign": {"RB_2": "read"},
                    "config_file": "record.yaml",
                }
            },
        ]
        buffers = [{f"RB_{i}": {"number_of_slots": slots, "channel_per_slot": 2, "data_type": dtype}} for i in (1, 2)]
    setup = {"output_directory": "target", "RingBuffer": buffers, "Functions": functions}
    (folder / "setup.yaml").write_text(json.dumps(setup))
    return folder / "setup.yaml"


class Runs:
    """``mimocorb run`` processes in namespaces, each in its own process group; all killed at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, ns: str, *args: str) -> subprocess.Popen:
        p = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, *args],
            cwd=REPO,
            env=env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.procs.append(p)
        return p

    def run(self, ns: str, setup: Path) -> subprocess.Popen:
        return self.start(ns, "-m", "mimocorb", "run", str(setup), "--headless", "--status-interval", "0.5")

    def wait(self, p: subprocess.Popen, timeout: float) -> tuple[int, str]:
        try:
            out, _ = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(p)
            out, _ = p.communicate(timeout=10)
            raise AssertionError(f"{p.args} did not end within {timeout} s:\n{out}") from None
        return p.returncode, out

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                kill_group(p)
            p.wait(10)
            for f in (p.stdout, p.stdin):
                if f:
                    f.close()
        # a run killed with SIGKILL leaves its buffers behind (as after a power loss): remove ours
        from mimocorb.mimo_buffer import _ringbuf, list_segments

        pids = {p.pid for p in self.procs}
        for seg in list_segments():
            if seg["pid"] in pids and not seg["owner_alive"]:
                _ringbuf.shm_unlink_name("/" + seg["name"])


@pytest.fixture
def runs():
    r = Runs()
    yield r
    r.close()


def recorded(folder: Path) -> list[int]:
    f = folder / "events.txt"
    if not f.exists():
        return []
    rows = [line.split() for line in f.read_text().splitlines() if line.strip()]
    for seq, counter in rows:
        assert seq == counter, f"metadata of event {seq} changed on the way: counter {counter}"
    return [int(s) for s, _ in rows]


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


def test_receiving_worker_killed_and_restarted(net, runs, tmp_path):
    """The receiving worker is killed (SIGKILL) twice and started again with the same run folder
    (by the driver, on the test's command): nothing lost, nothing doubled."""
    n = 4000
    fe = write_setup(tmp_path / "frontend", "frontend", {"bind": f"tcp://{net.addr_a}:{PORT}"}, n, 400.0)
    out = tmp_path / "driver"
    back = runs.start(net.b, str(REPO / "tests" / "net_netns_driver.py"), f"{net.addr_a}:{PORT}", str(out))
    front = runs.run(net.a, fe)
    for k in (800, 2000):
        wait_for(lambda k=k: len(recorded(out)) > k, 30, f"{k} events")
        back.stdin.write("kill\n")
        back.stdin.flush()
        time.sleep(0.5)
        back.stdin.write("start\n")
        back.stdin.flush()
    code_f, out_f = runs.wait(front, 90)
    code_b, out_b = runs.wait(back, 60)
    assert code_f == 0 and code_b == 0, out_f + out_b
    assert out_b.count("receiver killed") == 2, out_b
    assert recorded(out) == list(range(n))


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
