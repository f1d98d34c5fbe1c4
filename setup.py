"""Build the compiled core, src/ringbuf.pyx -> mimocorb._ringbuf, and the pulse
finder's kernel, src/peaks.pyx -> mimocorb.muon._peaks (optional at run time: the
pulse finder gives every trace to scipy.signal.find_peaks without it).

Everything else about the package is in pyproject.toml.
"""

import glob
import os

import numpy  # noqa: F401  (build requirement; kept for a clear error when missing)
from Cython.Build import cythonize
from setuptools import Extension, setup

extra_compile_args = ["-O3", "-std=gnu11", "-Wno-unused-function"]
if os.environ.get("MIMOCORB_NATIVE"):
    extra_compile_args.append("-march=native")

extensions = [
    Extension(
        "mimocorb._ringbuf",
        sources=["src/ringbuf.pyx"],
        include_dirs=["src"],
        depends=["src/ringbuf_shm.h", "src/ringbuf_shm.pxd", *sorted(glob.glob("src/ringbuf_*.pxi"))],
        libraries=["rt"],
        extra_compile_args=extra_compile_args,
    ),
    Extension(
        "mimocorb.muon._peaks",
        sources=["src/peaks.pyx"],
        # no fused multiply-add: each float64 operation rounds as in SciPy's kernels
        extra_compile_args=extra_compile_args + ["-ffp-contract=off"],
    ),
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
    )
)
