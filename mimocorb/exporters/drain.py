"""A sink that keeps nothing: it consumes every event of its buffer (1.x ``rbDrain``)."""

from __future__ import annotations

from mimocorb.daq.access import rbDrain


def drain(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info) -> None:
    """Packaged sink: read and discard every event of the first source buffer (no config keys).

    For a buffer whose events only need to be counted, or to keep a reader group that
    holds back the writers until something reads it."""
    rbDrain(source_list=source_list, config_dict=config_dict, **rb_info)()


__all__ = ["drain"]
