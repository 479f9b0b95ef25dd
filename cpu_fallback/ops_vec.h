/* ops_vec.h: internal to cpu_fallback/: a thin layer over float vectors of TRN_VEC_W lanes (8: AVX2, the default;
 * 16: AVX-512, where the including file defines TRN_VEC_AVX512 and is compiled with the AVX-512 flags), so that a
 * kernel written once on it (ops_attention.c) builds at both widths, and the exp those kernels and the AVX2 file
 * share. Every operation is one correctly rounded instruction per lane, so a lane's result does not depend on the
 * width. Include once per file, after <immintrin.h>. */
#ifndef TRN_OPS_VEC_H
#define TRN_OPS_VEC_H

#include <immintrin.h>
#include <math.h>

#if defined(TRN_VEC_AVX512)
#define TRN_VEC_W 16
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
#define TRN_VEC_W 8
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

#define TRN_VEC_INLINE static inline __attribute__((always_inline))

/* exp(x) lane by lane: x = n ln2 + r, exp(r) by a degree-6 polynomial (Cephes coefficients), times 2^n; relative
 * error about 2e-7 over the clamped range. Every step is one correctly rounded operation, so a lane's result does
 * not depend on the vector width. */
TRN_VEC_INLINE vec exp_w(vec x) {
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
TRN_VEC_INLINE float tree_sum8(__m256 v) {
    const __m256 h = _mm256_hadd_ps(v, v);
    const __m256 hh = _mm256_hadd_ps(h, h);
    return _mm_cvtss_f32(_mm_add_ss(_mm256_castps256_ps128(hh), _mm256_extractf128_ps(hh, 1)));
}

#endif
