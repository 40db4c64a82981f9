/* AVX2 + FMA micro-kernels: 6x16 GEMM tile (12 ymm accumulators, two FMAs per broadcast of A)
 * and the 4x3 dot-product kernel. Compiled with target attributes, so the rest of the build stays
 * baseline x86-64; cc_gemm_select() only picks them on a CPU that has AVX2 and FMA. */
#include "cc_gemm.h"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>

#define TARGET __attribute__((target("avx2,fma")))
enum { MR = 6, NR = 16 };

#define ROW(r, lo, hi) do { __m256 ar = _mm256_broadcast_ss(a + (r)); \
    lo = _mm256_fmadd_ps(ar, b0, lo); hi = _mm256_fmadd_ps(ar, b1, hi); } while (0)
#define PUT(r, lo, hi) do { float* cr = C + (r) * ldc; \
    if (acc) { lo = _mm256_add_ps(lo, _mm256_loadu_ps(cr)); hi = _mm256_add_ps(hi, _mm256_loadu_ps(cr + 8)); } \
    _mm256_storeu_ps(cr, lo); _mm256_storeu_ps(cr + 8, hi); } while (0)

TARGET static void ukernel(ptrdiff_t kc, const float* a, const float* b, ptrdiff_t ldb, float* C,
                           ptrdiff_t ldc, int acc, ptrdiff_t mr, ptrdiff_t nr) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps();
    __m256 c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps();
    __m256 c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (ptrdiff_t k = 0; k < kc; k++, a += MR, b += ldb) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        ROW(0, c00, c01); ROW(1, c10, c11); ROW(2, c20, c21);
        ROW(3, c30, c31); ROW(4, c40, c41); ROW(5, c50, c51);
    }
    if (mr == MR && nr == NR) {
        PUT(0, c00, c01); PUT(1, c10, c11); PUT(2, c20, c21);
        PUT(3, c30, c31); PUT(4, c40, c41); PUT(5, c50, c51);
        return;
    }
    /* Edge tile: spill to a 6x16 buffer, store its mr x nr corner. */
    float t[MR * NR];
    _mm256_storeu_ps(t + 0, c00);  _mm256_storeu_ps(t + 8, c01);
    _mm256_storeu_ps(t + 16, c10); _mm256_storeu_ps(t + 24, c11);
    _mm256_storeu_ps(t + 32, c20); _mm256_storeu_ps(t + 40, c21);
    _mm256_storeu_ps(t + 48, c30); _mm256_storeu_ps(t + 56, c31);
    _mm256_storeu_ps(t + 64, c40); _mm256_storeu_ps(t + 72, c41);
    _mm256_storeu_ps(t + 80, c50); _mm256_storeu_ps(t + 88, c51);
    for (ptrdiff_t r = 0; r < mr; r++)
        for (ptrdiff_t c = 0; c < nr; c++)
            C[r * ldc + c] = acc ? C[r * ldc + c] + t[r * NR + c] : t[r * NR + c];
}
#undef ROW
#undef PUT

TARGET static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* 4 rows of A x 3 rows of B at a time: 12 accumulators, 3 B vectors, one A vector at a time. */
TARGET static void sgemm_nt(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* A, ptrdiff_t lda,
                            const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc, int acc) {
    ptrdiff_t k8 = K / 8 * 8;
    for (ptrdiff_t m0 = 0; m0 < M; m0 += 4) {
        ptrdiff_t mr = M - m0 < 4 ? M - m0 : 4;
        const float* a[4];
        for (int r = 0; r < 4; r++) a[r] = A + (m0 + (r < mr ? r : 0)) * lda;   /* spare rows repeat row 0 */
        for (ptrdiff_t n0 = 0; n0 < N; n0 += 3) {
            ptrdiff_t nr = N - n0 < 3 ? N - n0 : 3;
            const float* b[3];
            for (int c = 0; c < 3; c++) b[c] = B + (n0 + (c < nr ? c : 0)) * ldb;
            __m256 s[4][3];
            for (int r = 0; r < 4; r++)
                for (int c = 0; c < 3; c++) s[r][c] = _mm256_setzero_ps();
            for (ptrdiff_t k = 0; k < k8; k += 8) {
                __m256 b0 = _mm256_loadu_ps(b[0] + k), b1 = _mm256_loadu_ps(b[1] + k), b2 = _mm256_loadu_ps(b[2] + k);
                for (int r = 0; r < 4; r++) {
                    __m256 ar = _mm256_loadu_ps(a[r] + k);
                    s[r][0] = _mm256_fmadd_ps(ar, b0, s[r][0]);
                    s[r][1] = _mm256_fmadd_ps(ar, b1, s[r][1]);
                    s[r][2] = _mm256_fmadd_ps(ar, b2, s[r][2]);
                }
            }
            for (ptrdiff_t r = 0; r < mr; r++)
                for (ptrdiff_t c = 0; c < nr; c++) {
                    float t = hsum(s[r][c]);
                    for (ptrdiff_t k = k8; k < K; k++) t += a[r][k] * b[c][k];
                    float* out = C + (m0 + r) * ldc + n0 + c;
                    *out = acc ? *out + t : t;
                }
        }
    }
}

/* 12 independent ymm FMA chains (FMA latency x pipes <= 12 on the CPUs seen): 16 regs minus x, y. */
TARGET static double fma_loop(long iters) {
    __m256 x = _mm256_set1_ps(1.0001f), y = _mm256_set1_ps(0.9999f), a[12];
    for (int j = 0; j < 12; j++) a[j] = _mm256_set1_ps((float)j);
    for (long i = 0; i < iters; i++) {
        _Pragma("GCC unroll 12")
        for (int j = 0; j < 12; j++) a[j] = _mm256_fmadd_ps(a[j], x, y);
    }
    float t[8];
    __m256 s = a[0];
    for (int j = 1; j < 12; j++) s = _mm256_add_ps(s, a[j]);
    _mm256_storeu_ps(t, s);
    volatile float sink = t[0];
    (void)sink;
    return 12.0 * 16.0 * iters;
}

const cc_gemm_desc cc_desc_avx2 = {"avx2", CC_ISA_AVX2, MR, NR, 256, 384, 128, 0, ukernel, sgemm_nt, fma_loop};

#else  /* not x86-64 with GCC/clang: no AVX2 kernels, never selected */
const cc_gemm_desc cc_desc_avx2 = {"avx2", CC_ISA_AVX2, 6, 16, 256, 384, 128, 0, 0, 0, 0};
#endif
