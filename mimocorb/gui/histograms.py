"""Live histograms of buffer fields (the display behind 1.x ``histogram_buffer``).

Config (1.x format, kept)::

    title: Muon decay
    interval: 2.0                   # s between redraws (1.x key)
    histograms:
      # 1.x list form: [min, max, bins, ymax, label, 0 linear / 1 log]  (ymax is ignored: y scales itself)
      1st_chA_h: [0., 500., 50, 5.9, "pulse height (mV)", 0]
      # or, more readable:
      decay_time: {range: [0, 15000], bins: 50, label: "decay time (ns)", log: false, fit: lifetime}

Each histogram shows entries, mean and standard deviation of all values filled (and how
many fell outside the range). A ``decay_time`` field (or ``fit: lifetime``) also shows
the running unbinned lifetime fit of :func:`mimocorb.muon.lifetime.fit_lifetime`,
drawn over the histogram with tau +- error.

The histograms read the buffer in a thread (:class:`~mimocorb.gui.feeds.EventFeed`):
with ``RB_x: read`` in the setup they are a reader group and see every event (the
events of a histogrammed buffer are a few numbers, so this costs microseconds per
event and the buffer never waits for a drawing); with ``RB_x: observe`` they see a
sample. Headless they write ``histograms-<buffer>.png`` into the run folder every few
seconds and at the end.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from mimocorb.gui.feeds import EventFeed
from mimocorb.gui.oscilloscope import _be_nice, field_names
from mimocorb.gui.screen import FigureHost
from mimocorb.gui.snapshots import DEFAULT_INTERVAL, SnapshotSchedule, snapshot_path

logger = logging.getLogger(__name__)

#: Seconds between refits of the lifetime (the fit runs in the display process).
FIT_INTERVAL = 5.0


@dataclass
class HistogramSpec:
    """One histogram: the field, its range and binning, axis label, y scale and fit."""

    field: str
    low: float
    high: float
    bins: int
    label: str
    log: bool = False
    fit: Optional[str] = None  # "lifetime" or None

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.low, self.high, self.bins + 1)


def parse_histograms(config_dict: Optional[dict], fields: Sequence[str], buffer: str = "") -> list[HistogramSpec]:
    """The histogram specs of a config (``histograms`` block, 1.x list form or dict form).

    Raises
    ------
    ValueError
        For an unknown field, a bad range or bin count, or a malformed entry; the
        message names the entry and says what would be right.
    """
    block = (config_dict or {}).get("histograms")
    if not block:
        raise ValueError(
            "histogram_buffer: the config has no 'histograms' block; expected e.g. "
            "histograms: {decay_time: [0, 15000, 50, 5., 'decay time (ns)', 0]}"
        )
    if not isinstance(block, dict):
        raise ValueError(f"histogram_buffer: 'histograms' must map field names to histograms, got {block!r}")
    specs = []
    for name, h in block.items():
        where = f"histogram_buffer: histograms.{name}"
        if name not in fields:
            raise ValueError(f"{where}: {name!r} is not a field of buffer {buffer or '?'} (fields: {list(fields)})")
        try:
            if isinstance(h, dict):
                lo, hi = h["range"]
                bins, label = h.get("bins", 50), h.get("label", name)
                log, fit = bool(h.get("log", False)), h.get("fit")
            elif isinstance(h, (list, tuple)) and len(h) >= 3:
                lo, hi, bins = h[0], h[1], h[2]
                label = h[4] if len(h) > 4 else name
                log = bool(h[5]) if len(h) > 5 else False
                fit = None
            else:
                raise TypeError
            lo, hi, bins = float(lo), float(hi), int(bins)
        except (KeyError, TypeError, ValueError):
            raise ValueError(
                f"{where}: expected [min, max, bins, ymax, label, 0/1] or "
                f"{{range: [min, max], bins: n, label: text, log: false}}, got {h!r}"
            ) from None
        if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise ValueError(f"{where}: need min < max, got [{lo}, {hi}]")
        if bins < 1:
            raise ValueError(f"{where}: bins must be >= 1, got {bins}")
        if fit is None and name == "decay_time":
            fit = "lifetime"
        if fit not in (None, False, "lifetime"):
            raise ValueError(f"{where}: fit must be 'lifetime' or absent, got {fit!r}")
        specs.append(HistogramSpec(name, lo, hi, bins, str(label), log, fit or None))
    return specs


class Histogram:
    """Counts and running moments of one field."""

    def __init__(self, spec: HistogramSpec):
        self.spec = spec
        self.edges = spec.edges
        self.counts = np.zeros(spec.bins, dtype=np.int64)
        self.entries = 0
        self.outside = 0
        self._sum = 0.0
        self._sumsq = 0.0
        self._values: list[np.ndarray] = []  # kept only for the fit

    def fill(self, values: np.ndarray) -> None:
        """Add values (NaN and inf are ignored)."""
        v = np.asarray(values, dtype=np.float64).ravel()
        v = v[np.isfinite(v)]
        if not v.size:
            return
        c, _ = np.histogram(v, bins=self.edges)
        self.counts += c
        self.outside += int(v.size - c.sum())
        self.entries += int(v.size)
        self._sum += float(v.sum())
        self._sumsq += float(np.dot(v, v))
        if self.spec.fit:
            self._values.append(v)

    @property
    def mean(self) -> float:
        return self._sum / self.entries if self.entries else float("nan")

    @property
    def std(self) -> float:
        if self.entries < 2:
            return float("nan")
        m = self.mean
        return math.sqrt(max(0.0, self._sumsq / self.entries - m * m))

    def values(self) -> np.ndarray:
        """Every value filled so far (only for histograms with a fit)."""
        if len(self._values) > 1:
            self._values = [np.concatenate(self._values)]
        return self._values[0] if self._values else np.empty(0)


class HistogramDisplay:
    """Figure with one panel per histogram; :meth:`fill` adds values, :meth:`update` redraws the artists.

    Parameters
    ----------
    specs : list of HistogramSpec
        The histograms.
    title : str
        Figure title.
    figure : Figure, optional
        Figure to draw into (default: a new one sized for the panels).
    """

    def __init__(self, specs: Sequence[HistogramSpec], title: str, figure: Optional[Figure] = None):
        self.hists = [Histogram(s) for s in specs]
        n = len(specs)
        ncols = math.ceil(math.sqrt(n))
        nrows = math.ceil(n / ncols)
        self.figure = (
            figure
            if figure is not None
            else Figure(figsize=(max(5.0, 4.2 * ncols), max(3.5, 3.2 * nrows)), layout="constrained")
        )
        self.figure.suptitle(title)
        axes = self.figure.subplots(nrows, ncols, squeeze=False).ravel()
        for ax in axes[n:]:
            ax.axis("off")
        self.axes = list(axes[:n])
        self.steps = []
        self.texts = []
        self.fit_lines: list[Any] = []
        self.fits: list[Any] = [None] * n
        self._next_fit = [0.0] * n
        for ax, h in zip(self.axes, self.hists):
            s = h.spec
            ax.set_xlabel(s.label)
            ax.set_ylabel("entries / bin")
            ax.set_xlim(s.low, s.high)
            if s.log:
                ax.set_yscale("log")
            ax.grid(axis="y", linestyle="--", linewidth=0.5, alpha=0.6)
            baseline = 0.5 if s.log else 0.0  # log scale: bars start below one entry
            self.steps.append(ax.stairs(h.counts, h.edges, fill=True, color="goldenrod", baseline=baseline))
            self.texts.append(
                ax.text(
                    0.97,
                    0.95,
                    "no entries",
                    transform=ax.transAxes,
                    ha="right",
                    va="top",
                    fontsize="small",
                    family="monospace",
                    bbox=dict(boxstyle="round", facecolor="white", alpha=0.7),
                )
            )
            (line,) = ax.plot([], [], color="tab:red", lw=1.5, label="lifetime fit")
            self.fit_lines.append(line)

    def fill(self, values: dict[str, np.ndarray]) -> None:
        """Add new values per field."""
        for h in self.hists:
            v = values.get(h.spec.field)
            if v is not None and len(v):
                h.fill(v)

    def update(self, force_fit: bool = False) -> None:
        """Bring bars, statistics and fits up to date (no drawing)."""
        now = time.monotonic()
        for i, (ax, h) in enumerate(zip(self.axes, self.hists)):
            self.steps[i].set_data(h.counts)
            top = max(1, int(h.counts.max()))
            if h.spec.log:
                ax.set_ylim(0.5, top * 3.0)
            else:
                ax.set_ylim(0, top * 1.15)
            lines = [f"entries {h.entries:>8d}", f"mean    {h.mean:8.4g}", f"std     {h.std:8.4g}"]
            if h.outside:
                lines.append(f"outside {h.outside:>8d}")
            if h.spec.fit == "lifetime" and (force_fit or now >= self._next_fit[i]):
                self._next_fit[i] = now + FIT_INTERVAL
                self._fit(i, h)
            fit = self.fits[i]
            if fit is not None:
                self._draw_fit(i, h, fit)
                lines.append(f"tau = {fit.tau:.0f} +- {fit.tau_error:.0f}")
                lines.append(f"(fit of {fit.n_used})")
            self.texts[i].set_text("\n".join(lines))

    def _fit(self, i: int, h: Histogram) -> None:
        from mimocorb.muon.lifetime import T_MAX_NS, T_MIN_NS, fit_lifetime

        t_min, t_max = max(T_MIN_NS, h.spec.low), min(T_MAX_NS, h.spec.high)
        try:
            fit = fit_lifetime(h.values(), t_min=t_min, t_max=t_max)
        except (ValueError, RuntimeError) as exc:  # too few events yet, or a degenerate sample
            logger.debug("lifetime fit of %s: %s", h.spec.field, exc)
            return
        self.fits[i] = fit

    def _draw_fit(self, i: int, h: Histogram, fit: Any) -> None:
        """The fitted shape scaled to the entries in the fit range now (the fit itself is redone less often)."""
        t_min, t_max, tau, f = fit.t_min, fit.t_max, fit.tau, fit.background_fraction
        v = h.values()
        n_now = int(np.count_nonzero((v >= t_min) & (v <= t_max)))
        x = np.linspace(t_min, t_max, 200)
        norm = tau * (np.exp(-t_min / tau) - np.exp(-t_max / tau))
        pdf = (1 - f) * np.exp(-x / tau) / norm + f / (t_max - t_min)
        width = (h.spec.high - h.spec.low) / h.spec.bins
        self.fit_lines[i].set_data(x, n_now * pdf * width)  # expected entries per bin


def run_histograms(
    source_list: Optional[Sequence[dict]],
    observe_list: Optional[Sequence[dict]],
    config_dict: Optional[dict],
    rb_info: dict,
) -> int:
    """Histogram the first source (every event) or observed buffer (a sample) until the end of the run.

    Returns the number of events histogrammed.
    """
    if source_list:
        setup, role = source_list[0], "read"
    elif observe_list:
        setup, role = observe_list[0], "observe"
    else:
        raise ValueError(
            "histogram_buffer: needs a buffer to read (or observe); give the function 'RB_x: read' in RB_assign"
        )
    names = [k for k, v in rb_info.items() if v == role]
    buffer = names[0] if names else str(setup.get("name") or "buffer")
    c = dict(config_dict or {})
    specs = parse_histograms(c, field_names(setup["dtype"]), buffer)
    title = str(c.get("title") or f"Histograms {buffer}")
    interval = max(0.2, float(c.get("interval", 2.0) or 2.0))
    # Yield the CPU to the DAQ. A reader group still gets its share (the scheduler
    # gives a niced process about a tenth of a busy core): plenty to copy the
    # fields of the events it histograms; its feed thread never waits for drawing.
    _be_nice(int(c.get("nice", 10)), idle=role == "observe" and int(c.get("nice", 10)) > 0)
    feed = EventFeed(setup, [s.field for s in specs]).start()
    display = HistogramDisplay(specs, title)
    host = FigureHost(display.figure, title)
    snaps = SnapshotSchedule(
        display.figure,
        snapshot_path(config_dict, "histograms", buffer),
        float(c.get("snapshot_interval", DEFAULT_INTERVAL)) if not host.interactive else 0,
    )
    logger.info(
        "histograms of %s (%s) %s",
        buffer,
        "every event" if feed.every_event else "a sample",
        "in a window" if host.interactive else f"to {snaps.path}",
    )
    next_draw = 0.0
    try:
        while not feed.ended.wait(0.1):
            now = time.monotonic()
            if now >= next_draw:
                display.fill(feed.take())
                if host.interactive and not host.closed:
                    display.update()
                    host.refresh()
                next_draw = now + interval
            else:
                host.process_events()
            if snaps.due():
                display.update()
                snaps.save()
        # the window may be closed: the feed goes on reading, so the buffer is never held up
        feed.join(5.0)
        if feed.error is not None:
            raise feed.error
        display.fill(feed.take())
        display.update(force_fit=True)
    finally:
        snaps.save()
        host.close()
        feed.close()
    n = feed.events
    logger.info("histograms of %s ended after %d events", buffer, n)
    return n
