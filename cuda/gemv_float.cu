/* gemv_float.cu: matrix-vector products with float activations for the non-ternary weight types (F32, F16, BF16,
 * Q8_0, Q4_K, Q6_K), and the row lookup (embeddings) for every type.
 *
 * Owns trn_cuda_gemv_float and trn_cuda_get_row (cuda_ops.h). Does not own ternary products (gemv_ternary.cu) or
 * the weight layouts: non-ternary rows are the file's bytes (host/tensor_types.h), ternary rows the split layout of
 * cuda_ops.h. The math is cpu_fallback/quants.c's dequantization, mirrored bit for bit (every dequantized weight is
 * exactly the CPU's float: the products are exact and rounding is explicit, no contraction), then a dot product with
 * x in a different order than the CPU's loop: rows agree to float rounding, not bitwise. get_row is bitwise the
 * CPU's trn_dequantize_row. */
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <math.h>
#include <stdint.h>

#include "cuda_ops.h"
#include "dequant.cuh"
#include "device_math.cuh"

/* ---- device code ---- */

namespace {

using trn_dq::bf16_to_float;
using trn_dq::half_to_float;
using trn_dq::load_u16;
using trn_dq::q4_k_scale_min;

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarpsPerCta = 8;
constexpr int kCtaThreads = kWarpsPerCta * kWarp;

/* One thread per element (a row is small and read once), 256 per CTA; blockIdx.y = token t of a batch.
 * dst[t] (cols,) = row row_index[t] of W (rows, cols); an index outside [0, rows) gives NaNs (a caller bug, made
 * visible without reading out of bounds). */
__global__ void __launch_bounds__(kCtaThreads)
    get_row_kernel(trn_type type, const uint8_t *__restrict__ data, const uint16_t *__restrict__ d, size_t row_bytes,
                   int64_t rows, int64_t cols, const int32_t *__restrict__ row_index, float *__restrict__ dst) {
    const int64_t i = (int64_t)blockIdx.x * kCtaThreads + threadIdx.x;
    if (i >= cols)
        return;
    const int32_t r = row_index[blockIdx.y];
    dst += (int64_t)blockIdx.y * cols;
    if (r < 0 || r >= rows) {
        dst[i] = NAN;
        return;
    }
    const uint16_t *d_row = d ? d + (size_t)r * (size_t)(cols / TRN_QK_K) : nullptr;
    dst[i] = trn_dq::dequant_one(type, data + (size_t)r * row_bytes, d_row, i);
}

/* ---- matrix-vector products: a lane's partial dot product of one row ---- */

/* One warp per row, 8 rows per CTA of 256 threads, grid = ceil(rows / 8); lanes stride the row so every load
 * instruction of a warp reads one contiguous span, and a warp-shuffle butterfly adds the 32 partial sums.
 *   F32 / F16 / BF16: 16-byte loads (4 or 8 weights per lane) when rows and x are 16-byte aligned, then a scalar
 *   tail for row lengths that are not a multiple of 4 or 8 (stories260K: 172); element loads otherwise.
 *   Q8_0 (34-byte blocks, 2-byte aligned): 4 lanes per block (8 weights each), 8 blocks per warp step.
 *   Q4_K (144 bytes, 16-byte aligned): 8 lanes per block (16 code bytes = 32 weights each), 4 blocks per step.
 *   Q6_K (210 bytes, 2-byte aligned): 32 lanes per block (8 weights each), one block per step, two unrolled.
 * Weights are read with evict-first loads (they are used once per token), x through the read-only cache. */

/* F32, F16, BF16: element e of the row as a float. */
template <trn_type T> __device__ __forceinline__ float plain_elem(const uint8_t *__restrict__ row, int e) {
    if constexpr (T == TRN_TYPE_F32)
        return __ldcs(reinterpret_cast<const float *>(row) + e);
    else if constexpr (T == TRN_TYPE_F16)
        return half_to_float(__ldcs(reinterpret_cast<const unsigned short *>(row) + e));
    else
        return bf16_to_float(__ldcs(reinterpret_cast<const unsigned short *>(row) + e));
}

/* Two 16-bit floats packed in a word, times x[0], x[1], added to s. */
template <trn_type T> __device__ __forceinline__ float fma_pair(uint32_t w, float x0, float x1, float s) {
    if constexpr (T == TRN_TYPE_F16) {
        s = fmaf(half_to_float(w & 0xffffu), x0, s);
        return fmaf(half_to_float(w >> 16), x1, s);
    } else {
        s = fmaf(bf16_to_float(w & 0xffffu), x0, s);
        return fmaf(bf16_to_float(w >> 16), x1, s);
    }
}

/* F32, F16, BF16 rows of any length. VEC: row and x 16-byte aligned, 16-byte loads, then the tail element-wise. */
template <trn_type T, bool VEC>
__device__ __forceinline__ float dot_plain(const uint8_t *__restrict__ row, const float *__restrict__ x, int cols,
                                           int lane) {
    float s = 0.0f;
    int tail = 0;
    if constexpr (VEC) {
        const uint4 *w16 = reinterpret_cast<const uint4 *>(row);
        const float4 *x4 = reinterpret_cast<const float4 *>(x);
        if constexpr (T == TRN_TYPE_F32) { /* 4 weights per 16 bytes */
            const int n = cols / 4;
#pragma unroll 4
            for (int v = lane; v < n; v += kWarp) {
                const uint4 w = __ldcs(w16 + v);
                const float4 a = __ldg(x4 + v);
                s = fmaf(__uint_as_float(w.x), a.x, s);
                s = fmaf(__uint_as_float(w.y), a.y, s);
                s = fmaf(__uint_as_float(w.z), a.z, s);
                s = fmaf(__uint_as_float(w.w), a.w, s);
            }
            tail = 4 * n;
        } else { /* 8 weights per 16 bytes */
            const int n = cols / 8;
#pragma unroll 4
            for (int v = lane; v < n; v += kWarp) {
                const uint4 w = __ldcs(w16 + v);
                const float4 a = __ldg(x4 + 2 * v), b = __ldg(x4 + 2 * v + 1);
                s = fma_pair<T>(w.x, a.x, a.y, s);
                s = fma_pair<T>(w.y, a.z, a.w, s);
                s = fma_pair<T>(w.z, b.x, b.y, s);
                s = fma_pair<T>(w.w, b.z, b.w, s);
            }
            tail = 8 * n;
        }
    }
    for (int e = tail + lane; e < cols; e += kWarp)
        s = fmaf(plain_elem<T>(row, e), __ldg(x + e), s);
    return s;
}

/* Q8_0: lanes 4 k .. 4 k + 3 take block b0 + k of each step, 8 weights each (bytes 2 + 8 part .. of the block). */
__device__ __forceinline__ float dot_q8_0(const uint8_t *__restrict__ row, const float *__restrict__ x, int cols,
                                          int lane) {
    const int nb = cols / TRN_QK8_0, part = lane & 3;
    float s = 0.0f;
#pragma unroll 2
    for (int b0 = 0; b0 < nb; b0 += 8) {
        const int b = b0 + (lane >> 2);
        if (b < nb) {
            const uint8_t *blk = row + (size_t)b * sizeof(trn_block_q8_0);
            const unsigned short *q = reinterpret_cast<const unsigned short *>(blk + 2 + 8 * part);
            const float d = half_to_float(__ldcs(reinterpret_cast<const unsigned short *>(blk)));
            const uint32_t q01 = __ldcs(q) | ((uint32_t)__ldcs(q + 1) << 16);
            const uint32_t q23 = __ldcs(q + 2) | ((uint32_t)__ldcs(q + 3) << 16);
            const float4 a = __ldg(reinterpret_cast<const float4 *>(x + (size_t)b * TRN_QK8_0 + 8 * part));
            const float4 c = __ldg(reinterpret_cast<const float4 *>(x + (size_t)b * TRN_QK8_0 + 8 * part + 4));
            float t = 0.0f;
            t = fmaf((float)(int8_t)(q01 & 0xff), a.x, t);
            t = fmaf((float)(int8_t)((q01 >> 8) & 0xff), a.y, t);
            t = fmaf((float)(int8_t)((q01 >> 16) & 0xff), a.z, t);
            t = fmaf((float)(int8_t)(q01 >> 24), a.w, t);
            t = fmaf((float)(int8_t)(q23 & 0xff), c.x, t);
            t = fmaf((float)(int8_t)((q23 >> 8) & 0xff), c.y, t);
            t = fmaf((float)(int8_t)((q23 >> 16) & 0xff), c.z, t);
            t = fmaf((float)(int8_t)(q23 >> 24), c.w, t);
            s = fmaf(d, t, s);
        }
    }
    return s;
}

/* Q4_K: lanes 8 k .. 8 k + 7 take block b0 + k of each step; lane part p reads code bytes 16 p .. 16 p + 15 =
 * qs[32 jj + i0 + 0..15] (jj = p / 2, i0 = 16 (p % 2)): low nibbles are weights 64 jj + i0 + 0..15 (sub-block
 * 2 jj), high nibbles 64 jj + 32 + i0 + 0..15 (sub-block 2 jj + 1). Weight = (d sc) q - (dmin m), as the CPU. */
__device__ __forceinline__ float dot_q4_k(const uint8_t *__restrict__ row, const float *__restrict__ x, int cols,
                                          int lane) {
    const int nb = cols / TRN_QK_K, part = lane & 7;
    const int j_lo = 2 * (part >> 1), i0 = 16 * (part & 1);
    float s = 0.0f;
    for (int b0 = 0; b0 < nb; b0 += 4) {
        const int b = b0 + (lane >> 3);
        if (b < nb) {
            const uint8_t *blk = row + (size_t)b * sizeof(trn_block_q4_k);
            const uint32_t *w32 = reinterpret_cast<const uint32_t *>(blk);
            const uint32_t dd = __ldcs(w32), s0 = __ldcs(w32 + 1), s1 = __ldcs(w32 + 2), s2 = __ldcs(w32 + 3);
            const uint4 q = __ldcs(reinterpret_cast<const uint4 *>(blk + 16) + part);
            const float d = half_to_float(dd & 0xffffu), dmin = half_to_float(dd >> 16);
            int sc_lo, m_lo, sc_hi, m_hi;
            q4_k_scale_min(s0, s1, s2, j_lo, &sc_lo, &m_lo);
            q4_k_scale_min(s0, s1, s2, j_lo + 1, &sc_hi, &m_hi);
            const float d_lo = mul_rn(d, (float)sc_lo), m1_lo = mul_rn(dmin, (float)m_lo);
            const float d_hi = mul_rn(d, (float)sc_hi), m1_hi = mul_rn(dmin, (float)m_hi);
            const float *x_lo = x + (size_t)b * TRN_QK_K + 32 * j_lo + i0, *x_hi = x_lo + 32;
            const uint32_t words[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
            for (int v = 0; v < 4; v++) {
                const float4 a = __ldg(reinterpret_cast<const float4 *>(x_lo + 4 * v));
                const float4 c = __ldg(reinterpret_cast<const float4 *>(x_hi + 4 * v));
                const float xa[4] = {a.x, a.y, a.z, a.w}, xc[4] = {c.x, c.y, c.z, c.w};
#pragma unroll
                for (int k = 0; k < 4; k++) {
                    const uint32_t byte = (words[v] >> (8 * k)) & 0xffu;
                    s = fmaf(sub_rn(mul_rn(d_lo, (float)(byte & 0x0f)), m1_lo), xa[k], s);
                    s = fmaf(sub_rn(mul_rn(d_hi, (float)(byte >> 4)), m1_hi), xc[k], s);
                }
            }
        }
    }
    return s;
}

/* Q6_K: all 32 lanes on one block; lane (g, i) = (lane / 16, 2 (lane % 16)) takes weights 128 g + 32 k + i + t
 * (k < 4, t < 2): low 4 bits in nibble k / 2 of ql[64 g + 32 (k % 2) + i + t], high 2 bits in bits 2 k of
 * qh[32 g + i + t], scale scales[8 g + 2 k + i / 16]; weight = (d scale) (q - 32), as the CPU. */
__device__ __forceinline__ float dot_q6_k(const uint8_t *__restrict__ row, const float *__restrict__ x, int cols,
                                          int lane) {
    const int nb = cols / TRN_QK_K, g = lane >> 4, i = 2 * (lane & 15);
    float s = 0.0f;
#pragma unroll 2
    for (int b = 0; b < nb; b++) {
        const uint8_t *blk = row + (size_t)b * sizeof(trn_block_q6_k);
        const uint32_t ql_even = __ldcs(reinterpret_cast<const unsigned short *>(blk + 64 * g + i));
        const uint32_t ql_odd = __ldcs(reinterpret_cast<const unsigned short *>(blk + 64 * g + 32 + i));
        const uint32_t qh = __ldcs(reinterpret_cast<const unsigned short *>(blk + 128 + 32 * g + i));
        const float d = half_to_float(__ldcs(reinterpret_cast<const unsigned short *>(blk + 208)));
        const signed char *scales = reinterpret_cast<const signed char *>(blk + 192 + 8 * g + (i >> 4));
        const float *xb = x + (size_t)b * TRN_QK_K + 128 * g + i;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float dsc = mul_rn(d, (float)__ldcs(scales + 2 * k));
            const uint32_t ql = (k & 1) ? ql_odd : ql_even;
            const float2 xv = __ldg(reinterpret_cast<const float2 *>(xb + 32 * k));
            const int q0 = (int)(((ql >> (4 * (k >> 1))) & 0x0f) | (((qh >> (2 * k)) & 3) << 4)) - 32;
            const int q1 = (int)(((ql >> (8 + 4 * (k >> 1))) & 0x0f) | (((qh >> (8 + 2 * k)) & 3) << 4)) - 32;
            s = fmaf(mul_rn(dsc, (float)q0), xv.x, s);
            s = fmaf(mul_rn(dsc, (float)q1), xv.y, s);
        }
    }
    return s;
}

/* W (rows, cols) @ x (cols,) -> y (rows,), one warp per row; blockIdx.y = token t of a batch: x[t] (cols,) ->
 * y[t] (rows,). */
template <trn_type T, bool VEC>
__global__ void __launch_bounds__(kCtaThreads)
    gemv_float_kernel(const uint8_t *__restrict__ w, size_t row_bytes, int64_t rows, int cols,
                      const float *__restrict__ x, float *__restrict__ y) {
    const int lane = threadIdx.x & (kWarp - 1);
    const int64_t r = (int64_t)blockIdx.x * kWarpsPerCta + (threadIdx.x >> 5);
    if (r >= rows) /* whole warps: no shuffle below sees a missing lane */
        return;
    x += (int64_t)blockIdx.y * cols;
    y += (int64_t)blockIdx.y * rows;
    const uint8_t *row = w + (size_t)r * row_bytes;
    float s;
    if constexpr (T == TRN_TYPE_Q8_0)
        s = dot_q8_0(row, x, cols, lane);
    else if constexpr (T == TRN_TYPE_Q4_K)
        s = dot_q4_k(row, x, cols, lane);
    else if constexpr (T == TRN_TYPE_Q6_K)
        s = dot_q6_k(row, x, cols, lane);
    else
        s = dot_plain<T, VEC>(row, x, cols, lane);
    for (int o = kWarp / 2; o > 0; o /= 2)
        s = add_rn(s, __shfl_xor_sync(kFullMask, s, o));
    if (lane == 0)
        y[r] = s;
}

} // namespace

/* ---- launchers ---- */

namespace {

bool aligned(const void *p, uintptr_t n) { return (reinterpret_cast<uintptr_t>(p) & (n - 1)) == 0; }

template <trn_type T, bool VEC>
void launch_gemv(const trn_cuda_matrix *w, const float *x, float *y, int n_rows, cudaStream_t stream) {
    const dim3 grid((unsigned)((w->rows + kWarpsPerCta - 1) / kWarpsPerCta), (unsigned)n_rows);
    gemv_float_kernel<T, VEC><<<grid, kCtaThreads, 0, stream>>>(static_cast<const uint8_t *>(w->qs), w->row_bytes,
                                                                 w->rows, (int)w->cols, x, y);
}

} // namespace

extern "C" int trn_cuda_gemv_float(const trn_cuda_matrix *w, const float *x, float *y, trn_cuda_stream stream) {
    return trn_cuda_gemv_float_rows(w, x, y, 1, stream);
}

extern "C" int trn_cuda_gemv_float_rows(const trn_cuda_matrix *w, const float *x, float *y, int n_rows,
                                        trn_cuda_stream stream) {
    if (!w || !x || !y || !w->qs || n_rows <= 0 || n_rows > TRN_CUDA_MAX_ROWS)
        return cudaErrorInvalidValue;
    if (w->rows == 0)
        return cudaSuccess;
    const trn_type_traits *traits = trn_type_get((uint32_t)w->type);
    if (!traits || traits->is_ternary || w->rows < 0 || w->cols <= 0 || w->cols > INT32_MAX ||
        w->cols % traits->block_size != 0 || w->row_bytes < trn_row_bytes(w->type, w->cols) ||
        (w->rows + kWarpsPerCta - 1) / kWarpsPerCta > INT32_MAX)
        return cudaErrorInvalidValue;
    /* 16-byte loads of plain rows where rows and x allow them; the block types need their natural alignment
     * (Q4_K 16 bytes, Q8_0 / Q6_K 2 bytes: blocks of 34 and 210 bytes) and x 16-byte aligned. */
    const bool x16 = aligned(x, 16) && (n_rows == 1 || w->cols % 4 == 0); /* every token's row of x */
    const bool vec = aligned(w->qs, 16) && w->row_bytes % 16 == 0 && x16;
    const bool blocks_ok = x16 && (w->type == TRN_TYPE_Q4_K ? aligned(w->qs, 16) && w->row_bytes % 16 == 0
                                                                        : aligned(w->qs, 2) && w->row_bytes % 2 == 0);
    switch (w->type) {
    case TRN_TYPE_F32:
        if (!aligned(w->qs, 4) || w->row_bytes % 4 != 0 || !aligned(x, 4))
            return cudaErrorMisalignedAddress;
        vec ? launch_gemv<TRN_TYPE_F32, true>(w, x, y, n_rows, stream)
            : launch_gemv<TRN_TYPE_F32, false>(w, x, y, n_rows, stream);
        break;
    case TRN_TYPE_F16:
    case TRN_TYPE_BF16:
        if (!aligned(w->qs, 2) || w->row_bytes % 2 != 0 || !aligned(x, 4))
            return cudaErrorMisalignedAddress;
        if (w->type == TRN_TYPE_F16)
            vec ? launch_gemv<TRN_TYPE_F16, true>(w, x, y, n_rows, stream)
                : launch_gemv<TRN_TYPE_F16, false>(w, x, y, n_rows, stream);
        else
            vec ? launch_gemv<TRN_TYPE_BF16, true>(w, x, y, n_rows, stream)
                : launch_gemv<TRN_TYPE_BF16, false>(w, x, y, n_rows, stream);
        break;
    case TRN_TYPE_Q8_0:
    case TRN_TYPE_Q4_K:
    case TRN_TYPE_Q6_K:
        if (!blocks_ok)
            return cudaErrorMisalignedAddress;
        if (w->type == TRN_TYPE_Q8_0)
            launch_gemv<TRN_TYPE_Q8_0, false>(w, x, y, n_rows, stream);
        else if (w->type == TRN_TYPE_Q4_K)
            launch_gemv<TRN_TYPE_Q4_K, false>(w, x, y, n_rows, stream);
        else
            launch_gemv<TRN_TYPE_Q6_K, false>(w, x, y, n_rows, stream);
        break;
    default:
        return cudaErrorInvalidValue;
    }
    return (int)cudaGetLastError();
}

extern "C" int trn_cuda_get_row(const trn_cuda_matrix *w, const int32_t *row_index, float *dst,
                                trn_cuda_stream stream) {
    return trn_cuda_get_rows(w, row_index, dst, 1, stream);
}

extern "C" int trn_cuda_get_rows(const trn_cuda_matrix *w, const int32_t *row_index, float *dst, int n_rows,
                                 trn_cuda_stream stream) {
    if (!w || !row_index || !dst || !w->qs || n_rows <= 0 || n_rows > TRN_CUDA_MAX_ROWS)
        return cudaErrorInvalidValue;
    if (const cudaError_t err = trn_dq::check_row_lookup(w); err != cudaSuccess)
        return (int)err;
    if (w->cols == 0)
        return cudaSuccess;
    if ((w->cols + kCtaThreads - 1) / kCtaThreads > INT32_MAX)
        return cudaErrorInvalidValue;
    const dim3 grid((unsigned)((w->cols + kCtaThreads - 1) / kCtaThreads), (unsigned)n_rows);
    get_row_kernel<<<grid, kCtaThreads, 0, stream>>>(w->type, static_cast<const uint8_t *>(w->qs), w->d, w->row_bytes,
                                                     w->rows, w->cols, row_index, dst);
    return (int)cudaGetLastError();
}
