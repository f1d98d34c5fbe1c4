"""The HDF5 and ROOT sinks and 1.x's tar archive of Parquet files: their layout read back with the
libraries of the field (h5py, pandas, uproot, pyarrow), in real runs ended in every way (Ctrl-C,
SIGTERM, a failed worker, a SIGKILLed writer), and read again by the replay source."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from daq_helpers import Run, copy_setup, parse_status, run_cli, run_folder, summary, wait_until, worker_pids

from mimocorb import __version__
from mimocorb.exporters import save_hdf5, save_parquet, save_root
from mimocorb.exporters.hdf5 import Hdf5Writer, read_dataframe
from mimocorb.exporters.parquet import TarParquetWriter
from mimocorb.exporters.root import RootTreeWriter
from mimocorb.sources.recordings import open_recording

h5py = pytest.importorskip("h5py")
uproot = pytest.importorskip("uproot")
pd = pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

pytestmark = pytest.mark.timeout(150)

DTYPE = np.dtype([("chA", "f4"), ("chB", "i2")])


def events(n: int, vps: int, first: int = 1):
    """n deterministic events (data, metadata) of vps values."""
    for i in range(first, first + n):
        d = np.zeros(vps, DTYPE)
        d["chA"] = i + 0.25 * np.arange(vps)
        d["chB"] = (i * 7 + np.arange(vps)) % 3000
        yield d, (i, 1.7e9 + 0.01 * i, (i % 10) / 100)


def expected(n: int, vps: int, first: int = 1):
    data = np.array([d for d, _ in events(n, vps, first)])
    md = list(zip(*(m for _, m in events(n, vps, first))))
    return data, md


# ------------------------------------------------------------------ the writers on their own
@pytest.mark.parametrize("vps", [1, 50])
def test_hdf5_layout_read_with_h5py_and_pandas(tmp_path, vps):
    path = tmp_path / "run.h5"
    attrs = {"buffer": "RB_7", "setup": "RingBuffer: []\n", "config": json.dumps({"filename": "run"})}
    with Hdf5Writer(path, DTYPE, vps, attrs, chunk_events=16) as w:
        for d, m in events(100, vps):
            w.append(m, d)
    data, (counter, ts, dead) = expected(100, vps)
    with h5py.File(path, "r") as f:
        assert sorted(f) == ["chA", "chB", "counter", "deadtime", "timestamp"]
        for name in ("chA", "chB"):
            ds = f[name]
            assert ds.shape == ((100,) if vps == 1 else (100, vps)) and ds.dtype == DTYPE[name]
            assert ds.chunks == ((16,) if vps == 1 else (16, vps)) and ds.maxshape[0] is None
            np.testing.assert_array_equal(ds[:], data[name][:, 0] if vps == 1 else data[name])
        assert f["counter"].dtype == np.int64 and list(f["counter"][:]) == list(counter)
        np.testing.assert_array_equal(f["timestamp"][:], ts)
        np.testing.assert_array_equal(f["deadtime"][:], dead)
        a = f.attrs
        assert a["mimocorb_version"] == __version__ and a["buffer"] == "RB_7" and a["values_per_slot"] == vps
        assert json.loads(a["dtype"]) == [["chA", "<f4"], ["chB", "<i2"]]
        assert a["setup"] == "RingBuffer: []\n" and json.loads(a["config"]) == {"filename": "run"}
    df = read_dataframe(path)
    assert list(df.columns) == ["counter", "timestamp", "deadtime", "chA", "chB"] and len(df) == 100
    assert list(df["counter"]) == list(counter)
    if vps == 1:
        np.testing.assert_array_equal(df["chA"].to_numpy(), data["chA"][:, 0])
    else:
        np.testing.assert_array_equal(np.stack(df["chB"].to_numpy()), data["chB"])


def on_disk(path: Path) -> str:
    """Shapes of the datasets of an HDF5 file as another process finds it on disk (the writer's
    own process would see HDF5's cache); read without HDF5's file lock, which the writer holds."""
    code = (
        "import sys, h5py\n"
        "with h5py.File(sys.argv[1], 'r', locking=False) as f:\n"
        "    print(sorted((k, f[k].shape) for k in f))"
    )
    res = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=60)
    return res.stdout.strip() or res.stderr.strip().splitlines()[-1]


def test_hdf5_file_appears_complete_and_is_never_overwritten(tmp_path):
    path = tmp_path / "run.h5"
    with Hdf5Writer(path, DTYPE, 4, chunk_events=100, flush_interval=0.05) as w:
        # from its creation on: the whole layout, 0 events
        empty = [("chA", (0, 4)), ("chB", (0, 4)), ("counter", (0,)), ("deadtime", (0,)), ("timestamp", (0,))]
        assert on_disk(path) == str(empty)
        for d, m in events(5, 4):
            w.append(m, d)
        time.sleep(0.06)
        w.idle()  # no event for a while: the pending events are flushed
        assert on_disk(path) == str([(k, (5,) + s[1:]) for k, s in empty])
        with pytest.raises(FileExistsError, match="exists already"):
            Hdf5Writer(path, DTYPE, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["run.h5"]  # nothing left aside


@pytest.mark.parametrize("vps", [1, 50])
def test_root_tree_read_back_with_uproot(tmp_path, vps):
    path = tmp_path / "run.root"
    with RootTreeWriter(path, DTYPE, vps, tree="t", title="test", basket_events=30) as w:
        for d, m in events(100, vps):
            w.append(m, d)
    data, (counter, ts, dead) = expected(100, vps)
    with uproot.open(path) as f:
        assert f.keys() == ["t;1"]
        t = f["t"]
        assert t.title == "test" and t.num_entries == 100
        assert t.keys() == ["counter", "timestamp", "deadtime", "chA", "chB"]
        assert t["counter"].typename == "int64_t" and t["timestamp"].typename == "double"
        assert t["chA"].typename == ("float" if vps == 1 else f"float[{vps}]")
        assert t["chB"].typename == ("int16_t" if vps == 1 else f"int16_t[{vps}]")
        assert t["chA"].num_baskets == 4  # 30 + 30 + 30 + 10 events
        a = t.arrays(library="np")
    assert list(a["counter"]) == list(counter)
    np.testing.assert_array_equal(a["timestamp"], ts)
    np.testing.assert_array_equal(a["deadtime"], dead)
    for name in ("chA", "chB"):
        np.testing.assert_array_equal(a[name], data[name][:, 0] if vps == 1 else data[name])


def test_root_default_basket_and_missing_uproot(tmp_path, monkeypatch):
    with RootTreeWriter(tmp_path / "a.root", DTYPE, 16384) as w:
        assert w.basket_events == 16  # 16 x 16,384 float32 = 1 MiB
    with RootTreeWriter(tmp_path / "b.root", DTYPE, 1) as w:
        assert w.basket_events == 65536
    monkeypatch.setitem(sys.modules, "uproot", None)  # as if it were not installed
    with pytest.raises(ImportError, match=r"pip install 'mimocorb\[root\]'"):
        RootTreeWriter(tmp_path / "c.root", DTYPE, 4)


def test_tar_of_parquet_as_1x_wrote_it(tmp_path):
    path = tmp_path / "waves.tar"
    with TarParquetWriter(path, "waves", DTYPE, 20) as w:
        for d, m in events(12, 20, first=5):
            w.append(m, d)
    data, (counter, ts, dead) = expected(12, 20, first=5)
    with tarfile.open(path) as tar:
        names = tar.getnames()
        assert names == [f"waves_{c}.parquet" for c in counter]  # 1.x's member names
        member = pd.read_parquet(tar.extractfile(names[3]))  # what 1.x scripts do
    assert list(member.columns) == ["chA", "chB"] and len(member) == 20  # a row per value of the slot
    np.testing.assert_array_equal(member["chA"].to_numpy(), data["chA"][3])
    rec = open_recording(path)
    blocks = list(rec.blocks())
    assert rec.has_times and rec.values_per_slot == 20 and len(blocks) == 12
    assert [int(b.counter[0]) for b in blocks] == list(counter)
    assert [float(b.timestamp[0]) for b in blocks] == list(ts) and [float(b.deadtime[0]) for b in blocks] == list(dead)
    np.testing.assert_array_equal(np.array([b.data["chB"][0] for b in blocks]), data["chB"])


def test_parquet_reader_of_1x_reads_the_tar_archive(tmp_path):
    from mimocorb.parquetReader import parquetReader

    with TarParquetWriter(tmp_path / "w.tar", "w", DTYPE, 10) as w:
        for d, m in events(6, 10):
            w.append(m, d)
    data, _ = expected(6, 10)
    reader = parquetReader({"path": str(tmp_path), "sleeptime": 0})
    reader.init(2, 10, ["chA", "chB"])
    got = [reader() for _ in range(6)]
    assert reader() is None
    for (a, b), d in zip(got, data):
        np.testing.assert_array_equal(a, d["chA"])
        np.testing.assert_array_equal(b, d["chB"])


# ------------------------------------------------------------------ configuration checks
def test_check_config_of_the_sinks():
    src = [{"name": "RB_1", "dtype": DTYPE, "values_per_slot": 8}]
    for fn, good in (
        (save_hdf5, {"chunk_events": 64, "compression": "gzip"}),
        (save_root, {"basket_events": 10, "compression": "zlib", "compression_level": 4, "tree": "t"}),
        (save_parquet, {"format": "tar"}),
    ):
        fn.check_config(dict(good, filename="x"), [], src)
    with pytest.raises(ValueError, match=r"save_hdf5: config key 'compression': got 'zip', expected one of"):
        save_hdf5.check_config({"compression": "zip"}, [], src)
    with pytest.raises(ValueError, match=r"save_root: config key 'basket_events': got 0, expected an integer >= 1"):
        save_root.check_config({"basket_events": 0}, [], src)
    with pytest.raises(
        ValueError, match=r"save_parquet: config key 'format': got 'zip', expected one of 'file', 'tar'"
    ):
        save_parquet.check_config({"format": "zip"}, [], src)
    with pytest.raises(ValueError, match=r"save_hdf5: config key 'flush_interval': got 0, expected a number in s > 0"):
        save_hdf5.check_config({"flush_interval": 0}, [], src)
    from mimocorb.exporters import save_to_txt

    with pytest.raises(ValueError, match=r"save_to_txt: buffer RB_1 has 8 values per slot"):
        save_to_txt.check_config({}, [], src)


# ------------------------------------------------------------------ real runs
SINKS = {
    "Fkt_2": {"file_name": "mimocorb.exporters", "fkt_name": "save_hdf5", "RB_assign": {"RB_1": "read"}},
    "Fkt_3": {"file_name": "mimocorb.exporters", "fkt_name": "save_root", "RB_assign": {"RB_1": "read"}},
    "Fkt_4": {"file_name": "mimocorb.exporters", "fkt_name": "save_parquet", "RB_assign": {"RB_1": "read"}},
}
FILTER = {"file_name": "modules/filter", "fkt_name": "select", "RB_assign": {"RB_1": "read", "RB_2": "write"}}
DRAIN = {"file_name": "mimocorb.exporters", "fkt_name": "drain", "RB_assign": {"RB_2": "read"}}


def make_setup(folder: Path, source_cfg: dict, sinks: dict, extra: dict | None = None) -> Path:
    """The chain's buffers; the counting source into RB_1, the given sinks of RB_1, the filter and a drain."""
    d = yaml.safe_load((folder / "chain_setup.yaml").read_text())
    d["Functions"] = [
        {"Fkt_main": {"config_file": "config/common.yaml"}},
        {"Fkt_1": {"file_name": "modules/source", "fkt_name": "counting_source", "RB_assign": {"RB_1": "write"}}},
        *({k: v} for k, v in sinks.items()),
        {"Fkt_5": FILTER},
        {"Fkt_6": DRAIN},
    ]
    cfg = {
        "general": {"runtime": 60},
        "counting_source": source_cfg,
        "save_hdf5": {"filename": "waves", "flush_interval": 0.2, "chunk_events": 16},
        "save_root": {"filename": "waves", "basket_events": 50},
        "save_parquet": {"filename": "waves", "format": "tar"},
        **(extra or {}),
    }
    (folder / "config" / "common.yaml").write_text(yaml.safe_dump(cfg))
    path = folder / "sinks_setup.yaml"
    path.write_text(yaml.safe_dump(d, sort_keys=False))
    return path


def check_event(i: int, chA: np.ndarray, chB: np.ndarray) -> None:
    """The counting source's event i (counter i + 1)."""
    k = np.arange(len(chA))
    np.testing.assert_array_equal(chA, np.float32(i) + np.float32(0.5) * k.astype(np.float32))
    np.testing.assert_array_equal(chB, 10 * i + k)


ENDINGS = {
    # name: (what ends the run, its exit code)
    "ctrl_c": ("sigint", 0),
    "sigterm": ("sigterm", 0),
    "failed_worker": ("fail", 1),
}


@pytest.mark.parametrize("ending", list(ENDINGS))
def test_files_are_complete_after_every_ending(tmp_path, ending):
    """HDF5, ROOT and the tar archive hold every event their exporter consumed, however the run ends."""
    action, code = ENDINGS[ending]
    folder = copy_setup("chain", tmp_path)
    extra = {"select": {"fail_at": 300}} if action == "fail" else None
    setup = make_setup(folder, {"events": 0, "sleeptime": 0.002}, SINKS, extra)
    out = tmp_path / "out"
    run = Run([setup, "--headless", "--output", out, "--status-interval", "0.3", "--shutdown-timeout", "10"])
    try:
        if action != "fail":
            # some hundred events (the status lines name the events of RB_1)
            run.lines.wait_for(lambda line: " | workers " in line and parse_status(line)["RB_1"]["events"] > 300, 60)
            if action == "sigint":
                os.killpg(run.pid, signal.SIGINT)  # like Ctrl-C in a terminal: the whole process group
            else:
                os.kill(run.pid, signal.SIGTERM)
        rc = run.wait(timeout=90)
    finally:
        run.close()
    assert rc == code, run.text()
    folder = run_folder(out)
    s = summary(folder)
    consumed = {g["function"]: g["consumed"] for g in s["buffers"]["RB_1"]["groups"]}
    files = {f["path"].rsplit("/", 1)[1]: f["events"] for f in s["files"]}
    assert consumed["save_hdf5"] > 100, consumed
    with h5py.File(folder / "waves.h5", "r") as f:
        n = len(f["counter"])
        assert n == files["waves.h5"] == consumed["save_hdf5"]
        assert list(f["counter"][:]) == list(range(1, n + 1))
        for i in (0, n // 2, n - 1):
            check_event(i, f["chA"][i], f["chB"][i])
        assert "save_hdf5" in f.attrs["setup"] and json.loads(f.attrs["config"])["filename"] == "waves"
    with uproot.open(folder / "waves.root") as f:
        t = f["events"]
        assert t.num_entries == files["waves.root"] == consumed["save_root"]
        a = t.arrays(["counter", "chA", "chB"], library="np")
        assert list(a["counter"]) == list(range(1, t.num_entries + 1))
        check_event(t.num_entries - 1, a["chA"][-1], a["chB"][-1])
    with tarfile.open(folder / "waves.tar") as tar:
        names = tar.getnames()
    assert len(names) == files["waves.tar"] == consumed["save_parquet"]
    assert names == [f"waves_{c}.parquet" for c in range(1, len(names) + 1)]


def _has_open(pid: int, path: Path) -> bool:
    """True when process ``pid`` has the file ``path`` open (under whatever name it opened it)."""
    want = os.stat(path)
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
    for fd in fds:
        try:
            st = os.stat(fd)
        except OSError:
            continue
        if (st.st_dev, st.st_ino) == (want.st_dev, want.st_ino):
            return True
    return False


def _flushed_events(path: Path) -> int:
    try:  # while the writer has it open: read without HDF5's file lock
        with h5py.File(path, "r", locking=False) as f:
            return len(f["counter"])
    except (OSError, KeyError):
        return 0


@pytest.mark.parametrize("attempt", range(2))
def test_hdf5_file_of_a_sigkilled_writer_opens_with_the_flushed_events(tmp_path, attempt):
    """The HDF5 writer is killed with SIGKILL while events pour in (chunks of 16 events are written
    between the flushes): the file opens with plain h5py and holds every event flushed before."""
    folder = copy_setup("chain", tmp_path)
    sinks = {"Fkt_2": SINKS["Fkt_2"]}
    setup = make_setup(folder, {"events": 0, "sleeptime": 0.0005}, sinks)
    out = tmp_path / "out"
    run = Run([setup, "--headless", "--output", out, "--status-interval", "0.3", "--shutdown-timeout", "10"])
    try:
        wait_until(lambda: out.exists() and (run_folder(out) / "waves.h5").exists(), 40, "the HDF5 file")
        path = (run_folder(out) / "waves.h5").resolve()
        flushed = wait_until(
            lambda: _flushed_events(path) >= 300 + 100 * attempt and _flushed_events(path), 40, "300 events"
        )
        pid = wait_until(lambda: worker_pids(run_folder(out)).get("save_hdf5"), 10, "the pid of save_hdf5")
        assert _has_open(pid, path)
        time.sleep(0.05 + 0.1 * attempt)  # somewhere between two flushes
        os.kill(pid, signal.SIGKILL)
        rc = run.wait(timeout=90)
    finally:
        run.close()
    assert rc == 1, run.text()  # a worker was killed: the run failed
    s = summary(run_folder(out))
    killed = [w for w in s["workers"] if w["failed"]]
    assert [w["name"] for w in killed] == ["save_hdf5"] and "killed by signal 9" in killed[0]["error"]
    with h5py.File(path, "r") as f:  # plain h5py, with its file lock: the file is valid
        n = len(f["counter"])
        assert n >= flushed
        assert list(f["counter"][:]) == list(range(1, n + 1))
        assert len(f["chA"]) == len(f["chB"]) == len(f["timestamp"]) == n
        for i in (0, flushed - 1, n - 1):
            check_event(i, f["chA"][i], f["chB"][i])


def test_replay_reads_what_save_hdf5_and_the_tar_archive_wrote(tmp_path):
    """Run 1 records with save_hdf5 and save_parquet (format: tar); run 2 replays each recording into
    a buffer written by save_hdf5 again: the same events, values and metadata."""
    folder = copy_setup("chain", tmp_path)
    sinks = {"Fkt_2": SINKS["Fkt_2"], "Fkt_4": SINKS["Fkt_4"]}
    setup = make_setup(folder, {"events": 250, "sleeptime": 0.0}, sinks)
    out = tmp_path / "out"
    res = run_cli(["run", setup, "--headless", "--output", out, "-q"], timeout=90)
    assert res.returncode == 0, res.stdout + res.stderr
    recorded = run_folder(out)
    with h5py.File(recorded / "waves.h5", "r") as f:
        original = {k: f[k][:] for k in ("counter", "timestamp", "deadtime", "chA", "chB")}
    assert list(original["counter"]) == list(range(1, 251))

    for fmt, file in (("hdf5", "waves.h5"), ("tar", "waves.tar")):
        d = yaml.safe_load((folder / "chain_setup.yaml").read_text())
        d["RingBuffer"] = d["RingBuffer"][:1]
        d["Functions"] = [
            {"Fkt_1": {"file_name": "mimocorb.sources", "fkt_name": "replay", "RB_assign": {"RB_1": "write"}}},
            {"Fkt_2": SINKS["Fkt_2"]},
        ]
        d["FunctionConfigs"] = {
            "replay": {"file": str(recorded / file), "pace": "max"},
            "save_hdf5": {"filename": "replayed"},
        }
        (folder / f"replay_{fmt}_setup.yaml").write_text(yaml.safe_dump(d, sort_keys=False))
        out2 = tmp_path / f"out_{fmt}"
        res = run_cli(["run", folder / f"replay_{fmt}_setup.yaml", "--headless", "--output", out2, "-q"], timeout=90)
        assert res.returncode == 0, res.stdout + res.stderr
        with h5py.File(run_folder(out2) / "replayed.h5", "r") as f:
            for k, v in original.items():
                np.testing.assert_array_equal(f[k][:], v, err_msg=f"{fmt}: {k}")


def test_a_bad_config_is_a_setup_error_before_anything_starts(tmp_path):
    """A wrong channel name of scpi_scope and a bad key of a sink: exit code 2 (a bad setup), both
    problems named with the setup file and the function's key path, no run folder, no process."""
    setup = tmp_path / "scope_setup.yaml"
    (tmp_path / "scope.yaml").write_text(
        yaml.safe_dump({"resource": "TCPIP::127.0.0.1::5025::SOCKET", "channels": {"chA": 1, "chX": 2}})
    )
    d = {
        "output_directory": "target",
        "RingBuffer": [
            {
                "RB_1": {
                    "number_of_slots": 8,
                    "channel_per_slot": 1000,
                    "data_type": {1: ["chA", "float32"], 2: ["chB", "float32"]},
                }
            }
        ],
        "Functions": [
            {
                "Fkt_1": {
                    "file_name": "mimocorb.sources",
                    "fkt_name": "scpi_scope",
                    "RB_assign": {"RB_1": "write"},
                    "config_file": "scope.yaml",
                }
            },
            {"Fkt_2": {"file_name": "mimocorb.exporters", "fkt_name": "save_hdf5", "RB_assign": {"RB_1": "read"}}},
        ],
        "FunctionConfigs": {"save_hdf5": {"compression": "zip"}},
    }
    setup.write_text(yaml.safe_dump(d, sort_keys=False))
    res = run_cli(["run", setup, "--headless"], timeout=60, cwd=tmp_path)
    assert res.returncode == 2, res.stdout + res.stderr
    err = res.stderr
    assert "invalid setup " in err and "(2 problems)" in err, err
    assert (
        f"{setup}: Functions[0].Fkt_1.config_file scope.yaml: scpi_scope: config key 'channels.chX': got 'chX', "
        "expected a field of buffer RB_1" in err
    ), err
    assert (
        f"{setup}: Functions[1].Fkt_2 (config: FunctionConfigs.save_hdf5): save_hdf5: config key 'compression'" in err
    )
    assert not (tmp_path / "target").exists()  # no run folder: nothing was started
    assert "started worker" not in res.stdout + err


def test_parquet_waveform_columns_without_dictionary_and_compression_chosen(tmp_path):
    """Waveform (list) columns are written without dictionary encoding (it tripled the cost of 64 KiB
    events); the metadata columns keep it; ``compression`` reaches the file."""
    pq = pytest.importorskip("pyarrow.parquet")
    from mimocorb.exporters.parquet import ParquetTableWriter

    for compression, codec in (("snappy", "SNAPPY"), ("none", "UNCOMPRESSED")):
        path = tmp_path / f"{compression}.parquet"
        with ParquetTableWriter(path, DTYPE, 50, row_group_size=40, compression=compression) as w:
            for d, m in events(100, 50):
                w.append(m, d)
        meta = pq.ParquetFile(path).metadata
        group = meta.row_group(0)
        columns = {group.column(i).path_in_schema.split(".")[0]: group.column(i) for i in range(group.num_columns)}
        assert all(c.compression == codec for c in columns.values())
        assert not any("DICTIONARY" in e for e in columns["chA"].encodings), columns["chA"].encodings
        assert any("DICTIONARY" in e for e in columns["counter"].encodings)
        data, (counter, _, _) = expected(100, 50)
        table = pq.read_table(path)
        assert table.column("counter").to_pylist() == list(counter)
        np.testing.assert_array_equal(np.stack(table.column("chB").to_numpy(zero_copy_only=False)), data["chB"])
