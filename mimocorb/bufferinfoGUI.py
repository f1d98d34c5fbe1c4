"""mimoCoRB 1.x module ``bufferinfoGUI``: the name is kept, the window is the control window now.

In 1.x, ``run_mimoDAQ`` started ``bufferinfoGUI(Qcmd, Qlog, Qinfo, RBnames, maxRate,
interval)`` in a process of its own and fed it status tuples through queues only it
filled; nothing else could drive it. The run's window is now
:mod:`mimocorb.gui.control_window`, which reads the run's status directly: ``mimocorb
run --gui setup.yaml``, or ``run_with_control_window(RunControl(setup_file))`` in Python. Calling the 1.x names
raises an error that says so.
"""

from __future__ import annotations

from typing import Any, NoReturn

__all__ = ["REPLACEMENT", "bufferinfoGUI", "plot_bufferinfo"]

#: What replaces 1.x's buffer-information window.
REPLACEMENT = (
    "the run's control window: 'mimocorb run --gui <setup file>', in Python "
    "mimocorb.gui.control_window.run_with_control_window(mimocorb.buffer_control.RunControl(setup_file))"
)


def _retired(name: str) -> NoReturn:
    raise NotImplementedError(
        f"mimocorb.bufferinfoGUI.{name} was the status window that mimoCoRB 1.x's run_mimoDAQ fed through its own "
        f"queues; it is replaced by {REPLACEMENT}"
    )


def bufferinfoGUI(*args: Any, **kwargs: Any) -> NoReturn:  # noqa: N802  (1.x name)
    """1.x: the buffer-information window. Raises NotImplementedError naming its replacement."""
    _retired("bufferinfoGUI")


class plot_bufferinfo:  # noqa: N801  (1.x class name)
    """1.x: the rate plot of the buffer-information window. Raises NotImplementedError naming its replacement."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        _retired("plot_bufferinfo")
