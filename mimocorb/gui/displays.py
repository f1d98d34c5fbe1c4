"""Packaged displays: worker functions a setup file names without a module of its own::

    - Fkt_7: {file_name: mimocorb.gui.displays, fkt_name: oscilloscope, RB_assign: {RB_1: observe},
              config_file: config/scope.yaml}
    - Fkt_8: {file_name: mimocorb.gui.displays, fkt_name: histograms, RB_assign: {RB_2: read}}

Without a screen (or in a run with ``--headless``) they write PNG snapshots into the run
folder (:mod:`mimocorb.gui.screen`). The 1.x modules ``mimocorb.plot_buffer`` and
``mimocorb.histogram_buffer`` are the same displays behind the 1.x interface.
"""

from __future__ import annotations

from mimocorb.gui.histograms import run_histograms
from mimocorb.gui.oscilloscope import run_oscilloscope


def oscilloscope(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info) -> None:
    """Packaged display: the newest waveforms of the first observed buffer, until the run ends.

    Config keys: those of :mod:`mimocorb.gui.oscilloscope` (``title``, ``sample_time_ns``,
    ``pre_trigger_samples``, ``analogue_offset``, ``trigger_level``, ``channels``, ...).
    """
    run_oscilloscope(observe_list, config_dict, rb_info)


def histograms(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info) -> None:
    """Packaged display: live histograms of fields of the first source buffer (every event),
    or else of the first observed one (a sample), until the run ends.

    Config keys: the ``histograms`` block, ``title``, ``interval`` of
    :mod:`mimocorb.gui.histograms`. This display is given no fit: a histogram's ``fit``
    names one by reference, e.g. ``fit: mimocorb.muon.lifetime:fit_lifetime_in_range``.
    """
    run_histograms(source_list, observe_list, config_dict, rb_info)


__all__ = ["oscilloscope", "histograms"]
