"""The bridge on one host over loopback TCP: exactly once, work sharing, fan-in, a receiver
killed and restarted (its journal), refusals, the end of the stream, a lost sender."""

from __future__ import annotations

import contextlib
import logging
import socket
import time

import numpy as np
import pytest

zmq = pytest.importorskip("zmq")

from mimocorb.net import ConfigError, NetError, Receiver, Sender, check_config  # noqa: E402
from mimocorb.net.protocol import ERROR, HELLO, Layout, hello  # noqa: E402
from tests.net_harness import Harness, check_exactly_once, record, run_receiver, run_sender, source  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def h():
    harness = Harness()
    yield harness
    harness.close()


def fast(cfg: dict) -> dict:
    return {"heartbeat": 0.1, "peer_timeout": 0.5, **cfg}


def one_to_one(h: Harness, tmp_path, n: int, fault: str = "", values: int = 4, slots: int = 256):
    port = free_port()
    a, b = h.buffer(values=values, slots=slots), h.buffer(values=values, slots=slots)
    h.start(record, b.new_reader_group(), h.q)
    rx_cfg = fast({"connect": f"127.0.0.1:{port}", "name": "rx", "directory_prefix": str(tmp_path) + "/"})
    rx = h.start(run_receiver, b.new_writer(), rx_cfg, h.q, fault)
    tx = h.start(run_sender, a.new_reader_group(), fast({"bind": port, "name": "tx", "batch": 64}), h.q)
    src = h.start(source, a.new_writer(), n)
    return a, b, rx, tx, src, rx_cfg


def test_one_to_one_every_event_once_in_order_with_metadata(h, tmp_path):
    n = 20000
    a, b, rx, tx, src, _ = one_to_one(h, tmp_path, n)
    assert h.join(src, 30) == 0
    assert a.shutdown(30)
    assert h.join(tx, 30) == 0  # END after the last acknowledgement
    assert h.join(rx, 30) == 0  # returns after END
    b.shutdown(10)
    res = h.results(3)
    rows = next(r for r in res if isinstance(r, list))
    check_exactly_once(rows, {(i, 0) for i in range(n)})
    stats = {r[0]: r[-1] for r in res if isinstance(r, tuple)}
    assert stats["sender"]["sent"] == stats["sender"]["acked"] == n and stats["sender"]["in_flight"] == 0
    assert stats["receiver"]["published"] == n and stats["receiver"]["duplicates"] == 0
    assert a.stats()["groups"][0]["consumed"] == n and a.stats()["lost"] == 0


def test_big_events_are_sent_from_the_slots(h, tmp_path):
    """16 KiB events (zero-copy frames, slot stride equal to the payload) arrive intact."""
    n, values = 3000, 2048
    a, b, rx, tx, src, _ = one_to_one(h, tmp_path, n, values=values, slots=64)
    assert h.join(src, 60) == 0
    assert a.shutdown(60)
    assert h.join(tx, 30) == 0 and h.join(rx, 30) == 0
    b.shutdown(10)
    rows = next(r for r in h.results(3) if isinstance(r, list))
    check_exactly_once(rows, {(i, 0) for i in range(n)})


@pytest.mark.parametrize("point", ["after_publish", "before_publish"])
def test_receiver_killed_and_restarted_nothing_lost_or_doubled(h, tmp_path, point):
    """The receiving worker is killed (SIGKILL) with its 5th batch published but not acknowledged,
    or written but not published, and started again (by the test: the runner has no restart
    policy yet) with the same configuration: its journal tells what it published."""
    n = 5000
    a, b, rx, tx, src, rx_cfg = one_to_one(h, tmp_path, n, fault=f"{point}:5")
    rx.join(30)
    assert rx.exitcode == -9, "the fault point was not reached"
    rx2 = h.start(run_receiver, b.new_writer(), rx_cfg, h.q)
    assert h.join(src, 30) == 0
    assert a.shutdown(30)
    assert h.join(tx, 30) == 0 and h.join(rx2, 30) == 0
    b.shutdown(10)
    res = h.results(3)
    rows = next(r for r in res if isinstance(r, list))
    check_exactly_once(rows, {(i, 0) for i in range(n)})
    stats = {r[0]: r[-1] for r in res if isinstance(r, tuple)}
    assert stats["sender"]["resent"] > 0
    if point == "after_publish":
        assert stats["receiver"]["duplicates"] > 0  # the published batch came again and was skipped
        assert b.stats()["abandoned_by_writers"] == 0
    else:  # the slot being written stays behind, counted abandoned; the event came again
        assert b.stats()["abandoned_by_writers"] == 1


def test_work_sharing_two_receivers(h, tmp_path):
    n, port = 20000, free_port()
    a, b1, b2 = h.buffer(), h.buffer(), h.buffer()
    for b in (b1, b2):
        h.start(record, b.new_reader_group(), h.q)
    rxs = [
        h.start(run_receiver, b.new_writer(), fast({"connect": f"127.0.0.1:{port}", "name": f"rx{i}", "window": 256}))
        for i, b in enumerate((b1, b2))
    ]
    tx = h.start(run_sender, a.new_reader_group(), fast({"bind": port, "batch": 32}))
    time.sleep(0.5)  # both receivers connected before the events come
    src = h.start(source, a.new_writer(), n)
    assert h.join(src, 30) == 0 and a.shutdown(30)
    assert h.join(tx, 30) == 0
    for p in rxs:
        assert h.join(p, 30) == 0
    b1.shutdown(10)
    b2.shutdown(10)
    r1, r2 = h.results(2)
    assert r1 and r2, "each receiver got a share"
    check_exactly_once(r1 + r2, {(i, 0) for i in range(n)}, ordered=False)
    for rows in (r1, r2):
        seqs = [x[0] for x in rows]
        assert seqs == sorted(seqs)  # each receiver's share in stream order


def test_fan_in_two_senders_into_one_receiver(h, tmp_path):
    n, port = 10000, free_port()
    a1, a2, b = h.buffer(), h.buffer(), h.buffer()
    h.start(record, b.new_reader_group(), h.q)
    rx = h.start(run_receiver, b.new_writer(), fast({"bind": port, "senders": 2}))
    txs = [h.start(run_sender, a.new_reader_group(), fast({"connect": f"127.0.0.1:{port}"})) for a in (a1, a2)]
    srcs = [h.start(source, a.new_writer(), n, tag) for tag, a in enumerate((a1, a2))]
    for p, a in zip(srcs, (a1, a2)):
        assert h.join(p, 30) == 0 and a.shutdown(30)
    for p in txs:
        assert h.join(p, 30) == 0
    assert h.join(rx, 30) == 0  # after the END of both senders
    b.shutdown(10)
    rows = h.get()
    check_exactly_once(rows, {(i, t) for i in range(n) for t in (0, 1)})


def test_full_remote_buffer_holds_back_the_source(h, tmp_path):
    """Paused receiving buffer: nothing is dropped; the link and the source buffer fill and wait."""
    port = free_port()
    a, b = h.buffer(slots=64), h.buffer(slots=64)
    b.pause()
    h.start(record, b.new_reader_group(), h.q)
    rx = h.start(run_receiver, b.new_writer(), fast({"connect": f"127.0.0.1:{port}", "window": 32}))
    tx = h.start(run_sender, a.new_reader_group(), fast({"bind": port, "batch": 8}))
    src = h.start(source, a.new_writer(), 1000)
    deadline = time.monotonic() + 20
    while a.stats()["filled"] < 64 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)
    assert a.stats()["filled"] == 64 and a.stats()["published"] == 64  # the source waits
    assert b.stats()["published"] == 0
    b.resume()
    assert h.join(src, 30) == 0 and a.shutdown(30)
    assert h.join(tx, 30) == 0 and h.join(rx, 30) == 0
    b.shutdown(10)
    check_exactly_once(h.get(), {(i, 0) for i in range(1000)})


def test_receiver_notices_a_lost_sender_and_ends(h, tmp_path):
    port = free_port()
    a, b = h.buffer(), h.buffer()
    h.start(record, b.new_reader_group(), h.q)
    cfg = {"connect": f"127.0.0.1:{port}", "on_sender_lost": "end", "heartbeat": 0.5, "peer_timeout": 2.0}
    rx = h.start(run_receiver, b.new_writer(), cfg, h.q)
    tx = h.start(run_sender, a.new_reader_group(), {"bind": port})
    h.start(source, a.new_writer(), 100)
    deadline = time.monotonic() + 20
    while b.stats()["published"] < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    tx.kill()
    t_kill = time.monotonic()
    assert h.join(rx, 10) == 0
    assert time.monotonic() - t_kill < 3.0
    kind, why, _ = h.get()
    assert why == "lost"


def test_other_layout_is_refused_naming_both(h, tmp_path, caplog):
    port = free_port()
    a = h.buffer()
    b = h.buffer(dtype=np.float32)
    tx = h.start(run_sender, a.new_reader_group(), fast({"bind": port, "name": "tx"}))
    with Receiver(b.new_writer(), fast({"connect": f"127.0.0.1:{port}", "name": "rx"})) as rx:
        with pytest.raises(NetError) as err:
            rx.run()
    text = str(err.value)
    assert "refused" in text and "4 x <i8 (32 bytes" in text and "4 x <f4 (16 bytes" in text
    assert tx.is_alive()  # the bound side goes on
    # and serves a receiver of the right layout afterwards
    b2 = h.buffer()
    h.start(record, b2.new_reader_group(), h.q)
    rx2 = h.start(run_receiver, b2.new_writer(), fast({"connect": f"127.0.0.1:{port}"}))
    src = h.start(source, a.new_writer(), 500)
    assert h.join(src, 20) == 0 and a.shutdown(20)
    assert h.join(tx, 20) == 0 and h.join(rx2, 20) == 0
    b2.shutdown(10)
    check_exactly_once(h.get(), {(i, 0) for i in range(500)})


def test_garbage_and_other_versions_are_refused_and_nothing_breaks(h, tmp_path, caplog):
    port = free_port()
    a = h.buffer()
    lay = Layout.of(np.int64, 4)
    caplog.set_level(logging.WARNING)
    with Sender(a.new_reader_group(), fast({"bind": port, "name": "tx"})) as tx:
        ctx = zmq.Context()
        try:
            d = ctx.socket(zmq.DEALER)
            d.linger = 0
            d.connect(f"tcp://127.0.0.1:{port}")
            raw = socket.create_connection(("127.0.0.1", port))  # not even ZeroMQ
            raw.sendall(b"\x00\xffGARBAGE" * 100)
            newer = hello("receiver", "future", 7, lay, 0.5, 16)
            newer[1] = newer[1].replace(b'"version": 1', b'"version": 99')
            answers = []
            for msg in ([b"\x01garbage", b"x"], newer, [HELLO, b"{not json"]):
                d.send_multipart(msg)
                deadline = time.monotonic() + 5
                while not d.poll(10) and time.monotonic() < deadline:
                    tx.poll(0.01)
                answers.append(d.recv_multipart())
            raw.close()
        finally:
            ctx.destroy(0)
    assert [m[0] for m in answers] == [ERROR] * 3
    texts = [m[1].decode() for m in answers]
    assert "not a mimocorb-net message" in texts[0] and "b'\\x01garbage'" in texts[0]
    assert "protocol version 99 from the peer, this side speaks version 1" in texts[1]
    assert "not JSON" in texts[2]
    assert "refused a peer" in caplog.text


def test_curve_allows_known_keys_and_refuses_others(h, tmp_path, caplog):
    from mimocorb.net import make_keys

    server_pub, server_sec = make_keys(tmp_path / "keys", "analysis")
    client_pub, client_sec = make_keys(tmp_path / "keys", "frontend")
    _, stranger_sec = make_keys(tmp_path / "other", "stranger")
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / "frontend.key").write_bytes(client_pub.read_bytes())
    with pytest.raises(FileExistsError):
        make_keys(tmp_path / "keys", "analysis")
    port = free_port()
    a, b = h.buffer(), h.buffer()
    caplog.set_level(logging.WARNING)
    rx_cfg = fast({"bind": port, "curve": {"key": str(server_sec), "clients": str(allowed)}})
    with Receiver(b.new_writer(), rx_cfg) as rx:
        stranger = fast(
            {"connect": f"127.0.0.1:{port}", "curve": {"key": str(stranger_sec), "server_key": str(server_pub)}}
        )
        friend = fast(
            {"connect": f"127.0.0.1:{port}", "curve": {"key": str(client_sec), "server_key": str(server_pub)}}
        )
        with Sender(a.new_reader_group(), stranger) as s1, Sender(a.new_reader_group(), friend) as s2:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not (rx.node.peers and "refused a client" in caplog.text):
                for node in (rx.node, s1, s2):
                    node.poll(0.01)
                    node.tick()
            assert [p.name for p in rx.node.peers.values()] == [s2.cfg.name]  # the stranger never got in
            assert not s1.peers and s2.peers
    assert "refused a client" in caplog.text and "not among the allowed keys" in caplog.text


def test_bind_to_a_port_means_loopback_and_bad_keys_are_named(tmp_path):
    assert check_config("sender", {"bind": 5555}).bind == "tcp://127.0.0.1:5555"
    assert check_config("sender", {"bind": "tcp://*:5555"}).bind == "tcp://*:5555"
    assert check_config("receiver", {"connect": "host:7"}).connect == ["tcp://host:7"]
    with pytest.raises(ConfigError) as err:
        check_config(
            "receiver",
            {
                "bind": 5555,
                "connect": "x:1",
                "window": 0,
                "on_sender_lost": "maybe",
                "curve": {"key": "nope.key_secret"},
                "colour": 1,
            },
            "analysis.yaml: Fkt_1 config",
        )
    text = str(err.value)
    for part in (
        "analysis.yaml: Fkt_1 config: expected exactly one of 'bind' and 'connect'",
        "window: expected an integer >= 1, got 0",
        "on_sender_lost: expected 'wait' or 'end', got 'maybe'",
        "curve.key: file not found",
        "unknown keys ['colour']",
    ):
        assert part in text


def test_observer_stream_newest_events_never_holds_back_counts_drops(h, tmp_path):
    """A publisher observing a busy buffer, a subscriber writing into a display buffer: the
    source runs unhindered, the subscriber gets recent events in order and counts the ones it
    missed; the stream ends with the publisher's run. Another layout is refused."""
    import threading

    from mimocorb.mimo_buffer import Reader
    from mimocorb.net import Publisher, Subscriber

    port = free_port()
    a, b, bad = h.buffer(), h.buffer(slots=8), h.buffer(dtype=np.float32)
    h.start(record, a.new_reader_group(), h.q)  # the obligatory consumer of the source buffer
    reader = Reader(b.new_reader_group())
    rows: list = []
    stop = threading.Event()

    def display() -> None:
        while not stop.is_set():
            v = reader.get_timeout(0.05)
            if v is not None:
                rows.append((int(v[0]), reader.get_metadata()))

    with contextlib.ExitStack() as stack:
        wrong = stack.enter_context(Subscriber(bad.new_writer(), {"connect": f"127.0.0.1:{port}"}))
        pub = stack.enter_context(Publisher(a.new_observer(), {"bind": port, "interval": 0.001}))
        sub = stack.enter_context(Subscriber(b.new_writer(), {"connect": f"127.0.0.1:{port}"}))
        threads = [threading.Thread(target=f, daemon=True) for f in (pub.run, display)]
        for t in threads:
            t.start()
        src = h.start(source, a.new_writer(), 20000, 0, 4000.0)
        with pytest.raises(NetError, match="event layouts differ"):
            wrong.run()
        st = threading.Thread(target=sub.run, daemon=True)
        st.start()
        assert h.join(src, 30) == 0
        a.shutdown(10)
        threads[0].join(10)
        st.join(10)
        assert not st.is_alive() and not threads[0].is_alive()  # END of the stream ends the subscriber
        time.sleep(0.3)
        stop.set()
        threads[1].join(5)
    reader.close()
    stats = sub.stats()
    assert stats["published"] == len(rows) > 10
    seqs = [r[0] for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    for s, (c, ts, dt) in rows:
        assert (c, ts, dt) == (s * 3, 1000.0 + s, 0.5 * (s % 7))
    assert stats["dropped"] > 0 and stats["published"] + stats["dropped"] <= pub.stats()["sent"]
    assert len(h.get()) == 20000  # the obligatory consumer got everything
