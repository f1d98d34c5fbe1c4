"""The access classes under the module name older mimoCoRB documentation uses.

Same objects as :mod:`mimocorb.buffer_control`.
"""

from mimocorb.buffer_control import (  # noqa: F401
    ResultMismatchError,
    rb_toParquetfile,
    rb_toTxtfile,
    rb_toWaveformfile,
    rbDrain,
    rbExport,
    rbImport,
    rbObserver,
    rbProcess,
    rbPut,
    rbTransfer,
)

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
    "ResultMismatchError",
]
