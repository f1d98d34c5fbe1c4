"""The ``mimocorb`` command line (also ``python -m mimocorb``).

Subcommands live in a registry: a module adds one with :func:`command`::

    @command("demo", help="run the muon demo")
    def _demo_args(parser):            # called to add the subcommand's arguments
        parser.add_argument("--gui", action="store_true")

    @_demo_args.runner
    def _demo(args) -> int:            # called with the parsed arguments, returns the exit code
        ...

Modules named in :data:`EXTENSIONS` are imported (if installed) before parsing, so a
subcommand can be defined next to the code it runs.

Exit codes: 0 all well (also a run ended with Ctrl-C), 1 a worker failed, timed out or
was killed, or the run went wrong; 2 bad usage or setup (nothing was started); 130
Ctrl-C while the setup was being checked (nothing was started).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import math
import os
import sys
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

logger = logging.getLogger(__name__)

#: Modules that may register subcommands (imported if present).
EXTENSIONS: list[str] = ["mimocorb.muon.cli"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


@dataclass
class Command:
    """One subcommand: its name, help text, argument set-up and runner."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Optional[Callable[[argparse.Namespace], int]] = None

    def runner(self, fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        """Decorator: set the function that runs this subcommand."""
        self.run = fn
        return fn


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str) -> Callable[[Callable[[argparse.ArgumentParser], None]], Command]:
    """Decorator registering a subcommand; the decorated function adds its arguments."""

    def deco(add_arguments: Callable[[argparse.ArgumentParser], None]) -> Command:
        if name in COMMANDS:
            raise ValueError(f"subcommand {name!r} is already registered")
        cmd = Command(name, help, add_arguments)
        COMMANDS[name] = cmd
        return cmd

    return deco


def _load_extensions() -> None:
    for mod in EXTENSIONS:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as exc:
            if exc.name is None or not mod.startswith(exc.name):
                raise


# ---------------------------------------------------------------------- run
@command("run", help="run a DAQ from a setup file (mimoCoRB 1.x format)")
def _run_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "setup", nargs="?", default=None, help="setup YAML file (default: the muon demo, as 'mimocorb demo')"
    )
    p.add_argument("--runtime", type=float, metavar="S", help="end the run after S seconds (0: no limit)")
    p.add_argument("--events", type=int, metavar="N", help="end the run after N events from the source (0: no limit)")
    p.add_argument("--output", metavar="DIR", help="put the run folder in DIR (default: output_directory of the setup)")
    p.add_argument("--headless", action="store_true", help="no keyboard control and no windows")
    p.add_argument("--gui", action="store_true", help="show the control window (needs a display)")
    p.add_argument("--start-method", choices=["fork", "spawn"], help="how worker processes start (default: fork)")
    p.add_argument("--status-interval", type=float, default=1.0, metavar="S", help="seconds between status lines")
    p.add_argument(
        "--shutdown-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="bound of each stage of the end of a run (one per buffer; the workers of a stage wait together)",
    )
    p.add_argument(
        "-q", "--quiet", action="count", default=0, help="less output (-q: no worker output, -qq: summary only)"
    )
    p.add_argument("--debug", action="store_true", help="debug logging in the run log")


def run_options_problem(args: argparse.Namespace, prog: str) -> Optional[str]:
    """The first problem with the options of a run (``run``, ``demo``), or None."""
    if args.runtime is not None and not (math.isfinite(args.runtime) and args.runtime >= 0):
        return f"{prog}: --runtime must be a finite number >= 0 seconds, got {args.runtime}"
    if args.events is not None and args.events < 0:
        return f"{prog}: --events must be >= 0, got {args.events}"
    if args.gui and (args.headless or not os.environ.get("DISPLAY")):
        why = "--headless" if args.headless else "no display ($DISPLAY is not set)"
        return f"{prog}: --gui needs a screen, but {why}"
    return None


@_run_arguments.runner
def _run(args: argparse.Namespace) -> int:
    from mimocorb.daq.run_control import RunControl
    from mimocorb.daq.setup_file import SetupFileError

    if args.setup is None:  # the default main job: the muon demo
        from mimocorb.muon.cli import run_demo

        return run_demo(args)
    problem = run_options_problem(args, "mimocorb run")
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    try:
        run = RunControl(
            args.setup,
            verbose=max(0, 2 - args.quiet),
            debug=args.debug,
            runtime=args.runtime,
            runevents=args.events,
            output_directory=args.output,
            headless=args.headless,
            start_method=args.start_method,
            status_interval=args.status_interval,
            shutdown_timeout=args.shutdown_timeout,
        )
    except SetupFileError as exc:
        print(
            f"mimocorb run: invalid setup ({len(exc.errors)} problem{'s' if len(exc.errors) > 1 else ''}):",
            file=sys.stderr,
        )
        for e in exc.errors:
            print(f"  {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("mimocorb run: interrupted while checking the setup; nothing was started", file=sys.stderr)
        return EXIT_INTERRUPTED
    try:
        if args.gui:
            from mimocorb.gui.control_window import run_with_control_window

            return run_with_control_window(run)
        return run.run()  # sets the run up, with Ctrl-C and SIGTERM handled from the start
    except KeyboardInterrupt:  # only outside run()'s own handling (the window's set-up)
        return run.abort("interrupted (Ctrl-C)")


# ------------------------------------------------------------------ cleanup
@command("cleanup", help="remove shared-memory segments of mimocorb buffers whose owner process is gone")
def _cleanup_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--dry-run", action="store_true", help="only list what would be removed")


@_cleanup_arguments.runner
def _cleanup(args: argparse.Namespace) -> int:
    from mimocorb.mimo_buffer import cleanup_segments, list_segments

    segments = list_segments()
    removed = cleanup_segments(dry_run=args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    for seg in removed:
        print(f"{verb} /dev/shm/{seg['name']} ({seg['bytes'] / 2**20:.1f} MiB, owner pid {seg['pid']} is gone)")
    kept = [s for s in segments if s["owner_alive"]]
    for seg in kept:
        print(f"kept /dev/shm/{seg['name']} (owner pid {seg['pid']} is running)")
    total = sum(s["bytes"] for s in removed)
    print(
        f"{verb} {len(removed)} segment{'s' if len(removed) != 1 else ''} ({total / 2**20:.1f} MiB), kept {len(kept)}"
    )
    return EXIT_OK


# --------------------------------------------------------------------- keys
# The command's body is mimocorb.net.keys (add_arguments, run); it needs the net extra (pyzmq).
@command("keys", help="make a CURVE key pair for links between hosts (mimocorb.net)")
def _keys_arguments(p: argparse.ArgumentParser) -> None:
    try:
        from mimocorb.net import keys
    except ModuleNotFoundError:  # without pyzmq: the command says so when it is run
        p.add_argument("args", nargs=argparse.REMAINDER)
        return
    keys.add_arguments(p)


@_keys_arguments.runner
def _keys(args: argparse.Namespace) -> int:
    try:
        from mimocorb.net import keys
    except ModuleNotFoundError as exc:
        print(f"mimocorb keys: needs pyzmq ({exc}): pip install 'mimocorb[net]'", file=sys.stderr)
        return EXIT_USAGE
    return keys.run(args)


# --------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every registered subcommand."""
    from mimocorb import __version__

    parser = argparse.ArgumentParser(prog="mimocorb", description="Ring buffers in shared memory for physics DAQ.")
    parser.add_argument("--version", action="version", version=f"mimocorb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS.values():
        sp = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.add_arguments(sp)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit code."""
    _load_extensions()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for h in logging.getLogger().handlers:  # the run log gets INFO; the terminal only warnings
        h.setLevel(logging.WARNING)
    cmd = COMMANDS[args.command]
    if cmd.run is None:
        print(f"mimocorb {cmd.name}: not implemented", file=sys.stderr)
        return EXIT_USAGE
    return int(cmd.run(args) or 0)
