from mimocorb.buffer_control import rb_toParquetfile, rb_toTxtfile, rb_toWaveformfile


def to_text(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    rb_toTxtfile(source_list=source_list, config_dict=config_dict, **rb_info)()


def to_parquet(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    rb_toParquetfile(source_list=source_list, config_dict=config_dict, **rb_info)()


def to_waveforms(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
    rb_toWaveformfile(source_list=source_list, config_dict=config_dict, **rb_info)()
