/* cpu_backend.c: runs a trn_graph on the CPU.
 *
 * prepare: binds weight buffers to the model's tensors (no copy, except that ternary matrices are repacked into
 * the layout the kernel table reads, all in one region on 2 MB pages, and norm weights stored as F16/BF16 are
 * widened to F32 once), allocates the activation arena the planner sized, the KV cache and token history,
 * the int8 activation scratch and a RoPE cos/sin table for every position.
 * step: one OpenMP parallel region per step; every node is split across the threads (matrix rows, heads,
 * vector ranges) and followed by a barrier, so there is no thread start-up per op. A matrix-vector product
 * with a ternary weight first quantizes its input to int8 blocks (shared by the following products that read
 * the same input, e.g. Q, K and V). */
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

static int is_ternary(trn_type type) { return type == TRN_TYPE_TQ1_0 || type == TRN_TYPE_TQ2_0; }

static void run_node(cpu_context *c, const trn_node *node, int ith, int nth) {
    const trn_graph *g = c->graph;
    const trn_cpu_ops *ops = c->ops;
    const trn_buffer *dst_buf = &g->buffers[node->dst];
    float *dst = c->data[node->dst];
    const void *s0 = node->src[0] >= 0 ? c->data[node->src[0]] : NULL;
    const void *s1 = node->src[1] >= 0 ? c->data[node->src[1]] : NULL;
    int64_t begin, end;
    switch (node->op) {
    case TRN_OP_GET_ROW:
        if (ith == 0)
            ops->get_row(&c->matrix[node->src[0]], *(const int32_t *)s1, dst);
        break;
    case TRN_OP_RMSNORM:
        if (ith == 0)
            ops->rmsnorm(s0, s1, dst, dst_buf->ne[0], node->eps);
        break;
    case TRN_OP_MATVEC:
        split(dst_buf->ne[0], ith, nth, 4, &begin, &end);
        ops->matvec(&c->matrix[node->src[0]], s1, c->config.act == TRN_ACT_INT8 ? c->xq : NULL, dst, begin, end);
        break;
    case TRN_OP_ROPE:
        if (ith == 0) {
            const int pos = *(const int32_t *)s1;
            ops->rope(s0, dst, node->n_head, node->head_dim, c->rope_cos_sin + (int64_t)pos * node->head_dim);
        }
        break;
    case TRN_OP_STORE_ROW:
        if (ith == 0) {
            const int64_t width = dst_buf->ne[0];
            const int pos = *(const int32_t *)s1;
            memcpy((uint8_t *)dst + (size_t)pos * (size_t)width * 4, s0, (size_t)width * 4);
        }
        break;
    case TRN_OP_ATTENTION: {
        const int pos = *(const int32_t *)c->data[node->src[3]];
        const int group = node->n_head / node->n_head_kv;
        const int64_t stride = g->buffers[node->src[1]].ne[0];
        const float *k_cache = c->data[node->src[1]], *v_cache = c->data[node->src[2]];
        float *scores = c->scores + (int64_t)ith * g->n_ctx;
        split(node->n_head, ith, nth, 1, &begin, &end);
        for (int64_t h = begin; h < end; h++) {
            const int64_t kv_offset = (h / group) * node->head_dim;
            ops->attention_head((const float *)s0 + h * node->head_dim, k_cache + kv_offset, v_cache + kv_offset, stride,
                                pos + 1, node->head_dim, scores, dst + h * node->head_dim);
        }
        break;
    }
    case TRN_OP_SWIGLU:
        split(dst_buf->ne[0], ith, nth, 8, &begin, &end);
        ops->swiglu((const float *)s0 + begin, (const float *)s1 + begin, dst + begin, end - begin);
        break;
    case TRN_OP_ADD:
        split(dst_buf->ne[0], ith, nth, 8, &begin, &end);
        ops->add((const float *)s0 + begin, (const float *)s1 + begin, dst + begin, end - begin);
        break;
    case TRN_OP_SAMPLE:
        if (ith == 0) {
            const int pos = *(const int32_t *)c->data[node->src[2]];
            memcpy(c->sample_logits, s0, (size_t)g->model->hp.n_vocab * sizeof(float));
            *(int32_t *)dst = trn_sampler_sample(c->sampler, &c->config.sampling, c->sample_logits, s1, pos + 1, pos);
        }
        break;
    default:
        break;
    }
}

static void run_nodes(cpu_context *c, int n_nodes) {
    const trn_graph *g = c->graph;
#pragma omp parallel num_threads(c->n_threads)
    {
        const int ith = get_thread_num();
        int nth = 1;
#ifdef TRN_HAVE_OPENMP
        nth = omp_get_num_threads();
#endif
        int quantized = -1; /* buffer whose int8 copy is in c->xq; the same on every thread */
        for (int n = 0; n < n_nodes; n++) {
            const trn_node *node = &g->nodes[n];
            if (node->op == TRN_OP_MATVEC && c->config.act == TRN_ACT_INT8 && is_ternary(c->matrix[node->src[0]].type) &&
                node->src[1] != quantized) {
                const int64_t blocks = g->buffers[node->src[1]].ne[0] / TRN_QK_K;
                int64_t begin, end;
                split(blocks, ith, nth, 1, &begin, &end);
                c->ops->quantize_act((const float *)c->data[node->src[1]] + begin * TRN_QK_K, c->xq + begin,
                                     (end - begin) * TRN_QK_K);
                quantized = node->src[1];
#pragma omp barrier
            }
            run_node(c, node, ith, nth);
            if (node->dst == quantized)
                quantized = -1;
#pragma omp barrier
        }
    }
}

static trn_status cpu_step(trn_backend *backend, int token, int pos, int want_output, int *next_token) {
    cpu_context *c = backend->context;
    const trn_graph *g = c->graph;
    if (pos < 0 || pos >= g->n_ctx)
        return trn_fail(TRN_ERR_INVALID, "position %d is outside the context of %d", pos, g->n_ctx);
    if (token < 0 || token >= g->model->hp.n_vocab)
        return trn_fail(TRN_ERR_INVALID, "token id %d is outside the vocabulary of %d", token, g->model->hp.n_vocab);
    *(int32_t *)c->data[g->buf_token] = token;
    *(int32_t *)c->data[g->buf_pos] = pos;
    run_nodes(c, want_output ? g->n_nodes : g->n_body_nodes);
    if (want_output && next_token)
        *next_token = *(const int32_t *)c->data[g->buf_next_token];
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
    if (!c->data || !c->owned || !c->matrix || !c->arena || !c->xq || !c->rope_cos_sin || !c->scores || !c->sampler ||
        !c->sample_logits) {
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
