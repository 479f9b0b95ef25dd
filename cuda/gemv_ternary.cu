/* gemv_ternary.cu: ternary (TQ2_0, TQ1_0) matrix-vector products and the int8 activation quantizer.
 *
 * Owns trn_cuda_quantize_act and trn_cuda_gemv_ternary (cuda_ops.h). Does not own the split weight layout (made by
 * cuda_backend.cu at load: codes [rows][nb * 64 or 52] bytes, fp16 scales [rows][nb]) or float-weight products
 * (gemv_float.cu). The math is that of cpu_fallback/ops_ref.c:
 *  - quantize_act: per block of 256, d = max|x| / 127, id = 1 / d (0 if d == 0), q = rint(x * id) (half to even),
 *    sum = sum(q). Every step is one correctly rounded IEEE operation (explicit _rn intrinsics, no contraction),
 *    so the blocks are bitwise the CPU's.
 *  - int8 mode: per block isum = sum(code * q) (dp4a, exact), term = (d_w * d_x) * (float)(isum - sum(q)), and a
 *    row adds its terms in block order, as the CPU loop does: bitwise the CPU result.
 *  - f32 mode (xq == NULL): per block d_w * sum((code - 1) * x); every product is exact but the 256 of a block are
 *    added in a tree rather than the CPU's left-to-right loop, so rows agree with the CPU to float rounding
 *    (per row ~1e-7 of sum |w x|), not bitwise. Block terms are still added in block order.
 *
 * Launch configuration (batch 1 is memory bound: 2-bit weights must stream at HBM speed):
 *  - one warp per row, 8 warps (rows) per CTA of 256 threads, __launch_bounds__(256, 4) (<= 64 registers, so four
 *    CTAs = 32 warps fit an SM on sm_61..sm_90); grid = min(ceil(rows / 8), 4 * SMs), each warp walking rows
 *    row, row + 8 * grid, ... and loading the codes of its next row (or next part of a long row) while it computes
 *    the current one: a load is 0.5 to 2 KB per warp, two in flight once a warp has several rows (LM head).
 *    Register use (ptxas, sm_75 and sm_90): 31 to 64 per thread, no spills.
 *  - int8 mode: the CTA first stages the whole quantized activation vector in shared memory (nb * 328 bytes, read
 *    once per CTA from L2) in a padded layout that makes the 16-byte reads below bank-conflict free; codes stream
 *    from HBM straight into registers (16-byte loads, evict-first), where they are decoded: on sm_75 and older
 *    there is no cp.async, so a staging copy of the codes through shared memory would only add a store and a load.
 *  - TQ2_0: a chunk of 8 blocks (512 bytes) is one uint4 per lane: lane = 4 * block + part, part = the 16-byte
 *    quarter of the block's 64 code bytes (half h = part / 2, column 16 * (part % 2)). Bit plane l of those bytes
 *    holds 16 consecutive weights 128 h + 32 l + 16 (part % 2) + 0..15, whose activations are one 16-byte read.
 *    A load is NCH = min(4, ceil(nb / 8)) chunks (f32 mode: at most 3), the whole row up to cols 8192
 *    (Trinity-1.1B: cols 2048 -> 1 chunk, 5632 -> 3); longer rows take several loads.
 *  - TQ1_0 (52 code bytes = 13 words per block, rows only 4-byte aligned): each half-warp takes one block, lane j
 *    < 13 its word j (3 lanes idle); 2 * NS blocks per load, NS = the power of two >= nb / 2, at most 8 (f32
 *    mode: 4). Base-3 digits are extracted four at a time in 16-bit lanes of 32-bit multiplies (tq1_next_digits).
 *  - quantize_act: one CTA of 256 threads per block of 256 values. */
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stddef.h>
#include <stdint.h>

#include "cuda_ops.h"

static_assert(sizeof(trn_cuda_q8_block) == 264 && offsetof(trn_cuda_q8_block, q) == 8, "trn_cuda_q8_block layout");

/* ---- device code ---- */

namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarpsPerCta = 8;
constexpr int kCtaThreads = kWarpsPerCta * kWarp;
constexpr int kCtasPerSm = 4; /* the minimum of __launch_bounds__ below: grid = 4 CTAs per SM */

/* Int8 activations in shared memory: block b's 256 values at kActBlock * b, values 128..255 after 32 bytes of
 * padding (byte i at act_offset(b, i)), then nb float scales, then nb int sums. In the TQ2_0 kernel a quarter-warp
 * reads 16 bytes at 320 b + 160 h + 32 l + 16 c for two consecutive b, h and c in {0, 1}: 16-byte bank groups
 * (20 b + 10 h + 2 l + c) mod 8, eight different ones, so no bank conflicts. */
constexpr int kActHalf = 160;
constexpr int kActBlock = 2 * kActHalf;
constexpr int kActBytesPerBlock = kActBlock + 8; /* + scale + sum */

__host__ __device__ __forceinline__ int act_offset(int b, int i) {
    return b * kActBlock + (i >> 7) * kActHalf + (i & 127);
}

/* Rounding made explicit (no FMA contraction); the host branches let the device code be emulated on a CPU. */
__host__ __device__ __forceinline__ float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

__host__ __device__ __forceinline__ float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

__host__ __device__ __forceinline__ float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

__host__ __device__ __forceinline__ int rint_to_int(float v) { /* round half to even, as lrintf */
#ifdef __CUDA_ARCH__
    return __float2int_rn(v);
#else
    return (int)nearbyintf(v);
#endif
}

__host__ __device__ __forceinline__ float half_to_float(uint16_t h) {
#ifdef __CUDA_ARCH__
    return __half2float(__ushort_as_half(h));
#else
    return trn_fp16_to_f32(h);
#endif
}

/* c + the dot product of the four signed bytes of a and b. */
__host__ __device__ __forceinline__ int dot4_i8(int a, int b, int c) {
#ifdef __CUDA_ARCH__
    return __dp4a(a, b, c);
#else
    for (int k = 0; k < 4; k++)
        c += (int)(int8_t)(a >> (8 * k)) * (int)(int8_t)(b >> (8 * k));
    return c;
#endif
}

/* ---- activation quantizer ---- */

/* x (n,) -> xq (n / 256,): CTA b quantizes x[256 b .. 256 b + 255], one value per thread. */
__global__ void __launch_bounds__(kCtaThreads) quantize_act_kernel(const float *__restrict__ x,
                                                                   trn_cuda_q8_block *__restrict__ xq) {
    __shared__ float warp_max[kWarpsPerCta];
    __shared__ int warp_sum[kWarpsPerCta];
    const int t = threadIdx.x, lane = t & (kWarp - 1), warp = t >> 5;
    const int64_t b = blockIdx.x;
    const float v = x[b * TRN_QK_K + t];
    float m = fmaxf(0.0f, fabsf(v)); /* fmaxf drops NaNs, as the CPU's loop from 0 does; max is order-free */
    for (int o = kWarp / 2; o > 0; o /= 2)
        m = fmaxf(m, __shfl_xor_sync(kFullMask, m, o));
    if (lane == 0)
        warp_max[warp] = m;
    __syncthreads();
    float amax = 0.0f;
    for (int w = 0; w < kWarpsPerCta; w++)
        amax = fmaxf(amax, warp_max[w]);
    const float d = div_rn(amax, 127.0f);
    const float id = d > 0.0f ? div_rn(1.0f, d) : 0.0f;
    const int q = rint_to_int(mul_rn(v, id));
    xq[b].q[t] = (int8_t)q;
    int s = q;
    for (int o = kWarp / 2; o > 0; o /= 2)
        s += __shfl_xor_sync(kFullMask, s, o);
    if (lane == 0)
        warp_sum[warp] = s;
    __syncthreads();
    if (t == 0) {
        int sum = 0;
        for (int w = 0; w < kWarpsPerCta; w++)
            sum += warp_sum[w];
        xq[b].d = d;
        xq[b].sum = sum;
    }
}

/* ---- shared pieces of the two gemv kernels ---- */

/* All threads of the CTA: xq[0..nb) -> shared memory (layout of act_offset), then __syncthreads(). xq is read with
 * 8-byte loads when it is 8-byte aligned (every block then is: 264 = 8 * 33), else with 4-byte loads. */
__device__ __forceinline__ void stage_activations(const trn_cuda_q8_block *__restrict__ xq, int nb, bool aligned8,
                                                  uint8_t *act, float *xd, int *xs) {
    const uint8_t *src = reinterpret_cast<const uint8_t *>(xq);
    if (aligned8) {
        for (int t = threadIdx.x; t < nb * (TRN_QK_K / 8); t += blockDim.x) {
            const int b = t / (TRN_QK_K / 8), i = 8 * (t % (TRN_QK_K / 8));
            const uint2 v = __ldg(reinterpret_cast<const uint2 *>(src + (size_t)b * sizeof(trn_cuda_q8_block) +
                                                                  offsetof(trn_cuda_q8_block, q) + i));
            *reinterpret_cast<uint2 *>(act + act_offset(b, i)) = v;
        }
    } else {
        for (int t = threadIdx.x; t < nb * (TRN_QK_K / 4); t += blockDim.x) {
            const int b = t / (TRN_QK_K / 4), i = 4 * (t % (TRN_QK_K / 4));
            const uint32_t v = __ldg(reinterpret_cast<const uint32_t *>(src + (size_t)b * sizeof(trn_cuda_q8_block) +
                                                                        offsetof(trn_cuda_q8_block, q) + i));
            *reinterpret_cast<uint32_t *>(act + act_offset(b, i)) = v;
        }
    }
    for (int b = threadIdx.x; b < nb; b += blockDim.x) {
        xd[b] = __ldg(&xq[b].d);
        xs[b] = __ldg(&xq[b].sum);
    }
    __syncthreads();
}

/* Sum over a warp's groups of `width` lanes (xor butterfly: every lane of a group ends with the same sum, the
 * float additions being commutative). */
template <int width> __device__ __forceinline__ int group_sum(int v) {
    for (int o = width / 2; o > 0; o /= 2)
        v += __shfl_xor_sync(kFullMask, v, o);
    return v;
}

template <int width> __device__ __forceinline__ float group_sum(float v) {
    for (int o = width / 2; o > 0; o /= 2)
        v = add_rn(v, __shfl_xor_sync(kFullMask, v, o));
    return v;
}

/* acc + the terms of blocks first..first + n - 1 (n <= 32 / width), block k's term held by lanes width * k..:
 * added one at a time in block order, as the CPU does. Every lane ends with the same acc. */
template <int width> __device__ __forceinline__ float fold_terms(float acc, float term, int n) {
#pragma unroll
    for (int k = 0; k < kWarp / width; k++)
        if (k < n)
            acc = add_rn(acc, __shfl_sync(kFullMask, term, width * k));
    return acc;
}

/* ---- TQ2_0 ---- */

/* A lane's share of block b's integer dot product: its 16 code bytes c (bytes 16 part .. 16 part + 15 of the 64),
 * act_b = the block's activations in shared memory. Byte 32 h + m holds in bits 2 l, 2 l + 1 the code of weight
 * 128 h + 32 l + m; for the lane's bytes m = 16 (part % 2) + 4 i + k (word i, byte k of c). */
__host__ __device__ __forceinline__ int tq2_lane_isum(uint4 c, const uint8_t *act_b, int part) {
    const uint8_t *a = act_b + (part >> 1) * kActHalf + (part & 1) * 16;
    int s = 0;
    for (int l = 0; l < 4; l++) { /* constant trip counts: unrolled without a pragma (also compiled for the host) */
        const int4 v = *reinterpret_cast<const int4 *>(a + 32 * l); /* weights 128 h + 32 l + 16 (part % 2) + 0..15 */
        const uint32_t mask = 0x03030303u;
        s = dot4_i8((int)((c.x >> (2 * l)) & mask), v.x, s);
        s = dot4_i8((int)((c.y >> (2 * l)) & mask), v.y, s);
        s = dot4_i8((int)((c.z >> (2 * l)) & mask), v.z, s);
        s = dot4_i8((int)((c.w >> (2 * l)) & mask), v.w, s);
    }
    return s;
}

/* f32 mode: a lane's share of sum((code - 1) * x) over block b, x_b = x + 256 b (16-byte aligned). */
__device__ __forceinline__ float tq2_lane_fsum(uint4 c, const float *x_b, int part) {
    const float *xp = x_b + (part >> 1) * 128 + (part & 1) * 16;
    const uint32_t words[4] = {c.x, c.y, c.z, c.w};
    float s = 0.0f;
#pragma unroll 1 /* one plane (4 x 16 bytes of x) in flight: the f32 kernels stay within 64 registers */
    for (int l = 0; l < 4; l++)
#pragma unroll
        for (int i = 0; i < 4; i++) {
            const float4 v = __ldg(reinterpret_cast<const float4 *>(xp + 32 * l + 4 * i));
            const uint32_t w = words[i] >> (2 * l);
            s = fmaf((float)(w & 3) - 1.0f, v.x, s); /* products exact: fma or not, the same sum */
            s = fmaf((float)((w >> 8) & 3) - 1.0f, v.y, s);
            s = fmaf((float)((w >> 16) & 3) - 1.0f, v.z, s);
            s = fmaf((float)((w >> 24) & 3) - 1.0f, v.w, s);
        }
    return s;
}

/* Codes and scales of one load of a TQ2_0 row: chunks k = 0..NCH-1 of 8 blocks from block 8 NCH item; the lane's
 * block in chunk k is 8 NCH item + 8 k + lane / 4. Past the row's end: zeros. */
template <int NCH>
__device__ __forceinline__ void tq2_load(const uint8_t *__restrict__ qs, const uint16_t *__restrict__ dw, int64_t row,
                                         int item, int nb, size_t row_bytes, int lane, uint4 (&c)[NCH],
                                         uint16_t (&d)[NCH]) {
    const uint8_t *row_qs = qs + (size_t)row * row_bytes;
#pragma unroll
    for (int k = 0; k < NCH; k++) {
        const int b = 8 * NCH * item + 8 * k + (lane >> 2);
        if (b < nb) {
            c[k] = __ldcs(reinterpret_cast<const uint4 *>(row_qs + (size_t)b * (TRN_QK_K / 4)) + (lane & 3));
            d[k] = __ldcs(dw + (size_t)row * nb + b);
        } else {
            c[k] = make_uint4(0, 0, 0, 0);
            d[k] = 0;
        }
    }
}

/* W (rows, 256 nb) TQ2_0 @ x (256 nb,) -> y (rows,); int8 mode reads xq (nb,), f32 mode x. */
template <int NCH, bool INT8>
__global__ void __launch_bounds__(kCtaThreads, kCtasPerSm)
    gemv_tq2_0_kernel(const uint8_t *__restrict__ qs, const uint16_t *__restrict__ dw, int64_t rows, int nb,
                      size_t row_bytes, const float *__restrict__ x, const trn_cuda_q8_block *__restrict__ xq,
                      bool xq_aligned8, float *__restrict__ y) {
    extern __shared__ __align__(16) uint8_t smem[];
    uint8_t *act = smem;
    float *xd = reinterpret_cast<float *>(smem + (size_t)nb * kActBlock);
    int *xs = reinterpret_cast<int *>(xd + nb);
    const int lane = threadIdx.x & (kWarp - 1), part = lane & 3;
    const int items_per_row = (nb + 8 * NCH - 1) / (8 * NCH);
    const int64_t row_step = (int64_t)gridDim.x * kWarpsPerCta;
    int64_t row = (int64_t)blockIdx.x * kWarpsPerCta + (threadIdx.x >> 5);
    int item = 0;
    uint4 cur[NCH], nxt[NCH] = {};
    uint16_t dcur[NCH], dnxt[NCH] = {};
    if (row < rows) /* the first codes are on their way while the CTA stages the activations */
        tq2_load<NCH>(qs, dw, row, 0, nb, row_bytes, lane, cur, dcur);
    if (INT8)
        stage_activations(xq, nb, xq_aligned8, act, xd, xs);
    float acc = 0.0f;
    while (row < rows) { /* warp-uniform */
        int64_t next_row = row;
        int next_item = item + 1;
        if (next_item == items_per_row) {
            next_item = 0;
            next_row += row_step;
        }
        if (next_row < rows)
            tq2_load<NCH>(qs, dw, next_row, next_item, nb, row_bytes, lane, nxt, dnxt);
#pragma unroll
        for (int k = 0; k < NCH; k++) {
            const int first = 8 * NCH * item + 8 * k; /* first block of the chunk */
            if (first >= nb)
                break;
            const int b = first + (lane >> 2);
            float term = 0.0f;
            if (INT8) {
                int s = b < nb ? tq2_lane_isum(cur[k], act + b * kActBlock, part) : 0;
                s = group_sum<4>(s);
                if (b < nb)
                    term = mul_rn(mul_rn(half_to_float(dcur[k]), xd[b]), (float)(s - xs[b]));
            } else {
                float s = b < nb ? tq2_lane_fsum(cur[k], x + (size_t)b * TRN_QK_K, part) : 0.0f;
                s = group_sum<4>(s);
                if (b < nb)
                    term = mul_rn(half_to_float(dcur[k]), s);
            }
            acc = fold_terms<4>(acc, term, nb - first);
        }
        if (item == items_per_row - 1) {
            if (lane == 0)
                y[row] = acc;
            acc = 0.0f;
        }
#pragma unroll
        for (int k = 0; k < NCH; k++) {
            cur[k] = nxt[k];
            dcur[k] = dnxt[k];
        }
        row = next_row;
        item = next_item;
    }
}

/* ---- TQ1_0 ---- */

/* Where the digits of code word j (bytes 4 j .. 4 j + 3 of qs[48] ++ qh[4]) go: digit n of the word's byte k is
 * weight 4 (base + stride n) + k, for n < digits. qs[0..31]: weight 32 n + m; qs[32..47]: 160 + 16 n + m;
 * qh[0..3]: 240 + 4 n + m (four digits). */
struct tq1_word_map {
    int base, stride, digits;
};

__host__ __device__ __forceinline__ tq1_word_map tq1_word(int j) {
    if (j < 8)
        return {j, 8, 5};
    if (j < 12)
        return {32 + j, 4, 5}; /* (160 + 4 (j - 8)) / 4 */
    return {60, 1, 4};
}

/* Base-3 digits of four bytes at once. A byte q holds its digits as a fraction: digit n is
 * ((q * 3^n mod 256) * 3) >> 8. The bytes are spread over 16-bit lanes (e: bytes 0 and 2, o: bytes 1 and 3);
 * t = 3 * (q * 3^n mod 256) < 768 never leaves its lane, its high byte is digit n and its low byte q * 3^(n+1)
 * mod 256, the next step's input. Returns the four codes of digit n as bytes and advances e, o. */
__host__ __device__ __forceinline__ uint32_t tq1_next_digits(uint32_t &e, uint32_t &o) {
    const uint32_t te = e * 3u, to = o * 3u;
    e = te & 0x00ff00ffu;
    o = to & 0x00ff00ffu;
    return ((te >> 8) & 0x00ff00ffu) | (to & 0xff00ff00u);
}

/* A lane's share of a TQ1_0 block's integer dot product: code word w (word j of the block), act_b = the block's
 * activations in shared memory. */
__host__ __device__ __forceinline__ int tq1_word_isum(uint32_t w, int j, const uint8_t *act_b) {
    const tq1_word_map m = tq1_word(j);
    uint32_t e = w & 0x00ff00ffu, o = (w >> 8) & 0x00ff00ffu;
    int s = 0;
    for (int n = 0; n < 5; n++) {
        if (n < m.digits) {
            const uint32_t codes = tq1_next_digits(e, o);
            const int i = 4 * (m.base + m.stride * n); /* first weight of the four */
            s = dot4_i8((int)codes, *reinterpret_cast<const int *>(act_b + act_offset(0, i)), s);
        }
    }
    return s;
}

/* f32 mode: code word w (word j) of the block whose floats start at x_b (16-byte aligned). */
__device__ __forceinline__ float tq1_word_fsum(uint32_t w, int j, const float *x_b) {
    const tq1_word_map m = tq1_word(j);
    uint32_t e = w & 0x00ff00ffu, o = (w >> 8) & 0x00ff00ffu;
    float s = 0.0f;
#pragma unroll
    for (int n = 0; n < 5; n++) {
        if (n < m.digits) {
            const uint32_t codes = tq1_next_digits(e, o);
            const float4 v = __ldg(reinterpret_cast<const float4 *>(x_b + 4 * (m.base + m.stride * n)));
            s = fmaf((float)(codes & 3) - 1.0f, v.x, s);
            s = fmaf((float)((codes >> 8) & 3) - 1.0f, v.y, s);
            s = fmaf((float)((codes >> 16) & 3) - 1.0f, v.z, s);
            s = fmaf((float)(codes >> 24) - 1.0f, v.w, s);
        }
    }
    return s;
}

constexpr int kTq1Bytes = 52; /* code bytes per block: qs[48] ++ qh[4] */

/* Code words and scales of one load of a TQ1_0 row: steps s = 0..NS-1 of two blocks from block 2 NS item; the
 * lane's block in step s is 2 NS item + 2 s + lane / 16, its word lane % 16 (none for lanes 13..15). */
template <int NS>
__device__ __forceinline__ void tq1_load(const uint8_t *__restrict__ qs, const uint16_t *__restrict__ dw, int64_t row,
                                         int item, int nb, size_t row_bytes, int lane, uint32_t (&c)[NS],
                                         uint16_t (&d)[NS]) {
    const uint8_t *row_qs = qs + (size_t)row * row_bytes;
    const int j = lane & 15;
#pragma unroll
    for (int s = 0; s < NS; s++) {
        const int b = 2 * NS * item + 2 * s + (lane >> 4);
        if (b < nb && j < kTq1Bytes / 4) {
            c[s] = __ldcs(reinterpret_cast<const uint32_t *>(row_qs + (size_t)b * kTq1Bytes) + j);
            d[s] = __ldcs(dw + (size_t)row * nb + b);
        } else {
            c[s] = 0;
            d[s] = 0;
        }
    }
}

/* W (rows, 256 nb) TQ1_0 @ x (256 nb,) -> y (rows,); int8 mode reads xq (nb,), f32 mode x. */
template <int NS, bool INT8>
__global__ void __launch_bounds__(kCtaThreads, kCtasPerSm)
    gemv_tq1_0_kernel(const uint8_t *__restrict__ qs, const uint16_t *__restrict__ dw, int64_t rows, int nb,
                      size_t row_bytes, const float *__restrict__ x, const trn_cuda_q8_block *__restrict__ xq,
                      bool xq_aligned8, float *__restrict__ y) {
    extern __shared__ __align__(16) uint8_t smem[];
    uint8_t *act = smem;
    float *xd = reinterpret_cast<float *>(smem + (size_t)nb * kActBlock);
    int *xs = reinterpret_cast<int *>(xd + nb);
    const int lane = threadIdx.x & (kWarp - 1), j = lane & 15;
    const bool has_word = j < kTq1Bytes / 4;
    const int items_per_row = (nb + 2 * NS - 1) / (2 * NS);
    const int64_t row_step = (int64_t)gridDim.x * kWarpsPerCta;
    int64_t row = (int64_t)blockIdx.x * kWarpsPerCta + (threadIdx.x >> 5);
    int item = 0;
    uint32_t cur[NS], nxt[NS] = {};
    uint16_t dcur[NS], dnxt[NS] = {};
    if (row < rows)
        tq1_load<NS>(qs, dw, row, 0, nb, row_bytes, lane, cur, dcur);
    if (INT8)
        stage_activations(xq, nb, xq_aligned8, act, xd, xs);
    float acc = 0.0f;
    while (row < rows) { /* warp-uniform */
        int64_t next_row = row;
        int next_item = item + 1;
        if (next_item == items_per_row) {
            next_item = 0;
            next_row += row_step;
        }
        if (next_row < rows)
            tq1_load<NS>(qs, dw, next_row, next_item, nb, row_bytes, lane, nxt, dnxt);
#pragma unroll
        for (int s = 0; s < NS; s++) {
            const int first = 2 * NS * item + 2 * s;
            if (first >= nb)
                break;
            const int b = first + (lane >> 4);
            const bool live = b < nb && has_word;
            float term = 0.0f;
            if (INT8) {
                int v = live ? tq1_word_isum(cur[s], j, act + b * kActBlock) : 0;
                v = group_sum<16>(v);
                if (b < nb)
                    term = mul_rn(mul_rn(half_to_float(dcur[s]), xd[b]), (float)(v - xs[b]));
            } else {
                float v = live ? tq1_word_fsum(cur[s], j, x + (size_t)b * TRN_QK_K) : 0.0f;
                v = group_sum<16>(v);
                if (b < nb)
                    term = mul_rn(half_to_float(dcur[s]), v);
            }
            acc = fold_terms<16>(acc, term, nb - first);
        }
        if (item == items_per_row - 1) {
            if (lane == 0)
                y[row] = acc;
            acc = 0.0f;
        }
#pragma unroll
        for (int s = 0; s < NS; s++) {
            cur[s] = nxt[s];
            dcur[s] = dnxt[s];
        }
        row = next_row;
        item = next_item;
    }
}

} // namespace

/* ---- launchers ---- */

namespace {

/* Largest nb whose staged activations fit the 48 KB of shared memory every card gives without opting in:
 * cols up to 38144 (Llama-family FFNs reach 28672). */
constexpr int kMaxBlocksPerRow = (48 * 1024) / kActBytesPerBlock;

int sm_count() {
    int device = 0, n = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || n <= 0)
        return 0;
    return n;
}

/* CTAs for `rows` rows: one warp per row up to four resident CTAs per SM, then warps take several rows. */
int grid_for_rows(int64_t rows) {
    const int64_t wanted = (rows + kWarpsPerCta - 1) / kWarpsPerCta;
    const int sms = sm_count();
    const int64_t cap = sms > 0 ? (int64_t)sms * kCtasPerSm : wanted;
    return (int)(wanted < cap ? wanted : cap);
}

bool aligned(const void *p, uintptr_t n) { return (reinterpret_cast<uintptr_t>(p) & (n - 1)) == 0; }

template <int NCH, bool INT8>
void launch_tq2(int grid, size_t smem, cudaStream_t stream, const trn_cuda_matrix *w, int nb, const float *x,
                const trn_cuda_q8_block *xq, float *y) {
    gemv_tq2_0_kernel<NCH, INT8><<<grid, kCtaThreads, smem, stream>>>(
        static_cast<const uint8_t *>(w->qs), w->d, w->rows, nb, w->row_bytes, x, xq, INT8 && aligned(xq, 8), y);
}

template <int NS, bool INT8>
void launch_tq1(int grid, size_t smem, cudaStream_t stream, const trn_cuda_matrix *w, int nb, const float *x,
                const trn_cuda_q8_block *xq, float *y) {
    gemv_tq1_0_kernel<NS, INT8><<<grid, kCtaThreads, smem, stream>>>(
        static_cast<const uint8_t *>(w->qs), w->d, w->rows, nb, w->row_bytes, x, xq, INT8 && aligned(xq, 8), y);
}

} // namespace

extern "C" int trn_cuda_quantize_act(const float *x, trn_cuda_q8_block *xq, int64_t n, trn_cuda_stream stream) {
    if (n == 0)
        return cudaSuccess;
    if (n < 0 || n % TRN_QK_K != 0 || !x || !xq)
        return cudaErrorInvalidValue;
    if (!aligned(xq, 4))
        return cudaErrorMisalignedAddress;
    quantize_act_kernel<<<(unsigned)(n / TRN_QK_K), kCtaThreads, 0, stream>>>(x, xq);
    return (int)cudaGetLastError();
}

extern "C" int trn_cuda_gemv_ternary(const trn_cuda_matrix *w, const float *x, const trn_cuda_q8_block *xq, float *y,
                                     trn_cuda_stream stream) {
    if (!w || !y || !w->qs || !w->d || (!x && !xq))
        return cudaErrorInvalidValue;
    if (w->rows == 0)
        return cudaSuccess;
    const bool tq2 = w->type == TRN_TYPE_TQ2_0;
    if ((!tq2 && w->type != TRN_TYPE_TQ1_0) || w->rows < 0 || w->cols <= 0 || w->cols % TRN_QK_K != 0 ||
        w->cols / TRN_QK_K > kMaxBlocksPerRow)
        return cudaErrorInvalidValue;
    const int nb = (int)(w->cols / TRN_QK_K);
    const size_t code_bytes = (size_t)nb * (tq2 ? TRN_QK_K / 4 : kTq1Bytes);
    if (w->row_bytes < code_bytes)
        return cudaErrorInvalidValue;
    /* 16-byte code loads (TQ2_0) or 4-byte ones (TQ1_0), 16-byte float reads in f32 mode, 4-byte int8 blocks */
    const uintptr_t code_align = tq2 ? 16 : 4;
    if (!aligned(w->qs, code_align) || w->row_bytes % code_align != 0 || !aligned(w->d, 2) ||
        (xq ? !aligned(xq, 4) : !aligned(x, 16)))
        return cudaErrorMisalignedAddress;
    const size_t smem = xq ? (size_t)nb * kActBytesPerBlock : 0;
    const int grid = grid_for_rows(w->rows);
    /* Blocks per load: the whole row up to cols 8192 (TQ2_0) or 4096 (TQ1_0) in int8 mode; f32 mode keeps a
     * quarter less in flight (3 chunks, 4 steps) to stay within 64 registers without spilling. */
    if (tq2) {
        const int chunks = (nb + 7) / 8;
        if (xq) {
            switch (chunks) {
            case 1: launch_tq2<1, true>(grid, smem, stream, w, nb, x, xq, y); break;
            case 2: launch_tq2<2, true>(grid, smem, stream, w, nb, x, xq, y); break;
            case 3: launch_tq2<3, true>(grid, smem, stream, w, nb, x, xq, y); break;
            default: launch_tq2<4, true>(grid, smem, stream, w, nb, x, xq, y); break;
            }
        } else {
            switch (chunks) {
            case 1: launch_tq2<1, false>(grid, 0, stream, w, nb, x, xq, y); break;
            case 2: launch_tq2<2, false>(grid, 0, stream, w, nb, x, xq, y); break;
            default: launch_tq2<3, false>(grid, 0, stream, w, nb, x, xq, y); break;
            }
        }
    } else {
        const int steps = (nb + 1) / 2; /* two blocks per step */
        if (steps <= 1)
            xq ? launch_tq1<1, true>(grid, smem, stream, w, nb, x, xq, y)
               : launch_tq1<1, false>(grid, 0, stream, w, nb, x, xq, y);
        else if (steps <= 2)
            xq ? launch_tq1<2, true>(grid, smem, stream, w, nb, x, xq, y)
               : launch_tq1<2, false>(grid, 0, stream, w, nb, x, xq, y);
        else if (steps <= 4 || !xq)
            xq ? launch_tq1<4, true>(grid, smem, stream, w, nb, x, xq, y)
               : launch_tq1<4, false>(grid, 0, stream, w, nb, x, xq, y);
        else
            launch_tq1<8, true>(grid, smem, stream, w, nb, x, xq, y);
    }
    return (int)cudaGetLastError();
}
