"""The sending end of a link: a member of a reader group whose events go to other hosts.

One thread. The sender opens ``inflight`` :class:`~mimocorb.mimo_buffer.Reader`
endpoints of one reader group; each holds one batch from ``get_many(k)`` (the group
hands out its events in order across them) until the receiver acknowledged that
every event of the batch is published in its buffer -- only then is it released.
So nothing leaves the local buffer unacknowledged, a full remote buffer holds back
the local one (and through it the source), and a sender that dies leaves what it
held counted lost for its group (the ring's own bookkeeping).

Big events go without a copy: the batch's slots are one frame that ZeroMQ sends
from the shared memory (safe: the slots stay held until the acknowledgement). Small
events are copied into one compact frame per batch.

Waiting: while batches are in flight the sender waits for new events a fraction of a
millisecond at a time and looks at the sockets in between (acknowledgements free
slots); with nothing in flight it sleeps in the buffer up to 50 ms at a time.
"""

from __future__ import annotations

import logging
import struct
import time
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Optional

import numpy as np

from mimocorb.mimo_buffer import Reader
from mimocorb.net.config import LinkConfig, check_config, function_checker
from mimocorb.net.link import Node, Peer, new_session
from mimocorb.net.protocol import (
    ACK,
    BYE,
    DATA,
    DATA_HEADER,
    END,
    END_BODY,
    HB,
    RESYNC,
    WIRE_METADATA,
    Layout,
    NetError,
    parse_ack,
    parse_seq,
    parse_text,
)
from mimocorb.net.stats import LinkStats

logger = logging.getLogger(__name__)

ZERO_COPY_BYTES = 8192  # events at least this big are sent from the slots themselves
_WAIT_IN_FLIGHT = 0.0002  # seconds of one wait for events while acknowledgements are due
_WAIT_IDLE = 0.05
_END_WAIT_HEARTBEATS = 6  # how long END is repeated to a receiver that does not answer BYE


def default_batch(payload: int) -> int:
    """Events per message: as many as fit 1 MiB, 1 to 512.

    Each message costs the same Python work on both ends whatever its size (about
    0.1-0.3 ms on a loaded 2-core host): 64 KiB events went at 0.55 GB/s in messages of
    256 KiB and at 1.35-1.5 GB/s in messages of 1 MiB (``benchmarks.bench_net``)."""
    return int(min(512, max(1, (1 << 20) // max(payload, 1))))


@dataclass
class Batch:
    """Consecutive events of the stream, held by one reader until all are acknowledged."""

    first: int
    n: int
    reader: Reader
    meta: memoryview
    data: Any  # one contiguous byte buffer: event i at i * stride
    stride: int
    receiver: Optional[int] = None  # session of the receiver it was sent to
    done: int = 0  # events acknowledged (a prefix)
    keys: list = field(default_factory=list)  # its entries in Sender.sent_as (firsts of its DATA messages)


class Sender(Node):
    """Send the events of a reader group to receivers on other hosts.

    Parameters
    ----------
    source : dict
        Setup dict of the reader group (``NewBuffer.new_reader_group()``).
    config : dict or LinkConfig
        The configuration (keys in :mod:`mimocorb.net.config`).

    Notes
    -----
    :meth:`run` returns once the local buffer's run ended and everything was
    acknowledged and END told to every receiver; :meth:`stats` gives the counters.
    """

    role = "sender"

    def __init__(self, source: dict, config: Any):
        cfg = config if isinstance(config, LinkConfig) else check_config("sender", config, "send config")
        layout = Layout.from_setup(source)
        self.batch = int(cfg.extra.get("batch", default_batch(layout.payload_bytes)))
        self.reassign_after = cfg.extra.get("reassign_after", 30.0)
        self.link_stats = LinkStats("sender", cfg.name, str(source.get("name")), cfg.run_folder, cfg.stats_interval)
        self.readers = [Reader(source) for _ in range(int(cfg.extra.get("inflight", 8)))]
        self.free = list(self.readers)
        self.batches: dict[int, Batch] = {}  # first -> batch, in stream order
        self.sent_as: dict[int, Batch] = {}  # first of a DATA message -> its batch
        self.pending: list[Batch] = []  # to be sent to whoever has room
        self.next_seq = 0
        self.lost_at: dict[int, float] = {}
        self.byes: set[int] = set()
        self._meta_packers: dict[int, Any] = {}  # events -> packs their metadata as WIRE_METADATA records
        try:
            super().__init__(cfg, layout, new_session())
        except BaseException:
            for r in self.readers:
                r.close()
            raise

    # -- receivers --------------------------------------------------------------
    def _load(self, peer: Peer) -> int:
        return sum(b.n - b.done for b in self.batches.values() if b.receiver == peer.session)

    def _best(self) -> tuple[Optional[Peer], int]:
        """The live receiver with the most room, and its room."""
        best, room = None, 0
        for p in self.peers.values():
            if p.lost or p.session in self.byes:
                continue
            r = p.window - self._load(p)
            if r > room:
                best, room = p, r
        return best, room

    def on_session(self, peer: Peer, again: bool) -> None:
        self.link_stats.peers[peer.name] = "up"
        self.lost_at.pop(peer.session, None)
        if again:
            self._resend(peer, "it is back")
            return
        for old in list(self.peers.values()):  # a new session of a lost receiver's name: the old one is gone
            if old is not peer and old.name == peer.name and old.lost:
                self._unassign(old, f"{old.name} started again (new session)")
                self.drop_peer(old)

    def on_lost(self, peer: Peer) -> None:
        self.link_stats.peers[peer.name] = "lost"
        self.lost_at[peer.session] = time.monotonic()
        for new in self.peers.values():  # it started again (new session) before it was found lost
            if new is not peer and new.name == peer.name and not new.lost and new.since > peer.since:
                self._unassign(peer, f"{peer.name} started again (new session)")
                self.drop_peer(peer)
                return

    def on_back(self, peer: Peer) -> None:
        self.link_stats.peers[peer.name] = "up"
        self.lost_at.pop(peer.session, None)

    def on_message(self, peer: Peer, kind: bytes, frames: list) -> None:
        if kind == ACK:
            aseq, entries = parse_ack(frames)
            gap = aseq != peer.in_seq + 1
            peer.in_seq = aseq
            for first, published in entries.tolist():
                self._acked(first, published)
            if gap:
                self._resend(peer, "acknowledgements were lost")
        elif kind == RESYNC:
            self._resend(peer, f"it missed messages after {parse_seq(frames)}")
        elif kind == HB:
            last = parse_seq(frames)
            if last > peer.in_seq:
                peer.in_seq = last
                self._resend(peer, "acknowledgements were lost")
        elif kind == BYE:
            logger.info("sender %s: %s left (%s)", self.cfg.name, peer.name, parse_text(frames))
            self.byes.add(peer.session)
            self.link_stats.peers[peer.name] = "left"
            self._unassign(peer, None)  # it acknowledged everything it published: the rest goes elsewhere
            self.drop_peer(peer)

    def _acked(self, first: int, published: int) -> None:
        b = self.sent_as.get(first)
        if b is None:
            return  # acknowledged before (a repeat)
        n_before = b.done
        b.done = max(b.done, first - b.first + published)
        self.link_stats.add("acked", b.done - n_before)
        if b.done >= b.n:
            self._release(b)

    def _release(self, b: Batch) -> None:
        b.reader.release()  # only now may the source reuse the slots
        self.free.append(b.reader)
        del self.batches[b.first]
        for k in b.keys:
            if self.sent_as.get(k) is b:
                del self.sent_as[k]
        if b in self.pending:
            self.pending.remove(b)

    def _unassign(self, peer: Peer, why: Optional[str]) -> None:
        """Hand the batches in flight to ``peer`` to whoever has room."""
        moved = [b for b in self.batches.values() if b.receiver == peer.session]
        for b in moved:
            b.receiver = None
            self.pending.append(b)
        if moved and why is not None:
            n = sum(b.n - b.done for b in moved)
            self.link_stats.add("reassigned", n)
            logger.warning(
                "sender %s: %s; %d events it had not acknowledged go to the other receivers "
                "(those it published without acknowledging may arrive twice)",
                self.cfg.name,
                why,
                n,
            )

    def _resend(self, peer: Peer, why: str) -> None:
        mine = [b for b in self.batches.values() if b.receiver == peer.session]
        if mine:
            logger.info("sender %s: sending %d batches to %s again: %s", self.cfg.name, len(mine), peer.name, why)
        for b in mine:
            self._send(peer, b, again=True)

    def _check_reassign(self) -> None:
        if self.reassign_after is None or not self.lost_at:
            return
        now = time.monotonic()
        for sid, t in list(self.lost_at.items()):
            peer = self.peers.get(sid)
            if peer is None:
                del self.lost_at[sid]
            elif now - t > self.reassign_after and self._best()[0] is not None:
                del self.lost_at[sid]
                self._unassign(peer, f"{peer.name} lost for {now - t:.0f} s")

    # -- sending ----------------------------------------------------------------
    def _send(self, peer: Peer, b: Batch, again: bool = False) -> None:
        b.receiver = peer.session
        k = b.done
        low = next(iter(self.batches.values()))
        low = low.first + low.done
        peer.out_seq += 1
        head = DATA_HEADER.pack(peer.out_seq, b.first + k, low, b.n - k, b.stride)
        size = WIRE_METADATA.itemsize
        data = b.data if k == 0 else b.data[k * b.stride :]
        self.sent_as[b.first + k] = b
        b.keys.append(b.first + k)
        self.send_peer(peer, [DATA, head, b.meta[k * size :], data], copy=False)
        self.link_stats.add("resent" if again else "sent", b.n - k)
        self.link_stats.add("bytes", len(data))

    def _take(self, reader: Reader, k: int, timeout: float) -> Optional[Batch]:
        v = reader.get_many(k, timeout)
        if v is None:
            return None
        m = len(v)
        pack = self._meta_packers.get(m)
        if pack is None:
            pack = self._meta_packers[m] = struct.Struct("<" + "qdd" * m).pack  # WIRE_METADATA x m
        meta = memoryview(pack(*chain.from_iterable(reader.metadata_many())))
        if self.layout.payload_bytes >= ZERO_COPY_BYTES:
            stride = v.strides[0]
            rows = v.view(np.uint8)
            data = np.lib.stride_tricks.as_strided(rows, shape=((m - 1) * stride + rows.shape[1],), strides=(1,))
        else:
            stride = self.layout.payload_bytes
            data = np.ascontiguousarray(v).view(np.uint8).reshape(-1)
        b = Batch(self.next_seq, m, reader, meta, data, stride)
        self.next_seq += m
        self.batches[b.first] = b
        return b

    def _send_pending(self) -> None:
        while self.pending:
            peer, room = self._best()
            if peer is None or room < 1:
                return
            self._send(peer, self.pending.pop(0), again=True)

    # -- the loop -----------------------------------------------------------------
    def run(self) -> None:
        """Send until the local run has ended and everything is acknowledged, then END."""
        ending = False
        self.link_stats.state = "running"
        while True:
            self.poll(0)
            self.tick()
            self._check_reassign()
            self._send_pending()
            self._update_stats()
            if ending and not self.batches:
                break
            peer, room = self._best()
            if ending or not self.free or peer is None or self.pending:
                self.poll(_WAIT_IN_FLIGHT * 100 if self.batches else _WAIT_IDLE)
                continue
            reader = self.free.pop()
            try:
                b = self._take(reader, min(self.batch, room), _WAIT_IN_FLIGHT if self.batches else _WAIT_IDLE)
            except SystemExit:  # the local run ended and the group got everything
                self.free.append(reader)
                ending = True
                logger.info("sender %s: the local run ended after %d events", self.cfg.name, self.next_seq)
                continue
            except BaseException:
                self.free.append(reader)
                raise
            if b is None:
                self.free.append(reader)
            else:
                self._send(peer, b)
        self._end()

    def _end(self) -> None:
        """END to every receiver (repeated each heartbeat), until each said BYE or a bound."""
        self.link_stats.state = "ending"
        deadline = time.monotonic() + _END_WAIT_HEARTBEATS * self.cfg.heartbeat + self.cfg.peer_timeout
        told: dict[int, float] = {}
        while time.monotonic() < deadline:
            waiting = [p for p in self.peers.values() if p.session not in self.byes]
            if not waiting:
                break
            now = time.monotonic()
            for p in waiting:
                if now - told.get(p.session, -1e9) >= self.cfg.heartbeat:
                    p.out_seq += 1
                    self.send_peer(p, [END, END_BODY.pack(p.out_seq, self.next_seq)])
                    told[p.session] = now
            self.poll(min(0.05, self.cfg.heartbeat / 2))
            self.tick()
        self.link_stats.state = "ended"
        self._update_stats(force=True)

    def _update_stats(self, force: bool = False) -> None:
        s = self.link_stats
        s.counts["in_flight"] = sum(b.n - b.done for b in self.batches.values())
        s.counts["reconnects"] = self.counts["reconnects"]
        s.counts["refused"] = self.counts["refused"]
        s.maybe_write(force)

    def stats(self) -> dict:
        """The link's counters (see :mod:`mimocorb.net.stats`)."""
        self.link_stats.counts["in_flight"] = sum(b.n - b.done for b in self.batches.values())
        return self.link_stats.snapshot()

    def close(self) -> None:
        """Close sockets and the readers that hold nothing.

        Readers holding batches not yet acknowledged are left holding them: they may not
        have arrived, so they must not count as consumed. A worker that fails ends with
        ``os._exit`` and its buffer counts them lost (dead reader); :meth:`run` returns
        only when none is left."""
        super().close()
        held = {id(b.reader) for b in self.batches.values()}
        if held:
            logger.warning(
                "sender %s closed with %d events not acknowledged; they stay held by this process",
                self.cfg.name,
                sum(b.n - b.done for b in self.batches.values()),
            )
        for r in self.readers:
            if id(r) not in held:
                r.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def send(
    source_list: Any = None, sink_list: Any = None, observe_list: Any = None, config_dict: Any = None, **rb_info: Any
) -> None:
    """Worker function (``RB_assign: {RB_x: read}``): the buffer's events to receivers on other hosts.

    Returns when the local run has ended, every event was acknowledged by a receiver
    and END was told to each."""
    if not source_list or len(source_list) != 1 or sink_list:
        raise NetError(f"send reads exactly one buffer and writes none; got RB_assign {rb_info}")
    with Sender(source_list[0], config_dict) as tx:
        logger.info("sender %s on %s (session %x)", tx.cfg.name, ", ".join(tx.endpoints), tx.session)
        tx.run()


send.check_config = function_checker("send")
