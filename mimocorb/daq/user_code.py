"""Loading the user's worker functions named in a setup file.

A setup file names each worker function by ``file_name`` (a module path relative to
the setup file, without ``.py``) and ``fkt_name``. The module is loaded from that file
under its stem as module name (as mimoCoRB 1.x did), with its own folder and the setup
file's folder on ``sys.path`` so that it can import its neighbours
(``from modules.filters import ...`` or ``import filters``). The same loader runs in
the main process (to find a missing module or function before anything starts) and in
every worker process (fork and spawn alike).
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from types import ModuleType
from typing import Callable, Sequence

logger = logging.getLogger(__name__)


class UserCodeError(ImportError):
    """A worker module cannot be loaded or lacks the named function."""


def module_file(setup_dir: Path, file_name: str) -> Path:
    """Return the absolute path of the module file named by ``file_name``.

    Parameters
    ----------
    setup_dir : Path
        Folder of the setup file; ``file_name`` is relative to it (unless absolute).
    file_name : str
        Module path without ``.py`` (a trailing ``.py`` is accepted too).
    """
    name = file_name if file_name.endswith(".py") else file_name + ".py"
    path = Path(name)
    if not path.is_absolute():
        path = setup_dir / path
    return path.resolve()


def _add_search_paths(paths: Sequence[str]) -> None:
    for p in reversed([str(x) for x in paths]):
        if p not in sys.path:
            sys.path.insert(0, p)


def load_module(path: Path, search_paths: Sequence[str] = ()) -> ModuleType:
    """Load (or reuse) the module in file ``path`` under the name of its stem.

    A module already in ``sys.modules`` under that name is reused only if it was
    loaded from the same file; otherwise the file is loaded afresh.

    Raises
    ------
    UserCodeError
        When the file is missing or executing it raises.
    """
    path = Path(path).resolve()
    name = path.stem
    _add_search_paths([str(path.parent), *search_paths])
    known = sys.modules.get(name)
    if known is not None and getattr(known, "__file__", None) and Path(known.__file__).resolve() == path:
        return known
    if not path.is_file():
        raise UserCodeError(f"module file not found: {path}")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserCodeError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException as exc:  # SyntaxError, ImportError, anything the module raises
        sys.modules.pop(name, None)
        raise UserCodeError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    return module


def load_function(path: Path, fkt_name: str, search_paths: Sequence[str] = ()) -> Callable:
    """Return the callable ``fkt_name`` from the module in file ``path``.

    Raises
    ------
    UserCodeError
        When the module cannot be loaded, or has no callable of that name.
    """
    module = load_module(path, search_paths)
    fn = getattr(module, fkt_name, None)
    if fn is None:
        found = sorted(k for k, v in vars(module).items() if callable(v) and not k.startswith("_"))
        raise UserCodeError(
            f"{path} has no function {fkt_name!r} (callables found there: {', '.join(found) or 'none'})"
        )
    if not callable(fn):
        raise UserCodeError(f"{path}: {fkt_name!r} is a {type(fn).__name__}, expected a function")
    return fn
