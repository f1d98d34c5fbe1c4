"""The options of a run, shared by every command that runs a setup (``run``, ``demo``).

One definition of the options (:func:`add_run_options`), one check of them
(:func:`run_options_problem`), one way to build a :class:`~mimocorb.daq.run_control.RunControl`
from them (:func:`make_run`) and one way to carry it out (:func:`execute`), with or without
the control window.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

from mimocorb.cli import EXIT_INTERRUPTED, EXIT_USAGE

if TYPE_CHECKING:
    from mimocorb.daq.run_control import RunControl


def add_run_options(
    p: argparse.ArgumentParser,
    events_help: str = "end the run after N events from the source (0: no limit)",
    output_default: str = "output_directory of the setup",
) -> None:
    """Add the options of a run to ``p``; a command says what its ``--events`` and ``--output`` default to."""
    p.add_argument("--runtime", type=float, metavar="S", help="end the run after S seconds (0: no limit)")
    p.add_argument("--events", type=int, metavar="N", help=events_help)
    p.add_argument("--output", metavar="DIR", help=f"put the run folder in DIR (default: {output_default})")
    p.add_argument(
        "--headless", action="store_true", help="no keyboard control and no windows (displays write PNG snapshots)"
    )
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
    """The first problem with the options of a run, or None."""
    if args.runtime is not None and not (math.isfinite(args.runtime) and args.runtime >= 0):
        return f"{prog}: --runtime must be a finite number >= 0 seconds, got {args.runtime}"
    if args.events is not None and args.events < 0:
        return f"{prog}: --events must be >= 0, got {args.events}"
    if args.gui and (args.headless or not os.environ.get("DISPLAY")):
        why = "--headless" if args.headless else "no display ($DISPLAY is not set)"
        return f"{prog}: --gui needs a screen, but {why}"
    return None


def make_run(
    args: argparse.Namespace,
    prog: str,
    setup: Union[str, Path],
    events: Optional[int] = None,
    output: Optional[str] = None,
) -> Union[RunControl, int]:
    """The run of ``setup`` with the options ``args``, or the exit code if there is none.

    Parameters
    ----------
    args : argparse.Namespace
        The parsed options (:func:`add_run_options`).
    prog : str
        The command (``mimocorb run``), at the start of every message.
    setup : str or Path
        The setup file.
    events, output : optional
        The event limit and output folder to use instead of ``args.events`` and ``args.output``.

    Returns
    -------
    RunControl or int
        The run (checked, not yet set up), or :data:`~mimocorb.cli.EXIT_USAGE` after a bad
        option or setup, :data:`~mimocorb.cli.EXIT_INTERRUPTED` after Ctrl-C while the setup
        was checked; the problems are printed to stderr.
    """
    from mimocorb.daq.run_control import RunControl
    from mimocorb.daq.setup_file import SetupFileError

    problem = run_options_problem(args, prog)
    if problem:
        print(problem, file=sys.stderr)
        return EXIT_USAGE
    try:
        return RunControl(
            setup,
            verbose=max(0, 2 - args.quiet),
            debug=args.debug,
            runtime=args.runtime,
            runevents=args.events if events is None else events,
            output_directory=args.output if output is None else output,
            headless=args.headless,
            start_method=args.start_method,
            status_interval=args.status_interval,
            shutdown_timeout=args.shutdown_timeout,
        )
    except SetupFileError as exc:
        n = len(exc.errors)
        print(f"{prog}: invalid setup {setup} ({n} problem{'s' if n > 1 else ''}):", file=sys.stderr)
        for e in exc.errors:
            print(f"  {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{prog}: interrupted while checking the setup; nothing was started", file=sys.stderr)
        return EXIT_INTERRUPTED


def execute(run: RunControl, args: argparse.Namespace) -> int:
    """Carry out ``run`` (in the control window with ``--gui``); return its exit code."""
    try:
        if args.gui:
            from mimocorb.gui.control_window import run_with_control_window

            return run_with_control_window(run)
        return run.run()  # sets the run up, with Ctrl-C and SIGTERM handled from the start
    except KeyboardInterrupt:  # only outside run()'s own handling (the window's set-up)
        return run.abort("interrupted (Ctrl-C)")


__all__ = ["add_run_options", "execute", "make_run", "run_options_problem"]
