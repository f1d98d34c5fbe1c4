"""Displays of the muon demo: oscilloscope of raw events, histograms of the decay records.

The packaged displays (:mod:`mimocorb.gui.displays`), the histograms given the muon
lifetime fit (``fit: lifetime`` in the config). Without a screen (or with ``--headless``)
they write PNG snapshots into the run folder. Without matplotlib (``pip install
'mimocorb[demo]'``) there are no displays: the histogram function then only reads its
buffer (so the buffer never fills up).
"""

from __future__ import annotations

import logging

from mimocorb.exporters import drain

logger = logging.getLogger("mimocorb.demo.displays")


def _have_matplotlib() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        logger.warning("no displays: matplotlib is not installed (pip install 'mimocorb[demo]')")
        return False
    return True


def plot_waveform(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """The newest raw events of the observed buffer (config: :func:`mimocorb.gui.displays.oscilloscope`)."""
    if _have_matplotlib():
        from mimocorb.gui.displays import oscilloscope

        oscilloscope(source_list, sink_list, observe_list, config_dict, **rb_info)


def plot_histograms(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """Histograms of the decay records, ``fit: lifetime`` the muon lifetime fit (config:
    :func:`mimocorb.gui.displays.histograms`)."""
    if not _have_matplotlib():
        drain(source_list, sink_list, observe_list, config_dict, **rb_info)
        return
    from mimocorb.gui.histograms import run_histograms
    from mimocorb.muon.lifetime import fit_lifetime_in_range

    run_histograms(source_list, observe_list, config_dict, rb_info, {"lifetime": fit_lifetime_in_range})
