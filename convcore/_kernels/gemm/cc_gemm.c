/* The GEMM driver, packing, ISA detection and the portable micro-kernels (see cc_gemm.h). */
#include "cc_gemm.h"

#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <cpuid.h>
#define CC_X86 1
#else
#define CC_X86 0
#endif

/* ---------------------------------------------------------------------------------------------
 * Portable micro-kernels: the same arithmetic as the vector ones, in plain C. Chosen only when a
 * caller caps the ISA at "portable" (tests), never as the fast path of a CPU without AVX2. */

enum { P_MR = 6, P_NR = 16 };

static void ukernel_portable(ptrdiff_t kc, const float* a, const float* b, ptrdiff_t ldb, float* C,
                             ptrdiff_t ldc, int acc, ptrdiff_t mr, ptrdiff_t nr) {
    float t[P_MR * P_NR] = {0.0f};
    for (ptrdiff_t k = 0; k < kc; k++, a += P_MR, b += ldb)
        for (ptrdiff_t r = 0; r < P_MR; r++)
            for (ptrdiff_t c = 0; c < P_NR; c++) t[r * P_NR + c] += a[r] * b[c];
    for (ptrdiff_t r = 0; r < mr; r++)
        for (ptrdiff_t c = 0; c < nr; c++)
            C[r * ldc + c] = acc ? C[r * ldc + c] + t[r * P_NR + c] : t[r * P_NR + c];
}

static void sgemm_nt_portable(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* A, ptrdiff_t lda,
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

static double fma_loop_portable(long iters) {
    float a[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    volatile float sink;
    for (long i = 0; i < iters; i++)
        for (int j = 0; j < 8; j++) a[j] = a[j] * 1.0001f + 0.9999f;
    sink = a[0] + a[7];
    (void)sink;
    return 16.0 * iters;
}

const cc_gemm_desc cc_desc_portable = {
    "portable", CC_ISA_PORTABLE, P_MR, P_NR, 256, 384, 128, 0, ukernel_portable, sgemm_nt_portable, fma_loop_portable,
};

/* ---------------------------------------------------------------------------------------------
 * What this CPU and OS can run. AVX2 needs cpuid's AVX2 and FMA bits and an OS saving the ymm
 * state (XCR0 bits 1-2); AVX-512F needs its cpuid bit and the OS saving the opmask and both
 * halves of the zmm state too (XCR0 & 0xE6 == 0xE6). */

#if CC_X86
static unsigned long long xgetbv0(void) {
    unsigned int lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return ((unsigned long long)hi << 32) | lo;
}
#endif

static int cpu_level_native(void) {
#if CC_X86
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return CC_ISA_PORTABLE;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!(osxsave && avx && fma)) return CC_ISA_PORTABLE;
    unsigned long long xcr0 = xgetbv0();
    if ((xcr0 & 0x6) != 0x6) return CC_ISA_PORTABLE;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return CC_ISA_PORTABLE;
    int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1;
    if (!avx2) return CC_ISA_PORTABLE;
    if (avx512f && (xcr0 & 0xE6) == 0xE6 && cc_desc_avx512.ukernel) return CC_ISA_AVX512;
    return cc_desc_avx2.ukernel ? CC_ISA_AVX2 : CC_ISA_PORTABLE;
#else
    return CC_ISA_PORTABLE;
#endif
}

int cc_gemm_cpu_level(void) {
    int level = cpu_level_native();
    /* A SIMDe build emulates AVX-512 with whatever the compiler targets: it runs everywhere. */
    if (cc_desc_avx512.emulated && cc_desc_avx512.ukernel) level = CC_ISA_AVX512;
    return level;
}

const cc_gemm_desc* cc_gemm_desc_of(int level) {
    return level >= CC_ISA_AVX512 ? &cc_desc_avx512 : level == CC_ISA_AVX2 ? &cc_desc_avx2 : &cc_desc_portable;
}

const cc_gemm_desc* cc_gemm_select(int max_level) {
    int level = cc_gemm_cpu_level();
    if (level > max_level) level = max_level;
    /* A SIMDe build may sit on a CPU without AVX2: capped to avx2 there, fall back to portable. */
    if (level == CC_ISA_AVX2 && cpu_level_native() < CC_ISA_AVX2) level = CC_ISA_PORTABLE;
    return cc_gemm_desc_of(level);
}

/* ---------------------------------------------------------------------------------------------
 * Packing and the driver, parameterised by the descriptor. */

ptrdiff_t cc_packed_a_size(const cc_gemm_desc* d, ptrdiff_t M, ptrdiff_t K) {
    return ((M + d->mr - 1) / d->mr) * d->mr * K;
}

ptrdiff_t cc_packed_b_size(const cc_gemm_desc* d) {
    return (ptrdiff_t)d->kc * ((d->nc + d->nr - 1) / d->nr) * d->nr;
}

/* Ap[p][k][r] = A(p*MR + r, k), rows past M zero: one MR-row panel after another. A(m, k) is
 * A[m*lda + k], or A[k*lda + m] when ``trans``. */
void cc_pack_a(const cc_gemm_desc* d, ptrdiff_t M, ptrdiff_t K, const float* A, ptrdiff_t lda, int trans,
               float* Ap) {
    const ptrdiff_t MR = d->mr, sm = trans ? 1 : lda, sk = trans ? lda : 1;
    for (ptrdiff_t p = 0; p < M; p += MR) {
        ptrdiff_t mr = M - p < MR ? M - p : MR;
        for (ptrdiff_t k = 0; k < K; k++) {
            for (ptrdiff_t r = 0; r < mr; r++) Ap[k * MR + r] = A[(p + r) * sm + k * sk];
            for (ptrdiff_t r = mr; r < MR; r++) Ap[k * MR + r] = 0.0f;
        }
        Ap += K * MR;
    }
}

/* Rows [k0, k0 + kc) and columns [n0, n0 + nc) of B into NR-column panels: Bp[j][k][c] =
 * B(k0 + k, n0 + j*NR + c), columns past nc zero. B(k, n) is B[k*ldb + n], or B[n*ldb + k] when
 * ``trans``. */
static void pack_b(ptrdiff_t NR, ptrdiff_t kc, ptrdiff_t nc, const float* B, ptrdiff_t ldb, int trans,
                   ptrdiff_t k0, ptrdiff_t n0, float* Bp) {
    for (ptrdiff_t j = 0; j < nc; j += NR) {
        ptrdiff_t nr = nc - j < NR ? nc - j : NR;
        if (!trans) {
            for (ptrdiff_t k = 0; k < kc; k++) {
                const float* src = B + (k0 + k) * ldb + n0 + j;
                float* dst = Bp + k * NR;
                for (ptrdiff_t c = 0; c < nr; c++) dst[c] = src[c];
                for (ptrdiff_t c = nr; c < NR; c++) dst[c] = 0.0f;
            }
        } else {
            for (ptrdiff_t c = 0; c < NR; c++) {
                if (c < nr) {
                    const float* src = B + (n0 + j + c) * ldb + k0;
                    for (ptrdiff_t k = 0; k < kc; k++) Bp[k * NR + c] = src[k];
                } else {
                    for (ptrdiff_t k = 0; k < kc; k++) Bp[k * NR + c] = 0.0f;
                }
            }
        }
        Bp += kc * NR;
    }
}

/* When A is short (the convolutions' 16-256 rows), a row-major B is read in place, NR columns at
 * a time: the rows of one k-block stay in L1 while every A panel passes over them, and only the
 * last, partial column panel is packed. Packing every panel cost a quarter of the time on the
 * convolutions' shapes (AVX2, 64 x 196 x 160: 47 -> 64 GFLOP/s on one core read in place); for
 * tall A and a transposed B, packing wins. */
void cc_sgemm(const cc_gemm_desc* d, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* Ap, const float* B,
              ptrdiff_t ldb, int trans_b, float* C, ptrdiff_t ldc, int acc, float* Bp) {
    const ptrdiff_t MR = d->mr, NR = d->nr, KC = d->kc, NC = d->nc;
    for (ptrdiff_t n0 = 0; n0 < N; n0 += NC) {
        ptrdiff_t nc = N - n0 < NC ? N - n0 : NC;
        ptrdiff_t full = trans_b || M > d->pack_m ? 0 : nc / NR * NR;   /* columns read in place */
        for (ptrdiff_t k0 = 0; k0 < K; k0 += KC) {
            ptrdiff_t kc = K - k0 < KC ? K - k0 : KC;
            int add = acc || k0 > 0;
            if (full < nc) pack_b(NR, kc, nc - full, B, ldb, trans_b, k0, n0 + full, Bp);
            for (ptrdiff_t j = 0; j < nc; j += NR) {
                ptrdiff_t nr = nc - j < NR ? nc - j : NR;
                const float* b = j < full ? B + k0 * ldb + n0 + j : Bp + ((j - full) / NR) * kc * NR;
                ptrdiff_t bstride = j < full ? ldb : NR;
                for (ptrdiff_t p = 0; p < M; p += MR) {
                    ptrdiff_t mr = M - p < MR ? M - p : MR;
                    /* panel p of A starts at p*K; its k-block k0 at k0*MR within the panel */
                    d->ukernel(kc, Ap + p * K + k0 * MR, b, bstride, C + p * ldc + n0 + j, ldc, add, mr, nr);
                }
            }
        }
    }
}

ptrdiff_t cc_packed_b_all_size(const cc_gemm_desc* d, ptrdiff_t K, ptrdiff_t N) {
    return K * ((N + d->nr - 1) / d->nr) * d->nr;
}

void cc_pack_b_all(const cc_gemm_desc* d, ptrdiff_t K, ptrdiff_t N, const float* B, ptrdiff_t ldb, int trans,
                   float* Bp) {
    pack_b(d->nr, K, N, B, ldb, trans, 0, 0, Bp);
}

/* ``kp``: the rows of each packed panel (the K given to cc_pack_b_all); panel j starts at
 * Bp + j*kp*NR and its row k at + k*NR. */
void cc_sgemm_prepacked(const cc_gemm_desc* d, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* Ap,
                        const float* Bp, ptrdiff_t kp, ptrdiff_t k_off, float* C, ptrdiff_t ldc, int acc) {
    const ptrdiff_t MR = d->mr, NR = d->nr, KC = d->kc;
    for (ptrdiff_t k0 = 0; k0 < K; k0 += KC) {
        ptrdiff_t kc = K - k0 < KC ? K - k0 : KC;
        int add = acc || k0 > 0;
        for (ptrdiff_t j = 0; j < N; j += NR) {
            ptrdiff_t nr = N - j < NR ? N - j : NR;
            const float* b = Bp + (j / NR) * kp * NR + (k_off + k0) * NR;
            for (ptrdiff_t p = 0; p < M; p += MR) {
                ptrdiff_t mr = M - p < MR ? M - p : MR;
                d->ukernel(kc, Ap + p * K + k0 * MR, b, NR, C + p * ldc + j, ldc, add, mr, nr);
            }
        }
    }
}

void cc_sgemm_nt(const cc_gemm_desc* d, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* A, ptrdiff_t lda,
                 const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc, int acc) {
    d->sgemm_nt(M, N, K, A, lda, B, ldb, C, ldc, acc);
}

double cc_fma_loop(const cc_gemm_desc* d, long iters) {
    return d->fma_loop(iters);
}
