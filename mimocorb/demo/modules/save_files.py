"""Exporters of the muon demo: the decay records as text tables in the run folder.

``save_decays``, ``save_decays_up``, ``save_decays_down`` are the packaged
:func:`mimocorb.exporters.save_to_txt` under the names of the demo's config blocks
(``<filename>.csv`` with ``sep: ","``; one row per decay: counter, timestamp, deadtime,
then the record's fields). The raw waveforms go through the packaged ``save_waveforms``.
"""

from mimocorb.exporters import save_to_txt

save_decays = save_decays_up = save_decays_down = save_to_txt

__all__ = ["save_decays", "save_decays_up", "save_decays_down"]
