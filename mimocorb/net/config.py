"""The configuration keys of the bridge's worker functions, checked before anything starts.

Keys common to ``send`` and ``receive`` (``publish`` and ``subscribe`` take ``bind`` /
``connect``, ``curve`` and ``name``):

``bind``
    Where to listen: a port (``5555``: loopback only, ``tcp://127.0.0.1:5555``) or any
    ZeroMQ endpoint (``tcp://*:5555`` -- every interface, an explicit choice --,
    ``tcp://192.168.1.10:5555``, ``ipc:///tmp/daq.sock``).
``connect``
    Where the peer listens: ``host:port`` or a ZeroMQ endpoint, or a list of them (one
    peer each). Exactly one of ``bind`` and ``connect``.
``heartbeat`` (0.5), ``peer_timeout`` (2.0)
    Seconds between heartbeats; a peer silent this long is lost (the receiver notices a
    sending host's run that is gone within ``peer_timeout`` plus one heartbeat).
``curve``
    ZeroMQ's CURVE authentication and encryption: ``{key: this side's secret key file,
    server_key: the bound side's public key file (connecting side), clients: a folder
    of public key files of the clients allowed in (bound side; without it any client
    with a key gets in, encrypted)}``. Relative paths are taken from
    ``setup_directory`` if the configuration has it, else from the working directory.
``name``
    This side's name in the peer's log and statistics (default ``host/worker``).

``send`` only: ``batch`` (events per message, default: as many as fit 1 MiB, at most
512), ``inflight`` (batches in flight, default 8), ``reassign_after`` (seconds before
the batches of a lost receiver go to the other receivers, default 30; ``null``: never).

``receive`` only: ``window`` (events it takes unacknowledged, default: as many as fit
8 MiB, 64 to 8192), ``on_sender_lost`` (``wait``, the default, or ``end``), ``senders``
(how many senders' END end it; default: every sender it has seen), ``journal`` (true).
"""

from __future__ import annotations

import math
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from mimocorb.net.protocol import NetError

COMMON_KEYS = {"bind", "connect", "heartbeat", "peer_timeout", "curve", "name", "stats_interval"}
ROLE_KEYS = {
    "sender": {"batch", "inflight", "reassign_after"},
    "receiver": {"window", "on_sender_lost", "senders", "journal"},
    "publisher": {"interval"},
    "subscriber": set(),
}
CURVE_KEYS = {"key", "server_key", "clients"}
#: Keys the runner puts into every function's configuration (never reported as unknown).
RUNNER_KEYS = {"directory_prefix", "setup_directory"}


class ConfigError(NetError, ValueError):
    """A bad configuration of a bridge function; ``problems`` lists each, one per line.

    A ``ValueError`` too: the error every packaged function's ``check_config`` raises."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


@dataclass
class CurveConfig:
    key: Path
    server_key: Optional[Path] = None
    clients: Optional[Path] = None


@dataclass
class LinkConfig:
    """A checked configuration (see the module notes for the keys)."""

    role: str
    bind: Optional[str] = None
    connect: list[str] = field(default_factory=list)
    heartbeat: float = 0.5
    peer_timeout: float = 2.0
    curve: Optional[CurveConfig] = None
    name: str = ""
    stats_interval: float = 1.0
    run_folder: Optional[Path] = None
    extra: dict = field(default_factory=dict)

    @property
    def loopback_only(self) -> bool:
        return self.bind is None or self.bind.startswith(("tcp://127.", "tcp://localhost:", "ipc://", "inproc://"))


def bind_endpoint(value: Any) -> str:
    """``5555`` -> ``tcp://127.0.0.1:5555`` (loopback); an endpoint is kept as given."""
    if isinstance(value, bool):
        raise ValueError("expected a port or a ZeroMQ endpoint")
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        port = int(value)
        if not 0 < port < 65536:
            raise ValueError("expected a port 1..65535")
        return f"tcp://127.0.0.1:{port}"
    if isinstance(value, str) and "://" in value:
        return value
    raise ValueError("expected a port (loopback only) or a ZeroMQ endpoint like 'tcp://*:5555'")


def connect_endpoint(value: Any) -> str:
    """``host:port`` -> ``tcp://host:port``; an endpoint is kept as given."""
    if isinstance(value, str) and "://" in value:
        return value
    if isinstance(value, str) and ":" in value and value.rsplit(":", 1)[1].isdigit():
        return f"tcp://{value}"
    raise ValueError("expected 'host:port' or a ZeroMQ endpoint like 'tcp://host:5555'")


def _number(problems: list, key: str, value: Any, minimum: float, allow_none: bool = False) -> Optional[float]:
    if value is None and allow_none:
        return None
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= minimum
    if not ok:
        problems.append(f"{key}: expected a number >= {minimum}{' or null' if allow_none else ''}, got {value!r}")
        return None
    return float(value)


def _integer(problems: list, key: str, value: Any, minimum: int) -> Optional[int]:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        problems.append(f"{key}: expected an integer >= {minimum}, got {value!r}")
        return None
    return int(value)


def _path(base: Path, value: Any, problems: list, key: str, want_dir: bool = False) -> Optional[Path]:
    if not isinstance(value, str) or not value:
        problems.append(f"{key}: expected a file name, got {value!r}")
        return None
    p = Path(value)
    p = p if p.is_absolute() else base / p
    if not (p.is_dir() if want_dir else p.is_file()):
        problems.append(f"{key}: {'folder' if want_dir else 'file'} not found: {p} (given {value!r})")
        return None
    return p


def default_name() -> str:
    from mimocorb.daq.worker import current_worker

    w = current_worker()
    return f"{socket.gethostname()}/{w.name if w is not None else os.getpid()}"


def check_config(role: str, config: Optional[dict], where: str = "config") -> LinkConfig:
    """Check a bridge function's configuration and return it parsed.

    Parameters
    ----------
    role : {"sender", "receiver", "publisher", "subscriber"}
    config : dict
        The function's ``config_dict`` (keys in the module notes).
    where : str
        How to name the configuration in errors (``"setup.yaml: Fkt_3 config"``).

    Raises
    ------
    ConfigError
        Naming every bad key, its value and what is expected.
    """
    cfg = dict(config or {})
    problems: list[str] = []
    known = COMMON_KEYS | ROLE_KEYS[role] | RUNNER_KEYS
    unknown = sorted(str(k) for k in cfg if k not in known)
    if unknown:
        problems.append(f"unknown keys {unknown}; known keys: {', '.join(sorted(COMMON_KEYS | ROLE_KEYS[role]))}")
    out = LinkConfig(role)
    base = Path(cfg.get("setup_directory") or os.getcwd())
    if ("bind" in cfg) == ("connect" in cfg):
        given = sorted(k for k in cfg if k in ("bind", "connect"))
        problems.append(f"expected exactly one of 'bind' and 'connect', got {given or 'neither'}")
    if "bind" in cfg:
        try:
            out.bind = bind_endpoint(cfg["bind"])
        except ValueError as exc:
            problems.append(f"bind: {exc}, got {cfg['bind']!r}")
    if "connect" in cfg:
        targets = cfg["connect"] if isinstance(cfg["connect"], list) else [cfg["connect"]]
        for i, t in enumerate(targets):
            try:
                out.connect.append(connect_endpoint(t))
            except ValueError as exc:
                problems.append(f"connect{f'[{i}]' if len(targets) > 1 else ''}: {exc}, got {t!r}")
        if not targets:
            problems.append("connect: expected at least one endpoint, got []")
    out.heartbeat = _number(problems, "heartbeat", cfg.get("heartbeat", 0.5), 0.01) or 0.5
    out.peer_timeout = _number(problems, "peer_timeout", cfg.get("peer_timeout", 2.0), 0.05) or 2.0
    if out.peer_timeout < 2 * out.heartbeat:
        problems.append(
            f"peer_timeout: expected at least twice the heartbeat ({2 * out.heartbeat:g} s), got {out.peer_timeout:g}"
        )
    out.stats_interval = _number(problems, "stats_interval", cfg.get("stats_interval", 1.0), 0.05) or 1.0
    name = cfg.get("name")
    if name is not None and (not isinstance(name, str) or not name):
        problems.append(f"name: expected a text, got {name!r}")
    out.name = name or default_name()
    curve = cfg.get("curve")
    if curve is not None:
        if not isinstance(curve, dict):
            problems.append(f"curve: expected a mapping with key, server_key, clients, got {curve!r}")
        else:
            bad = sorted(str(k) for k in curve if k not in CURVE_KEYS)
            if bad:
                problems.append(f"curve: unknown keys {bad}; known keys: {', '.join(sorted(CURVE_KEYS))}")
            key = _path(base, curve.get("key"), problems, "curve.key")
            server = clients = None
            if out.connect and "server_key" not in curve:
                problems.append("curve.server_key: missing; the connecting side needs the bound side's public key")
            if "server_key" in curve:
                server = _path(base, curve["server_key"], problems, "curve.server_key")
            if "clients" in curve:
                clients = _path(base, curve["clients"], problems, "curve.clients", want_dir=True)
            if key is not None:
                out.curve = CurveConfig(key, server, clients)
    prefix = cfg.get("directory_prefix")
    if isinstance(prefix, str) and prefix:
        out.run_folder = Path(prefix)
    for k in ROLE_KEYS[role]:
        if k in cfg:
            out.extra[k] = cfg[k]
    _check_role_keys(role, out.extra, problems)
    if problems:
        raise ConfigError([f"{where}: {p}" for p in problems])
    return out


def _check_role_keys(role: str, extra: dict, problems: list) -> None:
    if "batch" in extra:
        _integer(problems, "batch", extra["batch"], 1)
    if "inflight" in extra:
        _integer(problems, "inflight", extra["inflight"], 1)
    if "reassign_after" in extra:
        _number(problems, "reassign_after", extra["reassign_after"], 0, allow_none=True)
    if "window" in extra:
        _integer(problems, "window", extra["window"], 1)
    if "senders" in extra:
        _integer(problems, "senders", extra["senders"], 1)
    if "interval" in extra:
        _number(problems, "interval", extra["interval"], 0)
    if extra.get("on_sender_lost", "wait") not in ("wait", "end"):
        problems.append(f"on_sender_lost: expected 'wait' or 'end', got {extra['on_sender_lost']!r}")
    if not isinstance(extra.get("journal", True), bool):
        problems.append(f"journal: expected true or false, got {extra['journal']!r}")


#: Each bridge function: its role and how many buffers it writes (its sink setups).
FUNCTIONS = {
    "send": ("sender", 0),
    "receive": ("receiver", 1),
    "publish": ("publisher", 0),
    "subscribe": ("subscriber", 1),
}


def function_checker(function: str) -> Any:
    """The ``check_config(config_dict, sink_setups)`` of bridge function ``function`` (``send``,
    ``receive``, ``publish``, ``subscribe``), for the setup loader: it raises
    :class:`ConfigError` (a ``ValueError``) naming every bad key, its value and what is expected
    -- an endpoint, a key file, a mode (``on_sender_lost``), a number -- and a wrong number of
    buffers written, before anything starts."""
    role, writes = FUNCTIONS[function]

    def check(config_dict: Optional[dict], sink_setups: Optional[list] = None) -> None:
        got = len(sink_setups or [])
        if got != writes:
            mode = "read" if function == "send" else "observe" if function == "publish" else "write"
            raise ConfigError(
                [
                    f"{function}: RB_assign: expected exactly one buffer in mode {mode!r}"
                    + ("" if writes else " and none written")
                    + f", got {got} buffer{'s' if got != 1 else ''} to write"
                ]
            )
        check_config(role, config_dict, f"{function} config")

    check.__name__ = check.__qualname__ = f"check_{function}_config"
    check.__doc__ = f"Raise ConfigError (a ValueError) for a bad ``{function}`` configuration or buffer assignment."
    return check
