import time

import numpy as np

from mimocorb.buffer_control import rbDrain, rbImport, rbTransfer


def endless_source(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    def gen():
        i = 0
        while True:
            time.sleep(0.002)
            yield [np.full(4, float(i))], None
            i += 1

    rbImport(sink_list=sink_list, config_dict=config_dict, ufunc=gen, **rb_info)()


def fragile_filter(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    def check(event):
        if event["x"][0] >= 20:
            raise ZeroDivisionError("calibration constant is zero at event 20")
        return True

    rbTransfer(source_list=source_list, sink_list=sink_list, config_dict=config_dict, ufunc=check, **rb_info)()


def drain(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    rbDrain(source_list=source_list, config_dict=config_dict, **rb_info)()
