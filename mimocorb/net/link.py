"""Sockets, handshake, heartbeats and peer liveness: what the sender and the receiver share.

A :class:`Node` owns a ZeroMQ context, the ROUTER it binds or the DEALERs it connects
(:mod:`mimocorb.net.protocol` says why), optional CURVE security, and the peers it has
a session with. It answers HELLOs, refuses peers of another layout or protocol and
messages that are not the protocol's (an ERROR back, a warning in the log; nothing
else happens), sends heartbeats and notices silent peers. The roles
(:class:`~mimocorb.net.sender.Sender`, :class:`~mimocorb.net.receiver.Receiver`)
handle the messages of an established session.

Sends never block (``NOBLOCK``): a message that cannot be queued is dropped and the
numbering of the protocol (a gap, then RESYNC) has it sent again.
"""

from __future__ import annotations

import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from mimocorb.net.config import LinkConfig
from mimocorb.net.protocol import (
    ERROR,
    HB,
    HELLO,
    Layout,
    NetError,
    ProtocolError,
    check_shape,
    hello,
    parse_hello,
    parse_text,
    seq_message,
    text_message,
)

logger = logging.getLogger(__name__)

#: Messages queued per peer before a send is dropped (flow control keeps far below it).
HWM = 100_000
_MAX_MESSAGES_PER_POLL = 256  # handle at most this many per socket before looking at the ring again
_REFUSAL_LOG_INTERVAL = 5.0  # seconds between two warnings about the same stray peer


def new_session() -> int:
    """A random 63-bit session id (never 0)."""
    return secrets.randbits(63) | 1


@dataclass
class Peer:
    """A peer this side has a session with."""

    name: str
    session: int
    route: tuple  # (socket index, routing id or None)
    window: int
    heartbeat: float
    last_heard: float
    last_sent: float = 0.0
    out_seq: int = 0  # DATA/END (sender) or ACK (receiver) messages sent in this session
    in_seq: int = 0  # the same numbers received from the peer
    lost: bool = False
    since: float = field(default_factory=time.monotonic)


class _LoggingAuthenticator(ThreadAuthenticator):
    """ZeroMQ's ZAP handler, with a warning for each client refused (key and address)."""

    def __init__(self, context: zmq.Context, allowed: Optional[dict], folder: Any):
        super().__init__(context, log=logging.getLogger("mimocorb.net.auth"))
        self._keys = allowed  # z85 public key -> True; None: any client with a key
        self._folder = folder
        self._address = "?"

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        if len(msg) > 3:
            self._address = msg[3].decode("utf-8", "replace")
        await super().handle_zap_message(msg)

    def callback(self, domain: str, key: bytes) -> bool:
        if self._keys is None or key in self._keys:
            return True
        logger.warning(
            "refused a client at %s: its CURVE key %s is not among the allowed keys in %s",
            self._address,
            key.decode(errors="replace"),
            self._folder,
        )
        return False


def open_socket(
    ctx: zmq.Context, s: zmq.Socket, cfg: LinkConfig, role: str, connect: Optional[str] = None
) -> Optional[ThreadAuthenticator]:
    """Bind ``s`` to ``cfg.bind`` (CURVE server, with the authenticator it needs, returned)
    or connect it to ``connect`` (CURVE client), as the configuration says."""
    public = secret = None
    auth = None
    if cfg.curve is not None:
        public, secret = zmq.auth.load_certificate(str(cfg.curve.key))
        if secret is None:
            raise NetError(f"curve.key: {cfg.curve.key} holds no secret key (use the .key_secret file)")
    s.setsockopt(zmq.LINGER, 0)
    if connect is not None:
        s.setsockopt(zmq.RECONNECT_IVL, 100)
        s.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        if cfg.curve is not None:
            s.curve_serverkey = zmq.auth.load_certificate(str(cfg.curve.server_key))[0]
            s.curve_publickey, s.curve_secretkey = public, secret
        s.connect(connect)
        return None
    if cfg.curve is not None:
        folder = cfg.curve.clients
        allowed = None if folder is None else zmq.auth.load_certificates(str(folder))
        auth = _LoggingAuthenticator(ctx, allowed, folder)
        auth.start()
        auth.configure_curve_callback(domain="*", credentials_provider=auth)
        s.curve_server = True
        s.curve_publickey, s.curve_secretkey = public, secret
    try:
        s.bind(cfg.bind)
    except zmq.ZMQError as exc:
        if auth is not None:
            auth.stop()
        raise NetError(f"{role} cannot bind {cfg.bind}: {exc}") from None
    if not cfg.loopback_only and cfg.curve is None:
        logger.warning("%s bound to %s without CURVE: anyone who reaches this port may connect", role, cfg.bind)
    return auth


class Node:
    """One side of a link: sockets, sessions, heartbeats. Subclasses give the role.

    Parameters
    ----------
    cfg : LinkConfig
        The checked configuration.
    layout : Layout
        The event layout of this side's buffer.
    session : int
        This side's session id (a receiver's comes from its journal).
    """

    role = "?"

    def __init__(self, cfg: LinkConfig, layout: Layout, session: int):
        self.cfg = cfg
        self.layout = layout
        self.session = session
        self.ctx = zmq.Context()
        self.auth: Optional[ThreadAuthenticator] = None
        self.sockets: list[zmq.Socket] = []
        self.endpoints: list[str] = []
        self.peers: dict[int, Peer] = {}  # session -> peer
        self.routes: dict[tuple, int] = {}  # route -> session of the peer now there
        self.hello_due: dict[int, float] = {}  # DEALER index -> when to send HELLO again (not yet answered)
        self.refused: dict[tuple, float] = {}  # route -> when we last warned about it
        self.counts = {"reconnects": 0, "refused": 0, "dropped_sends": 0, "gaps": 0}
        self.poller = zmq.Poller()
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    # -- sockets --------------------------------------------------------------
    def _open(self) -> None:
        cfg = self.cfg
        if cfg.bind is not None:
            s = self.ctx.socket(zmq.ROUTER)
            s.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a send to a peer that is gone fails instead of vanishing
            s.setsockopt(zmq.ROUTER_HANDOVER, 1)  # a reconnected DEALER (same routing id) takes over its route
            self._setup_socket(s)
            self._add(s)  # first: close() closes it whatever happens next
            self.auth = open_socket(self.ctx, s, cfg, self.role)
            self.endpoints.append(s.getsockopt_string(zmq.LAST_ENDPOINT))
        for ep in cfg.connect:
            s = self.ctx.socket(zmq.DEALER)
            s.setsockopt(zmq.ROUTING_ID, secrets.token_bytes(12))  # kept across reconnects (ROUTER_HANDOVER)
            self._setup_socket(s)
            self.hello_due[len(self.sockets)] = 0.0
            self._add(s)
            open_socket(self.ctx, s, cfg, self.role, ep)
            self.endpoints.append(ep)

    def _setup_socket(self, s: zmq.Socket) -> None:
        s.setsockopt(zmq.SNDHWM, HWM)
        s.setsockopt(zmq.RCVHWM, HWM)
        # ZMTP heartbeats: a connection whose peer host went silent is closed (and a DEALER
        # reconnects), so a link that was down comes back on a fresh connection
        ivl = max(1, int(self.cfg.heartbeat * 1000))
        s.setsockopt(zmq.HEARTBEAT_IVL, ivl)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(ivl, int(self.cfg.peer_timeout * 1000)))
        s.setsockopt(zmq.HEARTBEAT_TTL, max(ivl, int(self.cfg.peer_timeout * 1000)))

    def _add(self, s: zmq.Socket) -> None:
        self.sockets.append(s)
        self.poller.register(s, zmq.POLLIN)

    def close(self) -> None:
        """Close sockets and context at once (unsent messages are dropped)."""
        for s in self.sockets:
            s.close(0)
        self.sockets = []
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        self.ctx.term()

    # -- sending ----------------------------------------------------------------
    def send(self, route: tuple, frames: Sequence[Any], copy: bool = True) -> bool:
        """Queue a message for a route; False when it was dropped (no peer there, queue full)."""
        i, rid = route
        parts = [rid, *frames] if rid is not None else list(frames)
        try:
            self.sockets[i].send_multipart(parts, flags=zmq.NOBLOCK, copy=copy)
        except (zmq.Again, zmq.ZMQError):
            self.counts["dropped_sends"] += 1
            return False
        return True

    def send_peer(self, peer: Peer, frames: Sequence[Any], copy: bool = True) -> bool:
        peer.last_sent = time.monotonic()
        return self.send(peer.route, frames, copy)

    # -- receiving --------------------------------------------------------------
    def poll(self, timeout: float) -> int:
        """Wait up to ``timeout`` seconds for messages and handle them; returns how many."""
        events = self.poller.poll(max(0, int(timeout * 1000)) if timeout > 0 else 0)
        n = 0
        for s, _ in events:
            if s not in self.sockets:
                n += self.on_local(s)
                continue
            i = self.sockets.index(s)
            for _ in range(_MAX_MESSAGES_PER_POLL):
                try:
                    parts = s.recv_multipart(flags=zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                n += 1
                if s.type == zmq.ROUTER:
                    rid, frames = parts[0].bytes, parts[1:]
                else:
                    rid, frames = None, parts
                self._dispatch((i, rid), frames)
        return n

    def _dispatch(self, route: tuple, frames: list) -> None:
        try:
            kind = check_shape(frames)
        except ProtocolError as exc:
            self._refuse(route, str(exc))
            return
        sid = self.routes.get(route)
        peer = self.peers.get(sid) if sid is not None else None
        try:
            if kind == HELLO:
                self._on_hello(route, frames, peer)
            elif kind == ERROR:
                self._on_error(route, parse_text(frames), peer)
            elif peer is None:
                if route[1] is not None:  # a bound side restarted meanwhile, or a client that skipped HELLO
                    self.send(
                        route,
                        hello(
                            self.role, self.cfg.name, self.session, self.layout, self.cfg.heartbeat, self.hello_window()
                        ),
                    )
                elif route[0] in self.hello_due:
                    self.hello_due[route[0]] = 0.0  # say HELLO now
            else:
                self._heard(peer)
                self.on_message(peer, kind, frames)
        except ProtocolError as exc:
            self._refuse(route, str(exc))

    def _refuse(self, route: tuple, why: str) -> None:
        """Tell a peer why it is refused (ERROR), warn in the log (at most every few seconds per peer)."""
        self.counts["refused"] += 1
        self.send(route, text_message(ERROR, f"refused by {self.role} {self.cfg.name!r}: {why}"))
        now = time.monotonic()
        if now - self.refused.get(route, -1e9) >= _REFUSAL_LOG_INTERVAL:
            self.refused[route] = now
            where = self.endpoints[route[0]]
            logger.warning("%s %s refused a peer on %s: %s", self.role, self.cfg.name, where, why)

    def _on_error(self, route: tuple, text: str, peer: Optional[Peer]) -> None:
        if route[1] is None:  # the side we connected to refused us: nothing will work
            raise NetError(f"{self.role} {self.cfg.name!r}: {self.endpoints[route[0]]} refused the link: {text}")
        logger.warning(
            "%s %s: a peer on %s refused the link: %s", self.role, self.cfg.name, self.endpoints[route[0]], text
        )
        if peer is not None:
            self.drop_peer(peer)

    def _on_hello(self, route: tuple, frames: list, peer: Optional[Peer]) -> None:
        info = parse_hello(frames, self.role, self.layout)
        now = time.monotonic()
        if route[1] is not None:  # bound side: answer every HELLO
            self.send(
                route,
                hello(self.role, self.cfg.name, self.session, self.layout, self.cfg.heartbeat, self.hello_window()),
            )
        else:
            self.hello_due.pop(route[0], None)
        old = self.peers.get(info["session"])
        if old is not None:  # the same session again: re-connected, or its worker restarted (same journal)
            if old.route != route:
                self.routes.pop(old.route, None)
            old.route, old.window, old.heartbeat = route, info["window"], info["heartbeat"]
            old.in_seq = old.out_seq = 0  # a new connection numbers its messages afresh
            self.routes[route] = old.session
            self._heard(old)
            self.counts["reconnects"] += 1
            logger.info("%s %s: %s (session %x) is back", self.role, self.cfg.name, old.name, old.session)
            self.on_session(old, again=True)
            return
        if peer is not None and peer.session != info["session"]:
            self.drop_peer(peer)  # another process now answers on this route
        p = Peer(info["name"], info["session"], route, info["window"], info["heartbeat"], now, now)
        self.peers[p.session] = p
        self.routes[route] = p.session
        logger.info(
            "%s %s: link to %s (session %x) via %s",
            self.role,
            self.cfg.name,
            p.name,
            p.session,
            self.endpoints[route[0]],
        )
        self.on_session(p, again=False)

    def _heard(self, peer: Peer) -> None:
        peer.last_heard = time.monotonic()
        if peer.lost:
            peer.lost = False
            self.counts["reconnects"] += 1
            logger.info("%s %s: %s answers again", self.role, self.cfg.name, peer.name)
            self.on_back(peer)

    def drop_peer(self, peer: Peer) -> None:
        """Forget a peer's session (it said BYE, refused us, or was replaced)."""
        self.peers.pop(peer.session, None)
        if self.routes.get(peer.route) == peer.session:
            del self.routes[peer.route]
            if peer.route[1] is None:
                self.hello_due[peer.route[0]] = time.monotonic() + self.cfg.heartbeat

    # -- timers -----------------------------------------------------------------
    def tick(self) -> None:
        """Heartbeats, repeated HELLOs, silent peers; call at least every heartbeat / 2."""
        now = time.monotonic()
        hb = self.cfg.heartbeat
        for i, due in list(self.hello_due.items()):
            if now >= due:
                self.send(
                    (i, None), hello(self.role, self.cfg.name, self.session, self.layout, hb, self.hello_window())
                )
                self.hello_due[i] = now + hb
        for p in list(self.peers.values()):
            if now - p.last_sent >= hb:
                self.send_peer(p, seq_message(HB, p.out_seq))
            if not p.lost and now - p.last_heard > self.cfg.peer_timeout:
                p.lost = True
                logger.warning(
                    "%s %s: %s silent for %.1f s: lost", self.role, self.cfg.name, p.name, now - p.last_heard
                )
                if p.route[1] is None and self.routes.get(p.route) == p.session:
                    self.hello_due[p.route[0]] = now  # say HELLO until the other side answers
                self.on_lost(p)

    # -- for the roles ----------------------------------------------------------
    def hello_window(self) -> int:
        return 0

    def on_session(self, peer: Peer, again: bool) -> None:
        """A HELLO was exchanged with ``peer`` (``again``: a session it had before)."""

    def on_message(self, peer: Peer, kind: bytes, frames: list) -> None:
        """A message of an established session (not HELLO or ERROR)."""

    def on_lost(self, peer: Peer) -> None:
        """``peer`` has been silent for ``peer_timeout``."""

    def on_back(self, peer: Peer) -> None:
        """A lost peer is heard again."""

    def on_local(self, sock: zmq.Socket) -> int:
        """A socket registered in :attr:`poller` besides the network ones has messages; returns how many."""
        return 0
