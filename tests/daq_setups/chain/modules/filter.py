"""Keep events whose index is not a multiple of 3; reduce them to (index, total, peak).

Config ``fail_at`` (optional): raise on the event of that index (a filter that crashes)."""

import numpy as np

from mimocorb.buffer_control import rbTransfer


def select(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    out = np.zeros(1, dtype=sink_list[0]["dtype"])
    fail_at = (config_dict or {}).get("fail_at")

    def reduce(event):
        index = int(event["chB"][0]) // 10
        if index == fail_at:
            raise ZeroDivisionError(f"calibration constant is zero at event {index}")
        if index % 3 == 0:
            return None
        out["index"] = index
        out["total"] = event["chA"].astype(np.float64).sum()
        out["peak"] = event["chA"].max()
        return [out]

    rbTransfer(source_list=source_list, sink_list=sink_list, config_dict=config_dict, ufunc=reduce, **rb_info)()
