"""Fast simulation of the muon-decay demo waveforms.

The physics follows ``docs/muon-demo.md``: a cosmic muon crosses a stack of four
scintillator layers (``chA``, ``chB`` upper, ``chC``, ``chD`` lower). Each layer fires
with probability ``prbInteraction``. With probability ``prb2ndPulse`` the muon stops in
the absorber between the upper and lower layers: its first pulse is then seen in the
upper layers only, and it decays after an exponentially distributed time (mean
2197 ns). The decay electron goes up (``chA``, ``chB``) with probability
``0.5 + A cos(2 pi t / T)`` and down (``chC``, ``chD``) otherwise (spin precession,
``A = 0.03``, ``T = 0.85 x 2197 ns``).

Speed: the 1.x simulator drew fresh noise for every sample and used scalar random
draws. Here

* the pulse shape is a precomputed float32 template, added only in a window of
  ``pulseWindow`` samples per pulse;
* the noise comes from a pool of pre-generated uniform noise (including the analogue
  offset). Each channel of each event copies a slice starting at an independent random
  offset, and a chunk of the pool is redrawn at every event, so the pool is renewed
  continuously and events do not repeat;
* all per-event random numbers (stop/cross, efficiencies, heights, decay time,
  direction) are drawn vectorised for a block of events at a time.

The simulator call never sleeps: :meth:`pulseSimulator.wait_time` gives the time to
wait before the next event, which the source function sleeps.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping, Optional, Sequence

import numpy as np

logger = logging.getLogger(__name__)

#: Mean muon lifetime at rest in ns.
TAU_MU_NS = 2197.0
#: Spin precession period in ns (demo value).
T_SPIN_NS = 0.85 * TAU_MU_NS
#: Relative amplitude of the up/down asymmetry.
A_SPIN = 0.03

_NOISE_POOL_SIZE = 1 << 22  # 16 MB of float32 noise
_NOISE_REFRESH = 2048  # samples of the pool redrawn at every event
_BLOCK = 1024  # events whose random numbers are drawn at once


@dataclass
class EventTruth:
    """What the simulator put into one event (for tests and studies).

    Attributes
    ----------
    stopped : bool
        True when the muon stopped (first pulse in the upper layers only) and decayed.
    decay_time_ns : float
        Decay time drawn for a stopped muon, ``nan`` otherwise.
    up : bool or None
        Direction of the decay electron (True = up, chA/chB), None when not stopped.
    second_in_window : bool
        True when the electron pulse fits in the recorded window.
    pulses : list of tuple
        ``(channel_index, position_in_samples, height_mV)`` of every pulse added, the
        first pulses first.
    """

    stopped: bool = False
    decay_time_ns: float = float("nan")
    up: Optional[bool] = None
    second_in_window: bool = False
    pulses: list = field(default_factory=list)


def _cfg(config: Mapping[str, Any], key: str, default: Any) -> Any:
    value = config.get(key, default)
    return default if value is None else value


class pulseSimulator:  # noqa: N801  (1.x class name)
    """Simulated digitiser waveforms of the muon-decay experiment (1.x interface).

    Parameters
    ----------
    config_dict : dict
        1.x configuration: ``number_of_samples``, ``sample_time_ns``,
        ``pre_trigger_samples``, ``analogue_offset`` (V), ``trigger_level`` (mV,
        offset included), and optionally ``pulseWindow`` (samples, 100),
        ``pulseHeight`` (mV, 250, or a list to draw from), ``pulseSpread`` (mV,
        default 30 % of the drawn height), ``prbInteraction`` (0.95), ``prb2ndPulse``
        (0.10), ``sleeptime`` (s, 0.1), ``random`` (bool, exponential spacing of
        events), and ``seed`` (int, for a reproducible sequence).

    Notes
    -----
    Call :meth:`init` with the buffer layout, then each call returns one event as a
    float32 array ``(number_of_channels, number_of_values)`` in mV. The truth of the
    last event is in :attr:`last_truth`.
    """

    def __init__(self, config_dict: Mapping[str, Any]) -> None:
        cfg = dict(config_dict)
        for key in ("sample_time_ns", "pre_trigger_samples", "analogue_offset"):
            if key not in cfg:
                raise KeyError(f"pulseSimulator: config key '{key}' is required, got keys {sorted(cfg)}")
        self.number_of_samples = int(_cfg(cfg, "number_of_samples", 0))
        self.sample_time_ns = float(cfg["sample_time_ns"])
        if self.sample_time_ns <= 0:
            raise ValueError(f"pulseSimulator: sample_time_ns must be > 0, got {self.sample_time_ns}")
        self.pre_trigger_samples = int(cfg["pre_trigger_samples"])
        self.analogue_offset_mv = float(cfg["analogue_offset"]) * 1000.0
        trigger = cfg.get("trigger_level")
        # trigger threshold relative to the baseline
        self.trigger_threshold = 0.0 if trigger is None else float(trigger) - self.analogue_offset_mv
        self.sleeptime = float(_cfg(cfg, "sleeptime", 0.1))
        self.random = bool(_cfg(cfg, "random", False))
        self.plen = int(_cfg(cfg, "pulseWindow", 100))
        if self.plen < 4:
            raise ValueError(f"pulseSimulator: pulseWindow must be >= 4 samples, got {self.plen}")
        heights = _cfg(cfg, "pulseHeight", 250.0)
        self.pulse_heights = np.atleast_1d(np.asarray(heights, dtype=np.float64))
        if self.pulse_heights.size == 0:
            raise ValueError("pulseSimulator: pulseHeight must be a number or a non-empty list, got []")
        spread = cfg.get("pulseSpread")
        self.pulse_spread = None if spread is None else float(spread)
        self.detector_efficiency = float(_cfg(cfg, "prbInteraction", 0.95))
        self.stopping_probability = float(_cfg(cfg, "prb2ndPulse", 0.10))
        for name, p in (("prbInteraction", self.detector_efficiency), ("prb2ndPulse", self.stopping_probability)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"pulseSimulator: {name} must be a probability in [0, 1], got {p}")
        self.noise = float(self.pulse_heights.mean()) / 30.0  # full width of the uniform noise
        self.seed = cfg.get("seed")
        self.rng = np.random.default_rng(self.seed)
        self.tau_mu = TAU_MU_NS
        self.T_spin = T_SPIN_NS
        self.A_spin = A_SPIN
        self.last_truth: Optional[EventTruth] = None
        self._initialised = False

    # ------------------------------------------------------------------ setup
    def init(
        self,
        number_of_channels: Optional[int] = None,
        number_of_values: Optional[int] = None,
        channel_names: Optional[Sequence[str]] = None,
    ) -> None:
        """Set the event layout (from the buffer configuration) and prepare tables.

        Parameters
        ----------
        number_of_channels : int, optional
            Channels per event (default: ``len(channel_names)`` or 4).
        number_of_values : int, optional
            Samples per channel (default: ``number_of_samples`` of the config).
        channel_names : sequence of str, optional
            Names of the channels, kept for the caller.
        """
        if number_of_channels is None:
            number_of_channels = len(channel_names) if channel_names is not None else 4
        if number_of_values is None:
            number_of_values = self.number_of_samples
        self.number_of_channels = int(number_of_channels)
        self.number_of_values = int(number_of_values)
        self.channel_names = list(channel_names) if channel_names is not None else None
        if self.number_of_channels < 1:
            raise ValueError(f"pulseSimulator: number_of_channels must be >= 1, got {self.number_of_channels}")
        if self.number_of_values < self.pre_trigger_samples + self.plen:
            raise ValueError(
                f"pulseSimulator: number_of_values must be >= pre_trigger_samples + pulseWindow = "
                f"{self.pre_trigger_samples + self.plen}, got {self.number_of_values}"
            )
        self.tau = self.plen / 4.0
        self.mn_position = self.pre_trigger_samples
        self.mx_position = self.number_of_values - self.plen
        self.pulse_template = np.exp(-np.arange(self.plen, dtype=np.float64) / self.tau).astype(np.float32)
        pool_size = max(_NOISE_POOL_SIZE, 8 * self.number_of_values)
        self._noise_pool = self.rng.random(pool_size, dtype=np.float32)
        self._noise_pool -= np.float32(0.5)
        self._noise_pool *= np.float32(self.noise)
        self._noise_pool += np.float32(self.analogue_offset_mv)
        self._refresh_pos = 0
        self._block: dict = {}
        self._block_index = _BLOCK
        self._initialised = True
        logger.debug(
            "pulseSimulator: %d channels x %d samples, noise width %.2f mV, trigger %.1f mV above baseline",
            self.number_of_channels,
            self.number_of_values,
            self.noise,
            self.trigger_threshold,
        )

    # ------------------------------------------------------------ randomness
    def _draw_heights(self, shape: tuple) -> np.ndarray:
        """Pulse heights: a value of the height list plus a Gaussian spread."""
        if self.pulse_heights.size == 1:
            base = np.full(shape, self.pulse_heights[0])
        else:
            base = self.rng.choice(self.pulse_heights, size=shape)
        spread = 0.3 * base if self.pulse_spread is None else self.pulse_spread
        return base + spread * self.rng.standard_normal(shape)

    def draw_decays(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Decay times (ns) and electron directions (True = up) of ``n`` stopped muons:
        ``t ~ exp(-t / tau)``, up with probability ``0.5 + A cos(2 pi t / T)`` (spin precession).
        The events use exactly these draws; a fit of the precession can be checked on them."""
        t_mu = self.rng.exponential(self.tau_mu, size=n)
        p_up = 0.5 + self.A_spin * np.cos(2.0 * np.pi * t_mu / self.T_spin)
        return t_mu, self.rng.random(n) < p_up

    def _new_block(self) -> None:
        """Draw the random numbers of the next ``_BLOCK`` events at once."""
        n = _BLOCK
        nch = self.number_of_channels
        rng = self.rng
        stopped = rng.random(n) < self.stopping_probability
        fired1 = rng.random((n, nch)) < self.detector_efficiency
        h1 = self._draw_heights((n, nch))
        # the trigger-channel pulse must cross the trigger level even with the noise on it
        need = self.trigger_threshold + 0.5 * self.noise
        bad = h1[:, 0] < need
        while bad.any():
            h1[bad, 0] = self._draw_heights((int(bad.sum()),))
            bad = h1[:, 0] < need
        t_mu, up = self.draw_decays(n)
        fired2 = rng.random((n, nch)) < self.detector_efficiency
        h2 = self._draw_heights((n, nch))
        pos2 = (t_mu / self.sample_time_ns).astype(np.int64) + self.pre_trigger_samples
        offsets = rng.integers(0, self._noise_pool.size - self.number_of_values, size=(n, nch))
        self._block = {
            "stopped": stopped,
            "fired1": fired1,
            "h1": h1.astype(np.float32),
            "t_mu": t_mu,
            "up": up,
            "fired2": fired2,
            "h2": h2.astype(np.float32),
            "pos2": pos2,
            "offsets": offsets,
        }
        self._block_index = 0

    def _refresh_noise(self) -> None:
        """Redraw the next chunk of the noise pool (the pool renews continuously)."""
        a = self._refresh_pos
        b = a + _NOISE_REFRESH
        chunk = self._noise_pool[a:b]
        self.rng.random(out=chunk, dtype=np.float32)
        chunk -= np.float32(0.5)
        chunk *= np.float32(self.noise)
        chunk += np.float32(self.analogue_offset_mv)
        self._refresh_pos = 0 if b >= self._noise_pool.size else b

    # ----------------------------------------------------------------- events
    def __call__(self, out: Optional[np.ndarray] = None) -> np.ndarray:
        """Simulate one event.

        Parameters
        ----------
        out : ndarray, optional
            float32 array ``(number_of_channels, number_of_values)`` to fill in place.

        Returns
        -------
        ndarray
            The event, float32, shape ``(number_of_channels, number_of_values)``, mV.
        """
        if not self._initialised:
            self.init(channel_names=None)
        nch = self.number_of_channels
        nval = self.number_of_values
        if out is None:
            out = np.empty((nch, nval), dtype=np.float32)
        elif out.shape != (nch, nval) or out.dtype != np.float32:
            raise ValueError(f"pulseSimulator: out must be float32 of shape {(nch, nval)}, got {out.dtype} {out.shape}")
        if self._block_index >= _BLOCK:
            self._new_block()
        i = self._block_index
        self._block_index += 1
        blk = self._block
        pool = self._noise_pool
        offs = blk["offsets"][i]
        for ch in range(nch):
            o = offs[ch]
            out[ch] = pool[o : o + nval]
        self._refresh_noise()

        template = self.pulse_template
        plen = self.plen
        truth = EventTruth()
        stopped = bool(blk["stopped"][i])
        n1 = min(2, nch) if stopped else nch
        p1 = self.mn_position
        fired1 = blk["fired1"][i]
        h1 = blk["h1"][i]
        for ch in range(n1):
            if fired1[ch]:
                out[ch, p1 : p1 + plen] += h1[ch] * template
                truth.pulses.append((ch, p1, float(h1[ch])))
        if stopped:
            truth.stopped = True
            truth.decay_time_ns = float(blk["t_mu"][i])
            up = bool(blk["up"][i])
            truth.up = up
            pos2 = int(blk["pos2"][i])
            if pos2 < self.mx_position:
                truth.second_in_window = True
                fired2 = blk["fired2"][i]
                h2 = blk["h2"][i]
                layers = range(0, min(nch, 2)) if up else range(min(nch, 2), min(nch, 4))
                for ch in layers:
                    if fired2[ch]:
                        out[ch, pos2 : pos2 + plen] += h2[ch] * template
                        truth.pulses.append((ch, pos2, float(h2[ch])))
        self.last_truth = truth
        return out

    # ---------------------------------------------------------------- timing
    def wait_time(self) -> float:
        """Time to wait before the next event, in seconds.

        Exponentially distributed with mean ``sleeptime`` if ``random`` is set, else
        ``sleeptime``. The simulator call itself never sleeps; the source does.
        """
        if self.random:
            return float(self.rng.exponential(self.sleeptime)) if self.sleeptime > 0 else 0.0
        return self.sleeptime

    def wait_times(self) -> Iterator[float]:
        """Endless generator of :meth:`wait_time` values."""
        while True:
            yield self.wait_time()
