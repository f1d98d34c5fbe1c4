"""mimoCoRB 1.x module ``buffer_control``: the access classes and ``run_mimoDAQ``.

A thin facade: the work is done in :mod:`mimocorb.daq` (``access``, ``run_control``,
``setup_file``) and :mod:`mimocorb.exporters`. User worker functions have the signature
``fn(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info)``.

1.x's class ``buffer_control`` -- the buffers and worker processes that ``run_mimoDAQ``
made from the sections of the setup file -- is the run control now: the name is kept and
raises an error naming :class:`RunControl` / :func:`run_mimoDAQ`, which read the setup
file, check it completely before anything starts, and own buffers and workers.
"""

from pathlib import Path
from typing import Any, NoReturn, Union

from mimocorb.daq.access import (
    ResultMismatchError,
    rbDrain,
    rbExport,
    rbImport,
    rbObserver,
    rbProcess,
    rbPut,
    rbTransfer,
    rbWSObserver,
)
from mimocorb.daq.run_control import RunControl
from mimocorb.daq.setup_file import SetupFileError, load_setup
from mimocorb.exporters.parquet import rb_toParquetfile
from mimocorb.exporters.text import rb_toTxtfile
from mimocorb.exporters.waveforms import rb_toWaveformfile


class run_mimoDAQ(RunControl):
    """mimoCoRB 1.x entry point: ``run_mimoDAQ(setup_file).setup()`` then ``.run()``.

    Parameters
    ----------
    setup_filename : str
        The setup YAML file.
    verbose : int
        As 1.x: 0 quiet, 1 status, 2 status and layout.
    debug : bool
        Debug logging.
    **options
        Any keyword option of :class:`RunControl`.
    """

    def __init__(self, setup_filename: Union[str, Path], verbose: int = 2, debug: bool = False, **options: Any):
        super().__init__(setup_filename, verbose, debug, **options)


class buffer_control:  # noqa: N801  (1.x class name)
    """1.x: ``buffer_control(buffers_dict, functions_dict, function_config_dict, output_directory)``
    with ``setup_buffers()``, ``setup_workers()``, ``start_workers()``, ``pause()``,
    ``resume()``, ``shutdown()`` -- the inside of 1.x's ``run_mimoDAQ``.

    Raises NotImplementedError naming the replacement: :class:`RunControl` (or 1.x's
    :func:`run_mimoDAQ`), ``RunControl(setup_file)`` then ``setup()`` and ``run()``, with
    ``pause()``, ``resume()``, ``stop()`` and ``end()`` from another thread; the setup
    file's sections are read and checked by :func:`load_setup`.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise NotImplementedError(
            "mimocorb.buffer_control.buffer_control (1.x: the buffers and workers inside run_mimoDAQ, made from the "
            "setup file's sections) is replaced by mimocorb.buffer_control.RunControl(setup_file) -- or 1.x's "
            "run_mimoDAQ(setup_file) -- with setup(), run(), pause(), resume(), stop() and end(); "
            "mimocorb.buffer_control.load_setup(setup_file) reads and checks the setup file"
        )


__all__ = [
    "rbImport",
    "rbPut",
    "rbExport",
    "rbTransfer",
    "rbProcess",
    "rbDrain",
    "rbObserver",
    "rbWSObserver",
    "rb_toTxtfile",
    "rb_toParquetfile",
    "rb_toWaveformfile",
    "run_mimoDAQ",
    "RunControl",
    "buffer_control",
    "SetupFileError",
    "ResultMismatchError",
    "load_setup",
]
