"""The ``Functions`` section of a setup file: the run limits of ``Fkt_main`` and the worker
functions, with their buffers, configs and modules.

``- Fkt_1: {file_name: modules/source, fkt_name: source, num_process: 1, RB_assign: {RB_1:
write}, config_file: config/source.yaml}`` becomes a :class:`FunctionSpec`. What
``file_name`` names -- a module file beside the setup file, or a packaged module such as
``mimocorb.exporters`` -- is decided by the rule of :mod:`mimocorb.daq.user_code`; every
module is then imported in a separate process (bounded) to check that the function exists.

Each function's config dict is, in this order of precedence: its own ``config_file``; the
block named after its ``fkt_name``, or else after its key (``Fkt_3``), in the common config
file of ``Fkt_main``; the block named after its ``fkt_name`` in ``FunctionConfigs``.

``restart: {max: 3, within: 60}`` in a function's entry is the run's restart policy for
its workers (:class:`RestartPolicy`, applied by :mod:`mimocorb.daq.supervise`). It sits
in the entry, not in the function's config dict: it is the runner's business, and the
config dict belongs to the function (packaged functions refuse keys they do not know).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence

from mimocorb import _ringbuf
from mimocorb.daq.setup_buffers import BufferSpec
from mimocorb.daq.setup_checks import Checker, config_file
from mimocorb.daq.user_code import (
    FILE_NAME_RULE,
    ConfigCheck,
    ModuleRef,
    UserCodeError,
    check_functions,
    resolve_module,
)

FUNCTION_KEYS = {"file_name", "fkt_name", "num_process", "RB_assign", "config_file", "restart"}
RESTART_KEYS = {"max", "within"}
MAIN_KEYS = {"config_file", "runtime", "runevents"}
MODES = ("read", "write", "observe")
_NAMES = (("file_name", FILE_NAME_RULE.replace("file_name is ", "", 1)), ("fkt_name", "the name of a function there"))


@dataclass(frozen=True)
class RestartPolicy:
    """``restart: {max: 3, within: 60}``: a failed worker of the function is started again,
    at most ``max`` times within any ``within`` seconds."""

    max: int
    within: float


def _restart(chk: Checker, where: str, value: object) -> Optional[RestartPolicy]:
    where = f"{where}.restart"
    if not chk.mapping(where, value, RESTART_KEYS, "max (restarts) and within (seconds), e.g. {max: 3, within: 60}"):
        return None
    for k in ("max", "within"):
        if k not in value:
            chk.error(f"{where}.{k}", "missing; expected e.g. restart: {max: 3, within: 60}")
    n = chk.integer(f"{where}.max", value["max"], 1) if "max" in value else None
    t = chk.number(f"{where}.within", value["within"], 0.0) if "within" in value else None
    if n is None or t is None:
        return None
    if t <= 0:
        chk.error(f"{where}.within", f"expected a number of seconds > 0, got {value['within']!r}")
        return None
    return RestartPolicy(n, t)


@dataclass
class FunctionSpec:
    """One worker function of the setup (``Fkt_<n>``).

    ``file_name`` is as the setup file gives it; ``module`` is what it names (a module
    file, or a module to import).
    """

    key: str
    fkt_name: str
    file_name: str
    module: ModuleRef
    num_process: int
    rb_assign: dict[str, str]
    config_file: Optional[Path]
    config: dict = field(default_factory=dict)
    restart: Optional[RestartPolicy] = None
    #: Where the config dict comes from, for messages (``Functions[3].Fkt_3.config_file (config/x.yaml)``).
    config_origin: str = ""

    @property
    def module_path(self) -> Optional[Path]:
        """The module file (None for a module named by its dotted name)."""
        return self.module.path

    def buffers(self, mode: str) -> list[str]:
        """Names of the buffers this function uses in ``mode`` (read/write/observe), in setup order."""
        return [b for b, m in self.rb_assign.items() if m == mode]


@dataclass
class MainBlock:
    """What ``Fkt_main`` sets: run limits and the common config file (its ``general`` block
    overrides the limits given in the setup file)."""

    runtime: float = 0.0
    runevents: int = 0
    common_file: Optional[Path] = None
    common: dict = field(default_factory=dict)
    common_where: str = ""  # key path of the common config file, for messages

    def read_limits(self, chk: Checker, where: str, d: dict) -> None:
        if "runtime" in d:
            self.runtime = chk.number(f"{where}.runtime", d["runtime"], 0) or 0.0
        if "runevents" in d:
            self.runevents = chk.integer(f"{where}.runevents", d["runevents"], 0) or 0


def read_main(chk: Checker, items: list[tuple[str, str, object]], setup_dir: Path) -> MainBlock:
    """The ``Fkt_main`` block(s) of the ``Functions`` section."""
    main = MainBlock()
    for where, name, body in items:
        if name != "Fkt_main" or not chk.mapping(where, body, MAIN_KEYS, "config_file, runtime, runevents"):
            continue
        main.read_limits(chk, where, body)
        path, common = config_file(chk, where, body, setup_dir)
        if path is None:
            continue
        main.common_file, main.common = path, common or {}
        main.common_where = f"{where}.config_file {body['config_file']}"
        general = main.common.get("general", {})
        if isinstance(general, dict):
            main.read_limits(chk, f"{where}.config_file ({body['config_file']}) general", general)
    return main


def _function_config(fkt: str, key: str, main: MainBlock, fconfigs: dict) -> tuple[dict, str]:
    """The function's block in the common config (by fkt_name, else by key), else in FunctionConfigs;
    with where it comes from (for messages)."""
    for name in (fkt, key):
        if isinstance(main.common.get(name), dict):
            return dict(main.common[name]), f"config: block {name!r} of {main.common_where}"
    if isinstance(fconfigs.get(fkt), dict):
        return dict(fconfigs[fkt]), f"config: FunctionConfigs.{fkt}"
    return {}, "no config"


def _rb_assign(chk: Checker, where: str, body: dict, declared: set[str]) -> dict[str, str]:
    rb_assign = body.get("RB_assign", {}) or {}
    if not isinstance(rb_assign, dict):
        chk.error(f"{where}.RB_assign", f"expected a mapping like {{RB_1: read, RB_2: write}}, got {rb_assign!r}")
        return {}
    if not rb_assign:
        chk.warn(where, "no RB_assign: this function never sees the end of the run and will be terminated then")
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
            assign[b] = mode
    return assign


def read_functions(
    chk: Checker,
    items: list[tuple[str, str, object]],
    setup_dir: Path,
    declared: set[str],
    main: MainBlock,
    fconfigs: dict,
) -> list[tuple[str, FunctionSpec]]:
    """The valid worker functions (every entry but ``Fkt_main``), each with its key path."""
    out: list[tuple[str, FunctionSpec]] = []
    for where, key, body in items:
        if key == "Fkt_main":
            continue
        if not chk.mapping(where, body, FUNCTION_KEYS, "file_name, fkt_name, num_process, RB_assign"):
            continue
        if any(f.key == key for _, f in out):
            chk.error(where, f"function key {key!r} is used twice; keys must be unique")
        names = {}
        for k, what in _NAMES:
            if k not in body:
                chk.error(f"{where}.{k}", f"missing; expected {what}")
            else:
                names[k] = chk.text(f"{where}.{k}", body[k], what)
        nproc = chk.integer(f"{where}.num_process", body.get("num_process", 1), 1)
        if nproc is not None and nproc > _ringbuf.MAX_PROCS:
            chk.error(f"{where}.num_process", f"expected at most {_ringbuf.MAX_PROCS} processes, got {nproc}")
            nproc = None
        assign = _rb_assign(chk, where, body, declared)
        config, origin = _function_config(names.get("fkt_name") or "", key, main, fconfigs)
        origin = f"{where} ({origin})"
        cfg_file, loaded = config_file(chk, where, body, setup_dir)
        if cfg_file is not None:
            config, origin = dict(loaded or {}), f"{where}.config_file {body['config_file']}"
        restart = _restart(chk, where, body["restart"]) if "restart" in body else None
        module = None
        if names.get("file_name"):
            try:
                module = resolve_module(setup_dir, names["file_name"])
            except UserCodeError as exc:
                chk.error(f"{where}.file_name", str(exc))
        if module is not None and names.get("fkt_name") and nproc is not None:
            spec = FunctionSpec(
                key, names["fkt_name"], names["file_name"], module, nproc, assign, cfg_file, config, restart, origin
            )
            out.append((where, spec))
    return out


def _buffer_setup(b: BufferSpec) -> dict:
    """What a ``check_config`` learns of a buffer: the keys of its setup dict that describe a slot."""
    return {"name": b.name, "dtype": b.dtype, "values_per_slot": b.values_per_slot}


def check_imports(
    chk: Checker,
    functions: list[tuple[str, FunctionSpec]],
    setup_dir: Path,
    timeout: float,
    buffers: Sequence[BufferSpec] = (),
) -> set:
    """Import every function's module in a separate process (each import bounded by ``timeout`` s),
    check that the function is there and, when it carries a ``check_config`` (the packaged
    sources and sinks do), that its config fits it and the ``buffers`` it writes and reads;
    returns the keys of those that failed (errors in ``chk``: a bad config names the
    function's key path and where its config comes from).

    Raises KeyboardInterrupt on Ctrl-C (never reported as a bad setup)."""
    known = {b.name: _buffer_setup(b) for b in buffers}
    items = []
    for _, f in functions:
        check = ConfigCheck(
            f.config,
            [known[b] for b in f.buffers("write") if b in known],
            [known[b] for b in f.buffers("read") if b in known],
        )
        items.append((f.module, f.fkt_name, [str(setup_dir)], check))
    problems = check_functions(items, timeout)
    failed = set()
    for (where, f), problem in zip(functions, problems):
        if problem is not None:
            key, msg = problem
            chk.error(f.config_origin if key == "config" else f"{where}.{key}", msg)
            failed.add(f.key)
    return failed


def check_attachments(
    chk: Checker, buffers: Sequence[tuple[str, BufferSpec]], functions: Sequence[FunctionSpec]
) -> None:
    """What each buffer has room for: reader groups (one per reading function) and attached processes."""
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


__all__ = [
    "check_attachments",
    "FUNCTION_KEYS",
    "MAIN_KEYS",
    "MODES",
    "FunctionSpec",
    "RestartPolicy",
    "MainBlock",
    "check_imports",
    "read_functions",
]
