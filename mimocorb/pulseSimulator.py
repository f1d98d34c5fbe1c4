"""1.x import path of the waveform simulator: ``from mimocorb.pulseSimulator import pulseSimulator``.

The implementation lives in :mod:`mimocorb.muon.simulator`.
"""

from mimocorb.muon.simulator import pulseSimulator

__all__ = ["pulseSimulator"]
