"""Setups of the bridge's run tests: a front end (source -> RB_1 -> ``send``) and an
analysis (``receive`` -> RB_1 -> passthrough -> RB_2 -> recorder), written as setup files
for ``mimocorb run``; :class:`Runs` starts and always ends such runs (optionally in a
network namespace)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

from tests.daq_helpers import REPO, env, kill_group

SOURCE = """
import itertools
import time
from mimocorb.mimo_buffer import Writer

def source(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    w = Writer(sink_list[0])
    n, rate = config_dict["events"], config_dict["rate"]
    t0 = time.monotonic()
    for i in range(n) if n else itertools.count():
        wait = t0 + i / rate - time.monotonic() if rate else 0
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
    folder: Path,
    kind: str,
    link: dict,
    n: int = 0,
    rate: float = 0.0,
    slots: int = 64,
    dtype: str = "int64",
    restart: Optional[dict] = None,
) -> Path:
    """The setup file of a ``frontend`` (``n`` events at ``rate`` per second; ``n`` 0: until the
    run ends) or an ``analysis``; ``link`` is the bridge function's config, ``restart`` its
    restart policy in the Functions entry."""
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
    if restart is not None:
        net_key = "Fkt_2" if kind == "frontend" else "Fkt_1"
        next(f for f in functions if net_key in f)[net_key]["restart"] = restart
    setup = {"output_directory": "target", "RingBuffer": buffers, "Functions": functions}
    (folder / "setup.yaml").write_text(json.dumps(setup))
    return folder / "setup.yaml"


class Runs:
    """``mimocorb run`` processes in namespaces, each in its own process group; all killed at the end."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []

    def start(self, ns: Optional[str], *args: str) -> subprocess.Popen:
        """``python ARGS`` (in network namespace ``ns`` unless None)."""
        p = subprocess.Popen(
            (["ip", "netns", "exec", ns] if ns else []) + [sys.executable, *args],
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

    def run(self, ns: Optional[str], setup: Path) -> subprocess.Popen:
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


def recorded(folder: Path) -> list[int]:
    """The sequence numbers the analysis's recorder wrote (its counters checked on the way)."""
    f = folder / "events.txt"
    if not f.exists():
        return []
    rows = [line.split() for line in f.read_text().splitlines() if line.strip()]
    for seq, counter in rows:
        assert seq == counter, f"metadata of event {seq} changed on the way: counter {counter}"
    return [int(s) for s, _ in rows]
