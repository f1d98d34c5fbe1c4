"""mimoCoRB 1.x module ``plot_buffer``: a live oscilloscope view of observed waveforms.

The work is done in :mod:`mimocorb.gui.oscilloscope` (a setup file can also name the packaged
display ``oscilloscope`` of :mod:`mimocorb.gui.displays` directly). Use it from a setup file
with a small worker module::

    from mimocorb.plot_buffer import plot_buffer

    def plot_waveform(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
        plot_buffer(source_list, sink_list, observe_list, config_dict, **rb_info)()

and ``RB_assign: {RB_1: observe}``.
"""

from __future__ import annotations

from mimocorb.gui.feeds import DisplayCall
from mimocorb.gui.oscilloscope import Oscilloscope, ScopeConfig, run_oscilloscope


class plot_buffer(DisplayCall):
    """Oscilloscope display of the first observed buffer (1.x interface).

    Parameters
    ----------
    source_list, sink_list : list of dict, optional
        Not used (1.x signature).
    observe_list : list of dict
        Observer setup dict of the buffer to show.
    config_dict : dict
        1.x keys ``title``, ``sample_time_ns``, ``pre_trigger_samples``, ``analogue_offset``,
        ``trigger_level``, ``channel_range``, ``min_sleeptime``; new ``channels``,
        ``snapshot_interval``; ``directory_prefix`` (the run folder) for headless snapshots.
    **rb_info
        Buffer names -> roles.

    Calling the instance with ``()`` shows events until the run ends (or the window is
    closed) and returns the number of events shown.
    """

    who = "plot_buffer"
    reads = False

    def __call__(self) -> int:
        return run_oscilloscope(self.observe_list, self.config_dict, self.rb_info)


__all__ = ["plot_buffer", "Oscilloscope", "ScopeConfig"]
