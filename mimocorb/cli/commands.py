"""The generic commands: ``run`` (a DAQ from a setup file) and ``cleanup`` (leftover segments).

Each is a :class:`~mimocorb.cli.Command` registered as an entry point of the group
``mimocorb.commands`` (see :mod:`mimocorb.cli`).
"""

from __future__ import annotations

import argparse
import sys

from mimocorb.cli import DEFAULT_JOB, EXIT_OK, EXIT_USAGE
from mimocorb.cli.run_options import add_run_options, execute, make_run


class RunCommand:
    """``mimocorb run SETUP``: run a DAQ from a setup file (without one: the :data:`~mimocorb.cli.DEFAULT_JOB`)."""

    help = "run a DAQ from a setup file (mimoCoRB 1.x format)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        default = f"the main job, as 'mimocorb {DEFAULT_JOB}'"
        p.add_argument("setup", nargs="?", default=None, help=f"setup YAML file (default: {default})")
        add_run_options(p)

    def run(self, args: argparse.Namespace) -> int:
        if args.setup is None:  # the main job, with the options of this run
            job = getattr(args, "commands", {}).get(DEFAULT_JOB)
            if job is None:
                print(f"mimocorb run: no setup file given (and no '{DEFAULT_JOB}' command installed)", file=sys.stderr)
                return EXIT_USAGE
            return job.run(args)
        run = make_run(args, "mimocorb run", args.setup)
        return run if isinstance(run, int) else execute(run, args)


class CleanupCommand:
    """``mimocorb cleanup``: remove the segments of buffers whose owner process is gone."""

    help = "remove shared-memory segments of mimocorb buffers whose owner process is gone"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("--dry-run", action="store_true", help="only list what would be removed")

    def run(self, args: argparse.Namespace) -> int:
        from mimocorb.segments import cleanup_segments, list_segments

        segments = list_segments()
        removed = cleanup_segments(dry_run=args.dry_run)
        verb = "would remove" if args.dry_run else "removed"
        for seg in removed:
            print(f"{verb} /dev/shm/{seg['name']} ({seg['bytes'] / 2**20:.1f} MiB, owner pid {seg['pid']} is gone)")
        kept = [s for s in segments if s["owner_alive"]]
        for seg in kept:
            print(f"kept /dev/shm/{seg['name']} (owner pid {seg['pid']} is running)")
        total = sum(s["bytes"] for s in removed)
        n = len(removed)
        print(f"{verb} {n} segment{'s' if n != 1 else ''} ({total / 2**20:.1f} MiB), kept {len(kept)}")
        return EXIT_OK


class KeysCommand:
    """``mimocorb keys DIR``: a CURVE key pair for links between hosts. The body is
    :mod:`mimocorb.net.keys`, imported only when the command runs (it needs pyzmq)."""

    help = "make a CURVE key pair for links between hosts (mimocorb.net)"

    def add_arguments(self, p: argparse.ArgumentParser) -> None:
        p.add_argument("directory", metavar="DIR", help="folder for the key pair (made if missing)")
        p.add_argument("--name", default="mimocorb", help="base name of the files: NAME.key and NAME.key_secret")

    def run(self, args: argparse.Namespace) -> int:
        try:
            from mimocorb.net import keys
        except ImportError as exc:
            print(f"mimocorb keys: needs pyzmq ({exc}): pip install 'mimocorb[net]'", file=sys.stderr)
            return EXIT_USAGE
        return keys.run(args)


run = RunCommand()
cleanup = CleanupCommand()
keys = KeysCommand()

__all__ = ["CleanupCommand", "KeysCommand", "RunCommand", "cleanup", "keys", "run"]
