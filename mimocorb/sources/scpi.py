"""SCPI oscilloscopes through PyVISA (pure-Python pyvisa-py backend): the ``scpi_scope`` source.

Each trigger gives one event: arm, poll until the acquisition is complete, read every
configured channel as an IEEE 488.2 definite-length binary block (PyVISA parses the
``#<n><length><data>`` header and reads exactly ``length`` bytes), scale the samples
to mV with the instrument's own scale (the preamble, where the family has one) and
publish the event with its trigger time. Everything an instrument family needs is
one :class:`ScpiFamily` table in :data:`FAMILIES`: a third family is a new table,
not new code. The loop, reconnects and metadata are :mod:`mimocorb.sources.acquisition`'s.

Resources: ``TCPIP::<host>::<port>::SOCKET`` (raw socket: the Red Pitaya's SCPI
server listens on port 5000, Rigol scopes on 5555), ``TCPIP::<host>::INSTR`` (VXI-11)
and ``USB::...::INSTR`` where pyvisa-py supports them (USB needs pyusb). The tests and
the simulator cover the SOCKET resources only.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from mimocorb.sources.acquisition import (
    SETTINGS_KEYS,
    AcquisitionSettings,
    InstrumentError,
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
from mimocorb.sources.optional import require

logger = logging.getLogger(__name__)

NAME = "scpi_scope"


@dataclass(frozen=True)
class PreambleScale:
    """How a ``:WAVeform:PREamble?`` answer turns raw values into volts.

    ``volts = (raw - sum of raw_offsets) * increment (+ volt_offset)``; the names
    are those of :attr:`fields`, the comma-separated values of the answer.
    """

    fields: tuple[str, ...]
    raw_offsets: tuple[str, ...]
    increment: str = "yincrement"
    volt_offset: Optional[str] = None
    sample_time: str = "xincrement"  # checked against the configured sample time
    points: str = "points"  # checked against the configured samples


@dataclass(frozen=True)
class ScpiFamily:
    """The command table of one instrument family.

    Commands are format strings; the fields they may use are ``channel`` (the
    instrument channel, in per-channel commands), ``samples``, ``pre_trigger_samples``,
    ``sample_time_s``, ``decimation`` (sample time / ``base_sample_time_ns``),
    ``trigger`` and ``slope`` (the family's tokens), ``level_v`` (trigger level in V),
    ``trigger_delay_samples`` (``buffer_samples / 2 - pre_trigger_samples``: the shift
    of the trigger from the middle of the instrument's buffer), ``center_offset_s``
    (time from the trigger to the middle of the record) and ``timebase_scale_s``
    (record length / ``divisions``).
    """

    name: str
    channels: tuple[str, ...]
    trigger_sources: Mapping[str, str]  # instrument channel or "ext" -> token
    slopes: Mapping[str, str]  # "rising" / "falling" -> token
    termination: str
    max_samples: int
    setup: tuple[str, ...]  # once after connecting
    setup_per_channel: tuple[str, ...]
    arm: tuple[str, ...]  # before every trigger
    # polled in order: (query, answers meaning "done", answers meaning "not yet"); anything else is an error
    completion: tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]
    select_channel: tuple[str, ...]  # before reading a channel
    data_query: str
    datatype: str  # struct code of one sample: "f" float32, "B" uint8, "h" int16
    big_endian: bool
    volts_per_unit: float = 1.0  # without a preamble
    preamble_query: Optional[str] = None
    preamble: Optional[PreambleScale] = None
    base_sample_time_ns: Optional[float] = None  # sample times are base x a power of 2
    max_decimation: int = 1
    buffer_samples: int = 0
    divisions: int = 10
    default_sample_time_ns: float = 8.0
    arm_settle: float = 0.0  # s to wait after arming before the first poll
    idn_query: str = "*IDN?"
    notes: str = field(default="", compare=False)


FAMILIES: dict[str, ScpiFamily] = {
    "redpitaya": ScpiFamily(
        name="redpitaya",
        notes="Red Pitaya STEMlab 125-14, SCPI server on port 5000; 125 MS/s, 16384-sample buffer, data in V",
        channels=("1", "2"),
        trigger_sources={"1": "CH1", "2": "CH2", "ext": "EXT"},
        slopes={"rising": "PE", "falling": "NE"},
        termination="\r\n",
        max_samples=16384,
        buffer_samples=16384,
        setup=(
            "ACQ:RST",
            "ACQ:DATA:FORMAT BIN",
            "ACQ:DATA:UNITS VOLTS",
            "ACQ:DEC {decimation}",
            "ACQ:TRig:LEV {level_v}",
            "ACQ:TRig:DLY {trigger_delay_samples}",
        ),
        setup_per_channel=(),
        arm=("ACQ:START", "ACQ:TRig {trigger}_{slope}"),
        completion=(("ACQ:TRig:STAT?", ("TD",), ("WAIT",)), ("ACQ:TRig:FILL?", ("1",), ("0",))),
        select_channel=(),
        data_query="ACQ:SOUR{channel}:DATA:OLD:N? {samples}",
        datatype="f",
        big_endian=True,  # the server's default byte order (ACQ:DATA:BYTE:ORDER BEND)
        volts_per_unit=1.0,
        base_sample_time_ns=8.0,
        max_decimation=65536,
        default_sample_time_ns=8.0,
    ),
    "rigol_ds1000z": ScpiFamily(
        name="rigol_ds1000z",
        notes="Rigol DS1000Z / MSO1000Z, SCPI on port 5555; bytes scaled by the preamble",
        channels=("1", "2", "3", "4"),
        trigger_sources={"1": "CHANnel1", "2": "CHANnel2", "3": "CHANnel3", "4": "CHANnel4"},
        slopes={"rising": "POSitive", "falling": "NEGative"},
        termination="\n",
        max_samples=250000,  # one :WAVeform:DATA? read in BYTE format
        setup=(
            ":STOP",
            ":WAVeform:MODE RAW",
            ":WAVeform:FORMat BYTE",
            ":TRIGger:MODE EDGE",
            ":TRIGger:EDGe:SOURce {trigger}",
            ":TRIGger:EDGe:SLOPe {slope}",
            ":TRIGger:EDGe:LEVel {level_v}",
            ":TRIGger:SWEep SINGle",
            ":ACQuire:MDEPth {samples}",
            ":TIMebase:MAIN:SCALe {timebase_scale_s}",
            ":TIMebase:MAIN:OFFSet {center_offset_s}",
            ":WAVeform:STARt 1",
            ":WAVeform:STOP {samples}",
        ),
        setup_per_channel=(":CHANnel{channel}:DISPlay ON",),
        arm=(":SINGle",),
        completion=((":TRIGger:STATus?", ("STOP",), ("WAIT", "RUN", "TD", "AUTO")),),
        select_channel=(":WAVeform:SOURce CHANnel{channel}",),
        data_query=":WAVeform:DATA?",
        datatype="B",
        big_endian=False,
        preamble_query=":WAVeform:PREamble?",
        preamble=PreambleScale(
            fields=(
                "format",
                "type",
                "points",
                "count",
                "xincrement",
                "xorigin",
                "xreference",
                "yincrement",
                "yorigin",
                "yreference",
            ),
            raw_offsets=("yorigin", "yreference"),
        ),
        divisions=12,
        default_sample_time_ns=1.0,
        arm_settle=0.1,  # the scope leaves STOP some time after :SINGle
    ),
}

CONFIG_KEYS = (
    "resource",
    "family",
    "channels",
    "samples",
    "pre_trigger_samples",
    "sample_time_ns",
    "trigger",
    "timeout",
) + SETTINGS_KEYS
TRIGGER_KEYS = ("source", "level_mv", "slope")


@dataclass
class ScpiSettings:
    """A checked ``scpi_scope`` configuration."""

    resource: str
    family: ScpiFamily
    channels: dict  # buffer field -> instrument channel
    samples: int
    pre_trigger_samples: int
    sample_time_ns: float
    trigger_source: str
    level_mv: float
    slope: str
    timeout: float
    acquisition: AcquisitionSettings
    layout: SinkLayout

    def template_fields(self) -> dict[str, Any]:
        f = self.family
        t = self.sample_time_ns * 1e-9
        return {
            "samples": self.samples,
            "pre_trigger_samples": self.pre_trigger_samples,
            "sample_time_s": f"{t:.6e}",
            "decimation": int(round(self.sample_time_ns / f.base_sample_time_ns)) if f.base_sample_time_ns else 1,
            "trigger": f.trigger_sources[self.trigger_source],
            "slope": f.slopes[self.slope],
            "level_v": f"{self.level_mv / 1000.0:.6g}",
            "trigger_delay_samples": f.buffer_samples // 2 - self.pre_trigger_samples,
            "center_offset_s": f"{(self.samples / 2 - self.pre_trigger_samples) * t:.6e}",
            "timebase_scale_s": f"{self.samples * t / f.divisions:.6e}",
        }


def _settings(config_dict: Optional[Mapping], sink_setups: Optional[Sequence[Mapping]], name: str = "") -> ScpiSettings:
    cfg = ConfigReader(NAME, config_dict)
    layout = sink_layout(NAME, sink_setups, name)
    field_kind(NAME, layout, "f")
    resource = cfg.string("resource")
    if resource is None:
        raise cfg.error("resource", None, "a VISA resource name, e.g. 'TCPIP::192.168.1.100::5000::SOCKET'")
    pyvisa = require("pyvisa", NAME)
    try:
        pyvisa.rname.parse_resource_name(resource)
    except pyvisa.rname.InvalidResourceName as exc:
        raise cfg.error("resource", resource, f"a VISA resource name ({exc})") from None
    family = FAMILIES[cfg.string("family", "redpitaya", choices=FAMILIES)]
    channels = channel_map(cfg, layout, family.channels)
    samples = check_samples(cfg, layout, maximum=family.max_samples)
    pre = cfg.integer("pre_trigger_samples", samples // 2, minimum=0, maximum=samples - 1)
    st = cfg.number("sample_time_ns", family.default_sample_time_ns, minimum=0.0, exclusive_minimum=True, unit="ns")
    if family.base_sample_time_ns:
        decimation = st / family.base_sample_time_ns
        options = [2**k for k in range(family.max_decimation.bit_length())]
        if round(decimation) not in options or abs(decimation - round(decimation)) > 1e-9:
            allowed = ", ".join(f"{family.base_sample_time_ns * d:g}" for d in options[:6])
            raise cfg.error("sample_time_ns", st, f"{family.name}: one of {allowed}, ... ns (base x a power of 2)")
    trig = cfg.block("trigger")
    source = trigger_source(trig, channels, list(family.trigger_sources))
    level = trig.number("level_mv", 0.0, unit="mV")
    slope = trig.string("slope", "rising", choices=family.slopes)
    timeout = cfg.number("timeout", 2.0, minimum=0.0, exclusive_minimum=True, unit="s")
    acquisition = add_settings_keys(cfg, AcquisitionSettings())
    trig.warn_unknown(TRIGGER_KEYS)
    cfg.warn_unknown(CONFIG_KEYS)
    return ScpiSettings(
        resource, family, channels, samples, pre, st, source, level, slope, timeout, acquisition, layout
    )


def check_config(config_dict: Optional[Mapping], sink_setups: Optional[Sequence[Mapping]]) -> None:
    """Raise ValueError for a bad ``scpi_scope`` configuration (see :func:`scpi_scope`)."""
    _settings(config_dict, sink_setups)


class ScpiInstrument:
    """One SCPI scope through PyVISA, as :func:`~mimocorb.sources.acquisition.run_acquisition` drives it."""

    events_per_cycle = 1

    def __init__(self, settings: ScpiSettings):
        self.s = settings
        self.family = settings.family
        self.name = f"{settings.family.name} scope {settings.resource}"
        self.pyvisa = require("pyvisa", NAME)
        require("pyvisa_py", NAME)
        self.link_errors = (self.pyvisa.errors.VisaIOError, OSError)
        self.fields = settings.template_fields()
        self.rm = None
        self.inst = None
        self._stage = 0
        self._not_before = 0.0

    def _cmd(self, template: str, **extra: Any) -> str:
        return template.format(**self.fields, **extra)

    def open(self) -> None:
        try:
            if self.rm is None:
                self.rm = self.pyvisa.ResourceManager("@py")
            self.inst = self.rm.open_resource(
                self.s.resource,
                read_termination=self.family.termination,
                write_termination=self.family.termination,
                timeout=int(self.s.timeout * 1000),
            )
        except self.link_errors:
            raise
        except Exception as exc:  # pyvisa raises ValueError and others for resources it cannot open
            raise LinkLost(f"cannot open resource {self.s.resource!r}: {type(exc).__name__}: {exc}") from exc
        self.inst.chunk_size = 1 << 20
        if self.s.resource.upper().endswith("::SOCKET"):
            self._no_delay()
        idn = self.inst.query(self.family.idn_query).strip()
        if not idn:
            raise LinkLost(f"no answer to {self.family.idn_query}")
        logger.info("%s: %s", self.name, idn)
        for template in self.family.setup:
            self.inst.write(self._cmd(template))
        for channel in self.s.channels.values():
            for template in self.family.setup_per_channel:
                self.inst.write(self._cmd(template, channel=channel))

    def _no_delay(self) -> None:
        """Switch Nagle's algorithm off: two short commands in a row would otherwise wait for the
        instrument's delayed ACK (40 ms each on Linux). pyvisa-py 0.8 opens raw sockets with
        Nagle on and refuses VI_ATTR_TCPIP_NODELAY, so its session's socket is set directly."""
        c = self.pyvisa.constants
        try:
            self.inst.set_visa_attribute(c.ResourceAttribute.tcpip_nodelay, c.VI_TRUE)
            return
        except Exception as exc:  # noqa: BLE001 - pyvisa_py.sessions.UnknownAttribute and others
            refused = exc
        sock = getattr(self.rm.visalib.sessions.get(self.inst.session), "interface", None)
        if hasattr(sock, "setsockopt"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        else:
            logger.warning(
                "%s: cannot switch Nagle's algorithm off (%s); short commands may be delayed", self.name, refused
            )

    def close(self) -> None:
        for obj in (self.inst, self.rm):
            if obj is not None:
                try:
                    obj.close()
                except Exception as exc:  # noqa: BLE001 - closing a broken link may fail in many ways
                    logger.debug("%s: close: %s", self.name, exc)
        self.inst = self.rm = None

    def arm(self) -> None:
        for template in self.family.arm:
            self.inst.write(self._cmd(template))
        self._stage = 0
        self._not_before = time.monotonic() + self.family.arm_settle

    def triggered(self) -> bool:
        if time.monotonic() < self._not_before:
            return False  # the instrument may still show the state from before arming
        while self._stage < len(self.family.completion):
            query, done, waiting = self.family.completion[self._stage]
            answer = self.inst.query(query).strip()
            if answer in waiting:
                return False
            if answer not in done:
                raise LinkLost(f"unexpected answer {answer!r} to {query} (expected one of {done + waiting})")
            self._stage += 1
        return True

    def _read_block(self, query: str) -> np.ndarray:
        """Send ``query`` and read its IEEE 488.2 definite-length block ``#<n><length><data>`` and the
        line end after it. The header is parsed by PyVISA; the reads are exact byte counts with the
        termination character off (binary data holds line-end bytes, each of which would end a read)."""
        c, util = self.pyvisa.constants, self.pyvisa.util
        term = self.family.termination.encode()
        self.inst.write(query)
        self.inst.set_visa_attribute(c.ResourceAttribute.termchar_enabled, c.VI_FALSE)
        try:
            head = bytes(self.inst.read_bytes(2))
            if head[:1] != b"#" or not head[1:2].isdigit() or head[1:2] == b"0":
                raise LinkLost(f"malformed data block for {query}: starts with {head!r}, expected '#<digit 1-9>'")
            head += bytes(self.inst.read_bytes(int(head[1:2])))
            try:
                offset, length = util.parse_ieee_block_header(head)
            except ValueError as exc:
                raise LinkLost(f"malformed data block header {head!r} for {query}: {exc}") from exc
            if length < 0:
                raise LinkLost(f"malformed data block header {head!r} for {query}")
            body = bytes(self.inst.read_bytes(length + len(term)))
        finally:
            self.inst.set_visa_attribute(c.ResourceAttribute.termchar_enabled, c.VI_TRUE)
        if not body.endswith(term):
            raise LinkLost(f"data block for {query}: {length} bytes announced, not followed by the line end")
        dtype = np.dtype(self.family.datatype).newbyteorder(">" if self.family.big_endian else "<")
        return np.frombuffer(body, dtype=dtype, count=length // dtype.itemsize)

    def _scale(self, channel: str) -> tuple[float, float, float]:
        """(raw offset, mV per unit, mV offset) of the channel now selected."""
        f = self.family
        if f.preamble is None:
            return 0.0, f.volts_per_unit * 1000.0, 0.0
        answer = self.inst.query(f.preamble_query).strip()
        try:
            values = dict(zip(f.preamble.fields, (float(v) for v in answer.split(","))))
        except ValueError as exc:
            raise LinkLost(f"malformed preamble {answer!r}: {exc}") from exc
        if len(values) != len(f.preamble.fields):
            raise LinkLost(f"malformed preamble {answer!r}: expected {len(f.preamble.fields)} values")
        dt_ns = values[f.preamble.sample_time] * 1e9
        if abs(dt_ns - self.s.sample_time_ns) > 0.01 * self.s.sample_time_ns:
            raise InstrumentError(
                f"{self.name}: channel {channel} is sampled every {dt_ns:g} ns, configured sample_time_ns is "
                f"{self.s.sample_time_ns:g}; choose a sample time the instrument can set for {self.s.samples} samples"
            )
        points = values.get(f.preamble.points)
        if points is not None and int(points) != self.s.samples:
            raise InstrumentError(
                f"{self.name}: channel {channel} delivers {int(points)} points, configured samples is {self.s.samples}"
            )
        offset = sum(values[k] for k in f.preamble.raw_offsets)
        volts0 = values[f.preamble.volt_offset] if f.preamble.volt_offset else 0.0
        return offset, values[f.preamble.increment] * 1000.0, volts0 * 1000.0

    def fetch(self, records: np.ndarray) -> list:
        record = records[0]
        for fld, channel in self.s.channels.items():
            for template in self.family.select_channel:
                self.inst.write(self._cmd(template, channel=channel))
            raw_offset, mv_per_unit, mv_offset = self._scale(channel)
            query = self._cmd(self.family.data_query, channel=channel)
            values = self._read_block(query)
            if values.size != self.s.samples:
                raise LinkLost(f"channel {channel}: data block of {values.size} samples, expected {self.s.samples}")
            if raw_offset or mv_offset:
                record[fld] = (values - raw_offset) * mv_per_unit + mv_offset
            else:
                record[fld] = values * mv_per_unit
        return [None]


def scpi_scope(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """Source: one event per trigger of an SCPI oscilloscope (PyVISA, pyvisa-py backend).

    Writes the one buffer assigned with ``write``; its fields are the channels, float32
    (or float64) in mV, and its values per slot the samples per channel.

    Config keys (``config_file`` of the function, or its block in the common config):

    ``resource`` : str, required
        VISA resource, e.g. ``TCPIP::192.168.1.100::5000::SOCKET`` (Red Pitaya),
        ``TCPIP::192.168.1.50::5555::SOCKET`` or ``TCPIP::192.168.1.50::INSTR`` (Rigol).
    ``family`` : str, default ``redpitaya``
        Command table: ``redpitaya`` (SCPI server ``ACQ:...``) or ``rigol_ds1000z``
        (``:WAVeform:...``); see :data:`FAMILIES`.
    ``channels`` : list or mapping, default: the buffer's fields on channels 1, 2, ...
        ``[chA, chB]`` or ``{chA: 1, chB: 2}``: buffer field -> instrument channel.
    ``samples`` : int
        Default: the buffer's values per slot (must equal it).
    ``pre_trigger_samples`` : int
        Default ``samples // 2``.
    ``sample_time_ns`` : float, default 8 (redpitaya: 8 ns x a power of 2; rigol: 1)
        The Rigol's actual sample time is checked against it at every event.
    ``trigger`` : mapping
        ``source`` (a buffer field, an instrument channel or ``ext``; default the first
        channel), ``level_mv`` (float, mV, default 0), ``slope`` (``rising`` | ``falling``).
    ``timeout`` : float, s, default 2
        Bound of every query; a silent instrument counts as a lost link after it.
    ``trigger_timeout`` : float, s, default none
        End the source cleanly when no trigger comes for this long.
    ``reconnect_timeout`` : float, s, default 10
        How long to try to restore a lost link before the run ends with an error.
    ``poll_interval`` : float, s, default 0.005
        Longest pause between two polls of the trigger state.
    ``number_of_events`` : int, default 0
        End the source after this many events (0: until the run ends).
    """
    name = sink_name(rb_info)
    settings = _settings(config_dict, sink_list, name)
    run_acquisition(ScpiInstrument(settings), sink_list[0], settings.acquisition, settings.layout.name)


scpi_scope.check_config = check_config
