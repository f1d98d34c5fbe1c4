"""The muon physics library: waveform simulator, peak search, pulse finder, lifetime fit.

Pure NumPy/SciPy (and an optional compiled peak scan): nothing here imports the ring
buffer, the DAQ, the displays or the command line. The muon demo application built on
it is :mod:`mimocorb.demo`.
"""

from __future__ import annotations

import os

#: Folder holding the library's default configuration files (``simulation.yaml``,
#: ``calculate_decay_time.yaml``).
CONFIG_DIR = os.path.join(os.path.dirname(__file__), "config")

__all__ = ["CONFIG_DIR"]
