"""Instrument simulators: TCP servers that speak an instrument's documented protocol.

They serve simulated muon waveforms, so the instrument sources can be tried and
tested without hardware, and they inject faults for the tests (a dropped connection,
a short or malformed data block, a trigger that never comes). Start one from the
command line::

    python -m mimocorb.sources.simulators scpi --family redpitaya --port 5000
    python -m mimocorb.sources.simulators scpi --family rigol_ds1000z --port 5555
    python -m mimocorb.sources.simulators mcpha --port 1001

or in Python (``with McphaSimulator(port=0) as sim: ... sim.port``).
"""

from mimocorb.sources.simulators.mcpha_server import McphaSimulator
from mimocorb.sources.simulators.scpi_server import ScpiSimulator
from mimocorb.sources.simulators.server import Faults, InstrumentServer
from mimocorb.sources.simulators.waveforms import WaveformSettings

__all__ = ["Faults", "InstrumentServer", "McphaSimulator", "ScpiSimulator", "WaveformSettings"]
