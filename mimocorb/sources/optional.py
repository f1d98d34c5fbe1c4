"""Optional libraries of the sources and sinks, imported only when one of them uses them.

A missing library gives an :class:`ImportError` that names the pip extra to install,
e.g. ``scpi_scope needs pyvisa: pip install 'mimocorb[instruments]'``.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: module -> (pip extra, what it is for)
EXTRAS = {
    "pyvisa": "instruments",
    "pyvisa_py": "instruments",
    "picosdk": "picoscope",
    "h5py": "hdf5",
    "pyarrow": "parquet",
    "pyarrow.parquet": "parquet",
    "uproot": "root",
}


def require(module: str, user: str) -> ModuleType:
    """Import ``module`` for ``user`` (a source's name), or say which extra brings it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        extra = EXTRAS.get(module, "")
        hint = f"pip install 'mimocorb[{extra}]'" if extra else f"pip install {module}"
        raise ImportError(f"{user} needs {module.split('.')[0]}, which is not installed: {hint} ({exc})") from exc
