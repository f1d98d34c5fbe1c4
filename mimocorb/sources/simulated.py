"""The muon demo's simulated digitiser as a packaged source: ``mimocorb.sources.simulator``.

The source function is the demo's own (``mimocorb/muon/demo/modules/muon_source.py``,
``simulation_source``); this module adds the documented configuration check, so that a
setup file can name it as ``file_name: mimocorb.sources`` + ``fkt_name: simulator``.
"""

from __future__ import annotations

from typing import Mapping, Optional, Sequence

from mimocorb.muon.demo.modules.muon_source import simulation_source
from mimocorb.pulseSimulator import pulseSimulator
from mimocorb.sources.config_check import ConfigReader, check_samples, field_kind, sink_layout

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
