"""Replay of recorded runs: every format reproduces the run event for event (values and metadata).

The recordings are written with the current exporters where they exist (Parquet,
waveform .npy), with h5py in the HDF5 exporter's layout, and with pandas + tarfile as
mimoCoRB 1.x's rb_toParquetfile wrote its tar archives.
"""

from __future__ import annotations

import io
import json
import tarfile
import textwrap
import time

import numpy as np
import pytest

from mimocorb.exporters.parquet import ParquetTableWriter
from mimocorb.exporters.waveforms import NpyWaveformWriter
from mimocorb.sources import replay
from tests.daq_helpers import run_cli, run_folder, summary
from tests.source_helpers import SourceRun

h5py = pytest.importorskip("h5py")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

DTYPE = [("chA", "f4"), ("chB", "i2")]
COUNTERS = [1, 2, 3, 5, 6, 8, 9]  # a gap, as after lost events
DT = 0.08  # s between recorded events


def _run(vps: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    n = len(COUNTERS)
    data = np.zeros((n, vps), dtype=DTYPE)
    data["chA"] = rng.normal(size=(n, vps)).astype("f4") * 100
    data["chB"] = rng.integers(-3000, 3000, size=(n, vps))
    md = [(c, 1.7e9 + i * DT, float(rng.uniform(0, 0.3))) for i, c in enumerate(COUNTERS)]
    return data, md


def write_parquet(path, data, md):
    with ParquetTableWriter(path, DTYPE, data.shape[1], row_group_size=3) as w:
        for d, m in zip(data, md):
            w.append(m, d)


def write_npy(path, data, md):
    with NpyWaveformWriter(path, DTYPE, data.shape[1]) as w:
        for d, m in zip(data, md):
            w.append(m, d)


def write_hdf5(path, data, md):
    vps = data.shape[1]
    with h5py.File(path, "w") as f:
        for name in data.dtype.names:
            f.create_dataset(
                name,
                data=data[name][:, 0] if vps == 1 else data[name],
                chunks=True,
                maxshape=(None,) + ((vps,) if vps > 1 else ()),
            )
        f.create_dataset("counter", data=np.array([m[0] for m in md], dtype="i8"))
        f.create_dataset("timestamp", data=np.array([m[1] for m in md], dtype="f8"))
        f.create_dataset("deadtime", data=np.array([m[2] for m in md], dtype="f8"))
        f.attrs.update(
            mimocorb_version="2.0",
            buffer="RB_1",
            values_per_slot=vps,
            dtype=json.dumps([list(t) for t in DTYPE]),
            setup="RingBuffer: []\n",
            config="{}\n",
        )


def write_tar_v1(path, data, md, filename="waveforms"):
    """As mimoCoRB 1.x's rb_toParquetfile: one pandas Parquet file per event, named by its counter."""
    with tarfile.TarFile(path, "w") as tar:
        for d, m in zip(data, md):
            buf = io.BytesIO()
            pd.DataFrame(data=d).to_parquet(buf, engine="pyarrow")
            info = tarfile.TarInfo(name=f"{filename}_{m[0]:d}.parquet")
            info.size = buf.getbuffer().nbytes
            buf.seek(0)
            tar.addfile(info, buf)


WRITERS = {
    "parquet": ("run.parquet", write_parquet),
    "npy": ("run.npy", write_npy),
    "hdf5": ("run.h5", write_hdf5),
    "tar": ("run.tar", write_tar_v1),
}


def _replayed(path, vps, n, **cfg):
    """The n events replayed; the source must then end, with nothing more."""
    with SourceRun(replay, dict(file=str(path), **cfg), vps, DTYPE).start() as run:
        events = run.events(n)
        assert run.join() == 0, run.error()
        assert run.events(1, timeout=0.2) == [], "more events than recorded"
    return events


# 1.x archives hold waveforms (one Parquet row per sample): no single-value layout
@pytest.mark.parametrize("fmt, vps", [(f, v) for f in WRITERS for v in (1, 40) if (f, v) != ("tar", 1)])
def test_replay_reproduces_the_run(tmp_path, fmt, vps):
    data, md = _run(vps)
    name, write = WRITERS[fmt]
    write(tmp_path / name, data, md)
    t0 = time.time()
    events = _replayed(tmp_path / name, vps, len(md), pace="max")
    assert len(events) == len(md)
    for e, d, m in zip(events, data, md):
        np.testing.assert_array_equal(e.data, d)
        if fmt == "tar":  # the archive holds the counter (in the file name) and no times
            assert e.counter == m[0] and e.deadtime == 0.0 and t0 <= e.timestamp <= time.time()
        else:
            assert (e.counter, e.timestamp, e.deadtime) == m


def test_recorded_pace_and_fixed_rate(tmp_path):
    data, md = _run(10)
    write_parquet(tmp_path / "run.parquet", data, md)
    t = time.monotonic()
    events = _replayed(tmp_path / "run.parquet", 10, len(md), pace="recorded")
    assert len(events) == len(md) and time.monotonic() - t >= (len(md) - 1) * DT * 0.95
    t = time.monotonic()
    events = _replayed(tmp_path / "run.parquet", 10, len(md), pace="recorded", speed=4.0)
    assert len(events) == len(md) and time.monotonic() - t >= (len(md) - 1) * DT / 4 * 0.95
    t = time.monotonic()
    events = _replayed(tmp_path / "run.parquet", 10, len(md), pace="fixed", rate=25.0)
    assert len(events) == len(md) and time.monotonic() - t >= (len(md) - 1) / 25.0 * 0.95


def test_loop_and_new_metadata(tmp_path):
    data, md = _run(10)
    write_npy(tmp_path / "run.npy", data, md)
    n = len(md)
    events = _replayed(tmp_path / "run.npy", 10, 2 * n + 3, pace="max", loop=True, number_of_events=2 * n + 3)
    assert len(events) == 2 * n + 3
    for i, e in enumerate(events):
        np.testing.assert_array_equal(e.data, data[i % n])
        assert e.counter == md[i % n][0]
    events = _replayed(tmp_path / "run.npy", 10, n, pace="max", metadata="new")
    assert [e.counter for e in events] == list(range(1, n + 1)) and all(e.deadtime == 0 for e in events)


def test_a_folder_of_v1_archives_is_read_in_name_order(tmp_path):
    data, md = _run(20)
    (tmp_path / "arch").mkdir()
    write_tar_v1(tmp_path / "arch" / "b.tar", data[4:], md[4:])
    write_tar_v1(tmp_path / "arch" / "a.tar", data[:4], md[:4])
    events = _replayed(tmp_path / "arch", 20, len(md))
    assert [e.counter for e in events] == COUNTERS
    np.testing.assert_array_equal(np.array([e.data for e in events]), data)


def test_config_errors(tmp_path):
    data, md = _run(10)
    write_parquet(tmp_path / "run.parquet", data, md)
    write_tar_v1(tmp_path / "run.tar", data, md)
    sink = [{"dtype": DTYPE + [("chC", "f4")], "values_per_slot": 10, "name": "RB_1"}]
    with pytest.raises(
        ValueError, match=r"replay: config key 'file': got '.*run.parquet', expected a recording with field 'chC'"
    ):
        replay.check_config({"file": str(tmp_path / "run.parquet")}, sink)
    sink = [{"dtype": DTYPE, "values_per_slot": 11}]
    with pytest.raises(ValueError, match=r"expected 11 values per slot .*; recorded: 10"):
        replay.check_config({"file": str(tmp_path / "run.parquet")}, sink)
    sink = [{"dtype": [("chB", "i1")], "values_per_slot": 10}]
    with pytest.raises(ValueError, match=r"field 'chB' of type int8 \(recorded: int16"):
        replay.check_config({"file": str(tmp_path / "run.parquet")}, sink)
    sink = [{"dtype": DTYPE, "values_per_slot": 10}]
    with pytest.raises(ValueError, match=r"'pace': got 'recorded', expected 'fixed' or 'max': a 1.x tar archive"):
        replay.check_config({"file": str(tmp_path / "run.tar"), "pace": "recorded"}, sink)
    with pytest.raises(
        ValueError, match=r"'file': got '.*nothing.h5', expected a readable recorded run .*no such file"
    ):
        replay.check_config({"file": str(tmp_path / "nothing.h5")}, sink)
    with pytest.raises(ValueError, match=r"'pace': got 'slow', expected one of 'recorded', 'fixed', 'max'"):
        replay.check_config({"file": str(tmp_path / "run.parquet"), "pace": "slow"}, sink)


def test_missing_h5py_names_the_extra(tmp_path, monkeypatch):
    data, md = _run(10)
    write_hdf5(tmp_path / "run.h5", data, md)
    monkeypatch.setitem(__import__("sys").modules, "h5py", None)
    with pytest.raises(ValueError, match=r"replay needs h5py, which is not installed: pip install 'mimocorb\[hdf5\]'"):
        replay.check_config({"file": str(tmp_path / "run.h5")}, [{"dtype": DTYPE, "values_per_slot": 10}])


def test_v1_parquet_reader(tmp_path):
    from mimocorb.parquetReader import parquetReader

    data, md = _run(20)
    write_tar_v1(tmp_path / "run.tar", data, md)
    reader = parquetReader({"path": str(tmp_path), "sleeptime": 0, "number_of_samples": 20})
    reader.init(2, 20, ["chB", "chA"])
    for d in data:
        got = reader()
        np.testing.assert_array_equal(got[0], d["chB"])
        np.testing.assert_array_equal(got[1], d["chA"])
    assert reader() is None


def test_replay_in_a_setup_file_run(tmp_path):
    """A setup file names the packaged source through a one-line module; the run's exporter
    writes what was replayed, which equals the recording."""
    data, md = _run(30)
    write_hdf5(tmp_path / "recorded.h5", data, md)
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "sources.py").write_text("from mimocorb.sources import replay  # noqa: F401\n")
    (tmp_path / "modules" / "save.py").write_text(
        textwrap.dedent("""
        from mimocorb.buffer_control import rb_toParquetfile

        def save(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
            rb_toParquetfile(source_list=source_list, config_dict=config_dict, **rb_info)()
        """)
    )
    (tmp_path / "replay.yaml").write_text(f"file: {tmp_path / 'recorded.h5'}\npace: max\n")
    (tmp_path / "save.yaml").write_text("filename: replayed\n")
    (tmp_path / "setup.yaml").write_text(
        textwrap.dedent("""
        RingBuffer:
          - RB_1: {number_of_slots: 8, channel_per_slot: 30, data_type: {1: ['chA', 'float32'], 2: ['chB', 'int16']}}
        Functions:
          - Fkt_1: {file_name: modules/sources, fkt_name: replay, num_process: 1, RB_assign: {RB_1: write},
                    config_file: replay.yaml}
          - Fkt_2: {file_name: modules/save, fkt_name: save, num_process: 1, RB_assign: {RB_1: read},
                    config_file: save.yaml}
        """)
    )
    res = run_cli(["run", tmp_path / "setup.yaml", "--headless", "--output", tmp_path / "out"], timeout=90)
    assert res.returncode == 0, res.stdout + res.stderr
    folder = run_folder(tmp_path / "out")
    assert summary(folder)["stop_reason"] == "source exhausted"
    table = pd.read_parquet(folder / "replayed.parquet")
    assert list(table["counter"]) == COUNTERS
    assert list(table["timestamp"]) == [m[1] for m in md] and list(table["deadtime"]) == [m[2] for m in md]
    np.testing.assert_array_equal(np.stack(table["chA"].to_numpy()), data["chA"])
    np.testing.assert_array_equal(np.stack(table["chB"].to_numpy()), data["chB"])


def test_v1_lab_module_reading_archives_in_a_setup_run(tmp_path):
    """A 1.x lab module that reads archives through mimocorb.parquetReader and rbImport, as 1.x setups did."""
    data, md = _run(30)
    write_tar_v1(tmp_path / "run.tar", data, md)
    (tmp_path / "modules").mkdir()
    (tmp_path / "modules" / "file_source.py").write_text(
        textwrap.dedent("""
        from mimocorb.buffer_control import rbImport
        from mimocorb.parquetReader import parquetReader

        def tar_parquet_source(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):
            source = parquetReader(config_dict)
            sink = sink_list[0]
            names = [d[0] for d in sink["dtype"]]
            source.init(len(names), sink["values_per_slot"], names)

            def yield_data():
                while True:
                    yield source(), None

            rbImport(config_dict=config_dict, sink_list=sink_list, ufunc=yield_data, **rb_info)()
        """)
    )
    (tmp_path / "modules" / "save.py").write_text(
        "from mimocorb.buffer_control import rb_toWaveformfile\n\n\n"
        "def save(source_list=None, sink_list=None, observe_list=None, config_dict=None, **rb_info):\n"
        "    rb_toWaveformfile(source_list=source_list, config_dict=config_dict, **rb_info)()\n"
    )
    (tmp_path / "src.yaml").write_text(f"path: {tmp_path}\nsleeptime: 0\nnumber_of_samples: 30\n")
    (tmp_path / "save.yaml").write_text("filename: wf\n")
    (tmp_path / "setup.yaml").write_text(
        textwrap.dedent("""
        RingBuffer:
          - RB_1: {number_of_slots: 8, channel_per_slot: 30, data_type: {1: ['chA', 'float32'], 2: ['chB', 'int16']}}
        Functions:
          - Fkt_1: {file_name: modules/file_source, fkt_name: tar_parquet_source, num_process: 1,
                    RB_assign: {RB_1: write}, config_file: src.yaml}
          - Fkt_2: {file_name: modules/save, fkt_name: save, num_process: 1, RB_assign: {RB_1: read},
                    config_file: save.yaml}
        """)
    )
    res = run_cli(["run", tmp_path / "setup.yaml", "--headless", "--output", tmp_path / "out"], timeout=90)
    assert res.returncode == 0, res.stdout + res.stderr
    rec = np.load(run_folder(tmp_path / "out") / "wf.npy")
    np.testing.assert_array_equal(rec["data"], data)
