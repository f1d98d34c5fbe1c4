"""Exporters in real runs and on real buffers: several processes of one exporter each write a
complete file of their own, files are flushed while no event comes, no file is written twice."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import yaml
from daq_helpers import copy_setup, read_table, run_cli, run_folder, summary, wait_until

from mimocorb.buffer_control import rb_toParquetfile, rb_toTxtfile, rb_toWaveformfile
from mimocorb.exporters.text import TextTableWriter
from mimocorb.exporters.waveforms import NpyWaveformWriter
from mimocorb.mimo_buffer import NewBuffer, Writer

pytestmark = pytest.mark.timeout(120)

RECORD = {1: ["index", "int64"], 2: ["total", "float64"], 3: ["peak", "float32"]}


def test_two_processes_of_each_exporter_write_two_complete_files(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    folder = copy_setup("chain", tmp_path)
    export = {"num_process": 2, "RB_assign": {"RB_1": "read"}, "file_name": "modules/export"}
    d = {
        "RingBuffer": [{"RB_1": {"number_of_slots": 16, "channel_per_slot": 1, "data_type": RECORD}}],
        "Functions": [
            {"Fkt_main": {"config_file": "config/common.yaml"}},
            {"Fkt_1": {"file_name": "modules/records", "fkt_name": "records_source", "RB_assign": {"RB_1": "write"}}},
            {"Fkt_2": {**export, "fkt_name": "to_text"}},
            {"Fkt_3": {**export, "fkt_name": "to_parquet"}},
            {"Fkt_4": {**export, "fkt_name": "to_waveforms"}},
        ],
    }
    cfg = {
        "records_source": {"events": 3000},
        **{f: {"filename": "rows"} for f in ("to_text", "to_parquet", "to_waveforms")},
    }
    (folder / "config" / "common.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "records_setup.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    out = tmp_path / "out"
    res = run_cli(["run", folder / "records_setup.yaml", "--headless", "--output", out], timeout=90)
    assert res.returncode == 0, res.stdout + res.stderr
    folder = run_folder(out)
    readers = {
        "txt": lambda p: [int(r["counter"]) for r in read_table(p)],
        "parquet": lambda p: list(pd.read_parquet(p)["counter"]),
        "npy": lambda p: list(np.load(p)["counter"]),
    }
    on_disk = sorted(p.name for p in folder.glob("rows*"))
    assert on_disk == sorted(f"rows-{k}.{x}" for k in (1, 2) for x in readers)  # one file per process
    s = summary(folder)
    files = {f["path"].rsplit("/", 1)[1]: f for f in s["files"]}
    assert sorted(files) == on_disk
    for ext, read in readers.items():
        parts = [read(folder / f"rows-{k}.{ext}") for k in (1, 2)]
        for k, part in zip((1, 2), parts):
            assert len(part) == files[f"rows-{k}.{ext}"]["events"]
        assert sorted(parts[0] + parts[1]) == list(range(1, 3001)), ext  # every event once, in one of the files
    groups = {g["function"]: g for g in s["buffers"]["RB_1"]["groups"]}
    assert {f: g["consumed"] for f, g in groups.items()} == {"to_text": 3000, "to_parquet": 3000, "to_waveforms": 3000}
    text = read_table(folder / "rows-1.txt") + read_table(folder / "rows-2.txt")
    assert all(float(r["total"]) == 0.5 * int(r["index"]) and int(r["counter"]) == int(r["index"]) + 1 for r in text)


def test_packaged_exporters_need_no_module_of_the_setup(tmp_path):
    """``file_name: mimocorb.exporters``: every packaged sink, and ``max_events`` of the waveform and ROOT files."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    h5py = pytest.importorskip("h5py")
    uproot = pytest.importorskip("uproot")
    from mimocorb import exporters

    folder = copy_setup("chain", tmp_path)
    packaged = {"file_name": "mimocorb.exporters", "RB_assign": {"RB_1": "read"}}
    d = {
        "RingBuffer": [{"RB_1": {"number_of_slots": 16, "channel_per_slot": 1, "data_type": RECORD}}],
        "Functions": [
            {"Fkt_main": {"config_file": "config/common.yaml"}},
            {"Fkt_1": {"file_name": "modules/records", "fkt_name": "records_source", "RB_assign": {"RB_1": "write"}}},
            *({f"Fkt_{2 + i}": {**packaged, "fkt_name": name}} for i, name in enumerate(exporters.__all__)),
        ],
    }
    cfg = {
        "records_source": {"events": 500},
        "save_to_txt": {"filename": "rows", "sep": ","},
        "save_parquet": {"filename": "rows"},
        "save_waveforms": {"filename": "rows", "max_events": 20},
        "save_hdf5": {"filename": "rows"},
        "save_root": {"filename": "rows", "max_events": 100},
    }
    (folder / "config" / "common.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "packaged_setup.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
    out = tmp_path / "out"
    res = run_cli(["run", folder / "packaged_setup.yaml", "--headless", "--output", out, "-q"], timeout=90)
    assert res.returncode == 0, res.stdout + res.stderr
    folder = run_folder(out)
    s = summary(folder)
    groups = {g["function"]: g for g in s["buffers"]["RB_1"]["groups"]}
    assert {f: g["consumed"] for f, g in groups.items()} == {name: 500 for name in exporters.__all__}
    assert [int(r["counter"]) for r in read_table(folder / "rows.csv", ",")] == list(range(1, 501))
    assert list(pd.read_parquet(folder / "rows.parquet")["counter"]) == list(range(1, 501))
    assert list(np.load(folder / "rows.npy")["counter"]) == list(range(1, 21))  # the first 20, the rest dropped
    with h5py.File(folder / "rows.h5", "r") as f:
        assert list(f["counter"][:]) == list(range(1, 501))
        assert list(f["index"][:]) == list(range(500))
    tree = uproot.open(folder / "rows.root")["events"]
    assert list(tree["counter"].array(library="np")) == list(range(1, 101))
    files = {f["path"].rsplit("/", 1)[1]: f["events"] for f in s["files"]}
    assert files == {"rows.csv": 500, "rows.parquet": 500, "rows.npy": 20, "rows.h5": 500, "rows.root": 100}


@pytest.fixture
def buffer():
    made = []

    def make(dtype, values=1):
        b = NewBuffer(8, values, dtype, name="RB_1")
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


@pytest.mark.parametrize("exporter", [rb_toTxtfile, rb_toWaveformfile])
def test_exporter_flushes_while_no_event_comes(buffer, tmp_path, exporter):
    """Five events, then silence: they are on disk after the flush interval, long before the end."""
    dt = [("a", "f4"), ("b", "i4")]
    src = buffer(dt)
    group = src.new_reader_group()
    w = Writer(src.new_writer())
    for i in range(5):
        w.put(np.array([(0.5 * i, i)], dtype=dt), counter=i + 1)
    cfg = {"directory_prefix": str(tmp_path), "filename": "t", "flush_interval": 0.2}
    job = threading.Thread(target=exporter(source_list=[group], config_dict=cfg, RB_1="read"))
    job.start()

    def on_disk() -> int:
        try:
            if exporter is rb_toTxtfile:
                return len((tmp_path / "t.txt").read_text().splitlines()) - 1
            return len(np.load(tmp_path / "t.npy"))
        except (OSError, ValueError):  # not created yet
            return 0

    try:
        wait_until(lambda: on_disk() == 5, 10, "5 events on disk")
    finally:
        src.shutdown(timeout=1)
        job.join(10)
    assert not job.is_alive()


def test_waveform_file_is_a_valid_npy_from_its_creation(tmp_path):
    """A reader (or a kill) before the first flush finds a valid file of 0 records, never an empty one."""
    dt = [("a", "f4")]
    with NpyWaveformWriter(tmp_path / "w.npy", dt, 3, flush_interval=60.0) as out:
        assert np.load(tmp_path / "w.npy").shape == (0,)
        out.append((1, 2.0, 0.0), np.zeros(3, dtype=dt))
        assert np.load(tmp_path / "w.npy").shape == (0,)  # the record is not flushed yet: still valid
    assert np.load(tmp_path / "w.npy").shape == (1,)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npy"]  # nothing left aside


def test_waveform_file_with_field_names_beyond_latin1(tmp_path):
    """Field names numpy writes only in format 3.0 (UTF-8): the file is made and reads back."""
    dt = [("\u03c8", "f4"), ("a", "i4")]
    with NpyWaveformWriter(tmp_path / "psi.npy", dt, 2) as out:
        out.append((7, 1.5, 0.25), np.array([(1.0, 2), (3.0, 4)], dtype=dt))
    rec = np.load(tmp_path / "psi.npy")
    assert rec.shape == (1,) and int(rec["counter"][0]) == 7
    assert rec["data"]["\u03c8"][0].tolist() == [1.0, 3.0] and rec["data"]["a"][0].tolist() == [2, 4]


def test_no_file_is_written_by_two_writers(tmp_path):
    with TextTableWriter(tmp_path / "x.txt", ["a"]) as t:
        t.write([1])
    with pytest.raises(FileExistsError, match=r"x.txt exists already: another exporter"):
        TextTableWriter(tmp_path / "x.txt", ["a"])
    assert (tmp_path / "x.txt").read_text() == "a\n1\n"  # untouched


def test_field_named_like_a_metadata_column_is_refused(buffer, tmp_path):
    src = buffer([("counter", "i8"), ("x", "f8")])
    with pytest.raises(ValueError, match=r"buffer RB_1 has fields named like the metadata columns \(counter\)"):
        rb_toParquetfile(
            source_list=[src.new_reader_group()], config_dict={"directory_prefix": str(tmp_path)}, RB_1="read"
        )
    other = buffer([("x", "f8"), ("y", "f8")])
    cfg = {"directory_prefix": str(tmp_path), "header_alias": {"x": "timestamp"}}
    with pytest.raises(ValueError, match=r"column names \['timestamp'\] appear twice"):
        rb_toTxtfile(source_list=[other.new_reader_group()], config_dict=cfg, RB_1="read")()
