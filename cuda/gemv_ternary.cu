/* gemv_ternary.cu: ternary (TQ2_0, TQ1_0) matrix-vector products and the int8 activation quantizer.
 *
 * Owns trn_cuda_quantize_act, trn_cuda_ternary (one launch: up to three matrices, a fused input prologue and output
 * epilogue) and trn_cuda_gemv_ternary (cuda_ops.h). Does not own the split weight layout (made by cuda_backend.cu
 * at load: codes [rows][nb * 64 or 52] bytes, fp16 scales [rows][nb]) or float-weight products (gemv_float.cu).
 * How the kernel meets memory (a warp per row, codes streamed into registers, the int8 activations staged in
 * shared memory) is in cuda/README.md, "The ternary kernel".
 *
 * The math is that of cpu_fallback/ops_ref.c:
 *  - quantize_act: per block of 256, d = max|x| / 127, id = 1 / d (0 if d == 0), q = rint(x * id) (half to even),
 *    sum = sum(q). Every step is one correctly rounded IEEE operation (explicit _rn intrinsics, no contraction),
 *    so the blocks are bitwise the CPU's.
 *  - int8 mode: per block isum = sum(code * q) (dp4a, exact), term = (d_w * d_x) * (float)(isum - sum(q)), and a
 *    row adds its terms in block order, as the CPU loop does: bitwise the CPU result.
 *  - f32 mode (xq == NULL): per block d_w * sum((code - 1) * x); every product is exact but the 256 of a block are
 *    added in a tree rather than the CPU's left-to-right loop, so rows agree with the CPU to float rounding
 *    (per row ~1e-7 of sum |w x|), not bitwise. Block terms are still added in block order. */
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stddef.h>
#include <stdint.h>

#include "cuda_ops.h"
#include "dequant.cuh"
#include "device_math.cuh"
#include "ternary_lane.cuh"

static_assert(sizeof(trn_cuda_q8_block) == 264 && offsetof(trn_cuda_q8_block, q) == 8, "trn_cuda_q8_block layout");

/* ---- device code ---- */

namespace {

constexpr int kWarp = 32;
constexpr unsigned kFullMask = 0xffffffffu;
constexpr int kWarpsPerCta = 8;
constexpr int kCtaThreads = kWarpsPerCta * kWarp;

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

/* ---- TQ1_0 ---- */

/* f32 mode: code word w (word j) of the block whose floats start at x_b (16-byte aligned). */
__device__ __forceinline__ float tq1_word_fsum(uint32_t w, int j, const float *x_b) {
    const tq1_word_map m = tq1_word(j);
    uint32_t e = w & 0x00ff00ffu, o = tq1_odd_bytes(w);
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

/* ---- the two code formats, as policies of the one kernel below ---- */

/* TQ2_0: a step is 8 blocks (512 code bytes), one uint4 per lane: lane = 4 * block + part. */
struct Tq2Format {
    using word = uint4;
    static constexpr int kBlocksPerStep = 8, kLanesPerBlock = 4;
    static constexpr int kCodeBytes = TRN_QK_K / 4;
    __device__ static bool has_word(int) { return true; }
    __device__ static word load(const uint8_t *row_qs, int b, int lane) {
        return __ldcs(reinterpret_cast<const uint4 *>(row_qs + (size_t)b * kCodeBytes) + (lane & 3));
    }
    __device__ static word zero() { return make_uint4(0, 0, 0, 0); }
    __device__ static int isum(word c, const uint8_t *act_b, int lane) { return tq2_lane_isum(c, act_b, lane & 3); }
    __device__ static float fsum(word c, const float *x_b, int lane) { return tq2_lane_fsum(c, x_b, lane & 3); }
};

/* TQ1_0: a step is 2 blocks, a half-warp per block, lane j < 13 of it holding code word j (3 lanes idle). */
struct Tq1Format {
    using word = uint32_t;
    static constexpr int kBlocksPerStep = 2, kLanesPerBlock = 16;
    static constexpr int kCodeBytes = kTq1Bytes;
    __device__ static bool has_word(int lane) { return (lane & 15) < kTq1Bytes / 4; }
    __device__ static word load(const uint8_t *row_qs, int b, int lane) {
        return __ldcs(reinterpret_cast<const uint32_t *>(row_qs + (size_t)b * kCodeBytes) + (lane & 15));
    }
    __device__ static word zero() { return 0; }
    __device__ static int isum(word c, const uint8_t *act_b, int lane) {
        int a[5];
        tq1_lane_acts(act_b, lane & 15, a);
        return tq1_regs_isum(c, a);
    }
    __device__ static float fsum(word c, const float *x_b, int lane) { return tq1_word_fsum(c, lane & 15, x_b); }
};

/* ---- one launch: up to three matrices, an input prologue, an output epilogue ---- */

struct ternary_params {
    const uint8_t *qs[3];     /* codes [rows[m]][row_bytes] */
    const uint16_t *d[3];     /* scales [rows[m]][nb] */
    int64_t rows[3];
    int n_mat;
    int nb;                   /* blocks per row (cols / 256), the same for every matrix */
    size_t row_bytes;
    int rows_per_unit;        /* 2 where the epilogue needs two rows at once (SWIGLU, QKV), else 1 */
    int64_t n_units;          /* (rows of all matrices) / rows_per_unit */
    int input;                /* trn_cuda_input */
    const float *x;
    const trn_cuda_q8_block *xq;
    bool xq_aligned8;
    const float *norm;
    float eps;
    int output;               /* trn_cuda_output */
    float *y, *k_cache, *v_cache;
    const float *rope_cos_sin;
    const int32_t *pos;
    int head_dim;
    /* EMBED_NORM_QUANT: the embedding and where its row goes */
    const uint8_t *embed;
    const uint16_t *embed_d;
    size_t embed_row_bytes;
    int64_t embed_rows;
    int embed_type;           /* trn_type */
    const int32_t *token;
    float *x_row;
    int32_t *history;
    /* the greedy argmax folded into a STORE launch (the LM head) */
    struct argmax_scratch *argmax;
    int32_t *next;
};

/* The folded argmax's device state: the largest trn_cuda_argmax_key so far and the blocks done; the launch's last
 * block reads the key and sets both back to zero. */
struct argmax_scratch {
    unsigned long long key;
    unsigned int blocks_done;
};

/* Virtual row v -> matrix m and its row. SWIGLU interleaves gate and up (v = 2 r + m); otherwise the matrices'
 * rows follow one another. */
__device__ __forceinline__ void map_row(const ternary_params &p, int64_t v, int &m, int64_t &row) {
    if (p.output == TRN_CUDA_OUT_SWIGLU) {
        m = (int)(v & 1);
        row = v >> 1;
        return;
    }
    m = 0;
    row = v;
    if (p.n_mat > 1 && row >= p.rows[0]) {
        row -= p.rows[0];
        m = 1;
        if (p.n_mat > 2 && row >= p.rows[1]) {
            row -= p.rows[1];
            m = 2;
        }
    }
}

/* Codes and scales of load `item` (N steps) of virtual row v; zeros past the row's end. */
template <class F, int N>
__device__ __forceinline__ void load_codes(const ternary_params &p, int64_t v, int item, int lane,
                                           typename F::word (&c)[N], uint16_t (&d)[N]) {
    int m;
    int64_t row;
    map_row(p, v, m, row);
    const uint8_t *row_qs = (m == 0 ? p.qs[0] : m == 1 ? p.qs[1] : p.qs[2]) + (size_t)row * p.row_bytes;
    const uint16_t *row_d = (m == 0 ? p.d[0] : m == 1 ? p.d[1] : p.d[2]) + (size_t)row * p.nb;
#pragma unroll
    for (int s = 0; s < N; s++) {
        const int b = F::kBlocksPerStep * (N * item + s) + lane / F::kLanesPerBlock;
        if (b < p.nb && F::has_word(lane)) {
            c[s] = F::load(row_qs, b, lane);
            d[s] = __ldcs(row_d + b);
        } else {
            c[s] = F::zero();
            d[s] = 0;
        }
    }
}

/* The QUANT and NORM_QUANT prologues: every CTA turns x (256 nb,) into the int8 blocks of the shared-memory layout,
 * RMSNorm first for NORM_QUANT: scale = 1 / sqrt(mean(x^2) + eps), v = (x * scale) * norm, as rmsnorm_ref (the sum
 * of squares in a fixed tree order, the same in every CTA). Then per block, as quantize_act_kernel: warp w takes
 * blocks w, w + 8, ..., lane 8 values. EMBED_NORM_QUANT: x is the token's embedding row, dequantized here as
 * trn_cuda_get_row does (so the same floats), which CTA 0 also writes to x_row, and whose id thread 0 of CTA 0 stores
 * in the history. */
/* The NORM_QUANT weights warp w needs first (block w's, lane's 8), loaded before trn_pdl_wait() (weights: no earlier
 * kernel writes them) so that their latency overlaps the previous launch's tail; used by the lean kernels. */
struct norm_preload {
    float4 w0, w1;
    bool loaded;
};

__device__ __forceinline__ norm_preload preload_norm(const ternary_params &p) {
    norm_preload r = {};
    const int lane = threadIdx.x & (kWarp - 1), warp = threadIdx.x >> 5;
    if ((p.input == TRN_CUDA_IN_NORM_QUANT || p.input == TRN_CUDA_IN_EMBED_NORM_QUANT) && warp < p.nb) {
        const int i0 = warp * TRN_QK_K + 8 * lane;
        r.w0 = *reinterpret_cast<const float4 *>(p.norm + i0);
        r.w1 = *reinterpret_cast<const float4 *>(p.norm + i0 + 4);
        r.loaded = true;
    }
    return r;
}

template <bool PRELOADED = false>
__device__ void quantize_into_shared(const ternary_params &p, uint8_t *act, float *xd, int *xs,
                                     const norm_preload &pre = norm_preload{}) {
    __shared__ float partial[kWarpsPerCta];
    const int lane = threadIdx.x & (kWarp - 1), warp = threadIdx.x >> 5, n = p.nb * TRN_QK_K;
    const bool embed = p.input == TRN_CUDA_IN_EMBED_NORM_QUANT;
    const bool norm = p.input == TRN_CUDA_IN_NORM_QUANT || embed;
    const uint8_t *embed_row = nullptr;
    const uint16_t *embed_d = nullptr;
    if (embed) {
        const int32_t token = *p.token;
        if (token >= 0 && token < p.embed_rows) { /* else NaN, as get_row */
            embed_row = p.embed + (size_t)token * p.embed_row_bytes;
            embed_d = p.embed_d ? p.embed_d + (size_t)token * (size_t)p.nb : nullptr;
        }
        if (blockIdx.x == 0 && threadIdx.x == 0 && p.history)
            p.history[*p.pos] = token;
    }
    auto x_at = [&](int i) {
        if (!embed)
            return p.x[i];
        return embed_row ? trn_dq::dequant_one((trn_type)p.embed_type, embed_row, embed_d, i) : NAN;
    };
    float scale = 1.0f;
    if (norm) {
        float ss = 0.0f;
        for (int i = threadIdx.x; i < n; i += kCtaThreads) {
            const float x = x_at(i);
            ss = add_rn(ss, mul_rn(x, x));
        }
        ss = group_sum<kWarp>(ss);
        if (lane == 0)
            partial[warp] = ss;
        __syncthreads();
        ss = 0.0f;
        for (int w = 0; w < kWarpsPerCta; w++)
            ss = add_rn(ss, partial[w]);
        scale = div_rn(1.0f, __fsqrt_rn(add_rn(div_rn(ss, (float)n), p.eps)));
    }
    for (int b = warp; b < p.nb; b += kWarpsPerCta) {
        const int i0 = b * TRN_QK_K + 8 * lane;
        float v[8];
        if (embed) {
#pragma unroll
            for (int k = 0; k < 8; k++)
                v[k] = x_at(i0 + k);
            if (blockIdx.x == 0) {
                *reinterpret_cast<float4 *>(p.x_row + i0) = make_float4(v[0], v[1], v[2], v[3]);
                *reinterpret_cast<float4 *>(p.x_row + i0 + 4) = make_float4(v[4], v[5], v[6], v[7]);
            }
        } else {
            const float4 x0 = *reinterpret_cast<const float4 *>(p.x + i0);
            const float4 x1 = *reinterpret_cast<const float4 *>(p.x + i0 + 4);
            v[0] = x0.x, v[1] = x0.y, v[2] = x0.z, v[3] = x0.w, v[4] = x1.x, v[5] = x1.y, v[6] = x1.z, v[7] = x1.w;
        }
        if (norm) {
            const bool pre_here = PRELOADED && pre.loaded && b == warp;
            const float4 w0 = pre_here ? pre.w0 : *reinterpret_cast<const float4 *>(p.norm + i0);
            const float4 w1 = pre_here ? pre.w1 : *reinterpret_cast<const float4 *>(p.norm + i0 + 4);
            const float w[8] = {w0.x, w0.y, w0.z, w0.w, w1.x, w1.y, w1.z, w1.w};
#pragma unroll
            for (int k = 0; k < 8; k++)
                v[k] = mul_rn(mul_rn(v[k], scale), w[k]);
        }
        float m = 0.0f;
#pragma unroll
        for (int k = 0; k < 8; k++)
            m = fmaxf(m, fabsf(v[k]));
        for (int o = kWarp / 2; o > 0; o /= 2)
            m = fmaxf(m, __shfl_xor_sync(kFullMask, m, o));
        const float d = div_rn(m, 127.0f);
        const float id = d > 0.0f ? div_rn(1.0f, d) : 0.0f;
        uint32_t packed[2] = {0, 0};
        int sum = 0;
#pragma unroll
        for (int k = 0; k < 8; k++) {
            const int q = rint_to_int(mul_rn(v[k], id));
            sum += q;
            packed[k / 4] |= (uint32_t)(uint8_t)(int8_t)q << (8 * (k % 4));
        }
        *reinterpret_cast<uint2 *>(act + act_offset(b, 8 * lane)) = make_uint2(packed[0], packed[1]);
        sum = group_sum<kWarp>(sum);
        if (lane == 0) {
            xd[b] = d;
            xs[b] = sum;
        }
    }
    __syncthreads();
}

/* Output kind of a kernel: a trn_cuda_output fixed at compile time, or kOutRuntime (p.output read at run time: the
 * f32 mode, which no fused launch uses); STORE | kOutArgmax: STORE with the folded argmax (a kernel of its own, so
 * the plain LM head's row loop carries none of it). */
constexpr int kOutRuntime = -1, kOutArgmax = 16;
__host__ __device__ constexpr int out_base(int out) { return out == kOutRuntime ? kOutRuntime : out & ~kOutArgmax; }
__host__ __device__ constexpr bool out_argmax(int out) { return out != kOutRuntime && (out & kOutArgmax) != 0; }

/* The greedy argmax folded into a STORE launch (p.argmax set; the LM head): each warp keeps the largest
 * trn_cuda_argmax_key of its rows in a shared slot (lane 0 writes it, so no barrier until the end), each CTA then
 * takes its slots' maximum into the scratch's key with one atomicMax, and the CTA that finishes last (a counter, as
 * the split attention's merge) writes the id to *next and zeroes key and counter for the next launch. */
__device__ __forceinline__ unsigned long long *argmax_slots() {
    __shared__ unsigned long long slots[kWarpsPerCta];
    return slots;
}

__device__ __forceinline__ void argmax_begin() {
    if ((threadIdx.x & (kWarp - 1)) == 0)
        argmax_slots()[threadIdx.x >> 5] = 0ull;
}

/* Lane 0 of a warp offers a key (the warp's largest of the rows it just finished). */
__device__ __forceinline__ void argmax_offer(unsigned long long key, int lane) {
    unsigned long long *slot = argmax_slots() + (threadIdx.x >> 5);
    if (lane == 0 && key > *slot)
        *slot = key;
}

__device__ __forceinline__ void argmax_end(const ternary_params &p) {
    __syncthreads();
    if (threadIdx.x != 0)
        return;
    unsigned long long best = 0ull;
    for (int w = 0; w < kWarpsPerCta; w++)
        best = argmax_slots()[w] > best ? argmax_slots()[w] : best;
    if (best)
        atomicMax(&p.argmax->key, best);
    __threadfence(); /* the key before the count: the last CTA must see every CTA's key */
    if (atomicAdd(&p.argmax->blocks_done, 1u) == gridDim.x - 1) {
        __threadfence();
        const unsigned long long key = atomicExch(&p.argmax->key, 0ull);
        atomicExch(&p.argmax->blocks_done, 0u);
        *p.next = (int32_t)~(uint32_t)key;
    }
}

/* The epilogue of one unit (one row, or two for SWIGLU and QKV: acc0 the first row's result, acc the second's).
 * Every lane holds the results; lane 0 (and lane 1 for a pair's second value) writes. */
template <int OUT>
__device__ __forceinline__ void finish_unit(const ternary_params &p, int64_t unit, float acc0, float acc, int lane) {
    switch (OUT == kOutRuntime ? p.output : out_base(OUT)) {
    case TRN_CUDA_OUT_STORE:
        if (lane == 0)
            p.y[unit] = acc;
        if (out_argmax(OUT))
            argmax_offer(trn_cuda_argmax_key(acc, (int)unit), lane);
        break;
    case TRN_CUDA_OUT_ADD:
        if (lane == 0)
            p.y[unit] = add_rn(p.y[unit], acc);
        break;
    case TRN_CUDA_OUT_SWIGLU:
        if (lane == 0)
            p.y[unit] = trn_cuda_silu_mul(acc0, acc);
        break;
    default: { /* QKV: rows 2 unit, 2 unit + 1 are a RoPE pair of q or k, or two values of v */
        int m;
        int64_t row;
        map_row(p, 2 * unit, m, row);
        const int pos = *p.pos;
        float y0 = acc0, y1 = acc;
        if (m < 2) {
            const float *cs = p.rope_cos_sin + (int64_t)pos * p.head_dim + (int)(row % p.head_dim);
            trn_cuda_rope_pair(acc0, acc, cs[0], cs[1], &y0, &y1);
        }
        float *dst = m == 0 ? p.y + row : (m == 1 ? p.k_cache : p.v_cache) + (int64_t)pos * p.rows[1] + row;
        if (lane < 2)
            dst[lane] = lane == 0 ? y0 : y1;
    }
    }
}

/* The classic ternary product: one row at a time per warp. kCtasPerSm is the minimum of __launch_bounds__ (at most
 * 64 registers per thread, so four CTAs = 32 warps fit an SM on sm_61..sm_90) and the grid's cap per SM.
 * Warp w of the grid takes units w, w + 8 * grid, ...; a unit's rows are walked
 * in loads of N steps, the next load's codes in flight while the current one is computed. Codes go from global
 * memory straight into registers and are decoded there: staging them in shared memory would add a store and a load
 * per byte to a product that reads each weight once. Codes are read before trn_pdl_wait() (weights: nothing
 * earlier writes them), activations only after it. */
template <class F, int N, bool INT8> struct Classic {
    static constexpr int kCtasPerSm = 4, kRowsPerWarp = 1;
    static constexpr bool kInt8 = INT8;
    template <int OUT> static __device__ void run(const ternary_params &p);
};

template <class F, int N, bool INT8>
template <int OUT>
__device__ void Classic<F, N, INT8>::run(const ternary_params &p) {
    extern __shared__ __align__(16) uint8_t smem[];
    const int nb = p.nb;
    uint8_t *act = smem;
    float *xd = reinterpret_cast<float *>(smem + (size_t)nb * kActBlock);
    int *xs = reinterpret_cast<int *>(xd + nb);
    const int lane = threadIdx.x & (kWarp - 1);
    const int items_per_row = (nb + F::kBlocksPerStep * N - 1) / (F::kBlocksPerStep * N);
    const int R = p.rows_per_unit;
    const int64_t unit_step = (int64_t)gridDim.x * kWarpsPerCta;
    int64_t unit = (int64_t)blockIdx.x * kWarpsPerCta + (threadIdx.x >> 5);
    int sub = 0, item = 0; /* row sub of the unit, load item of the row */
    typename F::word cur[N], nxt[N];
    uint16_t dcur[N], dnxt[N];
    if (unit < p.n_units)
        load_codes<F, N>(p, unit * R, 0, lane, cur, dcur);
    /* the second load early too where it fits in registers beside the prologue's (TQ2_0 rows up to cols 2048, TQ1_0
     * up to 4096; ptxas for sm_90 spills with more): a QKV or SWIGLU unit is two rows, both then in flight during the
     * prologue; the loop's first iteration then has its next load already */
    constexpr bool kEarly = sizeof(typename F::word) * N <= 16;
    bool next_loaded = false;
    if (kEarly && unit < p.n_units && (items_per_row > 1 || R > 1 || unit + unit_step < p.n_units)) {
        const bool same_unit = items_per_row > 1 || R > 1;
        load_codes<F, N>(p, same_unit ? unit * R + (items_per_row > 1 ? 0 : 1) : (unit + unit_step) * R,
                         items_per_row > 1 ? 1 : 0, lane, nxt, dnxt);
        next_loaded = true;
    }
    trn_pdl_wait();
    trn_pdl_launch_dependents();
    if (INT8) {
        if (p.input == TRN_CUDA_IN_XQ)
            stage_activations(p.xq, nb, p.xq_aligned8, act, xd, xs);
        else
            quantize_into_shared(p, act, xd, xs);
    }
    float acc = 0.0f, acc0 = 0.0f;
    while (unit < p.n_units) { /* warp-uniform */
        int64_t next_unit = unit;
        int next_sub = sub, next_item = item + 1;
        if (next_item == items_per_row) {
            next_item = 0;
            if (++next_sub == R) {
                next_sub = 0;
                next_unit += unit_step;
            }
        }
        if (next_unit < p.n_units && !next_loaded)
            load_codes<F, N>(p, next_unit * R + next_sub, next_item, lane, nxt, dnxt);
        next_loaded = false;
#pragma unroll
        for (int s = 0; s < N; s++) {
            const int first = F::kBlocksPerStep * (N * item + s); /* first block of the step */
            if (first >= nb)
                break;
            const int b = first + lane / F::kLanesPerBlock;
            const bool live = b < nb && F::has_word(lane);
            float term = 0.0f;
            if (INT8) {
                int v = live ? F::isum(cur[s], act + b * kActBlock, lane) : 0;
                v = group_sum<F::kLanesPerBlock>(v);
                if (b < nb)
                    term = mul_rn(mul_rn(half_to_float(dcur[s]), xd[b]), (float)(v - xs[b]));
            } else {
                float v = live ? F::fsum(cur[s], p.x + (size_t)b * TRN_QK_K, lane) : 0.0f;
                v = group_sum<F::kLanesPerBlock>(v);
                if (b < nb)
                    term = mul_rn(half_to_float(dcur[s]), v);
            }
            acc = fold_terms<F::kLanesPerBlock>(acc, term, nb - first);
        }
        if (item == items_per_row - 1) {
            if (sub == R - 1)
                finish_unit<OUT>(p, unit, acc0, acc, lane);
            else
                acc0 = acc;
            acc = 0.0f;
        }
#pragma unroll
        for (int s = 0; s < N; s++) {
            cur[s] = nxt[s];
            dcur[s] = dnxt[s];
        }
        unit = next_unit;
        sub = next_sub;
        item = next_item;
    }
}

/* ---- the lean TQ2_0 kernel: four rows per warp iteration ---- */

/* Four consecutive virtual rows (a group) per warp iteration, one step (8 blocks, 512 code bytes per row) at a time.
 * Lane 4 k + part takes quarter `part` of block 8 s + k in all four rows, as Tq2Format, with its 64 activations of
 * that block in registers (ONE_STEP, rows of at most 8 blocks: loaded once per launch; else once per step and group)
 * and multiplies by tq2_planes_isum. The four rows' lane sums are then reduced across the block's 4 lanes so that
 * lane 4 k + r ends with row r's block sum (reduce_scatter4), the term is formed as the classic kernel forms it, and
 * one fold of 8 shuffles adds the step's terms in block order for all four rows at once (lane r holds row r's
 * result). Epilogue and input kind are compile-time; row offsets are 32-bit (the launcher checks they fit).
 * Serves TQ2_0 in int8 mode where every matrix's rows are a multiple of 4 (a group never straddles two matrices;
 * SWIGLU groups are gate r, up r, gate r + 1, up r + 1); the launcher falls back to Classic elsewhere. Results are
 * bitwise those of Classic: the same integer block sums, the same term expression, the same block order. */
constexpr int kLeanRows = 4;

/* Group g's row j: matrix m and row within it. STORE and ADD launches of a lean kernel have one matrix
 * (lean_serves). */
template <int OUT>
__device__ __forceinline__ void lean_row(const ternary_params &p, int g, int j, int &m, int &row) {
    if (OUT == TRN_CUDA_OUT_SWIGLU) {
        m = j & 1;
        row = 2 * g + (j >> 1);
        return;
    }
    row = kLeanRows * g + j;
    m = 0;
    if (OUT != TRN_CUDA_OUT_QKV)
        return;
    if (row >= (int)p.rows[0]) {
        row -= (int)p.rows[0];
        m = 1;
        if (row >= (int)p.rows[1]) {
            row -= (int)p.rows[1];
            m = 2;
        }
    }
}

/* Codes of group g, step s (the lane's 16 bytes of each row's block b = 8 s + lane / 4) and the scale of row
 * `part`'s block b (zeros past the row's end). */
template <int OUT>
__device__ __forceinline__ void lean_load(const ternary_params &p, int g, int s, int lane, uint4 (&c)[kLeanRows],
                                          uint16_t &d) {
    const int b = 8 * s + (lane >> 2), part = lane & 3;
    if (b >= p.nb) {
#pragma unroll
        for (int j = 0; j < kLeanRows; j++)
            c[j] = make_uint4(0, 0, 0, 0);
        d = 0;
        return;
    }
    const uint32_t row_bytes = (uint32_t)p.row_bytes, at = (uint32_t)b * (TRN_QK_K / 4) + 16u * (uint32_t)part;
    auto code = [](const uint8_t *q) { return __ldcs(reinterpret_cast<const uint4 *>(q)); };
    if (OUT == TRN_CUDA_OUT_SWIGLU) { /* gate 2 g, up 2 g, gate 2 g + 1, up 2 g + 1 */
        const uint32_t off = (uint32_t)(2 * g) * row_bytes + at;
        const uint8_t *gate = p.qs[0] + off, *up = p.qs[1] + off;
        c[0] = code(gate);
        c[1] = code(up);
        c[2] = code(gate + row_bytes);
        c[3] = code(up + row_bytes);
        d = __ldcs((part & 1 ? p.d[1] : p.d[0]) + (uint32_t)(2 * g + (part >> 1)) * (uint32_t)p.nb + (uint32_t)b);
        return;
    }
    int m, row0;
    lean_row<OUT>(p, g, 0, m, row0);
    const uint8_t *q = p.qs[m] + (uint32_t)row0 * row_bytes + at;
#pragma unroll
    for (int j = 0; j < kLeanRows; j++)
        c[j] = code(q + (uint32_t)j * row_bytes);
    d = __ldcs(p.d[m] + (uint32_t)(row0 + part) * (uint32_t)p.nb + (uint32_t)b);
}

/* The lane's activations of step s (block 8 s + lane / 4, quarter lane % 4) and that block's scale and sum. */
__device__ __forceinline__ void lean_acts(const uint8_t *act, const float *xd, const int *xs, int nb, int s, int lane,
                                          int4 (&a)[4], float &bd, int &bs) {
    const int b = 8 * s + (lane >> 2);
    if (b < nb) {
        const uint8_t *base = tq2_lane_acts(act + b * kActBlock, lane & 3);
#pragma unroll
        for (int l = 0; l < 4; l++)
            a[l] = *reinterpret_cast<const int4 *>(base + 32 * l);
        bd = xd[b];
        bs = xs[b];
    } else {
#pragma unroll
        for (int l = 0; l < 4; l++)
            a[l] = make_int4(0, 0, 0, 0);
        bd = 0.0f;
        bs = 0;
    }
}

/* v[j] = a lane's share of row j; returns, in lane 4 k + r, the sum of row r over lanes 4 k .. 4 k + 3 (three
 * shuffles for four rows; integer sums, so the order does not matter). */
__device__ __forceinline__ int reduce_scatter4(const int (&v)[kLeanRows], int lane) {
    const bool hi = lane & 2, lo = lane & 1;
    int keep0 = hi ? v[2] : v[0], keep1 = hi ? v[3] : v[1]; /* rows 2 hi, 2 hi + 1 */
    const int send0 = hi ? v[0] : v[2], send1 = hi ? v[1] : v[3];
    keep0 += __shfl_xor_sync(kFullMask, send0, 2);
    keep1 += __shfl_xor_sync(kFullMask, send1, 2);
    const int keep = lo ? keep1 : keep0, send = lo ? keep0 : keep1; /* row 2 hi + lo */
    return keep + __shfl_xor_sync(kFullMask, send, 1);
}

/* Where a QKV launch's rows go at this step's position (pos is read once per launch, after the PDL wait): the K and
 * V cache rows and the RoPE table's row. Unused, and not read, by the other launch kinds. */
struct qkv_rows {
    float *k, *v;
    const float *cos_sin;
};

template <int OUT> __device__ __forceinline__ qkv_rows qkv_rows_at(const ternary_params &p) {
    qkv_rows r = {};
    if (OUT == TRN_CUDA_OUT_QKV) {
        const uint32_t pos = (uint32_t)*p.pos;
        r.k = p.k_cache + (size_t)pos * (uint32_t)p.rows[1];
        r.v = p.v_cache + (size_t)pos * (uint32_t)p.rows[1];
        r.cos_sin = p.rope_cos_sin + (size_t)pos * (uint32_t)p.head_dim;
    }
    return r;
}

/* The epilogue of group g: lane r < 4 holds row r's result acc (every lane with lane % 4 == r does). */
template <int OUT>
__device__ __forceinline__ void lean_finish(const ternary_params &p, const qkv_rows &qkv, int g, float acc,
                                            int lane) {
    const float other = __shfl_xor_sync(kFullMask, acc, 1); /* the pair partner: lane r ^ 1 */
    if (out_argmax(OUT)) { /* the group's 4 rows: lanes 4 k + r hold row r */
        unsigned long long key = trn_cuda_argmax_key(acc, kLeanRows * g + (lane & 3)), other_key;
        other_key = __shfl_xor_sync(kFullMask, key, 1);
        key = other_key > key ? other_key : key;
        other_key = __shfl_xor_sync(kFullMask, key, 2);
        argmax_offer(other_key > key ? other_key : key, lane);
    }
    if (lane >= kLeanRows)
        return;
    const int v = kLeanRows * g + lane;
    if (out_base(OUT) == TRN_CUDA_OUT_STORE) {
        p.y[v] = acc;
    } else if (OUT == TRN_CUDA_OUT_ADD) {
        p.y[v] = add_rn(p.y[v], acc);
    } else if (OUT == TRN_CUDA_OUT_SWIGLU) { /* lanes 0, 2: gate rows 2 g, 2 g + 1; lanes 1, 3 their up rows */
        if (!(lane & 1))
            p.y[2 * g + (lane >> 1)] = trn_cuda_silu_mul(acc, other);
    } else { /* QKV: rows (0, 1) and (2, 3) of the group are RoPE pairs of q or k, or values of v; a group lies in
                one matrix (rows multiples of 4), so m is the warp's */
        int m, row;
        lean_row<OUT>(p, g, 0, m, row);
        row += lane;
        const float x0 = lane & 1 ? other : acc, x1 = lane & 1 ? acc : other;
        float y0 = x0, y1 = x1;
        if (m < 2) { /* head_dim a power of two (lean_serves): (row & ~1) % head_dim without a division */
            const float2 cs = *reinterpret_cast<const float2 *>(qkv.cos_sin + (uint32_t)(row & (p.head_dim - 2)));
            trn_cuda_rope_pair(x0, x1, cs.x, cs.y, &y0, &y1);
        }
        float *dst = m == 0 ? p.y : m == 1 ? qkv.k : qkv.v;
        dst[(uint32_t)row] = lane & 1 ? y1 : y0;
    }
}

/* The lean kernels' prologue, called once their first codes are in flight: the RMSNorm weights loaded, the PDL wait,
 * then the int8 activations staged (XQ) or computed (QUANT, NORM_QUANT) into shared memory. */
__device__ __forceinline__ void lean_prologue(const ternary_params &p, uint8_t *act, float *xd, int *xs) {
    const norm_preload pre = preload_norm(p);
    trn_pdl_wait();
    trn_pdl_launch_dependents();
    if (p.input == TRN_CUDA_IN_XQ)
        stage_activations(p.xq, p.nb, p.xq_aligned8, act, xd, xs);
    else
        quantize_into_shared<true>(p, act, xd, xs, pre);
}

template <bool ONE_STEP> struct LeanTq2 {
    /* (256, 3): up to 80 registers per thread; three CTAs (24 warps) per SM */
    static constexpr int kCtasPerSm = 3, kRowsPerWarp = kLeanRows;
    static constexpr bool kInt8 = true;
    template <int OUT> static __device__ void run(const ternary_params &p);
};

template <bool ONE_STEP>
template <int OUT>
__device__ void LeanTq2<ONE_STEP>::run(const ternary_params &p) {
    extern __shared__ __align__(16) uint8_t smem[];
    const int nb = p.nb;
    uint8_t *act = smem;
    float *xd = reinterpret_cast<float *>(smem + (size_t)nb * kActBlock);
    int *xs = reinterpret_cast<int *>(xd + nb);
    const int lane = threadIdx.x & (kWarp - 1), part = lane & 3;
    const int steps = ONE_STEP ? 1 : (nb + 7) >> 3;
    const int n_groups = (int)(p.n_units * p.rows_per_unit / kLeanRows);
    const int stride = (int)gridDim.x * kWarpsPerCta;
    int g = (int)blockIdx.x * kWarpsPerCta + (threadIdx.x >> 5), s = 0;
    uint4 cur[kLeanRows], nxt[kLeanRows];
    uint16_t dcur = 0, dnxt = 0;
    if (g < n_groups)
        lean_load<OUT>(p, g, 0, lane, cur, dcur);
    lean_prologue(p, act, xd, xs);
    const qkv_rows qkv = qkv_rows_at<OUT>(p);
    int4 a[4];
    float bd;
    int bs;
    if (ONE_STEP)
        lean_acts(act, xd, xs, nb, 0, lane, a, bd, bs);
    float acc = 0.0f;
    while (g < n_groups) { /* warp-uniform */
        int next_g = g, next_s = s + 1;
        if (next_s == steps) {
            next_s = 0;
            next_g += stride;
        }
        if (next_g < n_groups)
            lean_load<OUT>(p, next_g, next_s, lane, nxt, dnxt);
        if (!ONE_STEP)
            lean_acts(act, xd, xs, nb, s, lane, a, bd, bs);
        int v[kLeanRows];
#pragma unroll
        for (int j = 0; j < kLeanRows; j++)
            v[j] = tq2_planes_isum(cur[j], a);
        const int isum = reduce_scatter4(v, lane); /* row `part`, block 8 s + lane / 4 */
        /* past the row's end dcur, bd, isum and bs are 0: term +0, and acc (never -0: it starts at +0) is unchanged */
        const float term = mul_rn(mul_rn(half_to_float(dcur), bd), (float)(isum - bs));
#pragma unroll
        for (int k = 0; k < 8; k++)
            acc = add_rn(acc, __shfl_sync(kFullMask, term, 4 * k + part));
        if (next_s == 0) {
            lean_finish<OUT>(p, qkv, g, acc, lane);
            acc = 0.0f;
        }
#pragma unroll
        for (int j = 0; j < kLeanRows; j++)
            cur[j] = nxt[j];
        dcur = dnxt;
        g = next_g;
        s = next_s;
    }
}

/* ---- the lean TQ1_0 kernel: four rows per warp iteration, a chunk of up to 8 blocks per load ---- */

/* As LeanTq2, for TQ1_0. A chunk is 4 steps of 2 blocks (8 blocks); ONE_CHUNK serves rows of at most 8 blocks
 * (every Trinity-1.1B launch but the down projection), the other variant longer rows (the down projection's 22
 * blocks: 3 chunks), chunk by chunk. Half-warp h takes block 8 k + 2 s + h of step s of chunk k, lane j = lane % 16
 * < 13 its code word j (lanes 13..15 idle), in all four rows of a group; a chunk's codes of the four rows (4 steps x
 * 4 rows words per lane) are loaded at once, the next chunk's (or next group's) in flight while this one is
 * computed, and the lane's activations of the chunk's steps (5 words each) are in registers: loaded once per
 * launch (ONE_CHUNK), else once per chunk and group. Per step: tq1_regs_isum per row, reduce_scatter4 over the
 * lane's quad then a sum over the half-warp's 4 quads (lane 16 h + 4 i + r ends with row r's block sum), the
 * classic term, and a fold of the step's two blocks in order, chunk after chunk. Bitwise the classic kernel's
 * results: the same block sums, term expression and block order. */
constexpr int kLeanTq1Steps = 4;                      /* steps per chunk */
constexpr int kLeanTq1Chunk = 2 * kLeanTq1Steps;      /* blocks per chunk */

template <int OUT>
__device__ __forceinline__ void lean_tq1_load(const ternary_params &p, int g, int k, int lane,
                                              uint32_t (&c)[kLeanTq1Steps][kLeanRows], uint16_t (&d)[kLeanTq1Steps]) {
    const int h = lane >> 4, j = lane & 15, part = lane & 3;
    const uint32_t row_bytes = (uint32_t)p.row_bytes;
    const uint8_t *rows[kLeanRows];
    const uint16_t *scales;
    uint32_t scale_row;
    if (OUT == TRN_CUDA_OUT_SWIGLU) { /* gate 2 g, up 2 g, gate 2 g + 1, up 2 g + 1 */
#pragma unroll
        for (int i = 0; i < kLeanRows; i++)
            rows[i] = (i & 1 ? p.qs[1] : p.qs[0]) + (uint32_t)(2 * g + (i >> 1)) * row_bytes;
        scales = part & 1 ? p.d[1] : p.d[0];
        scale_row = (uint32_t)(2 * g + (part >> 1));
    } else {
        int m, row0;
        lean_row<OUT>(p, g, 0, m, row0);
        const uint8_t *q = p.qs[m] + (uint32_t)row0 * row_bytes;
#pragma unroll
        for (int i = 0; i < kLeanRows; i++)
            rows[i] = q + (uint32_t)i * row_bytes;
        scales = p.d[m];
        scale_row = (uint32_t)(row0 + part);
    }
    /* the lane's word of block 8 k + h in each row; step s adds 2 s blocks (constant offsets) */
    const int first = kLeanTq1Chunk * k + h;
    const uint32_t at = (uint32_t)first * kTq1Bytes + 4u * (uint32_t)j;
#pragma unroll
    for (int i = 0; i < kLeanRows; i++)
        rows[i] += at;
    const uint16_t *scale = scales + scale_row * (uint32_t)p.nb + (uint32_t)first;
    const bool lane_live = j < kTq1Bytes / 4;
#pragma unroll
    for (int s = 0; s < kLeanTq1Steps; s++) {
        const bool in_row = first + 2 * s < p.nb, live = in_row && lane_live;
#pragma unroll
        for (int i = 0; i < kLeanRows; i++)
            c[s][i] = live ? __ldcs(reinterpret_cast<const uint32_t *>(rows[i] + 2 * s * kTq1Bytes)) : 0u;
        d[s] = in_row ? __ldcs(scale + 2 * s) : (uint16_t)0;
    }
}

/* The lane's activations of chunk k's steps (block 8 k + 2 s + lane / 16, code word lane % 16) and those blocks'
 * scales and sums; zeros past the row's end and in the idle lanes. */
__device__ __forceinline__ void lean_tq1_acts(const uint8_t *act, const float *xd, const int *xs, int nb, int k,
                                              int lane, int (&a)[kLeanTq1Steps][5], float (&bd)[kLeanTq1Steps],
                                              int (&bs)[kLeanTq1Steps]) {
    const int h = lane >> 4, j = lane & 15, first = kLeanTq1Chunk * k + h; /* step s: block first + 2 s */
    const tq1_word_map map = tq1_word(j);
    const uint8_t *base = act + first * kActBlock;
    const bool lane_live = j < kTq1Bytes / 4;
#pragma unroll
    for (int s = 0; s < kLeanTq1Steps; s++) {
        const bool in_row = first + 2 * s < nb, live = in_row && lane_live;
        tq1_lane_acts(base + 2 * s * kActBlock, map, live, a[s]);
        bd[s] = in_row ? xd[first + 2 * s] : 0.0f;
        bs[s] = in_row ? xs[first + 2 * s] : 0;
    }
}

template <bool ONE_CHUNK> struct LeanTq1 {
    /* (256, 2): up to 128 registers per thread; two CTAs (16 warps) per SM */
    static constexpr int kCtasPerSm = 2, kRowsPerWarp = kLeanRows;
    static constexpr bool kInt8 = true;
    template <int OUT> static __device__ void run(const ternary_params &p);
};

template <bool ONE_CHUNK>
template <int OUT>
__device__ void LeanTq1<ONE_CHUNK>::run(const ternary_params &p) {
    extern __shared__ __align__(16) uint8_t smem[];
    const int nb = p.nb;
    uint8_t *act = smem;
    float *xd = reinterpret_cast<float *>(smem + (size_t)nb * kActBlock);
    int *xs = reinterpret_cast<int *>(xd + nb);
    const int lane = threadIdx.x & (kWarp - 1), part = lane & 3;
    const int chunks = ONE_CHUNK ? 1 : (nb + kLeanTq1Chunk - 1) / kLeanTq1Chunk;
    const int n_groups = (int)(p.n_units * p.rows_per_unit / kLeanRows);
    const int stride = (int)gridDim.x * kWarpsPerCta;
    int g = (int)blockIdx.x * kWarpsPerCta + (threadIdx.x >> 5), k = 0;
    uint32_t cur[kLeanTq1Steps][kLeanRows], nxt[kLeanTq1Steps][kLeanRows];
    uint16_t dcur[kLeanTq1Steps], dnxt[kLeanTq1Steps];
    if (g < n_groups)
        lean_tq1_load<OUT>(p, g, 0, lane, cur, dcur);
    lean_prologue(p, act, xd, xs);
    const qkv_rows qkv = qkv_rows_at<OUT>(p);
    int a[kLeanTq1Steps][5];
    float bd[kLeanTq1Steps];
    int bs[kLeanTq1Steps];
    if (ONE_CHUNK)
        lean_tq1_acts(act, xd, xs, nb, 0, lane, a, bd, bs);
    float acc = 0.0f;
    while (g < n_groups) { /* warp-uniform */
        int next_g = g, next_k = k + 1;
        if (next_k == chunks) {
            next_k = 0;
            next_g += stride;
        }
        if (next_g < n_groups)
            lean_tq1_load<OUT>(p, next_g, next_k, lane, nxt, dnxt);
        if (!ONE_CHUNK)
            lean_tq1_acts(act, xd, xs, nb, k, lane, a, bd, bs);
#pragma unroll
        for (int s = 0; s < kLeanTq1Steps; s++) {
            if (kLeanTq1Chunk * k + 2 * s >= nb) /* warp-uniform */
                break;
            int v[kLeanRows];
#pragma unroll
            for (int i = 0; i < kLeanRows; i++)
                v[i] = tq1_regs_isum(cur[s][i], a[s]);
            int isum = reduce_scatter4(v, lane);   /* row `part` over the lane's quad */
            isum += __shfl_xor_sync(kFullMask, isum, 4);
            isum += __shfl_xor_sync(kFullMask, isum, 8); /* over the half-warp: block 8 k + 2 s + h */
            /* past the row's end everything is 0: the term is +0 and leaves acc (never -0) unchanged */
            const float term = mul_rn(mul_rn(half_to_float(dcur[s]), bd[s]), (float)(isum - bs[s]));
            acc = add_rn(acc, __shfl_sync(kFullMask, term, part));      /* block 8 k + 2 s */
            acc = add_rn(acc, __shfl_sync(kFullMask, term, 16 + part)); /* block 8 k + 2 s + 1 */
        }
        if (next_k == 0) {
            lean_finish<OUT>(p, qkv, g, acc, lane);
            acc = 0.0f;
        }
#pragma unroll
        for (int s = 0; s < kLeanTq1Steps; s++) {
#pragma unroll
            for (int i = 0; i < kLeanRows; i++)
                cur[s][i] = nxt[s][i];
            dcur[s] = dnxt[s];
        }
        g = next_g;
        k = next_k;
    }
}

/* ---- the launch kinds: one kernel name each, so that a profile tells them apart ---- */

/* name<K>: the kernel of one launch kind, K the kernel policy (Classic<F, N, INT8>, LeanTq2<ONE_STEP> or
 * LeanTq1<ONE_CHUNK>). */
#define TERNARY_LAUNCH_KIND(name, out)                                                                               \
    template <class K> __global__ void __launch_bounds__(kCtaThreads, K::kCtasPerSm) name(const ternary_params p) {  \
        if (out_argmax(out))                                                                                         \
            argmax_begin();                                                                                          \
        K::template run<out>(p);                                                                                     \
        if (out_argmax(out))                                                                                         \
            argmax_end(p);                                                                                           \
    }
TERNARY_LAUNCH_KIND(ternary_store, TRN_CUDA_OUT_STORE)       /* an unfused product */
TERNARY_LAUNCH_KIND(lm_head, TRN_CUDA_OUT_STORE)             /* NORM_QUANT input, STORE output */
TERNARY_LAUNCH_KIND(lm_head_argmax, TRN_CUDA_OUT_STORE | kOutArgmax) /* the same, with greedy sampling folded in */
TERNARY_LAUNCH_KIND(ternary_residual, TRN_CUDA_OUT_ADD)      /* output and down projections */
TERNARY_LAUNCH_KIND(ternary_swiglu, TRN_CUDA_OUT_SWIGLU)     /* gate and up */
TERNARY_LAUNCH_KIND(ternary_qkv_rope, TRN_CUDA_OUT_QKV)      /* Q, K, V, RoPE, the cache rows */
TERNARY_LAUNCH_KIND(ternary_f32, kOutRuntime)                /* the f32 mode, any output (read at run time) */
#undef TERNARY_LAUNCH_KIND

} // namespace

/* ---- launchers ---- */

namespace {

/* Largest nb whose staged activations fit the 48 KB of shared memory every card gives without opting in:
 * cols up to 38144 (Llama-family FFNs reach 28672). */
constexpr int kMaxBlocksPerRow = (48 * 1024 - kWarpsPerCta * 4) / kActBytesPerBlock;

int sm_count() {
    int device = 0, n = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || n <= 0)
        return 0;
    return n;
}

/* CTAs for `tasks` warp tasks (a unit, or a lean group of rows): one warp per task up to ctas_per_sm resident CTAs
 * per SM, then warps take several tasks. */
int grid_for_tasks(int64_t tasks, int ctas_per_sm) {
    const int64_t wanted = (tasks + kWarpsPerCta - 1) / kWarpsPerCta;
    const int sms = sm_count();
    const int64_t cap = sms > 0 ? (int64_t)sms * ctas_per_sm : wanted;
    return (int)(wanted < cap ? wanted : cap);
}

bool aligned(const void *p, uintptr_t n) { return (reinterpret_cast<uintptr_t>(p) & (n - 1)) == 0; }

using kernel_fn = void (*)(ternary_params);

/* The named kernel of p's launch kind for policy K. */
template <class K> kernel_fn kernel_for(const ternary_params &p) {
    if constexpr (!K::kInt8) {
        return ternary_f32<K>;
    } else {
        switch (p.output) {
        case TRN_CUDA_OUT_STORE:
            return p.argmax ? lm_head_argmax<K> : p.input == TRN_CUDA_IN_NORM_QUANT ? lm_head<K> : ternary_store<K>;
        case TRN_CUDA_OUT_ADD:
            return ternary_residual<K>;
        case TRN_CUDA_OUT_SWIGLU:
            return ternary_swiglu<K>;
        default:
            return ternary_qkv_rope<K>;
        }
    }
}

template <class K> cudaError_t launch(const ternary_params &p, size_t smem, bool pdl, cudaStream_t stream) {
    const int64_t tasks = K::kRowsPerWarp == 1 ? p.n_units : p.n_units * p.rows_per_unit / K::kRowsPerWarp;
    cudaLaunchAttribute attribute;
    cudaLaunchConfig_t config = trn_launch_config(dim3((unsigned)grid_for_tasks(tasks, K::kCtasPerSm)),
                                                  dim3(kCtaThreads), K::kInt8 ? smem : 0, stream, pdl, &attribute);
    const cudaError_t err = cudaLaunchKernelEx(&config, kernel_for<K>(p), p);
    return err != cudaSuccess ? err : cudaGetLastError();
}

/* Whether a lean kernel serves p: int8 mode, TQ2_0 (LeanTq2) or TQ1_0 (LeanTq1), every matrix's rows a multiple
 * of kLeanRows, and its 32-bit row offsets (codes and scales) in range; for QKV a head size that is a power of two
 * and a cos/sin table read in pairs (8-byte aligned); STORE and ADD with one matrix (the backend's launches; the
 * kernel's row map assumes it). */
bool lean_serves(const ternary_params &p, bool tq2, bool int8) {
    if (!int8)
        return false;
    if (p.output == TRN_CUDA_OUT_QKV && ((p.head_dim & (p.head_dim - 1)) != 0 || !aligned(p.rope_cos_sin, 8)))
        return false;
    if ((p.output == TRN_CUDA_OUT_STORE || p.output == TRN_CUDA_OUT_ADD) && p.n_mat != 1)
        return false;
    for (int m = 0; m < p.n_mat; m++)
        if (p.rows[m] % kLeanRows != 0 || (uint64_t)p.rows[m] * p.row_bytes > UINT32_MAX ||
            (uint64_t)p.rows[m] * (uint64_t)p.nb > UINT32_MAX)
            return false;
    return true;
}

/* Steps per load of Classic: TQ2_0 the whole row up to cols 8192 in int8 mode (Trinity-1.1B: cols 2048 -> 1,
 * 5632 -> 3), TQ1_0 up to 16 blocks; f32 mode keeps a quarter less in flight (3 and 4) to stay within 64 registers.
 * A lean kernel where asked for and it serves the launch (LeanTq2's ONE_STEP and LeanTq1's ONE_CHUNK for rows of at
 * most 8 blocks). */
cudaError_t dispatch(const ternary_params &p, bool tq2, bool int8, trn_cuda_ternary_kernel kernel, size_t smem,
                     bool pdl, cudaStream_t s) {
    if (kernel == TRN_CUDA_TERNARY_LEAN && lean_serves(p, tq2, int8)) {
        if (!tq2)
            return p.nb <= kLeanTq1Chunk ? launch<LeanTq1<true>>(p, smem, pdl, s)
                                         : launch<LeanTq1<false>>(p, smem, pdl, s);
        return p.nb <= 8 ? launch<LeanTq2<true>>(p, smem, pdl, s) : launch<LeanTq2<false>>(p, smem, pdl, s);
    }
    if (tq2) {
        const int steps = (p.nb + 7) / 8;
        if (int8)
            return steps <= 1 ? launch<Classic<Tq2Format, 1, true>>(p, smem, pdl, s)
                 : steps <= 2 ? launch<Classic<Tq2Format, 2, true>>(p, smem, pdl, s)
                 : steps <= 3 ? launch<Classic<Tq2Format, 3, true>>(p, smem, pdl, s)
                              : launch<Classic<Tq2Format, 4, true>>(p, smem, pdl, s);
        return steps <= 1 ? launch<Classic<Tq2Format, 1, false>>(p, smem, pdl, s)
             : steps <= 2 ? launch<Classic<Tq2Format, 2, false>>(p, smem, pdl, s)
                          : launch<Classic<Tq2Format, 3, false>>(p, smem, pdl, s);
    }
    const int steps = (p.nb + 1) / 2;
    if (int8)
        return steps <= 1 ? launch<Classic<Tq1Format, 1, true>>(p, smem, pdl, s)
             : steps <= 2 ? launch<Classic<Tq1Format, 2, true>>(p, smem, pdl, s)
             : steps <= 4 ? launch<Classic<Tq1Format, 4, true>>(p, smem, pdl, s)
                          : launch<Classic<Tq1Format, 8, true>>(p, smem, pdl, s);
    return steps <= 1 ? launch<Classic<Tq1Format, 1, false>>(p, smem, pdl, s)
         : steps <= 2 ? launch<Classic<Tq1Format, 2, false>>(p, smem, pdl, s)
                      : launch<Classic<Tq1Format, 4, false>>(p, smem, pdl, s);
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

extern "C" int trn_cuda_ternary(const trn_cuda_ternary_op *op, int pdl, trn_cuda_stream stream) {
    if (!op || op->n_mat < 1 || op->n_mat > 3 || !op->y)
        return cudaErrorInvalidValue;
    const trn_cuda_matrix *w = op->w;
    const bool tq2 = w[0].type == TRN_TYPE_TQ2_0;
    if ((!tq2 && w[0].type != TRN_TYPE_TQ1_0) || w[0].cols <= 0 || w[0].cols % TRN_QK_K != 0 ||
        w[0].cols / TRN_QK_K > kMaxBlocksPerRow)
        return cudaErrorInvalidValue;
    const int nb = (int)(w[0].cols / TRN_QK_K);
    /* 16-byte code loads (TQ2_0) or 4-byte ones (TQ1_0) */
    const uintptr_t code_align = tq2 ? 16 : 4;
    if (w[0].row_bytes < (size_t)nb * (tq2 ? TRN_QK_K / 4 : kTq1Bytes) || w[0].row_bytes % code_align != 0)
        return cudaErrorInvalidValue;
    ternary_params p = {};
    int64_t total_rows = 0;
    for (int m = 0; m < op->n_mat; m++) {
        if (w[m].type != w[0].type || w[m].cols != w[0].cols || w[m].row_bytes != w[0].row_bytes || w[m].rows < 0 ||
            !w[m].qs || !w[m].d)
            return cudaErrorInvalidValue;
        if (!aligned(w[m].qs, code_align) || !aligned(w[m].d, 2))
            return cudaErrorMisalignedAddress;
        p.qs[m] = static_cast<const uint8_t *>(w[m].qs);
        p.d[m] = w[m].d;
        p.rows[m] = w[m].rows;
        total_rows += w[m].rows;
    }
    const bool int8 = op->input != TRN_CUDA_IN_F32;
    switch (op->input) {
    case TRN_CUDA_IN_XQ:
        if (!op->xq)
            return cudaErrorInvalidValue;
        if (!aligned(op->xq, 4))
            return cudaErrorMisalignedAddress;
        break;
    case TRN_CUDA_IN_EMBED_NORM_QUANT:
        if (!op->norm || !op->token || !op->x_row || op->embed.cols != w[0].cols || (op->history && !op->pos))
            return cudaErrorInvalidValue;
        if (const cudaError_t err = trn_dq::check_row_lookup(&op->embed); err != cudaSuccess)
            return (int)err;
        if (!aligned(op->norm, 16) || !aligned(op->x_row, 16))
            return cudaErrorMisalignedAddress;
        break;
    case TRN_CUDA_IN_NORM_QUANT:
        if (!op->norm)
            return cudaErrorInvalidValue;
        if (!aligned(op->norm, 16))
            return cudaErrorMisalignedAddress;
        [[fallthrough]];
    case TRN_CUDA_IN_QUANT:
    case TRN_CUDA_IN_F32:
        if (!op->x)
            return cudaErrorInvalidValue;
        if (!aligned(op->x, 16))
            return cudaErrorMisalignedAddress;
        break;
    default:
        return cudaErrorInvalidValue;
    }
    int rows_per_unit = 1;
    switch (op->output) {
    case TRN_CUDA_OUT_STORE:
    case TRN_CUDA_OUT_ADD:
        break;
    case TRN_CUDA_OUT_SWIGLU:
        if (op->n_mat != 2 || w[0].rows != w[1].rows)
            return cudaErrorInvalidValue;
        rows_per_unit = 2;
        break;
    case TRN_CUDA_OUT_QKV:
        if (op->n_mat != 3 || w[1].rows != w[2].rows || !op->k_cache || !op->v_cache || !op->rope_cos_sin ||
            !op->pos || op->head_dim <= 0 || op->head_dim % 2 != 0 || w[0].rows % op->head_dim != 0 ||
            w[1].rows % op->head_dim != 0)
            return cudaErrorInvalidValue;
        rows_per_unit = 2;
        break;
    default:
        return cudaErrorInvalidValue;
    }
    if (op->argmax) { /* greedy argmax over the rows of a STORE launch in int8 mode; ids are 32-bit */
        if (op->output != TRN_CUDA_OUT_STORE || !int8 || !op->next || total_rows > INT32_MAX)
            return cudaErrorInvalidValue;
        if (!aligned(op->argmax, 8))
            return cudaErrorMisalignedAddress;
    }
    if (total_rows == 0)
        return cudaSuccess;
    p.n_mat = op->n_mat;
    p.nb = nb;
    p.row_bytes = w[0].row_bytes;
    p.rows_per_unit = rows_per_unit;
    p.n_units = total_rows / rows_per_unit;
    p.input = op->input;
    p.x = op->x;
    p.xq = op->xq;
    p.xq_aligned8 = op->xq && aligned(op->xq, 8);
    p.norm = op->norm;
    p.eps = op->eps;
    p.output = op->output;
    p.y = op->y;
    p.k_cache = op->k_cache;
    p.v_cache = op->v_cache;
    p.rope_cos_sin = op->rope_cos_sin;
    p.pos = op->pos;
    p.head_dim = op->head_dim;
    if (op->input == TRN_CUDA_IN_EMBED_NORM_QUANT) {
        p.embed = static_cast<const uint8_t *>(op->embed.qs);
        p.embed_d = op->embed.d;
        p.embed_row_bytes = op->embed.row_bytes;
        p.embed_rows = op->embed.rows;
        p.embed_type = (int)op->embed.type;
        p.token = op->token;
        p.x_row = op->x_row;
        p.history = op->history;
    }
    p.argmax = static_cast<argmax_scratch *>(op->argmax);
    p.next = op->next;
    const size_t smem = int8 ? (size_t)nb * kActBytesPerBlock : 0;
    return (int)dispatch(p, tq2, int8, op->kernel, smem, pdl != 0, reinterpret_cast<cudaStream_t>(stream));
}

extern "C" size_t trn_cuda_argmax_scratch_bytes(void) { return sizeof(argmax_scratch); }

extern "C" int trn_cuda_gemv_ternary(const trn_cuda_matrix *w, const float *x, const trn_cuda_q8_block *xq, float *y,
                                     trn_cuda_stream stream) {
    if (!w || (!x && !xq))
        return cudaErrorInvalidValue;
    trn_cuda_ternary_op op = {};
    op.n_mat = 1;
    op.w[0] = *w;
    op.input = xq ? TRN_CUDA_IN_XQ : TRN_CUDA_IN_F32;
    op.x = x;
    op.xq = xq;
    op.output = TRN_CUDA_OUT_STORE;
    op.y = y;
    return trn_cuda_ternary(&op, 0, stream);
}
