# The one GEMM module: every fused kernel cimports these (see gemm/cc_gemm.h for the design).
# Callers read ``active()`` once per call and pass that descriptor to every function, so what
# they packed always matches the micro-kernel that reads it.

cdef extern from "gemm/cc_gemm.h" nogil:
    ctypedef struct cc_gemm_desc:
        const char* name
        int level, mr, nr, kc, nc, pack_m, emulated


cdef const cc_gemm_desc* active() noexcept nogil
cdef const cc_gemm_desc* desc_of(int level) noexcept nogil
cdef Py_ssize_t packed_a_size(const cc_gemm_desc* d, Py_ssize_t M, Py_ssize_t K) noexcept nogil
cdef Py_ssize_t packed_b_size(const cc_gemm_desc* d) noexcept nogil
cdef void pack_a(const cc_gemm_desc* d, Py_ssize_t M, Py_ssize_t K, const float* A, Py_ssize_t lda,
                 bint trans, float* Ap) noexcept nogil
cdef void gemm(const cc_gemm_desc* d, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* Ap,
               const float* B, Py_ssize_t ldb, bint trans_b, float* C, Py_ssize_t ldc, bint acc,
               float* Bp) noexcept nogil
cdef void gemm_nt(const cc_gemm_desc* d, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* A,
                  Py_ssize_t lda, const float* B, Py_ssize_t ldb, float* C, Py_ssize_t ldc,
                  bint acc) noexcept nogil
cdef Py_ssize_t packed_b_all_size(const cc_gemm_desc* d, Py_ssize_t K, Py_ssize_t N) noexcept nogil
cdef void pack_b_all(const cc_gemm_desc* d, Py_ssize_t K, Py_ssize_t N, const float* B, Py_ssize_t ldb,
                     bint trans, float* Bp) noexcept nogil
cdef void activate(float* row, Py_ssize_t n, int act, float slope) noexcept nogil
cdef void gemm_prepacked(const cc_gemm_desc* d, Py_ssize_t M, Py_ssize_t N, Py_ssize_t K, const float* Ap,
                         const float* Bp, Py_ssize_t kp, Py_ssize_t k_off, float* C, Py_ssize_t ldc,
                         bint acc) noexcept nogil
