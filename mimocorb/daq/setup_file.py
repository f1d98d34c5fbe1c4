"""Reading and validating a DAQ setup file (the mimoCoRB 1.x YAML format).

Everything is checked before any buffer or process exists: every error names the
file, the key path and the bad value and says what is expected, e.g.
``setup.yaml: RingBuffer[1].RB_2.number_of_slots: expected an integer >= 1, got 'abc'``.
All errors of a file are collected and raised together as one :class:`SetupError`;
unknown keys only give warnings. Module files, the worker functions in them and the
config files are found relative to the setup file.

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import yaml

from mimocorb.daq.user_code import UserCodeError, load_function, module_file

logger = logging.getLogger(__name__)

TOP_LEVEL_KEYS = {"output_directory", "RingBuffer", "Functions", "FunctionConfigs", "GUI_control", "KBD_control"}
BUFFER_KEYS = {"number_of_slots", "channel_per_slot", "data_type"}
FUNCTION_KEYS = {"file_name", "fkt_name", "num_process", "RB_assign", "config_file"}
MAIN_KEYS = {"config_file", "runtime", "runevents"}
MODES = ("read", "write", "observe")


class SetupError(ValueError):
    """The setup file is invalid; ``errors`` lists every problem found, one per line."""

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
        return float(v)

    def flag(self, where: str, v: Any) -> Optional[bool]:
        if not isinstance(v, bool):
            self.error(where, f"expected true or false, got {v!r}")
            return None
        return v


def _single_key_items(chk: _Checker, section: str, value: Any) -> list[tuple[str, str, Any]]:
    """``[ {NAME: {...}}, ... ]`` (or a mapping ``NAME: {...}``) -> [(where, NAME, body)]."""
    items: list[tuple[str, str, Any]] = []
    if isinstance(value, dict):
        return [(f"{section}.{k}", str(k), v) for k, v in value.items()]
    if not isinstance(value, list):
        chk.error(section, f"expected a list of one-key mappings like '- NAME: {{...}}', got {value!r}")
        return items
    for i, entry in enumerate(value):
        where = f"{section}[{i}]"
        if not isinstance(entry, dict) or len(entry) != 1:
            chk.error(where, f"expected a one-key mapping like 'NAME: {{...}}', got {entry!r}")
            continue
        ((name, body),) = entry.items()
        items.append((f"{where}.{name}", str(name), body))
    return items


def _parse_dtype(chk: _Checker, where: str, v: Any) -> Any:
    """1.x ``data_type``: a NumPy type name, or ``{1: [name, type], ...}`` (or a list of pairs)."""
    if isinstance(v, str):
        try:
            return np.dtype(v)
        except TypeError:
            chk.error(where, f"expected a NumPy type name like 'float32' or a mapping {{1: [name, type]}}, got {v!r}")
            return None
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
        try:
            dt = np.dtype(p[1])
        except TypeError:
            chk.error(w, f"expected a NumPy type name like 'float32' or 'int32' for field {p[0]!r}, got {p[1]!r}")
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


def _load_yaml_mapping(chk: _Checker, where: str, path: Path) -> Optional[dict]:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        chk.error(where, f"config file not found: {path}")
        return None
    except (OSError, yaml.YAMLError) as exc:
        chk.error(where, f"cannot read config file {path}: {exc}")
        return None
    if data is None:
        return {}
    if not isinstance(data, dict):
        chk.error(where, f"config file {path} must hold a mapping of keys to values, got {type(data).__name__}")
        return None
    return data


def load_setup(path: str | Path, *, check_functions: bool = True) -> DAQSetup:
    """Read and validate a setup file.

    Parameters
    ----------
    path : str or Path
        The setup YAML file.
    check_functions : bool
        Import every worker module and check that the named function exists.

    Returns
    -------
    DAQSetup
        The validated setup; ``warnings`` lists unknown keys and other oddities
        (they are logged as warnings too).

    Raises
    ------
    SetupError
        With every problem found, one per line.
    """
    path = Path(path)
    chk = _Checker(str(path))
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise SetupError([f"{path}: setup file not found"]) from None
    except yaml.YAMLError as exc:
        raise SetupError([f"{path}: not valid YAML: {exc}"]) from None
    except OSError as exc:
        raise SetupError([f"{path}: cannot read setup file: {exc}"]) from None
    if not isinstance(raw, dict):
        raise SetupError([f"{path}: expected a mapping with keys RingBuffer and Functions, got {type(raw).__name__}"])
    setup_dir = path.resolve().parent
    chk.unknown_keys("", raw, TOP_LEVEL_KEYS)

    out_dir = raw.get("output_directory", "target")
    if not isinstance(out_dir, str) or not out_dir:
        chk.error("output_directory", f"expected a folder name, got {out_dir!r}")
        out_dir = "target"
    kbd = chk.flag("KBD_control", raw.get("KBD_control", True))
    gui = chk.flag("GUI_control", raw.get("GUI_control", False))

    # ---- buffers
    buffers: list[BufferSpec] = []
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
        rb_assign = body.get("RB_assign", {}) or {}
        if not isinstance(rb_assign, dict):
            chk.error(f"{where}.RB_assign", f"expected a mapping like {{RB_1: read, RB_2: write}}, got {rb_assign!r}")
            rb_assign = {}
        assign: dict[str, str] = {}
        for b, mode in rb_assign.items():
            if b not in declared:
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
            try:
                load_function(mpath, strings["fkt_name"], [str(setup_dir)])
            except UserCodeError as exc:
                key = "fkt_name" if "has no function" in str(exc) or "expected a function" in str(exc) else "file_name"
                chk.error(f"{where}.{key}", str(exc))
                bad = True
        if not bad and nproc is not None and mpath is not None:
            functions.append(
                FunctionSpec(name, strings["fkt_name"], strings["file_name"], mpath, nproc, assign, cfg_file, config)
            )

    for b in sorted(declared):
        if "write" not in used.get(b, set()):
            chk.warn(f"RingBuffer.{b}", "no function writes to this buffer")
        elif "read" not in used.get(b, set()):
            chk.warn(f"RingBuffer.{b}", "no function reads this buffer; its events are only counted")
    if not functions and not chk.errors:
        chk.error("Functions", "expected at least one function besides Fkt_main, got none")

    if chk.errors:
        raise SetupError(chk.errors)
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
