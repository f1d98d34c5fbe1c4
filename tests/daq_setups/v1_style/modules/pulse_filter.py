import numpy as np

from mimocorb.buffer_control import rbTransfer


def find_peaks(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    if config_dict is None:
        raise ValueError("ERROR! Wrong configuration passed!!")
    threshold = config_dict["threshold"]
    pulse_par_dtype = sink_list[-1]["dtype"]

    def find(input_data):
        pos = int(np.argmax(input_data["chA"]))
        height = input_data["chA"][pos]
        if height < 1.0 + threshold:
            return None
        pulse_parameters = np.zeros((1,), dtype=pulse_par_dtype)
        pulse_parameters["height"] = height
        pulse_parameters["position"] = pos
        return [input_data, pulse_parameters]

    p_filter = rbTransfer(source_list=source_list, sink_list=sink_list, config_dict=config_dict, ufunc=find, **rb_info)
    p_filter()
