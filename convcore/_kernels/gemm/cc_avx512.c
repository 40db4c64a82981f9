/* AVX-512F micro-kernels: a 12x32 GEMM tile and a 4x4 dot-product kernel.
 *
 * GEMM tile (the shape MLAS uses): per step of k, two zmm loads of B (32 columns) and 12
 * broadcasts of A feed 24 FMAs into 24 zmm accumulators, leaving registers for the loads. Edge
 * tiles run a smaller instantiation of the same code instead of the full tile: 8 or 4 rows when
 * mr <= 8 or 4 (F = 64 = 5 x 12 + 4: the last panel costs a third of a tile, not a whole one), one
 * zmm column when nr <= 16; their stores are opmask-masked, so no spill buffer. B panels always
 * hold 32 readable columns (a full in-place panel, or a zero-padded packed one), so B loads need
 * no mask.
 *
 * Built with a target attribute (no -mavx512f for the rest of the build); cc_gemm_select() picks
 * it only when cpuid and xgetbv say the CPU and OS run AVX-512F. With CC_AVX512_SIMDE defined
 * (the test build, ``CONVCORE_SIMDE=1``), the same source compiles against SIMDe's portable
 * implementation of the intrinsics, so machines without AVX-512 can run its correctness tests.
 */
#include "cc_gemm.h"

#if defined(CC_AVX512_SIMDE)
#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
#define TARGET
#define EMULATED 1
#define HAVE_AVX512 1
#elif (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
#include <immintrin.h>
#define TARGET __attribute__((target("avx512f")))
#define EMULATED 0
#define HAVE_AVX512 1
#else
#define HAVE_AVX512 0
#endif

#if HAVE_AVX512
enum { MR = 12, NR = 32 };

/* Lanes [0, n) of a 16-lane register, for n in [0, 16] (SIMDe has no _cvtu32_mask16: cast). */
static inline __mmask16 lanes(ptrdiff_t n) {
    return (__mmask16)(n >= 16 ? 0xFFFFu : (1u << n) - 1u);
}

/* Loads and stores of lanes [0, n) only (``m`` == lanes(n)): opmask instructions natively. SIMDe
 * (0.8) emulates them with full 16-lane accesses, and its _mm512_mask_storeu_ps writes zeros to
 * the unmasked lanes, so the emulated build goes through a stack buffer instead. */
#if EMULATED
#include <string.h>
static inline __m512 load_lanes(__mmask16 m, ptrdiff_t n, const float* p) {
    float t[16] = {0.0f};
    (void)m;
    memcpy(t, p, (size_t)n * sizeof(float));
    return _mm512_loadu_ps(t);
}
static inline void store_lanes(float* p, __mmask16 m, ptrdiff_t n, __m512 v) {
    float t[16];
    (void)m;
    _mm512_storeu_ps(t, v);
    memcpy(p, t, (size_t)n * sizeof(float));
}
#else
#define load_lanes(m, n, p) _mm512_maskz_loadu_ps((m), (p))
#define store_lanes(p, m, n, v) _mm512_mask_storeu_ps((p), (m), (v))
#endif

/* One instantiation per (rows, nv): ``rows`` of the 12-row panel and ``nv`` zmm columns (16 or 32
 * floats); both are constants at every call site, so the loops unroll into registers. */
static inline __attribute__((always_inline)) TARGET
void tile(const int rows, const int nv, ptrdiff_t kc, const float* a, const float* b, ptrdiff_t ldb,
          float* C, ptrdiff_t ldc, int acc, ptrdiff_t mr, ptrdiff_t nr) {
    __m512 c0[MR], c1[MR];
    for (int r = 0; r < rows; r++) {
        c0[r] = _mm512_setzero_ps();
        c1[r] = _mm512_setzero_ps();
    }
    _Pragma("GCC unroll 4")   /* within noise on the conv shapes, never slower */
    for (ptrdiff_t k = 0; k < kc; k++, a += MR, b += ldb) {
        __m512 b0 = _mm512_loadu_ps(b);
        __m512 b1 = nv == 2 ? _mm512_loadu_ps(b + 16) : b0;
        for (int r = 0; r < rows; r++) {
            __m512 ar = _mm512_set1_ps(a[r]);
            c0[r] = _mm512_fmadd_ps(ar, b0, c0[r]);
            if (nv == 2) c1[r] = _mm512_fmadd_ps(ar, b1, c1[r]);
        }
    }
    const ptrdiff_t n0 = nr < 16 ? nr : 16, n1 = nr > 16 ? nr - 16 : 0;   /* valid lanes per zmm */
    const __mmask16 m0 = lanes(n0), m1 = lanes(n1);
    for (int r = 0; r < rows; r++) {
        if (r >= mr) break;
        float* cr = C + r * ldc;
        if (acc) c0[r] = _mm512_add_ps(c0[r], load_lanes(m0, n0, cr));
        store_lanes(cr, m0, n0, c0[r]);
        if (nv == 2) {
            if (acc) c1[r] = _mm512_add_ps(c1[r], load_lanes(m1, n1, cr + 16));
            store_lanes(cr + 16, m1, n1, c1[r]);
        }
    }
}

TARGET static void ukernel(ptrdiff_t kc, const float* a, const float* b, ptrdiff_t ldb, float* C,
                           ptrdiff_t ldc, int acc, ptrdiff_t mr, ptrdiff_t nr) {
    if (nr > 16) {
        if (mr > 8) tile(12, 2, kc, a, b, ldb, C, ldc, acc, mr, nr);
        else if (mr > 4) tile(8, 2, kc, a, b, ldb, C, ldc, acc, mr, nr);
        else tile(4, 2, kc, a, b, ldb, C, ldc, acc, mr, nr);
    } else {
        if (mr > 8) tile(12, 1, kc, a, b, ldb, C, ldc, acc, mr, nr);
        else if (mr > 4) tile(8, 1, kc, a, b, ldb, C, ldc, acc, mr, nr);
        else tile(4, 1, kc, a, b, ldb, C, ldc, acc, mr, nr);
    }
}

TARGET static inline float hsum(__m512 v) {
    float t[16], s = 0.0f;
    _mm512_storeu_ps(t, v);
    for (int i = 0; i < 16; i++) s += t[i];
    return s;
}

/* 4 rows of A x 4 rows of B at a time: 16 accumulators; the K tail is one masked step. */
TARGET static void sgemm_nt(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* A, ptrdiff_t lda,
                            const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc, int acc) {
    const ptrdiff_t k16 = K / 16 * 16;
    const __mmask16 tail = lanes(K - k16);
    for (ptrdiff_t m0 = 0; m0 < M; m0 += 4) {
        ptrdiff_t mr = M - m0 < 4 ? M - m0 : 4;
        const float* a[4];
        for (int r = 0; r < 4; r++) a[r] = A + (m0 + (r < mr ? r : 0)) * lda;   /* spare rows repeat row 0 */
        for (ptrdiff_t n0 = 0; n0 < N; n0 += 4) {
            ptrdiff_t nr = N - n0 < 4 ? N - n0 : 4;
            const float* b[4];
            for (int c = 0; c < 4; c++) b[c] = B + (n0 + (c < nr ? c : 0)) * ldb;
            __m512 s[4][4];
            for (int r = 0; r < 4; r++)
                for (int c = 0; c < 4; c++) s[r][c] = _mm512_setzero_ps();
            for (ptrdiff_t k = 0; k < k16; k += 16) {
                __m512 b0 = _mm512_loadu_ps(b[0] + k), b1 = _mm512_loadu_ps(b[1] + k);
                __m512 b2 = _mm512_loadu_ps(b[2] + k), b3 = _mm512_loadu_ps(b[3] + k);
                for (int r = 0; r < 4; r++) {
                    __m512 ar = _mm512_loadu_ps(a[r] + k);
                    s[r][0] = _mm512_fmadd_ps(ar, b0, s[r][0]);
                    s[r][1] = _mm512_fmadd_ps(ar, b1, s[r][1]);
                    s[r][2] = _mm512_fmadd_ps(ar, b2, s[r][2]);
                    s[r][3] = _mm512_fmadd_ps(ar, b3, s[r][3]);
                }
            }
            if (k16 < K) {   /* the last K % 16 positions: one masked step */
                const ptrdiff_t n = K - k16;
                __m512 b0 = load_lanes(tail, n, b[0] + k16), b1 = load_lanes(tail, n, b[1] + k16);
                __m512 b2 = load_lanes(tail, n, b[2] + k16), b3 = load_lanes(tail, n, b[3] + k16);
                for (int r = 0; r < 4; r++) {
                    __m512 ar = load_lanes(tail, n, a[r] + k16);
                    s[r][0] = _mm512_fmadd_ps(ar, b0, s[r][0]);
                    s[r][1] = _mm512_fmadd_ps(ar, b1, s[r][1]);
                    s[r][2] = _mm512_fmadd_ps(ar, b2, s[r][2]);
                    s[r][3] = _mm512_fmadd_ps(ar, b3, s[r][3]);
                }
            }
            for (ptrdiff_t r = 0; r < mr; r++)
                for (ptrdiff_t c = 0; c < nr; c++) {
                    float t = hsum(s[r][c]);
                    float* out = C + (m0 + r) * ldc + n0 + c;
                    *out = acc ? *out + t : t;
                }
        }
    }
}

/* 24 independent zmm FMA chains, as many as the GEMM tile keeps. */
TARGET static double fma_loop(long iters) {
    __m512 x = _mm512_set1_ps(1.0001f), y = _mm512_set1_ps(0.9999f), a[24];
    for (int j = 0; j < 24; j++) a[j] = _mm512_set1_ps((float)j);
    for (long i = 0; i < iters; i++) {
        _Pragma("GCC unroll 24")
        for (int j = 0; j < 24; j++) a[j] = _mm512_fmadd_ps(a[j], x, y);
    }
    float t[16];
    __m512 s = a[0];
    for (int j = 1; j < 24; j++) s = _mm512_add_ps(s, a[j]);
    _mm512_storeu_ps(t, s);
    volatile float sink = t[0];
    (void)sink;
    return 24.0 * 32.0 * iters;
}

const cc_gemm_desc cc_desc_avx512 = {"avx512", CC_ISA_AVX512, MR, NR, 256, 384, 128, EMULATED, ukernel, sgemm_nt,
                                     fma_loop};

#else  /* no AVX-512 kernels in this build: never selected */
const cc_gemm_desc cc_desc_avx512 = {"avx512", CC_ISA_AVX512, 12, 32, 256, 384, 128, 0, 0, 0, 0};
#endif
