/* ops_attention.c: the attention kernel of the SIMD tables (the `attention` entry, ops.h), written once for vectors
 * of ATT_W floats and compiled twice: as it is with the AVX2 flags (8 lanes: trn_avx2_attention), and included by
 * ops_attention_avx512.c with TRN_ATTENTION_AVX512 defined and the AVX-512 flags (16 lanes: trn_avx512_attention).
 * The scalar reference is attention_ref in ops_ref.c. Does not own the cache layout (ops.h, trn_k_index) or which
 * heads share a call (cpu_backend.c).
 *
 * K comes in blocks of 16 positions, each dimension-major, so a vector of scores (W positions) is an FMA chain over
 * d with q[d] broadcast, each row read once for all the heads of a call; V comes as rows, so a vector of outputs (W
 * dimensions) is an FMA chain over the positions (cpu_fallback/README.md, Attention).
 *
 * The arithmetic of one head, the same in both builds and whatever heads share a call (the CPU backend's thread
 * split may cut a group of heads anywhere, and the AVX2 and AVX-512 tables must give the same logits):
 *   s_t = (FMA chain over d = 0..hd-1 of q[d] k_t[d], from 0) * (1 / sqrt(hd));
 *   e_t = exp_w(s_t - max_t s_t), exp_w the polynomial of ops_vec.h;
 *   sum = tree over 16 partials: partial j adds e_t for t = j mod 16 in order of t; then partial j + partial j + 8
 *         for j < 8, then ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7));
 *   out[d] = (FMA chain over t = 0..n_pos-1 of e_t v_t[d], from 0) * (1 / sum).
 * A head_dim that is not a multiple of ATT_W takes the AVX2 build (AVX-512) or the one-lane path (AVX2), with that
 * same arithmetic. The scratch (TRN_ATTENTION_SCRATCH) holds, for 8 heads, the scores as [head][P] (P = n_pos
 * rounded up to 16), the weights e_t transposed as [P][8] and the queries transposed as [hd][8], so that the
 * broadcast operands of both FMA loops come from one base pointer at constant offsets (with a pointer per head,
 * GCC spilled them: about a sixth of the time, profiling/README.md, nineteenth session).
 *
 * In a decode step the KV rows come from memory, and the hardware prefetchers alone let the loads and the FMAs
 * take turns: each scores tile requests the next tile's K rows, spread over its loop, and the values go over the
 * rows in runs of ATT_VALUE_ROWS (every group of dimensions over a run before the next run, the accumulators kept in
 * `out` between runs), each pass over a run requesting a share of the next run's rows (profiling/README.md, ninth
 * session: 6-7% shorter steps after a 1,000-token prompt from the requests; nineteenth: the runs, 30% less time
 * per call with K and V from memory). */
#include <immintrin.h>
#include <math.h>

#include "ops.h"
#include "ops_simd.h"

#if defined(TRN_ATTENTION_AVX512)
#define TRN_VEC_AVX512 1
#define ATTENTION_FN trn_avx512_attention
#else
#define ATTENTION_FN trn_avx2_attention
#endif
#include "ops_vec.h"

#define ATT_W TRN_VEC_W
#define ATT_ACC (TRN_VEC_W == 16 ? 16 : 8) /* accumulators in flight (of 32 or 16 registers) */
#define ATT_INLINE TRN_VEC_INLINE

enum {
    ATT_HEADS = 8,             /* heads of one call computed together (their scores fit TRN_ATTENTION_SCRATCH) */
    ATT_PARTIALS = 16 / ATT_W, /* vectors of the 16 partial sums of the softmax */
    ATT_VALUE_ROWS = 32,       /* V rows of a run: every group of dimensions goes over them before the next run */
};

#define ATT_PREFETCH(p) _mm_prefetch((const char *)(p), _MM_HINT_T0)

/* r[h] = floats 0..7 of row h -> r[i] = float i of rows 0..7 (an 8x8 transpose; 256-bit in both builds). */
static inline void transpose8_ps(__m256 r[8]) {
    __m256 t[8], u[8];
    for (int k = 0; k < 8; k += 2) {
        t[k] = _mm256_unpacklo_ps(r[k], r[k + 1]);
        t[k + 1] = _mm256_unpackhi_ps(r[k], r[k + 1]);
    }
    for (int k = 0; k < 8; k += 4) {
        u[k] = _mm256_shuffle_ps(t[k], t[k + 2], 0x44);
        u[k + 1] = _mm256_shuffle_ps(t[k], t[k + 2], 0xEE);
        u[k + 2] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0x44);
        u[k + 3] = _mm256_shuffle_ps(t[k + 1], t[k + 3], 0xEE);
    }
    for (int i = 0; i < 4; i++) {
        r[i] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x20);
        r[i + 4] = _mm256_permute2f128_ps(u[i], u[i + 4], 0x31);
    }
}

/* dst[i * 8 + h] = src[h * ld + i] for i < n (a multiple of 8), h < 8; rows h >= nh are taken as zeros. */
static void transpose_heads(const float *src, int64_t ld, int nh, int64_t n, float *dst) {
    for (int64_t i0 = 0; i0 < n; i0 += 8) {
        __m256 r[8];
        for (int h = 0; h < 8; h++)
            r[h] = h < nh ? _mm256_loadu_ps(src + h * ld + i0) : _mm256_setzero_ps();
        transpose8_ps(r);
        for (int i = 0; i < 8; i++)
            _mm256_storeu_ps(dst + (i0 + i) * 8, r[i]);
    }
}

/* The FMA chains of a scores tile over d (scores_tile): nb blocks of W positions whose dimension d lies at
 * rows[b] + 16 d, valid[b] of them below n_pos (all W where `full`, a constant at each call: no test in the loop);
 * before each d, per_d more lines of the next tile's K requested from *pf up to pf_end. */
ATT_INLINE void scores_over_d(const float *qt, int nh, int nb, int hd, const float *const *rows, const int *valid,
                              int full, const char *pf, const char *pf_end, int per_d, vec *acc) {
    for (int d = 0; d < hd; d++) {
        for (int j = 0; j < per_d && pf < pf_end; j++, pf += 64)
            ATT_PREFETCH(pf);
#pragma GCC unroll 16
        for (int b = 0; b < nb; b++) {
            const float *at = rows[b] + d * TRN_KV_BLOCK;
            const vec kv = full || valid[b] == ATT_W ? v_load(at) : v_load_n(at, first_lanes(valid[b]), 0.0f);
#pragma GCC unroll 8
            for (int h = 0; h < nh; h++)
                acc[h * nb + b] = v_fma(v_set1(qt[d * ATT_HEADS + h]), kv, acc[h * nb + b]);
        }
    }
}

/* Scores of nh heads (qt: their queries as [hd][ATT_HEADS]) for the blocks of W positions from t0 that fit ATT_ACC
 * accumulators (ATT_ACC / nh blocks), into scores[h * P + t]; positions from n_pos on are neither read nor written.
 * nh is a constant at each call (the switch below), so the accumulators stay in registers. */
ATT_INLINE void scores_tile(const float *qt, int nh, int hd, const float *k, int t0, int n_pos, float scale,
                            float *scores, int64_t P) {
    enum { MAX_BLOCKS = ATT_ACC };
    const int nb = ATT_ACC / nh;
    vec acc[ATT_ACC];
    int valid[MAX_BLOCKS];
    const float *rows[MAX_BLOCKS];
#pragma GCC unroll 16
    for (int b = 0; b < nb; b++) {
        valid[b] = TRN_MAX(0, TRN_MIN(ATT_W, n_pos - t0 - b * ATT_W));
        rows[b] = k + trn_k_index(t0 + b * ATT_W, 0, hd);
    }
#pragma GCC unroll 16
    for (int i = 0; i < nh * nb; i++)
        acc[i] = v_set1(0.0f);
    /* the span * hd floats of K that follow this tile's (the next tile's rows where span is a multiple of 16, as in
     * the AVX-512 build), up to the end of [0, n_pos)'s blocks: per_d of their lines per d (no division in the
     * loop) */
    const int span = nb * ATT_W;
    const int64_t next_from = (int64_t)(t0 + span) * hd;
    const int64_t next_to = TRN_MIN(next_from + (int64_t)span * hd, TRN_K_FLOATS(n_pos, hd));
    const char *next = (const char *)(k + next_from);
    const int next_lines = next_to > next_from ? (int)((next_to - next_from) * (int64_t)sizeof(float) / 64) : 0;
    const int per_d = (next_lines + hd - 1) / hd;
    const char *next_end = next + (int64_t)next_lines * 64;
    if (valid[nb - 1] == ATT_W) /* blocks fill in order: the last full means all are */
        scores_over_d(qt, nh, nb, hd, rows, valid, 1, next, next_end, per_d, acc);
    else
        scores_over_d(qt, nh, nb, hd, rows, valid, 0, next, next_end, per_d, acc);
#pragma GCC unroll 8
    for (int h = 0; h < nh; h++)
#pragma GCC unroll 16
        for (int b = 0; b < nb; b++) {
            float *dst = scores + h * P + t0 + b * ATT_W;
            const vec s = v_mul(acc[h * nb + b], v_set1(scale));
            if (valid[b] == ATT_W)
                v_store(dst, s);
            else
                v_store_n(dst, first_lanes(valid[b]), s);
        }
}

/* Outputs of nh heads for the dimensions [d0, d0 + ATT_ACC / nh vectors) that lie below hd, over the positions
 * [t_begin, t_end): the FMA chains over those positions of e (et[t * ATT_HEADS + h]), continued from out (from 0 at
 * position 0) and stored back to out, times inv[h] after the last position (n_pos). */
ATT_INLINE void values_tile(const float *et, int nh, int hd, const float *v, int64_t v_stride, int t_begin, int t_end,
                            int n_pos, int d0, const float *inv, float *out) {
    const int nc = ATT_ACC / nh, chunks = TRN_MIN(nc, (hd - d0) / ATT_W);
    vec acc[ATT_ACC];
#pragma GCC unroll 8
    for (int h = 0; h < nh; h++)
#pragma GCC unroll 16
        for (int c = 0; c < nc; c++)
            acc[h * nc + c] = t_begin == 0 || c >= chunks ? v_set1(0.0f) : v_load(out + h * hd + d0 + c * ATT_W);
    for (int t = t_begin; t < t_end; t++) {
        const float *row = v + t * v_stride + d0;
#pragma GCC unroll 16
        for (int c = 0; c < nc; c++) {
            if (c >= chunks)
                break;
            const vec vv = v_load(row + c * ATT_W);
#pragma GCC unroll 8
            for (int h = 0; h < nh; h++)
                acc[h * nc + c] = v_fma(v_set1(et[t * ATT_HEADS + h]), vv, acc[h * nc + c]);
        }
    }
    const int last = t_end == n_pos;
#pragma GCC unroll 8
    for (int h = 0; h < nh; h++)
#pragma GCC unroll 16
        for (int c = 0; c < chunks; c++)
            v_store(out + h * hd + d0 + c * ATT_W, last ? v_mul(acc[h * nc + c], v_set1(inv[h])) : acc[h * nc + c]);
}

/* Share `part` of `parts` of the V rows [r0, r1) requested, every line of each (hd floats from v + r * v_stride):
 * the next run's rows, a share in each pass over the current run (in the inner loop the requests cost a tenth of a
 * pass where the rows were in cache). */
static void request_rows(const float *v, int64_t v_stride, int hd, int r0, int r1, int part, int parts) {
    for (int r = r0 + (r1 - r0) * part / parts; r < r0 + (r1 - r0) * (part + 1) / parts; r++)
        for (int l = 0; l < hd * (int)sizeof(float); l += 64)
            ATT_PREFETCH((const char *)(v + r * v_stride) + l);
}

/* One head's softmax in place over s[0..n_pos): s_t becomes e_t; returns 1 / sum. */
ATT_INLINE float softmax_w(float *s, int n_pos) {
    vec vmax = v_set1(-INFINITY);
    int t = 0;
    for (; t + ATT_W <= n_pos; t += ATT_W)
        vmax = v_max(vmax, v_load(s + t));
    if (t < n_pos)
        vmax = v_max(vmax, v_load_n(s + t, first_lanes(n_pos - t), -INFINITY));
    const vec m = v_set1(v_hmax(vmax));
    vec partial[ATT_PARTIALS];
    for (int i = 0; i < ATT_PARTIALS; i++)
        partial[i] = v_set1(0.0f);
    int i = 0;
    for (t = 0; t + ATT_W <= n_pos; t += ATT_W, i++) {
        const vec e = exp_w(v_sub(v_load(s + t), m));
        v_store(s + t, e);
        partial[i % ATT_PARTIALS] = v_add(partial[i % ATT_PARTIALS], e);
    }
    if (t < n_pos) { /* the last lanes past n_pos add zeros, which leave the partials as they are */
        const lanes_mask lanes = first_lanes(n_pos - t);
        const vec e = v_zero_off(exp_w(v_sub(v_load_n(s + t, lanes, 0.0f), m)), lanes);
        v_store_n(s + t, lanes, e);
        partial[i % ATT_PARTIALS] = v_add(partial[i % ATT_PARTIALS], e);
    }
    return 1.0f / tree_sum8(fold_partials(partial));
}

#if !defined(TRN_ATTENTION_AVX512)
/* One head with head_dim not a multiple of 8: the same arithmetic one lane at a time (exp_w on a vector whose lane 0
 * is the value). */
static void attention_one_lane(const float *q, const float *k, const float *v, int64_t v_stride, int n_pos, int hd,
                               float *s, float *out) {
    const float scale = 1.0f / sqrtf((float)hd);
    for (int t = 0; t < n_pos; t++) {
        float acc = 0.0f;
        for (int d = 0; d < hd; d++)
            acc = fmaf(q[d], k[trn_k_index(t, d, hd)], acc);
        s[t] = acc * scale;
    }
    float max = -INFINITY;
    for (int t = 0; t < n_pos; t++)
        max = s[t] > max ? s[t] : max;
    float partial[16] = {0};
    for (int t = 0; t < n_pos; t++) {
        s[t] = _mm_cvtss_f32(_mm256_castps256_ps128(exp_w(v_set1(s[t] - max))));
        partial[t % 16] += s[t];
    }
    float folded[8];
    for (int j = 0; j < 8; j++)
        folded[j] = partial[j] + partial[j + 8];
    const float inv = 1.0f / tree_sum8(_mm256_loadu_ps(folded));
    for (int d = 0; d < hd; d++) {
        float acc = 0.0f;
        for (int t = 0; t < n_pos; t++)
            acc = fmaf(s[t], v[t * v_stride + d], acc);
        out[d] = acc * inv;
    }
}
#endif

void ATTENTION_FN(const float *q, int n_q, const float *k_cache, const float *v_cache, int64_t v_stride, int n_pos,
                  int head_dim, float *scores, float *out) {
    const int hd = head_dim;
    if (hd % ATT_W != 0) {
#if defined(TRN_ATTENTION_AVX512)
        trn_avx2_attention(q, n_q, k_cache, v_cache, v_stride, n_pos, hd, scores, out);
#else
        for (int h = 0; h < n_q; h++)
            attention_one_lane(q + (int64_t)h * hd, k_cache, v_cache, v_stride, n_pos, hd, scores, out + (int64_t)h * hd);
#endif
        return;
    }
    const float scale = 1.0f / sqrtf((float)hd);
    const int64_t P = (n_pos + 15) / 16 * 16;
    float *et = scores + ATT_HEADS * P, *qt = scores + 2 * ATT_HEADS * P; /* [P][8], [hd][8] */
    for (int h0 = 0; h0 < n_q; h0 += ATT_HEADS) {
        const int nh = TRN_MIN(ATT_HEADS, n_q - h0);
        float *oh = out + (int64_t)h0 * hd;
        transpose_heads(q + (int64_t)h0 * hd, hd, nh, hd, qt);
        /* scores, blocks of positions as many as the accumulators hold */
        const int span = ATT_ACC / nh * ATT_W;
        for (int t0 = 0; t0 < n_pos; t0 += span) {
            switch (nh) {
#define SCORES_CASE(N) case N: scores_tile(qt, N, hd, k_cache, t0, n_pos, scale, scores, P); break;
                SCORES_CASE(1) SCORES_CASE(2) SCORES_CASE(3) SCORES_CASE(4)
                SCORES_CASE(5) SCORES_CASE(6) SCORES_CASE(7) default: SCORES_CASE(8)
#undef SCORES_CASE
            }
        }
        float inv[ATT_HEADS];
        for (int h = 0; h < nh; h++)
            inv[h] = softmax_w(scores + h * P, n_pos);
        /* the weights e_t as [t][head] (positions n_pos..P - 1 carry whatever the scratch held: never read) */
        transpose_heads(scores, P, nh, (n_pos + 7) / 8 * 8, et);
        const int dims = ATT_ACC / nh * ATT_W, passes = (hd + dims - 1) / dims;
        for (int t = 0; t < n_pos; t += ATT_VALUE_ROWS) {
            const int t_end = TRN_MIN(n_pos, t + ATT_VALUE_ROWS), next_end = TRN_MIN(n_pos, t_end + ATT_VALUE_ROWS);
            for (int d0 = 0, pass = 0; d0 < hd; d0 += dims, pass++) {
                request_rows(v_cache, v_stride, hd, t_end, next_end, pass, passes);
                switch (nh) {
#define VALUES_CASE(N) case N: values_tile(et, N, hd, v_cache, v_stride, t, t_end, n_pos, d0, inv, oh); break;
                    VALUES_CASE(1) VALUES_CASE(2) VALUES_CASE(3) VALUES_CASE(4)
                    VALUES_CASE(5) VALUES_CASE(6) VALUES_CASE(7) default: VALUES_CASE(8)
#undef VALUES_CASE
                }
            }
        }
    }
}
