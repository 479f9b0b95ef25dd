/* ops_ref.c: the scalar reference of every CPU op: plain loops, no intrinsics. This file defines what each op
 * computes; the AVX2 and AVX-512 tables (ops_avx2.c, ops_avx512.c) are tested against it, and share its helpers
 * trn_matmul_by_matvec and trn_matvec_via_dequant. It reads every weight layout (layout.h) and asks for none (its
 * table names the file layout). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ops.h"
#include "quants.h"

static void quantize_act_ref(const float *x, trn_block_q8_act *xq, int64_t n) {
    for (int64_t b = 0; b < n / TRN_QK_K; b++) {
        const float *xb = x + b * TRN_QK_K;
        float amax = 0.0f;
        for (int i = 0; i < TRN_QK_K; i++)
            amax = fmaxf(amax, fabsf(xb[i]));
        const float d = amax / 127.0f;
        const float id = d > 0.0f ? 1.0f / d : 0.0f;
        int32_t sum = 0;
        for (int i = 0; i < TRN_QK_K; i++) {
            int q = (int)lrintf(xb[i] * id); /* round half to even, as vcvtps2dq does */
            xq[b].q[i] = (int8_t)q;
            sum += q;
        }
        xq[b].d = d;
        xq[b].sum = sum;
    }
}

/* x[n] . y[n], accumulated in order. */
static float dot_f32_ref(const float *x, const float *y, int64_t n) {
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++)
        sum += x[i] * y[i];
    return sum;
}

/* One ternary row: for each block, isum = sum(code * q) - sum(q) exactly, then acc += (d_w * d_x) * isum. */
static float ternary_row_dot(const uint8_t codes[TRN_QK_K], const trn_block_q8_act *xb) {
    int32_t isum = 0;
    for (int i = 0; i < TRN_QK_K; i++)
        isum += (int32_t)codes[i] * xb->q[i];
    return (float)(isum - xb->sum);
}

/* Codes of block b of row r of a ternary matrix (either layout), in weight order; returns the block's scale. */
static float ternary_block(const trn_matrix *w, int64_t r, int64_t b, uint8_t codes[TRN_QK_K]) {
    trn_ternary_block scratch;
    const trn_ternary_block *block = trn_ternary_block_at(w, r, b, &scratch);
    if (w->type == TRN_TYPE_TQ2_0) {
        trn_tq2_0_block_codes(&block->tq2_0, codes);
        return trn_fp16_to_f32(block->tq2_0.d);
    }
    trn_tq1_0_block_codes(&block->tq1_0, codes);
    return trn_fp16_to_f32(block->tq1_0.d);
}

void trn_matvec_via_dequant(const trn_matrix *w, const float *x, float *dst, int64_t r0, int64_t r1,
                            float (*dot)(const float *, const float *, int64_t)) {
    float *row = malloc((size_t)w->cols * sizeof(float));
    if (!row)
        abort(); /* a few KB; the backend checked memory at prepare */
    for (int64_t r = r0; r < r1; r++) {
        trn_dequantize_row(w->type, (const uint8_t *)w->data + r * w->row_bytes, row, w->cols);
        dst[r] = dot(row, x, w->cols);
    }
    free(row);
}

static void matvec_ref(const trn_matrix *w, const float *x, const trn_block_q8_act *xq, float *dst, int64_t r0,
                       int64_t r1) {
    const int64_t cols = w->cols;
    for (int64_t r = r0; r < r1; r++) {
        const uint8_t *row = (const uint8_t *)w->data + r * w->row_bytes; /* file layout (non-ternary types) */
        float acc = 0.0f;
        switch (w->type) {
        case TRN_TYPE_F32:
            acc = dot_f32_ref((const float *)row, x, cols);
            break;
        case TRN_TYPE_F16:
            for (int64_t i = 0; i < cols; i++)
                acc += trn_fp16_to_f32(((const trn_fp16 *)row)[i]) * x[i];
            break;
        case TRN_TYPE_BF16:
            for (int64_t i = 0; i < cols; i++)
                acc += trn_bf16_to_f32(((const trn_bf16 *)row)[i]) * x[i];
            break;
        case TRN_TYPE_Q8_0: {
            const trn_block_q8_0 *blocks = (const trn_block_q8_0 *)row;
            for (int64_t b = 0; b < cols / TRN_QK8_0; b++) {
                float sum = 0.0f;
                for (int i = 0; i < TRN_QK8_0; i++)
                    sum += (float)blocks[b].qs[i] * x[b * TRN_QK8_0 + i];
                acc += trn_fp16_to_f32(blocks[b].d) * sum;
            }
            break;
        }
        case TRN_TYPE_TQ2_0:
        case TRN_TYPE_TQ1_0: {
            uint8_t codes[TRN_QK_K];
            for (int64_t b = 0; b < cols / TRN_QK_K; b++) {
                const float d = ternary_block(w, r, b, codes);
                if (xq) {
                    acc += (d * xq[b].d) * ternary_row_dot(codes, &xq[b]);
                } else { /* float activations */
                    float sum = 0.0f;
                    for (int i = 0; i < TRN_QK_K; i++)
                        sum += (float)((int)codes[i] - 1) * x[b * TRN_QK_K + i];
                    acc += d * sum;
                }
            }
            break;
        }
        default: /* Q4_K, Q6_K */
            trn_matvec_via_dequant(w, x, dst, r, r + 1, dot_f32_ref);
            continue;
        }
        dst[r] = acc;
    }
}

int trn_rows_range_next(trn_rows *s, int64_t *r0, int64_t *r1) {
    if (s->r0 >= s->r1)
        return 0;
    *r0 = s->r0, *r1 = s->r1;
    s->r0 = s->r1;
    return 1;
}

void trn_matmul_by_matvec(trn_matvec_fn matvec, const trn_matrix *w, const float *x, int64_t ld_x,
                          const trn_block_q8_act *xq, int64_t ld_xq, float *dst, int64_t ld_dst, int64_t n_tok,
                          trn_rows *rows) {
    int64_t r0, r1;
    while (rows->next(rows, &r0, &r1))
        for (int64_t t = 0; t < n_tok; t++)
            matvec(w, x + t * ld_x, xq ? xq + t * ld_xq : NULL, dst + t * ld_dst, r0, r1);
}

/* Ternary rows with int8 activations: each block's codes are decoded once and applied to every token; per token
 * the steps are matvec_ref's (dst starts at 0.0f and takes acc += (d_w * d_x) * isum block by block). Other types
 * and float activations run matvec_ref per token. */
static void matmul_ref(const trn_matrix *w, const float *x, int64_t ld_x, const trn_block_q8_act *xq, int64_t ld_xq,
                       float *dst, int64_t ld_dst, int64_t n_tok, trn_rows *rows) {
    if (!xq || (w->type != TRN_TYPE_TQ2_0 && w->type != TRN_TYPE_TQ1_0)) {
        trn_matmul_by_matvec(matvec_ref, w, x, ld_x, xq, ld_xq, dst, ld_dst, n_tok, rows);
        return;
    }
    uint8_t codes[TRN_QK_K];
    int64_t r0, r1;
    while (rows->next(rows, &r0, &r1)) {
        for (int64_t r = r0; r < r1; r++) {
            for (int64_t t = 0; t < n_tok; t++)
                dst[t * ld_dst + r] = 0.0f;
            for (int64_t b = 0; b < w->cols / TRN_QK_K; b++) {
                const float d = ternary_block(w, r, b, codes);
                for (int64_t t = 0; t < n_tok; t++) {
                    const trn_block_q8_act *xb = &xq[t * ld_xq + b];
                    dst[t * ld_dst + r] += (d * xb->d) * ternary_row_dot(codes, xb);
                }
            }
        }
    }
}

static void get_row_ref(const trn_matrix *w, int64_t row, float *dst) { trn_get_row_any_layout(w, row, dst); }

static void rmsnorm_ref(const float *x, const float *weight, float *dst, int64_t n, float eps, int64_t begin,
                        int64_t end) {
    float ss = 0.0f;
    for (int64_t i = 0; i < n; i++)
        ss += x[i] * x[i];
    const float scale = 1.0f / sqrtf(ss / (float)n + eps);
    for (int64_t i = begin; i < end; i++)
        dst[i] = x[i] * scale * weight[i];
}

static void rope_ref(const float *src, float *dst, int n_heads, int head_dim, const float *cos_sin) {
    for (int h = 0; h < n_heads; h++) {
        const float *s = src + h * head_dim;
        float *d = dst + h * head_dim;
        for (int i = 0; i < head_dim; i += 2) {
            const float c = cos_sin[i], sn = cos_sin[i + 1];
            const float x0 = s[i], x1 = s[i + 1];
            d[i] = x0 * c - x1 * sn;
            d[i + 1] = x0 * sn + x1 * c;
        }
    }
}

static void attention_head_ref(const float *q, const float *k_cache, const float *v_cache, int64_t stride, int n_pos,
                               int head_dim, float *scores, float *out) {
    const float scale = 1.0f / sqrtf((float)head_dim);
    float max = -INFINITY;
    for (int t = 0; t < n_pos; t++) {
        float dot = 0.0f;
        for (int d = 0; d < head_dim; d++)
            dot += q[d] * k_cache[trn_k_index(t, d, head_dim)];
        scores[t] = dot * scale;
        max = fmaxf(max, scores[t]);
    }
    float sum = 0.0f;
    for (int t = 0; t < n_pos; t++) {
        scores[t] = expf(scores[t] - max);
        sum += scores[t];
    }
    const float inv = 1.0f / sum;
    for (int i = 0; i < head_dim; i++)
        out[i] = 0.0f;
    for (int t = 0; t < n_pos; t++) {
        const float p = scores[t] * inv;
        const float *v = v_cache + t * stride;
        for (int i = 0; i < head_dim; i++)
            out[i] += p * v[i];
    }
}

static void attention_ref(const float *q, int n_q, const float *k_cache, const float *v_cache, int64_t stride, int n_pos,
                          int head_dim, float *scores, float *out) {
    for (int h = 0; h < n_q; h++)
        attention_head_ref(q + (int64_t)h * head_dim, k_cache, v_cache, stride, n_pos, head_dim, scores,
                           out + (int64_t)h * head_dim);
}

static void swiglu_ref(const float *gate, const float *up, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        dst[i] = gate[i] / (1.0f + expf(-gate[i])) * up[i];
}

static void add_ref(const float *a, const float *b, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        dst[i] = a[i] + b[i];
}

static const trn_cpu_ops ref_ops = {
    .name = "scalar",
    .tq2_0_layout = TRN_LAYOUT_ROWS,
    .tq1_0_layout = TRN_LAYOUT_ROWS,
    .quantize_act = quantize_act_ref,
    .matvec = matvec_ref,
    .get_row = get_row_ref,
    .rmsnorm = rmsnorm_ref,
    .rope = rope_ref,
    .attention = attention_ref,
    .swiglu = swiglu_ref,
    .add = add_ref,
    .matmul = matmul_ref,
    .matmul_kernel = "scalar",
    .matmul_split_tokens = TRN_MATMUL_TILE_TOKENS, /* as the avx512 table, so that scalar builds test that path */
};

const trn_cpu_ops *trn_cpu_ops_ref(void) { return &ref_ops; }
