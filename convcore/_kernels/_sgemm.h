/* convcore's single-precision GEMM, for the convolution kernels of _conv.pyx (and, through its
 * ``sgemm`` wrapper, ``convcore.ops.matmul``, which the float32 Linear layers use).
 *
 * C[M, N] (+)= A[M, K] @ B[K, N], float32, in the classic blocked design (Goto & van de Geijn;
 * BLIS): A is packed once into MR-row panels, B into NR-column panels of at most KC rows, and a
 * 6x16 register-blocked micro-kernel does the multiply-adds (12 AVX2 accumulators, two FMAs per
 * broadcast of A). The convolution calls it from inside its own per-image loop, one GEMM at a
 * time per thread, so it is serial and allocation-free: callers pass the packing scratch.
 *
 * Why not numpy's BLAS: the convolution's GEMMs are small (per image, L2: 64 x 196 x 160) and
 * alternate with data movement; fusing them into one per-image pipeline keeps every operand in
 * the core's cache and needs no second thread pool. Shapes are trusted (validated in Python).
 *
 * The AVX2+FMA micro-kernel is compiled with a target attribute and chosen at run time by
 * cc_sgemm_init(); a portable C micro-kernel does the same arithmetic everywhere else.
 */
#ifndef CONVCORE_SGEMM_H
#define CONVCORE_SGEMM_H

#include <stddef.h>

#define CC_MR 6
#define CC_NR 16
#define CC_KC 256
#define CC_NC 384
#define CC_PACK_M 128   /* from this many rows of A on, packing B pays for itself */

#if (defined(__GNUC__) || defined(__clang__)) && (defined(__x86_64__) || defined(__i386__))
#define CC_X86_DISPATCH 1
#include <immintrin.h>
#else
#define CC_X86_DISPATCH 0
#endif

/* Floats of packed A for an M x K matrix, and of the B packing scratch one GEMM needs. */
static inline ptrdiff_t cc_packed_a_size(ptrdiff_t M, ptrdiff_t K) {
    return ((M + CC_MR - 1) / CC_MR) * CC_MR * K;
}
static inline ptrdiff_t cc_packed_b_size(void) {
    return (ptrdiff_t)CC_KC * ((CC_NC + CC_NR - 1) / CC_NR) * CC_NR;
}

/* Ap[p][k][r] = A(p*MR + r, k) (rows past M are zero): one MR-row panel after another. A(m, k)
 * is A[m*lda + k], or A[k*lda + m] when ``trans`` (A given as its transpose, row-major). */
static void cc_pack_a(ptrdiff_t M, ptrdiff_t K, const float* A, ptrdiff_t lda, int trans, float* Ap) {
    ptrdiff_t sm = trans ? 1 : lda, sk = trans ? lda : 1;
    for (ptrdiff_t p = 0; p < M; p += CC_MR) {
        ptrdiff_t mr = M - p < CC_MR ? M - p : CC_MR;
        for (ptrdiff_t k = 0; k < K; k++) {
            for (ptrdiff_t r = 0; r < mr; r++) Ap[k * CC_MR + r] = A[(p + r) * sm + k * sk];
            for (ptrdiff_t r = mr; r < CC_MR; r++) Ap[k * CC_MR + r] = 0.0f;
        }
        Ap += K * CC_MR;
    }
}

/* Rows [k0, k0 + kc) and columns [n0, n0 + nc) of B into NR-column panels: Bp[j][k][c] =
 * B(k0 + k, n0 + j*NR + c), columns past nc zero. B(k, n) is B[k*ldb + n], or B[n*ldb + k]
 * when ``trans`` (B given as its transpose, row-major). */
static void cc_pack_b(ptrdiff_t kc, ptrdiff_t nc, const float* B, ptrdiff_t ldb, int trans,
                      ptrdiff_t k0, ptrdiff_t n0, float* Bp) {
    for (ptrdiff_t j = 0; j < nc; j += CC_NR) {
        ptrdiff_t nr = nc - j < CC_NR ? nc - j : CC_NR;
        if (!trans) {
            for (ptrdiff_t k = 0; k < kc; k++) {
                const float* src = B + (k0 + k) * ldb + n0 + j;
                float* dst = Bp + k * CC_NR;
                for (ptrdiff_t c = 0; c < nr; c++) dst[c] = src[c];
                for (ptrdiff_t c = nr; c < CC_NR; c++) dst[c] = 0.0f;
            }
        } else {
            for (ptrdiff_t c = 0; c < CC_NR; c++) {
                if (c < nr) {
                    const float* src = B + (n0 + j + c) * ldb + k0;
                    for (ptrdiff_t k = 0; k < kc; k++) Bp[k * CC_NR + c] = src[k];
                } else {
                    for (ptrdiff_t k = 0; k < kc; k++) Bp[k * CC_NR + c] = 0.0f;
                }
            }
        }
        Bp += kc * CC_NR;
    }
}

/* The mr x nr corner of a 6x16 result tile ``t`` into C (added to C when ``acc``). */
static inline void cc_store_tile(const float* t, float* C, ptrdiff_t ldc, int acc, ptrdiff_t mr, ptrdiff_t nr) {
    for (ptrdiff_t r = 0; r < mr; r++)
        for (ptrdiff_t c = 0; c < nr; c++)
            C[r * ldc + c] = acc ? C[r * ldc + c] + t[r * CC_NR + c] : t[r * CC_NR + c];
}

typedef void (*cc_ukernel_fn)(ptrdiff_t kc, const float* a, const float* b, ptrdiff_t ldb, float* C,
                              ptrdiff_t ldc, int acc, ptrdiff_t mr, ptrdiff_t nr);

/* Portable micro-kernel: C[0:mr, 0:nr] (+)= a (kc x MR packed) @ b (kc rows of NR values, ldb
 * apart: a packed panel, or B itself). */
static void cc_ukernel_portable(ptrdiff_t kc, const float* a, const float* b, ptrdiff_t ldb, float* C,
                                ptrdiff_t ldc, int acc, ptrdiff_t mr, ptrdiff_t nr) {
    float t[CC_MR * CC_NR] = {0.0f};
    for (ptrdiff_t k = 0; k < kc; k++, a += CC_MR, b += ldb)
        for (ptrdiff_t r = 0; r < CC_MR; r++)
            for (ptrdiff_t c = 0; c < CC_NR; c++) t[r * CC_NR + c] += a[r] * b[c];
    cc_store_tile(t, C, ldc, acc, mr, nr);
}

#if CC_X86_DISPATCH
#define CC_ROW(r, lo, hi) do { __m256 ar = _mm256_broadcast_ss(a + (r)); \
    lo = _mm256_fmadd_ps(ar, b0, lo); hi = _mm256_fmadd_ps(ar, b1, hi); } while (0)
#define CC_PUT(r, lo, hi) do { float* cr = C + (r) * ldc; \
    if (acc) { lo = _mm256_add_ps(lo, _mm256_loadu_ps(cr)); hi = _mm256_add_ps(hi, _mm256_loadu_ps(cr + 8)); } \
    _mm256_storeu_ps(cr, lo); _mm256_storeu_ps(cr + 8, hi); } while (0)

__attribute__((target("avx2,fma")))
static void cc_ukernel_avx2(ptrdiff_t kc, const float* a, const float* b, ptrdiff_t ldb, float* C,
                            ptrdiff_t ldc, int acc, ptrdiff_t mr, ptrdiff_t nr) {
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps(), c10 = _mm256_setzero_ps();
    __m256 c11 = _mm256_setzero_ps(), c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps(), c40 = _mm256_setzero_ps();
    __m256 c41 = _mm256_setzero_ps(), c50 = _mm256_setzero_ps(), c51 = _mm256_setzero_ps();
    for (ptrdiff_t k = 0; k < kc; k++, a += CC_MR, b += ldb) {
        __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
        CC_ROW(0, c00, c01); CC_ROW(1, c10, c11); CC_ROW(2, c20, c21);
        CC_ROW(3, c30, c31); CC_ROW(4, c40, c41); CC_ROW(5, c50, c51);
    }
    if (mr == CC_MR && nr == CC_NR) {
        CC_PUT(0, c00, c01); CC_PUT(1, c10, c11); CC_PUT(2, c20, c21);
        CC_PUT(3, c30, c31); CC_PUT(4, c40, c41); CC_PUT(5, c50, c51);
        return;
    }
    float t[CC_MR * CC_NR];
    _mm256_storeu_ps(t + 0, c00);  _mm256_storeu_ps(t + 8, c01);
    _mm256_storeu_ps(t + 16, c10); _mm256_storeu_ps(t + 24, c11);
    _mm256_storeu_ps(t + 32, c20); _mm256_storeu_ps(t + 40, c21);
    _mm256_storeu_ps(t + 48, c30); _mm256_storeu_ps(t + 56, c31);
    _mm256_storeu_ps(t + 64, c40); _mm256_storeu_ps(t + 72, c41);
    _mm256_storeu_ps(t + 80, c50); _mm256_storeu_ps(t + 88, c51);
    cc_store_tile(t, C, ldc, acc, mr, nr);
}
#undef CC_ROW
#undef CC_PUT
#endif

/* C[M, N] (+ when ``acc``)= A @ B^T where A (M x K) and B (N x K) are both row-major: every
 * C entry is a dot product of two contiguous rows. This is the weight gradient's shape (a sum over
 * output positions, K, which is long, with M and N the channel counts, which may be small): no
 * packing at all, where the packed GEMM would pack both K-long operands for a handful of
 * multiply-adds per value (S1: 16 x 30 outputs over 61,009 positions per image). */
typedef void (*cc_sgemm_nt_fn)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* A, ptrdiff_t lda,
                               const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc, int acc);

static void cc_sgemm_nt_portable(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* A, ptrdiff_t lda,
                                 const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc, int acc) {
    for (ptrdiff_t m = 0; m < M; m++)
        for (ptrdiff_t n = 0; n < N; n++) {
            const float* a = A + m * lda;
            const float* b = B + n * ldb;
            float s = 0.0f;
            for (ptrdiff_t k = 0; k < K; k++) s += a[k] * b[k];
            C[m * ldc + n] = acc ? C[m * ldc + n] + s : s;
        }
}

#if CC_X86_DISPATCH
__attribute__((target("avx2,fma")))
static inline float cc_hsum_avx2(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* 4 rows of A x 3 rows of B at a time: 12 accumulators, 3 B vectors, one A vector at a time. */
__attribute__((target("avx2,fma")))
static void cc_sgemm_nt_avx2(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* A, ptrdiff_t lda,
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
                    float t = cc_hsum_avx2(s[r][c]);
                    for (ptrdiff_t k = k8; k < K; k++) t += a[r][k] * b[c][k];
                    float* out = C + (m0 + r) * ldc + n0 + c;
                    *out = acc ? *out + t : t;
                }
        }
    }
}
#endif

static cc_sgemm_nt_fn cc_sgemm_nt = cc_sgemm_nt_portable;

static cc_ukernel_fn cc_ukernel = cc_ukernel_portable;

/* Pick the micro-kernel: AVX2+FMA when this CPU has it (returns 2), else (or when
 * ``portable``, for tests) the portable one (returns 1). */
static int cc_sgemm_init(int portable) {
#if CC_X86_DISPATCH
    __builtin_cpu_init();
    if (!portable && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) {
        cc_ukernel = cc_ukernel_avx2;
        cc_sgemm_nt = cc_sgemm_nt_avx2;
        return 2;
    }
#endif
    cc_ukernel = cc_ukernel_portable;
    cc_sgemm_nt = cc_sgemm_nt_portable;
    return 1;
}

/* C[M, N] (+ when ``acc``)= A @ B with A packed by cc_pack_a (M x K) and B as cc_pack_b reads
 * it; ``Bp`` holds cc_packed_b_size() floats. When A is short (the convolutions' 32-64 rows), a
 * row-major B is read in place, 16 columns at a time (the rows of a k-block stay in L1 while
 * every A panel passes over them); only its last, partial column panel is packed. Packing every
 * panel cost a quarter of the time there (64 x 196 x 160: 47 -> 64 GFLOP/s on one core read in
 * place); for tall A and for a transposed B, packing wins (384^3: 84 packed, 64 in place). */
static void cc_sgemm(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* Ap, const float* B, ptrdiff_t ldb,
                     int trans_b, float* C, ptrdiff_t ldc, int acc, float* Bp) {
    for (ptrdiff_t n0 = 0; n0 < N; n0 += CC_NC) {
        ptrdiff_t nc = N - n0 < CC_NC ? N - n0 : CC_NC;
        ptrdiff_t full = trans_b || M > CC_PACK_M ? 0 : nc / CC_NR * CC_NR;   /* read in place */
        for (ptrdiff_t k0 = 0; k0 < K; k0 += CC_KC) {
            ptrdiff_t kc = K - k0 < CC_KC ? K - k0 : CC_KC;
            int add = acc || k0 > 0;
            if (full < nc) cc_pack_b(kc, nc - full, B, ldb, trans_b, k0, n0 + full, Bp);
            for (ptrdiff_t j = 0; j < nc; j += CC_NR) {
                ptrdiff_t nr = nc - j < CC_NR ? nc - j : CC_NR;
                const float* b = j < full ? B + k0 * ldb + n0 + j : Bp + ((j - full) / CC_NR) * kc * CC_NR;
                ptrdiff_t bstride = j < full ? ldb : CC_NR;
                for (ptrdiff_t p = 0; p < M; p += CC_MR) {
                    ptrdiff_t mr = M - p < CC_MR ? M - p : CC_MR;
                    cc_ukernel(kc, Ap + p * K + k0 * CC_MR, b, bstride, C + p * ldc + n0 + j, ldc, add, mr, nr);
                }
            }
        }
    }
}

#endif
