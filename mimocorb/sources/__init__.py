"""Packaged sources: worker functions that write the events of an instrument or a recording.

A setup file names them without a module of its own::

    - Fkt_1: {file_name: mimocorb.sources, fkt_name: scpi_scope, num_process: 1,
              RB_assign: {RB_1: write}, config_file: config/scope.yaml}

============================  ===============================================================
``scpi_scope``                SCPI oscilloscopes via PyVISA (Red Pitaya ``ACQ:``, Rigol DS1000Z)
``redpitaya_mcpha``           the Red Pitaya MCPHA server's oscilloscope (TCP port 1001)
``picoscope``                 PicoScope rapid block mode (ps2000a, ps3000a, ps4000a, ps5000a)
``replay``                    recorded runs: Parquet, waveform .npy, HDF5, 1.x tar archives
``simulator``                 the muon demo's simulated digitiser
============================  ===============================================================

Each function documents its configuration block and carries ``check_config(config_dict,
sink_setups)``, which raises ValueError before anything starts. The modules are
imported on first use (``scpi``, ``mcpha``, ``pico``, ``replayer``, ``simulated``; the
module names differ from the function names, so that importing a module never hides
its function), so that ``import mimocorb.sources`` loads no instrument library;
the libraries (pyvisa, picosdk, h5py, pyarrow) are imported only by the source that
needs them, with an error naming the pip extra when one is missing.
"""

from __future__ import annotations

from mimocorb._lazy import lazy_functions

_SOURCES = {
    "scpi_scope": "mimocorb.sources.scpi",
    "redpitaya_mcpha": "mimocorb.sources.mcpha",
    "picoscope": "mimocorb.sources.pico",
    "replay": "mimocorb.sources.replayer",
    "simulator": "mimocorb.sources.simulated",
}

__all__ = list(_SOURCES)

__getattr__, __dir__ = lazy_functions(__name__, _SOURCES)
