# Design note: convcore's float32 GEMM and its run-time ISA dispatch, in one module.
#
# A. The C side (gemm/): a descriptor per micro-kernel (name, MR x NR, KC/NC blocking, kernel
#    pointers), the driver and packing that read MR/NR from it, and cc_gemm_select(), which picks
#    the best descriptor this CPU and OS run (cpuid + xgetbv) at most a given level.
# B. This module owns the one "active" descriptor. It is chosen at import, capped by
#    ``CONVCORE_MAX_ISA`` through ``convcore._caps``, which calls ``select``; every other kernel
#    module cimports ``active`` and the wrappers of _gemm.pxd, so no kernel keeps its own copy of
#    the dispatch state.
# C. ``sgemm`` and ``sgemm_nt`` below are the Python entry points (ops.matmul, tests); ``isa``
#    lets tests run one descriptor without changing the active one.

import threading
import time

import numpy as np

cdef extern from "gemm/cc_gemm.h" nogil:
    int cc_gemm_cpu_level()
    const cc_gemm_desc* cc_gemm_select(int max_level)
    const cc_gemm_desc* cc_gemm_desc_of(int level)
    Py_ssize_t cc_packed_a_size(const cc_gemm_desc* d, Py_ssize_t M, Py_ssize_t K)
    Py_ssize_t cc_packed_b_size(const cc_gemm_desc* d)
    void cc_pack_a(const cc_gemm_desc* d, Py_ssize_t M, Py_ssize_t K, const float* A, Py_ssize_t lda,
                   int trans, float* Ap)
    void cc_sgemm(const cc_gemm_desc* d, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* Ap,
                  const float* B, Py_ssize_t ldb, int trans_b, float* C, Py_ssize_t ldc, int acc, float* Bp)
    double cc_fma_loop(const cc_gemm_desc* d, long iters)
    Py_ssize_t cc_packed_b_all_size(const cc_gemm_desc* d, Py_ssize_t K, Py_ssize_t N)
    void cc_pack_b_all(const cc_gemm_desc* d, Py_ssize_t K, Py_ssize_t N, const float* B, Py_ssize_t ldb,
                       int trans, float* Bp)
    void cc_sgemm_prepacked(const cc_gemm_desc* d, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* Ap,
                            const float* Bp, Py_ssize_t kp, Py_ssize_t k_off, float* C, Py_ssize_t ldc, int acc)
    void cc_sgemm_nt(const cc_gemm_desc* d, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* A,
                     Py_ssize_t lda, const float* B, Py_ssize_t ldb, float* C, Py_ssize_t ldc, int acc)

LEVELS = ("portable", "avx2", "avx512")

cdef const cc_gemm_desc* _active = cc_gemm_select(len(LEVELS) - 1)



cdef const cc_gemm_desc* active() noexcept nogil:
    return _active


cdef const cc_gemm_desc* desc_of(int level) noexcept nogil:
    return cc_gemm_desc_of(level)


cdef Py_ssize_t packed_a_size(const cc_gemm_desc* d, Py_ssize_t M, Py_ssize_t K) noexcept nogil:
    return cc_packed_a_size(d, M, K)


cdef Py_ssize_t packed_b_size(const cc_gemm_desc* d) noexcept nogil:
    return cc_packed_b_size(d)


cdef void pack_a(const cc_gemm_desc* d, Py_ssize_t M, Py_ssize_t K, const float* A, Py_ssize_t lda,
                 bint trans, float* Ap) noexcept nogil:
    cc_pack_a(d, M, K, A, lda, trans, Ap)


cdef void gemm(const cc_gemm_desc* d, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* Ap,
               const float* B, Py_ssize_t ldb, bint trans_b, float* C, Py_ssize_t ldc, bint acc,
               float* Bp) noexcept nogil:
    cc_sgemm(d, M, N, K, Ap, B, ldb, trans_b, C, ldc, acc, Bp)


cdef void gemm_nt(const cc_gemm_desc* d, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* A,
                  Py_ssize_t lda, const float* B, Py_ssize_t ldb, float* C, Py_ssize_t ldc,
                  bint acc) noexcept nogil:
    cc_sgemm_nt(d, M, N, K, A, lda, B, ldb, C, ldc, acc)


cdef Py_ssize_t packed_b_all_size(const cc_gemm_desc* d, Py_ssize_t K, Py_ssize_t N) noexcept nogil:
    return cc_packed_b_all_size(d, K, N)


cdef void pack_b_all(const cc_gemm_desc* d, Py_ssize_t K, Py_ssize_t N, const float* B, Py_ssize_t ldb,
                     bint trans, float* Bp) noexcept nogil:
    cc_pack_b_all(d, K, N, B, ldb, trans, Bp)


cdef void gemm_prepacked(const cc_gemm_desc* d, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* Ap,
                         const float* Bp, Py_ssize_t kp, Py_ssize_t k_off, float* C, Py_ssize_t ldc,
                         bint acc) noexcept nogil:
    cc_sgemm_prepacked(d, M, N, K, Ap, Bp, kp, k_off, C, ldc, acc)


def cpu_isa():
    """The best ISA this CPU, its OS and this build run: "avx512", "avx2" or "portable"."""
    return LEVELS[cc_gemm_cpu_level()]


def select(str max_isa):
    """Make the best descriptor at most ``max_isa`` the active one; returns its name. Process-wide:
    called by ``convcore._caps`` (at import, and by tests between calls, never during one)."""
    global _active
    _active = cc_gemm_select(LEVELS.index(max_isa))
    return _active.name.decode()


cdef const cc_gemm_desc* _desc(isa) except NULL:
    if isa is None:
        return _active
    if LEVELS.index(isa) > cc_gemm_cpu_level():
        raise ValueError(f"isa={isa!r} cannot run here (this CPU and build run up to {cpu_isa()!r})")
    return cc_gemm_desc_of(LEVELS.index(isa))


def descriptor(isa=None):
    """The active descriptor (or ``isa``'s) as a dict: name, mr, nr, kc, nc, pack_m, emulated."""
    cdef const cc_gemm_desc* d = _desc(isa)
    return {"name": d.name.decode(), "mr": d.mr, "nr": d.nr, "kc": d.kc, "nc": d.nc, "pack_m": d.pack_m,
            "emulated": bool(d.emulated)}


def sgemm(const float[:, ::1] a,      # IN  (M, K), or (K, M) with trans_a
          const float[:, ::1] b,      # IN  (K, N), or (N, K) with trans_b
          float[:, ::1] c,            # OUT (M, N), added to with accumulate
          bint trans_a=False, bint trans_b=False, bint accumulate=False, isa=None):
    """c (+)= op(a) @ op(b) on one thread, with the active micro-kernel (or ``isa``'s). Every
    dimension must be at least 1."""
    cdef const cc_gemm_desc* d = _desc(isa)
    cdef Py_ssize_t M = c.shape[0], N = c.shape[1], K = a.shape[0] if trans_a else a.shape[1]
    a_mk = (a.shape[1], a.shape[0]) if trans_a else (a.shape[0], a.shape[1])
    b_kn = (b.shape[1], b.shape[0]) if trans_b else (b.shape[0], b.shape[1])
    if a_mk != (M, K) or b_kn != (K, N):
        raise ValueError(f"sgemm: shapes do not chain: a {a_mk} (trans_a={trans_a}), b {b_kn} "
                         f"(trans_b={trans_b}), c ({M}, {N})")
    if M == 0 or N == 0 or K == 0:
        raise ValueError(f"sgemm: every dimension must be at least 1; received M={M}, N={N}, K={K}")
    cdef float[::1] ap = np.empty(cc_packed_a_size(d, M, K), dtype=np.float32)
    cdef float[::1] bp = np.empty(cc_packed_b_size(d), dtype=np.float32)
    with nogil:
        cc_pack_a(d, M, K, &a[0, 0], a.shape[1], trans_a, &ap[0])
        cc_sgemm(d, M, N, K, &ap[0], &b[0, 0], b.shape[1], trans_b, &c[0, 0], N, accumulate, &bp[0])


def sgemm_nt(const float[:, ::1] a,   # IN  (M, K)
             const float[:, ::1] b,   # IN  (N, K)
             float[:, ::1] c,         # OUT (M, N), added to with accumulate
             bint accumulate=False, isa=None):
    """c (+)= a @ b.T by dot products (the weight gradients' kernel)."""
    cdef const cc_gemm_desc* d = _desc(isa)
    if a.shape[1] != b.shape[1] or c.shape[0] != a.shape[0] or c.shape[1] != b.shape[0]:
        raise ValueError(f"sgemm_nt: shapes do not chain: a ({a.shape[0]}, {a.shape[1]}), "
                         f"b ({b.shape[0]}, {b.shape[1]}), c ({c.shape[0]}, {c.shape[1]})")
    if c.shape[0] == 0 or c.shape[1] == 0:
        return
    if a.shape[1] == 0:   # empty sums (and no pointer into an empty axis)
        if not accumulate:
            c[:, :] = 0
        return
    with nogil:
        gemm_nt(d, c.shape[0], c.shape[1], a.shape[1], &a[0, 0], a.shape[1], &b[0, 0], b.shape[1],
                &c[0, 0], c.shape[1], accumulate)


def fma_peak(isa=None, int threads=1, double seconds=0.2):
    """Measured FMA throughput, GFLOP/s, of ``threads`` threads each running independent FMA
    chains of ``isa``'s full vector width (default: the active micro-kernel's ISA) at once: the
    ceiling a GEMM on these cores can approach. About ``seconds`` per try, best of three."""
    cdef const cc_gemm_desc* d = _desc(isa)
    cdef long iters = 1 << 14
    while True:   # calibrate the step count on one thread
        t0 = time.perf_counter()
        with nogil:
            cc_fma_loop(d, iters)
        elapsed = time.perf_counter() - t0
        if elapsed > seconds / 8 or iters > (1 << 40):
            break
        iters *= 2
    iters = max(1, <long>(iters * seconds / max(elapsed, 1e-9)))
    best = 0.0
    for _ in range(3):
        start = threading.Barrier(threads + 1)
        done = []
        pool = [threading.Thread(target=_fma_worker, args=(isa, iters, start, done)) for _ in range(threads)]
        for t in pool:
            t.start()
        start.wait()
        t0 = time.perf_counter()
        for t in pool:
            t.join()
        best = max(best, sum(done) / (time.perf_counter() - t0) / 1e9)
    return best


def _fma_worker(isa, long iters, start, done):
    cdef const cc_gemm_desc* d = _desc(isa)
    cdef double flops
    start.wait()
    with nogil:
        flops = cc_fma_loop(d, iters)
    done.append(flops)


# ---------------------------------------------------------------------------------------------
# Inference entry points (``convcore.ops._infer``): weights packed once, by ``pack_a`` /
# ``pack_b_panels`` below, for the descriptor of ISA ``level``, and reused by every later call
# (the pack cache keys on the level, so a pack is only ever read by the micro-kernel it was made
# for). Callers split the work over threads (ranges of rows or columns) and pass per-thread scratch.

def level_of(str isa):
    """CC_ISA_* of an ISA name."""
    return LEVELS.index(isa)


def packed_sizes(int level, Py_ssize_t M, Py_ssize_t K):
    """(floats of A packed as M x K, floats of the B packing scratch) for ISA ``level``."""
    cdef const cc_gemm_desc* d = cc_gemm_desc_of(level)
    return cc_packed_a_size(d, M, K), cc_packed_b_size(d)


def tile(int level):
    """(MR, NR) of ISA ``level``'s micro-kernel."""
    cdef const cc_gemm_desc* d = cc_gemm_desc_of(level)
    return d.mr, d.nr


def pack_a_stack(const float[:, :, ::1] a,   # IN  (S, M, K): S matrices
                 float[::1] out,             # OUT S packed matrices, ``stride`` floats apart
                 Py_ssize_t stride, int level):
    """Pack each a[s] into MR-row panels (rows past M zero) for ISA ``level``."""
    cdef const cc_gemm_desc* d = cc_gemm_desc_of(level)
    cdef Py_ssize_t s
    with nogil:
        for s in range(a.shape[0]):
            cc_pack_a(d, a.shape[1], a.shape[2], &a[s, 0, 0], a.shape[2], 0, &out[s * stride])


def packed_b_panels_size(int level, Py_ssize_t K, Py_ssize_t N):
    return cc_packed_b_all_size(cc_gemm_desc_of(level), K, N)


def pack_b_panels(const float[:, ::1] bt,    # IN  (N, K): B given as its row-major transpose
                  float[::1] out,            # OUT NR-column panels of K rows (packed_b_panels_size)
                  int level):
    """B (K x N) = bt.T packed once into NR-column panels (a Linear layer's weight W = bt)."""
    with nogil:
        cc_pack_b_all(cc_gemm_desc_of(level), bt.shape[1], bt.shape[0], &bt[0, 0], bt.shape[1], 1, &out[0])


cdef void activate(float* row, Py_ssize_t n, int act, float slope) noexcept nogil:
    # The inference epilogues' activation, in place: 0 none, 1 ReLU, 2 leaky ReLU (``slope``).
    cdef Py_ssize_t i
    cdef float v
    if act == 1:
        for i in range(n):
            v = row[i]
            row[i] = 0 if v <= 0 else v
    elif act == 2:
        for i in range(n):
            v = row[i]
            row[i] = v * slope if v <= 0 else v


cdef void _bias_act_rows(float* c, Py_ssize_t ldc, Py_ssize_t rows, Py_ssize_t n, const float* bias, int act,
                         float slope) noexcept nogil:
    # c[r, :n] = act(c[r, :n] + bias): the same float32 operations as ``y += bias`` then ``relu(y)``
    cdef Py_ssize_t r, i
    cdef float* row
    for r in range(rows):
        row = c + r * ldc
        if bias != NULL:
            for i in range(n):
                row[i] = row[i] + bias[i]
        activate(row, n, act, slope)


def linear_packed(const float[:, ::1] x,      # IN  (M, K)
                  const float[::1] bpack,     # IN  W^T packed by pack_b_panels (all N columns)
                  const float[::1] bias,      # IN  (N,) or None
                  float[:, ::1] out,          # OUT (M, N): rows [m0, m1) written
                  float[::1] apack,           # scratch: packed_sizes(level, m1 - m0, K)[0] floats
                  Py_ssize_t m0, Py_ssize_t m1, int level, int act, float slope):
    """out[m0:m1] = act(x[m0:m1] @ W^T + bias) on one thread, W packed once. Every output is the
    same sum, in the same order, as ``sgemm`` computes it (then ``+ bias``): the bits of the
    training path's ``matmul(x, W.T) + bias``. One row (batch 1) runs the micro-kernel's 4-row
    edge tile over W^T's panels: a GEMV reading the weight once."""
    cdef const cc_gemm_desc* d = cc_gemm_desc_of(level)
    cdef Py_ssize_t K = x.shape[1], N = out.shape[1], M = m1 - m0
    cdef const float* b = NULL
    if bias is not None:
        b = &bias[0]
    if M <= 0:
        return
    with nogil:
        cc_pack_a(d, M, K, &x[m0, 0], K, 0, &apack[0])
        cc_sgemm_prepacked(d, M, N, K, &apack[0], &bpack[0], K, 0, &out[m0, 0], N, 0)
        _bias_act_rows(&out[m0, 0], N, M, N, b, act, slope)
