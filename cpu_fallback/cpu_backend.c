/* cpu_backend.c: runs a trn_graph on the CPU.
 *
 * prepare: binds weight buffers to the model's tensors (no copy, except that ternary matrices are repacked into
 * the layout the kernel table reads, all in one region on 2 MB pages, and norm weights stored as F16/BF16 are
 * widened to F32 once), allocates the activation arena the planner sized, the KV cache and token history,
 * the int8 activation scratch and a RoPE cos/sin table for every position; and the prefill batch: a second
 * arena where every activation holds one row per token of a batch (the planner's offsets scaled by the batch
 * size, so buffers whose live ranges overlap stay apart), with its int8 scratch.
 * step: one OpenMP parallel region per step; every node is split across the threads (matrix rows, heads,
 * vector ranges) and followed by a barrier, so there is no thread start-up per op. A matrix-vector product
 * with a ternary weight first quantizes its input to int8 blocks (shared by the following products that read
 * the same input, e.g. Q, K and V).
 * prefill: the same nodes over batches of up to max_batch tokens (default 64), one parallel region per batch.
 * Matrix-vector products become matrix-matrix products (ops matmul: each weight block read once per batch), the
 * KV cache is stored for every position of the batch before attention, and token i of the batch attends to
 * positions 0..pos0+i. Every other op runs per token with the arithmetic of a step (vector ranges cut at the
 * same boundaries), so logits are bitwise those of token-by-token steps. The head (final norm, LM head) runs for
 * the last token only, or for every token where all logits are wanted. */
#define _POSIX_C_SOURCE 200809L
#include "cpu_backend.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef TRN_HAVE_OPENMP
#include <omp.h>
#endif

#include "ops.h"

enum { CPU_DEFAULT_BATCH = 64 }; /* prefill tokens per batch where the config does not say */

/* Where each buffer's rows are for one pass over the nodes: a step (one row per buffer) or a prefill batch. */
typedef struct {
    void **data;           /* [n_buffers] the row of the pass's first token */
    size_t *stride;        /* [n_buffers] bytes from one token's row to the next; 0: one row shared by all tokens */
    trn_block_q8_act *xq;  /* int8 copy of the current matrix input: [tokens][xq_stride] blocks */
    int64_t xq_stride;
} buffer_view;

/* One pass: n_tok tokens through nodes [0, n_nodes); the head nodes (from the graph's n_body_nodes on) for
 * tokens [head_first, n_tok) only; SAMPLE, where `sample` is set, for the last token. */
typedef struct {
    const buffer_view *view;
    int n_tok, head_first, n_nodes, sample;
} pass;

typedef struct {
    const trn_graph *graph;
    trn_backend_config config;
    const trn_cpu_ops *ops;
    int n_threads;
    uint8_t *arena;
    uint8_t *repacked;   /* every repacked weight matrix, one region on 2 MB pages (trn_repack_alloc) */
    void **data;         /* [n_buffers] where each buffer's elements are */
    void **owned;        /* [n_buffers] allocations made here (state, outputs, widened norms) */
    trn_matrix *matrix;  /* [n_buffers] weight views */
    trn_block_q8_act *xq; /* int8 copy of the current matrix-vector input */
    float *rope_cos_sin; /* [n_ctx][head_dim] interleaved cos, sin per pair */
    float *scores;       /* [n_threads][n_ctx] attention scratch */
    float *sample_logits; /* [n_vocab] copy the sampler may modify, so the logits output stays raw */
    trn_sampler *sampler;
    char description[96];
    buffer_view one;     /* a step: data, the planned arena, xq */
    buffer_view batch;   /* prefill: rows of up to max_batch tokens */
    int max_batch;
    uint8_t *batch_arena;  /* [arena_bytes * max_batch] */
    int32_t *batch_inputs; /* [2][max_batch]: token ids, then positions */
} cpu_context;

static int get_thread_num(void) {
#ifdef TRN_HAVE_OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

static int default_threads(void) {
#ifdef TRN_HAVE_OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

/* The part [begin, end) of n items that thread ith of nth takes, in units of `align` items. */
static void split(int64_t n, int ith, int nth, int64_t align, int64_t *begin, int64_t *end) {
    const int64_t units = (n + align - 1) / align;
    *begin = TRN_MIN(n, units * ith / nth * align);
    *end = TRN_MIN(n, units * (ith + 1) / nth * align);
}

/* Thread ith's part of n_tok rows of n elements, cut in units of `align` elements counted over all rows: for row
 * t, the elements [*begin, *end) (empty where begin >= end). Each row's pieces start at multiples of `align`, as
 * split() cuts one row, so a kernel meets the same vector and tail boundaries as in a step. */
static void split_row(int64_t n_tok, int64_t n, int ith, int nth, int64_t align, int64_t t, int64_t *begin,
                      int64_t *end) {
    const int64_t units = (n + align - 1) / align;
    int64_t u0, u1;
    split(n_tok * units, ith, nth, 1, &u0, &u1);
    *begin = TRN_MIN(n, TRN_MAX(u0 - t * units, 0) * align);
    *end = TRN_MIN(n, TRN_MAX(TRN_MIN(u1 - t * units, units), 0) * align);
}

static int is_ternary(trn_type type) { return type == TRN_TYPE_TQ1_0 || type == TRN_TYPE_TQ2_0; }

/* Row of token t of buffer id. */
static inline void *row_at(const buffer_view *v, int id, int64_t t) {
    return (uint8_t *)v->data[id] + (size_t)t * v->stride[id];
}

static inline int32_t int_at(const buffer_view *v, int id, int64_t t) { return *(const int32_t *)row_at(v, id, t); }

/* Whether a MATVEC node reads its input as int8 blocks (ternary weight, int8 activations). */
static int reads_int8(const cpu_context *c, const trn_node *node) {
    return node->op == TRN_OP_MATVEC && c->config.act == TRN_ACT_INT8 && is_ternary(c->matrix[node->src[0]].type);
}

/* The first token a node runs for in a pass: every token for the body, the head's tokens for the head, the last
 * token for SAMPLE. */
static int first_token(const cpu_context *c, const pass *p, int n) {
    if (c->graph->nodes[n].op == TRN_OP_SAMPLE)
        return p->n_tok - 1;
    return n >= c->graph->n_body_nodes ? p->head_first : 0;
}

/* Rows of tokens [t0, t0 + n_tok) of buffer id quantized into xq, the threads splitting the (token, block) pairs. */
static void quantize_rows(cpu_context *c, const buffer_view *v, int id, int64_t t0, int64_t n_tok, int ith, int nth) {
    const int64_t blocks = c->graph->buffers[id].ne[0] / TRN_QK_K;
    int64_t begin, end;
    split(n_tok * blocks, ith, nth, 1, &begin, &end);
    for (int64_t i = begin; i < end;) {
        const int64_t t = t0 + i / blocks, b = i % blocks, count = TRN_MIN(end - i, blocks - b);
        c->ops->quantize_act((const float *)row_at(v, id, t) + b * TRN_QK_K, v->xq + t * v->xq_stride + b,
                             count * TRN_QK_K);
        i += count;
    }
}

static void run_node(cpu_context *c, const pass *p, int n, int ith, int nth) {
    const trn_graph *g = c->graph;
    const trn_node *node = &g->nodes[n];
    const trn_cpu_ops *ops = c->ops;
    const buffer_view *v = p->view;
    const int64_t width = g->buffers[node->dst].ne[0];
    const int t0 = first_token(c, p, n), n_tok = p->n_tok - t0;
    int64_t begin, end;
    switch (node->op) {
    case TRN_OP_MATVEC: { /* rows split among the threads; every token of the pass */
        split(width, ith, nth, 4, &begin, &end);
        const trn_matrix *w = &c->matrix[node->src[0]];
        const float *x = row_at(v, node->src[1], t0);
        const trn_block_q8_act *xq = reads_int8(c, node) ? v->xq + t0 * v->xq_stride : NULL;
        float *dst = row_at(v, node->dst, t0);
        if (n_tok == 1) {
            ops->matvec(w, x, xq, dst, begin, end);
            break;
        }
        const int64_t ld_x = (int64_t)(v->stride[node->src[1]] / sizeof(float));
        const int64_t ld_dst = (int64_t)(v->stride[node->dst] / sizeof(float));
        if (ops->matmul)
            ops->matmul(w, x, ld_x, xq, v->xq_stride, dst, ld_dst, n_tok, begin, end);
        else
            trn_matmul_by_matvec(ops->matvec, w, x, ld_x, xq, v->xq_stride, dst, ld_dst, n_tok, begin, end);
        break;
    }
    case TRN_OP_ATTENTION: { /* (head, token) pairs, head-major, so that a thread's heads share KV heads */
        const int group = node->n_head / node->n_head_kv;
        const int64_t stride = g->buffers[node->src[1]].ne[0];
        const float *k_cache = c->data[node->src[1]], *v_cache = c->data[node->src[2]];
        float *scores = c->scores + (int64_t)ith * g->n_ctx;
        split((int64_t)node->n_head * n_tok, ith, nth, 1, &begin, &end);
        for (int64_t i = begin; i < end; i++) {
            const int64_t h = i / n_tok, t = t0 + i % n_tok, kv_offset = (h / group) * node->head_dim;
            ops->attention_head((const float *)row_at(v, node->src[0], t) + h * node->head_dim, k_cache + kv_offset,
                                v_cache + kv_offset, stride, int_at(v, node->src[3], t) + 1, node->head_dim, scores,
                                (float *)row_at(v, node->dst, t) + h * node->head_dim);
        }
        break;
    }
    case TRN_OP_SWIGLU:
    case TRN_OP_ADD: /* vector ranges of every token's row */
        for (int64_t t = 0; t < n_tok; t++) {
            split_row(n_tok, width, ith, nth, 8, t, &begin, &end);
            if (begin >= end)
                continue;
            const float *a = (const float *)row_at(v, node->src[0], t0 + t) + begin;
            const float *b = (const float *)row_at(v, node->src[1], t0 + t) + begin;
            float *dst = (float *)row_at(v, node->dst, t0 + t) + begin;
            if (node->op == TRN_OP_SWIGLU)
                ops->swiglu(a, b, dst, end - begin);
            else
                ops->add(a, b, dst, end - begin);
        }
        break;
    default: /* per-token ops: tokens split among the threads */
        split(n_tok, ith, nth, 1, &begin, &end);
        for (int64_t t = t0 + begin; t < t0 + end; t++) {
            const void *s0 = node->src[0] >= 0 ? row_at(v, node->src[0], t) : NULL;
            const void *s1 = node->src[1] >= 0 ? row_at(v, node->src[1], t) : NULL;
            void *dst = row_at(v, node->dst, t);
            switch (node->op) {
            case TRN_OP_GET_ROW:
                ops->get_row(&c->matrix[node->src[0]], *(const int32_t *)s1, dst);
                break;
            case TRN_OP_RMSNORM:
                ops->rmsnorm(s0, s1, dst, width, node->eps);
                break;
            case TRN_OP_ROPE:
                ops->rope(s0, dst, node->n_head, node->head_dim,
                          c->rope_cos_sin + (int64_t)*(const int32_t *)s1 * node->head_dim);
                break;
            case TRN_OP_STORE_ROW: /* dst is the cache (or history): one row per position */
                memcpy((uint8_t *)c->data[node->dst] + (size_t)*(const int32_t *)s1 * (size_t)width * 4, s0,
                       (size_t)width * 4);
                break;
            case TRN_OP_SAMPLE: {
                const int pos = int_at(v, node->src[2], t);
                memcpy(c->sample_logits, s0, (size_t)g->model->hp.n_vocab * sizeof(float));
                *(int32_t *)dst = trn_sampler_sample(c->sampler, &c->config.sampling, c->sample_logits, s1, pos + 1, pos);
                break;
            }
            default:
                break;
            }
        }
        break;
    }
}

static void run_pass(cpu_context *c, const pass *p) {
    const trn_graph *g = c->graph;
#pragma omp parallel num_threads(c->n_threads)
    {
        const int ith = get_thread_num();
        int nth = 1;
#ifdef TRN_HAVE_OPENMP
        nth = omp_get_num_threads();
#endif
        int quantized = -1, quantized_from = -1; /* buffer (and first token) whose int8 copy is in xq */
        for (int n = 0; n < p->n_nodes; n++) {
            const trn_node *node = &g->nodes[n];
            if (node->op == TRN_OP_SAMPLE && !p->sample)
                continue;
            const int t0 = first_token(c, p, n);
            if (reads_int8(c, node) && (node->src[1] != quantized || t0 != quantized_from)) {
                quantize_rows(c, p->view, node->src[1], t0, p->n_tok - t0, ith, nth);
                quantized = node->src[1];
                quantized_from = t0;
#pragma omp barrier
            }
            run_node(c, p, n, ith, nth);
            if (node->dst == quantized)
                quantized = -1;
#pragma omp barrier
        }
    }
}

static trn_status check_token(const trn_graph *g, int token) {
    if (token < 0 || token >= g->model->hp.n_vocab)
        return trn_fail(TRN_ERR_INVALID, "token id %d is outside the vocabulary of %d", token, g->model->hp.n_vocab);
    return TRN_OK;
}

static trn_status cpu_step(trn_backend *backend, int token, int pos, int want_output, int *next_token) {
    cpu_context *c = backend->context;
    const trn_graph *g = c->graph;
    if (pos < 0 || pos >= g->n_ctx)
        return trn_fail(TRN_ERR_INVALID, "position %d is outside the context of %d", pos, g->n_ctx);
    TRN_TRY(check_token(g, token));
    *(int32_t *)c->data[g->buf_token] = token;
    *(int32_t *)c->data[g->buf_pos] = pos;
    const pass p = {&c->one, 1, 0, want_output ? g->n_nodes : g->n_body_nodes, want_output};
    run_pass(c, &p);
    if (want_output && next_token)
        *next_token = *(const int32_t *)c->data[g->buf_next_token];
    return TRN_OK;
}

static trn_status cpu_prefill(trn_backend *backend, const int *tokens, int n_tokens, int pos0, int want_output,
                              int *next_token, float *all_logits) {
    cpu_context *c = backend->context;
    const trn_graph *g = c->graph;
    const int n_vocab = g->model->hp.n_vocab;
    if (n_tokens < 1)
        return trn_fail(TRN_ERR_INVALID, "prefill of %d tokens: at least one is needed", n_tokens);
    if (pos0 < 0 || (int64_t)pos0 + n_tokens > g->n_ctx)
        return trn_fail(TRN_ERR_INVALID, "positions %d..%lld are outside the context of %d", pos0,
                        (long long)pos0 + n_tokens - 1, g->n_ctx);
    for (int i = 0; i < n_tokens; i++)
        TRN_TRY(check_token(g, tokens[i]));
    buffer_view *v = &c->batch;
    for (int done = 0; done < n_tokens;) {
        const int n = TRN_MIN(c->max_batch, n_tokens - done), last = done + n == n_tokens;
        for (int t = 0; t < n; t++) {
            c->batch_inputs[t] = tokens[done + t];
            c->batch_inputs[c->max_batch + t] = pos0 + done + t;
        }
        /* logits: straight into the caller's rows, or (last token only) into the step's buffer */
        v->data[g->buf_logits] = all_logits ? all_logits + (size_t)done * n_vocab : c->data[g->buf_logits];
        v->stride[g->buf_logits] = all_logits ? (size_t)n_vocab * sizeof(float) : 0;
        const int head = all_logits || (last && want_output);
        const pass p = {v, n, all_logits ? 0 : n - 1, head ? g->n_nodes : g->n_body_nodes, last && want_output};
        run_pass(c, &p);
        done += n;
    }
    if (want_output) {
        if (all_logits)
            memcpy(c->data[g->buf_logits], all_logits + (size_t)(n_tokens - 1) * n_vocab, (size_t)n_vocab * sizeof(float));
        if (next_token)
            *next_token = *(const int32_t *)c->data[g->buf_next_token];
    }
    return TRN_OK;
}

static const float *cpu_logits(trn_backend *backend) {
    cpu_context *c = backend->context;
    return c->data[c->graph->buf_logits];
}

static const char *cpu_describe(trn_backend *backend) {
    cpu_context *c = backend->context;
    return c->description;
}

static void cpu_release(cpu_context *c) {
    if (!c)
        return;
    if (c->graph && c->owned)
        for (int i = 0; i < c->graph->n_buffers; i++)
            trn_free(c->owned[i]);
    free(c->owned);
    free(c->data);
    free(c->matrix);
    trn_free(c->arena);
    trn_free(c->repacked);
    trn_free(c->xq);
    trn_free(c->rope_cos_sin);
    trn_free(c->scores);
    trn_free(c->sample_logits);
    trn_sampler_free(c->sampler);
    free(c->one.stride);
    free(c->batch.data);
    free(c->batch.stride);
    trn_free(c->batch.xq);
    trn_free(c->batch_arena);
    trn_free(c->batch_inputs);
    memset(c, 0, sizeof(*c));
}

/* Whether some node uses buffer `id` as the matrix of a MATVEC (an embedding table is only read by rows). */
static int node_reads_as_matrix(const trn_graph *g, int id) {
    for (int n = 0; n < g->n_nodes; n++)
        if (g->nodes[n].op == TRN_OP_MATVEC && g->nodes[n].src[0] == id)
            return 1;
    return 0;
}

/* The layout buffer `id` is repacked into for c's kernel table (ops.h), or TRN_LAYOUT_ROWS where it stays as
 * loaded: ternary matrices that some MATVEC reads, with at least one full group of rows. */
static trn_layout repack_layout(const cpu_context *c, int id) {
    const trn_buffer *buf = &c->graph->buffers[id];
    const trn_layout layout = buf->kind != TRN_BUF_WEIGHT      ? TRN_LAYOUT_ROWS
                              : buf->type == TRN_TYPE_TQ2_0 ? c->ops->tq2_0_layout
                              : buf->type == TRN_TYPE_TQ1_0 ? c->ops->tq1_0_layout
                                                            : TRN_LAYOUT_ROWS;
    return layout != TRN_LAYOUT_ROWS && buf->ne[1] >= trn_layout_group_rows(layout) && node_reads_as_matrix(c->graph, id)
               ? layout
               : TRN_LAYOUT_ROWS;
}

/* Physical memory in bytes, or 0 if unknown. */
static double physical_memory(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page > 0 ? (double)pages * (double)page : 0.0;
}

static trn_status cpu_prepare(trn_backend *backend, const trn_graph *g, const trn_backend_config *config) {
    cpu_context *c = backend->context;
    cpu_release(c);
    const double state = (double)trn_graph_state_bytes(g), memory = physical_memory();
    if (memory > 0 && state > 0.75 * memory)
        return trn_fail(TRN_ERR_NOMEM, "a context of %d needs %.1f GB of KV cache, more than this machine's %.1f GB "
                        "of memory allows; choose a smaller -c", g->n_ctx, state / 1e9, memory / 1e9);
    c->graph = g;
    c->config = *config;
    const char *kernels;
    c->ops = trn_cpu_ops_for_backend(config->force_scalar, &kernels);
    if (!c->ops)
        return trn_fail(TRN_ERR_INVALID, "kernels '%s' (TRN_KERNELS) are not available: expected scalar, avx2, avx512 or "
                        "auto, a table this build and CPU can run", kernels);
    c->n_threads = config->n_threads > 0 ? config->n_threads : default_threads();
#ifndef TRN_HAVE_OPENMP
    c->n_threads = 1;
#endif
    const trn_hparams *hp = &g->model->hp;
    c->data = calloc((size_t)g->n_buffers, sizeof(void *));
    c->owned = calloc((size_t)g->n_buffers, sizeof(void *));
    c->matrix = calloc((size_t)g->n_buffers, sizeof(trn_matrix));
    c->arena = trn_alloc(g->arena_bytes);
    int64_t max_cols = 0;
    for (int i = 0; i < g->n_buffers; i++)
        if (g->buffers[i].kind == TRN_BUF_WEIGHT)
            max_cols = TRN_MAX(max_cols, g->buffers[i].ne[0]);
    c->xq = trn_alloc((size_t)(max_cols / TRN_QK_K + 1) * sizeof(trn_block_q8_act));
    c->rope_cos_sin = trn_alloc((size_t)g->n_ctx * (size_t)hp->head_dim * sizeof(float));
    c->scores = trn_alloc((size_t)c->n_threads * (size_t)g->n_ctx * sizeof(float));
    c->sampler = trn_sampler_new(hp->n_vocab);
    c->sample_logits = trn_alloc((size_t)hp->n_vocab * sizeof(float));
    c->max_batch = TRN_MIN(config->max_batch > 0 ? config->max_batch : CPU_DEFAULT_BATCH, g->n_ctx);
    const int64_t xq_stride = TRN_MAX(max_cols / TRN_QK_K, 1);
    c->one.stride = calloc((size_t)g->n_buffers, sizeof(size_t));
    c->batch.data = calloc((size_t)g->n_buffers, sizeof(void *));
    c->batch.stride = calloc((size_t)g->n_buffers, sizeof(size_t));
    c->batch.xq = trn_alloc((size_t)(c->max_batch * xq_stride) * sizeof(trn_block_q8_act));
    c->batch_arena = trn_alloc(g->arena_bytes * (size_t)c->max_batch);
    c->batch_inputs = trn_alloc(2 * (size_t)c->max_batch * sizeof(int32_t));
    if (!c->data || !c->owned || !c->matrix || !c->arena || !c->xq || !c->rope_cos_sin || !c->scores || !c->sampler ||
        !c->sample_logits || !c->one.stride || !c->batch.data || !c->batch.stride || !c->batch.xq || !c->batch_arena ||
        !c->batch_inputs) {
        cpu_release(c);
        return trn_fail(TRN_ERR_NOMEM, "out of memory preparing the CPU backend");
    }
    size_t repacked_bytes = 0, repacked_at = 0; /* each repacked matrix 64-byte aligned in c->repacked */
    for (int i = 0; i < g->n_buffers; i++)
        if (repack_layout(c, i) != TRN_LAYOUT_ROWS)
            repacked_bytes += (g->buffers[i].bytes + 63) & ~(size_t)63;
    if (repacked_bytes && !(c->repacked = trn_repack_alloc(repacked_bytes))) {
        cpu_release(c);
        return trn_fail(TRN_ERR_NOMEM, "out of memory repacking %.1f MB of weights", repacked_bytes / 1e6);
    }
    for (int i = 0; i < g->n_buffers; i++) {
        const trn_buffer *buf = &g->buffers[i];
        switch (buf->kind) {
        case TRN_BUF_WEIGHT:
            if (buf->ne[1] == 1 && buf->type != TRN_TYPE_F32) { /* a norm weight: widen to F32 once */
                float *wide = trn_alloc((size_t)buf->ne[0] * sizeof(float));
                if (!wide) {
                    cpu_release(c);
                    return trn_fail(TRN_ERR_NOMEM, "out of memory preparing the CPU backend");
                }
                trn_cpu_ops_ref()->get_row(&(trn_matrix){buf->type, buf->tensor->data, 1, buf->ne[0],
                                                         trn_row_bytes(buf->type, buf->ne[0]), TRN_LAYOUT_ROWS},
                                           0, wide);
                c->owned[i] = c->data[i] = wide;
            } else {
                c->data[i] = (void *)buf->tensor->data;
            }
            c->matrix[i] = (trn_matrix){buf->type, buf->tensor->data, buf->ne[1], buf->ne[0],
                                        trn_row_bytes(buf->type, buf->ne[0]), TRN_LAYOUT_ROWS};
            if (repack_layout(c, i) != TRN_LAYOUT_ROWS) {
                /* repack once into the layout the table's kernels read (ops.h): a group of rows is one stream */
                c->matrix[i] = trn_repack(&c->matrix[i], repack_layout(c, i), c->repacked + repacked_at);
                repacked_at += (buf->bytes + 63) & ~(size_t)63;
            }
            break;
        case TRN_BUF_ACTIVATION:
            c->data[i] = c->arena + buf->offset;
            break;
        default: /* inputs, state, outputs: their own zeroed memory */
            c->owned[i] = c->data[i] = trn_alloc(buf->bytes);
            if (!c->data[i]) {
                cpu_release(c);
                return trn_fail(TRN_ERR_NOMEM, "out of memory allocating '%s' (%zu bytes)", buf->name, buf->bytes);
            }
        }
    }
    /* The two views: a step's rows (all shared), and a batch's (activations and inputs one row per token) */
    c->one = (buffer_view){c->data, c->one.stride, c->xq, 0};
    c->batch.xq_stride = xq_stride;
    for (int i = 0; i < g->n_buffers; i++) {
        const trn_buffer *buf = &g->buffers[i];
        c->batch.data[i] = c->data[i];
        if (buf->kind == TRN_BUF_ACTIVATION) {
            c->batch.data[i] = c->batch_arena + buf->offset * (size_t)c->max_batch;
            c->batch.stride[i] = buf->bytes;
        }
    }
    c->batch.data[g->buf_token] = c->batch_inputs;
    c->batch.data[g->buf_pos] = c->batch_inputs + c->max_batch;
    c->batch.stride[g->buf_token] = c->batch.stride[g->buf_pos] = sizeof(int32_t);
    /* RoPE angles in double precision: angle(pos, i) = pos * base^(-2i / head_dim) */
    for (int pos = 0; pos < g->n_ctx; pos++)
        for (int i = 0; i < hp->head_dim / 2; i++) {
            const double angle = pos * pow((double)hp->rope_base, -2.0 * i / hp->head_dim);
            c->rope_cos_sin[(int64_t)pos * hp->head_dim + 2 * i] = (float)cos(angle);
            c->rope_cos_sin[(int64_t)pos * hp->head_dim + 2 * i + 1] = (float)sin(angle);
        }
    snprintf(c->description, sizeof(c->description), "cpu (%s kernels, act %s, %d thread%s)", c->ops->name,
             config->act == TRN_ACT_F32 ? "f32" : "int8", c->n_threads, c->n_threads == 1 ? "" : "s");
    return TRN_OK;
}

static void cpu_free(trn_backend *backend) {
    if (!backend)
        return;
    cpu_release(backend->context);
    free(backend->context);
    free(backend);
}

static const trn_backend_i cpu_iface = {
    .name = "cpu",
    .prepare = cpu_prepare,
    .step = cpu_step,
    .logits = cpu_logits,
    .describe = cpu_describe,
    .free = cpu_free,
    .prefill = cpu_prefill,
};

trn_status trn_cpu_backend_create(trn_backend **out) {
    trn_backend *backend = calloc(1, sizeof(*backend));
    cpu_context *c = calloc(1, sizeof(*c));
    if (!backend || !c) {
        free(backend);
        free(c);
        return trn_fail(TRN_ERR_NOMEM, "out of memory creating the CPU backend");
    }
    backend->iface = &cpu_iface;
    backend->context = c;
    *out = backend;
    return TRN_OK;
}
