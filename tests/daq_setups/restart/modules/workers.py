"""Workers of the restart setup: a counting source and a filter that fails on purpose."""

import os
import time
from pathlib import Path

from mimocorb.mimo_buffer import Reader, Writer


def counting_source(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """``events`` events at about ``rate`` per second; event i has value i and counter i + 1."""
    w = Writer(sink_list[0])
    n, rate = config_dict["events"], config_dict["rate"]
    t0 = time.monotonic()
    for i in range(n):
        wait = t0 + i / rate - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        b = w.get_new_buffer()
        b["value"] = i
        w.set_metadata(i + 1, time.time(), 0.0)
    w.process_buffer()


def flaky_filter(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """Copies each event; after ``fail_after`` events of this process it ends with exit code 3
    (os._exit: no clean-up), ``failures`` times in the run (marker files in the run folder).
    It fails holding nothing: the event is handed on and its input released first."""
    folder = Path(config_dict["directory_prefix"])
    failed = len(list(folder.glob("flaky-failed-*")))
    r, w = Reader(source_list[0]), Writer(sink_list[0])
    n = 0
    for data, (counter, ts, dt) in r.events():
        out = w.get_new_buffer()
        out[:] = data
        w.set_metadata(counter, ts, dt)
        w.process_buffer()
        r.release()
        n += 1
        if failed < config_dict["failures"] and n == config_dict["fail_after"]:
            (folder / f"flaky-failed-{os.getpid()}").touch()
            os._exit(3)
