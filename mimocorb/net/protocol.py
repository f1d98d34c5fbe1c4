"""The wire protocol of the bridge between ring buffers on two hosts (version 1).

Sockets
-------
The side that binds has a ROUTER socket; each endpoint a side connects to gets a
DEALER socket of its own (its routing id random and kept across reconnects, the
ROUTER hands a reconnected peer over to the new connection). Which side binds is
free: a sender that binds serves several receivers (work sharing), a receiver that
binds collects from several senders (fan-in). Every message is one ZeroMQ multipart
message; on a ROUTER the routing id frame comes first and is not shown below.
Frame 0 is the kind; the other frames are little-endian C structs, JSON (UTF-8) or
raw event bytes:

=========  =========  ====================================================================
kind       from       frames after the kind
=========  =========  ====================================================================
HELLO      both       JSON {protocol, version, role, name, session, layout, window, heartbeat}
DATA       sender     header <QQQII (dseq, first, low, n, stride), metadata (n x <qdd:
                      counter, timestamp, deadtime), data ((n-1) x stride + payload bytes:
                      event i at i x stride)
ACK        receiver   header <QI (aseq, m), then m x <QQ (first, published) in one frame
HB         both       <Q: the last dseq (sender) or aseq (receiver) sent to this peer
END        sender     <QQ (dseq, events the stream ever sent): nothing comes after it
BYE        receiver   JSON {reason}: leaving; everything it published is acknowledged
RESYNC     receiver   <Q: the last dseq received: messages were lost, send what is in flight again
ERROR      both       UTF-8 text: the peer was refused (wrong layout, version, garbage)
=========  =========  ====================================================================

Handshake
    The connecting side sends HELLO (again every heartbeat until answered); the bound
    side checks protocol name and version, the opposite role and the event layout
    (dtype description and values per slot) and answers HELLO, or ERROR naming both
    layouts (or what was received) and forgets the peer. The connecting side checks
    the answer the same way and raises :class:`NetError` on a refusal. ``session`` is
    a random 63-bit number: a sender's stream, or a receiver's journal (the same after
    its worker is restarted, new for a new run).

Streams, batches, acknowledgement
    A sender numbers the events it takes from its reader group 0, 1, 2, ... (its
    stream). DATA carries a batch: n consecutive stream sequences from ``first``.
    ``low`` is the first stream sequence not yet acknowledged anywhere: nothing below
    it is ever sent again, so receivers forget it. A receiver publishes the batch in
    its buffer, then acknowledges ``(first, published)``; only then does the sender
    release the slots in its own buffer. A receiver announces ``window`` (events it
    takes unacknowledged): the sender never has more in flight to it (credit), and
    gives new batches to the receiver with the most room.

Loss, resend, de-duplication
    DATA and END are numbered per peer (dseq), ACK too (aseq); heartbeats carry the
    last number sent. A gap -- messages lost with a connection that broke -- makes the
    receiver send RESYNC (or the sender notice a lost ACK); the sender then sends every
    batch in flight to that receiver again. A receiver skips what it already published
    (per sender, by stream sequence; after a restart from its journal) and acknowledges
    it again. A peer silent for ``peer_timeout`` is lost; a sender keeps the batches in
    flight to a lost receiver for it (it may have published them) until it returns (the
    same session: it de-duplicates), a new session of the same name appears (the old
    one is gone for good), it said BYE, or ``reassign_after`` seconds passed -- then
    they go to the others (at most the unacknowledged ones may then arrive twice).

End
    END follows a stream's last batch once everything was acknowledged; a receiver
    returns once every sender it has seen ended (or ``senders`` of them), after
    answering BYE.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from mimocorb.mimo_buffer import METADATA_DTYPE

PROTOCOL = "mimocorb-net"
VERSION = 1

HELLO = b"MCB-HELLO"
DATA = b"MCB-DATA"
ACK = b"MCB-ACK"
HB = b"MCB-HB"
END = b"MCB-END"
BYE = b"MCB-BYE"
RESYNC = b"MCB-RESYNC"
ERROR = b"MCB-ERROR"

DATA_HEADER = struct.Struct("<QQQII")  # dseq, first, low, n, stride
ACK_HEADER = struct.Struct("<QI")  # aseq, number of (first, published) pairs
ACK_ENTRY = np.dtype([("first", "<u8"), ("published", "<u8")])
SEQ = struct.Struct("<Q")
END_BODY = struct.Struct("<QQ")
#: Metadata of one event on the wire (packed, little-endian; the same fields as the ring's).
WIRE_METADATA = np.dtype([("counter", "<i8"), ("timestamp", "<f8"), ("deadtime", "<f8")])

_SHAPES = {  # kind -> number of frames after the kind
    HELLO: 1,
    DATA: 3,
    ACK: 2,
    HB: 1,
    END: 1,
    BYE: 1,
    RESYNC: 1,
    ERROR: 1,
}
_FIXED = {HB: SEQ.size, END: END_BODY.size, RESYNC: SEQ.size}

assert WIRE_METADATA.itemsize == 24 and METADATA_DTYPE.names == WIRE_METADATA.names


class NetError(RuntimeError):
    """A link cannot work: a peer refused us or speaks another layout or protocol."""


class ProtocolError(ValueError):
    """A message that is not one of this protocol's; the text says what was received."""


def describe_frames(frames: Sequence[Any], limit: int = 48) -> str:
    """What was received, for an error message: frame count and the start of each frame."""
    parts = []
    for f in list(frames)[:4]:
        b = bytes(getattr(f, "bytes", f))
        parts.append(repr(b[:limit]) + (f"... ({len(b)} bytes)" if len(b) > limit else ""))
    more = f" + {len(frames) - 4} more" if len(frames) > 4 else ""
    return f"{len(frames)} frame{'s' if len(frames) != 1 else ''}: " + ", ".join(parts) + more


def check_shape(frames: Sequence[Any]) -> bytes:
    """The kind of a message, after checking its frame count and fixed sizes.

    Raises
    ------
    ProtocolError
        For anything else, naming what was received.
    """
    if not frames:
        raise ProtocolError("an empty message")
    kind = bytes(getattr(frames[0], "bytes", frames[0]))
    n = _SHAPES.get(kind)
    if n is None:
        raise ProtocolError(f"not a mimocorb-net message: {describe_frames(frames)}")
    if len(frames) != n + 1:
        raise ProtocolError(f"{kind.decode()} needs {n + 1} frames: {describe_frames(frames)}")
    size = _FIXED.get(kind)
    if size is not None and len(frames[1]) != size:
        raise ProtocolError(f"{kind.decode()} body must be {size} bytes: {describe_frames(frames)}")
    return kind


# ---------------------------------------------------------------------------
# event layout
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Layout:
    """The event layout of a buffer: what both ends of a link must agree on."""

    dtype: str  # numpy's description of the element type, as text
    values_per_slot: int
    payload_bytes: int

    @classmethod
    def of(cls, dtype: Any, values_per_slot: int) -> Layout:
        dt = np.dtype(dtype)
        return cls(str(dt.descr if dt.names else dt.str), int(values_per_slot), dt.itemsize * int(values_per_slot))

    @classmethod
    def from_setup(cls, setup_dict: dict) -> Layout:
        """The layout of the buffer a setup dict (writer, reader or observer) belongs to."""
        return cls.of(setup_dict["dtype"], setup_dict["values_per_slot"])

    def as_json(self) -> dict:
        return {"dtype": self.dtype, "values_per_slot": self.values_per_slot, "payload_bytes": self.payload_bytes}

    def __str__(self) -> str:
        return f"{self.values_per_slot} x {self.dtype} ({self.payload_bytes} bytes per event)"


# ---------------------------------------------------------------------------
# HELLO
# ---------------------------------------------------------------------------


def hello(role: str, name: str, session: int, layout: Layout, heartbeat: float, window: int = 0) -> list[bytes]:
    body = {
        "protocol": PROTOCOL,
        "version": VERSION,
        "role": role,
        "name": name,
        "session": int(session),
        "layout": layout.as_json(),
        "window": int(window),
        "heartbeat": float(heartbeat),
    }
    return [HELLO, json.dumps(body).encode()]


def parse_hello(frames: Sequence[Any], my_role: str, my_layout: Layout) -> dict:
    """The peer's HELLO, checked against this side.

    Raises
    ------
    ProtocolError
        When it is not a HELLO of this protocol and version, comes from the same role,
        or describes another event layout; the text names both sides.
    """
    raw = bytes(frames[1])
    try:
        body = json.loads(raw.decode())
    except (UnicodeDecodeError, ValueError):
        raise ProtocolError(f"HELLO with a body that is not JSON: {describe_frames(frames)}") from None
    if not isinstance(body, dict) or body.get("protocol") != PROTOCOL:
        raise ProtocolError(f"HELLO of another protocol (expected {PROTOCOL!r}): {describe_frames(frames)}")
    if body.get("version") != VERSION:
        raise ProtocolError(
            f"protocol version {body.get('version')!r} from the peer, this side speaks version {VERSION}"
        )
    want = "receiver" if my_role == "sender" else "sender"
    if body.get("role") != want:
        raise ProtocolError(f"the peer is a {body.get('role')!r}, a {my_role} needs a {want}")
    try:
        lay = body["layout"]
        theirs = Layout(str(lay["dtype"]), int(lay["values_per_slot"]), int(lay["payload_bytes"]))
        session, window, hb = int(body["session"]), int(body["window"]), float(body["heartbeat"])
        name = str(body["name"])
    except (KeyError, TypeError, ValueError):
        raise ProtocolError(f"HELLO lacks fields: {describe_frames(frames)}") from None
    if theirs != my_layout:
        raise ProtocolError(f"event layouts differ: this {my_role} has {my_layout}, the {want} {name!r} has {theirs}")
    if session <= 0 or window < 0 or not hb > 0:
        raise ProtocolError(f"HELLO with bad values: {describe_frames(frames)}")
    return {"name": name, "session": session, "window": window, "heartbeat": hb, "layout": theirs}


# ---------------------------------------------------------------------------
# the other messages
# ---------------------------------------------------------------------------


def parse_data(frames: Sequence[Any], payload: int) -> tuple[int, int, int, int, int]:
    """(dseq, first, low, n, stride) of a DATA message, its frame sizes checked."""
    if len(frames[1]) != DATA_HEADER.size:
        raise ProtocolError(f"DATA header must be {DATA_HEADER.size} bytes: {describe_frames(frames)}")
    dseq, first, low, n, stride = DATA_HEADER.unpack(bytes(frames[1]))
    if n < 1 or stride < payload or len(frames[2]) != n * WIRE_METADATA.itemsize:
        raise ProtocolError(f"DATA of {n} events with bad sizes: {describe_frames(frames)}")
    if len(frames[3]) != (n - 1) * stride + payload:
        raise ProtocolError(
            f"DATA of {n} events of {payload} bytes (stride {stride}) needs {(n - 1) * stride + payload} data bytes, "
            f"got {len(frames[3])}"
        )
    return dseq, first, low, n, stride


def ack(aseq: int, entries: Sequence[tuple[int, int]]) -> list[bytes]:
    return [ACK, ACK_HEADER.pack(aseq, len(entries)), np.array(entries, dtype=ACK_ENTRY).tobytes()]


def parse_ack(frames: Sequence[Any]) -> tuple[int, np.ndarray]:
    if len(frames[1]) != ACK_HEADER.size:
        raise ProtocolError(f"ACK header must be {ACK_HEADER.size} bytes: {describe_frames(frames)}")
    aseq, m = ACK_HEADER.unpack(bytes(frames[1]))
    if len(frames[2]) != m * ACK_ENTRY.itemsize:
        raise ProtocolError(f"ACK of {m} entries with {len(frames[2])} bytes: {describe_frames(frames)}")
    return aseq, np.frombuffer(bytes(frames[2]), dtype=ACK_ENTRY)


def seq_message(kind: bytes, value: int) -> list[bytes]:
    return [kind, SEQ.pack(value)]


def parse_seq(frames: Sequence[Any]) -> int:
    return SEQ.unpack(bytes(frames[1]))[0]


def text_message(kind: bytes, text: str) -> list[bytes]:
    return [kind, text.encode("utf-8", "replace")]


def parse_text(frames: Sequence[Any]) -> str:
    return bytes(frames[1]).decode("utf-8", "replace")


__all__ = [
    "PROTOCOL",
    "VERSION",
    "Layout",
    "NetError",
    "ProtocolError",
    "WIRE_METADATA",
    "check_shape",
    "describe_frames",
    "hello",
    "parse_hello",
]
