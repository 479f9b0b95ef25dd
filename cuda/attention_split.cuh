/* attention_split.cuh: the device code of the split attention kernel (head_dim 64, up to 8 query heads per KV head),
 * shared by its own kernel (attention.cu, where the design is described) and the persistent kernel (persistent.cu).
 *
 * Owns: the split geometry (SPLIT_*), the block body (attention_split_block) and its parameters. Does not own
 * launches or the choice between the split and the general kernel. */
#ifndef TRN_CUDA_ATTENTION_SPLIT_CUH
#define TRN_CUDA_ATTENTION_SPLIT_CUH

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#define ATT_THREADS 256
#define ATT_WARPS (ATT_THREADS / 32)

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

#define SPLIT_POS 64       /* positions per block */
#define SPLIT_HD 64        /* the head_dim it serves */
#define SPLIT_MAX_GROUP ATT_WARPS /* query heads per KV head: one warp each */
#define SPLIT_PART (SPLIT_HD + 2) /* floats per (split, head) in the scratch: acc[SPLIT_HD], m, l */
#define SPLIT_COUNTER_BYTES 256   /* the counters' part of the scratch (n_head_kv ints, 64 at most) */

static inline int split_count(int n_ctx) { return (n_ctx + SPLIT_POS - 1) / SPLIT_POS; }

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

/* The arguments of one split attention launch (see the file comment of attention.cu). */
struct attention_split_params {
    const float *q, *k_cache, *v_cache;
    float *out;
    int group, kv_stride, n_ctx, n_head_kv, n_splits;
    const int32_t *pos;
    int *counters; /* [n_head_kv] (0 between launches) */
    float *part;   /* [n_head_kv][n_splits][group][SPLIT_PART] */
};

/* Block (kv, split) of a split attention launch, run by one CTA of ATT_THREADS threads after the caller's wait for
 * q, the caches and pos (a kernel of its own, or the persistent kernel calling it for several blocks in turn). */
static __device__ inline void attention_split_block(const attention_split_params &a, int kv, int split) {
    __shared__ float k_s[SPLIT_POS][SPLIT_HD + 1];
    __shared__ __align__(16) float v_s[SPLIT_POS][SPLIT_HD];
    __shared__ float q_s[SPLIT_MAX_GROUP][SPLIT_HD];
    __shared__ float p_s[SPLIT_MAX_GROUP][SPLIT_POS];
    __shared__ int last_s;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    const int group = a.group, kv_stride = a.kv_stride, n_splits = a.n_splits;
    const float *q = a.q, *k_cache = a.k_cache, *v_cache = a.v_cache;
    float *out = a.out, *part = a.part;
    int *counters = a.counters;
    const int n_pos = min(*a.pos + 1, a.n_ctx), n_active = (n_pos + SPLIT_POS - 1) / SPLIT_POS;
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
        if (lane + 32 < count)
            s1 = att_dot<false>(q_s[h], k_s[lane + 32], SPLIT_HD) * scale;
        const float m = warp_max(fmaxf(s0, s1)); /* finite: count >= 1 */
        const float e0 = lane < count ? expf(s0 - m) : 0.0f, e1 = lane + 32 < count ? expf(s1 - m) : 0.0f;
        const float l = warp_sum(e0 + e1);
        p_s[h][lane] = e0;
        p_s[h][lane + 32] = e1;
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


/* The split kernel's arguments; scratch: trn_cuda_attention_scratch_bytes of device memory. */
static inline attention_split_params attention_split_args(const float *q, const float *k_cache, const float *v_cache,
                                                   float *out, int n_head, int n_head_kv, int n_ctx,
                                                   const int32_t *pos, void *scratch) {
    attention_split_params a;
    a.q = q, a.k_cache = k_cache, a.v_cache = v_cache, a.out = out;
    a.group = n_head / n_head_kv;
    a.kv_stride = n_head_kv * SPLIT_HD;
    a.n_ctx = n_ctx;
    a.n_head_kv = n_head_kv;
    a.n_splits = split_count(n_ctx);
    a.pos = pos;
    a.counters = static_cast<int *>(scratch);
    a.part = reinterpret_cast<float *>(static_cast<char *>(scratch) + SPLIT_COUNTER_BYTES);
    return a;
}

static inline bool split_applies(int n_head, int n_head_kv, int head_dim) {
    return head_dim == SPLIT_HD && n_head % n_head_kv == 0 && n_head / n_head_kv <= SPLIT_MAX_GROUP &&
           n_head_kv * (int)sizeof(int) <= SPLIT_COUNTER_BYTES;
}

#endif
