# Design note: max and average pooling, forward and backward, PyTorch semantics.
#
# A. Layout: NCHW, C-contiguous. Max-pool indices are int64 flat positions inside each input
#    plane (iy * W + ix), exactly what torch's ``return_indices=True`` gives.
# B. Max pooling: the window maximum is taken with ``val > max or val != val``, the test PyTorch's
#    CPU kernel uses, so NaN propagates and the index of the last NaN in the window is kept; ties
#    keep the first maximum. Padding is never read: each window is clipped to the image once per
#    row/column (``_tap_range``), so no -inf padded copy exists.
# C. Average pooling follows PyTorch: the window is clipped to input + padding to size the divisor
#    when ``count_include_pad``, then to the input for the sum.
# D. Parallelism: these kernels run serially over the (n, c) planes they are given; ``convcore.ops``
#    splits the planes over convcore's own threads (``_threads.run_planes``: no OpenMP team, whose
#    idle workers would spin between GEMMs). Backward kernels scatter only into the planes of
#    their call, so they need no atomics. The caller zero-fills nothing: backward kernels
#    overwrite their output plane.
# E. The caller (``convcore.ops``) validated every shape and the geometry. The one input it cannot
#    cheaply validate, max-pool indices, is bounds-tested here; out-of-range entries are skipped
#    and counted, and the caller raises.

from cython cimport floating
from libc.stdint cimport int64_t
from libc.string cimport memset
from libc.math cimport INFINITY


cdef inline void _tap_range(Py_ssize_t start, Py_ssize_t dil, Py_ssize_t size, Py_ssize_t k,
                            Py_ssize_t* k0, Py_ssize_t* k1) noexcept nogil:
    # Kernel taps t in [k0, k1) with start + t*dil inside [0, size); divides non-negatives only.
    k0[0] = 0 if start >= 0 else (-start + dil - 1) // dil
    k1[0] = 0 if size - start <= 0 else (size - start + dil - 1) // dil
    if k1[0] > k:
        k1[0] = k
    if k0[0] > k1[0]:
        k0[0] = k1[0]


cdef inline void _max_pool_window(const floating* img, Py_ssize_t H, Py_ssize_t W,
                                  Py_ssize_t iy0, Py_ssize_t ki0, Py_ssize_t ki1, Py_ssize_t dh,
                                  Py_ssize_t ix0, Py_ssize_t kw, Py_ssize_t dw,
                                  floating* out, int64_t* idx) noexcept nogil:
    # One window, clipped to the image: the general path, used for border columns.
    cdef Py_ssize_t ki, kj, kj0, kj1, iy, ix, best
    cdef floating val, top = -INFINITY
    _tap_range(ix0, dw, W, kw, &kj0, &kj1)
    if ki0 < ki1 and kj0 < kj1:
        best = (iy0 + ki0 * dh) * W + ix0 + kj0 * dw
    else:  # a window wholly in padding (only reachable with large explicit padding)
        best = 0
    for ki in range(ki0, ki1):
        iy = iy0 + ki * dh
        for kj in range(kj0, kj1):
            ix = ix0 + kj * dw
            val = img[iy * W + ix]
            if val > top or val != val:
                top = val
                best = iy * W + ix
    out[0] = top
    if idx != NULL:
        idx[0] = best


cdef inline void _max_vals(const floating* src, Py_ssize_t sw, Py_ssize_t nb, floating* top) noexcept nogil:
    # _max_taps without the tap numbers (inference: values only).
    cdef Py_ssize_t j
    cdef floating val, cur
    for j in range(nb):
        val = src[j * sw]
        cur = top[j]
        top[j] = val if (val > cur) | (val != val) else cur


cdef inline void _max_taps(const floating* src, Py_ssize_t sw, Py_ssize_t nb, int t,
                           floating* top, int* tap) noexcept nogil:
    # Column j of the block compares src[j * sw] with its running maximum; inlined with a
    # literal ``sw`` at the call sites that have one, so the strided loads vectorize.
    cdef Py_ssize_t j
    cdef floating val, cur
    cdef bint take
    for j in range(nb):
        val = src[j * sw]
        cur = top[j]
        take = (val > cur) | (val != val)
        top[j] = val if take else cur
        tap[j] = t if take else tap[j]


cdef enum:
    BLOCK = 256      # interior output columns processed per block (stack scratch)
    MAX_TAPS = 64    # windows with more taps take the general path


cdef inline void _max_pool_plane(const floating* img, floating* out, int64_t* idx,
                                 Py_ssize_t H, Py_ssize_t W,
                                 Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                                 Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                                 Py_ssize_t oh, Py_ssize_t ow) noexcept nogil:
    # Row at a time. Border columns (window clipped by the image) take the general path. Interior
    # columns [lo, hi) are processed in blocks: for each tap (ki, kj), in PyTorch's order, every
    # column of the block compares one value against its running maximum kept in stack scratch,
    # recording the winning tap number. The select is branch-free (random data makes a branch
    # mispredict half the time) and the loops vectorize. Tap numbers become plane positions last.
    cdef Py_ssize_t oy, ox, ox0, nb, j, iy0, ki, kj, ki0, ki1, lo, hi, end, shift, t
    cdef floating top[BLOCK]
    cdef int tap[BLOCK]
    cdef Py_ssize_t tap_offset[MAX_TAPS]
    cdef const floating* src
    lo = 0 if pl <= 0 else (pl + sw - 1) // sw
    end = W + pl - (kw - 1) * dw          # interior: ox * sw < end
    hi = 0 if end <= 0 else (end + sw - 1) // sw
    if hi > ow:
        hi = ow
    if lo > hi or kh * kw > MAX_TAPS:
        lo = hi = ow
    for ki in range(kh if kh * kw <= MAX_TAPS else 0):
        for kj in range(kw):
            tap_offset[ki * kw + kj] = ki * dh * W + kj * dw
    for oy in range(oh):
        iy0 = oy * sh - pt
        _tap_range(iy0, dh, H, kh, &ki0, &ki1)
        for ox in range(lo):
            _max_pool_window(img, H, W, iy0, ki0, ki1, dh, ox * sw - pl, kw, dw, out + oy * ow + ox,
                             NULL if idx == NULL else idx + oy * ow + ox)
        for ox in range(hi, ow):
            _max_pool_window(img, H, W, iy0, ki0, ki1, dh, ox * sw - pl, kw, dw, out + oy * ow + ox,
                             NULL if idx == NULL else idx + oy * ow + ox)
        if ki0 == ki1:  # the whole row of windows lies in padding
            for ox in range(lo, hi):
                _max_pool_window(img, H, W, iy0, ki0, ki1, dh, ox * sw - pl, kw, dw,
                                 out + oy * ow + ox, NULL if idx == NULL else idx + oy * ow + ox)
            continue
        ox0 = lo
        while ox0 < hi:
            nb = hi - ox0 if hi - ox0 < BLOCK else BLOCK
            for j in range(nb):
                top[j] = -INFINITY
                tap[j] = ki0 * kw
            for ki in range(ki0, ki1):
                for kj in range(kw):
                    t = ki * kw + kj
                    src = img + (iy0 + ki * dh) * W + ox0 * sw + kj * dw - pl
                    if idx == NULL:   # values only
                        if sw == 2:
                            _max_vals(src, 2, nb, top)
                        elif sw == 1:
                            _max_vals(src, 1, nb, top)
                        else:
                            _max_vals(src, sw, nb, top)
                    elif sw == 2:  # the common 2x2/2 and 3x3/2 pools: a constant stride vectorizes
                        _max_taps(src, 2, nb, <int>t, top, tap)
                    elif sw == 1:
                        _max_taps(src, 1, nb, <int>t, top, tap)
                    else:
                        _max_taps(src, sw, nb, <int>t, top, tap)
            for j in range(nb):
                out[oy * ow + ox0 + j] = top[j]
            if idx != NULL:
                for j in range(nb):
                    idx[oy * ow + ox0 + j] = iy0 * W + (ox0 + j) * sw - pl + tap_offset[tap[j]]
            ox0 += BLOCK


def max_pool2d(const floating[:, :, :, ::1] x,    # IN  (N, C, H, W)
               floating[:, :, :, ::1] out,        # OUT (N, C, OH, OW)
               int64_t[:, :, :, ::1] indices,     # OUT (N, C, OH, OW), flat positions in a plane
               Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
               Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
               Py_ssize_t oh, Py_ssize_t ow):
    """Max pooling forward: window maxima and their flat positions."""
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in range(x.shape[0] * C):
            n = plane // C
            c = plane - n * C
            _max_pool_plane(&x[n, c, 0, 0], &out[n, c, 0, 0], &indices[n, c, 0, 0], H, W,
                            kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)


def max_pool2d_values(const floating[:, :, :, ::1] x,    # IN  (N, C, H, W)
                      floating[:, :, :, ::1] out,        # OUT (N, C, OH, OW)
                      Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                      Py_ssize_t pt, Py_ssize_t pl, Py_ssize_t dh, Py_ssize_t dw,
                      Py_ssize_t oh, Py_ssize_t ow):
    """Max pooling forward, the window maxima only (inference: no indices written)."""
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in range(x.shape[0] * C):
            n = plane // C
            c = plane - n * C
            _max_pool_plane(&x[n, c, 0, 0], &out[n, c, 0, 0], NULL, H, W, kh, kw, sh, sw, pt, pl, dh, dw, oh, ow)


def max_pool2d_backward(const floating[:, :, :, ::1] grad_out,   # IN  (N, C, OH, OW)
                        const int64_t[:, :, :, ::1] indices,     # IN  (N, C, OH, OW)
                        floating[:, :, :, ::1] grad_x):          # OUT (N, C, H, W), overwritten
    """Scatter-add ``grad_out`` to the recorded maxima; returns how many indices were out of range."""
    cdef Py_ssize_t C = grad_x.shape[1], HW = grad_x.shape[2] * grad_x.shape[3]
    cdef Py_ssize_t P = grad_out.shape[2] * grad_out.shape[3]
    cdef Py_ssize_t plane, n, c, o, j, bad = 0
    cdef floating* gx
    cdef const floating* g
    cdef const int64_t* ix
    with nogil:
        for plane in range(grad_x.shape[0] * C):
            n = plane // C
            c = plane - n * C
            gx = &grad_x[n, c, 0, 0]
            g = &grad_out[n, c, 0, 0]
            ix = &indices[n, c, 0, 0]
            memset(gx, 0, HW * sizeof(floating))
            for o in range(P):
                j = ix[o]
                if j >= 0 and j < HW:
                    gx[j] += g[o]
                else:
                    bad += 1
    return bad


cdef inline void _avg_window(Py_ssize_t o, Py_ssize_t s, Py_ssize_t pad_begin, Py_ssize_t pad_end,
                             Py_ssize_t k, Py_ssize_t size, Py_ssize_t* a, Py_ssize_t* b,
                             Py_ssize_t* padded_len) noexcept nogil:
    # Window along one axis: [a, b) inside the input; padded_len counts padding too.
    a[0] = o * s - pad_begin
    b[0] = a[0] + k
    if b[0] > size + pad_end:
        b[0] = size + pad_end
    padded_len[0] = b[0] - a[0]
    if a[0] < 0:
        a[0] = 0
    if b[0] > size:
        b[0] = size


cdef inline void _avg_pool_plane(const floating* img, floating* out, Py_ssize_t H, Py_ssize_t W,
                                 Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                                 Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr,
                                 Py_ssize_t oh, Py_ssize_t ow, bint count_include_pad) noexcept nogil:
    cdef Py_ssize_t oy, ox, y0, y1, x0, x1, ly, lx, iy, ix, div
    cdef floating acc
    for oy in range(oh):
        _avg_window(oy, sh, pt, pb, kh, H, &y0, &y1, &ly)
        for ox in range(ow):
            _avg_window(ox, sw, pl, pr, kw, W, &x0, &x1, &lx)
            if y0 >= y1 or x0 >= x1:
                out[oy * ow + ox] = 0
                continue
            div = ly * lx if count_include_pad else (y1 - y0) * (x1 - x0)
            acc = 0
            for iy in range(y0, y1):
                for ix in range(x0, x1):
                    acc = acc + img[iy * W + ix]
            out[oy * ow + ox] = acc / div


cdef inline void _avg_pool_backward_plane(const floating* g, floating* gx,
                                          Py_ssize_t H, Py_ssize_t W,
                                          Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                                          Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr,
                                          Py_ssize_t oh, Py_ssize_t ow,
                                          bint count_include_pad) noexcept nogil:
    cdef Py_ssize_t oy, ox, y0, y1, x0, x1, ly, lx, iy, ix, div
    cdef floating share
    memset(gx, 0, H * W * sizeof(floating))
    for oy in range(oh):
        _avg_window(oy, sh, pt, pb, kh, H, &y0, &y1, &ly)
        for ox in range(ow):
            _avg_window(ox, sw, pl, pr, kw, W, &x0, &x1, &lx)
            if y0 >= y1 or x0 >= x1:
                continue
            div = ly * lx if count_include_pad else (y1 - y0) * (x1 - x0)
            share = g[oy * ow + ox] / div
            for iy in range(y0, y1):
                for ix in range(x0, x1):
                    gx[iy * W + ix] += share


def avg_pool2d(const floating[:, :, :, ::1] x,    # IN  (N, C, H, W)
               floating[:, :, :, ::1] out,        # OUT (N, C, OH, OW)
               Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
               Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr,
               bint count_include_pad):
    """Average pooling forward."""
    cdef Py_ssize_t C = x.shape[1], H = x.shape[2], W = x.shape[3]
    cdef Py_ssize_t oh = out.shape[2], ow = out.shape[3]
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in range(x.shape[0] * C):
            n = plane // C
            c = plane - n * C
            _avg_pool_plane(&x[n, c, 0, 0], &out[n, c, 0, 0], H, W, kh, kw, sh, sw,
                            pt, pb, pl, pr, oh, ow, count_include_pad)


def avg_pool2d_backward(const floating[:, :, :, ::1] grad_out,   # IN  (N, C, OH, OW)
                        floating[:, :, :, ::1] grad_x,           # OUT (N, C, H, W), overwritten
                        Py_ssize_t kh, Py_ssize_t kw, Py_ssize_t sh, Py_ssize_t sw,
                        Py_ssize_t pt, Py_ssize_t pb, Py_ssize_t pl, Py_ssize_t pr,
                        bint count_include_pad):
    """Average pooling backward: each output gradient spread evenly over its window."""
    cdef Py_ssize_t C = grad_x.shape[1], H = grad_x.shape[2], W = grad_x.shape[3]
    cdef Py_ssize_t oh = grad_out.shape[2], ow = grad_out.shape[3]
    cdef Py_ssize_t plane, n, c
    with nogil:
        for plane in range(grad_x.shape[0] * C):
            n = plane // C
            c = plane - n * C
            _avg_pool_backward_plane(&grad_out[n, c, 0, 0], &grad_x[n, c, 0, 0], H, W,
                                     kh, kw, sh, sw, pt, pb, pl, pr, oh, ow, count_include_pad)
