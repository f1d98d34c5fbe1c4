from mimocorb.buffer_control import rb_toTxtfile, rbDrain


def save_to_txt(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    sv = rb_toTxtfile(source_list=source_list, config_dict=config_dict, **rb_info)
    sv()
    print("\n ** save_to_txt: end seen")


def drain(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    rbDrain(source_list=source_list, config_dict=config_dict, **rb_info)()
