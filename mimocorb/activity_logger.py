"""mimoCoRB 1.x module ``activity_logger``: loggers that share one level.

1.x's ``run_mimoDAQ`` set the level of every logger it had made at once (``debug=True``:
DEBUG, else WARNING) through the one :class:`Logging_manager` instance ``Gen_logger``;
lab code makes its loggers the same way::

    from mimocorb.activity_logger import Gen_logger
    log = Gen_logger(__name__)
    Gen_logger.set_level(logging.DEBUG)   # this logger and every other one made by Gen_logger

Unlike 1.x, importing this module does not configure logging for the whole process
(1.x called ``logging.basicConfig``): the command line (``mimocorb run``) and the run's
workers send every record to the run log and the console already.
"""

from __future__ import annotations

import logging

__all__ = ["Gen_logger", "Logging_manager"]


class Logging_manager:  # noqa: N801  (1.x class name)
    """Makes loggers (``manager(name)``) and sets the level of all of them at once (:meth:`set_level`).

    Parameters
    ----------
    level : int
        The level of the loggers made from now on (default WARNING, as in 1.x).
    """

    def __init__(self, level: int = logging.WARNING) -> None:
        self.level = level
        self.logger_pool: list[logging.Logger] = []

    def set_level(self, level: int) -> None:
        """Set ``level`` on every logger made so far and on those made later."""
        self.level = level
        for lg in self.logger_pool:
            lg.setLevel(level)

    def __call__(self, name: str) -> logging.Logger:
        """The logger ``name`` (``logging.getLogger``), set to this manager's level and kept in its pool."""
        lg = logging.getLogger(name)
        lg.setLevel(self.level)
        if lg not in self.logger_pool:  # one entry per logger, however often it is asked for
            self.logger_pool.append(lg)
        return lg


#: The one manager 1.x code imports.
Gen_logger = Logging_manager()
