"""Source of the muon demo: simulated digitiser events into the raw buffer.

Events are spaced like a real detector's: :meth:`pulseSimulator.wait_time` gives the
time to the next event (exponential with mean ``sleeptime`` when ``random``). The
source keeps a clock of when each event is due and sleeps only when it is at least
``min_sleep`` (0.5 ms) ahead of it, so that short waits (0.1 ms at 10 kHz, shorter than
the sleep call's own overhead) still give the configured mean rate. When the DAQ cannot
keep up, the buffer is full and the source waits there (back-pressure); the clock is
then reset, so no burst of overdue events follows.

Config (``config/simulation.yaml``): the ``pulseSimulator`` keys, and
``number_of_events`` (end the source after that many events; 0 or missing: no limit).
"""

from __future__ import annotations

import time

import numpy as np

from mimocorb.buffer_control import rbImport
from mimocorb.pulseSimulator import pulseSimulator

MIN_SLEEP = 0.0005  # s: shorter waits are collected until they add up to this
MAX_BACKLOG = 0.05  # s: being later than this resets the clock


def simulation_source(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """Write simulated events to the first sink buffer until the run ends."""
    layout = sink_list[0]
    channels = [name for name, _ in layout["dtype"]]
    simulator = pulseSimulator(config_dict)
    simulator.init(len(channels), layout["values_per_slot"], channels)
    n_events = int(config_dict.get("number_of_events") or 0)

    def events():
        event = np.empty((len(channels), layout["values_per_slot"]), dtype=np.float32)
        due = time.monotonic()
        n = 0
        while n_events <= 0 or n < n_events:
            due += simulator.wait_time()
            ahead = due - time.monotonic()
            if ahead >= MIN_SLEEP:
                time.sleep(ahead)
            elif ahead < -MAX_BACKLOG:
                due = time.monotonic()
            yield simulator(event), None  # copied into the buffer slot by rbImport
            n += 1

    rbImport(sink_list=sink_list, config_dict=config_dict, ufunc=events, **rb_info)()
