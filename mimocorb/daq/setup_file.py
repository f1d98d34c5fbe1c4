"""Reading and validating a DAQ setup file (the mimoCoRB 1.x YAML format).

Everything is checked before any buffer, run folder or worker process exists: every
error names the file, the key path and the bad value and says what is expected, e.g.
``setup.yaml: RingBuffer[1].RB_2.number_of_slots: expected an integer >= 1, got 'abc'``.
All errors of a file are collected and raised together as one :class:`SetupFileError`;
unknown keys only give warnings. Module files, the worker functions in them and the
config files are found relative to the setup file.

Files must be UTF-8 text, and a key given twice in one mapping is an error (plain YAML
would silently keep the last one). Besides the form of each value, the check covers
what the ring buffers can hold: a slot type that cannot live in shared memory (Python
objects, zero bytes), field names that clash with the metadata columns, sizes beyond
what ``/dev/shm`` has free, more reader groups or attached processes per buffer than a
buffer has room for. The worker modules are imported in a separate process, each import
bounded by ``import_timeout`` seconds.

The format::

    output_directory: target          # run folders <name>_<date>_<time>/ go in here
    RingBuffer:
      - RB_1: {number_of_slots: 128, channel_per_slot: 4250,
               data_type: {1: ['chA', 'float32'], 2: ['chB', 'float32']}}
    Functions:
      - Fkt_main: {config_file: config/common.yaml, runtime: 60, runevents: 0}
      - Fkt_1: {file_name: modules/source, fkt_name: source, num_process: 1,
                RB_assign: {RB_1: write}, config_file: config/source.yaml}
"""

from __future__ import annotations

import logging
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mimocorb import _ringbuf
from mimocorb.daq.user_code import IMPORT_TIMEOUT, module_file
from mimocorb.daq.user_code import check_functions as _check_functions
from mimocorb.daq.yaml_file import read_yaml
from mimocorb.mimo_buffer import METADATA_DTYPE
from mimocorb.segments import slot_dtype

logger = logging.getLogger(__name__)

TOP_LEVEL_KEYS = {"output_directory", "RingBuffer", "Functions", "FunctionConfigs", "GUI_control", "KBD_control"}
BUFFER_KEYS = {"number_of_slots", "channel_per_slot", "data_type"}
FUNCTION_KEYS = {"file_name", "fkt_name", "num_process", "RB_assign", "config_file"}
MAIN_KEYS = {"config_file", "runtime", "runevents"}
MODES = ("read", "write", "observe")
#: Largest channel_per_slot a buffer holds (the ring's header keeps it in 32 bits).
MAX_VALUES_PER_SLOT = 2**32 - 1


class SetupFileError(ValueError):
    """The setup file (or an option of the run overriding it) is invalid; ``errors`` lists
    every problem found, one per line.

    Not to be confused with :class:`mimocorb.mimo_buffer.SetupError`: a setup *dict* that
    does not fit its buffer.
    """

    def __init__(self, errors: list[str]):
        self.errors = list(errors)
        super().__init__("\n".join(self.errors))


@dataclass
class BufferSpec:
    """One ring buffer of the setup: the arguments of ``NewBuffer``."""

    name: str
    number_of_slots: int
    values_per_slot: int
    dtype: Any  # as handed to NewBuffer: np.dtype, or list of (name, np.dtype)

    @property
    def field_names(self) -> list[str]:
        return [n for n, _ in self.dtype] if isinstance(self.dtype, list) else []


@dataclass
class FunctionSpec:
    """One worker function of the setup (``Fkt_<n>``)."""

    key: str
    fkt_name: str
    file_name: str
    module_path: Path
    num_process: int
    rb_assign: dict[str, str]
    config_file: Optional[Path]
    config: dict = field(default_factory=dict)

    def buffers(self, mode: str) -> list[str]:
        """Names of the buffers this function uses in ``mode`` (read/write/observe), in setup order."""
        return [b for b, m in self.rb_assign.items() if m == mode]


@dataclass
class DAQSetup:
    """A validated setup file."""

    path: Path
    name: str
    output_directory: Path
    buffers: list[BufferSpec]
    functions: list[FunctionSpec]
    runtime: float = 0.0
    runevents: int = 0
    common_config_file: Optional[Path] = None
    kbd_control: bool = True
    gui_control: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def directory(self) -> Path:
        return self.path.parent

    def config_files(self) -> list[Path]:
        """Every config file the setup refers to (common one first), without duplicates."""
        files = [self.common_config_file] + [f.config_file for f in self.functions]
        out: list[Path] = []
        for f in files:
            if f is not None and f not in out:
                out.append(f)
        return out

    def buffer(self, name: str) -> BufferSpec:
        for b in self.buffers:
            if b.name == name:
                return b
        raise KeyError(name)


def run_name(setup_path: Path) -> str:
    """Name for run folders: the setup file's stem without a trailing ``setup``."""
    stem = Path(setup_path).stem
    for suffix in ("_setup", "-setup", "setup"):
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


class _Checker:
    """Collects errors and warnings, each prefixed with the file name."""

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

    def integer(self, where: str, v: Any, minimum: int) -> Optional[int]:
        if not _is_int(v) or v < minimum:
            self.error(where, f"expected an integer >= {minimum}, got {v!r}")
            return None
        return int(v)

    def number(self, where: str, v: Any, minimum: float) -> Optional[float]:
        if not _is_number(v) or v < minimum:
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


def _single_key_items(chk: _Checker, section: str, value: Any) -> list[tuple[str, str, Any]]:
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


def _slot_type(chk: _Checker, where: str, v: Any, what: str) -> Optional[np.dtype]:
    """A NumPy type that a slot in shared memory can hold (no Python objects, not 0 bytes)."""
    try:
        dt = np.dtype(v)
    except (TypeError, ValueError):
        chk.error(where, f"expected a NumPy type name like 'float32' or 'int32'{what}, got {v!r}")
        return None
    try:
        slot_dtype(dt)  # the ring buffer's own rule
    except ValueError as exc:
        chk.error(where, f"expected a numeric NumPy type like 'float32'{what}, got {v!r}: {exc}")
        return None
    return dt


def _parse_dtype(chk: _Checker, where: str, v: Any) -> Any:
    """1.x ``data_type``: a NumPy type name, or ``{1: [name, type], ...}`` (or a list of pairs)."""
    if isinstance(v, str):
        return _slot_type(chk, where, v, " or a mapping {1: [name, type]}")
    if isinstance(v, dict):
        pairs = [(f"{where}.{k}", p) for k, p in v.items()]
    elif isinstance(v, list):
        pairs = [(f"{where}[{i}]", p) for i, p in enumerate(v)]
    else:
        chk.error(where, f"expected a NumPy type name like 'float32' or a mapping {{1: [name, type]}}, got {v!r}")
        return None
    out = []
    ok = True
    for w, p in pairs:
        if not (isinstance(p, (list, tuple)) and len(p) == 2 and isinstance(p[0], str) and p[0]):
            chk.error(w, f"expected a pair [field_name, type] like ['chA', 'float32'], got {p!r}")
            ok = False
            continue
        if p[0] in METADATA_DTYPE.names:
            chk.error(
                w,
                f"field name {p[0]!r} is the name of a metadata column ({', '.join(METADATA_DTYPE.names)}); "
                f"exported files would have two columns of that name: choose another name",
            )
            ok = False
            continue
        dt = _slot_type(chk, w, p[1], f" for field {p[0]!r}")
        if dt is None:
            ok = False
            continue
        if any(n == p[0] for n, _ in out):
            chk.error(w, f"field name {p[0]!r} appears twice; field names must be unique")
            ok = False
            continue
        out.append((p[0], dt))
    if ok and not out:
        chk.error(where, "expected at least one field [name, type], got none")
        return None
    return out if ok else None


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


def _mib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def _check_capacity(chk: _Checker, buffers: list[tuple[str, BufferSpec]], functions: list[FunctionSpec]) -> None:
    """What the ring buffers can hold: sizes against /dev/shm, reader groups and processes per buffer."""
    try:
        free = shutil.disk_usage("/dev/shm").free
    except OSError:
        free = None
    total, too_big = 0, False
    for where, b in buffers:
        payload = b.values_per_slot * slot_dtype(b.dtype).itemsize
        need = b.number_of_slots * (payload + 8 * _ringbuf.MAX_GROUPS)  # at least this (Python ints: no overflow)
        if b.values_per_slot > MAX_VALUES_PER_SLOT:
            chk.error(f"{where}.channel_per_slot", f"expected at most {MAX_VALUES_PER_SLOT}, got {b.values_per_slot}")
            too_big = True
            continue
        if free is not None and need > free:
            chk.error(
                where,
                f"needs at least {_mib(need)} of shared memory ({b.number_of_slots} slots x {payload} bytes); "
                f"/dev/shm has {_mib(free)} free",
            )
            too_big = True
            continue
        total += _ringbuf.layout_sizes(b.number_of_slots, payload)[4]
    if free is not None and total > free and not too_big:
        chk.error(
            "RingBuffer", f"the buffers need {_mib(total)} of shared memory in all; /dev/shm has {_mib(free)} free"
        )
    for where, b in buffers:
        readers = [f for f in functions if b.name in f.buffers("read")]
        if len(readers) > _ringbuf.MAX_GROUPS:
            chk.error(
                where,
                f"read by {len(readers)} functions ({', '.join(f.key for f in readers)}); a buffer has room for "
                f"at most {_ringbuf.MAX_GROUPS} reader groups (one per reading function)",
            )
        attached = [f for f in functions if b.name in f.buffers("read") + f.buffers("write")]
        n = sum(f.num_process for f in attached)
        if n > _ringbuf.MAX_PROCS:
            chk.error(
                where,
                f"{n} processes would attach to it ({', '.join(f'{f.key}: {f.num_process}' for f in attached)}); "
                f"a buffer has room for at most {_ringbuf.MAX_PROCS}",
            )


def _load_yaml_mapping(chk: _Checker, where: str, path: Path) -> Optional[dict]:
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


def load_setup(path: str | Path, *, check_functions: bool = True, import_timeout: float = IMPORT_TIMEOUT) -> DAQSetup:
    """Read and validate a setup file.

    Parameters
    ----------
    path : str or Path
        The setup YAML file.
    check_functions : bool
        Import every worker module (in a separate process) and check that the named function exists.
    import_timeout : float
        Seconds each module may take to import.

    Returns
    -------
    DAQSetup
        The validated setup; ``warnings`` lists unknown keys and other oddities
        (they are logged as warnings too).

    Raises
    ------
    SetupFileError
        With every problem found, one per line.
    KeyboardInterrupt
        Ctrl-C while the modules are checked (never reported as a bad setup).
    """
    path = Path(path)
    chk = _Checker(str(path))
    raw, problem = read_yaml(path)
    if problem == "not found":
        raise SetupFileError([f"{path}: setup file not found"])
    if problem is not None:
        raise SetupFileError([f"{path}: {problem}"])
    if not isinstance(raw, dict):
        got = type(raw).__name__
        raise SetupFileError([f"{path}: expected a mapping with keys RingBuffer and Functions, got {got}"])
    setup_dir = path.resolve().parent
    chk.unknown_keys("", raw, TOP_LEVEL_KEYS)

    out_dir = raw.get("output_directory", "target")
    if not isinstance(out_dir, str) or not out_dir:
        chk.error("output_directory", f"expected a folder name, got {out_dir!r}")
        out_dir = "target"
    elif output_directory_problem(setup_dir / out_dir):
        chk.error("output_directory", f"{output_directory_problem(setup_dir / out_dir)}; got {out_dir!r}")
    kbd = chk.flag("KBD_control", raw.get("KBD_control", True))
    gui = chk.flag("GUI_control", raw.get("GUI_control", False))

    # ---- buffers
    buffers: list[BufferSpec] = []
    buffer_where: list[tuple[str, BufferSpec]] = []
    if "RingBuffer" not in raw:
        chk.error("RingBuffer", "missing; expected a list of buffers like '- RB_1: {number_of_slots: 128, ...}'")
    for where, name, body in _single_key_items(chk, "RingBuffer", raw.get("RingBuffer", [])):
        if not isinstance(body, dict):
            chk.error(where, f"expected a mapping with number_of_slots, channel_per_slot, data_type, got {body!r}")
            continue
        chk.unknown_keys(where, body, BUFFER_KEYS)
        if any(b.name == name for b in buffers):
            chk.error(where, f"buffer name {name!r} is used twice; buffer names must be unique")
        missing = [k for k in sorted(BUFFER_KEYS) if k not in body]
        for k in missing:
            chk.error(
                f"{where}.{k}",
                "missing; expected "
                + {
                    "number_of_slots": "an integer >= 1",
                    "channel_per_slot": "an integer >= 1 (values per slot)",
                    "data_type": "a NumPy type name or a mapping {1: [name, type], ...}",
                }[k],
            )
        n = chk.integer(f"{where}.number_of_slots", body["number_of_slots"], 1) if "number_of_slots" in body else None
        v = (
            chk.integer(f"{where}.channel_per_slot", body["channel_per_slot"], 1)
            if "channel_per_slot" in body
            else None
        )
        dt = _parse_dtype(chk, f"{where}.data_type", body["data_type"]) if "data_type" in body else None
        if n is not None and v is not None and dt is not None:
            buffers.append(BufferSpec(name, n, v, dt))
            buffer_where.append((where, buffers[-1]))
    declared = {name for _, name, _ in _single_key_items(_Checker(""), "RingBuffer", raw.get("RingBuffer", []))}

    # ---- functions
    runtime, runevents = 0.0, 0
    common_file: Optional[Path] = None
    common: dict = {}
    fconfigs = raw.get("FunctionConfigs", {}) or {}
    if not isinstance(fconfigs, dict):
        chk.error("FunctionConfigs", f"expected a mapping of function names to config blocks, got {fconfigs!r}")
        fconfigs = {}
    if "Functions" not in raw:
        chk.error("Functions", "missing; expected a list of functions like '- Fkt_1: {file_name: ..., fkt_name: ...}'")
    items = _single_key_items(chk, "Functions", raw.get("Functions", []))
    for where, name, body in items:
        if name != "Fkt_main":
            continue
        if not isinstance(body, dict):
            chk.error(where, f"expected a mapping with config_file, runtime, runevents, got {body!r}")
            continue
        chk.unknown_keys(where, body, MAIN_KEYS)
        if "runtime" in body:
            runtime = chk.number(f"{where}.runtime", body["runtime"], 0) or 0.0
        if "runevents" in body:
            runevents = chk.integer(f"{where}.runevents", body["runevents"], 0) or 0
        if "config_file" in body:
            cf = body["config_file"]
            if not isinstance(cf, str) or not cf:
                chk.error(f"{where}.config_file", f"expected a file name, got {cf!r}")
            else:
                common_file = (setup_dir / cf).resolve()
                common = _load_yaml_mapping(chk, f"{where}.config_file", common_file) or {}
                general = common.get("general", {})
                if isinstance(general, dict):
                    cw = f"{where}.config_file ({cf}) general"
                    if "runtime" in general:
                        runtime = chk.number(f"{cw}.runtime", general["runtime"], 0) or 0.0
                    if "runevents" in general:
                        runevents = chk.integer(f"{cw}.runevents", general["runevents"], 0) or 0

    functions: list[FunctionSpec] = []
    to_load: list[tuple[str, str, Path, str]] = []  # (where, key, module, function) to import
    used: dict[str, set[str]] = {b: set() for b in declared}
    for where, name, body in items:
        if name == "Fkt_main":
            continue
        if not isinstance(body, dict):
            chk.error(where, f"expected a mapping with file_name, fkt_name, num_process, RB_assign, got {body!r}")
            continue
        chk.unknown_keys(where, body, FUNCTION_KEYS)
        if any(f.key == name for f in functions):
            chk.error(where, f"function key {name!r} is used twice; keys must be unique")
        bad = False
        strings = {}
        for k, what in (
            ("file_name", "a module path relative to the setup file, without .py"),
            ("fkt_name", "the name of a function in that module"),
        ):
            val = body.get(k)
            if k not in body:
                chk.error(f"{where}.{k}", f"missing; expected {what}")
                bad = True
            elif not isinstance(val, str) or not val:
                chk.error(f"{where}.{k}", f"expected {what}, got {val!r}")
                bad = True
            else:
                strings[k] = val
        nproc = chk.integer(f"{where}.num_process", body.get("num_process", 1), 1)
        if nproc is not None and nproc > _ringbuf.MAX_PROCS:
            chk.error(f"{where}.num_process", f"expected at most {_ringbuf.MAX_PROCS} processes, got {nproc}")
            nproc = None
        rb_assign = body.get("RB_assign", {}) or {}
        if not isinstance(rb_assign, dict):
            chk.error(f"{where}.RB_assign", f"expected a mapping like {{RB_1: read, RB_2: write}}, got {rb_assign!r}")
            rb_assign = {}
        assign: dict[str, str] = {}
        for b, mode in rb_assign.items():
            if not isinstance(b, str):
                chk.error(f"{where}.RB_assign.{b}", f"expected a buffer name (text such as RB_1), got {b!r}")
            elif b not in declared:
                chk.error(
                    f"{where}.RB_assign.{b}",
                    f"unknown buffer {b!r}; buffers defined: {', '.join(sorted(declared)) or 'none'}",
                )
            elif mode not in MODES:
                chk.error(f"{where}.RB_assign.{b}", f"expected one of read, write, observe, got {mode!r}")
            else:
                assign[str(b)] = mode
                used[b].add(mode)
        if not rb_assign:
            chk.warn(where, "no RB_assign: this function never sees the end of the run and will be terminated then")
        cfg_file: Optional[Path] = None
        config: dict = {}
        fkt = strings.get("fkt_name", "")
        if fkt in fconfigs and isinstance(fconfigs[fkt], dict):
            config = dict(fconfigs[fkt])
        for key in (fkt, name):
            if key in common and isinstance(common[key], dict):
                config = dict(common[key])
                break
        if "config_file" in body:
            cf = body["config_file"]
            if not isinstance(cf, str) or not cf:
                chk.error(f"{where}.config_file", f"expected a file name, got {cf!r}")
            else:
                cfg_file = (setup_dir / cf).resolve()
                loaded = _load_yaml_mapping(chk, f"{where}.config_file", cfg_file)
                config = dict(loaded) if loaded is not None else {}
        mpath = module_file(setup_dir, strings["file_name"]) if "file_name" in strings else None
        if mpath is not None and not mpath.is_file():
            chk.error(
                f"{where}.file_name",
                f"module file not found: {mpath} "
                f"(file_name is a module path relative to the setup file, without .py; got {strings['file_name']!r})",
            )
            bad = True
        elif mpath is not None and check_functions and "fkt_name" in strings:
            to_load.append((where, name, mpath, strings["fkt_name"]))
        if not bad and nproc is not None and mpath is not None:
            functions.append(
                FunctionSpec(name, strings["fkt_name"], strings["file_name"], mpath, nproc, assign, cfg_file, config)
            )

    # ---- the functions themselves, imported in a separate process (bounded; Ctrl-C is raised)
    if to_load:
        problems = _check_functions([(m, f, [str(setup_dir)]) for _, _, m, f in to_load], import_timeout)
        failed = set()
        for (where, key, _, _), msg in zip(to_load, problems):
            if msg is not None:
                bad_key = "fkt_name" if "has no function" in msg or "expected a function" in msg else "file_name"
                chk.error(f"{where}.{bad_key}", msg)
                failed.add(key)
        functions = [f for f in functions if f.key not in failed]
    _check_capacity(chk, buffer_where, functions)

    for b in sorted(declared):
        if "write" not in used.get(b, set()):
            chk.warn(f"RingBuffer.{b}", "no function writes to this buffer")
        elif "read" not in used.get(b, set()):
            chk.warn(f"RingBuffer.{b}", "no function reads this buffer; its events are only counted")
    if not functions and not chk.errors:
        chk.error("Functions", "expected at least one function besides Fkt_main, got none")

    if chk.errors:
        raise SetupFileError(chk.errors)
    for w in chk.warnings:
        logger.warning("%s", w)
    return DAQSetup(
        path=path.resolve(),
        name=run_name(path),
        output_directory=(setup_dir / out_dir),
        buffers=buffers,
        functions=functions,
        runtime=runtime,
        runevents=runevents,
        common_config_file=common_file,
        kbd_control=bool(kbd) if kbd is not None else True,
        gui_control=bool(gui),
        warnings=chk.warnings,
    )
