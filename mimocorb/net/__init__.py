"""Ring buffers on different hosts joined over ZeroMQ (pyzmq, the ``net`` extra).

Worker functions for setup files (``file_name: mimocorb.net``):

``send`` (``RB_assign: {RB_x: read}``)
    a member of the buffer's reader group that sends its events to receivers on other
    hosts and releases each slot only once a receiver has published the event;
``receive`` (``RB_assign: {RB_x: write}``)
    writes what senders send into a buffer of the same layout, each event exactly once;
``publish`` (``RB_assign: {RB_x: observe}``) and ``subscribe`` (``{RB_x: write}``)
    the observer stream for remote displays: the newest events, never holding anything
    back, what is missed counted.

The same as classes for Python programs: :class:`Sender`, :class:`Receiver`,
:class:`Publisher`, :class:`Subscriber`. The configuration keys are in
:mod:`mimocorb.net.config` (:func:`check_config`), the wire protocol in
:mod:`mimocorb.net.protocol`, the statistics the run control shows in
:mod:`mimocorb.net.stats` (:func:`collect_stats`), key pairs for CURVE from
:func:`make_keys`.
"""

from mimocorb.net.config import ConfigError, check_config
from mimocorb.net.keys import make_keys
from mimocorb.net.observe import Publisher, Subscriber, publish, subscribe
from mimocorb.net.protocol import PROTOCOL, VERSION, Layout, NetError
from mimocorb.net.receiver import Receiver, receive
from mimocorb.net.sender import Sender, send
from mimocorb.net.stats import collect_stats, format_link_status

__all__ = [
    "send",
    "receive",
    "publish",
    "subscribe",
    "Sender",
    "Receiver",
    "Publisher",
    "Subscriber",
    "NetError",
    "ConfigError",
    "Layout",
    "PROTOCOL",
    "VERSION",
    "check_config",
    "collect_stats",
    "format_link_status",
    "make_keys",
]
