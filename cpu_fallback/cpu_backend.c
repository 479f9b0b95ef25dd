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
 * prefill: the same nodes over batches of up to max_batch tokens (default 128), one parallel region per batch.
 * Matrix-vector products become matrix-matrix products (ops matmul: each weight block read once per batch), the
 * KV cache is stored for every position of the batch before attention, and token i of the batch attends to
 * positions 0..pos0+i. Every other op runs per token with the arithmetic of a step (vector ranges cut at the
 * same boundaries), so logits are bitwise those of token-by-token steps. The head (final norm, LM head) runs for
 * the last token only, or for every token where all logits are wanted.
 *
 * This file: the backend interface (prepare, step, prefill, logits, free); the plan is cpu_plan.c's, running a pass
 * cpu_exec.c's, the profile cpu_profile.c's (cpu_internal.h). */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef TRN_HAVE_OPENMP
#include <omp.h>
#endif

#include "cpu_internal.h"

static int default_threads(void) {
#ifdef TRN_HAVE_OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

/* Bytes of KV cache `id` in kv_region: every KV head's part, 64-byte aligned. */
static size_t cache_bytes(const cpu_context *c, int id) {
    const int64_t heads = c->graph->buffers[id].ne[0] / c->cache_head_dim[id];
    return ((size_t)(heads * cache_head_floats(c, id, c->graph->n_ctx)) * sizeof(float) + 63) & ~(size_t)63;
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
    const pass p = {&c->one, 1, 0, want_output ? g->n_nodes : g->n_body_nodes, want_output, 0};
    trn_cpu_run_pass(c, &p);
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
        const pass p = {v, n, all_logits ? 0 : n - 1, head ? g->n_nodes : g->n_body_nodes, last && want_output, 0};
        trn_cpu_run_pass(c, &p);
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

/* Tokens of several sequence slots as batches of up to max_batch: the body for every token (each one's KV cache and
 * attention in its own slot), then the rows of the tokens whose logits are wanted moved to the front of the residual
 * stream and the head run for those alone, straight into the caller's rows. Per token the arithmetic is a prefill's,
 * so a slot's logits are bitwise those of its tokens run alone. */
static trn_status cpu_decode_batch(trn_backend *backend, const trn_batch_token *tokens, int n_tokens, float *logits) {
    cpu_context *c = backend->context;
    const trn_graph *g = c->graph;
    const int n_vocab = g->model->hp.n_vocab;
    for (int i = 0; i < n_tokens; i++) {
        TRN_TRY(check_token(g, tokens[i].token));
        if (tokens[i].slot < 0 || tokens[i].slot >= c->n_slots || tokens[i].pos < 0 || tokens[i].pos >= g->n_ctx)
            return trn_fail(TRN_ERR_INVALID, "slot %d, position %d: the backend holds %d slots of %d positions",
                            tokens[i].slot, tokens[i].pos, c->n_slots, g->n_ctx);
    }
    buffer_view *v = &c->batch;
    const int residual = g->nodes[g->n_body_nodes].src[0]; /* what the head reads */
    const size_t row_bytes = g->buffers[residual].bytes;
    v->slot = c->batch_slots;
    for (int done = 0, out = 0; done < n_tokens;) {
        const int n = TRN_MIN(c->max_batch, n_tokens - done);
        int wanted = 0;
        for (int t = 0; t < n; t++) {
            c->batch_inputs[t] = tokens[done + t].token;
            c->batch_inputs[c->max_batch + t] = tokens[done + t].pos;
            c->batch_slots[t] = tokens[done + t].slot;
        }
        const pass body = {v, n, n, g->n_body_nodes, 0, 0};
        trn_cpu_run_pass(c, &body);
        for (int t = 0; t < n; t++) /* the wanted rows to the front, in order (row t moves to row wanted <= t) */
            if (tokens[done + t].logits) {
                if (wanted != t)
                    memcpy(row_at(v, residual, wanted), row_at(v, residual, t), row_bytes);
                c->batch_inputs[c->max_batch + wanted] = tokens[done + t].pos;
                c->batch_slots[wanted++] = tokens[done + t].slot;
            }
        if (wanted) {
            v->data[g->buf_logits] = logits + (size_t)out * n_vocab;
            v->stride[g->buf_logits] = (size_t)n_vocab * sizeof(float);
            const pass head = {v, wanted, 0, g->n_nodes, 0, g->n_body_nodes};
            trn_cpu_run_pass(c, &head);
            out += wanted;
        }
        done += n;
    }
    v->slot = NULL;
    v->data[g->buf_logits] = c->data[g->buf_logits];
    v->stride[g->buf_logits] = 0;
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
    trn_cpu_print_profile(c);
    free(c->profile);
    free(c->plan);
    trn_free(c->queues);
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
    free(c->cache_head_dim);
    free(c->cache_is_k);
    trn_free(c->kv_region);
    free(c->group_end);
    trn_free(c->sample_logits);
    trn_sampler_free(c->sampler);
    free(c->one.stride);
    free(c->batch.data);
    free(c->batch.stride);
    trn_free(c->batch.xq);
    trn_free(c->batch_arena);
    trn_free(c->batch_inputs);
    trn_free(c->batch_slots);
    memset(c, 0, sizeof(*c));
}

/* Whether some node uses buffer `id` as the matrix of a MATVEC (an embedding table is only read by rows). */
static int node_reads_as_matrix(const trn_graph *g, int id) {
    for (int n = 0; n < g->n_nodes; n++)
        if (g->nodes[n].op == TRN_OP_MATVEC && g->nodes[n].src[0] == id)
            return 1;
    return 0;
}

/* The type buffer `id` is held as: TQ2_0 for a TQ1_0 matrix that some MATVEC reads where c's kernel table asks for
 * it (ops.h, tq1_0_as_tq2_0) and TRN_CPU_TQ1_AS_TQ2 is not 0, else its own. */
static trn_type held_type(const cpu_context *c, int id) {
    const trn_buffer *buf = &c->graph->buffers[id];
    const char *widen = getenv("TRN_CPU_TQ1_AS_TQ2");
    return buf->kind == TRN_BUF_WEIGHT && buf->type == TRN_TYPE_TQ1_0 && c->ops->tq1_0_as_tq2_0 &&
                   !(widen && strcmp(widen, "0") == 0) && node_reads_as_matrix(c->graph, id)
               ? TRN_TYPE_TQ2_0
               : buf->type;
}

/* The layout buffer `id` is repacked into for c's kernel table (ops.h), or TRN_LAYOUT_ROWS where it stays in the
 * file's row order: ternary matrices that some MATVEC reads, with at least one full group of rows. */
static trn_layout repack_layout(const cpu_context *c, int id) {
    const trn_buffer *buf = &c->graph->buffers[id];
    const trn_type type = held_type(c, id);
    const trn_layout layout = buf->kind != TRN_BUF_WEIGHT  ? TRN_LAYOUT_ROWS
                              : type == TRN_TYPE_TQ2_0 ? c->ops->tq2_0_layout
                              : type == TRN_TYPE_TQ1_0 ? c->ops->tq1_0_layout
                                                       : TRN_LAYOUT_ROWS;
    return layout != TRN_LAYOUT_ROWS && buf->ne[1] >= trn_layout_group_rows(layout) && node_reads_as_matrix(c->graph, id)
               ? layout
               : TRN_LAYOUT_ROWS;
}

/* Bytes of buffer `id` in the repacked region (64-byte aligned), or 0 where it is used as loaded. */
static size_t repacked_bytes_of(const cpu_context *c, int id) {
    const trn_buffer *buf = &c->graph->buffers[id];
    const trn_type type = held_type(c, id);
    if (repack_layout(c, id) == TRN_LAYOUT_ROWS && type == buf->type)
        return 0;
    return ((size_t)buf->ne[1] * trn_row_bytes(type, buf->ne[0]) + 63) & ~(size_t)63;
}

/* Physical memory in bytes, or 0 if unknown. */
static double physical_memory(void) {
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
    return pages > 0 && page > 0 ? (double)pages * (double)page : 0.0;
}

static trn_status cpu_prepare(trn_backend *backend, const trn_graph *g, const trn_backend_config *config) {
    cpu_context *c = backend->context;
    cpu_release(c);
    const int n_slots = config->n_slots > 0 ? config->n_slots : 1;
    const double state = (double)trn_graph_state_bytes(g) * n_slots, memory = physical_memory();
    if (memory > 0 && state > 0.75 * memory)
        return trn_fail(TRN_ERR_NOMEM, "%d sequence%s of %d positions need %.1f GB of KV cache, more than this "
                        "machine's %.1f GB of memory allows; choose a smaller -c", n_slots, n_slots == 1 ? "" : "s",
                        g->n_ctx, state / 1e9, memory / 1e9);
    c->n_slots = n_slots;
    c->graph = g;
    c->config = *config;
    const char *kernels;
    c->ops = trn_cpu_ops_for_backend(config->kernels, &kernels);
    if (!c->ops) {
        const char *why = NULL; /* for amx, the reason (no AMX on this CPU, OS or build) */
        if (strcmp(kernels, "amx") == 0)
            trn_cpu_ops_amx(&why);
        return trn_fail(TRN_ERR_INVALID, "kernels '%s'%s are not available: %s%sexpected scalar, avx2, avx512, amx "
                        "or auto, a table this build and CPU can run", kernels,
                        config->kernels && *config->kernels ? "" : " (TRN_KERNELS)", why ? why : "", why ? "; " : "");
    }
    c->n_threads = config->n_threads > 0 ? config->n_threads : default_threads();
#ifndef TRN_HAVE_OPENMP
    c->n_threads = 1;
#endif
    /* more threads than processors: a waiting thread may hold the processor the last one needs, so it yields at once */
    c->barrier.spins_before_yield = c->n_threads > default_threads() ? 0 : SPINS_BEFORE_YIELD;
    const char *profile = getenv("TRN_CPU_PROFILE");
    if (profile && *profile && strcmp(profile, "0") != 0) {
        c->profile = calloc((size_t)c->n_threads, sizeof(*c->profile));
        c->profile_batches = strcmp(profile, "prefill") == 0;
    }
    const char *split_tokens = getenv("TRN_CPU_SPLIT_TOKENS");
    c->split_tokens = split_tokens && strcmp(split_tokens, "0") == 0 ? 0 : c->ops->matmul_split_tokens;
    const char *attention_steal = getenv("TRN_CPU_ATTENTION_STEAL");
    c->attention_steal = !(attention_steal && strcmp(attention_steal, "0") == 0);
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
    c->scores_stride = TRN_ATTENTION_SCRATCH(g->n_ctx, hp->head_dim);
    c->scores = trn_alloc((size_t)c->n_threads * (size_t)c->scores_stride * sizeof(float));
    c->cache_head_dim = calloc((size_t)g->n_buffers, sizeof(int));
    c->cache_is_k = calloc((size_t)g->n_buffers, 1);
    c->group_end = calloc((size_t)g->n_nodes, sizeof(int));
    c->sampler = trn_sampler_new(hp->n_vocab);
    c->queues = trn_alloc((size_t)g->n_nodes * (size_t)c->n_threads * sizeof(row_queue));
    c->sample_logits = trn_alloc((size_t)hp->n_vocab * sizeof(float));
    c->max_batch = TRN_MIN(config->max_batch > 0 ? config->max_batch : CPU_DEFAULT_BATCH, g->n_ctx);
    const int64_t xq_stride = TRN_MAX(max_cols / TRN_QK_K, 1);
    c->one.stride = calloc((size_t)g->n_buffers, sizeof(size_t));
    c->batch.data = calloc((size_t)g->n_buffers, sizeof(void *));
    c->batch.stride = calloc((size_t)g->n_buffers, sizeof(size_t));
    c->batch.xq = trn_alloc((size_t)(c->max_batch * xq_stride) * sizeof(trn_block_q8_act));
    c->batch_arena = trn_alloc(g->arena_bytes * (size_t)c->max_batch);
    c->batch_inputs = trn_alloc(2 * (size_t)c->max_batch * sizeof(int32_t));
    c->batch_slots = trn_alloc((size_t)c->max_batch * sizeof(int32_t));
    if (!c->data || !c->owned || !c->matrix || !c->arena || !c->queues || !c->xq || !c->rope_cos_sin || !c->scores ||
        !c->cache_head_dim || !c->cache_is_k || !c->group_end || !c->sampler || !c->sample_logits || !c->one.stride || !c->batch.data || !c->batch.stride || !c->batch.xq || !c->batch_arena ||
        !c->batch_inputs || !c->batch_slots) {
        cpu_release(c);
        return trn_fail(TRN_ERR_NOMEM, "out of memory preparing the CPU backend");
    }
    for (int n = 0; n < g->n_nodes; n++) {
        if (g->nodes[n].op != TRN_OP_ATTENTION)
            continue;
        c->cache_head_dim[g->nodes[n].src[1]] = c->cache_head_dim[g->nodes[n].src[2]] = g->nodes[n].head_dim;
        c->cache_is_k[g->nodes[n].src[1]] = 1;
    }
    size_t repacked_bytes = 0, repacked_at = 0; /* each repacked matrix 64-byte aligned in c->repacked */
    for (int i = 0; i < g->n_buffers; i++)
        repacked_bytes += repacked_bytes_of(c, i);
    if (repacked_bytes && !(c->repacked = trn_alloc_huge(repacked_bytes))) {
        cpu_release(c);
        return trn_fail(TRN_ERR_NOMEM, "out of memory repacking %.1f MB of weights", repacked_bytes / 1e6);
    }
    size_t kv_bytes = 0, kv_at = 0; /* each KV cache 64-byte aligned in c->kv_region, zeroed */
    for (int i = 0; i < g->n_buffers; i++)
        if (c->cache_head_dim[i])
            kv_bytes += cache_bytes(c, i);
    c->kv_slot_bytes = kv_bytes; /* the slots one after another: [slot][every cache] */
    if (kv_bytes) {
        if (!(c->kv_region = trn_alloc_huge(kv_bytes * (size_t)n_slots))) {
            cpu_release(c);
            return trn_fail(TRN_ERR_NOMEM, "out of memory for %.1f MB of KV cache", kv_bytes * (double)n_slots / 1e6);
        }
        memset(c->kv_region, 0, kv_bytes * (size_t)n_slots);
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
            if (repacked_bytes_of(c, i)) {
                /* repack once into the type and layout the table's kernels read (ops.h): a group of rows is one
                 * stream */
                c->matrix[i] = trn_repack_as(&c->matrix[i], held_type(c, i), repack_layout(c, i),
                                             c->repacked + repacked_at);
                if (c->matrix[i].type != buf->type)
                    c->widened_bytes += (double)(c->matrix[i].rows * c->matrix[i].row_bytes) - (double)buf->bytes;
                repacked_at += repacked_bytes_of(c, i);
            }
            break;
        case TRN_BUF_ACTIVATION:
            c->data[i] = c->arena + buf->offset;
            break;
        default: /* inputs, state, outputs: their own zeroed memory (KV caches: their part of kv_region) */
            if (c->cache_head_dim[i]) {
                c->data[i] = (uint8_t *)c->kv_region + kv_at;
                kv_at += cache_bytes(c, i);
                break;
            }
            c->owned[i] = c->data[i] = trn_alloc(buf->bytes * (size_t)(buf->kind == TRN_BUF_STATE ? n_slots : 1));
            if (!c->data[i]) {
                cpu_release(c);
                return trn_fail(TRN_ERR_NOMEM, "out of memory allocating '%s' (%zu bytes)", buf->name, buf->bytes);
            }
        }
    }
    /* The two views: a step's rows (all shared), and a batch's (activations and inputs one row per token) */
    c->one = (buffer_view){c->data, c->one.stride, c->xq, 0, NULL};
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
    const trn_status planned = trn_cpu_make_plan(c);
    if (planned != TRN_OK) {
        cpu_release(c);
        return planned;
    }
    snprintf(c->description, sizeof(c->description), "cpu (%s kernels, act %s, %d thread%s%s)", c->ops->name,
             config->act == TRN_ACT_F32 ? "f32" : "int8", c->n_threads, c->n_threads == 1 ? "" : "s",
             c->widened_bytes > 0 ? ", tq1_0 held as tq2_0" : "");
    return TRN_OK;
}

static void cpu_stats(trn_backend *backend, trn_backend_stats *out) {
    const cpu_context *c = backend->context;
    out->weights = "host";
    out->widened_bytes_per_token = c->widened_bytes; /* every widened matrix is read whole by a step */
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
    .stats = cpu_stats,
    .prefill = cpu_prefill,
    .decode_batch = cpu_decode_batch,
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
