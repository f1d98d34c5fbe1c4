"""A simulated Red Pitaya MCPHA server (TCP port 1001 on the board): its oscilloscope part.

The protocol, as the MCPHA server of the Red Pitaya notes speaks it: every command is
8 bytes, a little-endian uint64 ``code << 56 | channel << 52 | value`` (value 52 bits);
the server answers only some commands, with raw bytes and no framing:

- 2: reset the oscilloscope; 4: sample rate (decimation of 125 MS/s); 13: trigger
  channel (the command's channel field: 0 = IN1, 1 = IN2); 14: trigger slope
  (0 rising, 1 falling); 15: trigger mode (0 normal, 1 auto); 16: trigger level (ADC
  counts); 17: samples before the trigger; 18: total samples; 19: start (arm).
- 11: status -> 36 bytes, nine uint32; bit 0 of word 8 is set while the oscilloscope
  is armed and waiting (the trigger has not come or the record is not complete).
- 20: oscilloscope data -> ``total x 4`` bytes: int16 samples of IN1 and IN2 interleaved.

The histogram, timer and pulse-generator commands are accepted and ignored. The
samples are the simulated muon waveforms in ADC counts (``mv_per_count`` mV each,
default 1000/8192: the +-1 V range of the 14-bit inputs), clipped to the int16 range.
"""

from __future__ import annotations

import logging
import struct
from typing import Optional

import numpy as np

from mimocorb.sources.simulators.server import Connection, Faults, InstrumentServer
from mimocorb.sources.simulators.waveforms import WaveformSettings, WaveformStream, now

logger = logging.getLogger(__name__)

STATUS_WORDS = 9
BUSY_BIT = 1


def command(code: int, channel: int = 0, value: int = 0) -> bytes:
    """One 8-byte MCPHA command."""
    return struct.pack("<Q", (code & 0xFF) << 56 | (channel & 0xF) << 52 | (int(value) & 0xFFFFFFFFFFFFF))


def parse_command(raw: bytes) -> tuple[int, int, int]:
    """(code, channel, value) of an 8-byte command."""
    (word,) = struct.unpack("<Q", raw)
    return word >> 56 & 0xFF, word >> 52 & 0xF, word & 0xFFFFFFFFFFFFF


class McphaSimulator(InstrumentServer):
    """The oscilloscope of the Red Pitaya MCPHA server, serving simulated muon waveforms.

    Parameters
    ----------
    waveforms : WaveformSettings, optional
        Samples, timing, trigger rate and seed (2 channels).
    mv_per_count : float
        ADC scale.
    record : bool
        Keep each event's interleaved int16 samples in :attr:`sent` (trigger number -> array).
    pool : int
        When > 0, compute this many events once and serve them in turn (for benchmarks:
        the simulator then costs little CPU); 0: a new event per trigger.
    """

    kind = "mcpha"

    def __init__(
        self,
        waveforms: Optional[WaveformSettings] = None,
        mv_per_count: float = 1000.0 / 8192,
        record: bool = False,
        pool: int = 0,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Optional[Faults] = None,
    ):
        self.waveforms = waveforms or WaveformSettings(channels=2)
        self.waveforms.channels = 2
        self.stream = WaveformStream(self.waveforms)
        self.mv_per_count = mv_per_count
        self.record = record
        self.sent: dict[int, np.ndarray] = {}
        self.pre = self.waveforms.pre_trigger_samples
        self.total = self.waveforms.samples
        self.registers: dict[int, int] = {}
        self._pool = [self._counts(self.stream.next_event()) for _ in range(pool)]
        self._armed = False
        self._t_trigger = float("inf")
        self._event: Optional[np.ndarray] = None
        super().__init__(host, port, faults)

    def _counts(self, mv: np.ndarray) -> np.ndarray:
        """Interleaved int16 ADC counts (IN1, IN2, IN1, ...) of a (2, samples) event in mV."""
        counts = np.clip(np.round(mv.astype(np.float64) / self.mv_per_count), -32768, 32767).astype(np.int16)
        return np.ascontiguousarray(counts.T).reshape(-1)

    def _next_event(self) -> np.ndarray:
        if self._pool:
            return self._pool[(self.events_served - 1) % len(self._pool)]
        return self._counts(self.stream.next_event())

    def _busy(self) -> bool:
        if self._armed and now() >= self._t_trigger:
            self._armed = False
            self.events_served += 1
            self._event = self._next_event()
        return self._armed

    def _send_data(self, conn: Connection) -> None:
        k, f = self.events_served, self.faults
        if self._event is None:
            data = np.zeros(2 * self.total, dtype=np.int16)  # nothing acquired yet: the buffer's old contents
        else:
            data = self._event[: 2 * self.total]
            if self.record:
                self.sent[k] = data.copy()
        payload = data.tobytes()
        if len(payload) < 4 * self.total:  # asked for more samples than simulated: zeros after them
            payload += bytes(4 * self.total - len(payload))
        if self._event is not None and f.drop_at_event == k and "drop" not in f.fired:
            self.drop_connection(conn, payload[: len(payload) // 2])
        if self._event is not None and f.short_block_at == k and "short" not in f.fired:
            f.fired.append("short")
            payload = payload[: len(payload) // 2]
        conn.send(payload)

    def serve(self, conn: Connection) -> None:
        while True:
            code, channel, value = parse_command(conn.read_exact(8))
            if code == 17:
                self.pre = int(value)
            elif code == 18:
                self.total = int(value)
            elif code == 2:
                self._armed = False
            elif code == 19:
                self._armed = True
                self._event = None
                t = now()
                self._t_trigger = float("inf") if self.faults.never_trigger else self.stream.trigger_time(t)
            elif code == 11:
                words = np.zeros(STATUS_WORDS, dtype="<u4")
                words[8] = BUSY_BIT if self._busy() else 0
                reply = words.tobytes()
                if self.faults.malformed_block_at == self.events_served + 1 and "malformed" not in self.faults.fired:
                    self.faults.fired.append("malformed")
                    reply = reply[:20]
                conn.send(reply)
            elif code == 20:
                self._send_data(conn)
            else:
                self.registers[code * 16 + channel] = int(value)
