"""Checking the values of a setup file: every problem names the file, the key path and the
bad value, and says what is expected.

:class:`Checker` collects the errors and warnings of one file (``setup.yaml:
RingBuffer[1].RB_2.number_of_slots: expected an integer >= 1, got 'abc'``); the sections
of the file are read in :mod:`~mimocorb.daq.setup_buffers` and
:mod:`~mimocorb.daq.setup_functions`, the whole file in :mod:`~mimocorb.daq.setup_file`.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mimocorb.daq.yaml_file import read_yaml


def is_int(v: Any) -> bool:
    """An integer, and not a bool (YAML's ``true`` is no count)."""
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """A real number, and not a bool."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


class Checker:
    """Collects errors and warnings, each prefixed with the file name (``label``) and a key path."""

    def __init__(self, label: str):
        self.label = label
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, where: str, msg: str) -> None:
        self.errors.append(f"{self.label}: {where}: {msg}" if where else f"{self.label}: {msg}")

    def warn(self, where: str, msg: str) -> None:
        self.warnings.append(f"{self.label}: {where}: {msg}" if where else f"{self.label}: {msg}")

    def unknown_keys(self, where: str, d: dict, known: set) -> None:
        for k in d:
            if k not in known:
                self.warn(
                    f"{where}.{k}" if where else str(k),
                    f"unknown key (ignored); known keys: {', '.join(sorted(known))}",
                )

    def mapping(self, where: str, body: Any, known: set, what: str) -> bool:
        """True when ``body`` is a mapping (its unknown keys are warned about); else an error
        saying it should be a mapping with ``what``."""
        if not isinstance(body, dict):
            self.error(where, f"expected a mapping with {what}, got {body!r}")
            return False
        self.unknown_keys(where, body, known)
        return True

    def text(self, where: str, v: Any, what: str) -> Optional[str]:
        """``v`` if it is a non-empty text, else an error saying it should be ``what``."""
        if not isinstance(v, str) or not v:
            self.error(where, f"expected {what}, got {v!r}")
            return None
        return v

    def integer(self, where: str, v: Any, minimum: int) -> Optional[int]:
        if not is_int(v) or v < minimum:
            self.error(where, f"expected an integer >= {minimum}, got {v!r}")
            return None
        return int(v)

    def number(self, where: str, v: Any, minimum: float) -> Optional[float]:
        if not is_number(v) or v < minimum:
            self.error(where, f"expected a number >= {minimum}, got {v!r}")
            return None
        if not math.isfinite(v):  # nan passes every comparison: a run limit of nan would never end
            self.error(where, f"expected a finite number >= {minimum}, got {v!r}")
            return None
        return float(v)

    def flag(self, where: str, v: Any) -> Optional[bool]:
        if not isinstance(v, bool):
            self.error(where, f"expected true or false, got {v!r}")
            return None
        return v


def single_key_items(chk: Checker, section: str, value: Any) -> list[tuple[str, str, Any]]:
    """``[ {NAME: {...}}, ... ]`` (or a mapping ``NAME: {...}``) -> [(where, NAME, body)]; NAME is text."""
    items: list[tuple[str, str, Any]] = []
    if isinstance(value, dict):
        entries = [(f"{section}.{k}", k, v) for k, v in value.items()]
    elif isinstance(value, list):
        entries = []
        for i, entry in enumerate(value):
            if not isinstance(entry, dict) or len(entry) != 1:
                chk.error(f"{section}[{i}]", f"expected a one-key mapping like 'NAME: {{...}}', got {entry!r}")
                continue
            ((name, body),) = entry.items()
            entries.append((f"{section}[{i}].{name}", name, body))
    else:
        chk.error(section, f"expected a list of one-key mappings like '- NAME: {{...}}', got {value!r}")
        return items
    for where, name, body in entries:
        if not isinstance(name, str) or not name:
            # a number would be a different key than the same characters in RB_assign
            chk.error(where, f"expected a name (text such as RB_1 or Fkt_1), got {name!r}")
            continue
        items.append((where, name, body))
    return items


def load_yaml_mapping(chk: Checker, where: str, path: Path) -> Optional[dict]:
    """The mapping in YAML file ``path`` (empty file: ``{}``), or None after an error at ``where``."""
    data, problem = read_yaml(path)
    if problem == "not found":
        chk.error(where, f"config file not found: {path}")
        return None
    if problem is not None:
        chk.error(where, f"config file {path}: {problem}")
        return None
    if data is None:
        return {}
    if not isinstance(data, dict):
        chk.error(where, f"config file {path} must hold a mapping of keys to values, got {type(data).__name__}")
        return None
    return data


def config_file(chk: Checker, where: str, body: dict, setup_dir: Path) -> tuple[Optional[Path], Optional[dict]]:
    """The ``config_file`` of a function block (relative to the setup file) and its mapping.

    ``(None, None)`` when the block has none; ``(path, None)`` when it cannot be read (an error)."""
    if "config_file" not in body:
        return None, None
    name = chk.text(f"{where}.config_file", body["config_file"], "a file name")
    if name is None:
        return None, None
    path = (setup_dir / name).resolve()
    return path, load_yaml_mapping(chk, f"{where}.config_file", path)


def output_directory_problem(path: Path) -> Optional[str]:
    """Why no run folder can be made inside ``path`` (None: one can)."""
    for p in [Path(path), *Path(path).parents]:
        if p.exists():
            if not p.is_dir():
                return f"{p} is a file, not a folder"
            if not os.access(p, os.W_OK | os.X_OK):
                return f"no permission to create folders in {p}"
            return None
    return None


__all__ = [
    "Checker",
    "config_file",
    "is_int",
    "is_number",
    "load_yaml_mapping",
    "output_directory_problem",
    "single_key_items",
]
