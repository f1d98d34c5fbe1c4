"""Packages of worker functions whose modules are imported on first use.

``mimocorb.sources`` and ``mimocorb.demo`` name their functions in a table (function ->
module); importing the package then loads none of the modules (no instrument, buffer
or plotting library), and ``getattr(package, name)`` -- what the setup loader does --
imports the one module that defines ``name``.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable, Mapping


def lazy_functions(package: str, functions: Mapping[str, str]) -> tuple[Callable[[str], Any], Callable[[], list]]:
    """The module ``__getattr__`` and ``__dir__`` of ``package`` for its ``functions`` (name -> module).

    Use as ``__getattr__, __dir__ = lazy_functions(__name__, FUNCTIONS)`` in the package's ``__init__``.
    """

    def __getattr__(name: str) -> Any:
        if name in functions:
            return getattr(importlib.import_module(functions[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    def __dir__() -> list:
        return sorted(set(vars(sys.modules[package])) | set(functions))

    return __getattr__, __dir__
