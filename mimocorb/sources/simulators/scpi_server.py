"""A simulated SCPI oscilloscope over a raw TCP socket (VISA resource ``TCPIP::host::port::SOCKET``).

Two command families, those of :mod:`mimocorb.sources.scpi`:

- ``redpitaya``: the Red Pitaya SCPI server (port 5000 on the board): ``ACQ:START``,
  ``ACQ:TRig CH1_PE``, ``ACQ:TRig:STAT?`` (``WAIT`` / ``TD``), ``ACQ:TRig:FILL?``,
  ``ACQ:SOUR<n>:DATA:OLD:N? <N>`` answered, in ``ACQ:DATA:FORMAT BIN`` and ``VOLTS``,
  by an IEEE 488.2 definite-length block of big-endian float32 volts; lines end in CR LF.
- ``rigol_ds1000z``: a Rigol DS1000Z: ``:SINGle``, ``:TRIGger:STATus?`` (``WAIT``,
  then ``STOP`` once the single acquisition is complete), ``:WAVeform:SOURce CHANnel<n>``,
  ``:WAVeform:PREamble?`` (10 values) and ``:WAVeform:DATA?`` answered by a block of
  unsigned bytes, volts = (byte - yorigin - yreference) x yincrement; lines end in LF.

Only the raw-socket protocol is simulated, not VXI-11 (``TCPIP::host::INSTR``) nor USB.
Commands that set up the acquisition (decimation, levels, timebase, ...) are accepted
and remembered but do not change the waveforms: these come with the simulator's own
sample time and pre-trigger samples (:class:`~mimocorb.sources.simulators.waveforms.WaveformSettings`).
Unknown commands are answered, if they are queries, by an empty line (as the Red Pitaya does).
"""

from __future__ import annotations

import logging
import re
from typing import Optional

import numpy as np

from mimocorb.sources.simulators.server import Connection, Faults, InstrumentServer
from mimocorb.sources.simulators.waveforms import WaveformSettings, WaveformStream, now

logger = logging.getLogger(__name__)

FAMILIES = ("redpitaya", "rigol_ds1000z")
TERMINATION = {"redpitaya": b"\r\n", "rigol_ds1000z": b"\n"}
IDN = {
    "redpitaya": "REDPITAYA,INSTR2020,0,simulated",
    "rigol_ds1000z": "RIGOL TECHNOLOGIES,DS1104Z,SIMULATED,00.04.05",
}
# Rigol vertical scale of the simulated channels: 4 mV per count, -250 mV at mid-scale
RIGOL_YINC = 0.004
RIGOL_YREF = 127
RIGOL_YORIGIN = 128 - RIGOL_YREF - int(round(-0.25 / RIGOL_YINC))


def ieee_block(payload: bytes) -> bytes:
    """An IEEE 488.2 definite-length block: ``#<n><length, n digits><payload>``."""
    digits = str(len(payload))
    return b"#" + str(len(digits)).encode() + digits.encode() + payload


def _short_form(long: str) -> str:
    return "".join(c for c in long if c.isupper() or c.isdigit() or c in "?*")


def _compile(pattern: str) -> re.Pattern:
    """A regex for an SCPI header pattern in long form (``ACQ:SOURce#:DATA:OLD:N?``, ``#`` = a number)."""
    parts = []
    for token in pattern.split(":"):
        query = token.endswith("?")
        token = token.rstrip("?")
        number = token.endswith("#")
        token = token.rstrip("#")
        alt = {re.escape(token.upper()), re.escape(_short_form(token))}
        rx = "(?:" + "|".join(sorted(alt)) + ")" + (r"(\d+)" if number else "") + (r"\?" if query else "")
        parts.append(rx)
    return re.compile(":".join(parts) + "$", re.IGNORECASE)


class ScpiSimulator(InstrumentServer):
    """A Red Pitaya or Rigol DS1000Z as seen through its SCPI socket.

    Parameters
    ----------
    family : str
        ``"redpitaya"`` or ``"rigol_ds1000z"``.
    waveforms : WaveformSettings, optional
        Channels, samples, timing, trigger rate and seed of the served events.
    record : bool
        Keep what was sent per event (:attr:`sent`: trigger number -> channel ->
        the values as sent), for tests.
    host, port, faults
        See :class:`~mimocorb.sources.simulators.server.InstrumentServer`.
    """

    kind = "scpi"

    def __init__(
        self,
        family: str = "redpitaya",
        waveforms: Optional[WaveformSettings] = None,
        record: bool = False,
        host: str = "127.0.0.1",
        port: int = 0,
        faults: Optional[Faults] = None,
    ):
        if family not in FAMILIES:
            raise ValueError(f"ScpiSimulator: family {family!r} unknown, expected one of {', '.join(FAMILIES)}")
        self.family = family
        self.kind = f"scpi/{family}"
        self.waveforms = waveforms or WaveformSettings(channels=2 if family == "redpitaya" else 4)
        self.stream = WaveformStream(self.waveforms)
        self.record = record
        self.sent: dict[int, dict[int, np.ndarray]] = {}
        self.settings: dict[str, str] = {}
        self.term = TERMINATION[family]
        self._armed = False
        self._t_trigger = float("inf")
        self._event: Optional[np.ndarray] = None
        self._channel = 1
        handlers = self._redpitaya_handlers() if family == "redpitaya" else self._rigol_handlers()
        self._handlers = [(_compile(p), h) for p, h in handlers]
        super().__init__(host, port, faults)

    # ------------------------------------------------------------ common state
    def _arm(self) -> None:
        self._armed = True
        self._event = None
        self._t_trigger = float("inf") if self.faults.never_trigger else self.stream.trigger_time(now())

    def _is_triggered(self) -> bool:
        """Complete the acquisition once its trigger time has come (a new event)."""
        if self._armed and now() >= self._t_trigger:
            self._armed = False
            self.events_served += 1
            self._event = self.stream.next_event()
        return not self._armed and self._event is not None

    def _channel_data(self, channel: int) -> np.ndarray:
        if self._event is None:
            raise ValueError("no acquisition")
        return self._event[channel - 1]

    def _send_block(self, conn: Connection, payload: bytes, channel: int, values: np.ndarray) -> None:
        k, f = self.events_served, self.faults
        if self.record:
            self.sent.setdefault(k, {})[channel] = values.copy()
        if f.drop_at_event == k and "drop" not in f.fired:
            self.drop_connection(conn, ieee_block(payload)[: len(payload) // 2])
        if f.short_block_at == k and "short" not in f.fired:
            f.fired.append("short")
            conn.send(ieee_block(payload)[: 2 + len(str(len(payload))) + len(payload) // 2], self.term)
            return
        if f.malformed_block_at == k and "malformed" not in f.fired:
            f.fired.append("malformed")
            conn.send(b"#X" + payload[:16], self.term)
            return
        conn.send(ieee_block(payload), self.term)

    # ------------------------------------------------------------ Red Pitaya
    def _redpitaya_handlers(self) -> list:
        def start(conn, m, arg):
            self._armed = False

        def trig(conn, m, arg):
            if arg.upper() not in ("DISABLED", "NOW"):
                self._arm()

        def stat(conn, m, arg):
            self._reply(conn, "TD" if self._is_triggered() else "WAIT")

        def fill(conn, m, arg):
            self._reply(conn, "1" if self._is_triggered() else "0")

        def data(conn, m, arg):
            channel, n = int(m.group(1)), int(arg or self.waveforms.samples)
            if self._event is None or channel > self.waveforms.channels:
                self._reply(conn, "")  # the Red Pitaya answers an error with an empty line
                return
            volts = (self._channel_data(channel)[:n].astype(np.float64) / 1000.0).astype(np.float32)
            self._send_block(conn, volts.astype(">f4").tobytes(), channel, volts)

        return [
            ("ACQ:START", start),
            ("ACQ:TRig", trig),
            ("ACQ:TRig:STAT?", stat),
            ("ACQ:TRig:FILL?", fill),
            ("ACQ:SOUR#:DATA:OLD:N?", data),
        ]

    # ------------------------------------------------------------ Rigol DS1000Z
    def _rigol_handlers(self) -> list:
        def single(conn, m, arg):
            self._arm()

        def status(conn, m, arg):
            self._reply(conn, "STOP" if self._is_triggered() or not self._armed else "WAIT")

        def source(conn, m, arg):
            match = re.fullmatch(r"CHAN(?:NEL)?(\d)", arg.strip().upper())
            if match:
                self._channel = int(match.group(1))

        def preamble(conn, m, arg):
            w = self.waveforms
            xinc = w.sample_time_ns * 1e-9
            values = [0, 2, w.samples, 1, f"{xinc:e}", f"{-w.pre_trigger_samples * xinc:e}", 0]
            values += [f"{RIGOL_YINC:e}", RIGOL_YORIGIN, RIGOL_YREF]
            self._reply(conn, ",".join(map(str, values)))

        def data(conn, m, arg):
            if self._event is None or self._channel > self.waveforms.channels:
                self._reply(conn, "")
                return
            mv = self._channel_data(self._channel).astype(np.float64)
            raw = np.clip(np.round(mv / 1000.0 / RIGOL_YINC) + RIGOL_YORIGIN + RIGOL_YREF, 0, 255).astype(np.uint8)
            self._send_block(conn, raw.tobytes(), self._channel, raw)

        return [
            (":SINGle", single),
            (":TRIGger:STATus?", status),
            (":WAVeform:SOURce", source),
            (":WAVeform:PREamble?", preamble),
            (":WAVeform:DATA?", data),
        ]

    @staticmethod
    def rigol_to_mv(raw: np.ndarray) -> np.ndarray:
        """What a Rigol's bytes mean in mV (the documented preamble formula)."""
        return (raw.astype(np.float64) - RIGOL_YORIGIN - RIGOL_YREF) * RIGOL_YINC * 1000.0

    # ------------------------------------------------------------ dispatch
    def _reply(self, conn: Connection, text: str) -> None:
        conn.send(text.encode() + self.term)

    def serve(self, conn: Connection) -> None:
        while True:
            line = conn.read_line(b"\n").decode("ascii", "replace").strip()
            for command in filter(None, (c.strip() for c in line.split(";"))):
                self._dispatch(conn, command)

    def _dispatch(self, conn: Connection, command: str) -> None:
        header, _, arg = command.partition(" ")
        if header == "*IDN?":
            self._reply(conn, IDN[self.family])
            return
        for rx, handler in self._handlers:
            m = rx.match(header)
            if m:
                handler(conn, m, arg.strip())
                return
        if header.endswith("?"):
            self._reply(conn, "")
        else:
            self.settings[header.upper()] = arg.strip()
