"""The ``mimocorb`` command line (also ``python -m mimocorb``).

Commands register themselves: each is an entry point of the group ``mimocorb.commands``
(``[project.entry-points."mimocorb.commands"]`` in ``pyproject.toml``), named after the
command and pointing to a :class:`Command` -- an object with ``help`` (one line),
``add_arguments(parser)`` and ``run(args) -> exit code``. So the generic command line
knows no particular command: ``run`` and ``cleanup`` (:mod:`mimocorb.cli.commands`) are
registered the same way as the muon demo's ``demo`` (:mod:`mimocorb.demo.command`), and a
package installed beside mimocorb can add its own. The options of a run, shared by every
command that runs a setup, are :mod:`mimocorb.cli.run_options`.

Exit codes: 0 all well (also a run ended with Ctrl-C), 1 a worker failed, timed out or
was killed, or the run went wrong; 2 bad usage or setup (nothing was started); 130
Ctrl-C while the setup was being checked (nothing was started).
"""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points
from typing import Optional, Protocol, Sequence

logger = logging.getLogger(__name__)

#: The entry-point group of the commands.
GROUP = "mimocorb.commands"
#: ``mimocorb run`` without a setup file runs this command with the run's options (the main job).
DEFAULT_JOB = "demo"

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


class Command(Protocol):
    """A command of the command line (registered as an entry point of :data:`GROUP`)."""

    help: str

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's arguments to its parser."""

    def run(self, args: argparse.Namespace) -> int:
        """Run the command with the parsed arguments; return the exit code."""


def load_commands() -> dict[str, Command]:
    """The registered commands by name, sorted by name.

    A command whose module cannot be imported is left out with a warning naming it (one
    broken extension does not take the whole command line down).
    """
    commands: dict[str, Command] = {}
    for ep in entry_points(group=GROUP) if sys.version_info >= (3, 10) else entry_points().get(GROUP, ()):
        if ep.name in commands:  # the same distribution seen twice on sys.path
            continue
        try:
            commands[ep.name] = ep.load()
        except ImportError as exc:
            logger.warning("command %r (%s) cannot be loaded: %s", ep.name, ep.value, exc)
    return dict(sorted(commands.items()))


def build_parser(commands: dict[str, Command]) -> argparse.ArgumentParser:
    """The argument parser with a subcommand for each of ``commands``."""
    from mimocorb import __version__

    parser = argparse.ArgumentParser(prog="mimocorb", description="Ring buffers in shared memory for physics DAQ.")
    parser.add_argument("--version", action="version", version=f"mimocorb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, cmd in commands.items():
        cmd.add_arguments(sub.add_parser(name, help=cmd.help, description=cmd.help))
    return parser


def full_parser() -> argparse.ArgumentParser:
    """The parser with every registered command (what ``mimocorb --help`` shows)."""
    return build_parser(load_commands())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; return the exit code."""
    commands = load_commands()
    parser = build_parser(commands)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return EXIT_USAGE
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for h in logging.getLogger().handlers:  # the run log gets INFO; the terminal only warnings
        h.setLevel(logging.WARNING)
    args.commands = commands  # a command may hand over to another (``run`` without a setup file)
    return int(commands[args.command].run(args) or 0)


__all__ = [
    "DEFAULT_JOB",
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "GROUP",
    "Command",
    "build_parser",
    "full_parser",
    "load_commands",
    "main",
]
