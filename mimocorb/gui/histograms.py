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
many fell outside the range).

A histogram can also show a running fit: displays know no fit of their own, they are
*given* fits (:func:`parse_histograms`, :func:`run_histograms`: ``fits``, a mapping of
names to callables, and ``default_fits``, field -> fit name). ``fit: <name>`` picks one
of them; ``fit: package.module:function`` names any importable callable. A fit is called
as ``fit(values, low, high)`` (the histogram's range) every few seconds in the display
process and returns a result with ``fit_range`` ``(lo, hi)``, ``pdf(x)`` (a density
normalised on that range), ``n_used`` and ``describe()`` (a line of text such as
``tau = 2203 +- 52``); it raises ValueError or RuntimeError while it cannot fit (too few
values yet). The 1.x ``histogram_buffer`` gives the muon lifetime fit
(:func:`mimocorb.muon.lifetime.fit_lifetime_in_range`) as ``lifetime``, by default for a
``decay_time`` field; the curve is drawn over the histogram with the fit's text.

The histograms read the buffer in a thread (:class:`~mimocorb.gui.feeds.EventFeed`):
with ``RB_x: read`` in the setup they are a reader group and see every event (the
events of a histogrammed buffer are a few numbers, so this costs microseconds per
event and the buffer never waits for a drawing); with ``RB_x: observe`` they see a
sample. Headless they write ``histograms-<buffer>.png`` into the run folder every few
seconds and at the end.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
from matplotlib.figure import Figure

from mimocorb.gui.feeds import EventFeed, display_input, yield_cpu
from mimocorb.gui.screen import FigureHost
from mimocorb.gui.snapshots import DEFAULT_INTERVAL, SnapshotSchedule, snapshot_path

logger = logging.getLogger(__name__)

#: Seconds between refits (a fit runs in the display process).
FIT_INTERVAL = 5.0

#: A fit a histogram is given: ``fit(values, low, high) -> result`` (see the module notes).
Fit = Callable[[np.ndarray, float, float], Any]


@dataclass
class HistogramSpec:
    """One histogram: the field, its range and binning, axis label, y scale, and the name of
    its fit with the callable it names (``fitter``)."""

    field: str
    low: float
    high: float
    bins: int
    label: str
    log: bool = False
    fit: Optional[str] = None
    fitter: Optional[Fit] = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def edges(self) -> np.ndarray:
        return np.linspace(self.low, self.high, self.bins + 1)


def _fitter(where: str, name: str, fits: Mapping[str, Fit]) -> Fit:
    """The callable a ``fit`` entry names: one of the ``fits`` given, or ``package.module:function``."""
    if name in fits:
        return fits[name]
    if isinstance(name, str) and ":" in name:
        module, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"{where}: fit {name!r} cannot be loaded: {exc}") from None
        if callable(fn):
            return fn
    known = " or ".join(repr(k) for k in fits) or "none given"
    raise ValueError(
        f"{where}: fit must be one of the fits given ({known}), 'package.module:function' or absent, got {name!r}"
    )


def parse_histograms(
    config_dict: Optional[dict],
    fields: Sequence[str],
    buffer: str = "",
    fits: Optional[Mapping[str, Fit]] = None,
    default_fits: Optional[Mapping[str, str]] = None,
) -> list[HistogramSpec]:
    """The histogram specs of a config (``histograms`` block, 1.x list form or dict form).

    Parameters
    ----------
    config_dict : dict
        The display's config.
    fields : sequence of str
        The buffer's fields.
    buffer : str
        The buffer's name, for errors.
    fits : mapping of str to callable, optional
        The fits this display is given, by name (see the module notes).
    default_fits : mapping of str to str, optional
        Field -> fit name, for histograms that name no fit.

    Raises
    ------
    ValueError
        For an unknown field or fit, a bad range or bin count, or a malformed entry; the
        message names the entry and says what would be right.
    """
    fits = dict(fits or {})
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
        if fit is None:
            fit = (default_fits or {}).get(name)
        fitter = _fitter(where, fit, fits) if fit else None
        specs.append(HistogramSpec(name, lo, hi, bins, str(label), log, fit or None, fitter))
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
        if self.spec.fitter is not None:
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
            (line,) = ax.plot([], [], color="tab:red", lw=1.5, label=f"{s.fit} fit")
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
            if h.spec.fitter is not None and (force_fit or now >= self._next_fit[i]):
                self._next_fit[i] = now + FIT_INTERVAL
                self._fit(i, h)
            fit = self.fits[i]
            if fit is not None:
                self._draw_fit(i, h, fit)
                lines.append(fit.describe())
                lines.append(f"(fit of {fit.n_used})")
            self.texts[i].set_text("\n".join(lines))

    def _fit(self, i: int, h: Histogram) -> None:
        try:
            fit = h.spec.fitter(h.values(), h.spec.low, h.spec.high)
        except (ValueError, RuntimeError) as exc:  # too few events yet, or a degenerate sample
            logger.debug("%s fit of %s: %s", h.spec.fit, h.spec.field, exc)
            return
        self.fits[i] = fit

    def _draw_fit(self, i: int, h: Histogram, fit: Any) -> None:
        """The fitted shape scaled to the entries in the fit range now (the fit itself is redone less often)."""
        lo, hi = fit.fit_range
        v = h.values()
        n_now = int(np.count_nonzero((v >= lo) & (v <= hi)))
        x = np.linspace(lo, hi, 200)
        width = (h.spec.high - h.spec.low) / h.spec.bins
        self.fit_lines[i].set_data(x, n_now * fit.pdf(x) * width)  # expected entries per bin


def run_histograms(
    source_list: Optional[Sequence[dict]],
    observe_list: Optional[Sequence[dict]],
    config_dict: Optional[dict],
    rb_info: dict,
    fits: Optional[Mapping[str, Fit]] = None,
    default_fits: Optional[Mapping[str, str]] = None,
) -> int:
    """Histogram the first source (every event) or observed buffer (a sample) until the end of the run.

    ``fits`` and ``default_fits``: the fits this display is given (see :func:`parse_histograms`).
    Returns the number of events histogrammed.
    """
    shown = display_input("histogram_buffer", source_list, observe_list, rb_info)
    setup, role, buffer = shown.setup, shown.role, shown.buffer
    c = dict(config_dict or {})
    specs = parse_histograms(c, shown.fields, buffer, fits, default_fits)
    title = str(c.get("title") or f"Histograms {buffer}")
    interval = max(0.2, float(c.get("interval", 2.0) or 2.0))
    # Yield the CPU to the DAQ. A reader group still gets its share (the scheduler
    # gives a niced process about a tenth of a busy core): plenty to copy the
    # fields of the events it histograms; its feed thread never waits for drawing.
    yield_cpu(int(c.get("nice", 10)), idle=role == "observe" and int(c.get("nice", 10)) > 0)
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
