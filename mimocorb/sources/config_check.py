"""Checking a source's configuration block against the buffer it writes.

Every source has a ``check_config(config_dict, sink_setups) -> None`` attached to its
worker function; the run control calls it before anything starts, and the source calls
it again when it starts. Problems raise :class:`ValueError` whose text names the
source, the key (a dotted path for nested keys), the bad value and what is expected::

    scpi_scope: config key 'channels.chX': got 'chX', expected a field of buffer RB_1 (chA, chB)

Keys the source does not know are reported as a warning (a config file may hold keys
of other functions, as 1.x config files do), never silently used.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: Keys the run control adds to every function's config; never reported as unknown.
RUN_KEYS = frozenset({"directory_prefix"})


def config_error(source: str, key: str, value: Any, expected: str) -> ValueError:
    """The one shape of every configuration error of the sources."""
    return ValueError(f"{source}: config key '{key}': got {value!r}, expected {expected}")


@dataclass(frozen=True)
class SinkLayout:
    """The buffer a source writes: field names, dtype and values per slot."""

    name: str
    dtype: np.dtype
    values_per_slot: int

    @property
    def fields(self) -> list[str]:
        return list(self.dtype.names or ())

    def describe(self) -> str:
        fields = ", ".join(f"{n}: {self.dtype[n].name}" for n in self.fields) or self.dtype.name
        return f"buffer {self.name} ({self.values_per_slot} x [{fields}])"


def sink_layout(source: str, sink_setups: Optional[Sequence[Mapping]], name: str = "") -> SinkLayout:
    """The layout of the (first and only) sink buffer of a source.

    Raises
    ------
    ValueError
        No sink, more than one, or a buffer without named fields.
    """
    if not sink_setups:
        raise ValueError(
            f"{source}: needs exactly one buffer to write (RB_assign: {{<buffer>: write}}), got {sink_setups!r}"
        )
    if len(sink_setups) > 1:
        raise ValueError(f"{source}: writes exactly one buffer, got {len(sink_setups)} sink buffers")
    setup = sink_setups[0]
    dtype = np.dtype(setup["dtype"])
    layout = SinkLayout(name or str(setup.get("name", "sink")), dtype, int(setup["values_per_slot"]))
    if not dtype.names:
        raise ValueError(
            f"{source}: {layout.describe()} has no named fields; a source writes one field per channel "
            f"(data_type: {{1: ['chA', 'float32'], ...}})"
        )
    return layout


class ConfigReader:
    """Typed access to one source's config dict, with errors in the common shape.

    Parameters
    ----------
    source : str
        The source's name for messages (``scpi_scope``).
    config : mapping or None
        The function's config dict.
    prefix : str
        Key path of this (nested) block, e.g. ``"trigger."``.
    """

    def __init__(self, source: str, config: Optional[Mapping], prefix: str = ""):
        if config is not None and not isinstance(config, Mapping):
            raise config_error(source, prefix.rstrip(".") or "config_dict", config, "a mapping of keys to values")
        self.source = source
        self.config = dict(config or {})
        self.prefix = prefix
        self.used: set[str] = set()

    def error(self, key: str, value: Any, expected: str) -> ValueError:
        return config_error(self.source, self.prefix + key, value, expected)

    def raw(self, key: str, default: Any = None) -> Any:
        self.used.add(key)
        value = self.config.get(key, default)
        return default if value is None else value

    def has(self, key: str) -> bool:
        return self.config.get(key) is not None

    def string(self, key: str, default: Optional[str] = None, choices: Optional[Iterable[str]] = None) -> Optional[str]:
        value = self.raw(key, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value:
            raise self.error(key, value, "a non-empty string")
        if choices is not None:
            options = list(choices)
            if value not in options:
                raise self.error(key, value, "one of " + ", ".join(repr(c) for c in options))
        return value

    def number(
        self,
        key: str,
        default: Optional[float] = None,
        minimum: Optional[float] = None,
        maximum: Optional[float] = None,
        exclusive_minimum: bool = False,
        unit: str = "",
    ) -> Optional[float]:
        value = self.raw(key, default)
        if value is None:
            return None
        what = f"a number{(' in ' + unit) if unit else ''}"
        if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise self.error(key, value, what)
        v = float(value)
        if not np.isfinite(v):
            raise self.error(key, value, f"a finite {what[2:]}")
        if minimum is not None and (v < minimum or (exclusive_minimum and v == minimum)):
            raise self.error(key, value, f"{what} {'>' if exclusive_minimum else '>='} {minimum:g}")
        if maximum is not None and v > maximum:
            raise self.error(key, value, f"{what} <= {maximum:g}")
        return v

    def integer(
        self, key: str, default: Optional[int] = None, minimum: Optional[int] = None, maximum: Optional[int] = None
    ) -> Optional[int]:
        value = self.raw(key, default)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
            raise self.error(key, value, "an integer")
        if minimum is not None and value < minimum:
            raise self.error(key, value, f"an integer >= {minimum}")
        if maximum is not None and value > maximum:
            raise self.error(key, value, f"an integer <= {maximum}")
        return int(value)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.raw(key, default)
        if not isinstance(value, (bool, np.bool_)):
            raise self.error(key, value, "true or false")
        return bool(value)

    def block(self, key: str) -> ConfigReader:
        """A nested mapping (``trigger: {...}``) as a reader of its own."""
        value = self.raw(key, {})
        if not isinstance(value, Mapping):
            raise self.error(key, value, "a mapping of keys to values")
        return ConfigReader(self.source, value, self.prefix + key + ".")

    def warn_unknown(self, known: Iterable[str]) -> None:
        """Log the keys of this block that the source does not use (typos show up here)."""
        unknown = sorted(set(map(str, self.config)) - set(known) - RUN_KEYS)
        if unknown:
            logger.warning(
                "%s: config keys %s are not used by this source (known keys: %s)",
                self.source,
                ", ".join(self.prefix + k for k in unknown),
                ", ".join(sorted(known)),
            )


def channel_map(
    cfg: ConfigReader, layout: SinkLayout, instrument_channels: Sequence[str], key: str = "channels"
) -> dict[str, str]:
    """Buffer field -> instrument channel, from ``channels`` (a mapping or a list of fields).

    ``channels: {chA: 1, chB: 2}`` maps fields to instrument channels;
    ``channels: [chA, chB]`` takes instrument channels in their order; without the key
    the buffer's fields take the instrument channels in order. Every field of the
    buffer must be fed by exactly one channel.
    """
    value = cfg.raw(key)
    allowed = [str(c) for c in instrument_channels]
    if value is None:
        value = layout.fields
    if isinstance(value, (list, tuple)):
        if len(value) > len(allowed):
            raise cfg.error(key, value, f"at most {len(allowed)} channels ({', '.join(allowed)})")
        pairs = list(zip(value, allowed))
    elif isinstance(value, Mapping):
        pairs = list(value.items())
    else:
        raise cfg.error(key, value, "a list of buffer fields or a mapping {field: instrument channel}")
    mapping: dict[str, str] = {}
    for field, channel in pairs:
        if field not in layout.fields:
            raise config_error(
                cfg.source,
                f"{cfg.prefix}{key}.{field}",
                field,
                f"a field of {layout.describe()}",
            )
        if str(channel) not in allowed:
            raise config_error(
                cfg.source, f"{cfg.prefix}{key}.{field}", channel, "an instrument channel, one of " + ", ".join(allowed)
            )
        if str(channel) in mapping.values():
            raise config_error(cfg.source, f"{cfg.prefix}{key}.{field}", channel, "each instrument channel once")
        mapping[str(field)] = str(channel)
    missing = [f for f in layout.fields if f not in mapping]
    if missing:
        raise cfg.error(key, value, f"a channel for every field of {layout.describe()}; missing: {', '.join(missing)}")
    return mapping


def trigger_source(trig: ConfigReader, channels: Mapping[str, str], allowed: Sequence[str]) -> str:
    """The instrument channel of ``trigger.source``: a buffer field (its channel) or a channel
    name of the instrument (``allowed``, e.g. also ``ext``); default the first configured channel."""
    given = trig.raw("source", next(iter(channels)))
    source = channels.get(str(given), str(given))
    if source not in allowed:
        options = ", ".join([*channels, *allowed])
        raise trig.error("source", given, f"a buffer field or an instrument channel: {options}")
    return source


def sink_name(rb_info: Mapping[str, str]) -> str:
    """The name of the buffer a source writes (from the worker's ``rb_info``)."""
    return next((k for k, v in rb_info.items() if v == "write"), "")


def check_samples(cfg: ConfigReader, layout: SinkLayout, key: str = "samples", maximum: Optional[int] = None) -> int:
    """``samples`` must equal the buffer's values per slot (and fit the instrument)."""
    samples = cfg.integer(key, layout.values_per_slot, minimum=1)
    assert samples is not None
    if samples != layout.values_per_slot:
        raise cfg.error(
            key, samples, f"the values per slot of {layout.describe()}: {layout.values_per_slot} (channel_per_slot)"
        )
    if maximum is not None and samples > maximum:
        raise cfg.error(key, samples, f"at most {maximum} samples for this instrument")
    return samples


def field_kind(source: str, layout: SinkLayout, allowed: str) -> str:
    """'f' when every field is floating point, 'i' when every field is an integer type.

    ``allowed`` lists the kinds the source can write ("f", "i" or "fi").
    """
    kinds = {layout.dtype[n].kind for n in layout.fields}
    kinds = {"i" if k in "iu" else k for k in kinds}
    expected = {
        "f": "float fields (mV)",
        "i": "integer fields (ADC counts)",
        "fi": "all float fields (mV) or all integer fields (ADC counts)",
    }
    if len(kinds) != 1 or next(iter(kinds)) not in allowed:
        types = ", ".join(f"{n}: {layout.dtype[n].name}" for n in layout.fields)
        raise ValueError(f"{source}: {layout.describe()}: got field types {types}, expected {expected[allowed]}")
    return next(iter(kinds))
