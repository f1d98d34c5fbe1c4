"""Analysis side for the receiver-restart test across namespaces (the runner has no restart
policy yet): a buffer, a recorder writing each event's sequence to ``<out>/events.txt`` and a
receiving worker; ``kill`` on stdin kills the worker (SIGKILL), ``start`` starts it again with
the same configuration and run folder (its journal). Ends when the receiver returns after END.

Usage: python tests/net_netns_driver.py HOST:PORT OUT_FOLDER
"""

from __future__ import annotations

import multiprocessing as mp
import os
import select
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mimocorb.mimo_buffer import NewBuffer, Reader  # noqa: E402
from tests.net_harness import run_receiver  # noqa: E402


def recorder(rd: dict, path: str) -> None:
    r = Reader(rd)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while True:
            e = r.get()
            os.write(fd, f"{int(e[0])} {r.get_metadata()[0]}\n".encode())
    except SystemExit:
        pass


def main() -> int:
    peer, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    ctx = mp.get_context("fork")
    with NewBuffer(64, 2, np.int64) as buf:
        rec = ctx.Process(target=recorder, args=(buf.new_reader_group(), os.path.join(out, "events.txt")))
        rec.start()
        cfg = {"connect": peer, "name": "analysis", "directory_prefix": out + "/"}
        wd = buf.new_writer()
        rx = ctx.Process(target=run_receiver, args=(wd, cfg))
        rx.start()
        while True:
            if rx.exitcode == 0:
                break
            ready, _, _ = select.select([sys.stdin], [], [], 0.1)
            line = sys.stdin.readline().strip() if ready else ""
            if line == "kill":
                rx.kill()
                rx.join(5)
                print("receiver killed", flush=True)
            elif line == "start":
                rx = ctx.Process(target=run_receiver, args=(wd, cfg))
                rx.start()
                print("receiver started", flush=True)
            elif not ready:
                rx.join(0)
        buf.shutdown(10)
        rec.join(10)
        time.sleep(0.1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
