"""A source of one-value records (index, total, peak) for the exporter tests."""

import numpy as np

from mimocorb.buffer_control import rbImport


def records_source(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    events = int(config_dict.get("events", 100))

    def generate():
        for i in range(events):
            yield [np.array([i]), np.array([0.5 * i]), np.array([i], dtype=np.float32)], None

    rbImport(sink_list=sink_list, config_dict=config_dict, ufunc=generate, **rb_info)()
