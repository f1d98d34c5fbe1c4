"""PicoScope in rapid block mode through Pico's picosdk wrappers: the ``picoscope`` source.

One arm/fetch cycle captures ``captures_per_block`` triggers into memory segments of
the scope (rapid block mode: ``MemorySegments``, ``SetNoOfCaptures``, ``RunBlock``,
poll ``IsReady``, ``GetValuesBulk``) and publishes one event per capture, scaled from
ADC counts to mV with the scope's ``MaximumValue`` and the channel's range. Supported
driver families: ps2000a, ps3000a, ps4000a, ps5000a (their call signatures differ in
the oversample argument of ``GetTimebase2``/``RunBlock`` and the resolution argument
of ``OpenUnit``; everything else is shared).

``picosdk`` (pip, the ``picoscope`` extra) and Pico's C library (the PicoSDK from
Pico Technology, e.g. ``libps5000a``) are loaded only when this source starts. The
loop and metadata are :mod:`mimocorb.sources.acquisition`'s; the scope gives no
absolute time per capture, so every event of a block is stamped with the host's time
when the block was complete.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from mimocorb.sources.acquisition import (
    SETTINGS_KEYS,
    AcquisitionSettings,
    InstrumentError,
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

NAME = "picoscope"
FAMILIES = ("ps2000a", "ps3000a", "ps4000a", "ps5000a")
WITH_OVERSAMPLE = ("ps2000a", "ps3000a")  # GetTimebase2 and RunBlock take an oversample argument
PICO_OK = 0
POWER_STATUSES = (282, 286)  # PICO_POWER_SUPPLY_NOT_CONNECTED, PICO_USB3_0_DEVICE_NON_USB3_0_PORT
RANGES_MV = (10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000)
RESOLUTIONS = ("8BIT", "12BIT", "14BIT", "15BIT", "16BIT")

CONFIG_KEYS = (
    "family",
    "serial",
    "resolution",
    "channels",
    "range_mv",
    "coupling",
    "samples",
    "pre_trigger_samples",
    "timebase",
    "captures_per_block",
    "trigger",
) + SETTINGS_KEYS
TRIGGER_KEYS = ("source", "level_mv", "slope", "auto_trigger_ms")


class PicoError(InstrumentError):
    """A picosdk call returned a status other than PICO_OK."""


@dataclass
class PicoSettings:
    """A checked ``picoscope`` configuration."""

    family: str
    serial: Optional[str]
    resolution: str
    channels: dict  # buffer field -> channel letter
    range_mv: float
    coupling: str
    samples: int
    pre_trigger_samples: int
    timebase: int
    captures: int
    trigger_source: str
    level_mv: float
    slope: str
    auto_trigger_ms: int
    acquisition: AcquisitionSettings
    layout: SinkLayout


def _settings(config_dict: Optional[Mapping], sink_setups: Optional[Sequence[Mapping]], name: str = "") -> PicoSettings:
    cfg = ConfigReader(NAME, config_dict)
    layout = sink_layout(NAME, sink_setups, name)
    field_kind(NAME, layout, "f")
    family = cfg.string("family", "ps5000a", choices=FAMILIES)
    serial = cfg.string("serial")
    resolution = cfg.string("resolution", "8BIT", choices=RESOLUTIONS)
    channels = channel_map(cfg, layout, ("A", "B", "C", "D"))
    range_mv = cfg.number("range_mv", 1000, unit="mV")
    if range_mv not in RANGES_MV:
        raise cfg.error("range_mv", cfg.config.get("range_mv"), "one of " + ", ".join(map(str, RANGES_MV)) + " (mV)")
    coupling = cfg.string("coupling", "DC", choices=("DC", "AC"))
    samples = check_samples(cfg, layout)
    pre = cfg.integer("pre_trigger_samples", samples // 10, minimum=0, maximum=samples - 1)
    timebase = cfg.integer("timebase", 3, minimum=0)
    captures = cfg.integer("captures_per_block", 32, minimum=1, maximum=100000)
    trig = cfg.block("trigger")
    source = trigger_source(trig, channels, ("A", "B", "C", "D"))
    level = trig.number("level_mv", 0.0, minimum=-range_mv, maximum=range_mv, unit="mV")
    slope = trig.string("slope", "rising", choices=("rising", "falling"))
    auto_ms = trig.integer("auto_trigger_ms", 0, minimum=0, maximum=32767)
    acquisition = add_settings_keys(cfg, AcquisitionSettings())
    trig.warn_unknown(TRIGGER_KEYS)
    cfg.warn_unknown(CONFIG_KEYS)
    return PicoSettings(
        family,
        serial,
        resolution,
        channels,
        range_mv,
        coupling,
        samples,
        pre,
        timebase,
        captures,
        source,
        level,
        slope,
        auto_ms,
        acquisition,
        layout,
    )


def check_config(config_dict: Optional[Mapping], sink_setups: Optional[Sequence[Mapping]]) -> None:
    """Raise ValueError for a bad ``picoscope`` configuration (see :func:`picoscope`)."""
    _settings(config_dict, sink_setups)


def load_driver(family: str) -> Any:
    """The picosdk driver object of a family (``picosdk.ps5000a.ps5000a``), loading Pico's C library."""
    require("picosdk", NAME)
    try:
        module = importlib.import_module(f"picosdk.{family}")
    except ImportError as exc:
        raise ImportError(f"{NAME}: picosdk has no module {family}: {exc}") from exc
    except Exception as exc:  # picosdk.errors.CannotFindPicoSDKError when the C library is missing
        raise ImportError(
            f"{NAME}: Pico's C library for {family} (lib{family}) could not be loaded: {exc}. Install the PicoSDK "
            f"from Pico Technology (Linux: the lib{family} package of Pico's package repository; Windows/macOS: "
            f"the PicoSDK installer), then check that the library is on the loader path (LD_LIBRARY_PATH)"
        ) from exc
    return getattr(module, family)


class PicoInstrument:
    """A PicoScope of one driver family, in rapid block mode."""

    link_errors = ()  # a USB scope has no link to restore: every failure ends the run

    def __init__(self, settings: PicoSettings):
        self.s = settings
        self.events_per_cycle = settings.captures
        self.name = f"PicoScope {settings.family}" + (f" {settings.serial}" if settings.serial else "")
        self.lib = load_driver(settings.family)
        self.p = settings.family.upper()  # enum prefix, e.g. PS5000A
        self.handle = ctypes.c_int16(0)
        self.opened = False
        self.max_adc = 32767
        s = settings
        self.buffers = {f: np.zeros((s.captures, s.samples), dtype=np.int16) for f in s.channels}
        self.overflow = (ctypes.c_int16 * s.captures)()
        self.ready = ctypes.c_int16(0)

    def _call(self, fn: str, *args: Any) -> int:
        status = getattr(self.lib, f"{self.s.family}{fn}")(*args)
        if status != PICO_OK:
            raise PicoError(f"{self.name}: {self.s.family}{fn} returned status {status:#x}")
        return status

    def _enum(self, table: str, key: str) -> int:
        return getattr(self.lib, f"{self.p}_{table}")[f"{self.p}_{key}"]

    def _range_enum(self) -> int:
        volts = self.s.range_mv / 1000.0
        for enum, v in self.lib.PICO_VOLTAGE_RANGE.items():
            if abs(v - volts) < 1e-9:
                return enum
        raise InstrumentError(f"{self.name}: range {self.s.range_mv} mV is not offered by this family")

    def open(self) -> None:
        s, lib, fam = self.s, self.lib, self.s.family
        serial = s.serial.encode() if s.serial else None
        if fam == "ps5000a":
            res = self._enum("DEVICE_RESOLUTION", f"DR_{s.resolution}")
            status = getattr(lib, f"{fam}OpenUnit")(ctypes.byref(self.handle), serial, res)
        else:
            status = getattr(lib, f"{fam}OpenUnit")(ctypes.byref(self.handle), serial)
        if status in POWER_STATUSES:  # USB powered or USB 2 port: accept the power source the scope has
            status = getattr(lib, f"{fam}ChangePowerSource")(self.handle, status)
        if status != PICO_OK:
            raise PicoError(f"{self.name}: no scope opened ({fam}OpenUnit returned status {status:#x})")
        self.opened = True
        max_adc = ctypes.c_int16()
        self._call("MaximumValue", self.handle, ctypes.byref(max_adc))
        self.max_adc = max_adc.value
        coupling = lib.PICO_COUPLING[s.coupling]
        rng = self._range_enum()
        for letter in s.channels.values():
            self._call("SetChannel", self.handle, lib.PICO_CHANNEL[letter], 1, coupling, rng, 0.0)
        threshold = int(round(s.level_mv / s.range_mv * self.max_adc))
        direction = self._enum("THRESHOLD_DIRECTION", "RISING" if s.slope == "rising" else "FALLING")
        source = lib.PICO_CHANNEL[s.trigger_source]
        self._call("SetSimpleTrigger", self.handle, 1, source, threshold, direction, 0, s.auto_trigger_ms)
        interval = ctypes.c_float()
        max_samples = ctypes.c_int32()
        args = (self.handle, s.timebase, s.samples, ctypes.byref(interval))
        if fam in WITH_OVERSAMPLE:
            args += (1,)
        self._call("GetTimebase2", *args, ctypes.byref(max_samples), 0)
        logger.info("%s: timebase %d = %.4g ns per sample", self.name, s.timebase, interval.value)
        per_segment = ctypes.c_int32()
        self._call("MemorySegments", self.handle, s.captures, ctypes.byref(per_segment))
        if per_segment.value < s.samples:
            raise InstrumentError(
                f"{self.name}: {s.captures} captures_per_block leave {per_segment.value} samples per capture, "
                f"{s.samples} needed; use fewer captures per block"
            )
        self._call("SetNoOfCaptures", self.handle, s.captures)
        ratio_none = lib.PICO_RATIO_MODE["NONE"]
        for field, letter in s.channels.items():
            buf = self.buffers[field]
            for seg in range(s.captures):
                ptr = buf[seg].ctypes.data_as(ctypes.POINTER(ctypes.c_int16))
                self._call("SetDataBuffer", self.handle, lib.PICO_CHANNEL[letter], ptr, s.samples, seg, ratio_none)

    def close(self) -> None:
        if self.opened:
            for fn in ("Stop", "CloseUnit"):
                try:
                    getattr(self.lib, f"{self.s.family}{fn}")(self.handle)
                except Exception as exc:  # noqa: BLE001 - closing must not raise
                    logger.debug("%s: %s: %s", self.name, fn, exc)
            self.opened = False

    def arm(self) -> None:
        s = self.s
        indisposed = ctypes.c_int32()
        args = (self.handle, s.pre_trigger_samples, s.samples - s.pre_trigger_samples, s.timebase)
        if s.family in WITH_OVERSAMPLE:
            args += (1,)
        self._call("RunBlock", *args, ctypes.byref(indisposed), 0, None, None)

    def triggered(self) -> bool:
        self._call("IsReady", self.handle, ctypes.byref(self.ready))
        return bool(self.ready.value)

    def fetch(self, records: np.ndarray) -> list:
        s = self.s
        n = ctypes.c_uint32(s.samples)
        self._call("GetValuesBulk", self.handle, ctypes.byref(n), 0, s.captures - 1, 1, 0, self.overflow)
        if n.value != s.samples:
            raise PicoError(f"{self.name}: GetValuesBulk returned {n.value} samples per capture, {s.samples} expected")
        mv_per_count = s.range_mv / self.max_adc
        for field, buf in self.buffers.items():
            records[field] = buf * mv_per_count
        return [None] * s.captures


def picoscope(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """Source: PicoScope rapid block mode (ps2000a, ps3000a, ps4000a, ps5000a), one event per capture.

    Writes the one buffer assigned with ``write``: one float field per channel (mV),
    values per slot = samples. Needs ``pip install 'mimocorb[picoscope]'`` and Pico's C
    library (the PicoSDK) for the family.

    Config keys:

    ``family`` : str, default ``ps5000a``
        ``ps2000a``, ``ps3000a``, ``ps4000a`` or ``ps5000a``.
    ``serial`` : str
        Default: the first scope found.
    ``resolution`` : str
        Default ``8BIT`` (ps5000a only: 8BIT ... 16BIT).
    ``channels`` : list or mapping, default: the buffer's fields on A, B, C, D
        ``{chA: A, chB: B}``: buffer field -> channel letter.
    ``range_mv`` : float, default 1000
        Input range of every channel, +-mV (10, 20, 50, ..., 50000).
    ``coupling`` : str
        Default ``DC`` (or ``AC``).
    ``samples`` : int
        Default: the buffer's values per slot (must equal it).
    ``pre_trigger_samples`` : int
        Default ``samples // 10``.
    ``timebase`` : int, default 3
        The driver's timebase number (sample time: see the programmer's guide of the model).
    ``captures_per_block`` : int, default 32
        Triggers captured per rapid block (memory segments).
    ``trigger`` : mapping
        ``source`` (a buffer field or channel letter; default the first channel),
        ``level_mv`` (default 0), ``slope`` (``rising`` | ``falling``),
        ``auto_trigger_ms`` (0: wait for a real trigger).
    ``trigger_timeout``, ``poll_interval``, ``number_of_events``
        As for :func:`mimocorb.sources.scpi.scpi_scope` (a USB scope is not reconnected).
    """
    name = sink_name(rb_info)
    settings = _settings(config_dict, sink_list, name)
    run_acquisition(PicoInstrument(settings), sink_list[0], settings.acquisition, settings.layout.name)


picoscope.check_config = check_config
