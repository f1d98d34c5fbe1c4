"""mimoCoRB 1.x module ``buffer_control``: the access classes and ``run_mimoDAQ``.

A thin facade: the work is done in :mod:`mimocorb.daq` (``access``, ``run_control``,
``setup_file``) and :mod:`mimocorb.exporters`. User worker functions have the signature
``fn(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info)``.
"""

from mimocorb.daq.access import (
    ResultMismatchError,
    rbDrain,
    rbExport,
    rbImport,
    rbObserver,
    rbProcess,
    rbPut,
    rbTransfer,
)
from mimocorb.daq.run_control import RunControl, run_mimoDAQ
from mimocorb.daq.setup_file import SetupFileError, load_setup
from mimocorb.exporters.parquet import rb_toParquetfile
from mimocorb.exporters.text import rb_toTxtfile
from mimocorb.exporters.waveforms import rb_toWaveformfile

__all__ = [
    "rbImport",
    "rbPut",
    "rbExport",
    "rbTransfer",
    "rbProcess",
    "rbDrain",
    "rbObserver",
    "rb_toTxtfile",
    "rb_toParquetfile",
    "rb_toWaveformfile",
    "run_mimoDAQ",
    "RunControl",
    "SetupFileError",
    "ResultMismatchError",
    "load_setup",
]
