/* convcore's single-precision GEMM: the descriptor of each micro-kernel and the driver around it.
 *
 * C[M, N] (+)= A[M, K] @ B[K, N], float32, in the blocked design of Goto & van de Geijn and BLIS:
 * A packed once into MR-row panels, B read in place (short A) or packed into NR-column panels of
 * at most KC rows, and a register-blocked micro-kernel doing the multiply-adds. Everything the
 * driver and the packing need to know about a micro-kernel is in its descriptor (BLIS's context
 * idea): there are no MR/NR macros shared by packing and kernels, so a new ISA is one new file
 * that fills one more descriptor.
 *
 * Descriptors (one file each):   name      MR x NR   registers
 *   cc_gemm.c                     portable   6 x 16   plain C, any CPU (tests; never chosen by accident)
 *   cc_avx2.c                     avx2       6 x 16   12 ymm accumulators, AVX2 + FMA
 *   cc_avx512.c                   avx512    12 x 32   24 zmm accumulators, AVX-512F, opmask edges
 *
 * cc_gemm_select() picks one once, from cpuid and xgetbv (the OS must save the ymm/zmm state),
 * capped by the caller (CONVCORE_MAX_ISA). Callers fetch the active descriptor once per call and
 * pass it to every packing and GEMM function, so packed operands always match their kernel.
 *
 * The GEMM is serial and allocation-free: callers split their work over threads and pass the
 * packing scratch. Shapes are trusted (validated in Python).
 */
#ifndef CONVCORE_CC_GEMM_H
#define CONVCORE_CC_GEMM_H

#include <stddef.h>

/* C[0:mr, 0:nr] (+ when ``acc``)= a (kc x MR, packed) @ b (kc rows of NR floats, ``ldb`` apart: a
 * packed panel or B itself); mr <= MR and nr <= NR, the rest of the tile is never touched. */
typedef void (*cc_ukernel_fn)(ptrdiff_t kc, const float* a, const float* b, ptrdiff_t ldb, float* C,
                              ptrdiff_t ldc, int acc, ptrdiff_t mr, ptrdiff_t nr);

/* C[M, N] (+ when ``acc``)= A @ B^T, A (M x K) and B (N x K) row-major: dot products of
 * contiguous rows, no packing (the weight gradient's shape: K long, M and N the channel counts). */
typedef void (*cc_sgemm_nt_fn)(ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* A, ptrdiff_t lda,
                               const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc, int acc);

/* ``iters`` steps of independent FMA chains filling the register file, the kernel's ISA at full
 * width: returns the flops done (``convcore bench``'s FMA peak). */
typedef double (*cc_fma_loop_fn)(long iters);

typedef struct cc_gemm_desc {
    const char* name;       /* "portable", "avx2", "avx512" */
    int level;              /* CC_ISA_* below */
    int mr, nr;             /* register tile: rows of A, columns of B */
    int kc, nc;             /* cache blocking: depth of a packed B panel, columns per outer block */
    int pack_m;             /* from this many rows of A on, B is packed instead of read in place */
    int emulated;           /* 1 when the intrinsics are SIMDe's portable emulation (test builds) */
    cc_ukernel_fn ukernel;
    cc_sgemm_nt_fn sgemm_nt;
    cc_fma_loop_fn fma_loop;
} cc_gemm_desc;

enum { CC_ISA_PORTABLE = 0, CC_ISA_AVX2 = 1, CC_ISA_AVX512 = 2 };

extern const cc_gemm_desc cc_desc_portable, cc_desc_avx2, cc_desc_avx512;

/* The best ISA this CPU, its OS and this build can run (CC_ISA_*), and the descriptor of the best
 * one at most ``max_level``. */
int cc_gemm_cpu_level(void);
const cc_gemm_desc* cc_gemm_select(int max_level);
const cc_gemm_desc* cc_gemm_desc_of(int level);

/* Floats of packed A for an M x K matrix, and of the B packing scratch one GEMM needs. */
ptrdiff_t cc_packed_a_size(const cc_gemm_desc* d, ptrdiff_t M, ptrdiff_t K);
ptrdiff_t cc_packed_b_size(const cc_gemm_desc* d);

/* A (M x K; given as its row-major transpose when ``trans``) into d->mr-row panels. */
void cc_pack_a(const cc_gemm_desc* d, ptrdiff_t M, ptrdiff_t K, const float* A, ptrdiff_t lda, int trans,
               float* Ap);

/* C[M, N] (+ when ``acc``)= A @ B, A packed by cc_pack_a with the same descriptor, B (K x N;
 * given as its row-major transpose when ``trans_b``); Bp holds cc_packed_b_size(d) floats. */
void cc_sgemm(const cc_gemm_desc* d, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* Ap, const float* B,
              ptrdiff_t ldb, int trans_b, float* C, ptrdiff_t ldc, int acc, float* Bp);

/* All K rows and N columns of B (given as its row-major transpose when ``trans``) packed into
 * NR-column panels of K rows each, and its size in floats; then C[M, N] (+ when ``acc``)= A @
 * B[k_off : k_off + K] for any row offset k_off into those panels without packing again (the
 * weight gradient's KH kernel rows read row-shifted windows of one unfolded band). */
ptrdiff_t cc_packed_b_all_size(const cc_gemm_desc* d, ptrdiff_t K, ptrdiff_t N);
void cc_pack_b_all(const cc_gemm_desc* d, ptrdiff_t K, ptrdiff_t N, const float* B, ptrdiff_t ldb, int trans,
                   float* Bp);
void cc_sgemm_prepacked(const cc_gemm_desc* d, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* Ap,
                        const float* Bp, ptrdiff_t kp, ptrdiff_t k_off, float* C, ptrdiff_t ldc, int acc);

/* d->sgemm_nt and d->fma_loop, for callers that see the descriptor as an opaque struct. */
double cc_fma_loop(const cc_gemm_desc* d, long iters);
void cc_sgemm_nt(const cc_gemm_desc* d, ptrdiff_t M, ptrdiff_t N, ptrdiff_t K, const float* A, ptrdiff_t lda,
                 const float* B, ptrdiff_t ldb, float* C, ptrdiff_t ldc, int acc);

#endif
