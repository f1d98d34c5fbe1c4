"""Build the compiled core, src/ringbuf.pyx -> mimocorb._ringbuf.

Everything else about the package is in pyproject.toml.
"""

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
        depends=["src/ringbuf_shm.h"],
        libraries=["rt"],
        extra_compile_args=extra_compile_args,
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={"language_level": "3", "embedsignature": True},
    )
)
