"""After a muon-demo run: fit the lifetime, draw the plots, extend ``summary.json``.

Reads from the run folder what the demo's exporters wrote -- ``decays.csv`` (one row
per accepted double pulse), ``decays_up.csv`` / ``decays_down.csv`` and
``waveforms.npy`` (raw waveforms of accepted events) -- and the run control's
``summary.json``. Fits the decay times with :func:`mimocorb.muon.lifetime.fit_lifetime`
(unbinned likelihood, exponential plus flat background), writes

- ``decay_time.png``: histogram of the decay times with the fitted curve,
- ``pulse_heights.png``: spectra of the first and second pulse heights per channel,
- ``double_pulse.png``: one accepted event's waveforms,
- ``precession.png``: the fraction of decay electrons going up against the decay time,
  with the fitted spin precession (:func:`mimocorb.muon.precession.fit_precession`,
  from the directions in ``decays_up.csv`` / ``decays_down.csv``; made when there are
  enough decays, see :data:`PRECESSION_5_SIGMA`),

(with matplotlib's Agg backend; without matplotlib the plots are skipped) and adds to
``summary.json`` the keys ``events``, ``accepted``, ``tau_ns``, ``tau_err_ns``,
``rate_hz`` and a ``muon`` block with the details (the precession fit included).
"""

from __future__ import annotations

import csv
import json
import logging
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from mimocorb.daq.run_folder import SUMMARY_FILE
from mimocorb.muon.lifetime import T_MAX_NS, T_MIN_NS, LifetimeFit, fit_lifetime
from mimocorb.muon.precession import MIN_EVENTS as PRECESSION_MIN_EVENTS
from mimocorb.muon.precession import PrecessionFit, fit_precession

logger = logging.getLogger(__name__)

DECAYS_FILE = "decays.csv"
UP_FILE = "decays_up.csv"
DOWN_FILE = "decays_down.csv"
WAVEFORMS_FILE = "waveforms.npy"
PLOT_DECAY_TIME = "decay_time.png"
PLOT_PULSE_HEIGHTS = "pulse_heights.png"
PLOT_WAVEFORM = "double_pulse.png"
PLOT_PRECESSION = "precession.png"
#: Decays in the fit range from which the simulated asymmetry (A = 0.03) stands about 5
#: standard deviations above no oscillation (its error is about 1 / sqrt(2 n)).
PRECESSION_5_SIGMA = 14_000
#: Buffer whose event count and rate are the run's (the raw events).
RAW_BUFFER = "RB_1"
CHANNELS = ("chA", "chB", "chC", "chD")


@dataclass
class MuonResult:
    """What :func:`analyse_run` found.

    Attributes
    ----------
    events : int
        Raw events taken (published to the raw buffer).
    accepted : int
        Accepted double pulses (rows of ``decays.csv``).
    up, down : int or None
        Decays with the electron going up / down (None when the file is missing).
    rate_hz : float
        Rate of raw events while data were taken: from the event numbers and times of
        the first and last accepted event (the run's mean rate when fewer than two).
    mean_rate_hz : float
        Raw events over the whole active run time (start-up and end included).
    fit : LifetimeFit or None
        The lifetime fit (None when it could not be made; see ``fit_error``).
    fit_error : str
        Why there is no fit.
    plots : list of str
        File names of the plots written.
    plot_error : str
        Why plots are missing (e.g. no matplotlib).
    precession : PrecessionFit or None
        The spin-precession fit of the electron directions against the decay times.
    precession_note : str
        Why there is no precession fit, or how far it is from significant.
    """

    run_folder: str
    events: int
    accepted: int
    up: Optional[int]
    down: Optional[int]
    rate_hz: float
    mean_rate_hz: float
    fit: Optional[LifetimeFit]
    fit_error: str = ""
    plots: list = field(default_factory=list)
    plot_error: str = ""
    precession: Optional[PrecessionFit] = None
    precession_note: str = ""

    @property
    def tau_ns(self) -> Optional[float]:
        return None if self.fit is None else self.fit.tau

    @property
    def tau_err_ns(self) -> Optional[float]:
        return None if self.fit is None else self.fit.tau_error

    def summary_keys(self) -> dict[str, Any]:
        """The keys added to ``summary.json``."""
        fit = None if self.fit is None else {k: _clean(v) for k, v in asdict(self.fit).items()}
        prec = None if self.precession is None else {k: _clean(v) for k, v in asdict(self.precession).items()}
        return {
            "events": self.events,
            "accepted": self.accepted,
            "tau_ns": _clean(self.tau_ns),
            "tau_err_ns": _clean(self.tau_err_ns),
            "rate_hz": _clean(self.rate_hz),
            "muon": {
                "accepted_fraction": _clean(self.accepted / self.events) if self.events else None,
                "mean_rate_hz": _clean(self.mean_rate_hz),
                "up": self.up,
                "down": self.down,
                "fit": fit,
                "fit_error": self.fit_error or None,
                "plots": list(self.plots),
                "plot_error": self.plot_error or None,
                "precession": prec,
                "precession_note": self.precession_note or None,
            },
        }


def _clean(v: Any) -> Any:
    """JSON-safe number: NaN and inf become None."""
    if isinstance(v, (float, np.floating)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def format_result(r: MuonResult) -> list[str]:
    """Text lines of the result, the first one ``tau = <value> +- <error> ns`` when there is a fit."""
    lines = []
    if r.fit is not None:
        f = r.fit
        lines.append(f"tau = {f.tau:.0f} +- {f.tau_error:.0f} ns")
        lines.append(
            f"  from {f.n_used} decay times in [{f.t_min:g}, {f.t_max:g}] ns (of {r.accepted} accepted), "
            f"flat background {100 * f.background_fraction:.1f} %"
        )
    else:
        lines.append(f"no lifetime fit: {r.fit_error}")
    frac = f" ({100 * r.accepted / r.events:.2f} %)" if r.events else ""
    lines.append(f"  events {r.events}, accepted double pulses {r.accepted}{frac}")
    lines.append(f"  rate {r.rate_hz:.0f} Hz while taking data ({r.mean_rate_hz:.0f} Hz over the whole run)")
    if r.up is not None and r.down is not None:
        lines.append(f"  electron up {r.up}, down {r.down}")
    if r.precession is not None:
        lines.append(f"precession: {r.precession.summary()}")
    if r.precession_note:
        lines.append(f"  precession: {r.precession_note}")
    if r.plots:
        lines.append(f"  plots: {', '.join(r.plots)}")
    if r.plot_error:
        lines.append(f"  no plots: {r.plot_error}")
    return lines


# ------------------------------------------------------------------ reading
def read_decays(path: Path) -> dict[str, np.ndarray]:
    """Columns of an exported decay table (``decays.csv``), as float arrays by header name."""
    with open(path, newline="") as f:
        sample = f.readline()
        f.seek(0)
        sep = "," if sample.count(",") >= sample.count("\t") else "\t"
        rows = list(csv.reader(f, delimiter=sep))
    if not rows:
        raise ValueError(f"{path}: empty file, expected a header line")
    header, body = rows[0], [r for r in rows[1:] if len(r) == len(rows[0])]
    data = np.array(body, dtype=np.float64).reshape(len(body), len(header))
    return {name: data[:, i] for i, name in enumerate(header)}


def _count_rows(path: Path) -> Optional[int]:
    if not path.is_file():
        return None
    with open(path) as f:
        return max(sum(1 for _ in f) - 1, 0)


def _taking_rate(decays: dict[str, np.ndarray]) -> Optional[float]:
    """Raw events per second between the first and the last accepted event (their counters and times)."""
    counter, ts = decays.get("counter"), decays.get("timestamp")
    if counter is None or ts is None or counter.size < 2:
        return None
    i, j = int(np.argmin(counter)), int(np.argmax(counter))
    dt = ts[j] - ts[i]
    return float((counter[j] - counter[i]) / dt) if dt > 0 else None


def _load_summary(folder: Path) -> dict:
    try:
        return json.loads((folder / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return {}


# ------------------------------------------------------------------ plots
def _plots(
    folder: Path,
    decays: dict[str, np.ndarray],
    fit: Optional[LifetimeFit],
    directions: Optional[tuple[np.ndarray, np.ndarray]] = None,
    precession: Optional[PrecessionFit] = None,
) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    written = []
    t = decays.get("decay_time", np.empty(0))

    # decay-time histogram with the fitted curve
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    edges = np.linspace(0.0, 15000.0, 61)
    ax.hist(t, bins=edges, histtype="stepfilled", alpha=0.5, label=f"decay times ({t.size})")
    if fit is not None:
        x = np.linspace(fit.t_min, fit.t_max, 400)
        ax.plot(x, fit.n_used * (edges[1] - edges[0]) * fit.pdf(x), "r-", label=f"fit: {fit.describe()} ns")
        ax.axvline(fit.t_min, color="grey", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xlabel("decay time (ns)")
    ax.set_ylabel(f"entries / {edges[1] - edges[0]:.0f} ns")
    ax.set_title("Muon decay times")
    ax.legend()
    fig.savefig(folder / PLOT_DECAY_TIME, dpi=100)
    written.append(PLOT_DECAY_TIME)

    # pulse-height spectra
    fig = Figure(figsize=(10, 6))
    axes = fig.subplots(2, 1, sharex=True)
    bins = np.linspace(0.0, 700.0, 71)
    for ax, k in zip(axes, ("1st", "2nd")):
        for ch in CHANNELS:
            h = decays.get(f"{k}_{ch}_h")
            p = decays.get(f"{k}_{ch}_p")
            if h is None or p is None:
                continue
            h = h[p >= 0]  # channels without a pulse have position -1
            ax.hist(h, bins=bins, histtype="step", label=f"{ch} ({h.size})")
        ax.set_ylabel("entries")
        ax.set_title(f"{k} pulse heights")
        ax.legend(fontsize="small")
    axes[-1].set_xlabel("pulse height above baseline (mV)")
    fig.tight_layout()
    fig.savefig(folder / PLOT_PULSE_HEIGHTS, dpi=100)
    written.append(PLOT_PULSE_HEIGHTS)

    # one double pulse
    wf_path = folder / WAVEFORMS_FILE
    if wf_path.is_file():
        records = np.load(wf_path, mmap_mode="r")
        if records.size:
            rec = records[0]
            data = rec["data"]
            names = data.dtype.names or ("data",)
            fig = Figure(figsize=(10, 5))
            ax = fig.add_subplot()
            x = np.arange(data.shape[0])
            for ch in names:
                ax.plot(x, data[ch] if data.dtype.names else data, lw=0.7, label=ch)
            ax.set_xlabel("sample (4 ns)")
            ax.set_ylabel("mV")
            ax.set_title(f"accepted double pulse, event {int(rec['counter'])}")
            ax.legend(fontsize="small")
            fig.savefig(folder / PLOT_WAVEFORM, dpi=100)
            written.append(PLOT_WAVEFORM)

    # fraction of electrons going up against the decay time, with the precession fit
    if directions is not None and precession is not None:
        t_all, up_all = directions
        edges = np.linspace(precession.t_min, precession.t_max, 41)
        n_all, _ = np.histogram(t_all, bins=edges)
        n_up, _ = np.histogram(t_all[up_all], bins=edges)
        ok = n_all > 0
        frac = np.divide(n_up, n_all, out=np.zeros(n_all.shape), where=ok)
        err = np.sqrt(np.clip(frac * (1 - frac), 0.25 / np.maximum(n_all, 1), None) / np.maximum(n_all, 1))
        mid = 0.5 * (edges[1:] + edges[:-1])
        fig = Figure(figsize=(8, 5))
        ax = fig.add_subplot()
        ax.errorbar(mid[ok], frac[ok], yerr=err[ok], fmt="o", ms=3, label=f"decays ({precession.n_used})")
        x = np.linspace(precession.t_min, precession.t_max, 800)
        ax.plot(x, precession.p_up(x), "r-", label=f"fit: {precession.summary().split(' (')[0]}")
        ax.set_xlabel("decay time (ns)")
        ax.set_ylabel("fraction of electrons going up")
        ax.set_title("Spin precession: up/down asymmetry of the decay electrons")
        ax.legend(fontsize="small")
        fig.savefig(folder / PLOT_PRECESSION, dpi=100)
        written.append(PLOT_PRECESSION)
    return written


def _directions(folder: Path) -> Optional[tuple[np.ndarray, np.ndarray]]:
    """Decay times and directions (True: up) from ``decays_up.csv`` and ``decays_down.csv``."""
    if not (folder / UP_FILE).is_file() or not (folder / DOWN_FILE).is_file():
        return None
    t_up = read_decays(folder / UP_FILE).get("decay_time", np.empty(0))
    t_down = read_decays(folder / DOWN_FILE).get("decay_time", np.empty(0))
    t = np.concatenate([t_up, t_down])
    up = np.concatenate([np.ones(t_up.size, bool), np.zeros(t_down.size, bool)])
    return t, up


def _precession(
    directions: Optional[tuple[np.ndarray, np.ndarray]], t_min: float, t_max: float
) -> tuple[Optional[PrecessionFit], str]:
    """The precession fit and a note: why there is none, or how far it is from significant."""
    if directions is None:
        return None, f"no fit: {UP_FILE} and {DOWN_FILE} are needed (the electron directions)"
    t, up = directions
    n = int(np.count_nonzero((t >= t_min) & (t <= t_max)))
    more = f"about {PRECESSION_5_SIGMA:,} decays in the fit range show A = 0.03 at 5 sigma"
    if n < PRECESSION_MIN_EVENTS:
        return None, f"no fit: {n} decays in [{t_min:g}, {t_max:g}] ns ({more})"
    try:
        fit = fit_precession(t, up, t_min=t_min, t_max=t_max)
    except (ValueError, RuntimeError) as exc:
        return None, f"no fit: {exc}"
    if fit is None:
        return None, f"no fit converged with {n} decays ({more})"
    note = "" if n >= PRECESSION_5_SIGMA else f"only {n:,} decays: not yet significant ({more})"
    return fit, note


# ------------------------------------------------------------------ the work
def analyse_run(
    run_folder: str | Path,
    *,
    t_min: float = T_MIN_NS,
    t_max: float = T_MAX_NS,
    plots: bool = True,
    update_summary: bool = True,
    raw_buffer: str = RAW_BUFFER,
) -> MuonResult:
    """Fit the lifetime, draw the plots and extend ``summary.json`` of a demo run folder.

    Parameters
    ----------
    run_folder : path
        The run folder (holding ``decays.csv`` and ``summary.json``).
    t_min, t_max : float
        Fit range in ns.
    plots : bool
        Write the PNG plots (skipped, with a note in the result, without matplotlib).
    update_summary : bool
        Add the result to ``summary.json``.
    raw_buffer : str
        Buffer of the raw events (event count and rate); when the summary has no such
        buffer, the one with the most events is taken.

    Raises
    ------
    FileNotFoundError
        When the folder has no ``decays.csv``.
    """
    folder = Path(run_folder)
    decays_path = folder / DECAYS_FILE
    if not decays_path.is_file():
        raise FileNotFoundError(f"{decays_path} not found: is {folder} the run folder of a muon demo run?")
    decays = read_decays(decays_path)
    t = decays.get("decay_time", np.empty(0))
    summary = _load_summary(folder)
    buffers = summary.get("buffers", {})
    raw = buffers.get(raw_buffer) or (max(buffers.values(), key=lambda b: b.get("events", 0)) if buffers else {})
    events = int(raw.get("events", 0))
    mean_rate = float(raw.get("mean_rate_hz", 0.0))
    rate = _taking_rate(decays) or mean_rate

    fit, fit_error = None, ""
    try:
        fit = fit_lifetime(t, t_min=t_min, t_max=t_max)
    except (ValueError, RuntimeError) as exc:
        fit_error = str(exc)
        logger.warning("no lifetime fit: %s", exc)
    result = MuonResult(
        run_folder=str(folder),
        events=events,
        accepted=int(t.size),
        up=_count_rows(folder / UP_FILE),
        down=_count_rows(folder / DOWN_FILE),
        rate_hz=rate,
        mean_rate_hz=mean_rate,
        fit=fit,
        fit_error=fit_error,
    )
    directions = _directions(folder)
    result.precession, result.precession_note = _precession(directions, t_min, t_max)
    if plots:
        try:
            result.plots = _plots(folder, decays, fit, directions, result.precession)
        except ImportError:
            result.plot_error = "matplotlib is not installed (pip install 'mimocorb[demo]')"
    if update_summary and (folder / SUMMARY_FILE).is_file():
        summary.update(result.summary_keys())
        tmp = folder / (SUMMARY_FILE + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        tmp.replace(folder / SUMMARY_FILE)
    return result


__all__ = ["MuonResult", "analyse_run", "format_result", "read_decays"]
