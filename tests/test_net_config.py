"""``check_config(config_dict, sink_setups)`` of the bridge's packaged functions: what the setup
loader calls before anything starts; every bad key is named with its value and what is expected."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("zmq")

from mimocorb.mimo_buffer import NewBuffer  # noqa: E402
from mimocorb.net import make_keys, publish, receive, send, subscribe  # noqa: E402


@pytest.fixture
def sink():
    with NewBuffer(4, 2, np.int64, name="RB_1") as b:
        yield [b.new_writer()]


def test_good_configurations_pass(sink, tmp_path):
    pub, sec = make_keys(tmp_path / "keys", "front")
    assert send.check_config({"bind": 5555}, None) is None
    assert send.check_config({"bind": "tcp://*:5555", "batch": 64, "curve": {"key": str(sec)}}, []) is None
    assert receive.check_config({"connect": ["a:1", "tcp://b:2"], "on_sender_lost": "end"}, sink) is None
    curve = {"key": str(sec), "server_key": str(pub)}
    assert receive.check_config({"connect": "host:5555", "curve": curve, "window": 128}, sink) is None
    assert publish.check_config({"bind": 5556}, []) is None
    assert subscribe.check_config({"connect": "host:5556"}, sink) is None


@pytest.mark.parametrize(
    "function, config, expected",
    [
        (send, {"bind": "nonsense"}, "send config: bind: expected a port (loopback only) or a ZeroMQ endpoint"),
        (send, {"bind": 70000}, "send config: bind: expected a port 1..65535, got 70000"),
        (
            send,
            {"bind": 5555, "connect": "h:1"},
            "expected exactly one of 'bind' and 'connect', got ['bind', 'connect']",
        ),
        (send, {}, "expected exactly one of 'bind' and 'connect', got neither"),
        (send, {"bind": 5555, "inflight": 0}, "send config: inflight: expected an integer >= 1, got 0"),
        (send, {"bind": 5555, "window": 8}, "send config: unknown keys ['window']"),
        (receive, {"connect": "hostonly"}, "receive config: connect: expected 'host:port' or a ZeroMQ endpoint"),
        (
            receive,
            {"connect": "h:1", "on_sender_lost": "maybe"},
            "on_sender_lost: expected 'wait' or 'end', got 'maybe'",
        ),
        (
            receive,
            {"connect": "h:1", "curve": {"key": "nokey.key_secret", "server_key": "x.key"}},
            "curve.key: file not found",
        ),
        (receive, {"connect": "h:1", "curve": {"key": "k"}}, "curve.server_key: missing"),
        (receive, {"connect": "h:1", "journal": "yes"}, "journal: expected true or false, got 'yes'"),
    ],
)
def test_bad_key_is_named(sink, function, config, expected):
    with pytest.raises(ValueError) as err:
        function.check_config(config, sink if function is receive else [])
    assert expected in str(err.value), str(err.value)


def test_buffer_assignment_is_checked(sink):
    with pytest.raises(
        ValueError, match=r"send: RB_assign: expected exactly one buffer in mode 'read' and none written"
    ):
        send.check_config({"bind": 5555}, sink)
    with pytest.raises(ValueError, match=r"receive: RB_assign: expected exactly one buffer in mode 'write', got 0"):
        receive.check_config({"connect": "h:1"}, [])
    with pytest.raises(ValueError, match=r"subscribe: RB_assign: .* got 0 buffers to write"):
        subscribe.check_config({"connect": "h:1"}, None)


def test_every_problem_at_once(sink):
    with pytest.raises(ValueError) as err:
        receive.check_config({"connect": "hostonly", "window": 0, "colour": "blue"}, sink)
    text = str(err.value)
    assert "connect: expected" in text and "window: expected an integer >= 1, got 0" in text and "'colour'" in text


def test_keys_command_makes_a_pair_and_never_overwrites(tmp_path):
    import stat

    import zmq.auth

    from tests.daq_helpers import run_cli

    res = run_cli(["keys", tmp_path / "keys", "--name", "front"], timeout=30)
    assert res.returncode == 0, res.stdout + res.stderr
    public, secret = tmp_path / "keys" / "front.key", tmp_path / "keys" / "front.key_secret"
    assert f"public key {public}" in res.stdout and f"secret key {secret}" in res.stdout
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    pub, sec = zmq.auth.load_certificate(secret)
    assert zmq.auth.load_certificate(public) == (pub, None) and len(pub) == 40 and sec is not None
    again = run_cli(["keys", tmp_path / "keys", "--name", "front"], timeout=30)
    assert again.returncode == 1 and "never overwritten" in again.stderr
    assert zmq.auth.load_certificate(secret) == (pub, sec)
