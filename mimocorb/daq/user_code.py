"""Finding and loading the worker functions named in a setup file.

A setup file names each worker function by ``file_name`` and ``fkt_name``. The rule that
tells what ``file_name`` names (:func:`resolve_module`):

1. a module *file*: ``file_name`` as a path relative to the setup file (or absolute), with
   or without ``.py``. If that file exists it is used -- the 1.x meaning, also when a module
   of the same dotted name could be imported. It is loaded under its stem as module name (as
   mimoCoRB 1.x did), with its own folder and the setup file's folder on ``sys.path`` so that
   it can import its neighbours (``from modules.filters import ...`` or ``import filters``);
2. otherwise, if ``file_name`` is a dotted Python module name (identifiers separated by dots,
   no slash), that *module* is imported: the functions that ship with mimocorb are named so,
   e.g. ``file_name: mimocorb.exporters`` with ``fkt_name: save_parquet``, and so is any
   installed module (the setup file's folder is on ``sys.path`` as well);
3. otherwise, or when neither is found, it is an error naming what was looked for: the path
   tried and the module name tried.

The same loader runs in every worker process (fork and spawn alike) and, for the setup
check, in a separate process (:func:`check_functions`): the run control itself never
executes user code, a module that blocks when imported cannot hang the check (each import
is bounded and the module named), and Ctrl-C during the check is an interruption, never a
bad setup.

A function that carries a ``check_config`` attribute (the packaged sources and sinks do)
has its configuration checked there as well, right after its module is loaded and within
the same bound (:class:`ConfigCheck`): ``fn.check_config(config_dict, sink_setups)``, and
with ``source_setups=`` too when it takes that argument. A ValueError (or any other
exception) it raises is a setup error, before any buffer or process exists.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import logging
import multiprocessing
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Mapping, Optional, Sequence

logger = logging.getLogger(__name__)

#: What ``file_name`` may be, for the messages that say so.
FILE_NAME_RULE = (
    "file_name is a path relative to the setup file (with or without .py), "
    "or the dotted name of an importable module such as mimocorb.exporters"
)


class UserCodeError(ImportError):
    """A worker module cannot be found or loaded, or lacks the named function.

    ``key`` is the setup-file key that names what is wrong: ``"file_name"`` or ``"fkt_name"``.
    """

    key = "file_name"


class FunctionNotFound(UserCodeError):
    """The module loads, but has no function of that name."""

    key = "fkt_name"


@dataclass(frozen=True)
class ModuleRef:
    """Where a worker function's module comes from (see the rule in the module notes).

    Attributes
    ----------
    path : Path, optional
        A module file (rule 1), loaded under its stem.
    name : str, optional
        A dotted module name to import (rule 2); ``tried`` is the file looked for first.
    """

    path: Optional[Path] = None
    name: Optional[str] = None
    tried: Optional[Path] = None

    def __str__(self) -> str:
        return str(self.path) if self.path is not None else f"module {self.name!r}"


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


def is_module_name(text: str) -> bool:
    """True for a dotted Python module name: identifiers separated by dots (``mimocorb.exporters``)."""
    return all(part.isidentifier() for part in text.split("."))


def resolve_module(setup_dir: Path, file_name: str) -> ModuleRef:
    """What ``file_name`` names, by the rule of the module notes (a file first, then a module name).

    Whether a module of that name can be imported is found out when it is loaded
    (:func:`load_function`, in the setup check's own process).

    Raises
    ------
    UserCodeError
        When there is no such file and ``file_name`` is no module name either.
    """
    path = module_file(setup_dir, file_name)
    if path.is_file():
        return ModuleRef(path=path)
    if is_module_name(file_name):
        return ModuleRef(name=file_name, tried=path)
    raise UserCodeError(f"module file not found: {path} ({FILE_NAME_RULE}; got {file_name!r})")


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


def import_module(ref: ModuleRef, search_paths: Sequence[str] = ()) -> ModuleType:
    """Import the module of a dotted name (rule 2), with ``search_paths`` on ``sys.path``.

    Raises
    ------
    UserCodeError
        When no module of that name exists (naming the file tried first too), or importing it raises.
    """
    _add_search_paths(search_paths)
    try:
        return importlib.import_module(ref.name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (ref.name == exc.name or ref.name.startswith(exc.name + ".")):
            raise UserCodeError(
                f"module file not found: {ref.tried}, and no module {ref.name!r} can be imported "
                f"({exc}); {FILE_NAME_RULE}"
            ) from None
        raise UserCodeError(f"importing module {ref.name!r} failed: {type(exc).__name__}: {exc}") from exc
    except (Exception, SystemExit) as exc:  # SyntaxError, ImportError, sys.exit(); never KeyboardInterrupt
        raise UserCodeError(f"importing module {ref.name!r} failed: {type(exc).__name__}: {exc}") from exc


def load_function(ref: ModuleRef, fkt_name: str, search_paths: Sequence[str] = ()) -> Callable:
    """Return the callable ``fkt_name`` from the module ``ref`` names.

    Raises
    ------
    UserCodeError
        When the module cannot be loaded (``FunctionNotFound`` when it has no callable of that name).
    """
    module = load_module(ref.path, search_paths) if ref.path is not None else import_module(ref, search_paths)
    fn = getattr(module, fkt_name, None)
    if fn is None:
        public = getattr(module, "__all__", None)  # a packaged module lists what it offers
        found = sorted(
            public if public is not None else (k for k, v in vars(module).items() if callable(v) and not k[:1] == "_")
        )
        raise FunctionNotFound(f"{ref} has no function {fkt_name!r} (found there: {', '.join(found) or 'none'})")
    if not callable(fn):
        raise FunctionNotFound(f"{ref}: {fkt_name!r} is a {type(fn).__name__}, expected a function")
    return fn


#: Seconds a worker module may take to import (and its config check to run) during the setup check.
IMPORT_TIMEOUT = 30.0


@dataclass(frozen=True)
class ConfigCheck:
    """What a function's ``check_config`` is called with: its config dict and the setups
    (``name``, ``dtype``, ``values_per_slot``) of the buffers it writes and reads."""

    config: Mapping[str, Any]
    sink_setups: Sequence[Mapping[str, Any]] = ()
    source_setups: Sequence[Mapping[str, Any]] = ()


def run_config_check(fn: Callable, check: ConfigCheck) -> Optional[str]:
    """Call ``fn.check_config`` if the function has one; the problem it reports (None: fine or no check)."""
    checker = getattr(fn, "check_config", None)
    if not callable(checker):
        return None
    try:
        params = inspect.signature(checker).parameters
        extra = (
            {"source_setups": list(check.source_setups)}
            if "source_setups" in params or any(p.kind is p.VAR_KEYWORD for p in params.values())
            else {}
        )
    except (TypeError, ValueError):  # no signature to look at: the two arguments every check takes
        extra = {}
    try:
        checker(dict(check.config), list(check.sink_setups), **extra)
    except Exception as exc:  # a ValueError is the rule; anything else is a problem of the config as well
        text = str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}"
        return text
    return None


def _check_in_child(conn, items: list[tuple]) -> None:
    """Child process of :func:`check_functions`: load each function (and check its config), report as it goes."""
    try:
        for i, (ref, fkt_name, search, *check) in enumerate(items):
            conn.send(("start", i))
            try:
                fn = load_function(ref, fkt_name, search)
            except UserCodeError as exc:
                conn.send(("done", i, (exc.key, str(exc))))
                continue
            problem = None
            if check and check[0] is not None:
                conn.send(("check", i))
                problem = run_config_check(fn, check[0])
            conn.send(("done", i, None if problem is None else ("config", problem)))
    except BaseException:  # noqa: BLE001 - Ctrl-C: the parent sees the pipe close
        pass
    finally:
        conn.close()
        os._exit(0)


def check_functions(items: Sequence[tuple], timeout: float = IMPORT_TIMEOUT) -> list[Optional[tuple[str, str]]]:
    """Check that each ``(module, function name, search paths[, ConfigCheck])`` loads, in a separate
    process, and that the function's ``check_config`` (if it has one) accepts the config.

    Returns one entry per item: None when the function was found (and its config is fine),
    else ``(key, problem)``: the setup-file key at fault (``"file_name"`` or ``"fkt_name"``)
    and a :class:`UserCodeError` message, ``"config"`` and the problem ``check_config``
    raised, or an import (or check) that did not finish within ``timeout`` seconds (that
    process is then ended and the check goes on with the next item in a new one). Ctrl-C
    (KeyboardInterrupt) ends the check and is raised.
    """
    todo = [(ref, f, [str(x) for x in s], *(rest[:1] or [None])) for ref, f, s, *rest in items]
    results: list[Optional[tuple[str, str]]] = [None] * len(todo)
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
    current: Optional[int] = None  # index whose import (or config check) runs now
    checking = False  # the config check of `current` runs (its import is done)
    expected, deadline = first, 0.0
    try:
        while True:
            wait = 1.0 if current is None else deadline - time.monotonic()
            if wait <= 0:
                if checking:
                    results[current] = (
                        "config",
                        f"{todo[current][1]}.check_config did not finish within {timeout:g} s",
                    )
                else:
                    results[current] = (
                        "file_name",
                        f"importing {todo[current][0]} did not finish within {timeout:g} s "
                        f"(does the module wait for something when it is imported?)",
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
                results[expected] = (
                    "file_name",
                    f"importing {todo[expected][0]} ended the process (exit code {proc.exitcode})",
                )
                return expected + 1
            if kind == "start":
                current, checking, deadline = first + i, False, time.monotonic() + timeout
            elif kind == "check":  # the import is done; the check gets a bound of its own
                checking, deadline = True, time.monotonic() + timeout
            else:
                results[first + i] = rest[0]
                current, expected = None, first + i + 1
    finally:
        recv_end.close()
        if proc.is_alive():
            proc.kill()
        proc.join(5)
        proc.close()
