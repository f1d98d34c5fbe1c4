"""mimoCoRB 1.x module ``histogram_buffer``: live histograms of fields of a buffer.

The work is done in :mod:`mimocorb.gui.histograms` (config format described there); this
1.x facade gives the displays the muon lifetime fit, as 1.x did: ``fit: lifetime``, and by
default for a ``decay_time`` field (:data:`FITS`, :data:`DEFAULT_FITS`). Use it from a
setup file with a small worker module::

    from mimocorb.histogram_buffer import histogram_buffer

    def plot_histograms(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
        histogram_buffer(source_list, sink_list, observe_list, config_dict, **rb_info)()

and ``RB_assign: {RB_2: read}`` (every event) or ``{RB_2: observe}`` (a sample).
"""

from __future__ import annotations

from typing import Optional, Sequence

from mimocorb.gui import histograms as _histograms
from mimocorb.gui.feeds import DisplayCall
from mimocorb.gui.histograms import HistogramDisplay, HistogramSpec, run_histograms
from mimocorb.muon.lifetime import fit_lifetime_in_range

#: The fits the 1.x histograms know, by name.
FITS = {"lifetime": fit_lifetime_in_range}
#: Field -> fit for histograms that name none: 1.x fits every ``decay_time`` histogram.
DEFAULT_FITS = {"decay_time": "lifetime"}


def parse_histograms(config_dict: Optional[dict], fields: Sequence[str], buffer: str = "") -> list[HistogramSpec]:
    """:func:`mimocorb.gui.histograms.parse_histograms` with the 1.x fits (:data:`FITS`, :data:`DEFAULT_FITS`)."""
    return _histograms.parse_histograms(config_dict, fields, buffer, FITS, DEFAULT_FITS)


class histogram_buffer(DisplayCall):
    """Live histograms of the first source (or observed) buffer (1.x interface).

    Parameters
    ----------
    source_list : list of dict, optional
        Reader-group setup dict: every event is histogrammed.
    sink_list : list of dict, optional
        Not used (1.x signature).
    observe_list : list of dict, optional
        Observer setup dict, used when there is no source: a sample is histogrammed.
    config_dict : dict
        ``histograms`` block, ``title``, ``interval`` (see :mod:`mimocorb.gui.histograms`);
        ``directory_prefix`` (the run folder) for headless snapshots.
    **rb_info
        Buffer names -> roles.

    Calling the instance with ``()`` histograms events until the run ends and returns
    their number.
    """

    who = "histogram_buffer"

    def __call__(self) -> int:
        return run_histograms(self.source_list, self.observe_list, self.config_dict, self.rb_info, FITS, DEFAULT_FITS)


__all__ = ["histogram_buffer", "HistogramDisplay", "HistogramSpec", "parse_histograms", "FITS", "DEFAULT_FITS"]
