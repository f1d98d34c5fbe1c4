"""Exporters of the muon demo: files in the run folder.

``save_decays``, ``save_decays_up``, ``save_decays_down``: the decay records as text
tables (``<filename>.csv`` with ``sep: ","``; one row per decay: counter, timestamp,
deadtime, then the record's fields). ``save_waveforms``: raw waveforms to
``<filename>.npy``, at most ``max_events`` of them (the rest is read and dropped).
"""

from __future__ import annotations

from pathlib import Path

from mimocorb.buffer_control import rb_toTxtfile, rb_toWaveformfile, rbExport
from mimocorb.exporters.waveforms import NpyWaveformWriter


def save_decays(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    rb_toTxtfile(source_list=source_list, config_dict=config_dict, **rb_info)()


def save_decays_up(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    rb_toTxtfile(source_list=source_list, config_dict=config_dict, **rb_info)()


def save_decays_down(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    rb_toTxtfile(source_list=source_list, config_dict=config_dict, **rb_info)()


def save_waveforms(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    max_events = int(config_dict.get("max_events") or 0)
    if max_events <= 0:
        rb_toWaveformfile(source_list=source_list, config_dict=config_dict, **rb_info)()
        return
    export = rbExport(source_list=source_list, config_dict=config_dict, **rb_info)
    path = Path(config_dict.get("directory_prefix", ".")) / (str(config_dict.get("filename", "waveforms")) + ".npy")
    with NpyWaveformWriter(path, export.source.dtype, export.source.values_per_slot) as out:
        for data, metadata in export():
            if out.rows < max_events:
                out.append(metadata, data)
