"""Physics of the muon-decay demo: waveform simulator, pulse finder, lifetime fit.

Pure NumPy/SciPy; nothing here needs the ring buffer.
"""

from __future__ import annotations

import os

#: Folder holding the demo configuration files (``simulation.yaml``,
#: ``calculate_decay_time.yaml``).
CONFIG_DIR = os.path.join(os.path.dirname(__file__), "config")

__all__ = ["CONFIG_DIR"]
