"""Deterministic test source: event i has chA = i + 0.5 * k, chB = 10 * i + k."""

import os
import time

import numpy as np

from mimocorb.buffer_control import rbImport


def make_event(i, n):
    k = np.arange(n)
    return [np.float32(i) + np.float32(0.5) * k.astype(np.float32), (10 * i + k).astype(np.int32)]


def counting_source(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    events = int(config_dict.get("events", 0))
    sleeptime = float(config_dict.get("sleeptime", 0.0))
    n = sink_list[0]["values_per_slot"]
    produced = open(os.path.join(config_dict["directory_prefix"], "produced.txt"), "w", buffering=1)

    def generate():
        i = 0
        while events == 0 or i < events:
            produced.write(f"{i}\n")
            yield make_event(i, n), None
            i += 1
            if sleeptime:
                time.sleep(sleeptime)

    try:
        rbImport(sink_list=sink_list, config_dict=config_dict, ufunc=generate, **rb_info)()
    finally:
        produced.close()
    print("counting_source done")
