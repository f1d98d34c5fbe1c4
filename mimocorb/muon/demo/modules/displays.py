"""Displays of the muon demo: oscilloscope of raw events, histograms of the decay records.

Without a screen (or with ``--headless``) they write PNG snapshots into the run folder.
Without matplotlib (``pip install 'mimocorb[demo]'``) there are no displays: the
histogram function then only reads its buffer (so the buffer never fills up).
"""

from __future__ import annotations

import logging

from mimocorb.buffer_control import rbDrain

logger = logging.getLogger("mimocorb.demo.displays")


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        logger.warning("no displays: matplotlib is not installed (pip install 'mimocorb[demo]')")
        return False
    return True


def plot_waveform(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    if not _have_matplotlib():
        return
    from mimocorb.plot_buffer import plot_buffer

    plot_buffer(source_list, sink_list, observe_list, config_dict, **rb_info)()


def plot_histograms(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    if not _have_matplotlib():
        rbDrain(source_list=source_list, config_dict=config_dict, **rb_info)()
        return
    from mimocorb.histogram_buffer import histogram_buffer

    histogram_buffer(source_list, sink_list, observe_list, config_dict, **rb_info)()
