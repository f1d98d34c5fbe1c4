"""Workers that end the run in unusual ways (tests of how a run ends)."""

import signal
import time

import numpy as np

from mimocorb import mimo_buffer as bm
from mimocorb.buffer_control import rb_toParquetfile, rbImport


def sample_and_return(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """Read a few events, then return while the run goes on."""
    reader = bm.Reader(source_list[0])
    for _ in range(int(config_dict.get("events", 5))):
        reader.get()
    print("sampler done")


def stubborn(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """Never ends: ignores the request to finish (SIGTERM) and catches every SystemExit."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    reader = bm.Reader(source_list[0])
    while True:
        try:
            reader.get()
        except SystemExit:
            time.sleep(0.05)


def sleeper(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """Takes events; after `events` of them it sleeps in user code, holding the last one."""
    reader = bm.Reader(source_list[0])
    for _ in range(int(config_dict.get("events", 3))):
        reader.get()
    time.sleep(3600)


def silent_source(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """A source whose trigger never comes."""

    def wait_for_trigger():
        time.sleep(3600)
        yield None

    rbImport(sink_list=sink_list, config_dict=config_dict, ufunc=wait_for_trigger, **rb_info)()


def printing_source(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """A chatty source: one line of output per event (its log pipe fills when nobody reads it)."""
    n = sink_list[0]["values_per_slot"]

    def generate():
        i = 0
        while True:
            print(f"event {i} " + "x" * 200)
            yield [np.full(n, i, dtype=np.float32), np.full(n, i, dtype=np.int32)], None
            i += 1
            time.sleep(0.0005)

    rbImport(sink_list=sink_list, config_dict=config_dict, ufunc=generate, **rb_info)()


def scope(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """The 1.x oscilloscope display of an observed buffer."""
    from mimocorb.plot_buffer import plot_buffer

    plot_buffer(source_list, sink_list, observe_list, config_dict, **rb_info)()


class _SlowParquet(rb_toParquetfile):
    def _put(self, out, data, md):
        time.sleep(float(self.config_dict.get("delay", 0.02)))
        super()._put(out, data, md)


def slow_parquet(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """A Parquet exporter that takes its time for every event."""
    _SlowParquet(source_list=source_list, config_dict=config_dict, **rb_info)()
