"""Access classes and exporters on real buffers, in one process (shutdowns from timer threads)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from mimocorb.buffer_control import (
    ResultMismatchError,
    rb_toTxtfile,
    rbExport,
    rbImport,
    rbProcess,
    rbPut,
    rbTransfer,
)
from mimocorb.exporters.parquet import ParquetTableWriter
from mimocorb.exporters.text import TextTableWriter
from mimocorb.exporters.waveforms import NpyWaveformWriter
from mimocorb.mimo_buffer import NewBuffer, Writer

pytestmark = pytest.mark.timeout(30)

RAW = [("x", "f8")]
PAR = [("a", "f8"), ("b", "i4")]


@pytest.fixture
def bufs():
    made = []

    def make(slots, values, dtype, name):
        b = NewBuffer(slots, values, dtype, name=name)
        made.append(b)
        return b

    yield make
    for b in made:
        b.close()


def shutdown_later(buf, delay=0.3):
    t = threading.Timer(delay, buf.shutdown, kwargs={"timeout": 1.0})
    t.start()
    return t


def fill(buf, n, values=4):
    w = Writer(buf.new_writer())
    for i in range(n):
        w.put(np.full(values, float(i), dtype=RAW), counter=i + 1)


def drain(buf_group, name="RB_2"):
    return [(d.copy(), tuple(md)) for d, md in rbExport(source_list=[buf_group], config_dict={}, **{name: "read"})()]


def test_transfer_result_forms(bufs):
    src, raw, par = bufs(8, 4, RAW, "RB_1"), bufs(8, 4, RAW, "RB_2"), bufs(8, 1, PAR, "RB_3")
    r, g_raw, g_par = src.new_reader_group(), raw.new_reader_group(), par.new_reader_group()
    fill(src, 4)

    def f(ev):
        i = int(ev["x"][0])
        o = np.zeros(1, dtype=PAR)
        o["a"], o["b"] = ev["x"].sum(), i
        return [None, [o, o]] if i == 0 else (None if i == 1 else (np.full(4, 9.0, RAW) if i == 2 else [True, o]))

    shutdown_later(src)
    t = rbTransfer(
        source_list=[r],
        sink_list=[raw.new_writer(), par.new_writer()],
        config_dict={},
        ufunc=f,
        RB_1="read",
        RB_2="write",
        RB_3="write",
    )
    t()
    assert t.event_count == 4 and t.written == [2, 3]
    shutdown_later(raw), shutdown_later(par)
    got_raw = drain(g_raw)
    got_par = drain(g_par, "RB_3")
    # event 2: a single array goes to the first sink (1.x); event 3: input copied to RB_2, array to RB_3
    assert [md[0] for _, md in got_raw] == [3, 4]
    assert got_raw[0][0]["x"].tolist() == [9.0] * 4 and got_raw[1][0]["x"].tolist() == [3.0] * 4
    assert [(md[0], int(d["b"][0])) for d, md in got_par] == [(1, 0), (1, 0), (4, 3)]


def test_transfer_mismatch_names_function_and_buffers_and_publishes_nothing(bufs):
    src, dst = bufs(8, 4, RAW, "RB_1"), bufs(8, 1, PAR, "RB_2")
    r, g = src.new_reader_group(), dst.new_reader_group()
    fill(src, 2)
    w = dst.new_writer()

    def wrong_fields(ev):
        return [np.zeros(1, dtype=[("zz", "f8")])]

    with pytest.raises(ResultMismatchError) as info:
        rbTransfer(source_list=[r], sink_list=[w], config_dict={}, ufunc=wrong_fields, RB_1="read", RB_2="write")()
    msg = str(info.value)
    assert "wrong_fields" in msg and "RB_1 -> RB_2" in msg and "'zz'" in msg and "[a: f8, b: i4]" in msg

    def too_many(ev):
        return [1, 2, 3]

    with pytest.raises(ResultMismatchError, match=r"too_many .*returned a list of 3 entries for 1 sink\(s\) \(RB_2\)"):
        rbProcess(source_list=[r], sink_list=[w], config_dict={}, ufunc=too_many, RB_1="read", RB_2="write")()
    shutdown_later(dst, 0.2)
    assert drain(g) == []  # no half-filled slot was published


def test_import_ends_with_generator_and_checks_shape(bufs):
    dst = bufs(8, 4, RAW, "RB_1")
    g = dst.new_reader_group()

    def gen():
        for i in range(3):
            yield [np.full(4, i)], None

    rbImport(sink_list=[dst.new_writer()], config_dict={}, ufunc=gen, RB_1="write")()
    shutdown_later(dst, 0.2)
    got = drain(g, "RB_1")
    assert [md[0] for _, md in got] == [1, 2, 3]
    assert [d["x"][0] for d, _ in got] == [0.0, 1.0, 2.0]

    def bad():
        yield [np.zeros(5)], None

    other = bufs(8, 4, RAW, "RB_9")
    with pytest.raises(ResultMismatchError, match=r"bad.* does not fit buffer RB_9 \(4 x \[x: f8\]\).*shape \(5,\)"):
        rbImport(sink_list=[other.new_writer()], config_dict={}, ufunc=bad, RB_9="write")()
    assert other.stats()["published"] == 0


def test_put_honours_pause(bufs):
    dst = bufs(8, 4, RAW, "RB_1")
    put = rbPut(sink_list=[dst.new_writer()], config_dict={}, RB_1="write")
    assert put([np.ones(4)], None) is True
    dst.pause()
    assert put([np.ones(4)], None) is True and put.dropped == 1
    dst.resume()
    assert put([np.ones(4)], (7, 1.0, 0.0)) is True
    assert dst.stats()["published"] == 2
    dst.set_ending()
    assert put([np.ones(4)], None) is False


def test_import_holds_while_paused(bufs):
    dst = bufs(8, 4, RAW, "RB_1")
    dst.pause()
    asked = []

    def gen():
        while True:
            asked.append(1)
            yield [np.ones(4)], None

    threading.Timer(0.3, dst.set_ending).start()
    rbImport(sink_list=[dst.new_writer()], config_dict={}, ufunc=gen, RB_1="write")()
    assert asked == [] and dst.stats()["published"] == 0


def test_txt_exporter(bufs, tmp_path):
    src = bufs(8, 1, [("a", "f4"), ("b", "i4")], "RB_2")
    g = src.new_reader_group()
    w = Writer(src.new_writer())
    for i in range(5):
        w.put(np.array([(0.1 * i, i)], dtype=[("a", "f4"), ("b", "i4")]), counter=i + 1, timestamp=100.5 + i)
    shutdown_later(src)
    rb_toTxtfile(
        source_list=[g],
        config_dict={"directory_prefix": str(tmp_path), "filename": "t", "header_alias": {"b": "bee"}},
        RB_2="read",
    )()
    lines = (tmp_path / "t.txt").read_text().splitlines()
    assert lines[0].split("\t") == ["counter", "timestamp", "deadtime", "a", "bee"]
    rows = [line.split("\t") for line in lines[1:]]
    assert [int(r[0]) for r in rows] == [1, 2, 3, 4, 5]
    assert [np.float32(r[3]) for r in rows] == [np.float32(0.1 * i) for i in range(5)]
    assert float(rows[2][1]) == 102.5


def test_txt_exporter_rejects_waveforms(bufs, tmp_path):
    src = bufs(8, 10, RAW, "RB_1")
    with pytest.raises(ValueError, match="rb_toTxtfile: buffer RB_1 has 10 values per slot"):
        rb_toTxtfile(source_list=[src.new_reader_group()], config_dict={"directory_prefix": str(tmp_path)}, RB_1="read")


def test_npy_writer_valid_without_close(tmp_path):
    dt = np.dtype([("chA", "f4"), ("chB", "i2")])
    w = NpyWaveformWriter(tmp_path / "w.npy", dt, 5, flush_interval=3600)
    for i in range(3):
        w.append((i + 1, 10.0 + i, 0.0), np.full(5, i, dtype=dt))
    w.flush()
    w.append((4, 13.0, 0.0), np.full(5, 3, dtype=dt))  # not yet counted in the header
    w._file.flush()
    a = np.load(tmp_path / "w.npy")
    assert a["counter"].tolist() == [1, 2, 3]  # valid as if killed here
    w.close()
    a = np.load(tmp_path / "w.npy")
    assert a["counter"].tolist() == [1, 2, 3, 4]
    assert a["data"]["chB"][3].tolist() == [3] * 5 and a["data"].shape == (4, 5)


def test_parquet_writer_row_groups(tmp_path):
    pq = pytest.importorskip("pyarrow.parquet")
    pd = pytest.importorskip("pandas")
    dt = np.dtype([("a", "f8"), ("b", "i4")])
    with ParquetTableWriter(tmp_path / "p.parquet", dt, 3, row_group_size=4) as w:
        for i in range(10):
            w.append((i, 1.0 * i, 0.5), np.full(3, i, dtype=dt))
    assert pq.ParquetFile(tmp_path / "p.parquet").num_row_groups == 3
    df = pd.read_parquet(tmp_path / "p.parquet")
    assert df["counter"].tolist() == list(range(10))
    assert list(df["b"][7]) == [7, 7, 7]


def test_text_writer_checks_row_length(tmp_path):
    with TextTableWriter(tmp_path / "x.csv", ["a", "b"], sep=",") as t:
        with pytest.raises(ValueError, match=r"x.csv: row has 1 values, expected 2 \(a, b\)"):
            t.write([1])


def test_put_that_fails_publishes_nothing(bufs):
    """A put that raises (a channel of strings, metadata of two values) and is caught leaves no
    half-filled event behind: the next good put publishes its own event only."""
    dst = bufs(8, 2, PAR, "RB_1")
    g = dst.new_reader_group()
    put = rbPut(sink_list=[dst.new_writer()], config_dict={}, RB_1="write")
    assert put([np.array([1.0, 2.0]), np.array([1, 2])], (1, 10.0, 0.0))
    with pytest.raises(ResultMismatchError, match=r"rbPut: data does not fit buffer RB_1"):
        put([np.array(["x", "y"]), np.array([3, 4])], (2, 11.0, 0.0))
    with pytest.raises(ResultMismatchError, match=r"rbPut: metadata must be \(counter, timestamp, deadtime\)"):
        put([np.array([5.0, 6.0]), np.array([5, 6])], (3, 12.0))
    assert put([np.array([7.0, 8.0]), np.array([7, 8])], (4, 13.0, 0.0))
    shutdown_later(dst, 0.2)
    got = drain(g, "RB_1")
    assert [md[0] for _, md in got] == [1, 4]
    assert got[1][0]["a"].tolist() == [7.0, 8.0] and got[1][0]["b"].tolist() == [7, 8]
    assert dst.stats()["abandoned_by_writers"] == 1  # the slot the strings failed to fill: given back, counted


def test_transfer_writes_a_plain_array_field_by_field_and_scalars_as_values(bufs):
    two = [("a", "f8"), ("b", "f8")]
    src, dst, ints = bufs(8, 4, two, "RB_1"), bufs(8, 4, two, "RB_2"), bufs(8, 1, np.int32, "RB_3")
    g1, g2, r_dst, r_ints = (
        src.new_reader_group(),
        src.new_reader_group(),
        dst.new_reader_group(),
        ints.new_reader_group(),
    )
    Writer(src.new_writer()).put(np.zeros(4, dtype=two), counter=1)
    shutdown_later(src, 0.3)
    # (fields x values): a plain array holds one row per field, as an import's data does
    rows = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    rbTransfer(source_list=[g1], sink_list=[dst.new_writer()], config_dict={}, ufunc=lambda ev: [rows], RB_1="read")()
    # a number in the list is a value for the one-value int32 sink, not "copy the input event"
    rbTransfer(source_list=[g2], sink_list=[ints.new_writer()], config_dict={}, ufunc=lambda ev: [7], RB_1="read")()
    shutdown_later(dst, 0.2), shutdown_later(ints, 0.2)
    (ev,) = [d for d, _ in drain(r_dst, "RB_2")]
    assert ev["a"].tolist() == [1, 2, 3, 4] and ev["b"].tolist() == [5, 6, 7, 8]
    (val,) = [d for d, _ in drain(r_ints, "RB_3")]
    assert val.tolist() == [7]


def test_transfer_refuses_a_plain_array_it_would_have_to_guess(bufs):
    two = [("a", "f8"), ("b", "f8")]
    src, dst = bufs(8, 4, two, "RB_1"), bufs(8, 4, two, "RB_2")
    g = src.new_reader_group()
    Writer(src.new_writer()).put(np.zeros(4, dtype=two), counter=1)
    shutdown_later(src, 0.3)
    flat = rbTransfer(
        source_list=[g], sink_list=[dst.new_writer()], config_dict={}, ufunc=lambda ev: [np.arange(8.0)], RB_1="read"
    )
    with pytest.raises(
        ResultMismatchError, match=r"shape \(8,\) cannot go into buffer .*expected one row per field \(\(2, 4\)\)"
    ):
        flat()
    assert dst.stats()["published"] == 0
