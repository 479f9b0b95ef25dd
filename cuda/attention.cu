/* attention.cu: decode attention on the GPU: one query vector per head against the device KV cache, with grouped
 * query attention. The CPU definition it follows is attention_head_ref in cpu_fallback/ops_ref.c (called per head by
 * the ATTENTION case of cpu_fallback/cpu_backend.c).
 *
 *   q[n_head][hd], K/V caches [n_ctx][n_head_kv * hd] -> out[n_head][hd]
 *   out_h = sum_t softmax_t(q_h . k_t / sqrt(hd)) v_t over t = 0..*pos, with k_t, v_t the slice of KV head
 *   h / (n_head / n_head_kv).
 *
 * Owns: the general kernel (one block per query head) and the split kernel (positions across blocks), and the
 * launcher that picks one (cuda_ops.h); for a prefill batch (trn_cuda_attention_rows) the query-block kernel
 * (a block per KV head and 8 tokens, each K/V tile staged once for all their query heads) or the general kernel over
 * the tokens. Does not own: writing K and V into the cache (the QKV epilogue in
 * gemv_ternary.cu in the fused plan, store_row in elementwise.cu otherwise), RoPE. *pos is read on the device, so
 * the launch configuration depends only on the model and a captured graph serves every token. Neither kernel is
 * bitwise the CPU's: their sums run in other orders, so results agree to float rounding. */
#include <cuda_runtime.h>
#include <math.h>

#include "cuda_ops.h"
#include "device_math.cuh"

#define ATT_THREADS 256
#define ATT_WARPS (ATT_THREADS / 32)
#define ATT_MAX_HEAD_DIM ATT_THREADS /* every output element needs at least one thread in phase 3 */

/* Block-wide max and sum over ATT_THREADS threads; every thread gets the result. `scratch` holds ATT_WARPS + 1
 * floats and is free again when the function returns. */
static __device__ inline float att_block_max(float v, float *scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int off = 16; off > 0; off >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < ATT_WARPS ? scratch[lane] : -INFINITY;
        for (int off = 16; off > 0; off >>= 1)
            v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
        if (lane == 0)
            scratch[ATT_WARPS] = v;
    }
    __syncthreads();
    v = scratch[ATT_WARPS];
    __syncthreads();
    return v;
}

static __device__ inline float att_block_sum(float v, float *scratch) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int off = 16; off > 0; off >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, off);
    if (lane == 0)
        scratch[warp] = v;
    __syncthreads();
    if (warp == 0) {
        v = lane < ATT_WARPS ? scratch[lane] : 0.0f;
        for (int off = 16; off > 0; off >>= 1)
            v += __shfl_xor_sync(0xffffffffu, v, off);
        if (lane == 0)
            scratch[ATT_WARPS] = v;
    }
    __syncthreads();
    v = scratch[ATT_WARPS];
    __syncthreads();
    return v;
}

/* q[hd] (shared) . k[hd] (global), in element order. */
template <bool VEC4> static __device__ inline float att_dot(const float *q, const float *k, int head_dim) {
    float acc = 0.0f;
    if (VEC4) {
        const float4 *k4 = reinterpret_cast<const float4 *>(k);
        const float4 *q4 = reinterpret_cast<const float4 *>(q);
        for (int i = 0; i < head_dim / 4; i++) {
            const float4 a = q4[i], b = k4[i];
            acc = fmaf(a.x, b.x, acc);
            acc = fmaf(a.y, b.y, acc);
            acc = fmaf(a.z, b.z, acc);
            acc = fmaf(a.w, b.w, acc);
        }
    } else {
        for (int i = 0; i < head_dim; i++)
            acc = fmaf(q[i], k[i], acc);
    }
    return acc;
}

/* The general kernel: one block of ATT_THREADS threads per query head, walking the positions in tiles of
 * ATT_THREADS with an online softmax (running max m and running sum l; when a tile raises the max, the accumulated
 * sum and output are rescaled by exp(m_old - m_new)), so shared memory is fixed (a few KB) and any context length
 * works: nothing is sized by n_ctx, which only clamps the position. Per tile:
 *   1. scores: thread i takes position t0 + i: s = (q . k_t) * scale, q from shared memory, k_t read in float4
 *      where head_dim % 4 == 0 and the caches are 16-byte aligned (scalar otherwise; head_dim 8 of stories260K
 *      takes the float4 path, head_dim < 4 or odd the scalar one);
 *   2. block max of the tile, new running max, p_t = exp(s - m) into shared memory, block sum of p;
 *   3. output: the threads form ATT_THREADS / hd groups of hd threads; thread d of group g accumulates
 *      p_t * v_t[d] over the tile's positions g, g + groups, ... (coalesced rows of V).
 * At the end the groups' partial outputs are summed in group order and divided by l. (The CPU normalizes p before
 * the weighted sum and sums in position order: a few ulp relative apart.)
 * Only n_head blocks run, each thread's score reads a whole cached row alone (uncoalesced) and every query head
 * reads its KV head again, so it is slower than the split kernel (cuda/README.md); it stays for any head_dim up to
 * 256 and for the unfused path.
 * grid (n_head, tokens), block (ATT_THREADS). kv_stride = n_head_kv * head_dim floats between cache rows. A prefill
 * batch runs token t of its rows (q and out [tokens][n_head][hd], pos [tokens]) in blockIdx.y: the cache already
 * holds the whole batch's K and V, and token t reads positions up to pos[t] alone (the causal mask). */
template <bool VEC4>
static __global__ void __launch_bounds__(ATT_THREADS)
    attention_decode_kernel(const float *q, const float *k_cache, const float *v_cache, float *out, int group,
                            int head_dim, int kv_stride, int n_ctx, const int32_t *pos) {
    __shared__ __align__(16) float q_s[ATT_MAX_HEAD_DIM];
    __shared__ float p_s[ATT_THREADS];   /* tile probabilities, then the groups' partial outputs */
    __shared__ float red_s[ATT_WARPS + 1];
    const int tid = threadIdx.x;
    const int h = blockIdx.x, kv_head = h / group;
    const int64_t token_floats = (int64_t)gridDim.x * head_dim; /* n_head * head_dim */
    q += blockIdx.y * token_floats;
    out += blockIdx.y * token_floats;
    trn_pdl_wait(); /* q, the caches and pos come from earlier kernels */
    trn_pdl_launch_dependents();
    const int n_pos = min(pos[blockIdx.y] + 1, n_ctx);
    const float *k_head = k_cache + (int64_t)kv_head * head_dim;
    const float *v_head = v_cache + (int64_t)kv_head * head_dim;
    for (int i = tid; i < head_dim; i += ATT_THREADS)
        q_s[i] = q[(int64_t)h * head_dim + i];
    __syncthreads();

    const float scale = 1.0f / sqrtf((float)head_dim);
    const int n_groups = ATT_THREADS / head_dim;
    const int g = tid / head_dim, d = tid - g * head_dim; /* phase-3 role; g >= n_groups: idle there */
    float m = -INFINITY, l = 0.0f, acc = 0.0f;
    for (int t0 = 0; t0 < n_pos; t0 += ATT_THREADS) {
        const int tile = min(ATT_THREADS, n_pos - t0);
        /* 1. score of position t0 + tid */
        float s = -INFINITY;
        if (tid < tile)
            s = att_dot<VEC4>(q_s, k_head + (int64_t)(t0 + tid) * kv_stride, head_dim) * scale;
        /* 2. online softmax update */
        const float m_new = fmaxf(m, att_block_max(s, red_s));
        const float alpha = expf(m - m_new); /* 0 on the first tile (m = -inf) */
        const float p = tid < tile ? expf(s - m_new) : 0.0f;
        p_s[tid] = p;
        l = l * alpha + att_block_sum(p, red_s); /* the sum's barriers also publish p_s */
        m = m_new;
        /* 3. weighted sum of V rows */
        acc *= alpha;
        if (g < n_groups)
            for (int j = g; j < tile; j += n_groups)
                acc = fmaf(p_s[j], v_head[(int64_t)(t0 + j) * kv_stride + d], acc);
        __syncthreads(); /* p_s is rewritten by the next tile */
    }
    /* combine the groups' partial outputs in group order */
    p_s[tid] = g < n_groups ? acc : 0.0f;
    __syncthreads();
    if (tid < head_dim) {
        float o = 0.0f;
        for (int gg = 0; gg < n_groups; gg++)
            o += p_s[gg * head_dim + tid];
        out[(int64_t)h * head_dim + tid] = o / l;
    }
}

/* ---- split kernel ---- */

/* Head_dim 64, up to 8 query heads per KV head, a scratch buffer from the caller. Block (kv, s) takes positions
 * [s SPLIT_POS, (s + 1) SPLIT_POS) of KV head kv (SPLIT_POS 64, or 32 to spread a context over twice the blocks)
 * for all its query heads (blocks past *pos return at once). It stages those K and V rows in shared memory with
 * coalesced 16-byte loads, once for all the heads (K rows padded to 65 floats: a warp reading 32 rows at one column
 * hits 32 banks); warp w takes query head w: lane i scores positions i and i + 32 (with 64), the warp's max m and sum l of p = exp(s - m) by shuffles, and lane i sums p_t v_t for
 * dimensions i and i + 32. Each head's (acc, m, l) goes to the scratch; the last block of a KV head to finish (a
 * ticket from an atomic counter, after a fence) merges the splits: M = max m_s, L = sum l_s e^(m_s - M),
 * out = sum acc_s e^(m_s - M) / L, and sets the counter back to 0 for the next launch. So blocks scale with the
 * context, and each K/V row is read once per KV head. Its per-split sums merged at the end round differently from
 * both the CPU and the general kernel. */

#define SPLIT_POS_MAX 64   /* positions per block: 64 (the default) or 32 (more blocks at a given context) */
#define SPLIT_POS_MIN 32   /* the smallest split: the scratch is sized for it */
#define SPLIT_HD 64        /* the head_dim it serves */
#define SPLIT_MAX_GROUP ATT_WARPS /* query heads per KV head: one warp each */
#define SPLIT_PART (SPLIT_HD + 2) /* floats per (split, head) in the scratch: acc[SPLIT_HD], m, l */
#define SPLIT_COUNTER_BYTES 256   /* the counters' part of the scratch (n_head_kv ints, 64 at most) */

static int split_count(int n_ctx, int split_pos) { return (n_ctx + split_pos - 1) / split_pos; }

static __device__ inline float warp_max(float v) {
    for (int off = 16; off > 0; off >>= 1)
        v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, off));
    return v;
}

static __device__ inline float warp_sum(float v) {
    for (int off = 16; off > 0; off >>= 1)
        v += __shfl_xor_sync(0xffffffffu, v, off);
    return v;
}

/* The lines of pf's ranges, spread over every thread of the grid (blocks past the position too, which have nothing
 * else to do): a few requests per thread for a layer's weights. */
static __device__ void prefetch_ranges(const trn_cuda_l2_prefetch &pf) {
    const unsigned long long threads = (unsigned long long)gridDim.x * gridDim.y * blockDim.x;
    const unsigned long long me = ((unsigned long long)blockIdx.y * gridDim.x + blockIdx.x) * blockDim.x + threadIdx.x;
    for (int r = 0; r < pf.n; r++) {
        const char *base = static_cast<const char *>(pf.ptr[r]);
        const unsigned long long lines = (pf.bytes[r] + 127) / 128;
        for (unsigned long long i = me; i < lines; i += threads)
            trn_prefetch_l2(base + i * 128);
    }
}

/* grid (n_head_kv, n_splits), block (ATT_THREADS); SPLIT_POS positions per block (64 or 32). counters [n_head_kv] (0
 * between launches), part [n_head_kv][n_splits][group][SPLIT_PART]. pf: weights to bring into L2 first (weights: no
 * earlier kernel writes them, so before the PDL wait). */
template <int SPLIT_POS>
static __global__ void __launch_bounds__(ATT_THREADS)
    attention_split_kernel(const float *q, const float *k_cache, const float *v_cache, float *out, int group,
                           int kv_stride, int n_ctx, const int32_t *pos, int *counters, float *part,
                           trn_cuda_l2_prefetch pf) {
    static_assert(SPLIT_POS == 32 || SPLIT_POS == 64, "a lane scores positions lane and lane + 32");
    __shared__ float k_s[SPLIT_POS][SPLIT_HD + 1];
    __shared__ __align__(16) float v_s[SPLIT_POS][SPLIT_HD];
    __shared__ float q_s[SPLIT_MAX_GROUP][SPLIT_HD];
    __shared__ float p_s[SPLIT_MAX_GROUP][SPLIT_POS];
    __shared__ int last_s;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int kv = blockIdx.x, split = blockIdx.y, n_splits = gridDim.y;
    if (pf.n > 0)
        prefetch_ranges(pf);
    trn_pdl_wait(); /* q, the caches and pos come from earlier kernels */
    trn_pdl_launch_dependents();
    const int n_pos = min(*pos + 1, n_ctx), n_active = (n_pos + SPLIT_POS - 1) / SPLIT_POS;
    if (split >= n_active)
        return;
    const int p0 = split * SPLIT_POS, count = min(SPLIT_POS, n_pos - p0);

    /* stage K and V rows p0 .. p0 + count - 1 of this KV head (16 float4 per row), and the group's queries */
    for (int i = tid; i < count * (SPLIT_HD / 4); i += ATT_THREADS) {
        const int r = i / (SPLIT_HD / 4), c = i % (SPLIT_HD / 4);
        const int64_t at = (int64_t)(p0 + r) * kv_stride + (int64_t)kv * SPLIT_HD;
        const float4 kk = reinterpret_cast<const float4 *>(k_cache + at)[c];
        const float4 vv = reinterpret_cast<const float4 *>(v_cache + at)[c];
        k_s[r][4 * c] = kk.x, k_s[r][4 * c + 1] = kk.y, k_s[r][4 * c + 2] = kk.z, k_s[r][4 * c + 3] = kk.w;
        reinterpret_cast<float4 *>(v_s[r])[c] = vv;
    }
    for (int i = tid; i < group * SPLIT_HD; i += ATT_THREADS)
        q_s[i / SPLIT_HD][i % SPLIT_HD] = q[((int64_t)kv * group + i / SPLIT_HD) * SPLIT_HD + i % SPLIT_HD];
    __syncthreads();

    const float scale = 1.0f / sqrtf((float)SPLIT_HD);
    for (int h = warp; h < group; h += ATT_WARPS) {
        float s0 = -INFINITY, s1 = -INFINITY; /* positions lane and lane + 32 of the split */
        if (lane < count)
            s0 = att_dot<false>(q_s[h], k_s[lane], SPLIT_HD) * scale;
        if (SPLIT_POS > 32 && lane + 32 < count)
            s1 = att_dot<false>(q_s[h], k_s[SPLIT_POS > 32 ? lane + 32 : lane], SPLIT_HD) * scale;
        const float m = warp_max(fmaxf(s0, s1)); /* finite: count >= 1 */
        const float e0 = lane < count ? expf(s0 - m) : 0.0f;
        const float e1 = SPLIT_POS > 32 && lane + 32 < count ? expf(s1 - m) : 0.0f;
        const float l = warp_sum(e0 + e1);
        p_s[h][lane] = e0;
        if (SPLIT_POS > 32)
            p_s[h][SPLIT_POS > 32 ? lane + 32 : lane] = e1;
        __syncwarp();
        float a0 = 0.0f, a1 = 0.0f; /* dimensions lane and lane + 32 */
        for (int t = 0; t < count; t++) {
            a0 = fmaf(p_s[h][t], v_s[t][lane], a0);
            a1 = fmaf(p_s[h][t], v_s[t][lane + 32], a1);
        }
        float *dst = part + (((int64_t)kv * n_splits + split) * group + h) * SPLIT_PART;
        dst[lane] = a0;
        dst[lane + 32] = a1;
        if (lane == 0)
            dst[SPLIT_HD] = m, dst[SPLIT_HD + 1] = l;
    }

    /* the last block of this KV head to finish merges the splits */
    __threadfence(); /* every thread's partials are visible device-wide before the block takes its ticket */
    __syncthreads();
    if (tid == 0)
        last_s = atomicAdd(&counters[kv], 1) == n_active - 1;
    __syncthreads();
    if (!last_s)
        return;
    __threadfence();
    for (int h = warp; h < group; h += ATT_WARPS) {
        const float *base = part + ((int64_t)kv * n_splits * group + h) * SPLIT_PART;
        const int64_t split_stride = (int64_t)group * SPLIT_PART;
        float m_all = -INFINITY;
        for (int sp = 0; sp < n_active; sp++)
            m_all = fmaxf(m_all, __ldcg(base + sp * split_stride + SPLIT_HD));
        float l_all = 0.0f, o0 = 0.0f, o1 = 0.0f;
        for (int sp = 0; sp < n_active; sp++) { /* in split order */
            const float *ps = base + sp * split_stride;
            const float f = expf(__ldcg(ps + SPLIT_HD) - m_all);
            l_all = fmaf(__ldcg(ps + SPLIT_HD + 1), f, l_all);
            o0 = fmaf(__ldcg(ps + lane), f, o0);
            o1 = fmaf(__ldcg(ps + lane + 32), f, o1);
        }
        float *o = out + ((int64_t)kv * group + h) * SPLIT_HD;
        o[lane] = o0 / l_all;
        o[lane + 32] = o1 / l_all;
    }
    if (tid == 0)
        counters[kv] = 0; /* for the next launch, which starts after this grid completes */
}

/* ---- query-block kernel (a prefill batch) ---- */

/* Head_dim 64, up to 8 query heads per KV head, over the rows of a batch: block (kv, b) takes tokens
 * 8 b .. 8 b + 7 of the batch (warp w: token 8 b + w, all the KV head's query heads) and walks positions 0..max of
 * their pos[t] in tiles of QB_POS, each tile's K and V rows of KV head kv staged once in shared memory with
 * coalesced 16-byte loads for the 8 x group query rows (the general kernel reads them once per query head and token).
 * Per tile and query row: lane i scores position t0 + i (-inf past the token's own position: the causal mask), the
 * warp's max and sum of p = exp(s - m) by shuffles (the online softmax of the other kernels: earlier sums rescaled
 * by exp(m_old - m_new)), and lane i sums p_t v_t for dimensions i and i + 32. Sums run in another order than the
 * general kernel's and the CPU's: rows agree to float rounding, not bitwise. */
#define QB_TOKENS 8   /* tokens per block: one per warp */
#define QB_POS 32     /* positions per tile: one per lane */

static __global__ void __launch_bounds__(ATT_THREADS)
    attention_prefill_kernel(const float *q, const float *k_cache, const float *v_cache, float *out, int n_head,
                             int group, int kv_stride, int n_ctx, const int32_t *pos, int n_rows) {
    static_assert(ATT_WARPS == QB_TOKENS, "one warp per token of the block");
    __shared__ __align__(16) float q_s[QB_TOKENS][SPLIT_MAX_GROUP][SPLIT_HD];
    __shared__ float k_s[QB_POS][SPLIT_HD + 1]; /* padded: lane i reading row i at one column hits bank (i + d) % 32 */
    __shared__ __align__(16) float v_s[QB_POS][SPLIT_HD];
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5, kv = blockIdx.x;
    const int token0 = blockIdx.y * QB_TOKENS, token = token0 + warp;
    const bool live = token < n_rows;
    /* the block's last position: the largest of its tokens' positions */
    int last = -1;
    for (int i = 0; i < QB_TOKENS && token0 + i < n_rows; i++)
        last = max(last, min(pos[token0 + i], n_ctx - 1));
    const int my_last = live ? min(pos[token], n_ctx - 1) : -1;
    /* the block's query rows: q[token][kv * group + h][d] */
    for (int i = tid; i < QB_TOKENS * group * SPLIT_HD; i += ATT_THREADS) {
        const int t = i / (group * SPLIT_HD), h = (i / SPLIT_HD) % group, d = i % SPLIT_HD;
        q_s[t][h][d] = token0 + t < n_rows ? q[((int64_t)(token0 + t) * n_head + kv * group + h) * SPLIT_HD + d] : 0.0f;
    }
    const float scale = 1.0f / sqrtf((float)SPLIT_HD);
    float m[SPLIT_MAX_GROUP], l[SPLIT_MAX_GROUP], acc0[SPLIT_MAX_GROUP], acc1[SPLIT_MAX_GROUP];
#pragma unroll
    for (int h = 0; h < SPLIT_MAX_GROUP; h++) {
        m[h] = -INFINITY;
        l[h] = acc0[h] = acc1[h] = 0.0f;
    }
    for (int t0 = 0; t0 <= last; t0 += QB_POS) {
        __syncthreads(); /* the previous tile is read (and, the first time, q_s written) */
        for (int i = tid; i < QB_POS * SPLIT_HD / 4; i += ATT_THREADS) { /* 16-byte loads of K and V rows */
            const int j = i / (SPLIT_HD / 4), d = 4 * (i % (SPLIT_HD / 4));
            float4 kf = make_float4(0.0f, 0.0f, 0.0f, 0.0f), vf = kf;
            if (t0 + j <= last) {
                const int64_t at = (int64_t)(t0 + j) * kv_stride + (int64_t)kv * SPLIT_HD + d;
                kf = *reinterpret_cast<const float4 *>(k_cache + at);
                vf = *reinterpret_cast<const float4 *>(v_cache + at);
            }
            k_s[j][d] = kf.x, k_s[j][d + 1] = kf.y, k_s[j][d + 2] = kf.z, k_s[j][d + 3] = kf.w;
            *reinterpret_cast<float4 *>(&v_s[j][d]) = vf;
        }
        __syncthreads();
        if (t0 > my_last) /* this warp's token is done (warp-uniform); its warp still joins the barriers */
            continue;
#pragma unroll
        for (int h = 0; h < SPLIT_MAX_GROUP; h++) {
            if (h >= group)
                break;
            float s = 0.0f;
#pragma unroll 16
            for (int d = 0; d < SPLIT_HD; d++)
                s = fmaf(q_s[warp][h][d], k_s[lane][d], s);
            s = t0 + lane <= my_last ? s * scale : -INFINITY;
            const float m_new = fmaxf(m[h], warp_max(s)); /* finite: position t0 <= my_last is in the tile */
            const float alpha = expf(m[h] - m_new);     /* 0 on the first tile (m = -inf) */
            const float p = expf(s - m_new);            /* 0 past the token's position */
            l[h] = l[h] * alpha + warp_sum(p);
            m[h] = m_new;
            float a0 = acc0[h] * alpha, a1 = acc1[h] * alpha;
#pragma unroll 8
            for (int j = 0; j < QB_POS; j++) {
                const float pj = __shfl_sync(0xffffffffu, p, j);
                a0 = fmaf(pj, v_s[j][lane], a0);
                a1 = fmaf(pj, v_s[j][lane + 32], a1);
            }
            acc0[h] = a0;
            acc1[h] = a1;
        }
    }
    if (!live)
        return;
#pragma unroll
    for (int h = 0; h < SPLIT_MAX_GROUP; h++) {
        if (h >= group)
            break;
        float *o = out + ((int64_t)token * n_head + kv * group + h) * SPLIT_HD;
        o[lane] = acc0[h] / l[h];
        o[lane + 32] = acc1[h] / l[h];
    }
}

static bool split_applies(int n_head, int n_head_kv, int head_dim) {
    return head_dim == SPLIT_HD && n_head % n_head_kv == 0 && n_head / n_head_kv <= SPLIT_MAX_GROUP &&
           n_head_kv * (int)sizeof(int) <= SPLIT_COUNTER_BYTES;
}

extern "C" size_t trn_cuda_attention_scratch_bytes(int n_head, int n_head_kv, int head_dim, int n_ctx) {
    if (n_head <= 0 || n_head_kv <= 0 || n_ctx <= 0 || !split_applies(n_head, n_head_kv, head_dim))
        return 0;
    return SPLIT_COUNTER_BYTES + (size_t)n_head_kv * (size_t)split_count(n_ctx, SPLIT_POS_MIN) *
                                     (size_t)(n_head / n_head_kv) * SPLIT_PART * sizeof(float);
}

extern "C" int trn_cuda_attention_rows(const float *q, const float *k_cache, const float *v_cache, float *out,
                                       int n_head, int n_head_kv, int head_dim, int n_ctx, const int32_t *pos,
                                       int n_rows, int step_kernel, trn_cuda_stream stream) {
    if (n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv != 0 || head_dim <= 0 || head_dim > ATT_MAX_HEAD_DIM ||
        n_ctx <= 0 || n_rows <= 0 || n_rows > TRN_CUDA_MAX_ROWS)
        return (int)cudaErrorInvalidValue;
    const int group = n_head / n_head_kv, kv_stride = n_head_kv * head_dim;
    const bool vec4 = head_dim % 4 == 0 && ((uintptr_t)k_cache & 15) == 0; /* as trn_cuda_attention decides */
    if (!step_kernel && vec4 && ((uintptr_t)v_cache & 15) == 0 && split_applies(n_head, n_head_kv, head_dim)) {
        const dim3 grid((unsigned)n_head_kv, (unsigned)((n_rows + QB_TOKENS - 1) / QB_TOKENS));
        attention_prefill_kernel<<<grid, ATT_THREADS, 0, (cudaStream_t)stream>>>(q, k_cache, v_cache, out, n_head,
                                                                                 group, kv_stride, n_ctx, pos, n_rows);
        return (int)cudaGetLastError();
    }
    const dim3 grid((unsigned)n_head, (unsigned)n_rows);
    if (vec4)
        attention_decode_kernel<true><<<grid, ATT_THREADS, 0, (cudaStream_t)stream>>>(
            q, k_cache, v_cache, out, group, head_dim, kv_stride, n_ctx, pos);
    else
        attention_decode_kernel<false><<<grid, ATT_THREADS, 0, (cudaStream_t)stream>>>(
            q, k_cache, v_cache, out, group, head_dim, kv_stride, n_ctx, pos);
    return (int)cudaGetLastError();
}

extern "C" int trn_cuda_attention(const float *q, const float *k_cache, const float *v_cache, float *out, int n_head,
                                  int n_head_kv, int head_dim, int n_ctx, const int32_t *pos, void *scratch,
                                  int split_positions, int pdl, const trn_cuda_l2_prefetch *prefetch,
                                  trn_cuda_stream stream) {
    if (n_head <= 0 || n_head_kv <= 0 || n_head % n_head_kv != 0 || head_dim <= 0 || head_dim > ATT_MAX_HEAD_DIM ||
        n_ctx <= 0 || (split_positions != 0 && split_positions != 32 && split_positions != 64))
        return (int)cudaErrorInvalidValue;
    const int split_pos = split_positions ? split_positions : SPLIT_POS_MAX;
    const int group = n_head / n_head_kv, kv_stride = n_head_kv * head_dim;
    /* float4 rows: k_t starts at a multiple of head_dim floats from k_cache (q goes through shared memory) */
    const bool vec4 = head_dim % 4 == 0 && ((uintptr_t)k_cache & 15) == 0;
    cudaLaunchAttribute attribute; /* programmatic dependent launch: see device_math.cuh */
    cudaLaunchConfig_t config =
        trn_launch_config(dim3((unsigned)n_head), dim3(ATT_THREADS), 0, (cudaStream_t)stream, pdl, &attribute);
    if (scratch && vec4 && ((uintptr_t)v_cache & 15) == 0 && split_applies(n_head, n_head_kv, head_dim) &&
        split_count(n_ctx, split_pos) <= 65535 /* grid y */) {
        config.gridDim = dim3((unsigned)n_head_kv, (unsigned)split_count(n_ctx, split_pos));
        int *counters = static_cast<int *>(scratch);
        float *part = reinterpret_cast<float *>(static_cast<char *>(scratch) + SPLIT_COUNTER_BYTES);
        trn_cuda_l2_prefetch pf = {};
        if (prefetch)
            pf = *prefetch;
        pf.n = pf.n < 0 ? 0 : pf.n > TRN_CUDA_L2_RANGES ? TRN_CUDA_L2_RANGES : pf.n;
        const cudaError_t err =
            split_pos == 32 ? cudaLaunchKernelEx(&config, attention_split_kernel<32>, q, k_cache, v_cache, out, group,
                                                 kv_stride, n_ctx, pos, counters, part, pf)
                            : cudaLaunchKernelEx(&config, attention_split_kernel<64>, q, k_cache, v_cache, out, group,
                                                 kv_stride, n_ctx, pos, counters, part, pf);
        return (int)(err != cudaSuccess ? err : cudaGetLastError());
    }
    const cudaError_t err =
        vec4 ? cudaLaunchKernelEx(&config, attention_decode_kernel<true>, q, k_cache, v_cache, out, group, head_dim,
                                  kv_stride, n_ctx, pos)
             : cudaLaunchKernelEx(&config, attention_decode_kernel<false>, q, k_cache, v_cache, out, group, head_dim,
                                  kv_stride, n_ctx, pos);
    return (int)(err != cudaSuccess ? err : cudaGetLastError());
}
