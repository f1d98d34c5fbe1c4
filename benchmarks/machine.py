"""What the benchmarks ran on: CPU, cores, Python, NumPy, Cython, compiler flags, load."""

from __future__ import annotations

import os
import platform
import socket
import sysconfig
from typing import Any


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _version(mod: str) -> str:
    try:
        m = __import__(mod)
        return getattr(m, "__version__", "?")
    except ImportError:
        return "not installed"


def describe() -> dict[str, Any]:
    import numpy

    import mimocorb

    try:
        from importlib.metadata import version

        ff = version("faster-fifo")
    except Exception:
        ff = "not installed"
    return {
        "host": socket.gethostname(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "cython": _version("Cython"),
        "faster_fifo": ff,
        "mimocorb": getattr(mimocorb, "__version__", _version("mimocorb._version")),
        "cc": sysconfig.get_config_var("CC"),
        "cflags": sysconfig.get_config_var("CFLAGS"),
        "opt": sysconfig.get_config_var("OPT"),
        "ringbuf_extra_flags": "-O3 -std=gnu11" + (" -march=native" if os.environ.get("MIMOCORB_NATIVE") else ""),
        "loadavg_start": os.getloadavg(),
    }
