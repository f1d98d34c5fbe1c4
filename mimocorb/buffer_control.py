"""mimoCoRB 1.x module ``buffer_control``: the access classes and ``run_mimoDAQ``.

A thin facade: the work is done in :mod:`mimocorb.daq` (``access``, ``run_control``,
``setup_file``) and :mod:`mimocorb.exporters`. User worker functions have the signature
``fn(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info)``.
"""

from pathlib import Path
from typing import Any, Union

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
from mimocorb.daq.run_control import RunControl
from mimocorb.daq.setup_file import SetupFileError, load_setup
from mimocorb.exporters.parquet import rb_toParquetfile
from mimocorb.exporters.text import rb_toTxtfile
from mimocorb.exporters.waveforms import rb_toWaveformfile


class run_mimoDAQ(RunControl):
    """mimoCoRB 1.x entry point: ``run_mimoDAQ(setup_file).setup()`` then ``.run()``.

    Parameters
    ----------
    setup_filename : str
        The setup YAML file.
    verbose : int
        As 1.x: 0 quiet, 1 status, 2 status and layout.
    debug : bool
        Debug logging.
    **options
        Any keyword option of :class:`RunControl`.
    """

    def __init__(self, setup_filename: Union[str, Path], verbose: int = 2, debug: bool = False, **options: Any):
        super().__init__(setup_filename, verbose, debug, **options)


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
