"""Build and load the bare ring (bare_ring.pyx) at run time, the limit case of
1 writer -> 1 reader: same user code, same Python call per event per side, none of
mimocorb's bookkeeping. Needs Cython and a C compiler (the `bench` extra)."""

from __future__ import annotations

import hashlib
import importlib
import logging
import mmap
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .events import EventKind

logger = logging.getLogger(__name__)
_PYX = Path(__file__).with_name("bare_ring.pyx")
_module: Optional[Any] = None


def load() -> Any:
    """The compiled module, built once into a folder of the temporary directory."""
    global _module
    if _module is not None:
        return _module
    from Cython.Build import cythonize
    from setuptools import Distribution, Extension

    tag = hashlib.sha1(_PYX.read_bytes() + sys.version.encode()).hexdigest()[:12]
    out = Path(tempfile.gettempdir()) / f"mimocorb-bench-bare-{tag}"
    out.mkdir(exist_ok=True)
    if str(out) not in sys.path:
        sys.path.insert(0, str(out))
    try:
        _module = importlib.import_module("bare_ring")
        return _module
    except ImportError:
        pass
    ext = cythonize([Extension("bare_ring", [str(_PYX)], extra_compile_args=["-O3"])], build_dir=str(out), quiet=True)
    dist = Distribution({"ext_modules": ext})
    cmd = dist.get_command_obj("build_ext")
    cmd.build_lib = str(out)
    cmd.build_temp = str(out / "tmp")
    cmd.ensure_finalized()
    cmd.run()
    _module = importlib.import_module("bare_ring")
    return _module


class BareRing:
    """The bare ring as a peer of the throughput cases (1 writer -> 1 reader only)."""

    name = "bare ring"

    @staticmethod
    def setup(kind: EventKind, groups: int, members: int) -> dict:
        mod = load()
        mem = mmap.mmap(-1, mod.HEADER + kind.footprint)  # shared with the children forked later
        views = [
            np.ndarray((kind.values,), kind.dtype, buffer=mem, offset=mod.HEADER + i * kind.nbytes)
            for i in range(kind.slots)
        ]
        return {"mod": mod, "mem": mem, "views": views}

    @staticmethod
    def writer(report, go, st: dict, kind: EventKind, wid: int, nw: int, duration: float) -> None:
        import time

        w = st["mod"].BareWriter(st["mem"], st["views"])
        report("ready")
        go.wait(30)
        g = w.get_new_buffer
        chunk, x = kind.chunk, 0
        t0 = time.perf_counter()
        end = t0 + duration
        while True:
            for s in range(x, x + chunk):
                g()[0] = s
            x += chunk
            if time.perf_counter() >= end:
                break
        t1 = time.perf_counter()
        w.end()
        report({"count": x, "t0": t0, "t1": t1})

    @staticmethod
    def reader(report, go, st: dict, kind: EventKind, gid: int, nw: int, shared: bool) -> None:
        r = st["mod"].BareReader(st["mem"], st["views"])
        report("ready")
        get = r.get
        exp = bad = 0
        try:
            while True:
                v = get()
                if v[0] != exp:
                    bad += 1
                    exp = int(v[0])
                exp += 1
        except SystemExit:
            pass
        report({"count": exp, "sum": exp * (exp - 1) // 2, "bad": bad})

    @staticmethod
    def end(st: dict) -> None:
        pass

    @staticmethod
    def close(st: dict) -> None:
        st["views"] = None
