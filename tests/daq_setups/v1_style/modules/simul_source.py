import time

import numpy as np

from mimocorb.buffer_control import rbImport


def simul_source(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    """Generate simulated data and pass data to buffer"""
    number_of_samples = config_dict["number_of_samples"]
    sleeptime = config_dict["sleeptime"]
    rng = np.random.default_rng(1)

    def yield_data():
        event_count = 0
        while True:
            time.sleep(sleeptime)
            pulse = rng.random((2, number_of_samples))
            pulse[0, event_count % number_of_samples] += 1.0
            yield (pulse, None)
            event_count += 1

    simulsource = rbImport(config_dict=config_dict, sink_list=sink_list, ufunc=yield_data, **rb_info)
    print("** simul_source ** started")
    simulsource()
