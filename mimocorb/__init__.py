"""mimocorb: multiple-in multiple-out configurable ring buffers in shared memory
for physics data acquisition, keeping the interface of mimoCoRB 1.x.

The buffer classes live in :mod:`mimocorb.mimo_buffer`; this package module
stays light so that importing a submodule does not build anything else.
"""

from ._version import __version__

__all__ = ["__version__", "NewBuffer", "Writer", "Reader", "Observer"]


def __getattr__(name):
    if name in ("NewBuffer", "Writer", "Reader", "Observer"):
        from . import mimo_buffer

        return getattr(mimo_buffer, name)
    raise AttributeError(f"module 'mimocorb' has no attribute {name!r}")
