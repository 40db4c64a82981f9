"""Build the compiled kernels; all static metadata lives in pyproject.toml.

This file only does what pyproject.toml cannot:

* cythonize ``convcore/_kernels/*.pyx`` with the project's compiler directives
  (checks off; ``CONVCORE_CYTHON_DEBUG=1`` turns bounds/wraparound/initialized checks back on),
* add ``-O3`` on unix compilers (never ``-ffast-math``: max pooling must see NaNs),
* enable OpenMP when the configured compiler can compile *and link* a tiny OpenMP
  program, and build serial kernels otherwise (still correct, just single-threaded),
* build the GEMM module from its hand-written C (``convcore/_kernels/gemm/``): the AVX2 and
  AVX-512 micro-kernels carry per-function ``target`` attributes and are chosen at run time, so
  the build itself stays baseline x86-64 (no ``-march=native``).

Environment variables:

``CONVCORE_OPENMP``        ``0`` forces a serial build, ``1`` fails the build if the probe fails.
``CONVCORE_CYTHON_DEBUG``  ``1``: Cython bounds/wraparound/initialized checks on.
``CONVCORE_SANITIZE``      ``1``: also compile and link with AddressSanitizer + UBSan (debug only).
``CONVCORE_CYTHON_ANNOTATE`` ``1``: write Cython's HTML annotation next to each ``.pyx``.
``CONVCORE_NATIVE``        ``1``: add ``-march=native`` (local benchmarks only, never for wheels).
``CONVCORE_SIMDE``         ``1``: compile the AVX-512 micro-kernels against SIMDe's portable
                           intrinsics (``pip install simde-py``), so a machine without AVX-512 runs
                           their correctness tests (a test build: slow, never for users).
"""

import os
import sys
import tempfile
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

KERNELS = ["_gemm", "_conv", "_pool", "_elementwise"]
GEMM_C = ["cc_gemm.c", "cc_avx2.c", "cc_avx512.c"]   # convcore/_kernels/gemm/: hand-written, not generated
PARALLEL_C = ["convcore/_kernels/gemm/cc_parallel.c", "convcore/_kernels/gemm/cc_parallel.h"]   # the native worker pool

_OPENMP_PROBE = r"""
#include <omp.h>
int main(void) {
    int n = 0;
    #pragma omp parallel reduction(+:n)
    n += omp_get_num_threads() > 0;
    return n > 0 ? 0 : 1;
}
"""


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _openmp_flags(compiler):
    """Return (compile_args, link_args) enabling OpenMP, or None if the compiler lacks it."""
    mode = os.environ.get("CONVCORE_OPENMP", "").strip()
    if mode == "0":
        print("convcore: CONVCORE_OPENMP=0, building serial kernels (no OpenMP)")
        return None
    if compiler.compiler_type == "msvc":
        flags = (["/openmp"], [])
    else:
        flags = (["-fopenmp"], ["-fopenmp"])
    from setuptools.errors import CompileError, LinkError

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp, "probe_openmp.c")
        src.write_text(_OPENMP_PROBE)
        try:
            # Compile and link, but do not run: cross-builds must work too.
            objs = compiler.compile([str(src)], output_dir=tmp, extra_postargs=flags[0])
            compiler.link_executable(objs, "probe_openmp", output_dir=tmp, extra_postargs=flags[1])
        except (CompileError, LinkError) as exc:
            if mode == "1":
                raise RuntimeError(
                    "convcore: CONVCORE_OPENMP=1 but the compiler cannot build OpenMP code"
                ) from exc
            print(
                "convcore: the compiler cannot build OpenMP code "
                f"({type(exc).__name__}); building serial kernels without OpenMP"
            )
            return None
    return flags


class BuildExt(build_ext):
    def build_extensions(self):
        # A SIMDe build and a native one compile the same sources differently: never reuse the
        # other flavour's objects or modules left in build/ (setuptools only compares timestamps).
        flavour = "simde" if _flag("CONVCORE_SIMDE") else "native"
        marker = Path(self.build_temp, "convcore-gemm-flavour")
        if not marker.exists() or marker.read_text() != flavour:
            self.force = True
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.write_text(flavour)
        unix = self.compiler.compiler_type != "msvc"
        openmp = _openmp_flags(self.compiler)
        compile_args, link_args = [], []
        if unix:
            compile_args += ["-O3"]
            if _flag("CONVCORE_NATIVE"):
                compile_args += ["-march=native"]
            if _flag("CONVCORE_SANITIZE"):
                san = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-g", "-O1"]
                compile_args += san
                link_args += ["-fsanitize=address,undefined"]
        if openmp is not None:
            compile_args += openmp[0]
            link_args += openmp[1]
            print("convcore: building kernels with OpenMP")
        for ext in self.extensions:
            ext.extra_compile_args = list(ext.extra_compile_args or []) + compile_args
            ext.extra_link_args = list(ext.extra_link_args or []) + link_args
            ext.define_macros = list(ext.define_macros or []) + [
                ("CONVCORE_OPENMP_BUILD", "1" if openmp is not None else "0")
            ]
        super().build_extensions()


def _extensions():
    from Cython.Build import cythonize

    debug = _flag("CONVCORE_CYTHON_DEBUG") or _flag("CONVCORE_SANITIZE")
    directives = {
        "language_level": 3,
        "boundscheck": debug,
        "wraparound": debug,
        "initializedcheck": debug,
        "nonecheck": False,
        "cdivision": True,
        "embedsignature": True,
    }
    gemm_dir = "convcore/_kernels/gemm"
    headers = [f"{gemm_dir}/cc_gemm.h", "convcore/_kernels/_gemm.pxd"]
    exts = []
    for name in KERNELS:
        sources, include, macros = [f"convcore/_kernels/{name}.pyx"], ["convcore/_kernels"], []
        if name == "_conv":
            sources += ["convcore/_kernels/gemm/cc_parallel.c"]   # the native worker pool (hand-written C)
        if name == "_gemm":
            sources += [f"{gemm_dir}/{c}" for c in GEMM_C]
            if _flag("CONVCORE_SIMDE"):
                import simde_py

                include.append(simde_py.get_include())
                macros.append(("CC_AVX512_SIMDE", "1"))
                print("convcore: CONVCORE_SIMDE=1, AVX-512 kernels built on SIMDe's emulation (test build)")
        exts.append(Extension(f"convcore._kernels.{name}", sources, include_dirs=include, define_macros=macros,
                              depends=headers + [f"{gemm_dir}/{c}" for c in GEMM_C] + PARALLEL_C,
                              libraries=["pthread"] if name == "_conv" and os.name == "posix" else []))
    return cythonize(
        exts,
        compiler_directives=directives,
        annotate=_flag("CONVCORE_CYTHON_ANNOTATE"),
        nthreads=0 if sys.platform == "win32" else (os.cpu_count() or 1),
        force=debug,
    )


setup(ext_modules=_extensions(), cmdclass={"build_ext": BuildExt})
