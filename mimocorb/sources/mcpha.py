"""The oscilloscope of the Red Pitaya MCPHA server: the ``redpitaya_mcpha`` source.

The MCPHA server (the Red Pitaya notes' multichannel pulse-height analyser, used by
the Red Pitaya DAQ of the KIT lab courses) listens on TCP port 1001. Commands are 8
bytes, a little-endian uint64 ``code << 56 | channel << 52 | value``; the answers are
raw bytes (see :mod:`mimocorb.sources.simulators.mcpha_server` for the codes). One
event per trigger: reset and start the oscilloscope (codes 2, 19), poll the status
(code 11, 36 bytes; bit 0 of word 8 is set while it waits) and read the record (code
20, sent together with the next reset and start, so the oscilloscope is armed again
while the record travels): ``samples`` pairs of int16 samples of IN1 and IN2, interleaved. The samples are
published as they come (integer fields: ADC counts) or in mV (float fields:
counts x ``mv_per_count``). The loop, reconnects and metadata are
:mod:`mimocorb.sources.acquisition`'s; the server reports no trigger time, so the
timestamp is the host's time when the completed record was seen.
"""

from __future__ import annotations

import logging
import socket
import struct
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

from mimocorb.sources.acquisition import (
    SETTINGS_KEYS,
    AcquisitionSettings,
    LinkLost,
    add_settings_keys,
    run_acquisition,
)
from mimocorb.sources.config_check import (
    ConfigReader,
    SinkLayout,
    channel_map,
    check_samples,
    field_kind,
    sink_layout,
    sink_name,
    trigger_source,
)

logger = logging.getLogger(__name__)

NAME = "redpitaya_mcpha"
BASE_SAMPLE_TIME_NS = 8.0  # 125 MS/s
MAX_SAMPLES = 8 * 1024 * 1024  # the server's ring in RAM holds 2^23 sample pairs
STATUS_BYTES = 36
BUSY_WORD, BUSY_BIT = 8, 1

# command codes of the MCPHA server's oscilloscope
RESET_OSC, SET_RATE, READ_STATUS, SET_TRIGGER_SOURCE, SET_TRIGGER_SLOPE = 2, 4, 11, 13, 14
SET_TRIGGER_MODE, SET_TRIGGER_LEVEL, SET_PRE_SAMPLES, SET_TOTAL_SAMPLES, START_OSC, READ_OSC = 15, 16, 17, 18, 19, 20

CONFIG_KEYS = (
    "host",
    "port",
    "channels",
    "samples",
    "pre_trigger_samples",
    "sample_time_ns",
    "trigger",
    "mv_per_count",
    "timeout",
) + SETTINGS_KEYS
TRIGGER_KEYS = ("source", "level_mv", "slope")


def command(code: int, channel: int = 0, value: int = 0) -> bytes:
    """One 8-byte MCPHA command (negative values go as two's complement in 52 bits)."""
    return struct.pack("<Q", (code & 0xFF) << 56 | (channel & 0xF) << 52 | (int(value) & 0xFFFFFFFFFFFFF))


@dataclass
class McphaSettings:
    """A checked ``redpitaya_mcpha`` configuration."""

    host: str
    port: int
    channels: dict  # buffer field -> "1" | "2"
    samples: int
    pre_trigger_samples: int
    decimation: int
    trigger_channel: int  # 0: IN1, 1: IN2
    level_counts: int
    falling: bool
    mv_per_count: float
    raw: bool  # integer fields: ADC counts
    timeout: float
    acquisition: AcquisitionSettings
    layout: SinkLayout


def _settings(
    config_dict: Optional[Mapping], sink_setups: Optional[Sequence[Mapping]], name: str = ""
) -> McphaSettings:
    cfg = ConfigReader(NAME, config_dict)
    layout = sink_layout(NAME, sink_setups, name)
    raw = field_kind(NAME, layout, "fi") == "i"
    host = cfg.string("host")
    if host is None:
        raise cfg.error("host", None, "the Red Pitaya's host name or address, e.g. 'rp-f0a1b2.local'")
    port = cfg.integer("port", 1001, minimum=1, maximum=65535)
    channels = channel_map(cfg, layout, ("1", "2"))
    samples = check_samples(cfg, layout, maximum=MAX_SAMPLES)
    pre = cfg.integer("pre_trigger_samples", samples // 10, minimum=0, maximum=samples - 1)
    st = cfg.number("sample_time_ns", BASE_SAMPLE_TIME_NS, minimum=0.0, exclusive_minimum=True, unit="ns")
    decimation = st / BASE_SAMPLE_TIME_NS
    if abs(decimation - round(decimation)) > 1e-9 or not (round(decimation) == 1 or 4 <= round(decimation) <= 65535):
        raise cfg.error("sample_time_ns", st, "8 ns x 1, or 8 ns x an integer from 4 to 65535 (32, 64, 128, ... ns)")
    mv_per_count = cfg.number("mv_per_count", 1000.0 / 8192, minimum=0.0, exclusive_minimum=True, unit="mV")
    trig = cfg.block("trigger")
    source = trigger_source(trig, channels, ("1", "2"))
    level_mv = trig.number("level_mv", 0.0, unit="mV")
    level_counts = int(round(level_mv / mv_per_count))
    if not -8192 <= level_counts <= 8191:
        raise trig.error("level_mv", level_mv, f"a level within the 14-bit ADC range (+-{8192 * mv_per_count:g} mV)")
    slope = trig.string("slope", "rising", choices=("rising", "falling"))
    timeout = cfg.number("timeout", 2.0, minimum=0.0, exclusive_minimum=True, unit="s")
    acquisition = add_settings_keys(cfg, AcquisitionSettings())
    trig.warn_unknown(TRIGGER_KEYS)
    cfg.warn_unknown(CONFIG_KEYS)
    return McphaSettings(
        host,
        port,
        channels,
        samples,
        pre,
        int(round(decimation)),
        int(source) - 1,
        level_counts,
        slope == "falling",
        mv_per_count,
        raw,
        timeout,
        acquisition,
        layout,
    )


def check_config(config_dict: Optional[Mapping], sink_setups: Optional[Sequence[Mapping]]) -> None:
    """Raise ValueError for a bad ``redpitaya_mcpha`` configuration (see :func:`redpitaya_mcpha`)."""
    _settings(config_dict, sink_setups)


class McphaInstrument:
    """The MCPHA server's oscilloscope over a plain TCP socket."""

    events_per_cycle = 1
    link_errors = (OSError,)  # socket.timeout and ConnectionError are OSErrors

    def __init__(self, settings: McphaSettings):
        self.s = settings
        self.name = f"Red Pitaya MCPHA {settings.host}:{settings.port}"
        self.sock: Optional[socket.socket] = None
        self._pairs = np.empty((settings.samples, 2), dtype="<i2")  # one record as sent: IN1, IN2 interleaved
        self._status = bytearray(STATUS_BYTES)
        dt = settings.layout.dtype
        # a record of exactly (IN1, IN2) int16 fields has the wire layout: receive straight into it
        self._direct = settings.raw and [settings.channels.get(f) for f in settings.layout.fields] == ["1", "2"]
        self._direct = self._direct and all(dt[f] == np.dtype("<i2") for f in settings.layout.fields)
        self._arm_cmd = command(RESET_OSC) + command(START_OSC)
        self._status_cmd = command(READ_STATUS)
        # read the record, then arm again at once: the server runs commands in order, so the record
        # is sent before the oscilloscope restarts; the next trigger can come while we copy
        self._read_and_arm_cmd = command(READ_OSC) + self._arm_cmd
        self._armed = False

    def open(self) -> None:
        s = self.s
        self._armed = False
        try:
            self.sock = socket.create_connection((s.host, s.port), timeout=s.timeout)
        except socket.gaierror as exc:
            raise LinkLost(f"unknown host {s.host!r}: {exc}") from exc
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Bounded by the kernel (SO_RCVTIMEO/SO_SNDTIMEO) on a blocking socket rather than by a Python
        # timeout, which costs a poll() before every send and receive: half the system calls per event.
        sec, usec = int(s.timeout), int((s.timeout % 1) * 1e6)
        tv = struct.pack("ll", sec, usec)
        self.sock.settimeout(None)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, tv)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, tv)
        self.sock.sendall(
            command(SET_RATE, 0, s.decimation)
            + command(SET_TRIGGER_SOURCE, s.trigger_channel)
            + command(SET_TRIGGER_SLOPE, 0, int(s.falling))
            + command(SET_TRIGGER_MODE, 0, 0)  # normal: only real triggers
            + command(SET_TRIGGER_LEVEL, 0, s.level_counts)
            + command(SET_PRE_SAMPLES, 0, s.pre_trigger_samples)
            + command(SET_TOTAL_SAMPLES, 0, s.samples)
        )

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    def _recv_into(self, view: memoryview, what: str) -> None:
        got, n = 0, len(view)
        while got < n:
            try:
                k = self.sock.recv_into(view[got:], n - got, socket.MSG_WAITALL)
            except BlockingIOError:  # SO_RCVTIMEO ran out
                raise LinkLost(f"no answer within {self.s.timeout:g} s: {got} of {n} bytes of {what}") from None
            if k == 0:
                raise LinkLost(f"connection closed after {got} of {n} bytes of {what}")
            got += k

    def arm(self) -> None:
        if self._armed:  # by the previous fetch
            self._armed = False
            return
        self.sock.sendall(self._arm_cmd)

    def triggered(self) -> bool:
        self.sock.sendall(self._status_cmd)
        self._recv_into(memoryview(self._status), "the status")
        return not int.from_bytes(self._status[4 * BUSY_WORD : 4 * BUSY_WORD + 4], "little") & BUSY_BIT

    def fetch(self, records: np.ndarray) -> list:
        record = records[0]
        self.sock.sendall(self._read_and_arm_cmd)
        self._armed = True
        if self._direct:
            self._recv_into(memoryview(record.view(np.uint8)), "the record")
            return [None]
        self._recv_into(memoryview(self._pairs.view(np.uint8).reshape(-1)), "the record")
        for fld, channel in self.s.channels.items():
            column = self._pairs[:, int(channel) - 1]
            record[fld] = column * self.s.mv_per_count if not self.s.raw else column
        return [None]


def redpitaya_mcpha(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """Source: one event per trigger of the Red Pitaya MCPHA server's oscilloscope (TCP port 1001).

    Writes the one buffer assigned with ``write``; its fields are the channels (at
    most two, IN1 and IN2) and its values per slot the samples. Integer fields
    (int16) receive the raw ADC counts, float fields the samples in mV.

    Config keys:

    ``host`` : str, required
        The Red Pitaya's host name or address.
    ``port`` : int
        Default 1001.
    ``channels`` : list or mapping, default: the buffer's fields on IN1, IN2
        ``{chA: 1, chB: 2}``: buffer field -> input.
    ``samples`` : int
        Default: the buffer's values per slot (must equal it).
    ``pre_trigger_samples`` : int
        Default ``samples // 10``.
    ``sample_time_ns`` : float, default 8
        8 ns (125 MS/s) x the decimation: 1, or 4 to 65535.
    ``trigger`` : mapping
        ``source`` (a buffer field or input 1 / 2; default the first channel),
        ``level_mv`` (float, mV, default 0), ``slope`` (``rising`` | ``falling``).
    ``mv_per_count`` : float
        In mV, default 1000/8192 (+-1 V inputs, LV jumpers; HV: 20000/8192).
    ``timeout`` : float, s, default 2
        Bound of every read; a silent server counts as a lost link after it.
    ``trigger_timeout``, ``reconnect_timeout``, ``poll_interval``, ``number_of_events``
        As for :func:`mimocorb.sources.scpi.scpi_scope`.
    """
    name = sink_name(rb_info)
    settings = _settings(config_dict, sink_list, name)
    run_acquisition(McphaInstrument(settings), sink_list[0], settings.acquisition, settings.layout.name)


redpitaya_mcpha.check_config = check_config
