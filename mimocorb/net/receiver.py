"""The receiving end of a link: events from senders on other hosts into a local buffer.

Two threads. The network thread (:class:`_ReceiverNode`) owns the sockets: handshake,
heartbeats, numbering, acknowledgements; it hands each DATA message (its frames, not
copied) to the main thread over an ``inproc`` pair. The main thread writes the events
into the buffer, consecutive slots at a time with their metadata, journals the claimed slots
before publishing them (:mod:`mimocorb.net.journal`), and asks for the acknowledgement
once a batch is published. So a full buffer holds back only the main thread: the
network thread still answers heartbeats, the senders see a live receiver whose window
is full, and back-pressure reaches the source on the other host.

De-duplication: per sender session and batch, how many events of it (a prefix) are
published; what the sender resends is skipped up to there and acknowledged again.
Records below a sender's ``low`` mark are forgotten (never sent again).
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import sys
import threading
import time
from typing import Any, Optional

import numpy as np
import zmq

from mimocorb.mimo_buffer import METADATA_DTYPE, Writer
from mimocorb.net.config import LinkConfig, check_config, function_checker
from mimocorb.net.journal import Journal, journal_path
from mimocorb.net.link import Node, Peer, new_session
from mimocorb.net.protocol import (
    BYE,
    DATA,
    END,
    END_BODY,
    HB,
    RESYNC,
    WIRE_METADATA,
    Layout,
    NetError,
    ack,
    parse_data,
    parse_seq,
    seq_message,
    text_message,
)
from mimocorb.net.stats import LinkStats

logger = logging.getLogger(__name__)

_PAIR = struct.Struct("<QQQ")  # sender session, first, published (main -> network: acknowledge; one or more)
_ACKS_AT_ONCE = 64  # at most this many DATA messages acknowledged in one message to the network thread
_SID = struct.Struct("<Q")
_ACK, _BYE, _BYE_TO, _NEW, _GONE, _BACK, _ENDED = b"A", b"Y", b"T", b"N", b"G", b"K", b"E"
_LITTLE = sys.byteorder == "little"  # the wire metadata (little-endian) are the ring's as they are
_MAIN_POLL = 0.1  # seconds between two looks at the run state while no data comes
#: Tests only: ``before_publish:K`` or ``after_publish:K`` kills the receiver (SIGKILL) at that
#: point of its K-th batch -- the last event written but not published, or published but not
#: acknowledged.
FAULT_ENV = "MIMOCORB_NET_FAULT"


def _fault_point() -> tuple[str, int]:
    spec = os.environ.get(FAULT_ENV, "")
    point, _, k = spec.partition(":")
    return (point, int(k)) if k.isdigit() else ("", 0)


def _fault(point: str, fault: tuple[str, int], batches: int) -> None:
    if fault[0] == point and batches == fault[1]:
        os.kill(os.getpid(), signal.SIGKILL)


def default_window(payload: int) -> int:
    """Events a receiver takes unacknowledged: as many as fit 8 MiB, 64 to 8192."""
    return int(min(8192, max(64, (8 << 20) // max(payload, 1))))


class _ReceiverNode(Node):
    """The network thread's side (see the module notes)."""

    role = "receiver"

    def __init__(self, cfg: LinkConfig, layout: Layout, session: int, window: int, stats: LinkStats, pipe_addr: str):
        self.window = window
        self.stats = stats
        super().__init__(cfg, layout, session)
        self.pipe = self.ctx.socket(zmq.PAIR)
        self.pipe.bind(pipe_addr)
        self.poller.register(self.pipe, zmq.POLLIN)
        self.ended: set[int] = set()
        self.stop = False

    def hello_window(self) -> int:
        return self.window

    def close(self) -> None:
        self.pipe.close(0)
        super().close()

    def to_main(self, parts: list) -> None:
        self.pipe.send_multipart(parts, copy=False)  # inproc: hands the frames over, never blocks for long

    def on_session(self, peer: Peer, again: bool) -> None:
        self.stats.peers[peer.name] = "up"
        if not again:
            self.to_main([_NEW, _SID.pack(peer.session)])
        elif peer.session in self.ended:
            self.send_peer(peer, text_message(BYE, "ended"))

    def on_lost(self, peer: Peer) -> None:
        self.stats.peers[peer.name] = "lost"
        self.to_main([_GONE, _SID.pack(peer.session)])

    def on_back(self, peer: Peer) -> None:
        self.stats.peers[peer.name] = "up"
        self.to_main([_BACK, _SID.pack(peer.session)])

    def on_message(self, peer: Peer, kind: bytes, frames: list) -> None:
        if kind == DATA:
            dseq = parse_data(frames, self.layout.payload_bytes)[0]
            self._check_seq(peer, dseq)
            self.stats.add("bytes", len(frames[3]))
            self.to_main([DATA, _SID.pack(peer.session), *frames[1:]])
        elif kind == HB:
            last = parse_seq(frames)
            if last > peer.in_seq:  # DATA at the tail was lost with a broken connection
                self._resync(peer, last)
        elif kind == END:
            dseq, total = END_BODY.unpack(bytes(frames[1]))
            peer.in_seq = max(peer.in_seq, dseq)
            logger.info("receiver %s: %s ended its stream after %d events", self.cfg.name, peer.name, total)
            if peer.session not in self.ended:
                self.ended.add(peer.session)
                self.to_main([_ENDED, _SID.pack(peer.session)])  # after its DATA: the pair keeps the order
            else:
                self.send_peer(peer, text_message(BYE, "ended"))

    def _check_seq(self, peer: Peer, dseq: int) -> None:
        if dseq != peer.in_seq + 1:
            self._resync(peer, dseq)
        else:
            peer.in_seq = dseq

    def _resync(self, peer: Peer, seen: int) -> None:
        self.counts["gaps"] += 1
        logger.info(
            "receiver %s: messages from %s lost (expected %d, saw %d): asking for them again",
            self.cfg.name,
            peer.name,
            peer.in_seq + 1,
            seen,
        )
        self.send_peer(peer, seq_message(RESYNC, peer.in_seq))
        peer.in_seq = seen

    def on_local(self, sock: zmq.Socket) -> int:
        """Acknowledgements and BYE from the main thread, grouped per sender."""
        acks: dict[int, list] = {}
        n = 0
        while n == 0 or sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:  # see Node.poll: no zmq.Again to end it
            try:
                parts = sock.recv_multipart(flags=zmq.NOBLOCK)
            except zmq.Again:
                break
            n += 1
            if parts[0] == _ACK:
                for sid, first, published in _PAIR.iter_unpack(parts[1]):
                    acks.setdefault(sid, []).append((first, published))
            elif parts[0] == _BYE_TO:  # a sender's stream ended and everything of it is acknowledged
                self._flush_acks(acks)
                acks = {}
                peer = self.peers.get(_SID.unpack(parts[1])[0])
                if peer is not None:
                    self.send_peer(peer, text_message(BYE, "ended"))
            elif parts[0] == _BYE:
                self._flush_acks(acks)
                acks = {}
                for p in list(self.peers.values()):
                    self.send_peer(p, text_message(BYE, parts[1].decode()))
                self.stop = True
        self._flush_acks(acks)
        return n

    def _flush_acks(self, acks: dict[int, list]) -> None:
        for sid, entries in acks.items():
            peer = self.peers.get(sid)
            if peer is None:
                continue  # gone: it sends the batch again when it returns
            peer.out_seq += 1
            self.send_peer(peer, ack(peer.out_seq, entries))
            self.stats.add("acked", sum(p for _, p in entries))

    def serve(self, failure: list) -> None:
        """The network thread: until the main thread says BYE (or the link fails)."""
        try:
            while not self.stop:
                self.poll(min(0.05, self.cfg.heartbeat / 2))
                self.tick()
                self.stats.counts["reconnects"] = self.counts["reconnects"]
                self.stats.counts["refused"] = self.counts["refused"]
                self.stats.maybe_write()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, raised there
            failure.append(exc)
            try:
                self.to_main([b"X"])
            except zmq.ZMQError:
                pass


class Receiver:
    """Receive events from one or more senders into a buffer.

    Parameters
    ----------
    sink : dict
        Setup dict of a writer of the local buffer (``NewBuffer.new_writer()``).
    config : dict or LinkConfig
        The configuration (keys in :mod:`mimocorb.net.config`).

    Notes
    -----
    Use :meth:`run` (returns why it ended: ``"end"`` every sender ended its stream,
    ``"lost"`` the senders were lost and ``on_sender_lost`` is ``end``, ``"stopped"``
    the local run is ending); :meth:`stats` gives the counters.
    """

    def __init__(self, sink: dict, config: Any):
        self.cfg = config if isinstance(config, LinkConfig) else check_config("receiver", config, "receive config")
        self.layout = Layout.from_setup(sink)
        self.writer = Writer(sink)
        self.nslots = self.writer.number_of_slots
        self.window = int(self.cfg.extra.get("window", default_window(self.layout.payload_bytes)))
        self.journal: Optional[Journal] = None
        self.published: dict[tuple[int, int], int] = {}  # (sender, batch first) -> events published
        session = new_session()
        if self.cfg.extra.get("journal", True) and self.cfg.run_folder is not None:
            self.journal = Journal(
                journal_path(self.cfg.run_folder, self.cfg.name), sink["token"], max(2 * self.window, 64)
            )
            session = self.journal.session
            self.published = self.journal.recover(self.writer)
        self.link_stats = LinkStats(
            "receiver", self.cfg.name, str(sink.get("name")), self.cfg.run_folder, self.cfg.stats_interval
        )
        # slots claimed at once: a claim's journal entries must fit the journal with room to spare
        self._claim_max = max(1, self.journal.entries // 2) if self.journal is not None else self.nslots
        self._fault = _fault_point()
        self._batches = 0
        pipe_addr = f"inproc://mimocorb-net-receiver-{id(self):x}"
        self.node = _ReceiverNode(self.cfg, self.layout, session, self.window, self.link_stats, pipe_addr)
        self.pipe = self.node.ctx.socket(zmq.PAIR)
        self.pipe.connect(pipe_addr)
        self._acks: list[bytes] = []  # _PAIR records of published DATA messages not yet handed over
        self._failure: list = []
        self._thread: Optional[threading.Thread] = None
        self.endpoints = self.node.endpoints

    # -- the main thread --------------------------------------------------------
    def run(self) -> str:
        """Receive until the senders end, are lost (``on_sender_lost: end``) or the run ends."""
        self._thread = threading.Thread(
            target=self.node.serve, args=(self._failure,), name="mimocorb-net-rx", daemon=True
        )
        self._thread.start()
        self.link_stats.state = "running"
        seen: set[int] = set()
        ended: set[int] = set()
        lost: set[int] = set()
        want = self.cfg.extra.get("senders")
        end_on_loss = self.cfg.extra.get("on_sender_lost", "wait") == "end"
        reason = "stopped"
        try:
            while True:
                if self._failure:
                    raise self._failure[0]
                if not self.writer.active:
                    break
                if self._acks and (len(self._acks) >= _ACKS_AT_ONCE or not self.pipe.poll(0)):
                    self._flush_acks()  # nothing more at once: acknowledge what is published, then wait
                if not self.pipe.poll(int(_MAIN_POLL * 1000)):
                    continue
                parts = self.pipe.recv_multipart(copy=False)
                kind = parts[0].bytes
                if kind == DATA:
                    self._write(parts)
                    continue
                if kind == b"X":
                    continue  # the failure is raised at the top
                sid = _SID.unpack(parts[1].bytes)[0]
                if kind == _NEW:
                    seen.add(sid)
                elif kind == _ENDED:
                    ended.add(sid)
                    self._flush_acks()
                    self.pipe.send_multipart([_BYE_TO, parts[1].bytes])  # after its acknowledgements
                elif kind == _GONE:
                    lost.add(sid)
                elif kind == _BACK:
                    lost.discard(sid)
                if seen and (ended >= seen if want is None else len(ended) >= want):
                    reason = "end"
                    break
                if end_on_loss and seen and seen <= ended | lost:
                    logger.warning(
                        "receiver %s: every sender is gone (lost for %.1f s): ending",
                        self.cfg.name,
                        self.cfg.peer_timeout,
                    )
                    reason = "lost"
                    break
        finally:
            self._finish(reason)
        return reason

    def _write(self, parts: list) -> None:
        """Publish the events of one DATA message not published yet; ask for its acknowledgement."""
        sid = _SID.unpack(parts[1].bytes)[0]
        _, first, low, n, stride = parse_data(parts[1:], self.layout.payload_bytes)
        if low:
            self._forget(sid, low)
        key = (sid, first)
        done = self.published.get(key, 0)
        self.link_stats.add("received", n)
        if done < n:
            if self.writer.paused:
                self._flush_acks()  # what is published is acknowledged before the pause holds back the rest
            while self.writer.paused and self.writer.active:  # pause reaches the senders as back-pressure
                time.sleep(0.02)
            self.link_stats.add("duplicates", done)
            done = self._publish(sid, first, n, stride, done, parts[3], parts[4])
        else:
            self.link_stats.add("duplicates", n)
        self._acks.append(_PAIR.pack(sid, first, done))  # sent before the main thread waits (run)

    def _flush_acks(self) -> None:
        """Hand the acknowledgements of what was published to the network thread (one message)."""
        if self._acks:
            self.pipe.send_multipart([_ACK, b"".join(self._acks)])
            self._acks = []

    def _publish(self, sid: int, first: int, n: int, stride: int, done: int, meta: Any, data: Any) -> int:
        """Events ``done .. n-1`` of a DATA message into the buffer, a claim of consecutive slots at a
        time: one copy of the payloads, the metadata in one call, journaled before publishing."""
        w, journal, key = self.writer, self.journal, (sid, first)
        payload = self.layout.payload_bytes
        m = np.frombuffer(meta.buffer, dtype=WIRE_METADATA)
        if not _LITTLE:
            m = m.astype(METADATA_DTYPE)  # the ring keeps its metadata in the host's byte order
        raw = np.frombuffer(data.buffer, dtype=np.uint8)
        if stride == payload:
            rows = raw.reshape(n, payload)
        else:
            rows = np.lib.stride_tricks.as_strided(raw, shape=(n, payload), strides=(stride, 1), writeable=False)
        i = done
        try:
            while i < n:
                # publishes nothing (what was held is published), claims up to the ring's end
                v = w.get_new_buffers(min(n - i, self._claim_max))
                k = len(v)
                if journal is not None:
                    journal.record(w.held_seq, k, sid, first, first + i)  # before publishing: see journal
                v.view(np.uint8)[:] = rows[i : i + k]
                w.set_metadata_many(m[i : i + k])
                last = i + k == n
                if last:
                    self._batches += 1
                    if self._fault[0]:
                        _fault("before_publish", self._fault, self._batches)
                w.process_buffer()
                i += k
                if last and self._fault[0]:
                    _fault("after_publish", self._fault, self._batches)
        except SystemExit:  # the run ends: events done..i-1 are published, a claim was given back
            self.published[key] = i
            self.link_stats.add("published", i - done)
            raise
        self.published[key] = n
        self.link_stats.add("published", n - done)
        return n

    def _forget(self, sid: int, low: int) -> None:
        if len(self.published) > 64:
            self.published = {k: v for k, v in self.published.items() if k[0] != sid or k[1] + v > low}

    def _finish(self, reason: str) -> None:
        """Acknowledge what is published, say BYE, stop the network thread (bounded)."""
        self.link_stats.state = f"ended: {reason}"
        t = self._thread
        if t is not None and t.is_alive():
            try:
                self._flush_acks()
                self.pipe.send_multipart([_BYE, reason.encode()])
            except zmq.ZMQError:
                pass
            t.join(2.0)
            if t.is_alive():
                self.node.stop = True
                t.join(2.0)
        self.link_stats.counts["reconnects"] = self.node.counts["reconnects"]
        self.link_stats.maybe_write(force=True)

    def stats(self) -> dict:
        """The link's counters (see :mod:`mimocorb.net.stats`)."""
        return self.link_stats.snapshot()

    def close(self) -> None:
        """Close sockets, journal and writer (the writer gives back a slot it holds unpublished)."""
        if self._thread is not None and self._thread.is_alive():
            self.node.stop = True
            self._thread.join(2.0)
        self.pipe.close(0)
        self.node.close()
        if self.journal is not None:
            self.journal.close()
        self.writer.close()

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def receive(
    source_list: Any = None, sink_list: Any = None, observe_list: Any = None, config_dict: Any = None, **rb_info: Any
) -> None:
    """Worker function (``RB_assign: {RB_x: write}``): events from senders into the buffer.

    Returns when every sender it has seen ended its stream (or ``senders`` of them), when
    the senders are lost and ``on_sender_lost`` is ``end``, or when the local run ends.
    """
    if not sink_list or len(sink_list) != 1 or source_list:
        raise NetError(f"receive writes exactly one buffer and reads none; got RB_assign {rb_info}")
    with Receiver(sink_list[0], config_dict) as rx:
        logger.info("receiver %s on %s (session %x)", rx.cfg.name, ", ".join(rx.endpoints), rx.node.session)
        rx.run()


receive.check_config = function_checker("receive")
