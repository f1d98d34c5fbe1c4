"""Loading the user's worker functions named in a setup file.

A setup file names each worker function by ``file_name`` (a module path relative to
the setup file, without ``.py``) and ``fkt_name``. The module is loaded from that file
under its stem as module name (as mimoCoRB 1.x did), with its own folder and the setup
file's folder on ``sys.path`` so that it can import its neighbours
(``from modules.filters import ...`` or ``import filters``). The same loader runs in
every worker process (fork and spawn alike) and, for the setup check, in a separate
process (:func:`check_functions`): the run control itself never executes user code, a
module that blocks when imported cannot hang the check (each import is bounded and the
module named), and Ctrl-C during the check is an interruption, never a bad setup.
"""

from __future__ import annotations

import importlib.util
import logging
import multiprocessing
import os
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Callable, Optional, Sequence

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
    except (Exception, SystemExit) as exc:  # SyntaxError, ImportError, sys.exit(); never KeyboardInterrupt
        sys.modules.pop(name, None)
        raise UserCodeError(f"importing {path} failed: {type(exc).__name__}: {exc}") from exc
    except BaseException:
        sys.modules.pop(name, None)
        raise
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


#: Seconds a worker module may take to import during the setup check.
IMPORT_TIMEOUT = 30.0


def _check_in_child(conn, items: list[tuple[str, str, list[str]]]) -> None:
    """Child process of :func:`check_functions`: load each function, report as it goes."""
    try:
        for i, (path, fkt_name, search) in enumerate(items):
            conn.send(("start", i))
            try:
                load_function(Path(path), fkt_name, search)
                conn.send(("done", i, None))
            except UserCodeError as exc:
                conn.send(("done", i, str(exc)))
    except BaseException:  # noqa: BLE001 - Ctrl-C: the parent sees the pipe close
        pass
    finally:
        conn.close()
        os._exit(0)


def check_functions(
    items: Sequence[tuple[Path, str, Sequence[str]]], timeout: float = IMPORT_TIMEOUT
) -> list[Optional[str]]:
    """Check that each ``(module file, function name, search paths)`` loads, in a separate process.

    Returns one entry per item: None when the function was found, else the problem
    (a :class:`UserCodeError` message, or an import that did not finish within
    ``timeout`` seconds -- that process is then ended and the check goes on with the
    next item in a new one). Ctrl-C (KeyboardInterrupt) ends the check and is raised.
    """
    todo = [(str(p), f, [str(x) for x in s]) for p, f, s in items]
    results: list[Optional[str]] = [None] * len(todo)
    first = 0
    while first < len(todo):
        first = _check_from(todo, first, results, timeout)
    return results


def _check_from(todo: list, first: int, results: list, timeout: float) -> int:
    """Check ``todo[first:]`` in one child process; return where to go on (len(todo): done)."""
    ctx = multiprocessing.get_context("fork")
    recv_end, send_end = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_check_in_child, args=(send_end, todo[first:]), daemon=True)
    proc.start()
    send_end.close()
    current: Optional[int] = None  # index whose import runs now
    expected, deadline = first, 0.0
    try:
        while True:
            wait = 1.0 if current is None else deadline - time.monotonic()
            if wait <= 0:
                results[current] = (
                    f"importing {todo[current][0]} did not finish within {timeout:g} s "
                    f"(does the module wait for something when it is imported?)"
                )
                return current + 1
            if not recv_end.poll(wait):
                continue
            try:
                kind, i, *rest = recv_end.recv()
            except EOFError:  # the child ended: done, or ended by the module it imported
                if expected >= len(todo):
                    return expected
                proc.join(5)
                results[expected] = f"importing {todo[expected][0]} ended the process (exit code {proc.exitcode})"
                return expected + 1
            if kind == "start":
                current, deadline = first + i, time.monotonic() + timeout
            else:
                results[first + i] = rest[0]
                current, expected = None, first + i + 1
    finally:
        recv_end.close()
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        proc.close()
