"""Reading and validating a DAQ setup file (the mimoCoRB 1.x YAML format).

The format::

    output_directory: target          # run folders <name>_<date>_<time>/ go in here
    RingBuffer:
      - RB_1: {number_of_slots: 128, channel_per_slot: 4250,
               data_type: {1: ['chA', 'float32'], 2: ['chB', 'float32']}}
    Functions:
      - Fkt_main: {config_file: config/common.yaml, runtime: 60, runevents: 0}
      - Fkt_1: {file_name: modules/source, fkt_name: source, num_process: 1,
                RB_assign: {RB_1: write}, config_file: config/source.yaml}
      - Fkt_2: {file_name: mimocorb.exporters, fkt_name: save_parquet, RB_assign: {RB_1: read}}

``file_name`` names the module of a worker function (see :mod:`mimocorb.daq.user_code`):

1. a path relative to the setup file (with or without ``.py``; absolute allowed): if that
   file exists it is used, the 1.x meaning, even when a module of the same dotted name
   exists;
2. otherwise, if it is a dotted Python module name (identifiers separated by dots, no
   slash), that module is imported -- so the functions that ship with mimocorb need no
   wrapper module (``mimocorb.exporters``: ``drain``, ``save_to_txt``, ``save_parquet``,
   ``save_waveforms``, ``save_hdf5``, ``save_root``; ``mimocorb.sources``: ``scpi_scope``,
   ``redpitaya_mcpha``, ``picoscope``, ``replay``, ``simulator``; ``mimocorb.gui.displays``:
   ``oscilloscope``, ``histograms``);
3. otherwise, or if neither is found, it is an error naming the setup file, the key path
   (``Functions[2].Fkt_3.file_name``) and what was looked for: the path tried and the
   module name tried.

Everything is checked before any buffer, run folder or worker process exists: every
error names the file, the key path and the bad value and says what is expected, e.g.
``setup.yaml: RingBuffer[1].RB_2.number_of_slots: expected an integer >= 1, got 'abc'``.
All errors of a file are collected and raised together as one :class:`SetupFileError`;
unknown keys only give warnings. Files must be UTF-8 text, and a key given twice in one
mapping is an error (plain YAML would silently keep the last one). The buffers are
checked against what shared memory can hold (:mod:`~mimocorb.daq.setup_buffers`); the
worker modules are imported in a separate process, each import bounded by
``import_timeout`` seconds (:mod:`~mimocorb.daq.setup_functions`), and the ``check_config``
of a function that carries one (the packaged sources and sinks) is called there with its
config and the buffers it writes and reads: a bad config is a setup error too.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from mimocorb.daq.setup_buffers import BufferSpec, buffer_names, check_capacity, read_buffers
from mimocorb.daq.setup_checks import Checker, output_directory_problem, single_key_items
from mimocorb.daq.setup_functions import FunctionSpec, check_attachments, check_imports, read_functions, read_main
from mimocorb.daq.user_code import IMPORT_TIMEOUT
from mimocorb.daq.yaml_file import read_yaml

logger = logging.getLogger(__name__)

TOP_LEVEL_KEYS = {"output_directory", "RingBuffer", "Functions", "FunctionConfigs", "GUI_control", "KBD_control"}


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

    def flow_order(self) -> list[str]:
        """Buffer names in data-flow order (a buffer before every buffer filled from it;
        setup order among equals, and for buffers in a cycle)."""
        names = [b.name for b in self.buffers]
        succ: dict[str, set[str]] = {n: set() for n in names}
        for f in self.functions:
            for r in f.buffers("read"):
                succ[r].update(w for w in f.buffers("write") if w != r)
        indeg = {n: sum(n in succ[m] for m in names) for n in names}
        order: list[str] = []
        ready = [n for n in names if indeg[n] == 0]
        while ready:
            n = ready.pop(0)
            order.append(n)
            for m in names:  # keep setup order among equals
                if m in succ[n]:
                    indeg[m] -= 1
                    if indeg[m] == 0:
                        ready.append(m)
        return order + [n for n in names if n not in order]


def run_name(setup_path: Path) -> str:
    """Name for run folders: the setup file's stem without a trailing ``setup``."""
    stem = Path(setup_path).stem
    for suffix in ("_setup", "-setup", "setup"):
        if stem.lower().endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _read_file(path: Path) -> dict:
    """The top-level mapping of the setup file; a file that cannot be read at all is an error at once."""
    raw, problem = read_yaml(path)
    if problem == "not found":
        raise SetupFileError([f"{path}: setup file not found"])
    if problem is not None:
        raise SetupFileError([f"{path}: {problem}"])
    if not isinstance(raw, dict):
        got = type(raw).__name__
        raise SetupFileError([f"{path}: expected a mapping with keys RingBuffer and Functions, got {got}"])
    return raw


def _output_directory(chk: Checker, raw: dict, setup_dir: Path) -> str:
    out_dir = chk.text("output_directory", raw.get("output_directory", "target"), "a folder name")
    if out_dir is None:
        return "target"
    problem = output_directory_problem(setup_dir / out_dir)
    if problem:
        chk.error("output_directory", f"{problem}; got {out_dir!r}")
    return out_dir


def _warn_unused(chk: Checker, declared: set[str], functions: list[FunctionSpec]) -> None:
    for b in sorted(declared):
        modes = {f.rb_assign.get(b) for f in functions}
        if "write" not in modes:
            chk.warn(f"RingBuffer.{b}", "no function writes to this buffer")
        elif "read" not in modes:
            chk.warn(f"RingBuffer.{b}", "no function reads this buffer; its events are only counted")


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
    chk = Checker(str(path))
    raw = _read_file(path)
    setup_dir = path.resolve().parent
    chk.unknown_keys("", raw, TOP_LEVEL_KEYS)
    out_dir = _output_directory(chk, raw, setup_dir)
    kbd = chk.flag("KBD_control", raw.get("KBD_control", True))
    gui = chk.flag("GUI_control", raw.get("GUI_control", False))

    buffers = read_buffers(chk, raw)
    declared = buffer_names(raw)
    fconfigs = raw.get("FunctionConfigs", {}) or {}
    if not isinstance(fconfigs, dict):
        chk.error("FunctionConfigs", f"expected a mapping of function names to config blocks, got {fconfigs!r}")
        fconfigs = {}
    if "Functions" not in raw:
        chk.error("Functions", "missing; expected a list of functions like '- Fkt_1: {file_name: ..., fkt_name: ...}'")
    items = single_key_items(chk, "Functions", raw.get("Functions", []))
    main = read_main(chk, items, setup_dir)
    found = read_functions(chk, items, setup_dir, declared, main, fconfigs)
    specs = [b for _, b in buffers]
    failed = check_imports(chk, found, setup_dir, import_timeout, specs) if check_functions and found else set()
    functions = [f for _, f in found if f.key not in failed]
    check_capacity(chk, buffers)
    check_attachments(chk, buffers, functions)
    _warn_unused(chk, declared, functions)
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
        buffers=[b for _, b in buffers],
        functions=functions,
        runtime=main.runtime,
        runevents=main.runevents,
        common_config_file=main.common_file,
        kbd_control=bool(kbd) if kbd is not None else True,
        gui_control=bool(gui),
        warnings=chk.warnings,
    )


__all__ = [
    "BufferSpec",
    "DAQSetup",
    "FunctionSpec",
    "SetupFileError",
    "load_setup",
    "output_directory_problem",
    "run_name",
]
