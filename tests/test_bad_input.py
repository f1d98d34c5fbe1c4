"""Bad input gets a clear error, never a crash or a hang."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from mimocorb import _ringbuf
from mimocorb import mimo_buffer as bm


@pytest.mark.parametrize(
    "args, message",
    [
        ((0, 10, np.int32), "number_of_slots must be an integer >= 1, got 0"),
        ((-3, 10, np.int32), "number_of_slots must be an integer >= 1, got -3"),
        ((4, 0, np.int32), "values_per_slot must be an integer >= 1, got 0"),
        ((4.5, 10, np.int32), "number_of_slots must be an integer >= 1, got 4.5"),
        ((4, "10", np.int32), "values_per_slot must be an integer >= 1, got '10'"),
        ((True, 10, np.int32), "number_of_slots must be an integer >= 1, got True"),
        ((4, 10, "no_such_type"), "dtype must be a NumPy type"),
        ((4, 10, object), "holds Python objects"),
        ((4, 10, [("a", "f4"), ("b", object)]), "holds Python objects"),
        ((4, 10, [("a", "f4"), ("a", "f4")]), "dtype must be a NumPy type"),
    ],
)
def test_bad_buffer_arguments(args, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        bm.NewBuffer(*args)


def test_buffer_larger_than_dev_shm_fails_at_once_with_sizes():
    free = shutil.disk_usage("/dev/shm").free
    values = free // 8 + 1
    with pytest.raises(bm.RingError) as err:
        bm.NewBuffer(16, values, np.float64)
    msg = str(err.value)
    assert "/dev/shm cannot hold" in msg and "MiB" in msg and "free" in msg


@pytest.mark.parametrize(
    "make, cls, message",
    [
        ("new_reader_group", bm.Writer, "for a reader, not a writer: make it with NewBuffer.new_writer()"),
        ("new_writer", bm.Reader, "for a writer, not a reader: make it with NewBuffer.new_reader_group()"),
        ("new_writer", bm.Observer, "for a writer, not a observer"),
        ("new_observer", bm.Reader, "for a observer, not a reader"),
    ],
)
def test_setup_dict_of_the_wrong_role(make, cls, message):
    with bm.NewBuffer(2, 1, np.int32) as buf:
        with pytest.raises(bm.SetupError, match=message.replace("(", r"\(").replace(")", r"\)")):
            cls(getattr(buf, make)())


def test_setup_dict_of_a_closed_buffer():
    buf = bm.NewBuffer(2, 1, np.int32)
    d = buf.new_writer()
    buf.close()
    with pytest.raises(bm.SetupError, match="does not exist"):
        bm.Writer(d)
    with pytest.raises(ValueError, match="is closed"):
        buf.new_writer()


def test_not_a_setup_dict():
    with pytest.raises(bm.SetupError, match="expected a setup dict"):
        bm.Writer(["not", "a", "dict"])
    with pytest.raises(bm.SetupError, match="lacks"):
        bm.Reader({"number_of_slots": 2, "values_per_slot": 1, "dtype": "i4"})


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("number_of_slots", 3, "number_of_slots 3 != 2"),
        ("values_per_slot", 5, "values_per_slot 5 != 1"),
        ("dtype", np.float32, "differs from the buffer's"),
        ("token", 12345, "belongs to another"),
    ],
)
def test_tampered_setup_dict(key, value, message):
    with bm.NewBuffer(2, 1, np.int32) as buf:
        d = buf.new_writer()
        d[key] = value
        with pytest.raises(bm.SetupError, match=message):
            bm.Writer(d)


def test_foreign_segment_is_refused():
    name = "/mimocorb-foreign-test"
    path = "/dev/shm" + name
    with open(path, "wb") as f:
        f.write(b"\x00" * 65536)
    try:
        with pytest.raises(bm.RingError, match="not a mimocorb ring buffer"):
            _ringbuf.Segment.attach(name)
        with open(path, "wb") as f:
            f.write(b"x" * 100)
        with pytest.raises(bm.RingError, match="too small"):
            _ringbuf.Segment.attach(name)
    finally:
        os.unlink(path)


def test_other_layout_version_is_refused():
    with bm.NewBuffer(2, 1, np.int32) as buf:
        path = "/dev/shm" + buf.shm_name
        with open(path, "r+b") as f:
            f.seek(8)  # version field after the 8-byte magic
            f.write((99).to_bytes(4, "little"))
        with pytest.raises(bm.SetupError, match="layout version 99"):
            bm.Writer(buf.new_writer())


def test_bad_batch_and_wait_arguments():
    with bm.NewBuffer(2, 1, np.int32) as buf:
        w = bm.Writer(buf.new_writer())
        with pytest.raises(ValueError, match="k >= 1, got 0"):
            w.get_new_buffers(0)
        with pytest.raises(ValueError, match="wait must be one of"):
            bm.Reader(buf.new_reader_group(), wait="busy")
        with pytest.raises(ValueError, match="interval must be >= 0"):
            buf.new_observer(interval=-1)
        w.close()
        with pytest.raises(ValueError, match="closed"):
            w.get_new_buffer()


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"), reason="needs root and unshare")
def test_full_dev_shm_on_a_small_tmpfs():
    """A 1 MiB /dev/shm in a private mount namespace: creation fails at once,
    with the sizes, and a buffer that fits still works."""
    code = textwrap.dedent(
        """
        import numpy as np
        from mimocorb import mimo_buffer as bm
        try:
            bm.NewBuffer(64, 8192, np.float32)   # 2 MiB of slots
        except bm.RingError as e:
            print("REFUSED", e)
        with bm.NewBuffer(8, 1024, np.float32) as b:   # 32 KiB: fits
            w = bm.Writer(b.new_writer()); r = bm.Reader(b.new_reader_group())
            w.put(np.arange(1024, dtype=np.float32)); print("OK", r.get()[5])
            w.close(); r.close()
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    cmd = ["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs /dev/shm && {sys.executable} -c '{code}'"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail("the small-tmpfs run hung")
    if "mount" in out.stderr and "REFUSED" not in out.stdout:
        pytest.skip(f"cannot mount a tmpfs here: {out.stderr.strip()}")
    assert "REFUSED /dev/shm cannot hold a ring buffer of" in out.stdout, out.stdout + out.stderr
    assert "MiB are free there" in out.stdout or "MiB) are free there" in out.stdout
    assert "OK 5.0" in out.stdout, out.stdout + out.stderr
