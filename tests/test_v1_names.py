"""The mimoCoRB 1.x names that lab code imports besides the access classes: activity_logger,
bufferinfoGUI, buffer_control.buffer_control and rbWSObserver."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest

from mimocorb.mimo_buffer import NewBuffer, Writer

pytestmark = pytest.mark.timeout(60)


def test_logging_manager_sets_the_level_of_all_its_loggers():
    from mimocorb.activity_logger import Gen_logger, Logging_manager

    assert isinstance(Gen_logger, Logging_manager) and Gen_logger.level == logging.WARNING
    manager = Logging_manager()
    a, b = manager("v1test.a"), manager("v1test.b")
    assert a is logging.getLogger("v1test.a") and a.level == b.level == logging.WARNING
    manager.set_level(logging.DEBUG)
    assert a.level == b.level == logging.DEBUG
    c = manager("v1test.c")  # made later: the level set last
    assert c.level == logging.DEBUG
    manager("v1test.a")
    assert manager.logger_pool == [a, b, c]  # one entry per logger
    manager.set_level(logging.ERROR)
    assert {lg.level for lg in (a, b, c)} == {logging.ERROR}


def test_buffer_info_gui_names_the_control_window():
    from mimocorb import bufferinfoGUI as module

    with pytest.raises(NotImplementedError, match=r"replaced by the run's control window: 'mimocorb run --gui"):
        module.bufferinfoGUI(None, None, None, ["RB_1"], 4500.0, 1000.0)
    with pytest.raises(NotImplementedError, match="run_with_control_window"):
        module.plot_bufferinfo(None, ["RB_1"])


def test_buffer_control_class_names_the_run_control():
    from mimocorb import access_classes
    from mimocorb.buffer_control import RunControl, buffer_control

    assert access_classes.buffer_control is buffer_control
    with pytest.raises(NotImplementedError, match=r"replaced by mimocorb\.buffer_control\.RunControl\(setup_file\)"):
        buffer_control([], [], {}, "target")
    assert callable(RunControl)


def test_ws_observer_yields_the_newest_event_then_none():
    from mimocorb.buffer_control import rbWSObserver

    dt = [("chA", "f4")]
    buf = NewBuffer(8, 4, dt, name="RB_1")
    try:
        assert rbWSObserver(observe_list=[buf.new_observer()], config_dict={}, RB_1="observe").min_sleeptime == 1.0
        obs = rbWSObserver(observe_list=[buf.new_observer()], config_dict={"min_sleeptime": 0.01}, RB_1="observe")
        w = Writer(buf.new_writer())
        reader = buf.new_reader_group()  # a reader group: the writer's slots are consumed by nobody but it
        assert reader
        for i in range(3):
            w.put(np.full(4, i, dtype=dt), counter=i + 1)
        gen = obs()
        data, md = next(gen)
        assert md["counter"][0] == 3 and list(data["chA"]) == [2.0] * 4  # the newest, a copy
        w.put(np.full(4, 7, dtype=dt), counter=4)
        data, md = next(gen)
        assert md["counter"][0] == 4 and list(data["chA"]) == [7.0] * 4
        w.close()
        ender = threading.Timer(0.2, lambda: buf.shutdown(timeout=2))
        ender.start()
        assert next(gen) is None  # the end of the run
        ender.join(5)
        obs.close()
    finally:
        buf.close()
