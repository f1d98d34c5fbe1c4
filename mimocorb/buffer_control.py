"""mimoCoRB 1.x module ``buffer_control``: the access classes and ``run_mimoDAQ``.

A thin facade: the work is done in :mod:`mimocorb.daq` (``access``, ``exporters``,
``run_control``, ``setup_file``). User worker functions have the signature
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
from mimocorb.daq.exporters import rb_toParquetfile, rb_toTxtfile, rb_toWaveformfile
from mimocorb.daq.run_control import RunControl, run_mimoDAQ
from mimocorb.daq.setup_file import SetupFileError, load_setup

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
