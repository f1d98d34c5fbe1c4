"""CURVE key pairs for the bridge (ZeroMQ's own format, :func:`zmq.auth.create_certificates`)."""

from __future__ import annotations

import logging
import os
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
