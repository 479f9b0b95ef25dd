/* sample.cu: choosing the next token on the GPU with the rules and the random draw of host/sampler.h, so that a
 * captured CUDA Graph samples without a host round trip and, for the same logits, picks the CPU's token.
 *
 *   logits[n_vocab], history[0..*pos], params -> *next
 *
 * Owns: the sampler kernel, its scratch layout, and the per-element math it shares with the host (trn_cuda_uniform,
 * trn_cuda_penalize, trn_cuda_exp_prob; trn_cuda_desc_key is device_math.cuh's). Does not own: the sampling parameters (host/sampler.h,
 * set at prepare), the token history (a state buffer written by store_row). The steps (candidate lists A-D) and
 * how far the result agrees with the CPU's are in cuda/README.md, "Sampling on the device".
 * Build without --use_fast_math: it would replace expf (the divisions use __fdiv_rn and survive it). */
#include <cuda_runtime.h>
#include <limits.h>
#include <math.h>

#include "cuda_ops.h"
#include "device_math.cuh"

#define SAMPLE_THREADS 1024
#define SAMPLE_WARPS (SAMPLE_THREADS / 32)
#define SAMPLE_CAP 1024 /* largest small candidate list: one candidate per thread, bitonic sort in shared memory */
#define SAMPLE_RADIX 256
#define SAMPLE_FULL_MASK 0xffffffffu

static_assert(SAMPLE_CAP == SAMPLE_THREADS, "the small path gives each thread one candidate");
static_assert(SAMPLE_WARPS == 32, "warp 0 reduces one value per warp");

/* ---- per-element math, shared with the host ---- */

/* The uniform draw in [0, 1) for (seed, pos): the arithmetic of trn_sampler_uniform (host/sampler.c), a splitmix64
 * finalizer of seed + golden * (pos + 1), keeping 24 bits so the float is exact. */
static __host__ __device__ inline float trn_cuda_uniform(uint64_t seed, int pos) {
    uint64_t z = seed + 0x9E3779B97F4A7C15ull * (uint64_t)(pos + 1);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return (float)(z >> 40) * (1.0f / 16777216.0f);
}

/* The CTRL repetition penalty of one logit: positive divided, otherwise multiplied. */
static __host__ __device__ inline float trn_cuda_penalize(float v, float penalty) {
#ifdef __CUDA_ARCH__
    return v > 0.0f ? __fdiv_rn(v, penalty) : __fmul_rn(v, penalty);
#else
    return v > 0.0f ? v / penalty : v * penalty;
#endif
}

static __host__ __device__ inline float trn_cuda_div(float v, float by) {
#ifdef __CUDA_ARCH__
    return __fdiv_rn(v, by);
#else
    return v / by;
#endif
}

/* A small-list probability exp(x), evaluated in double and rounded once to float: correctly rounded but for
 * arguments within a double ulp of a rounding tie, so it equals glibc's expf (< 0.502 ulp), which the CPU sampler
 * uses, for all but about 6e-4 of arguments (measured over 5e7 arguments in [-40, 0]); CUDA's float expf
 * (<= 2 ulp) would differ more often. Large lists use expf: 32000 double exponentials are slow on cards with
 * 1/32-rate FP64 (sm_61, sm_75 consumer parts). */
static __host__ __device__ inline float trn_cuda_exp_prob(float x) { return (float)exp((double)x); }

/* Ascending order of this 64-bit key = the CPU's candidate order: logit descending, then id ascending. */
static __host__ __device__ inline unsigned long long trn_cuda_sort_key(uint32_t desc_key, int id) {
    return ((unsigned long long)(~desc_key) << 32) | (uint32_t)id;
}

/* ---- scratch: [n_vocab] arrays, each starting on a 256-byte boundary ---- */

#define SAMPLE_N_ARRAYS 7

static __host__ __device__ inline size_t sample_array_bytes(int n) { return ((size_t)n * 4 + 255) & ~(size_t)255; }

typedef struct {
    float *work;       /* penalized, temperature-scaled logits */
    uint32_t *flag;    /* penalty: token seen in this call's history */
    float *prob;       /* large path: candidate probabilities in candidate order */
    uint32_t *keys[2]; /* full sort: ping-pong keys */
    int32_t *ids[2];   /* full sort: ping-pong ids; the sorted ids end in ids[0] */
} sample_layout;

static __device__ inline sample_layout sample_layout_of(void *scratch, int n) {
    uint8_t *p = static_cast<uint8_t *>(scratch);
    const size_t a = sample_array_bytes(n);
    sample_layout l;
    l.work = reinterpret_cast<float *>(p);
    l.flag = reinterpret_cast<uint32_t *>(p + a);
    l.prob = reinterpret_cast<float *>(p + 2 * a);
    l.keys[0] = reinterpret_cast<uint32_t *>(p + 3 * a);
    l.keys[1] = reinterpret_cast<uint32_t *>(p + 4 * a);
    l.ids[0] = reinterpret_cast<int32_t *>(p + 5 * a);
    l.ids[1] = reinterpret_cast<int32_t *>(p + 6 * a);
    return l;
}

/* ---- shared memory ---- */

typedef struct {
    unsigned long long skey[SAMPLE_CAP];      /* small list: sort keys (id in the low 32 bits) */
    float prob[SAMPLE_CAP];                   /* small list: probabilities */
    double cum[SAMPLE_CAP];                   /* small list: cumulative sums, the CPU's sequence */
    unsigned short wcount[SAMPLE_WARPS][SAMPLE_RADIX]; /* full sort: per-warp digit counts, then offsets */
    unsigned int hist[SAMPLE_RADIX];          /* radix histograms */
    unsigned int base[SAMPLE_RADIX];          /* full sort: where each digit's next element goes */
    double red_d[SAMPLE_WARPS];
    float red_f[SAMPLE_WARPS];
    int red_i[SAMPLE_WARPS];
    double total;
    float max_value;
    int argmax_id;
    unsigned int sel_digit, sel_above;
    int gt_count, eq_seen, eq_tile;
    int seq_cut;
    int first_cut, first_tok;
    double cut_cum;
} sample_shared;

/* ---- block primitives (every thread of the block calls them) ---- */

static __device__ inline bool argmax_better(float v, int id, float bv, int bid) {
    return v > bv || (v == bv && id < bid);
}

/* Block argmax of (v, id) pairs, lowest id among equal values: sm.max_value, sm.argmax_id. */
static __device__ void block_argmax(float v, int id, sample_shared &sm) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int off = 16; off > 0; off >>= 1) {
        const float ov = __shfl_xor_sync(SAMPLE_FULL_MASK, v, off);
        const int oid = __shfl_xor_sync(SAMPLE_FULL_MASK, id, off);
        if (argmax_better(ov, oid, v, id)) {
            v = ov;
            id = oid;
        }
    }
    if (lane == 0) {
        sm.red_f[warp] = v;
        sm.red_i[warp] = id;
    }
    __syncthreads();
    if (warp == 0) {
        v = sm.red_f[lane];
        id = sm.red_i[lane];
        for (int off = 16; off > 0; off >>= 1) {
            const float ov = __shfl_xor_sync(SAMPLE_FULL_MASK, v, off);
            const int oid = __shfl_xor_sync(SAMPLE_FULL_MASK, id, off);
            if (argmax_better(ov, oid, v, id)) {
                v = ov;
                id = oid;
            }
        }
        if (lane == 0) {
            sm.max_value = v;
            sm.argmax_id = id;
        }
    }
    __syncthreads();
}

/* Block sum of doubles by a fixed butterfly tree (deterministic); every thread gets the total. */
static __device__ double block_sum(double x, sample_shared &sm) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    for (int off = 16; off > 0; off >>= 1)
        x += __shfl_xor_sync(SAMPLE_FULL_MASK, x, off);
    if (lane == 0)
        sm.red_d[warp] = x;
    __syncthreads();
    if (warp == 0) {
        x = sm.red_d[lane];
        for (int off = 16; off > 0; off >>= 1)
            x += __shfl_xor_sync(SAMPLE_FULL_MASK, x, off);
        if (lane == 0)
            sm.total = x;
    }
    __syncthreads();
    return sm.total;
}

/* Block exclusive scan of doubles in thread order (Hillis-Steele within warps, then over the warp totals):
 * returns this thread's prefix; *total = the sum over the block. Deterministic. */
static __device__ double block_exclusive_scan(double x, sample_shared &sm, double *total) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    double incl = x;
    for (int off = 1; off < 32; off <<= 1) {
        const double y = __shfl_up_sync(SAMPLE_FULL_MASK, incl, off);
        if (lane >= off)
            incl += y;
    }
    double lane_excl = __shfl_up_sync(SAMPLE_FULL_MASK, incl, 1);
    if (lane == 0)
        lane_excl = 0.0;
    if (lane == 31)
        sm.red_d[warp] = incl;
    __syncthreads();
    if (warp == 0) {
        double w = sm.red_d[lane];
        for (int off = 1; off < 32; off <<= 1) {
            const double y = __shfl_up_sync(SAMPLE_FULL_MASK, w, off);
            if (lane >= off)
                w += y;
        }
        double w_excl = __shfl_up_sync(SAMPLE_FULL_MASK, w, 1);
        if (lane == 0)
            w_excl = 0.0;
        sm.red_d[lane] = w_excl;
        if (lane == 31)
            sm.total = w;
    }
    __syncthreads();
    const double prefix = sm.red_d[warp] + lane_excl;
    *total = sm.total;
    __syncthreads();
    return prefix;
}

/* Warp 0 only: in sm.hist (counts per digit), the digit d, counting from 255 down, at which the count of larger
 * digits plus hist[d] first reaches `remaining`; sm.sel_digit = d, sm.sel_above = count of larger digits. */
static __device__ void find_digit_desc(sample_shared &sm, unsigned remaining) {
    const int lane = threadIdx.x & 31;
    const int hi = SAMPLE_RADIX - 1 - 8 * lane; /* lane 0: digits 255..248 */
    unsigned c = 0;
    for (int j = 0; j < 8; j++)
        c += sm.hist[hi - j];
    unsigned incl = c;
    for (int off = 1; off < 32; off <<= 1) {
        const unsigned y = __shfl_up_sync(SAMPLE_FULL_MASK, incl, off);
        if (lane >= off)
            incl += y;
    }
    const unsigned excl = incl - c;
    if (excl < remaining && remaining <= incl) {
        unsigned above = excl;
        for (int j = 0; j < 8; j++) {
            const unsigned h = sm.hist[hi - j];
            if (above + h >= remaining) {
                sm.sel_digit = (unsigned)(hi - j);
                sm.sel_above = above;
                break;
            }
            above += h;
        }
    }
}

/* sm.skey[0..m) = the m largest of work[0..n) (m < n) in the CPU's order (unsorted), ties at the threshold to the
 * lowest ids. Radix select of the threshold key T (most significant digit first), then one ordered pass: keys
 * above T take slots [0, m - need) in any order, keys equal to T the slots after, in id order, the first `need`. */
static __device__ void select_top(sample_shared &sm, const float *work, int n, int m) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    uint32_t prefix = 0, mask = 0;
    unsigned remaining = (unsigned)m;
    for (int shift = 24; shift >= 0; shift -= 8) {
        if (tid < SAMPLE_RADIX)
            sm.hist[tid] = 0;
        __syncthreads();
        for (int i = tid; i < n; i += SAMPLE_THREADS) {
            const uint32_t key = trn_cuda_desc_key(work[i]);
            if ((key & mask) == prefix)
                atomicAdd(&sm.hist[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (warp == 0)
            find_digit_desc(sm, remaining);
        __syncthreads();
        remaining -= sm.sel_above;
        prefix |= sm.sel_digit << shift;
        mask |= 255u << shift;
    }
    const uint32_t threshold = prefix;
    const int need = (int)remaining, n_gt = m - need;
    if (tid == 0) {
        sm.gt_count = 0;
        sm.eq_seen = 0;
    }
    __syncthreads();
    for (int t0 = 0; t0 < n; t0 += SAMPLE_THREADS) {
        const int i = t0 + tid;
        const uint32_t key = i < n ? trn_cuda_desc_key(work[i]) : 0;
        const bool gt = i < n && key > threshold, eq = i < n && key == threshold;
        if (gt)
            sm.skey[atomicAdd(&sm.gt_count, 1)] = trn_cuda_sort_key(key, i);
        const unsigned ballot = __ballot_sync(SAMPLE_FULL_MASK, eq);
        if (lane == 0)
            sm.red_i[warp] = __popc(ballot);
        __syncthreads();
        if (warp == 0) { /* exclusive scan of the warps' counts of equal keys */
            const int c = sm.red_i[lane];
            int incl = c;
            for (int off = 1; off < 32; off <<= 1) {
                const int y = __shfl_up_sync(SAMPLE_FULL_MASK, incl, off);
                if (lane >= off)
                    incl += y;
            }
            sm.red_i[lane] = incl - c;
            if (lane == 31)
                sm.eq_tile = incl;
        }
        __syncthreads();
        if (eq) {
            const int r = sm.eq_seen + sm.red_i[warp] + __popc(ballot & ((1u << lane) - 1u));
            if (r < need)
                sm.skey[n_gt + r] = trn_cuda_sort_key(key, i);
        }
        __syncthreads();
        if (tid == 0)
            sm.eq_seen += sm.eq_tile;
    }
    __syncthreads();
}

/* Ascending bitonic sort of sm.skey[0..size), size a power of two <= SAMPLE_CAP. */
static __device__ void bitonic_sort(unsigned long long *s, int size) {
    for (int k = 2; k <= size; k <<= 1)
        for (int j = k >> 1; j > 0; j >>= 1) {
            for (int i = threadIdx.x; i < size; i += SAMPLE_THREADS) {
                const int partner = i ^ j;
                if (partner > i) {
                    const unsigned long long a = s[i], b = s[partner];
                    if ((a > b) == ((i & k) == 0)) {
                        s[i] = b;
                        s[partner] = a;
                    }
                }
            }
            __syncthreads();
        }
}

/* ids[0][0..n) = 0..n-1 ordered by (work desc, id asc): stable LSD radix sort of ~desc_key, 4 passes of 8 bits.
 * Each pass: digit histogram, exclusive scan into sm.base, then tiles of SAMPLE_THREADS elements in order; an
 * element's place is base[digit] + (elements of that digit in earlier warps of the tile) + (in earlier lanes of
 * its warp: the peers of equal digit found by 8 ballots), which keeps equal digits in input order. */
static __device__ void sort_all(sample_shared &sm, const sample_layout &L, int n) {
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    for (int e = tid; e < SAMPLE_WARPS * SAMPLE_RADIX; e += SAMPLE_THREADS)
        (&sm.wcount[0][0])[e] = 0;
    for (int pass = 0; pass < 4; pass++) {
        const int shift = 8 * pass;
        const bool to_0 = pass & 1; /* pass 0 reads work and writes buffers 1, ..., pass 3 writes buffers 0 */
        const uint32_t *key_src = to_0 ? L.keys[1] : L.keys[0];
        const int32_t *id_src = to_0 ? L.ids[1] : L.ids[0];
        uint32_t *key_dst = to_0 ? L.keys[0] : L.keys[1];
        int32_t *id_dst = to_0 ? L.ids[0] : L.ids[1];
        if (tid < SAMPLE_RADIX)
            sm.hist[tid] = 0;
        __syncthreads();
        for (int i = tid; i < n; i += SAMPLE_THREADS) {
            const uint32_t key = pass == 0 ? ~trn_cuda_desc_key(L.work[i]) : key_src[i];
            atomicAdd(&sm.hist[(key >> shift) & 255u], 1u);
        }
        __syncthreads();
        if (warp == 0) { /* exclusive scan of the histogram, digits ascending, 8 per lane */
            unsigned c = 0;
            for (int j = 0; j < 8; j++)
                c += sm.hist[8 * lane + j];
            unsigned incl = c;
            for (int off = 1; off < 32; off <<= 1) {
                const unsigned y = __shfl_up_sync(SAMPLE_FULL_MASK, incl, off);
                if (lane >= off)
                    incl += y;
            }
            unsigned run = incl - c;
            for (int j = 0; j < 8; j++) {
                sm.base[8 * lane + j] = run;
                run += sm.hist[8 * lane + j];
            }
        }
        __syncthreads();
        for (int t0 = 0; t0 < n; t0 += SAMPLE_THREADS) {
            const int i = t0 + tid;
            const bool active = i < n;
            uint32_t key = 0;
            int32_t id = 0;
            if (active) {
                key = pass == 0 ? ~trn_cuda_desc_key(L.work[i]) : key_src[i];
                id = pass == 0 ? i : id_src[i];
            }
            const unsigned digit = (key >> shift) & 255u;
            unsigned peers = __ballot_sync(SAMPLE_FULL_MASK, active);
            for (int b = 0; b < 8; b++) {
                const bool bit = (digit >> b) & 1u;
                const unsigned ballot = __ballot_sync(SAMPLE_FULL_MASK, bit);
                peers &= bit ? ballot : ~ballot;
            }
            const unsigned rank = __popc(peers & ((1u << lane) - 1u));
            if (active && rank == 0)
                sm.wcount[warp][digit] = (unsigned short)__popc(peers);
            __syncthreads();
            unsigned tile_count = 0; /* thread d < 256: elements of digit d in this tile */
            if (tid < SAMPLE_RADIX)
                for (int w = 0; w < SAMPLE_WARPS; w++) {
                    const unsigned c = sm.wcount[w][tid];
                    sm.wcount[w][tid] = (unsigned short)tile_count;
                    tile_count += c;
                }
            __syncthreads();
            if (active) {
                const unsigned at = sm.base[digit] + sm.wcount[warp][digit] + rank;
                key_dst[at] = key;
                id_dst[at] = id;
            }
            __syncthreads();
            if (tid < SAMPLE_RADIX) {
                sm.base[tid] += tile_count;
                for (int w = 0; w < SAMPLE_WARPS; w++)
                    sm.wcount[w][tid] = 0;
            }
            __syncthreads();
        }
    }
}

/* ---- the kernel ---- */

/* grid (1), block (SAMPLE_THREADS). The logits (128 KB for 32000) stay in global scratch, not shared memory, so
 * sm_75's 64 KB limit is no concern; shared memory is a fixed ~40 KB. The position is read on the device. Everything
 * it reads but `p` comes from earlier kernels: nothing before the PDL wait. */
static __global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_kernel(const float *logits, int n, const int32_t *history, const int32_t *pos_ptr, trn_cuda_sampling p,
                  void *scratch, int32_t *next) {
    __shared__ sample_shared sm;
    const sample_layout L = sample_layout_of(scratch, n);
    const int tid = threadIdx.x;
    trn_pdl_wait();
    trn_pdl_launch_dependents();
    const int pos = *pos_ptr;
    if (tid == 0) {
        sm.first_cut = INT_MAX;
        sm.first_tok = INT_MAX;
    }

    /* greedy without a penalty: the argmax of the logits themselves, without the copy (one pass instead of three) */
    const bool penalty = p.repeat_penalty != 1.0f && p.repeat_penalty > 0.0f;
    if (p.temp <= 0.0f && !penalty) {
        float best = -INFINITY;
        int best_id = INT_MAX;
        for (int i = tid; i < n; i += SAMPLE_THREADS) {
            const float v = logits[i];
            if (i == tid || v > best) {
                best = v;
                best_id = i;
            }
        }
        block_argmax(best, best_id, sm);
        if (tid == 0)
            *next = sm.argmax_id;
        return;
    }

    /* 1. copy and repetition penalty */
    for (int i = tid; i < n; i += SAMPLE_THREADS) {
        L.work[i] = logits[i];
        if (penalty)
            L.flag[i] = 0u;
    }
    __syncthreads();
    if (penalty) {
        for (int t = tid; t <= pos; t += SAMPLE_THREADS) {
            const int id = history[t];
            if (id >= 0 && id < n && atomicExch(&L.flag[id], 1u) == 0u)
                L.work[id] = trn_cuda_penalize(L.work[id], p.repeat_penalty);
        }
        __syncthreads();
    }

    /* 2. greedy, or temperature; both with the argmax (its barriers publish the scaled logits) */
    const bool greedy = p.temp <= 0.0f;
    float best = -INFINITY;
    int best_id = INT_MAX;
    for (int i = tid; i < n; i += SAMPLE_THREADS) {
        float v = L.work[i];
        if (!greedy) {
            v = trn_cuda_div(v, p.temp);
            L.work[i] = v;
        }
        if (i == tid || v > best) {
            best = v;
            best_id = i;
        }
    }
    block_argmax(best, best_id, sm);
    if (greedy) {
        if (tid == 0)
            *next = sm.argmax_id;
        return;
    }
    const float max_value = sm.max_value;
    const bool top_k_on = p.top_k > 0 && p.top_k < n;
    const bool top_p_on = p.top_p < 1.0f;
    const float draw = trn_cuda_uniform(p.seed, pos);

    /* 3-4, small lists */
    int m = 0;          /* candidates on the small path; 0: large path */
    bool by_id = false; /* small list in id order (D), else sorted in sm.skey */
    bool early = false; /* B with more than SAMPLE_CAP tokens: the cut must fall inside the first SAMPLE_CAP */
    double target = 0.0;
    if (top_k_on && p.top_k <= SAMPLE_CAP) {
        m = p.top_k;
    } else if (!top_k_on && top_p_on) {
        m = min(n, SAMPLE_CAP);
        early = m < n;
    } else if (!top_k_on && !top_p_on && n <= SAMPLE_CAP) {
        m = n;
        by_id = true;
    }
    if (m > 0) {
        if (early) { /* the CPU's total runs over the whole vocabulary */
            double local = 0.0;
            for (int i = tid; i < n; i += SAMPLE_THREADS)
                local += (double)expf(L.work[i] - max_value);
            target = (double)p.top_p * block_sum(local, sm);
        }
        if (!by_id) {
            if (m < n) {
                select_top(sm, L.work, n, m);
            } else {
                for (int i = tid; i < n; i += SAMPLE_THREADS)
                    sm.skey[i] = trn_cuda_sort_key(trn_cuda_desc_key(L.work[i]), i);
                __syncthreads();
            }
            int size = 1;
            while (size < m)
                size <<= 1;
            for (int i = m + tid; i < size; i += SAMPLE_THREADS)
                sm.skey[i] = ~0ull;
            __syncthreads();
            bitonic_sort(sm.skey, size);
        }
        const int i = tid; /* this thread's candidate */
        const int id_i = i < m ? (by_id ? i : (int)(uint32_t)sm.skey[i]) : 0;
        if (i < m)
            sm.prob[i] = trn_cuda_exp_prob(L.work[id_i] - max_value);
        __syncthreads();
        if (tid == 0) { /* the CPU's sequence of double additions */
            double c = 0.0;
            int cut = -1;
            for (int j = 0; j < m; j++) {
                c += (double)sm.prob[j];
                sm.cum[j] = c;
                if (early && c >= target) {
                    cut = j;
                    break;
                }
            }
            sm.seq_cut = cut;
        }
        __syncthreads();
        const int seq_cut = sm.seq_cut;
        if (!early || seq_cut >= 0) {
            int n_cut = m;
            double sum;
            if (early) {
                n_cut = seq_cut + 1;
                sum = sm.cum[seq_cut];
            } else {
                sum = sm.cum[m - 1];
                if (top_p_on) { /* first i with cum_i >= target = number of cum_i below it (cum is monotone) */
                    target = (double)p.top_p * sum;
                    const int below = __syncthreads_count(i < m && sm.cum[i] < target);
                    if (below < m) {
                        n_cut = below + 1;
                        sum = sm.cum[below];
                    }
                }
            }
            const double u = (double)draw * sum;
            int at = __syncthreads_count(i < n_cut && !(u < sm.cum[i])); /* first i with u < cum_i */
            if (at >= n_cut)
                at = n_cut - 1;
            if (tid == 0)
                *next = by_id ? at : (int)(uint32_t)sm.skey[at];
            return;
        }
        /* B: the nucleus is wider than SAMPLE_CAP: full sort below */
    }

    /* 3-4, large lists: C (full sort) or D (id order) */
    const bool sorted = top_k_on || top_p_on;
    if (sorted)
        sort_all(sm, L, n);
    const int32_t *list = sorted ? L.ids[0] : nullptr;
    const int n_cand = top_k_on ? p.top_k : n;
    const int chunk = (n_cand + SAMPLE_THREADS - 1) / SAMPLE_THREADS;
    const int lo = min(tid * chunk, n_cand), hi = min(lo + chunk, n_cand);
    double local = 0.0;
    for (int j = lo; j < hi; j++) {
        const float pj = expf(L.work[list ? list[j] : j] - max_value);
        L.prob[j] = pj;
        local += (double)pj;
    }
    double total;
    const double prefix = block_exclusive_scan(local, sm, &total);
    int n_cut = n_cand;
    double sum = total;
    if (top_p_on) {
        const double cut_target = (double)p.top_p * total;
        double c = prefix;
        int found = -1;
        for (int j = lo; j < hi; j++) {
            c += (double)L.prob[j];
            if (c >= cut_target) {
                found = j;
                break;
            }
        }
        if (found >= 0)
            atomicMin(&sm.first_cut, found);
        __syncthreads();
        if (found >= 0 && found == sm.first_cut)
            sm.cut_cum = c;
        __syncthreads();
        if (sm.first_cut != INT_MAX) {
            n_cut = sm.first_cut + 1;
            sum = sm.cut_cum;
        }
    }
    const double u = (double)draw * sum;
    {
        double c = prefix;
        const int end = min(hi, n_cut);
        for (int j = lo; j < end; j++) {
            c += (double)L.prob[j];
            if (u < c) {
                atomicMin(&sm.first_tok, j);
                break;
            }
        }
    }
    __syncthreads();
    if (tid == 0) {
        const int at = sm.first_tok == INT_MAX ? n_cut - 1 : sm.first_tok;
        *next = list ? list[at] : at;
    }
}

/* ---- launchers ---- */

extern "C" size_t trn_cuda_sample_scratch_bytes(int n_vocab) {
    return n_vocab > 0 ? SAMPLE_N_ARRAYS * sample_array_bytes(n_vocab) : 0;
}

/* `params` is a host pointer read here, at the call: a captured graph keeps those values (the backend sets them at
 * prepare). */
extern "C" int trn_cuda_sample(const float *logits, int n_vocab, const int32_t *history, const int32_t *pos,
                               const trn_cuda_sampling *params, void *scratch, int32_t *next, int pdl,
                               trn_cuda_stream stream) {
    if (n_vocab <= 0 || !params || !scratch)
        return (int)cudaErrorInvalidValue;
    cudaLaunchAttribute attribute; /* programmatic dependent launch: see device_math.cuh */
    const cudaLaunchConfig_t config =
        trn_launch_config(dim3(1), dim3(SAMPLE_THREADS), 0, (cudaStream_t)stream, pdl, &attribute);
    const cudaError_t err =
        cudaLaunchKernelEx(&config, sample_kernel, logits, n_vocab, history, pos, *params, scratch, next);
    return (int)(err != cudaSuccess ? err : cudaGetLastError());
}
