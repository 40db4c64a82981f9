# Design note: im2col / col2im, the data movement around convolution's GEMMs.
#
# A. Layout. Images are NCHW, C-contiguous. Columns are (N, C*KH*KW, OH*OW): for image n the row
#    c*KH*KW + ki*KW + kj holds input channel c seen through kernel offset (ki, kj) at every output
#    position, so W2d (F, C*KH*KW) @ cols[n] is already the NCHW output of image n. Only the last
#    axis of ``cols`` must be contiguous: the caller may pass a transposed view of a (C*KH*KW, N,
#    OH*OW) buffer (one GEMM over a chunk of images), or a band of output rows [oy0, oy0 + oh) so
#    the columns of one band stay in cache between im2col and the GEMM.
# B. Padding is a bounds test, never a padded copy. For each kernel offset the range of output
#    columns whose input column is inside the image is computed once (``_valid_range``), so the
#    inner loops are branch-free copies (a memcpy when the stride is 1) framed by zero fills.
# C. Parallelism: the public im2col / col2im ``prange`` over (image, channel) planes (in col2im each
#    thread owns the input plane it accumulates into: no races, no atomics); ``num_threads`` comes
#    from Python (convcore's own setting) and global OpenMP state is never touched. Everything else
#    here runs serially on what it is given: the fused convolutions are split over images by
#    ``convcore.ops`` (convcore's own threads), and the BLAS strategies' helpers leave the cores to
#    numpy's BLAS.
# D. Everything here trusts its caller (``convcore.ops``): shapes, dtypes, geometry and output
#    sizes were validated in Python; boundscheck and wraparound are off (see setup.py).

from cython cimport floating
from cython.parallel cimport prange
from libc.string cimport memcpy, memset

import numpy as np

from ._parallel cimport CONVCORE_OPENMP, convcore_omp_max_threads


def openmp_enabled():
    """True when this module was compiled with OpenMP."""
    return CONVCORE_OPENMP == 1


def omp_max_threads():
    """OpenMP's default team size (1 without OpenMP)."""
    return convcore_omp_max_threads()


cdef inline void _valid_range(Py_ssize_t off, Py_ssize_t stride, Py_ssize_t size, Py_ssize_t n_out,
                              Py_ssize_t* lo, Py_ssize_t* hi) noexcept nogil:
    # Output positions o in [lo, hi) whose input coordinate o*stride - off lies in [0, size).
    # ``off`` may be negative: only non-negative numbers are ever divided (cdivision truncates).
    cdef Py_ssize_t end = size + off
    lo[0] = 0 if off <= 0 else (off + stride - 1) // stride
    hi[0] = 0 if end <= 0 else (end + stride - 1) // stride
    if hi[0] > n_out:
        hi[0] = n_out
    if lo[0] > hi[0]:
        lo[0] = hi[0]


cdef inline void _im2col_offset_contiguous(const floating* img, floating* dst,
                                           Py_ssize_t H, Py_ssize_t W, Py_ssize_t row_shift,
                                           Py_ssize_t shift, Py_ssize_t lo, Py_ssize_t hi,
                                           Py_ssize_t oy0, Py_ssize_t oh) noexcept nogil:
    # One kernel offset when stride is 1 and OW == W (e.g. "same" padding): output position
    # (oy, ox) reads input element (oy + row_shift) * W + ox + shift, so the rows whose input row
    # exists form ONE contiguous run of the input, copied with one memcpy instead of a call per row
    # (rows are short on small images: L2's are 14 values). The copy also fills each row's border
    # columns with values wrapped from the neighbouring input row; those are zeroed afterwards.
    cdef Py_ssize_t ow = W, a, b, e_lo, e_hi, base = row_shift * W + shift, oy
    a = -row_shift if -row_shift > oy0 else oy0                  # first row with iy >= 0
    b = H - row_shift if H - row_shift < oy0 + oh else oy0 + oh  # end of rows with iy < H
    if a >= b or lo == hi:
        memset(dst, 0, oh * ow * sizeof(floating))
        return
    memset(dst, 0, (a - oy0) * ow * sizeof(floating))
    memset(dst + (b - oy0) * ow, 0, (oy0 + oh - b) * ow * sizeof(floating))
    e_lo = a * ow if a * ow + base >= 0 else -base               # never read before the plane...
    e_hi = b * ow if b * ow + base <= H * W else H * W - base    # ...or past its end
    memcpy(dst + (e_lo - oy0 * ow), img + e_lo + base, (e_hi - e_lo) * sizeof(floating))
    for oy in range(a, b):
        if lo > 0:
            memset(dst + (oy - oy0) * ow, 0, lo * sizeof(floating))
        if hi < ow:
            memset(dst + (oy - oy0) * ow + hi, 0, (ow - hi) * sizeof(floating))


cdef inline void _im2col_plane(const floating* img,     # IN  one input plane (H, W)
                               floating* rows,          # OUT KH*KW rows of OH*OW, ``rstride`` apart
                               Py_ssize_t rstride, Py_ssize_t H, Py_ssize_t W,
                               Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                               Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                               Py_ssize_t oy0, Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    # Output rows [oy0, oy0 + oh) only: a band of the output, so callers can keep columns small.
    cdef Py_ssize_t ki, kj, oy, ox, iy, lo, hi, shift
    cdef floating* dst
    cdef const floating* src
    for ki in range(kh):
        for kj in range(kw):
            shift = kj * dw - pl            # input column = ox * sw + shift
            _valid_range(-shift, sw, W, ow, &lo, &hi)
            dst = rows + (ki * kw + kj) * rstride
            if sh == 1 and sw == 1 and ow == W:
                _im2col_offset_contiguous(img, dst, H, W, ki * dh - pt, shift, lo, hi, oy0, oh)
                continue
            for oy in range(oy0, oy0 + oh):
                iy = oy * sh - pt + ki * dh
                if iy < 0 or iy >= H or lo == hi:
                    memset(dst, 0, ow * sizeof(floating))
                else:
                    src = img + iy * W
                    if lo > 0:
                        memset(dst, 0, lo * sizeof(floating))
                    if sw == 1:
                        memcpy(dst + lo, src + lo + shift, (hi - lo) * sizeof(floating))
                    else:
                        for ox in range(lo, hi):
                            dst[ox] = src[ox * sw + shift]
                    if hi < ow:
                        memset(dst + hi, 0, (ow - hi) * sizeof(floating))
                dst += ow


cdef inline void _col2im_plane(const floating* rows,    # IN  KH*KW rows of OH*OW, ``rstride`` apart
                               Py_ssize_t rstride,
                               floating* img,           # OUT one input plane (H, W), overwritten
                               Py_ssize_t H, Py_ssize_t W,
                               Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                               Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                               Py_ssize_t oy0, Py_ssize_t oh, Py_ssize_t ow,
                               bint accumulate) noexcept nogil:
    # Output rows [oy0, oy0 + oh) only; ``accumulate`` adds to the plane instead of overwriting it.
    cdef Py_ssize_t ki, kj, oy, ox, iy, lo, hi, shift
    cdef floating* dst
    cdef const floating* src
    if not accumulate:
        memset(img, 0, H * W * sizeof(floating))
    for ki in range(kh):
        for kj in range(kw):
            shift = kj * dw - pl
            _valid_range(-shift, sw, W, ow, &lo, &hi)
            if lo == hi:
                continue
            src = rows + (ki * kw + kj) * rstride
            for oy in range(oy0, oy0 + oh):
                iy = oy * sh - pt + ki * dh
                if iy >= 0 and iy < H:
                    dst = img + iy * W
                    if sw == 1:
                        for ox in range(lo, hi):
                            dst[ox + shift] += src[ox]
                    else:
                        for ox in range(lo, hi):
                            dst[ox * sw + shift] += src[ox]
                src += ow


def im2col(const floating[:, :, :, ::1] x,    # IN  (N, C, H, W)
           floating[:, :, :] cols,            # OUT (N, C*KH*KW, OH*OW), last axis contiguous
           Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
           Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
           Py_ssize_t oy0, Py_ssize_t oh, Py_ssize_t ow, int num_threads):
    """Unfold sliding windows of ``x`` into ``cols`` (zeros where a window overlaps padding).

    Only output rows [oy0, oy0 + oh) are unfolded: ``cols`` has ``oh * ow`` columns.
    """
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t rstride = cols.strides[1] // sizeof(floating)
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in prange(x.shape[0] * C, num_threads=num_threads, schedule="static"):
            n = plane // C
            c = plane - n * C
            _im2col_plane(&x[n, c, 0, 0], &cols[n, c * kh * kw, 0], rstride, H, W,
                          kh, kw, sh, sw, pt, pl, dh, dw, oy0, oh, ow)


def col2im(const floating[:, :, :] cols,      # IN  (N, C*KH*KW, OH*OW), last axis contiguous
           floating[:, :, :, ::1] x,          # OUT (N, C, H, W), overwritten unless ``accumulate``
           Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
           Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
           Py_ssize_t oy0, Py_ssize_t oh, Py_ssize_t ow, bint accumulate, int num_threads):
    """Fold ``cols`` back onto the image, summing overlapping windows (the adjoint of im2col).

    ``cols`` holds output rows [oy0, oy0 + oh); with ``accumulate`` the result is added to ``x``.
    """
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t rstride = cols.strides[1] // sizeof(floating)
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in prange(x.shape[0] * C, num_threads=num_threads, schedule="static"):
            n = plane // C
            c = plane - n * C
            _col2im_plane(&cols[n, c * kh * kw, 0], rstride, &x[n, c, 0, 0], H, W,
                          kh, kw, sh, sw, pt, pl, dh, dw, oy0, oh, ow, accumulate)


# Width-only unfolding (the MEC lowering, Cho & Brand 2017) for stride-1 convolutions. im2col
# copies every input value KH*KW times; unfolding only along the width copies it KW times, and the
# KH kernel rows become KH GEMMs on row-shifted views of ONE buffer: with the layout
# (C*KW, HP, M, OW), the view for kernel row ki is rows [ki*dh, ki*dh + OH) of axis 1, which is
# contiguous per buffer row, so each GEMM sees an ordinary strided matrix (C*KW, OH*M*OW).

cdef inline void _unfold_width_row(const floating* x, floating* dst, Py_ssize_t M, Py_ssize_t plane,
                                   Py_ssize_t H, Py_ssize_t W, Py_ssize_t HP, Py_ssize_t OW,
                                   Py_ssize_t pt, Py_ssize_t shift) noexcept nogil:
    # One unfolded row (HP, M, OW) from input plane ``x`` of image 0 (images ``plane`` apart).
    cdef Py_ssize_t hp, iy, m, lo, hi
    _valid_range(-shift, 1, W, OW, &lo, &hi)
    if M == 1 and OW == W:
        # One image, output as wide as the input ("same" padding): the valid rows are ONE
        # contiguous run of the input (one memcpy, borders zeroed after) instead of three calls per
        # row; LeNet conv2 (32 channels, 14-wide rows, KW 5): 24.5 -> 6.0 us per image, and the L2
        # forward on one thread 8.97 -> 7.42 ms (AVX-512, this Zen 5).
        _im2col_offset_contiguous(x, dst, H, W, -pt, shift, lo, hi, 0, HP)
        return
    for hp in range(HP):
        iy = hp - pt
        if iy < 0 or iy >= H or lo == hi:
            memset(dst, 0, M * OW * sizeof(floating))
            dst += M * OW
            continue
        for m in range(M):
            if lo > 0:
                memset(dst, 0, lo * sizeof(floating))
            memcpy(dst + lo, x + m * plane + iy * W + lo + shift, (hi - lo) * sizeof(floating))
            if hi < OW:
                memset(dst + hi, 0, (OW - hi) * sizeof(floating))
            dst += OW


def unfold_width(const floating[:, :, :, ::1] x,   # IN  (M, C, H, W)
                 floating[:, :, :, ::1] low,        # OUT (C*KW, HP, M, OW); HP = H + top + bottom padding
                 Py_ssize_t kw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dw):
    """low[c*KW + kj, hp, m, ox] = x[m, c, hp - pt, ox + kj*dw - pl], zero where that is outside x.
    Serial: it feeds numpy's BLAS, which owns the cores (see ``convcore.ops._conv_blas``)."""
    cdef Py_ssize_t M = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t HP = low.shape[1], OW = low.shape[3]
    cdef Py_ssize_t r, c
    if M == 0:
        return
    with nogil:
        for r in range(C * kw):
            c = r // kw
            _unfold_width_row(&x[0, c, 0, 0], &low[r, 0, 0, 0], M, C * H * W, H, W, HP, OW, pt,
                              (r - c * kw) * dw - pl)


def sum_rows_to_nchw(const floating[:, :, :, :, ::1] parts,  # IN  (KH, F, OH, M, OW): one GEMM result per kernel row
                     floating[:, :, :, ::1] y,              # OUT (M, F, OH, OW)
                     const floating[::1] bias):             # IN  (F,) or None
    """y[m, f, oy, :] = bias[f] + sum over ki of parts[ki, f, oy, m, :]: the KH partial products
    of the width-unfolded convolution summed and laid out NCHW in one pass (serial, as above)."""
    cdef Py_ssize_t KH = parts.shape[0], F = parts.shape[1], OH = parts.shape[2]
    cdef Py_ssize_t M = parts.shape[3], OW = parts.shape[4], run = M * OW
    cdef Py_ssize_t f, oy, m, ki, i
    cdef bint has_bias = bias is not None
    cdef floating b
    cdef const floating* src
    # Per (f, oy), the KH source runs parts[:, f, oy] are contiguous (M*OW values): sum them with
    # long vectorizable loops into one run, then scatter its M rows to the NCHW output.
    # (Summing row by row in place is 1.5-3x slower: 14-value loops that cannot vectorize.)
    cdef floating[::1] runs = np.empty(max(run, 1), dtype=np.asarray(y).dtype)
    cdef floating* acc = &runs[0]
    with nogil:
        for f in range(F):
            b = bias[f] if has_bias else 0
            for oy in range(OH):
                src = &parts[0, f, oy, 0, 0]
                for i in range(run):
                    acc[i] = b + src[i]
                for ki in range(1, KH):
                    src = &parts[ki, f, oy, 0, 0]
                    for i in range(run):
                        acc[i] += src[i]
                for m in range(M):
                    memcpy(&y[m, f, oy, 0], acc + m * OW, OW * sizeof(floating))


# ---------------------------------------------------------------------------------------------
# Fused float32 convolutions on convcore's own GEMM (_gemm.pyx), one image and one band of output
# rows at a time: the band's unfolded rows or columns stay in the core's cache between being
# written and being read by the GEMM, which writes (or accumulates into) the NCHW output in place.
# No BLAS call, no output-sized partial buffers, no transpose.
#
# Each entry point runs serially on the images it is given: ``convcore.ops`` splits the batch over
# convcore's own threads (``_threads.run_planes``), each call allocating its own scratch and packing
# its own copy of the weights, with the descriptor it read once at entry. The band budget and the
# weight gradient's dot-product threshold come from the caller's plan (``ops._conv_plan``).

from ._gemm cimport (cc_gemm_desc, active, desc_of, packed_a_size, packed_b_size, packed_b_all_size, pack_a,
                     pack_b_all, gemm, gemm_nt, gemm_prepacked, activate)


cdef inline Py_ssize_t _band_rows(Py_ssize_t budget, Py_ssize_t rows, Py_ssize_t OW, Py_ssize_t reach,
                                  Py_ssize_t OH) noexcept nogil:
    # Output rows per band so that the band's unfolded input (``rows`` buffer rows of the band's
    # output rows plus the kernel's reach, OW floats each) takes about ``budget`` bytes.
    cdef Py_ssize_t band = budget // (rows * OW * <Py_ssize_t>sizeof(float)) - reach
    return 1 if band < 1 else (OH if band > OH else band)


cdef void _unfold_band(const float* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, Py_ssize_t kw,
                       Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dw, Py_ssize_t r0, Py_ssize_t HPB,
                       Py_ssize_t OW, float* low) noexcept nogil:
    # unfold_width of padded rows [r0, r0 + HPB) of one image: low (C*KW, HPB, OW).
    cdef Py_ssize_t r, c
    for r in range(C * kw):
        c = r // kw
        _unfold_width_row(x + c * H * W, low + r * HPB * OW, 1, C * H * W, H, W, HPB, OW, pt - r0,
                          (r - c * kw) * dw - pl)


cdef void _fill_bias(float* yb, const float* bias, Py_ssize_t F, Py_ssize_t P, Py_ssize_t n) noexcept nogil:
    # yb[f*P + p] = bias[f] for the band's n positions p of every output channel f.
    cdef Py_ssize_t f, p
    for f in range(F):
        for p in range(n):
            yb[f * P + p] = bias[f]


cdef void _conv_image(const cc_gemm_desc* d, const float* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                      const float* apack, Py_ssize_t a_stride, const float* bias,
                      float* y, Py_ssize_t F, Py_ssize_t OH, Py_ssize_t OW,
                      Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                      Py_ssize_t band, float* low, float* bpack) noexcept nogil:
    # One image, band after band of output rows: unfold, then KH GEMMs into y's rows. Kernel row
    # ki reads the unfolded rows from ki*dh on: a row-shifted view of the same buffer.
    cdef Py_ssize_t rows = C * kw, reach = dh * (kh - 1), P = OH * OW, oy0 = 0, bh, ki
    cdef float* yb
    while oy0 < OH:
        bh = OH - oy0 if OH - oy0 < band else band
        yb = y + oy0 * OW
        _unfold_band(x, C, H, W, kw, pt, pl, dw, oy0, bh + reach, OW, low)
        if bias != NULL:
            _fill_bias(yb, bias, F, P, bh * OW)
        for ki in range(kh):
            gemm(d, F, bh * OW, rows, apack + ki * a_stride, low + ki * dh * OW, (bh + reach) * OW, 0,
                 yb, P, bias != NULL or ki > 0, bpack)
        oy0 += bh


cdef void _grad_weight_image(const cc_gemm_desc* d, const float* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                             const float* gy, Py_ssize_t F, Py_ssize_t OH, Py_ssize_t OW,
                             Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                             Py_ssize_t dw, Py_ssize_t band, Py_ssize_t dot_min, float* acc, float* low,
                             float* apack, float* bpack) noexcept nogil:
    # acc (KH, F, C*KW) += this image's weight gradient, band after band of output rows: for each
    # kernel row, dY's band rows times the unfolded rows, both contiguous along the band's
    # positions. Bands of at least ``dot_min`` positions take dot products (no packing); shorter
    # ones the packed GEMM, which pays less per output there: dY's band packed once as A, the
    # whole unfolded band packed once as B^T, and kernel row ki reads its rows from ki*dh*OW on
    # (packing B per kernel row cost KH times as much).
    cdef Py_ssize_t rows = C * kw, reach = dh * (kh - 1), P = OH * OW, oy0 = 0, bh, ki
    while oy0 < OH:
        bh = OH - oy0 if OH - oy0 < band else band
        _unfold_band(x, C, H, W, kw, pt, pl, dw, oy0, bh + reach, OW, low)
        if bh * OW >= dot_min:
            for ki in range(kh):
                gemm_nt(d, F, rows, bh * OW, gy + oy0 * OW, P, low + ki * dh * OW, (bh + reach) * OW,
                        acc + ki * F * rows, rows, 1)
        else:
            pack_a(d, F, bh * OW, gy + oy0 * OW, P, 0, apack)
            pack_b_all(d, (bh + reach) * OW, rows, low, (bh + reach) * OW, 1, bpack)
            for ki in range(kh):
                gemm_prepacked(d, F, rows, bh * OW, apack, bpack, (bh + reach) * OW, ki * dh * OW,
                               acc + ki * F * rows, rows, 1)
        oy0 += bh


def conv_unfolded(const float[:, :, :, ::1] x,     # IN  (N, C, H, W)
                  float[:, :, :, ::1] y,           # OUT (N, F, OH, OW), stride 1
                  const float[:, :, ::1] wk,       # IN  (KH, F, C*KW): the weight, kernel rows first
                  const float[::1] bias,           # IN  (F,) or None
                  Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                  Py_ssize_t band_bytes):
    """y = conv2d(x, w) + bias for a stride-1 convolution: per image and band of output rows,
    unfold_width, then KH GEMMs accumulating into y."""
    cdef const cc_gemm_desc* d = active()
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = y.shape[1], OH = y.shape[2], OW = y.shape[3]
    cdef Py_ssize_t rows = C * kw, reach = dh * (kh - 1)
    cdef Py_ssize_t band = _band_rows(band_bytes, rows, OW, reach, OH), low_size = rows * (band + reach) * OW
    cdef Py_ssize_t a_stride = packed_a_size(d, F, rows), i, ki
    cdef const float* b = NULL
    if bias is not None:
        b = &bias[0]
    cdef float[::1] apack = np.empty(kh * a_stride, dtype=np.float32)
    cdef float[::1] scratch = np.empty(low_size + packed_b_size(d), dtype=np.float32)
    with nogil:
        for ki in range(kh):
            pack_a(d, F, rows, &wk[ki, 0, 0], rows, 0, &apack[ki * a_stride])
        for i in range(N):
            _conv_image(d, &x[i, 0, 0, 0], C, H, W, &apack[0], a_stride, b, &y[i, 0, 0, 0], F, OH, OW,
                        kh, kw, pt, pl, dh, dw, band, &scratch[0], &scratch[low_size])


def conv_unfolded_grad_weight(const float[:, :, :, ::1] x,    # IN (N, C, H, W)
                              const float[:, :, :, ::1] gy,   # IN (N, F, OH, OW)
                              Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pt, Py_ssize_t pl,
                              Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t band_bytes, Py_ssize_t dot_min):
    """The weight gradient of conv_unfolded over these images, as (KH, F, C*KW): for kernel row
    ki, the sum over images and bands of dY (F, band positions) @ (unfolded rows from ki*dh)^T."""
    cdef const cc_gemm_desc* d = active()
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = gy.shape[1], OH = gy.shape[2], OW = gy.shape[3]
    cdef Py_ssize_t rows = C * kw, reach = dh * (kh - 1)
    cdef Py_ssize_t band = _band_rows(band_bytes, rows, OW, reach, OH), low_size = rows * (band + reach) * OW
    cdef Py_ssize_t a_size = packed_a_size(d, F, band * OW), i
    cdef Py_ssize_t b_size = packed_b_all_size(d, (band + reach) * OW, rows)
    cdef float[::1] scratch = np.empty(low_size + a_size + b_size, dtype=np.float32)
    acc_arr = np.zeros((kh, F, rows), dtype=np.float32)
    cdef float[:, :, ::1] acc = acc_arr
    with nogil:
        for i in range(N):
            _grad_weight_image(d, &x[i, 0, 0, 0], C, H, W, &gy[i, 0, 0, 0], F, OH, OW, kh, kw, pt, pl, dh, dw,
                               band, dot_min, &acc[0, 0, 0], &scratch[0], &scratch[low_size],
                               &scratch[low_size + a_size])
    return acc_arr


# Fused im2col convolution, float32, for the geometries the width-unfolded one does not take
# (strides above 1): per image and band of output rows, im2col into a cache-sized buffer, then
# one GEMM of K = C*KH*KW; the input gradient's GEMM feeds col2im the same way.

cdef void _im2col_band(const float* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W, float* cols,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                       Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t oy0, Py_ssize_t bh, Py_ssize_t OW) noexcept nogil:
    cdef Py_ssize_t c, n = bh * OW
    for c in range(C):
        _im2col_plane(x + c * H * W, cols + c * kh * kw * n, n, H, W, kh, kw, sh, sw, pt, pl, dh, dw, oy0, bh, OW)


cdef void _conv_image_im2col(const cc_gemm_desc* d, const float* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                             const float* apack, const float* bias, float* y, Py_ssize_t F, Py_ssize_t OH,
                             Py_ssize_t OW, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                             Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t band,
                             float* cols, float* bpack) noexcept nogil:
    cdef Py_ssize_t P = OH * OW, ckk = C * kh * kw, oy0 = 0, bh, n
    cdef float* yb
    while oy0 < OH:
        bh = OH - oy0 if OH - oy0 < band else band
        n = bh * OW
        _im2col_band(x, C, H, W, cols, kh, kw, sh, sw, pt, pl, dh, dw, oy0, bh, OW)
        yb = y + oy0 * OW
        if bias != NULL:
            _fill_bias(yb, bias, F, P, n)
        gemm(d, F, n, ckk, apack, cols, n, 0, yb, P, bias != NULL, bpack)
        oy0 += bh


cdef void _grad_input_image_im2col(const cc_gemm_desc* d, const float* gy, Py_ssize_t F, Py_ssize_t OH,
                                   Py_ssize_t OW, const float* apack, float* gx, Py_ssize_t C, Py_ssize_t H,
                                   Py_ssize_t W, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                                   Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t band,
                                   float* cols, float* bpack) noexcept nogil:
    cdef Py_ssize_t P = OH * OW, ckk = C * kh * kw, oy0 = 0, bh, n, c
    while oy0 < OH:
        bh = OH - oy0 if OH - oy0 < band else band
        n = bh * OW
        gemm(d, ckk, n, F, apack, gy + oy0 * OW, P, 0, cols, n, 0, bpack)
        for c in range(C):   # the first band overwrites each plane, later bands add to it
            _col2im_plane(cols + c * kh * kw * n, n, gx + c * H * W, H, W, kh, kw, sh, sw, pt, pl, dh, dw,
                          oy0, bh, OW, oy0 > 0)
        oy0 += bh


cdef void _grad_weight_image_im2col(const cc_gemm_desc* d, const float* x, Py_ssize_t C, Py_ssize_t H,
                                    Py_ssize_t W, const float* gy, Py_ssize_t F, Py_ssize_t OH, Py_ssize_t OW,
                                    Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                                    Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t band,
                                    Py_ssize_t dot_min, float* acc, float* cols, float* apack,
                                    float* bpack) noexcept nogil:
    # acc (F, C*KH*KW) += this image's weight gradient (dot products for long bands, as above).
    cdef Py_ssize_t P = OH * OW, ckk = C * kh * kw, oy0 = 0, bh, n
    while oy0 < OH:
        bh = OH - oy0 if OH - oy0 < band else band
        n = bh * OW
        _im2col_band(x, C, H, W, cols, kh, kw, sh, sw, pt, pl, dh, dw, oy0, bh, OW)
        if n >= dot_min:
            gemm_nt(d, F, ckk, n, gy + oy0 * OW, P, cols, n, acc, ckk, 1)
        else:
            pack_a(d, F, n, gy + oy0 * OW, P, 0, apack)
            gemm(d, F, ckk, n, apack, cols, n, 1, acc, ckk, 1, bpack)
        oy0 += bh


def conv_im2col(const float[:, :, :, ::1] x,     # IN  (N, C, H, W)
                float[:, :, :, ::1] y,           # OUT (N, F, OH, OW)
                const float[:, ::1] w2,          # IN  the weight as (F, C*KH*KW)
                const float[::1] bias,           # IN  (F,) or None
                Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t band_bytes):
    """y = conv2d(x, w) + bias, per image and band of output rows: im2col, then one GEMM."""
    cdef const cc_gemm_desc* d = active()
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = y.shape[1], OH = y.shape[2], OW = y.shape[3], ckk = C * kh * kw
    cdef Py_ssize_t band = _band_rows(band_bytes, ckk, OW, 0, OH), cols_size = ckk * band * OW, i
    cdef const float* b = NULL
    if bias is not None:
        b = &bias[0]
    cdef float[::1] apack = np.empty(packed_a_size(d, F, ckk), dtype=np.float32)
    cdef float[::1] scratch = np.empty(cols_size + packed_b_size(d), dtype=np.float32)
    with nogil:
        pack_a(d, F, ckk, &w2[0, 0], ckk, 0, &apack[0])
        for i in range(N):
            _conv_image_im2col(d, &x[i, 0, 0, 0], C, H, W, &apack[0], b, &y[i, 0, 0, 0], F, OH, OW,
                               kh, kw, sh, sw, pt, pl, dh, dw, band, &scratch[0], &scratch[cols_size])


def conv_im2col_grad_input(const float[:, :, :, ::1] gy,   # IN  (N, F, OH, OW)
                           float[:, :, :, ::1] gx,         # OUT (N, C, H, W), overwritten
                           const float[:, ::1] w2,         # IN  the weight as (F, C*KH*KW)
                           Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                           Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t band_bytes):
    """Input gradient per image and band: dcols = W^T @ dY, then col2im (bands accumulate)."""
    cdef const cc_gemm_desc* d = active()
    cdef Py_ssize_t N = gx.shape[0], C = gx.shape[1], H = gx.shape[2], W = gx.shape[3]
    cdef Py_ssize_t F = gy.shape[1], OH = gy.shape[2], OW = gy.shape[3], ckk = C * kh * kw
    cdef Py_ssize_t band = _band_rows(band_bytes, ckk, OW, 0, OH), cols_size = ckk * band * OW, i
    cdef float[::1] apack = np.empty(packed_a_size(d, ckk, F), dtype=np.float32)
    cdef float[::1] scratch = np.empty(cols_size + packed_b_size(d), dtype=np.float32)
    with nogil:
        pack_a(d, ckk, F, &w2[0, 0], ckk, 1, &apack[0])   # W^T (CKK, F), given W row-major
        for i in range(N):
            _grad_input_image_im2col(d, &gy[i, 0, 0, 0], F, OH, OW, &apack[0], &gx[i, 0, 0, 0], C, H, W,
                                     kh, kw, sh, sw, pt, pl, dh, dw, band, &scratch[0], &scratch[cols_size])


def conv_im2col_grad_weight(const float[:, :, :, ::1] x,    # IN (N, C, H, W)
                            const float[:, :, :, ::1] gy,   # IN (N, F, OH, OW)
                            Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt,
                            Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t band_bytes,
                            Py_ssize_t dot_min):
    """The weight gradient (F, C*KH*KW) over these images: per band, dY_band @ cols^T."""
    cdef const cc_gemm_desc* d = active()
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t F = gy.shape[1], OH = gy.shape[2], OW = gy.shape[3], ckk = C * kh * kw
    cdef Py_ssize_t band = _band_rows(band_bytes, ckk, OW, 0, OH), cols_size = ckk * band * OW
    cdef Py_ssize_t a_size = packed_a_size(d, F, band * OW), i
    cdef float[::1] scratch = np.empty(cols_size + a_size + packed_b_size(d), dtype=np.float32)
    acc_arr = np.zeros((F, ckk), dtype=np.float32)
    cdef float[:, ::1] acc = acc_arr
    with nogil:
        for i in range(N):
            _grad_weight_image_im2col(d, &x[i, 0, 0, 0], C, H, W, &gy[i, 0, 0, 0], F, OH, OW,
                                      kh, kw, sh, sw, pt, pl, dh, dw, band, dot_min, &acc[0, 0],
                                      &scratch[0], &scratch[cols_size], &scratch[cols_size + a_size])
    return acc_arr



# ---------------------------------------------------------------------------------------------
# Inference forwards (``convcore.ops._infer``): the same two fused convolutions, with
#   * the weights packed once by the caller (``_gemm.pack_a_stack``, cached per parameter) for the
#     descriptor of ISA ``level``, which these kernels use instead of the active one;
#   * a range of output channels [f0, f1) (f0 a multiple of MR: packed panel f0/MR starts at
#     f0*K) and of output rows [oy_lo, oy_hi), so that one image can be split over threads;
#   * an epilogue on each finished band while it is still in cache: + residual (an array shaped
#     like y), then an activation (0 none, 1 ReLU, 2 leaky ReLU with ``slope``);
#   * the scratch passed in (per-thread, reused: ``convcore._workspace``), sized by
#     ``*_scratch_size`` below.

def band_rows(Py_ssize_t budget, Py_ssize_t rows, Py_ssize_t OW, Py_ssize_t reach, Py_ssize_t OH):
    """Output rows per band of the fused kernels (see ``_band_rows``)."""
    return _band_rows(budget, rows, OW, reach, OH)


def unfolded_scratch_size(int level, Py_ssize_t rows, Py_ssize_t OW, Py_ssize_t reach, Py_ssize_t OH,
                          Py_ssize_t band_bytes):
    """Floats of scratch ``conv_unfolded_packed`` needs: one band's unfolded rows + B packing."""
    cdef Py_ssize_t band = _band_rows(band_bytes, rows, OW, reach, OH)
    return rows * (band + reach) * OW + packed_b_size(desc_of(level))


def im2col_scratch_size(int level, Py_ssize_t ckk, Py_ssize_t OW, Py_ssize_t OH, Py_ssize_t band_bytes):
    """Floats of scratch ``conv_im2col_packed`` needs: one band's columns + B packing."""
    cdef Py_ssize_t band = _band_rows(band_bytes, ckk, OW, 0, OH)
    return ckk * band * OW + packed_b_size(desc_of(level))


cdef void _epilogue(float* y, Py_ssize_t P, Py_ssize_t off, Py_ssize_t n, Py_ssize_t f0, Py_ssize_t f1,
                    const float* res, int act, float slope) noexcept nogil:
    # Rows f in [f0, f1) of one image's (F, P) output, positions [off, off + n): + res, then act.
    cdef Py_ssize_t f, i
    cdef float v
    cdef float* row
    cdef const float* r
    for f in range(f0, f1):
        row = y + f * P + off
        if res != NULL:
            r = res + f * P + off
            if act == 0:
                for i in range(n):
                    row[i] = row[i] + r[i]
            elif act == 1:
                for i in range(n):
                    v = row[i] + r[i]
                    row[i] = 0 if v <= 0 else v
            else:
                for i in range(n):
                    v = row[i] + r[i]
                    row[i] = v * slope if v <= 0 else v
        else:
            activate(row, n, act, slope)


cdef void _fill_bias_range(float* yb, const float* bias, Py_ssize_t f0, Py_ssize_t f1, Py_ssize_t P,
                           Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t f, p
    for f in range(f0, f1):
        for p in range(n):
            yb[f * P + p] = bias[f]


cdef void _conv_image_pk(const cc_gemm_desc* d, const float* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                         const float* apack, Py_ssize_t a_stride, const float* bias, const float* res,
                         float* y, Py_ssize_t OH, Py_ssize_t OW,
                         Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                         Py_ssize_t band, Py_ssize_t f0, Py_ssize_t f1, Py_ssize_t oy_lo, Py_ssize_t oy_hi,
                         int act, float slope, float* low, float* bpack) noexcept nogil:
    # _conv_image for output channels [f0, f1) and rows [oy_lo, oy_hi), then the epilogue per band.
    cdef Py_ssize_t rows = C * kw, reach = dh * (kh - 1), P = OH * OW, oy0 = oy_lo, bh, ki
    cdef float* yb
    while oy0 < oy_hi:
        bh = oy_hi - oy0 if oy_hi - oy0 < band else band
        yb = y + oy0 * OW
        _unfold_band(x, C, H, W, kw, pt, pl, dw, oy0, bh + reach, OW, low)
        if bias != NULL:
            _fill_bias_range(yb, bias, f0, f1, P, bh * OW)
        for ki in range(kh):
            gemm(d, f1 - f0, bh * OW, rows, apack + ki * a_stride + f0 * rows, low + ki * dh * OW,
                 (bh + reach) * OW, 0, yb + f0 * P, P, bias != NULL or ki > 0, bpack)
        _epilogue(y, P, oy0 * OW, bh * OW, f0, f1, res, act, slope)
        oy0 += bh


def conv_unfolded_packed(const float[:, :, :, ::1] x,     # IN  (N, C, H, W)
                         float[:, :, :, ::1] y,           # OUT (N, F, OH, OW), stride 1: the ranges below
                         const float[::1] apack,          # IN  KH packed (F, C*KW) matrices, a_stride apart
                         Py_ssize_t a_stride,
                         const float[::1] bias,           # IN  (F,) or None
                         const float[:, :, :, ::1] res,   # IN  shaped like y, or None
                         float[::1] scratch,              # scratch: unfolded_scratch_size(...) floats
                         Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh,
                         Py_ssize_t dw, Py_ssize_t band_bytes, int level,
                         Py_ssize_t f0, Py_ssize_t f1, Py_ssize_t oy_lo, Py_ssize_t oy_hi, int act, float slope):
    """y[:, f0:f1, oy_lo:oy_hi] = act(conv2d(x, w) + bias (+ res)) for a stride-1 convolution, the
    weight packed once for ISA ``level`` (see the section note)."""
    cdef const cc_gemm_desc* d = desc_of(level)
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = y.shape[2], OW = y.shape[3], rows = C * kw, reach = dh * (kh - 1)
    cdef Py_ssize_t band = _band_rows(band_bytes, rows, OW, reach, OH), low_size = rows * (band + reach) * OW, i
    cdef const float* b = NULL
    cdef const float* r = NULL
    if bias is not None:
        b = &bias[0]
    with nogil:
        for i in range(N):
            if res is not None:
                r = &res[i, 0, 0, 0]
            _conv_image_pk(d, &x[i, 0, 0, 0], C, H, W, &apack[0], a_stride, b, r, &y[i, 0, 0, 0], OH, OW,
                           kh, kw, pt, pl, dh, dw, band, f0, f1, oy_lo, oy_hi, act, slope, &scratch[0],
                           &scratch[low_size])


cdef void _conv_image_im2col_pk(const cc_gemm_desc* d, const float* x, Py_ssize_t C, Py_ssize_t H, Py_ssize_t W,
                                const float* apack, const float* bias, const float* res, float* y,
                                Py_ssize_t OH, Py_ssize_t OW, Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh,
                                Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                                Py_ssize_t band, Py_ssize_t f0, Py_ssize_t f1, Py_ssize_t oy_lo, Py_ssize_t oy_hi,
                                int act, float slope, float* cols, float* bpack) noexcept nogil:
    # A 1x1 stride-1 unpadded convolution reads the image itself as B (rows = channels, P apart):
    # no columns to copy.
    cdef Py_ssize_t P = OH * OW, ckk = C * kh * kw, oy0 = oy_lo, bh, n
    cdef bint pointwise = kh == 1 and kw == 1 and sh == 1 and sw == 1 and pt == 0 and pl == 0 and OH == H and OW == W
    cdef float* yb
    while oy0 < oy_hi:
        bh = oy_hi - oy0 if oy_hi - oy0 < band else band
        n = bh * OW
        yb = y + oy0 * OW
        if bias != NULL:
            _fill_bias_range(yb, bias, f0, f1, P, n)
        if pointwise:
            gemm(d, f1 - f0, n, C, apack + f0 * C, x + oy0 * OW, P, 0, yb + f0 * P, P, bias != NULL, bpack)
        else:
            _im2col_band(x, C, H, W, cols, kh, kw, sh, sw, pt, pl, dh, dw, oy0, bh, OW)
            gemm(d, f1 - f0, n, ckk, apack + f0 * ckk, cols, n, 0, yb + f0 * P, P, bias != NULL, bpack)
        _epilogue(y, P, oy0 * OW, n, f0, f1, res, act, slope)
        oy0 += bh


def conv_im2col_packed(const float[:, :, :, ::1] x,     # IN  (N, C, H, W)
                       float[:, :, :, ::1] y,           # OUT (N, F, OH, OW): the ranges below
                       const float[::1] apack,          # IN  the (F, C*KH*KW) weight, packed
                       const float[::1] bias,           # IN  (F,) or None
                       const float[:, :, :, ::1] res,   # IN  shaped like y, or None
                       float[::1] scratch,              # scratch: im2col_scratch_size(...) floats
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                       Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t band_bytes, int level,
                       Py_ssize_t f0, Py_ssize_t f1, Py_ssize_t oy_lo, Py_ssize_t oy_hi, int act, float slope):
    """conv_im2col for the ranges and epilogue of the section note, the weight packed once."""
    cdef const cc_gemm_desc* d = desc_of(level)
    cdef Py_ssize_t N = x.shape[0], C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t OH = y.shape[2], OW = y.shape[3], ckk = C * kh * kw
    cdef Py_ssize_t band = _band_rows(band_bytes, ckk, OW, 0, OH), cols_size = ckk * band * OW, i
    cdef const float* b = NULL
    cdef const float* r = NULL
    if bias is not None:
        b = &bias[0]
    with nogil:
        for i in range(N):
            if res is not None:
                r = &res[i, 0, 0, 0]
            _conv_image_im2col_pk(d, &x[i, 0, 0, 0], C, H, W, &apack[0], b, r, &y[i, 0, 0, 0], OH, OW,
                                  kh, kw, sh, sw, pt, pl, dh, dw, band, f0, f1, oy_lo, oy_hi, act, slope,
                                  &scratch[0], &scratch[cols_size])


# The same two inference convolutions as ONE call over several work ranges on convcore's native
# worker pool (cc_parallel.h: bounded spinning, no Python hand-off): what batch-1 latency needs.

cdef extern from "gemm/cc_parallel.h" nogil:
    ctypedef void (*cc_task_fn)(void* ctx, int task) noexcept nogil
    int cc_parallel_native()
    void cc_parallel(cc_task_fn fn, void* ctx, int ntasks)
    void cc_parallel_set_spin(double us)


def set_pool_spin(double microseconds):
    """How long an idle native-pool worker spins before sleeping (tuning; default CC_SPIN_US)."""
    cc_parallel_set_spin(microseconds)


ctypedef struct _ConvJob:
    const cc_gemm_desc* d
    const float* x
    float* y
    const float* apack
    const float* bias
    const float* res
    float* scratch
    const Py_ssize_t* ranges      # (ntasks, 6): i0, i1, f0, f1, oy0, oy1
    Py_ssize_t scratch_stride, a_stride, cols_size, band
    Py_ssize_t C, H, W, F, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw
    int unfolded, act
    float slope


cdef void _conv_task(void* ctx, int task) noexcept nogil:
    cdef _ConvJob* j = <_ConvJob*>ctx
    cdef const Py_ssize_t* r = j.ranges + 6 * task
    cdef float* scratch = j.scratch + task * j.scratch_stride
    cdef Py_ssize_t i, in_plane = j.C * j.H * j.W, out_plane = j.F * j.OH * j.OW
    cdef const float* res
    for i in range(r[0], r[1]):
        res = NULL if j.res == NULL else j.res + i * out_plane
        if j.unfolded:
            _conv_image_pk(j.d, j.x + i * in_plane, j.C, j.H, j.W, j.apack, j.a_stride, j.bias, res,
                           j.y + i * out_plane, j.OH, j.OW, j.kh, j.kw, j.pt, j.pl, j.dh, j.dw, j.band,
                           r[2], r[3], r[4], r[5], j.act, j.slope, scratch, scratch + j.cols_size)
        else:
            _conv_image_im2col_pk(j.d, j.x + i * in_plane, j.C, j.H, j.W, j.apack, j.bias, res,
                                  j.y + i * out_plane, j.OH, j.OW, j.kh, j.kw, j.sh, j.sw, j.pt, j.pl, j.dh,
                                  j.dw, j.band, r[2], r[3], r[4], r[5], j.act, j.slope, scratch,
                                  scratch + j.cols_size)


def native_pool():
    """Whether this build has the native worker pool (pthreads)."""
    return cc_parallel_native() == 1


def conv_packed_parallel(const float[:, :, :, ::1] x,     # IN  (N, C, H, W)
                         float[:, :, :, ::1] y,           # OUT (N, F, OH, OW)
                         const float[::1] apack,          # IN  packed weight (see conv_*_packed)
                         Py_ssize_t a_stride,
                         const float[::1] bias,           # IN  (F,) or None
                         const float[:, :, :, ::1] res,   # IN  shaped like y, or None
                         float[::1] scratch,              # scratch: ntasks * scratch_stride floats
                         Py_ssize_t scratch_stride,
                         const Py_ssize_t[:, ::1] ranges, # IN  (ntasks, 6) work ranges
                         bint unfolded,
                         Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                         Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t band_bytes, int level, int act, float slope):
    """conv_unfolded_packed (``unfolded``) or conv_im2col_packed over each work range, the ranges
    run in parallel on the native pool (each with its own slice of ``scratch``)."""
    cdef _ConvJob j
    cdef Py_ssize_t ckk = x.shape[1] * kh * kw, OW = y.shape[3], OH = y.shape[2]
    j.d = desc_of(level)
    j.x = &x[0, 0, 0, 0]
    j.y = &y[0, 0, 0, 0]
    j.apack = &apack[0]
    j.bias = NULL if bias is None else &bias[0]
    j.res = NULL if res is None else &res[0, 0, 0, 0]
    j.scratch = &scratch[0]
    j.ranges = &ranges[0, 0]
    j.scratch_stride, j.a_stride = scratch_stride, a_stride
    j.C, j.H, j.W = x.shape[1], x.shape[2], x.shape[3]
    j.F, j.OH, j.OW = y.shape[1], OH, OW
    j.kh, j.kw, j.sh, j.sw, j.pt, j.pl, j.dh, j.dw = kh, kw, sh, sw, pt, pl, dh, dw
    j.unfolded, j.act, j.slope = unfolded, act, slope
    if unfolded:
        j.band = _band_rows(band_bytes, x.shape[1] * kw, OW, dh * (kh - 1), OH)
        j.cols_size = x.shape[1] * kw * (j.band + dh * (kh - 1)) * OW
    else:
        j.band = _band_rows(band_bytes, ckk, OW, 0, OH)
        j.cols_size = ckk * j.band * OW
    with nogil:
        cc_parallel(_conv_task, &j, <int>ranges.shape[0])


# Convolution + epilogue + 2x2 stride-2 max pooling in one pass (inference): each band of output
# rows (an even number) is computed into a per-thread band buffer, epilogue applied there, and
# pooled into the pooled output while still in cache; the full-resolution output never exists.

cdef inline float _max2(float m, float v) noexcept nogil:
    # max pooling's comparison (``val > top or val != val``): NaN propagates, as in _pool.pyx
    return v if (v > m) | (v != v) else m


cdef void _pool_band(const float* band, Py_ssize_t Pb, Py_ssize_t OW, Py_ssize_t rows, Py_ssize_t f0, Py_ssize_t f1,
                     float* yp, Py_ssize_t PP, Py_ssize_t OWp, Py_ssize_t pr0) noexcept nogil:
    # band (F, rows, OW), rows even, channel stride Pb -> yp pooled rows [pr0, pr0 + rows/2).
    cdef Py_ssize_t f, r, c
    cdef const float* a
    cdef const float* b
    cdef float* o
    cdef float m
    for f in range(f0, f1):
        for r in range(rows // 2):
            a = band + f * Pb + 2 * r * OW
            b = a + OW
            o = yp + f * PP + (pr0 + r) * OWp
            for c in range(OWp):
                m = a[2 * c]
                m = _max2(m, a[2 * c + 1])
                m = _max2(m, b[2 * c])
                m = _max2(m, b[2 * c + 1])
                o[c] = m


cdef void _conv_image_pool_pk(const cc_gemm_desc* d, bint unfolded, const float* x, Py_ssize_t C, Py_ssize_t H,
                              Py_ssize_t W, const float* apack, Py_ssize_t a_stride, const float* bias,
                              float* yp, Py_ssize_t OH, Py_ssize_t OW,
                              Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                              Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t band, Py_ssize_t f0, Py_ssize_t f1,
                              Py_ssize_t oy_lo, Py_ssize_t oy_hi, int act, float slope, float* cols, float* bpack,
                              float* bandbuf) noexcept nogil:
    # Conv rows [oy_lo, oy_hi) (both even; band even) of channels [f0, f1) into bandbuf, then pooled.
    cdef Py_ssize_t rows = C * kw, reach = dh * (kh - 1), ckk = C * kh * kw, Pb = band * OW
    cdef Py_ssize_t OWp = OW // 2, PP = (OH // 2) * OWp, oy0 = oy_lo, bh, ki, n
    while oy0 < oy_hi:
        bh = oy_hi - oy0 if oy_hi - oy0 < band else band
        n = bh * OW
        if bias != NULL:
            _fill_bias_range(bandbuf, bias, f0, f1, Pb, n)
        if unfolded:
            _unfold_band(x, C, H, W, kw, pt, pl, dw, oy0, bh + reach, OW, cols)
            for ki in range(kh):
                gemm(d, f1 - f0, n, rows, apack + ki * a_stride + f0 * rows, cols + ki * dh * OW,
                     (bh + reach) * OW, 0, bandbuf + f0 * Pb, Pb, bias != NULL or ki > 0, bpack)
        else:
            _im2col_band(x, C, H, W, cols, kh, kw, sh, sw, pt, pl, dh, dw, oy0, bh, OW)
            gemm(d, f1 - f0, n, ckk, apack + f0 * ckk, cols, n, 0, bandbuf + f0 * Pb, Pb, bias != NULL, bpack)
        _epilogue(bandbuf, Pb, 0, n, f0, f1, NULL, act, slope)
        _pool_band(bandbuf, Pb, OW, bh, f0, f1, yp, PP, OWp, oy0 // 2)
        oy0 += bh


def pooled_band_rows(Py_ssize_t band_bytes, bint unfolded, Py_ssize_t C, Py_ssize_t kh, Py_ssize_t kw,
                     Py_ssize_t dh, Py_ssize_t OW, Py_ssize_t OH):
    """Conv rows per band of ``conv_pool_parallel`` (even, at least 2)."""
    cdef Py_ssize_t band
    if unfolded:
        band = _band_rows(band_bytes, C * kw, OW, dh * (kh - 1), OH)
    else:
        band = _band_rows(band_bytes, C * kh * kw, OW, 0, OH)
    band -= band % 2
    return 2 if band < 2 else band


ctypedef struct _PoolJob:
    const cc_gemm_desc* d
    const float* x
    float* y
    const float* apack
    const float* bias
    float* scratch
    const Py_ssize_t* ranges
    Py_ssize_t scratch_stride, a_stride, cols_size, bpack_size, band
    Py_ssize_t C, H, W, F, OH, OW, kh, kw, sh, sw, pt, pl, dh, dw
    int unfolded, act
    float slope


cdef void _pool_task(void* ctx, int task) noexcept nogil:
    cdef _PoolJob* j = <_PoolJob*>ctx
    cdef const Py_ssize_t* r = j.ranges + 6 * task
    cdef float* scratch = j.scratch + task * j.scratch_stride
    cdef Py_ssize_t i, in_plane = j.C * j.H * j.W, out_plane = j.F * (j.OH // 2) * (j.OW // 2)
    for i in range(r[0], r[1]):
        _conv_image_pool_pk(j.d, j.unfolded, j.x + i * in_plane, j.C, j.H, j.W, j.apack, j.a_stride, j.bias,
                            j.y + i * out_plane, j.OH, j.OW, j.kh, j.kw, j.sh, j.sw, j.pt, j.pl, j.dh, j.dw,
                            j.band, r[2], r[3], r[4], r[5], j.act, j.slope, scratch, scratch + j.cols_size,
                            scratch + j.cols_size + j.bpack_size)


def pool_scratch_size(int level, bint unfolded, Py_ssize_t C, Py_ssize_t F, Py_ssize_t kh, Py_ssize_t kw,
                      Py_ssize_t dh, Py_ssize_t OW, Py_ssize_t OH, Py_ssize_t band_bytes):
    """Floats of per-task scratch of ``conv_pool_parallel``: columns, B packing, band buffer."""
    cdef Py_ssize_t band = pooled_band_rows(band_bytes, unfolded, C, kh, kw, dh, OW, OH)
    cdef Py_ssize_t cols = C * kw * (band + dh * (kh - 1)) * OW if unfolded else C * kh * kw * band * OW
    return cols + packed_b_size(desc_of(level)) + F * band * OW


def conv_pool_parallel(const float[:, :, :, ::1] x,     # IN  (N, C, H, W)
                       float[:, :, :, ::1] y,           # OUT (N, F, OH // 2, OW // 2): pooled
                       const float[::1] apack, Py_ssize_t a_stride,
                       const float[::1] bias,           # IN  (F,) or None
                       float[::1] scratch,              # ntasks * scratch_stride floats (pool_scratch_size)
                       Py_ssize_t scratch_stride,
                       const Py_ssize_t[:, ::1] ranges, # IN  (ntasks, 6); conv row ranges even
                       bint unfolded, Py_ssize_t OH, Py_ssize_t OW,
                       Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw, Py_ssize_t pt, Py_ssize_t pl,
                       Py_ssize_t dh, Py_ssize_t dw, Py_ssize_t band_bytes, int level, int act, float slope):
    """y = maxpool2x2(act(conv2d(x, w) + bias)) per work range, on the native pool: the conv
    output of size (OH, OW) is never stored (rows past 2 * (OH // 2) are not computed)."""
    cdef _PoolJob j
    j.d = desc_of(level)
    j.x = &x[0, 0, 0, 0]
    j.y = &y[0, 0, 0, 0]
    j.apack = &apack[0]
    j.bias = NULL if bias is None else &bias[0]
    j.scratch = &scratch[0]
    j.ranges = &ranges[0, 0]
    j.scratch_stride, j.a_stride = scratch_stride, a_stride
    j.C, j.H, j.W = x.shape[1], x.shape[2], x.shape[3]
    j.F, j.OH, j.OW = y.shape[1], OH, OW
    j.kh, j.kw, j.sh, j.sw, j.pt, j.pl, j.dh, j.dw = kh, kw, sh, sw, pt, pl, dh, dw
    j.unfolded, j.act, j.slope = unfolded, act, slope
    j.band = pooled_band_rows(band_bytes, unfolded, j.C, kh, kw, dh, OW, OH)
    j.cols_size = j.C * kw * (j.band + dh * (kh - 1)) * OW if unfolded else j.C * kh * kw * j.band * OW
    j.bpack_size = packed_b_size(j.d)
    with nogil:
        cc_parallel(_pool_task, &j, <int>ranges.shape[0])


# Linear (inference) on the native pool: out = act(x @ W^T + bias), W^T packed once into NR-column
# panels (``_gemm.pack_b_panels``); each task takes a range of rows or of columns (multiples of NR),
# packs its rows of x into its scratch and runs the prepacked GEMM: the same sums in the same order
# as ``_gemm.linear_packed`` (and the training path's matmul), so the same bits.

ctypedef struct _LinearJob:
    const cc_gemm_desc* d
    const float* x
    const float* bpack
    const float* bias
    float* out
    float* scratch
    const Py_ssize_t* ranges      # (ntasks, 4): m0, m1, n0, n1
    Py_ssize_t scratch_stride, K, N
    int act
    float slope


cdef void _linear_task(void* ctx, int task) noexcept nogil:
    cdef _LinearJob* j = <_LinearJob*>ctx
    cdef const Py_ssize_t* r = j.ranges + 4 * task
    cdef Py_ssize_t m0 = r[0], m1 = r[1], n0 = r[2], n1 = r[3], m, n
    cdef float* ap = j.scratch + task * j.scratch_stride
    cdef float* row
    cdef float v
    if m1 <= m0 or n1 <= n0:
        return
    pack_a(j.d, m1 - m0, j.K, j.x + m0 * j.K, j.K, 0, ap)
    gemm_prepacked(j.d, m1 - m0, n1 - n0, j.K, ap, j.bpack + (n0 // j.d.nr) * j.K * j.d.nr, j.K, 0,
                   j.out + m0 * j.N + n0, j.N, 0)
    for m in range(m0, m1):
        row = j.out + m * j.N
        if j.bias != NULL:
            for n in range(n0, n1):
                row[n] = row[n] + j.bias[n]
        if j.act == 1:
            for n in range(n0, n1):
                v = row[n]
                row[n] = 0 if v <= 0 else v
        elif j.act == 2:
            for n in range(n0, n1):
                v = row[n]
                row[n] = v * j.slope if v <= 0 else v


def linear_parallel(const float[:, ::1] x,          # IN  (M, K)
                    const float[::1] bpack,         # IN  W^T packed (pack_b_panels)
                    const float[::1] bias,          # IN  (N,) or None
                    float[:, ::1] out,              # OUT (M, N)
                    float[::1] scratch,             # ntasks * scratch_stride floats
                    Py_ssize_t scratch_stride,
                    const Py_ssize_t[:, ::1] ranges,   # (ntasks, 4): m0, m1, n0, n1 (n0 a multiple of NR)
                    int level, int act, float slope):
    """out[m0:m1, n0:n1] = act(x @ W^T + bias) per range, the ranges on the native pool."""
    cdef _LinearJob j
    j.d = desc_of(level)
    j.x = &x[0, 0]
    j.bpack = &bpack[0]
    j.bias = NULL if bias is None else &bias[0]
    j.out = &out[0, 0]
    j.scratch = &scratch[0]
    j.ranges = &ranges[0, 0]
    j.scratch_stride, j.K, j.N = scratch_stride, x.shape[1], out.shape[1]
    j.act, j.slope = act, slope
    with nogil:
        cc_parallel(_linear_task, &j, <int>ranges.shape[0])
