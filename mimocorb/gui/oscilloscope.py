"""Oscilloscope view of observed waveforms (the display behind 1.x ``plot_buffer``).

The view shows the chosen channels of the newest observed event in mV (the analogue
offset removed, so the baseline sits at 0) against time in ns (0 = trigger), marks the
trigger level and position, and shows the event number and the rate. It reads through
an :class:`~mimocorb.mimo_buffer.Observer`, which never slows the DAQ, and redraws a few
times a second; headless, it only writes ``oscilloscope-<buffer>.png`` into the run
folder every few seconds and at the end.

Config keys (1.x names): ``title``, ``sample_time_ns``, ``pre_trigger_samples``,
``analogue_offset`` (V), ``trigger_level`` (mV, offset included), ``trigger_channel``,
``trigger_direction``, ``channel_range`` (mV, default 500), ``min_sleeptime`` (s between
redraws, default 0.3); new: ``channels`` (list of field names, default all),
``snapshot_interval`` (s, default 5), ``nice`` (scheduling niceness added to the
display process, default 10).
"""

from __future__ import annotations

import logging
import time
from collections import deque
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from mimocorb.gui.feeds import display_input, yield_cpu
from mimocorb.gui.screen import FigureHost
from mimocorb.gui.snapshots import DEFAULT_INTERVAL, SnapshotSchedule, snapshot_path

logger = logging.getLogger(__name__)

#: Most points drawn per channel; longer traces are reduced to min/max pairs (peaks survive).
MAX_POINTS = 2000
COLORS = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown", "tab:pink", "tab:olive"]


def min_max_reduce(y: np.ndarray, max_points: int = MAX_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of ``y`` reduced to at most ``max_points`` points, keeping each block's min and max.

    Unlike taking every k-th sample this keeps narrow pulses visible.
    """
    n = len(y)
    if n <= max_points:
        return np.arange(n), np.asarray(y)
    k = int(np.ceil(2 * n / max_points))
    m = n // k
    blocks = np.asarray(y[: m * k]).reshape(m, k)
    lo, hi = blocks.argmin(axis=1), blocks.argmax(axis=1)
    first, second = np.minimum(lo, hi), np.maximum(lo, hi)
    base = np.arange(m) * k
    idx = np.empty(2 * m, dtype=np.int64)
    idx[0::2], idx[1::2] = base + first, base + second
    idx = np.concatenate([idx, np.arange(m * k, n)])  # the rest of the trace as it is
    return idx, np.asarray(y)[idx]


@dataclass
class ScopeConfig:
    """What the oscilloscope shows, from a 1.x ``plot_buffer`` config dict."""

    title: str
    channels: list[str]
    sample_time_ns: float = 1.0
    pre_trigger_samples: int = 0
    analogue_offset_mv: float = 0.0
    trigger_level_mv: Optional[float] = None  # as displayed: offset removed
    trigger_channel: str = ""
    trigger_direction: str = ""
    channel_range_mv: float = 500.0
    refresh_s: float = 0.3
    snapshot_interval: float = DEFAULT_INTERVAL
    nice: int = 10

    @classmethod
    def from_config(cls, config_dict: Optional[dict], fields: Sequence[str], buffer: str = "") -> ScopeConfig:
        """Read and check the config.

        Raises
        ------
        ValueError
            For a channel that is not a field of the buffer, or a non-positive sample time.
        """
        c = dict(config_dict or {})
        channels = c.get("channels") or list(fields)
        if isinstance(channels, str):
            channels = [channels]
        unknown = [ch for ch in channels if ch not in fields]
        if unknown:
            raise ValueError(
                f"plot_buffer: channels {unknown} are not fields of buffer {buffer or '?'} (fields: {list(fields)})"
            )
        sample = float(c.get("sample_time_ns", 1.0))
        if not sample > 0:
            raise ValueError(f"plot_buffer: sample_time_ns must be > 0, got {sample}")
        offset = 1000.0 * float(c.get("analogue_offset", 0.0) or 0.0)
        level = c.get("trigger_level")
        return cls(
            title=str(c.get("title") or c.get("plot_title") or f"Oscilloscope {buffer}".strip()),
            channels=list(channels),
            sample_time_ns=sample,
            pre_trigger_samples=int(c.get("pre_trigger_samples", 0) or 0),
            analogue_offset_mv=offset,
            trigger_level_mv=None if level is None else float(level) - offset,
            trigger_channel=str(c.get("trigger_channel", "") or ""),
            trigger_direction=str(c.get("trigger_direction", "") or ""),
            channel_range_mv=float(c.get("channel_range", 500.0) or 500.0),
            refresh_s=max(0.05, float(c.get("min_sleeptime", 0.3) or 0.3)),
            snapshot_interval=float(c.get("snapshot_interval", DEFAULT_INTERVAL)),
            nice=int(c.get("nice", 10)),
        )


class Oscilloscope:
    """The oscilloscope figure; :meth:`show` puts an event on it (drawing is the host's job).

    Parameters
    ----------
    cfg : ScopeConfig
        What to show.
    values_per_slot : int
        Samples per channel.
    figure : Figure, optional
        Figure to draw into (default: a new 8 x 4.5 inch one).
    """

    def __init__(self, cfg: ScopeConfig, values_per_slot: int, figure: Optional[Figure] = None):
        self.cfg = cfg
        self.n = int(values_per_slot)
        self.figure = figure if figure is not None else Figure(figsize=(8.0, 4.5), layout="constrained")
        self.t_ns = (np.arange(self.n) - cfg.pre_trigger_samples) * cfg.sample_time_ns
        ax = self.ax = self.figure.add_subplot(1, 1, 1)
        ax.set_title(cfg.title)
        ax.set_xlabel("time (ns)")
        ax.set_ylabel("signal (mV)")
        ax.set_xlim(self.t_ns[0], self.t_ns[-1] + cfg.sample_time_ns)
        r, off = cfg.channel_range_mv, cfg.analogue_offset_mv
        ax.set_ylim(-r - off, r - off)
        ax.grid(color="grey", linestyle="--", linewidth=0.5, alpha=0.6)
        if cfg.pre_trigger_samples > 0:
            ax.axvline(0.0, linestyle=":", color="tab:cyan", lw=1.2, label="trigger")
        if cfg.trigger_level_mv is not None:
            ax.axhline(cfg.trigger_level_mv, linestyle="--", color="red", lw=1.0)
            ax.text(
                0.01,
                0.97,
                f"trigger {cfg.trigger_channel} {cfg.trigger_level_mv:g} mV {cfg.trigger_direction}".replace("  ", " "),
                transform=ax.transAxes,
                va="top",
                size="small",
                color="red",
            )
        self.lines = []
        for i, ch in enumerate(cfg.channels):
            (line,) = ax.plot([], [], lw=1.2, alpha=0.9, color=COLORS[i % len(COLORS)], label=ch)
            self.lines.append(line)
        ax.legend(loc="upper right", fontsize="small")
        self.info = ax.text(0.5, 0.97, "waiting for events", transform=ax.transAxes, ha="center", va="top")
        self.events_shown = 0
        self.last_counter: Optional[int] = None
        self._history: deque[tuple[int, float]] = deque()

    def rate(self) -> Optional[float]:
        """Event rate (Hz) from the counters and timestamps of the observed events of the last ~5 s."""
        if len(self._history) < 2:
            return None
        (c0, t0), (c1, t1) = self._history[0], self._history[-1]
        return (c1 - c0) / (t1 - t0) if t1 > t0 else None

    def show(self, data: np.ndarray, metadata: Optional[np.ndarray] = None) -> None:
        """Put one event (a slot copy, structured or plain) and its metadata on the figure."""
        for ch, line in zip(self.cfg.channels, self.lines):
            y = data[ch] if data.dtype.names else data
            idx, yr = min_max_reduce(np.asarray(y, dtype=np.float64) - self.cfg.analogue_offset_mv)
            line.set_data(self.t_ns[idx], yr)
        self.events_shown += 1
        text = f"events shown {self.events_shown}"
        if metadata is not None and len(metadata):
            counter, ts = int(metadata[0]["counter"]), float(metadata[0]["timestamp"])
            self.last_counter = counter
            self._history.append((counter, ts))
            while len(self._history) > 2 and ts - self._history[0][1] > 5.0:
                self._history.popleft()
            rate = self.rate()
            text = f"event # {counter}"
            if rate is not None:
                text += f"   {rate:,.0f} Hz" if rate >= 100 else f"   {rate:.3g} Hz"
        self.info.set_text(text)


def run_oscilloscope(observe_list: Sequence[dict], config_dict: Optional[dict], rb_info: dict) -> int:
    """Show the first observed buffer until the end of the run; return the number of events shown.

    Parameters
    ----------
    observe_list : list of dict
        Observer setup dicts (the first is shown).
    config_dict : dict
        The function's config (see the module notes); ``directory_prefix`` is the run folder.
    rb_info : dict
        Buffer names -> roles; the first ``"observe"`` name labels the display.
    """
    from mimocorb.mimo_buffer import Observer

    shown = display_input("plot_buffer", None, observe_list, rb_info, reads=False)
    setup, buffer = shown.setup, shown.buffer
    cfg = ScopeConfig.from_config(config_dict, shown.fields, buffer)
    yield_cpu(cfg.nice, idle=cfg.nice > 0)
    observer = Observer(setup)
    scope = Oscilloscope(cfg, setup["values_per_slot"])
    host = FigureHost(scope.figure, cfg.title)
    snaps = SnapshotSchedule(
        scope.figure,
        snapshot_path(config_dict, "oscilloscope", buffer),
        cfg.snapshot_interval if not host.interactive else 0,
    )
    logger.info("oscilloscope of %s %s", buffer, "in a window" if host.interactive else f"to {snaps.path}")
    next_draw = 0.0
    try:
        while not host.closed:
            item = observer.get(timeout=cfg.refresh_s)
            if item is None and not observer.active:
                break
            if item is not None:
                scope.show(*item)
            now = time.monotonic()
            if host.interactive and now >= next_draw:
                host.refresh()
                next_draw = now + cfg.refresh_s
            else:
                host.process_events()
            if snaps.due():
                snaps.save()
            if not host.interactive:  # nobody watches: a sample every refresh period is plenty
                time.sleep(cfg.refresh_s)
    finally:
        snaps.save()
        host.close()
        observer.close()
    logger.info("oscilloscope of %s ended after %d events shown", buffer, scope.events_shown)
    return scope.events_shown
