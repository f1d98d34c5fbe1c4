"""Simulated digitiser events (the muon physics library's waveforms) as a packaged source:
``mimocorb.sources.simulator``, the source of the muon demo.

Events are spaced like a real detector's: :meth:`~mimocorb.muon.simulator.pulseSimulator.wait_time`
gives the time to the next event (exponential with mean ``sleeptime`` when ``random``).
The source keeps a clock of when each event is due and sleeps only when it is at least
:data:`MIN_SLEEP` ahead of it, so that short waits (0.1 ms at 10 kHz, shorter than the
sleep call's own overhead) still give the configured mean rate. When the DAQ cannot keep
up, the buffer is full and the source waits there (back-pressure); the clock is then
reset, so no burst of overdue events follows.

:func:`simulator` checks its configuration first (:func:`check_config`);
:func:`simulation_source` (the 1.x name of the demo's source) is the same without the check.
"""

from __future__ import annotations

import time
from typing import Mapping, Optional, Sequence

import numpy as np

from mimocorb.daq.access import rbImport
from mimocorb.muon.simulator import pulseSimulator
from mimocorb.sources.config_check import ConfigReader, check_samples, field_kind, sink_layout

MIN_SLEEP = 0.0005  # s: shorter waits are collected until they add up to this
MAX_BACKLOG = 0.05  # s: being later than this resets the clock

NAME = "simulator"
CONFIG_KEYS = (
    "number_of_samples",
    "sample_time_ns",
    "pre_trigger_samples",
    "analogue_offset",
    "trigger_level",
    "pulseWindow",
    "pulseHeight",
    "pulseSpread",
    "prbInteraction",
    "prb2ndPulse",
    "sleeptime",
    "random",
    "seed",
    "number_of_events",
)


def check_config(config_dict: Optional[Mapping], sink_setups: Optional[Sequence[Mapping]]) -> None:
    """Raise ValueError for a bad ``simulator`` configuration (see :func:`simulator`)."""
    cfg = ConfigReader(NAME, config_dict)
    layout = sink_layout(NAME, sink_setups)
    field_kind(NAME, layout, "f")
    for key in ("sample_time_ns", "pre_trigger_samples", "analogue_offset"):
        if not cfg.has(key):
            raise cfg.error(key, None, "a number (a key every pulseSimulator config has)")
    if cfg.has("number_of_samples"):
        check_samples(cfg, layout, "number_of_samples")
    cfg.integer("number_of_events", 0, minimum=0)
    cfg.number("sleeptime", 0.1, minimum=0.0, unit="s")
    try:
        sim = pulseSimulator(cfg.config)
        sim.init(len(layout.fields), layout.values_per_slot, layout.fields)
    except (KeyError, ValueError) as exc:
        raise ValueError(f"{NAME}: {exc} (buffer {layout.describe()})") from exc
    cfg.warn_unknown(CONFIG_KEYS)


def simulator(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """Source: simulated muon-detector waveforms (the muon demo's digitiser), float fields in mV.

    Config keys (the 1.x ``pulseSimulator`` keys): ``sample_time_ns``,
    ``pre_trigger_samples``, ``analogue_offset`` (V), required; ``trigger_level`` (mV,
    offset included), ``number_of_samples`` (must equal the buffer's values per slot),
    ``pulseWindow`` (samples, 100), ``pulseHeight`` (mV, 250, or a list),
    ``pulseSpread`` (mV), ``prbInteraction`` (0.95), ``prb2ndPulse`` (0.10),
    ``sleeptime`` (s between events, 0.1), ``random`` (exponential spacing),
    ``seed``, and ``number_of_events`` (0: until the run ends).
    """
    check_config(config_dict, sink_list)
    simulation_source(source_list, sink_list, observe_list, config_dict, **rb_info)


simulator.check_config = check_config


def simulation_source(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """Write simulated events to the first sink buffer until the run ends (config: see :func:`simulator`)."""
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
