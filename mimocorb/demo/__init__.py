"""The muon-decay demo: an application built on mimocorb (``mimocorb demo``).

It sits above the libraries it uses -- the DAQ (:mod:`mimocorb.daq`), the packaged
source, exporters and displays, and the muon physics library (:mod:`mimocorb.muon`) --
and nothing below imports it. Its parts:

- :mod:`mimocorb.demo.command`: the command ``demo`` (and ``--copy``, the template);
- ``setup.yaml`` and ``config/``: the packaged setup, naming every function in the
  packaged form (``file_name: mimocorb.demo``, ``mimocorb.sources``, ``mimocorb.exporters``);
- ``modules/``: its worker functions (below), the files ``--copy`` puts into a template;
- :mod:`mimocorb.demo.analysis`: the lifetime fit and plots of a run folder;
- :mod:`mimocorb.demo.per_event`: the 1.x form of the filter, one event at a time.

The worker functions a setup file names as ``file_name: mimocorb.demo``:

========================  ==================================================================
``calculate_decay_time``  the filter: the decay double pulses of the raw events (batches)
``save_decays``           the decay records as a text table (also ``save_decays_up``,
                          ``save_decays_down``: :func:`mimocorb.exporters.save_to_txt`
                          under the names the demo's config blocks use)
``plot_waveform``         oscilloscope of the raw events
``plot_histograms``       histograms of the decay records with the running lifetime fit
``simulation_source``     the demo's source (1.x name; the setup names the packaged
                          ``simulator`` of :mod:`mimocorb.sources`, which checks its config)
========================  ==================================================================

They are imported on first use, so that ``import mimocorb.demo`` (the command line does)
loads no buffer or plotting library.
"""

from __future__ import annotations

from mimocorb._lazy import lazy_functions

_MODULES = {
    "mimocorb.demo.modules.muon_filter": ("calculate_decay_time",),
    "mimocorb.demo.modules.save_files": ("save_decays", "save_decays_up", "save_decays_down"),
    "mimocorb.demo.modules.displays": ("plot_waveform", "plot_histograms"),
    "mimocorb.sources.simulated": ("simulation_source",),
}
#: The demo's worker functions -> the module that defines them.
FUNCTIONS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = list(FUNCTIONS)

__getattr__, __dir__ = lazy_functions(__name__, FUNCTIONS)
