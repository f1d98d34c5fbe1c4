from mimocorb.buffer_control import rb_toTxtfile


def to_text(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    rb_toTxtfile(source_list=source_list, config_dict=config_dict, **rb_info)()
