"""The muon demo's filter in the 1.x form: the pulse finder behind the access class
``rbTransfer``, one event at a time (1.x ``calculate_decay_time``).

The demo itself runs :func:`mimocorb.demo.modules.muon_filter.calculate_decay_time`,
which analyses batches of events and gives the same records; this form shows the 1.x
way of writing a filter and is the reference the batches are checked against.
"""

from __future__ import annotations

import logging
from typing import Any, List, Optional

import numpy as np

from mimocorb.daq.access import rbTransfer
from mimocorb.muon.pulse_finder import PulseFinder

logger = logging.getLogger(__name__)


def decay_time_per_event(
    source_list: Optional[list] = None,
    sink_list: Optional[list] = None,
    observe_list: Optional[list] = None,
    config_dict: Optional[dict] = None,
    **rb_info: Any,
) -> None:
    """The demo's filter in the 1.x form: read events one at a time (``rbTransfer``), write
    the record of every accepted double pulse.

    Sinks: the first gets the record (:func:`output_dtype`); with three sinks, the
    second and third get a copy of the raw event for electrons going up and down
    (e.g. for separate oscilloscope views or exports).
    """
    if config_dict is None:
        raise ValueError("decay_time_per_event: config_dict with the calculate_decay_time block is required, got None")
    finder = PulseFinder(config_dict)
    n_sinks = len(sink_list) if sink_list else 0

    def ufunc(data: np.ndarray) -> Optional[list]:
        m = finder.analyse(data)
        if m is None:
            return None
        out: List[Any] = [m.record]
        if n_sinks >= 3:
            out += [True, None] if m.direction == "up" else [None, True]
        elif n_sinks == 2:
            out.append(True)
        return out

    process = rbTransfer(source_list=source_list, sink_list=sink_list, config_dict=config_dict, ufunc=ufunc, **rb_info)
    process()
    logger.info(
        "decay_time_per_event: %d events, %d accepted (%.1f %%)",
        finder.n_events,
        finder.n_accepted,
        100.0 * finder.n_accepted / max(finder.n_events, 1),
    )


__all__ = ["decay_time_per_event"]
