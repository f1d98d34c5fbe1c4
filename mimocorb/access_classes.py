"""The access classes under the module name older mimoCoRB documentation uses.

Same objects as :mod:`mimocorb.buffer_control`.
"""

from mimocorb import buffer_control as _buffer_control
from mimocorb.buffer_control import *  # noqa: F403

__all__ = list(_buffer_control.__all__)
