"""The observer stream: the newest events of a buffer for remote displays.

A publisher is an :class:`~mimocorb.mimo_buffer.Observer` of a local buffer (it takes
part in no gating, so it never holds anything back) that sends a copy of the newest
event at most every ``interval`` seconds on a PUB socket. A subscriber (SUB, with
``ZMQ_CONFLATE``: only the newest message is kept) writes what arrives into a local
buffer, for a display there. Nothing waits for anyone: a slow link or subscriber
drops messages, and the subscriber counts them (``dropped``: gaps in the publisher's
numbering).

Each message is one frame: a header ``<4sHQqddI`` (``b"MCBO"``, protocol version,
number, counter, timestamp, deadtime, length of the layout text), the layout as JSON,
the event's bytes. A header whose number is 0 ends the stream (the publisher's run
ended): the subscriber returns. A subscriber refuses (:class:`NetError`, naming both)
a stream of another layout or version; other garbage is counted and logged.
"""

from __future__ import annotations

import json
import logging
import struct
from typing import Any, Optional

import numpy as np
import zmq

from mimocorb.mimo_buffer import Observer, Writer
from mimocorb.net.config import LinkConfig, check_config, function_checker
from mimocorb.net.link import open_socket
from mimocorb.net.protocol import VERSION, Layout, NetError
from mimocorb.net.stats import LinkStats

logger = logging.getLogger(__name__)

HEADER = struct.Struct("<4sHQqddI")
MAGIC = b"MCBO"
_POLL = 0.1


class Publisher:
    """Send the newest events of a buffer (observer setup dict) on a PUB socket."""

    def __init__(self, observed: dict, config: Any):
        self.cfg = config if isinstance(config, LinkConfig) else check_config("publisher", config, "publish config")
        self.layout = Layout.from_setup(observed)
        interval = self.cfg.extra.get("interval")
        self.observer = Observer(dict(observed, interval=interval) if interval is not None else observed)
        self.stats_ = LinkStats(
            "publisher", self.cfg.name, str(observed.get("name")), self.cfg.run_folder, self.cfg.stats_interval
        )
        self._layout_text = json.dumps(self.layout.as_json()).encode()
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.PUB)
        self.sock.setsockopt(zmq.SNDHWM, 4)  # a slow subscriber loses messages, never holds us
        try:
            self.auth = open_socket(
                self.ctx, self.sock, self.cfg, "publisher", self.cfg.connect[0] if self.cfg.connect else None
            )
        except BaseException:
            self.close()
            raise
        self.seq = 0

    def _frame(self, seq: int, counter: int, ts: float, dt: float, data: Optional[np.ndarray]) -> bytes:
        head = HEADER.pack(MAGIC, VERSION, seq, counter, ts, dt, len(self._layout_text))
        return head + self._layout_text + (b"" if data is None else data.tobytes())

    def run(self) -> None:
        """Publish until the observed buffer's run ends, then send the end of the stream."""
        self.stats_.state = "running"
        while self.observer.active:
            got = self.observer.get(timeout=_POLL)
            self.stats_.maybe_write()
            if got is None:
                continue
            data, meta = got
            self.seq += 1
            c, ts, dt = meta[0].tolist()
            try:
                self.sock.send(self._frame(self.seq, c, ts, dt, data), flags=zmq.NOBLOCK)
                self.stats_.add("sent")
                self.stats_.add("bytes", data.nbytes)
            except zmq.Again:
                self.stats_.add("dropped")
        try:
            self.sock.send(self._frame(0, 0, 0.0, 0.0, None), flags=zmq.NOBLOCK)
        except zmq.Again:
            pass
        self.stats_.state = "ended"
        self.stats_.maybe_write(force=True)

    def stats(self) -> dict:
        return self.stats_.snapshot()

    def close(self) -> None:
        self.sock.close(0)
        if getattr(self, "auth", None) is not None:
            self.auth.stop()
        self.ctx.term()
        self.observer.close()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Subscriber:
    """Write the events of an observer stream into a local buffer (writer setup dict)."""

    def __init__(self, sink: dict, config: Any):
        self.cfg = config if isinstance(config, LinkConfig) else check_config("subscriber", config, "subscribe config")
        self.layout = Layout.from_setup(sink)
        self._layout_text = json.dumps(self.layout.as_json()).encode()
        self.writer = Writer(sink)
        self.stats_ = LinkStats(
            "subscriber", self.cfg.name, str(sink.get("name")), self.cfg.run_folder, self.cfg.stats_interval
        )
        self.ctx = zmq.Context()
        self.sock = self.ctx.socket(zmq.SUB)
        self.sock.setsockopt(zmq.CONFLATE, 1)  # only the newest message waits for us
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        try:
            self.auth = open_socket(
                self.ctx, self.sock, self.cfg, "subscriber", self.cfg.connect[0] if self.cfg.connect else None
            )
        except BaseException:
            self.close()
            raise
        self.last = 0

    def _parse(self, msg: bytes) -> Optional[tuple]:
        """(seq, counter, ts, dt, payload) of a message, None for one that is not of this stream."""
        if len(msg) < HEADER.size or msg[:4] != MAGIC:
            self._garbage(f"not an observer-stream message: {msg[:48]!r} ({len(msg)} bytes)")
            return None
        magic, version, seq, c, ts, dt, n = HEADER.unpack_from(msg)
        if version != VERSION:
            raise NetError(f"the publisher speaks protocol version {version}, this subscriber version {VERSION}")
        text = msg[HEADER.size : HEADER.size + n]
        if text != self._layout_text:
            raise NetError(
                f"event layouts differ: this subscriber's buffer has {self.layout}, "
                f"the publisher's {text.decode(errors='replace')}"
            )
        payload = msg[HEADER.size + n :]
        if seq and len(payload) != self.layout.payload_bytes:
            self._garbage(f"an event of {len(payload)} bytes, expected {self.layout.payload_bytes}")
            return None
        return seq, c, ts, dt, payload

    def _garbage(self, why: str) -> None:
        self.stats_.add("refused")
        if self.stats_.counts["refused"] <= 3:
            logger.warning("subscriber %s: refused %s", self.cfg.name, why)

    def run(self) -> None:
        """Write the newest events until the publisher ends its stream or the local run ends."""
        self.stats_.state = "running"
        while self.writer.active:
            self.stats_.maybe_write()
            if not self.sock.poll(int(_POLL * 1000)):
                continue
            got = self._parse(self.sock.recv())
            if got is None:
                continue
            seq, c, ts, dt, payload = got
            if seq == 0:
                logger.info("subscriber %s: the publisher ended its stream", self.cfg.name)
                break
            if self.last and seq > self.last + 1:
                self.stats_.add("dropped", seq - self.last - 1)
            elif seq <= self.last:  # the publisher started again: a new numbering
                logger.info("subscriber %s: the publisher started again", self.cfg.name)
            self.last = seq
            self.writer.put(payload, c, ts, dt)
            self.stats_.add("published")
            self.stats_.add("bytes", len(payload))
        self.stats_.state = "ended"
        self.stats_.maybe_write(force=True)

    def stats(self) -> dict:
        return self.stats_.snapshot()

    def close(self) -> None:
        self.sock.close(0)
        if getattr(self, "auth", None) is not None:
            self.auth.stop()
        self.ctx.term()
        self.writer.close()

    def __enter__(self) -> Subscriber:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def publish(
    source_list: Any = None, sink_list: Any = None, observe_list: Any = None, config_dict: Any = None, **rb_info: Any
) -> None:
    """Worker function (``RB_assign: {RB_x: observe}``): the newest events on a PUB socket."""
    if not observe_list or len(observe_list) != 1 or source_list or sink_list:
        raise NetError(f"publish observes exactly one buffer and reads or writes none; got RB_assign {rb_info}")
    pub = Publisher(observe_list[0], config_dict)
    try:
        pub.run()
    finally:
        pub.close()


def subscribe(
    source_list: Any = None, sink_list: Any = None, observe_list: Any = None, config_dict: Any = None, **rb_info: Any
) -> None:
    """Worker function (``RB_assign: {RB_x: write}``): an observer stream into the buffer."""
    if not sink_list or len(sink_list) != 1 or source_list:
        raise NetError(f"subscribe writes exactly one buffer and reads none; got RB_assign {rb_info}")
    sub = Subscriber(sink_list[0], config_dict)
    try:
        sub.run()
    finally:
        sub.close()


publish.check_config = function_checker("publish")
subscribe.check_config = function_checker("subscribe")
