"""A TCP server that plays an instrument, with fault injection for tests.

Like a real instrument it serves one client at a time; a client that goes away is
followed by the next one. It runs in a thread of the process that starts it (tests,
benchmarks) or as ``python -m mimocorb.sources.simulators``. Every blocking call has a
timeout, so :meth:`InstrumentServer.stop` ends it within a second.
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass, field
from typing import Optional

logger = logging.getLogger(__name__)

POLL = 0.1  # s: how often a blocked server thread looks at the stop flag


@dataclass
class Faults:
    """Faults to inject, counted in events (triggers) served, from 1.

    Attributes
    ----------
    drop_at_event : int or None
        Close the connection half-way through sending this event's data.
    refuse_after_drop : bool
        After that drop, stop listening (the instrument is gone for good).
    short_block_at : int or None
        Send this event's data block shorter than its header (or the protocol) says.
    malformed_block_at : int or None
        Send a data block with a malformed header (SCPI) or a short status reply (MCPHA).
    never_trigger : bool
        Arming never leads to a trigger.
    """

    drop_at_event: Optional[int] = None
    refuse_after_drop: bool = False
    short_block_at: Optional[int] = None
    malformed_block_at: Optional[int] = None
    never_trigger: bool = False
    fired: list = field(default_factory=list)  # names of the faults injected so far


class ClientGone(Exception):
    """The client closed the connection (or the server is stopping)."""


class Connection:
    """One client's socket with bounded reads that honour the server's stop flag."""

    def __init__(self, sock: socket.socket, stopping: threading.Event):
        self.sock = sock
        self.stopping = stopping
        self._pending = bytearray()
        sock.settimeout(POLL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _fill(self) -> None:
        while True:
            if self.stopping.is_set():
                raise ClientGone("server stopping")
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError as exc:
                raise ClientGone(str(exc)) from exc
            if not chunk:
                raise ClientGone("client closed the connection")
            self._pending += chunk
            return

    def read_exact(self, n: int) -> bytes:
        while len(self._pending) < n:
            self._fill()
        out = bytes(self._pending[:n])
        del self._pending[:n]
        return out

    def read_line(self, terminator: bytes = b"\n") -> bytes:
        while terminator not in self._pending:
            self._fill()
        i = self._pending.index(terminator) + len(terminator)
        out = bytes(self._pending[:i])
        del self._pending[:i]
        return out

    def send(self, *parts: bytes) -> None:
        try:
            for p in parts:
                self.sock.sendall(p)
        except OSError as exc:
            raise ClientGone(str(exc)) from exc


class InstrumentServer:
    """Base of the simulators: listen, accept one client at a time, call :meth:`serve`.

    Parameters
    ----------
    host, port : str, int
        Where to listen; port 0 picks a free port (see :attr:`port`).
    faults : Faults, optional
        Faults to inject.
    """

    kind = "instrument"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, faults: Optional[Faults] = None):
        self.faults = faults or Faults()
        self.events_served = 0
        self.connections = 0
        self._stopping = threading.Event()
        self._listener = socket.create_server((host, port), reuse_port=False)
        self._listener.settimeout(POLL)
        self.host, self.port = self._listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._run, name=f"{self.kind}-simulator", daemon=True)
        self._client: Optional[socket.socket] = None

    # ------------------------------------------------------------ lifecycle
    def start(self) -> InstrumentServer:
        self._thread.start()
        logger.info("%s simulator listening on %s:%d", self.kind, self.host, self.port)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop serving and close every socket (bounded)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        self._close_listener()

    def __enter__(self) -> InstrumentServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve in the calling thread until KeyboardInterrupt (the command line)."""
        try:
            self._run()
        finally:
            self._close_listener()

    def forget_in_child(self) -> None:
        """Close this process's copy of the listening socket: for a process forked from the
        one running the simulator (a separate instrument is not listening inside it)."""
        self._close_listener()

    @property
    def client_connected(self) -> bool:
        return self._client is not None

    def _close_listener(self) -> None:
        try:
            self._listener.close()
        except OSError:
            pass

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, addr = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return  # listener closed (refuse_after_drop)
            self.connections += 1
            self._client = sock
            logger.info("%s simulator: client %s connected", self.kind, addr)
            try:
                self.serve(Connection(sock, self._stopping))
            except ClientGone as exc:
                logger.info("%s simulator: %s", self.kind, exc)
            finally:
                self._client = None
                sock.close()

    def drop_connection(self, conn: Connection, partial: bytes) -> None:
        """Fault: send part of a reply, then close (and maybe stop listening)."""
        self.faults.fired.append("drop")
        try:
            conn.sock.sendall(partial)
            conn.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if self.faults.refuse_after_drop:
            self._close_listener()
        raise ClientGone("connection dropped (fault injection)")

    # ------------------------------------------------------------ protocol
    def serve(self, conn: Connection) -> None:  # pragma: no cover - abstract
        raise NotImplementedError
