"""Simulated muon waveforms and trigger times for the instrument simulators.

The waveforms come from the muon demo's simulator (:class:`mimocorb.muon.simulator.pulseSimulator`):
cosmic muons crossing four detector layers, some stopping and decaying. A simulated
instrument channel ``n`` (1, 2, ...) shows layer ``n - 1`` (chA, chB, ...). With a
``seed`` the sequence of events is reproducible, so a test can compute what an
instrument sent. Triggers come at ``rate`` per second after arming (exponentially
spaced, as a detector's, or as a pulser's: on a fixed grid of 1/rate, the next
grid point after arming).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np

from mimocorb.muon.simulator import pulseSimulator


@dataclass
class WaveformSettings:
    """What the simulated detector and digitiser do.

    Attributes
    ----------
    channels : int
        Instrument channels (2 for a Red Pitaya, 4 for a bench scope).
    samples : int
        Samples per channel and event (the instrument may be asked for fewer).
    sample_time_ns : float
        Time between two samples.
    pre_trigger_samples : int
        Samples before the trigger.
    rate : float
        Triggers per second after arming (mean, if ``random``).
    random : bool
        Exponential waits after arming (True) or a pulser (the next tick of a clock at ``rate``).
    seed : int or None
        Seed of the waveforms and the waits.
    """

    channels: int = 2
    samples: int = 16384
    sample_time_ns: float = 8.0
    pre_trigger_samples: int = 1000
    rate: float = 100.0
    random: bool = True
    seed: Optional[int] = None


class WaveformStream:
    """One simulated muon event per trigger, in mV (float32, shape ``(channels, samples)``)."""

    def __init__(self, settings: WaveformSettings):
        self.settings = settings
        layers = max(4, settings.channels)
        self._sim = pulseSimulator(
            {
                "number_of_samples": settings.samples,
                "sample_time_ns": settings.sample_time_ns,
                "pre_trigger_samples": settings.pre_trigger_samples,
                "analogue_offset": -0.48,
                "trigger_level": -440,
                "seed": settings.seed,
            }
        )
        self._sim.init(layers, settings.samples)
        self._event = np.empty((layers, settings.samples), dtype=np.float32)
        self._rng = np.random.default_rng(None if settings.seed is None else settings.seed + 1)
        self._t0 = now()

    def next_event(self) -> np.ndarray:
        """The next event's waveforms (a view, valid until the next call)."""
        self._sim(self._event)
        return self._event[: self.settings.channels]

    def trigger_time(self, t_armed: float) -> float:
        """When an acquisition armed at ``t_armed`` (``time.monotonic()``) triggers."""
        rate = self.settings.rate
        if rate <= 0:
            return float("inf")
        if self.settings.random:
            return t_armed + self._rng.exponential(1.0 / rate)
        return self._t0 + math.ceil((t_armed - self._t0) * rate) / rate


def now() -> float:
    """The simulators' clock (monotonic seconds)."""
    return time.monotonic()
