"""Packaged sinks: worker functions that store (or drop) the events of a buffer.

A setup file names them without a module of its own::

    - Fkt_3: {file_name: mimocorb.exporters, fkt_name: save_to_txt, RB_assign: {RB_2: read},
              config_file: config/decays.yaml}

==================  ===========================================  ======================================
function            writes                                       module (format, config keys)
==================  ===========================================  ======================================
``drain``           nothing: reads and discards every event      :mod:`~mimocorb.exporters.drain`
``save_to_txt``     a text table ``<filename>.txt`` / ``.csv``   :mod:`~mimocorb.exporters.text`
``save_parquet``    a Parquet file ``<filename>.parquet`` (or    :mod:`~mimocorb.exporters.parquet`
                    1.x's tar archive ``<filename>.tar``)
``save_waveforms``  a ``.npy`` file of whole slots               :mod:`~mimocorb.exporters.waveforms`
``save_hdf5``       an HDF5 file ``<filename>.h5``               :mod:`~mimocorb.exporters.hdf5`
``save_root``       a ROOT file ``<filename>.root`` (a TTree)    :mod:`~mimocorb.exporters.root`
==================  ===========================================  ======================================

Each reads the first buffer of its ``RB_assign`` (``read``) and writes into the run folder;
with ``num_process: N > 1`` the N processes share the events and each writes its own
complete file ``<filename>-<k>.<suffix>`` (together they hold every event once). An
existing file is never overwritten, every file is flushed at least once a second (also
while no event comes) and holds its header from the moment it appears, and each file and
its number of events is listed in the run's ``summary.json``. The 1.x access classes
behind them (``rb_toTxtfile``, ``rb_toParquetfile``, ``rb_toWaveformfile``) are importable
from :mod:`mimocorb.buffer_control`; what they share is :mod:`mimocorb.exporters.files`.

Each file sink carries ``check_config(config_dict, sink_setups, source_setups)``, which
the setup check calls before anything starts (a bad key is a setup error). The
libraries of the formats (pyarrow, h5py, uproot) are imported only when a file is
opened, with an error naming the pip extra when one is missing.

A new format is a module here with its writer, its access class and its worker function
(with its ``check_config``), named in ``__all__`` below.
"""

from mimocorb.exporters.drain import drain
from mimocorb.exporters.hdf5 import save_hdf5
from mimocorb.exporters.parquet import save_parquet
from mimocorb.exporters.root import save_root
from mimocorb.exporters.text import save_to_txt
from mimocorb.exporters.waveforms import save_waveforms

__all__ = ["drain", "save_hdf5", "save_parquet", "save_root", "save_to_txt", "save_waveforms"]
