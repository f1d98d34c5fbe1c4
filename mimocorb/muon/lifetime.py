"""Maximum-likelihood fit of the muon lifetime from measured decay times.

Model on the fit range ``[t_min, t_max]`` (unbinned)::

    pdf(t) = (1 - f) * exp(-t / tau) / (tau * (exp(-t_min / tau) - exp(-t_max / tau)))
             + f / (t_max - t_min)

with the lifetime ``tau`` and the flat-background fraction ``f`` free. The error of
``tau`` comes from the curvature of the negative log-likelihood at its minimum (the
inverse of the numerical Hessian).

Default range: ``t_min = 500 ns``. Below a few hundred ns the two pulses overlap (the
pulse decays with 25 samples = 100 ns, and pulses closer than the 20-sample tolerance
merge), so the efficiency is not flat there; 500 ns is safely above that.
``t_max = 14000 ns``: the electron pulse must fit in the 17 us window
((4250 - 500 - 100) samples x 4 ns = 14.6 us).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from scipy.optimize import minimize

logger = logging.getLogger(__name__)

T_MIN_NS = 500.0
T_MAX_NS = 14000.0
MIN_EVENTS = 20


@dataclass
class LifetimeFit:
    """Result of :func:`fit_lifetime`.

    Attributes
    ----------
    tau : float
        Fitted lifetime (ns).
    tau_error : float
        Its standard error from the likelihood curvature (ns).
    background_fraction : float
        Fitted fraction of flat background on the fit range.
    background_error : float
        Its standard error (nan when fixed or at the boundary).
    n_used : int
        Decay times inside ``[t_min, t_max]``.
    n_total : int
        Decay times given.
    t_min, t_max : float
        Fit range (ns).
    nll : float
        Negative log-likelihood at the minimum.
    """

    tau: float
    tau_error: float
    background_fraction: float
    background_error: float
    n_used: int
    n_total: int
    t_min: float
    t_max: float
    nll: float

    @property
    def fit_range(self) -> tuple[float, float]:
        """``(t_min, t_max)`` in ns."""
        return self.t_min, self.t_max

    def pdf(self, t: np.ndarray) -> np.ndarray:
        """The fitted model's probability density (1/ns) on the fit range (see the module notes)."""
        return lifetime_pdf(np.asarray(t, dtype=np.float64), self.tau, self.background_fraction, self.t_min, self.t_max)

    def describe(self) -> str:
        """``tau = 2203 +- 52`` (ns, rounded)."""
        return f"tau = {self.tau:.0f} +- {self.tau_error:.0f}"


def lifetime_pdf(t: np.ndarray, tau: float, f: float, t_min: float, t_max: float) -> np.ndarray:
    """The model's probability density (1/ns) at ``t``: exponential of lifetime ``tau`` plus a flat
    fraction ``f``, each normalised on ``[t_min, t_max]`` (the formula of the module notes)."""
    norm = tau * (np.exp(-t_min / tau) - np.exp(-t_max / tau))
    return (1.0 - f) * np.exp(-t / tau) / norm + f / (t_max - t_min)


def _nll(params: np.ndarray, t: np.ndarray, t_min: float, t_max: float) -> float:
    tau, f = params
    if tau <= 0:
        return np.inf
    pdf = lifetime_pdf(t, tau, f, t_min, t_max)
    if np.any(pdf <= 0):
        return np.inf
    return -float(np.sum(np.log(pdf)))


def _hessian(fun, x: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Central finite-difference Hessian."""
    n = len(x)
    h = np.zeros((n, n))
    f0 = fun(x)
    for i in range(n):
        ei = np.zeros(n)
        ei[i] = steps[i]
        h[i, i] = (fun(x + ei) - 2 * f0 + fun(x - ei)) / steps[i] ** 2
        for j in range(i + 1, n):
            ej = np.zeros(n)
            ej[j] = steps[j]
            h[i, j] = h[j, i] = (fun(x + ei + ej) - fun(x + ei - ej) - fun(x - ei + ej) + fun(x - ei - ej)) / (
                4 * steps[i] * steps[j]
            )
    return h


def fit_lifetime(
    decay_times_ns: Sequence[float],
    t_min: float = T_MIN_NS,
    t_max: float = T_MAX_NS,
    fit_background: bool = True,
    tau_start: Optional[float] = None,
    min_events: int = MIN_EVENTS,
) -> LifetimeFit:
    """Unbinned maximum-likelihood fit of an exponential plus flat background.

    Parameters
    ----------
    decay_times_ns : sequence of float
        Measured decay times (ns); values outside ``[t_min, t_max]`` are ignored.
    t_min, t_max : float
        Fit range in ns (defaults 500 and 14000 ns, see the module notes).
    fit_background : bool
        Fit the flat-background fraction (default) or fix it to 0.
    tau_start : float, optional
        Start value of ``tau`` (default: mean of ``t - t_min``).
    min_events : int
        Fewest decay times in range to attempt a fit (default 20).

    Returns
    -------
    LifetimeFit

    Raises
    ------
    ValueError
        For a bad range or fewer than ``min_events`` decay times in range.
    RuntimeError
        When the minimiser fails or the curvature is not positive.
    """
    if not (np.isfinite(t_min) and np.isfinite(t_max)) or not 0 <= t_min < t_max:
        raise ValueError(f"fit_lifetime: need 0 <= t_min < t_max, got t_min={t_min}, t_max={t_max}")
    t_all = np.asarray(decay_times_ns, dtype=np.float64).ravel()
    t = t_all[(t_all >= t_min) & (t_all <= t_max)]
    if t.size < min_events:
        raise ValueError(
            f"fit_lifetime: need at least {min_events} decay times in [{t_min}, {t_max}] ns, "
            f"got {t.size} (of {t_all.size})"
        )
    tau0 = float(tau_start) if tau_start is not None else max(float(np.mean(t - t_min)), 1.0)

    # the minimiser works on unbounded variables: tau = tau0 * exp(a), f = 1 / (1 + exp(-b))

    def fun(p: np.ndarray) -> float:
        return _nll(np.array([p[0], p[1] if fit_background else 0.0]), t, t_min, t_max)

    def fun_free(q: np.ndarray) -> float:
        a = float(np.clip(q[0], -50.0, 50.0))
        f = 1.0 / (1.0 + np.exp(-float(np.clip(q[1], -50.0, 50.0)))) if fit_background else 0.0
        return _nll(np.array([tau0 * np.exp(a), f]), t, t_min, t_max)

    q0 = np.array([0.0, -3.0]) if fit_background else np.array([0.0])
    res = minimize(fun_free, q0, method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-7, "maxiter": 4000})
    if fit_background:
        res.x = np.array([tau0 * np.exp(res.x[0]), 1.0 / (1.0 + np.exp(-res.x[1]))])
    else:
        res.x = np.array([tau0 * np.exp(res.x[0])])
    if not res.success and not np.isfinite(res.fun):
        raise RuntimeError(f"fit_lifetime: minimisation failed: {res.message}")
    best = res.x.copy()
    tau = float(best[0])
    f = float(best[1]) if fit_background else 0.0

    steps = np.array([1e-3 * tau] + ([1e-4] if fit_background else []))
    at_bound = fit_background and (f < 2e-4 or f > 1 - 2e-4)
    if at_bound:
        # background at its limit: curvature in tau alone, background fixed there

        def fun_tau(p: np.ndarray) -> float:
            return _nll(np.array([p[0], f]), t, t_min, t_max)

        hess = _hessian(fun_tau, best[:1], steps[:1])
        cov = np.linalg.inv(hess) if hess[0, 0] > 0 else np.full((1, 1), np.nan)
        f_err = float("nan")
    else:
        hess = _hessian(fun, best, steps)
        try:
            cov = np.linalg.inv(hess)
        except np.linalg.LinAlgError as exc:
            raise RuntimeError(f"fit_lifetime: singular likelihood curvature at tau={tau:.1f} ns") from exc
        f_err = float(np.sqrt(cov[1, 1])) if fit_background and cov[1, 1] > 0 else float("nan")
    if not cov[0, 0] > 0:
        raise RuntimeError(f"fit_lifetime: likelihood curvature not positive at tau={tau:.1f} ns")
    result = LifetimeFit(
        tau=tau,
        tau_error=float(np.sqrt(cov[0, 0])),
        background_fraction=f,
        background_error=f_err,
        n_used=int(t.size),
        n_total=int(t_all.size),
        t_min=float(t_min),
        t_max=float(t_max),
        nll=float(res.fun),
    )
    logger.debug("fit_lifetime: %s", result)
    return result


def fit_lifetime_in_range(decay_times_ns: Sequence[float], low: float, high: float) -> LifetimeFit:
    """:func:`fit_lifetime` over the part of ``[low, high]`` inside the default fit range.

    The signature of a fit that a histogram display is given (``fit(values, low, high)``, the
    histogram's range): the default range keeps the fit above the region where the two
    pulses overlap (see the module notes)."""
    return fit_lifetime(decay_times_ns, t_min=max(T_MIN_NS, low), t_max=min(T_MAX_NS, high))
