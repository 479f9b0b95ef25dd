/* ops_attention.c: the attention kernel of the SIMD tables (the `attention` entry, ops.h), written once for vectors
 * of ATT_W floats and compiled twice: as it is with the AVX2 flags (8 lanes: trn_avx2_attention), and included by
 * ops_attention_avx512.c with TRN_ATTENTION_AVX512 defined and the AVX-512 flags (16 lanes: trn_avx512_attention).
 * The scalar reference is attention_ref in ops_ref.c.
 *
 * K comes in blocks of 16 positions, each block dimension-major (ops.h, trn_k_index): dimension d of 16 consecutive
 * positions is one row of 16 floats, so a vector of scores (W positions) is an FMA chain over d with q[d]
 * broadcast, each row read once for all the heads of a call, and a head's K is one sequential stream. V comes as
 * rows, one per position, so a vector of outputs (W dimensions) is an FMA chain over the positions with the
 * position's weight broadcast. Per position and head, that is 2 hd / W FMAs.
 *
 * The arithmetic of one head, the same in both builds and whatever heads share a call (the CPU backend's thread
 * split may cut a group of heads anywhere, and the AVX2 and AVX-512 tables must give the same logits):
 *   s_t = (FMA chain over d = 0..hd-1 of q[d] k_t[d], from 0) * (1 / sqrt(hd));
 *   e_t = exp_w(s_t - max_t s_t), exp_w the polynomial below;
 *   sum = tree over 16 partials: partial j adds e_t for t = j mod 16 in order of t; then partial j + partial j + 8
 *         for j < 8, then ((p0 + p1) + (p2 + p3)) + ((p4 + p5) + (p6 + p7));
 *   out[d] = (FMA chain over t = 0..n_pos-1 of e_t v_t[d], from 0) * (1 / sum).
 * A head_dim that is not a multiple of ATT_W takes the AVX2 build (AVX-512) or the one-lane path (AVX2), with that
 * same arithmetic. Scores live in the scratch as [head][P] with P = n_pos rounded up to 16 (TRN_ATTENTION_SCRATCH
 * covers 8 heads). */
#include <immintrin.h>
#include <math.h>

#include "ops.h"
#include "ops_simd.h"

#if defined(TRN_ATTENTION_AVX512)
#define ATT_W 16
#define ATT_ACC 16 /* accumulators in flight (32 registers) */
#define ATTENTION_FN trn_avx512_attention
typedef __m512 vec;
typedef __mmask16 lanes_mask;
static inline lanes_mask first_lanes(int n) { return (lanes_mask)((1u << n) - 1); } /* n in 0..16 */
static inline vec v_load_n(const float *p, lanes_mask m, float fill) {
    return _mm512_mask_loadu_ps(_mm512_set1_ps(fill), m, p);
}
static inline void v_store_n(float *p, lanes_mask m, vec x) { _mm512_mask_storeu_ps(p, m, x); }
static inline vec v_zero_off(vec x, lanes_mask m) { return _mm512_maskz_mov_ps(m, x); }
#define v_load _mm512_loadu_ps
#define v_store _mm512_storeu_ps
#define v_set1 _mm512_set1_ps
#define v_fma _mm512_fmadd_ps
#define v_fnma _mm512_fnmadd_ps
#define v_mul _mm512_mul_ps
#define v_add _mm512_add_ps
#define v_sub _mm512_sub_ps
#define v_max _mm512_max_ps
#define v_min _mm512_min_ps
static inline vec v_floor(vec x) { return _mm512_roundscale_ps(x, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC); }
static inline vec v_pow2i(vec n) { /* 2^n for integral n in the clamped range */
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23));
}
static inline float v_hmax(vec x) { return _mm512_reduce_max_ps(x); } /* a max: exact in any order */
/* partial j + partial j + 8 (the 16 partial sums in one vector) */
static inline __m256 fold_partials(const vec *s) {
    return _mm256_add_ps(_mm512_castps512_ps256(s[0]), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(s[0]), 1)));
}
#else
#define ATT_W 8
#define ATT_ACC 8 /* accumulators in flight (16 registers) */
#define ATTENTION_FN trn_avx2_attention
typedef __m256 vec;
typedef __m256i lanes_mask;
static inline lanes_mask first_lanes(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
static inline vec v_load_n(const float *p, lanes_mask m, float fill) {
    return _mm256_blendv_ps(_mm256_set1_ps(fill), _mm256_maskload_ps(p, m), _mm256_castsi256_ps(m));
}
static inline void v_store_n(float *p, lanes_mask m, vec x) { _mm256_maskstore_ps(p, m, x); }
static inline vec v_zero_off(vec x, lanes_mask m) { return _mm256_and_ps(x, _mm256_castsi256_ps(m)); }
#define v_load _mm256_loadu_ps
#define v_store _mm256_storeu_ps
#define v_set1 _mm256_set1_ps
#define v_fma _mm256_fmadd_ps
#define v_fnma _mm256_fnmadd_ps
#define v_mul _mm256_mul_ps
#define v_add _mm256_add_ps
#define v_sub _mm256_sub_ps
#define v_max _mm256_max_ps
#define v_min _mm256_min_ps
#define v_floor _mm256_floor_ps
static inline vec v_pow2i(vec n) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23));
}
static inline float v_hmax(vec x) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_max_ss(s, _mm_movehdup_ps(s)));
}
static inline __m256 fold_partials(const vec *s) { return _mm256_add_ps(s[0], s[1]); }
#endif

enum {
    ATT_HEADS = 8,             /* heads of one call computed together (their scores fit TRN_ATTENTION_SCRATCH) */
    ATT_PARTIALS = 16 / ATT_W, /* vectors of the 16 partial sums of the softmax */
};

#define ATT_INLINE static inline __attribute__((always_inline))

/* exp(x) lane by lane: x = n ln2 + r, exp(r) by a degree-6 polynomial (Cephes coefficients), times 2^n; relative
 * error about 2e-7 over the clamped range. Every step is one correctly rounded operation, so a lane's result does
 * not depend on the vector width. */
ATT_INLINE vec exp_w(vec x) {
    x = v_min(v_max(x, v_set1(-87.3f)), v_set1(88.3f));
    const vec n = v_floor(v_fma(x, v_set1(1.44269504088896341f), v_set1(0.5f)));
    vec r = v_fnma(n, v_set1(0.693359375f), x);
    r = v_fnma(n, v_set1(-2.12194440e-4f), r);
    vec p = v_set1(1.9875691500e-4f);
    p = v_fma(p, r, v_set1(1.3981999507e-3f));
    p = v_fma(p, r, v_set1(8.3334519073e-3f));
    p = v_fma(p, r, v_set1(4.1665795894e-2f));
    p = v_fma(p, r, v_set1(1.6666665459e-1f));
    p = v_fma(p, r, v_set1(5.0000001201e-1f));
    p = v_fma(p, v_mul(r, r), v_add(r, v_set1(1.0f)));
    return v_mul(p, v_pow2i(n));
}

/* ((v0 + v1) + (v2 + v3)) + ((v4 + v5) + (v6 + v7)): two hadds and a sum of the 128-bit halves. */
ATT_INLINE float tree_sum8(__m256 v) {
    const __m256 h = _mm256_hadd_ps(v, v);
    const __m256 hh = _mm256_hadd_ps(h, h);
    return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(hh), _mm256_extractf128_ps(hh, 1)));
}

/* Scores of nh heads (q: nh rows of hd) for the blocks of W positions from t0 that fit ATT_ACC accumulators
 * (ATT_ACC / nh blocks), into scores[h * P + t]; positions from n_pos on are neither read nor written. nh is a
 * constant at each call (the switch below), so the accumulators stay in registers. */
ATT_INLINE void scores_tile(const float *q, int nh, int hd, const float *k, int t0, int n_pos, float scale,
                            float *scores, int64_t P) {
    enum { MAX_BLOCKS = ATT_ACC };
    const int nb = ATT_ACC / nh;
    vec acc[ATT_ACC];
    int valid[MAX_BLOCKS];
#pragma GCC unroll 16
    for (int b = 0; b < nb; b++)
        valid[b] = TRN_MAX(0, TRN_MIN(ATT_W, n_pos - t0 - b * ATT_W));
#pragma GCC unroll 16
    for (int i = 0; i < nh * nb; i++)
        acc[i] = v_set1(0.0f);
    for (int d = 0; d < hd; d++) {
#pragma GCC unroll 16
        for (int b = 0; b < nb; b++) {
            const float *at = k + trn_k_index(t0 + b * ATT_W, d, hd); /* W positions of a block's row d */
            const vec kv = valid[b] == ATT_W ? v_load(at) : v_load_n(at, first_lanes(valid[b]), 0.0f);
#pragma GCC unroll 8
            for (int h = 0; h < nh; h++)
                acc[h * nb + b] = v_fma(v_set1(q[h * hd + d]), kv, acc[h * nb + b]);
        }
    }
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

/* Outputs of nh heads for the dimensions [d0, d0 + ATT_ACC / nh vectors) that lie below hd: the FMA chains over
 * every position of e (scores[h * P + t]), times inv[h]. */
ATT_INLINE void values_tile(const float *e, int nh, int hd, const float *v, int64_t v_stride, int n_pos, int d0,
                            const float *inv, float *out, int64_t P) {
    const int nc = ATT_ACC / nh, chunks = TRN_MIN(nc, (hd - d0) / ATT_W);
    vec acc[ATT_ACC];
#pragma GCC unroll 16
    for (int i = 0; i < nh * nc; i++)
        acc[i] = v_set1(0.0f);
    for (int t = 0; t < n_pos; t++) {
        const float *row = v + t * v_stride + d0;
#pragma GCC unroll 16
        for (int c = 0; c < nc; c++) {
            if (c >= chunks)
                break;
            const vec vv = v_load(row + c * ATT_W);
#pragma GCC unroll 8
            for (int h = 0; h < nh; h++)
                acc[h * nc + c] = v_fma(v_set1(e[h * P + t]), vv, acc[h * nc + c]);
        }
    }
#pragma GCC unroll 8
    for (int h = 0; h < nh; h++)
#pragma GCC unroll 16
        for (int c = 0; c < chunks; c++)
            v_store(out + h * hd + d0 + c * ATT_W, v_mul(acc[h * nc + c], v_set1(inv[h])));
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
    for (int h0 = 0; h0 < n_q; h0 += ATT_HEADS) {
        const int nh = TRN_MIN(ATT_HEADS, n_q - h0);
        const float *qh = q + (int64_t)h0 * hd;
        float *oh = out + (int64_t)h0 * hd;
        /* scores, blocks of positions as many as the accumulators hold */
        const int span = ATT_ACC / nh * ATT_W;
        for (int t0 = 0; t0 < n_pos; t0 += span) {
            switch (nh) {
#define SCORES_CASE(N) case N: scores_tile(qh, N, hd, k_cache, t0, n_pos, scale, scores, P); break;
                SCORES_CASE(1) SCORES_CASE(2) SCORES_CASE(3) SCORES_CASE(4)
                SCORES_CASE(5) SCORES_CASE(6) SCORES_CASE(7) default: SCORES_CASE(8)
#undef SCORES_CASE
            }
        }
        float inv[ATT_HEADS];
        for (int h = 0; h < nh; h++)
            inv[h] = softmax_w(scores + h * P, n_pos);
        const int dims = ATT_ACC / nh * ATT_W;
        for (int d0 = 0; d0 < hd; d0 += dims) {
            switch (nh) {
#define VALUES_CASE(N) case N: values_tile(scores, N, hd, v_cache, v_stride, n_pos, d0, inv, oh, P); break;
                VALUES_CASE(1) VALUES_CASE(2) VALUES_CASE(3) VALUES_CASE(4)
                VALUES_CASE(5) VALUES_CASE(6) VALUES_CASE(7) default: VALUES_CASE(8)
#undef VALUES_CASE
            }
        }
    }
}
