"""CURVE key pairs for the bridge (ZeroMQ's own format, :func:`zmq.auth.create_certificates`).

:func:`make_keys` for Python programs; the command ``mimocorb keys DIR [--name NAME]`` is
:func:`add_arguments` and :func:`run` (the command line registers them).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import zmq.auth

logger = logging.getLogger(__name__)


def make_keys(directory: str | os.PathLike, name: str = "mimocorb") -> tuple[Path, Path]:
    """Make a key pair in ``directory``: ``<name>.key`` (public: give it to the peer, or put it
    into the bound side's ``clients`` folder) and ``<name>.key_secret`` (this side's ``curve.key``;
    readable by its owner only).

    Returns
    -------
    (public file, secret file)

    Raises
    ------
    FileExistsError
        When a key pair of that name is already there (never overwritten).
    """
    d = Path(directory)
    public, secret = d / f"{name}.key", d / f"{name}.key_secret"
    for f in (public, secret):
        if f.exists():
            raise FileExistsError(f"{f} exists; keys are never overwritten (choose another name or folder)")
    d.mkdir(parents=True, exist_ok=True)
    pub, sec = zmq.auth.create_certificates(d, name)
    os.chmod(sec, 0o600)
    logger.info("made CURVE key pair %s (public) and %s (secret)", pub, sec)
    return Path(pub), Path(sec)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments of ``mimocorb keys``."""
    parser.add_argument("directory", metavar="DIR", help="folder for the key pair (made if missing)")
    parser.add_argument(
        "--name", default="mimocorb", help="base name of the files: NAME.key and NAME.key_secret (default mimocorb)"
    )


def run(args: argparse.Namespace) -> int:
    """``mimocorb keys``: make the pair, say where each file goes; 0, or 1 when it cannot be made."""
    try:
        public, secret = make_keys(args.directory, args.name)
    except (FileExistsError, OSError) as exc:
        print(f"mimocorb keys: {exc}", file=sys.stderr)
        return 1
    print(f"public key {public}")
    print("  give it to the peer: the connecting side's curve.server_key, or a file in the bound side's curve.clients")
    print(f"secret key {secret}")
    print("  this side's curve.key (readable by its owner only; never copy it to another host)")
    return 0
