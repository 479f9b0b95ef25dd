/* cpu_exec.c: running one pass of the plan (a decode step or a prefill batch) on the CPU backend's threads: each
 * node split over the threads (matrix rows, heads, vector ranges; a large prefill batch's products by tokens),
 * product groups with row queues that idle threads steal from, the KV cache stored head-major (the attention kernel requests its rows ahead of its loads), and the
 * spinning barrier that prefetches the next product's weights while it waits. The plan itself is cpu_plan.c's. */
#define _POSIX_C_SOURCE 200809L
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#ifdef TRN_HAVE_OPENMP
#include <omp.h>
#endif

#include "cpu_internal.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#define prefetch_line(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
#else
#define cpu_relax() ((void)0)
#define prefetch_line(p) __builtin_prefetch((p), 0, 2)
#endif

static int get_thread_num(void) {
#ifdef TRN_HAVE_OPENMP
    return omp_get_thread_num();
#else
    return 0;
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

/* Thread ith's own rows [*r0, *r1) of a product with `rows` rows: what it computes in a prefill, what it starts
 * with in a step (matvec_shared), and what it prefetches while waiting before the product. */
static void product_rows(int64_t rows, int ith, int nth, int64_t *r0, int64_t *r1) {
    split(rows, ith, nth, MATVEC_ROW_ALIGN, r0, r1);
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

/* Elementwise ops (RMSNORM, SWIGLU, ADD) cut rows of `width` into ranges of whole int8 blocks where the width
 * allows, so that the thread that wrote a block can quantize it at once. */
static int64_t elementwise_align(int64_t width) { return width % TRN_QK_K == 0 ? TRN_QK_K : 8; }

/* Claims rows [*r0, *r1) of q, about `chunk` of them on chunk boundaries: from the front, or (a thief) the back. */
static int claim_rows(row_queue *q, int64_t chunk, int from_back, int64_t *r0, int64_t *r1) {
    uint64_t v = atomic_load_explicit(&q->range, memory_order_relaxed);
    for (;;) {
        const int64_t front = (int64_t)(v & 0xffffffffu), back = (int64_t)(v >> 32);
        if (front >= back)
            return 0;
        *r0 = from_back ? TRN_MAX(front, (back - 1) / chunk * chunk) : front;
        *r1 = from_back ? back : TRN_MIN(back, (front / chunk + 1) * chunk);
        const uint64_t next = from_back ? ((uint64_t)*r0 << 32 | (uint64_t)front) : ((uint64_t)back << 32 | (uint64_t)*r1);
        if (atomic_compare_exchange_weak_explicit(&q->range, &v, next, memory_order_relaxed, memory_order_relaxed))
            return 1;
    }
}

/* The products a step runs as one (group_products): nodes [first, end), rows numbered through all of them in
 * order, so that a thread's rows of the group are one span of the weights (cpu_prepare repacks the matrices one
 * after another in buffer order, which is the graph's node order). A single product is a group of one. In the
 * profile a group's time is its first product's. */
typedef struct {
    int first, end;
    int64_t rows; /* all the group's rows */
} product_group;

static product_group group_of(const cpu_context *c, int n) {
    const trn_graph *g = c->graph;
    product_group pg = {n, c->group_end[n] > n ? c->group_end[n] : n + 1, 0};
    for (int m = pg.first; m < pg.end; m++)
        pg.rows += c->matrix[g->nodes[m].src[0]].rows;
    return pg;
}

/* Rows [r0, r1) of a group's numbering: each product's part of them. */
static void group_matvec(cpu_context *c, const buffer_view *v, const product_group *pg, const float *x,
                         const trn_block_q8_act *xq, int64_t r0, int64_t r1) {
    const trn_graph *g = c->graph;
    int64_t first = 0; /* the group row of this product's row 0 */
    for (int m = pg->first; m < pg->end && first < r1; m++) {
        const trn_matrix *w = &c->matrix[g->nodes[m].src[0]];
        const int64_t lo = TRN_MAX(r0, first), hi = TRN_MIN(r1, first + w->rows);
        if (lo < hi)
            c->ops->matvec(w, x, xq, row_at(v, g->nodes[m].dst, 0), lo - first, hi - first);
        first += w->rows;
    }
}

/* A step's product group: this thread's rows (split()), in chunks, then what other threads have not started yet.
 * A thief finds a queue of a product its owner has not reached in this step exhausted (every queue is at the end
 * of a step), so it only takes rows its owner has put up. */
static void matvec_shared(cpu_context *c, const buffer_view *v, const product_group *pg, const float *x,
                          const trn_block_q8_act *xq, int ith, int nth) {
    const size_t row_bytes = c->matrix[c->graph->nodes[pg->first].src[0]].row_bytes;
    const int64_t chunk = TRN_MAX(1, CHUNK_BYTES / (int64_t)row_bytes / MATVEC_ROW_ALIGN) * MATVEC_ROW_ALIGN;
    int64_t begin, end, r0, r1;
    product_rows(pg->rows, ith, nth, &begin, &end);
    row_queue *queues = c->queues + (size_t)pg->first * (size_t)c->n_threads;
    atomic_store_explicit(&queues[ith].range, (uint64_t)end << 32 | (uint64_t)begin, memory_order_relaxed);
    while (claim_rows(&queues[ith], chunk, 0, &r0, &r1))
        group_matvec(c, v, pg, x, xq, r0, r1);
    for (int k = 1; k < nth; k++)
        while (claim_rows(&queues[(ith + k) % nth], chunk, 1, &r0, &r1))
            group_matvec(c, v, pg, x, xq, r0, r1);
}

/* A batch's product as rows for matmul (trn_rows): this thread's own rows (product_rows()) in chunks of about
 * PREFILL_CHUNK_MACS multiply-adds from the front, then chunks from the back of the other threads' rows that they
 * have not started; so a thread slowed down (a busy machine's other tenants) holds the others up by one chunk at
 * most, not by half a product. The kernels prepare their activations once per call, not per chunk. */
enum { PREFILL_CHUNK_MACS = 8 << 20 }; /* about 20 us of a 2-thread vpdpbusd kernel */
typedef struct {
    trn_rows base; /* first: the kernels see this */
    row_queue *queues;
    int64_t chunk;
    int ith, nth;
    int victim, victim_end; /* claims from queue (ith + victim) % nth for victim up to victim_end: 0 is this
                               thread's own (from the front), the others are taken from the back */
} shared_rows;

static int shared_rows_next(trn_rows *s, int64_t *r0, int64_t *r1) {
    shared_rows *sr = (shared_rows *)s;
    for (; sr->victim < sr->victim_end; sr->victim++)
        if (claim_rows(&sr->queues[(sr->ith + sr->victim) % sr->nth], sr->chunk, sr->victim > 0, r0, r1))
            return 1;
    return 0;
}

static shared_rows shared_rows_of(cpu_context *c, int n, int64_t macs_per_row, int ith, int nth) {
    return (shared_rows){.base = {.next = shared_rows_next},
                         .queues = c->queues + (size_t)n * (size_t)c->n_threads,
                         .chunk = TRN_MAX(1, PREFILL_CHUNK_MACS / TRN_MAX(1, macs_per_row) / MATVEC_ROW_ALIGN) *
                                  MATVEC_ROW_ALIGN,
                         .ith = ith, .nth = nth, .victim_end = nth};
}

/* Node n's rows (of `rows`, each macs_per_row multiply-adds) put up for this thread; as in matvec_shared, a thief
 * that comes to a queue its owner has not reached yet finds it exhausted (every queue is at the end of a pass). */
static shared_rows shared_product_rows(cpu_context *c, int n, int64_t rows, int64_t macs_per_row, int ith, int nth) {
    int64_t begin, end;
    product_rows(rows, ith, nth, &begin, &end);
    shared_rows sr = shared_rows_of(c, n, macs_per_row, ith, nth);
    atomic_store_explicit(&sr.queues[ith].range, (uint64_t)end << 32 | (uint64_t)begin, memory_order_relaxed);
    return sr;
}

/* Whether a batch's product splits its tokens among the threads rather than its rows: a ternary matrix with int8
 * activations, every thread's share at least a token tile of the table's kernel (c->split_tokens). */
static int product_splits_tokens(const cpu_context *c, const trn_matrix *w, const trn_block_q8_act *xq,
                                 int64_t n_tok, int nth) {
    return nth > 1 && c->split_tokens > 0 && xq && c->ops->matmul && is_ternary(w->type) &&
           n_tok >= (int64_t)nth * c->split_tokens;
}

/* A batch's product by tokens: each thread computes every row for its own tokens (split(), as the elementwise nodes
 * take them), so the int8 activations it reads and the rows it writes are the ones its RMSNorm, SwiGLU and add wrote
 * and will read, in its own cache; only the weights are read by every thread. The rows of each thread's tokens are
 * a queue as in shared_product_rows: a thread done early takes chunks from the back of another's, for that thread's
 * tokens (one kernel call, whose activations the kernel prepares once), where enough is left to repay preparing
 * them. Shapes as ops->matmul's, for all n_tok tokens of the batch. */
static void matmul_by_tokens(cpu_context *c, int n, const trn_matrix *w, const float *x, int64_t ld_x,
                             const trn_block_q8_act *xq, int64_t ld_xq, float *dst, int64_t ld_dst, int64_t n_tok,
                             int ith, int nth) {
    row_queue *queues = c->queues + (size_t)n * (size_t)c->n_threads;
    atomic_store_explicit(&queues[ith].range, (uint64_t)w->rows << 32, memory_order_relaxed);
    for (int k = 0; k < nth; k++) {
        const int owner = (ith + k) % nth;
        int64_t t0, t1;
        split(n_tok, owner, nth, 1, &t0, &t1);
        shared_rows sr = shared_rows_of(c, n, w->cols * (t1 - t0), ith, nth);
        sr.victim = k;
        sr.victim_end = k + 1;
        const uint64_t range = atomic_load_explicit(&queues[owner].range, memory_order_relaxed);
        if (k > 0 && (int64_t)(range >> 32) - (int64_t)(range & 0xffffffffu) < 2 * sr.chunk)
            continue;
        c->ops->matmul(w, x + t0 * ld_x, ld_x, xq + t0 * ld_xq, ld_xq, dst + t0 * ld_dst, ld_dst, t1 - t0, &sr.base);
    }
}

/* KV heads [kv0, kv1) of one row (`row`, head_dim hd each) into a head-major cache (`base`: its slot's part) at
 * position pos. */
static void store_cache_heads(const cpu_context *c, int cache, float *base, const float *row, int64_t pos, int64_t kv0,
                              int64_t kv1, int64_t hd) {
    const int64_t stride = cache_head_floats(c, cache, c->graph->n_ctx);
    for (int64_t kv = kv0; kv < kv1; kv++) {
        float *head = base + kv * stride;
        if (c->cache_is_k[cache])
            for (int d = 0; d < hd; d++)
                head[trn_k_index(pos, d, (int)hd)] = row[kv * hd + d];
        else
            memcpy(head + pos * hd, row + kv * hd, (size_t)hd * sizeof(float));
    }
}

/* A step's RoPE (split by heads) or KV-cache store (split by KV heads) for this thread; 0 for any other node. RoPE
 * of K and the store of K split the same number of heads alike, so each thread stores the K heads it rotated: the
 * planner's rule that a token-local node needs no barrier before the next one holds for heads too. One token has
 * too little work to split by tokens: one thread did all of it while the others waited. */
static int step_heads(cpu_context *c, const trn_node *node, const buffer_view *v, int t0, int ith, int nth) {
    const trn_graph *g = c->graph;
    const int64_t pos = int_at(v, node->src[1], t0); /* both: src0 the rows, src1 the position */
    int64_t h0, h1;
    if (node->op == TRN_OP_ROPE) {
        const int hd = node->head_dim;
        split(node->n_head, ith, nth, 1, &h0, &h1);
        if (h1 > h0)
            c->ops->rope((const float *)row_at(v, node->src[0], t0) + h0 * hd, (float *)row_at(v, node->dst, t0) + h0 * hd,
                         (int)(h1 - h0), hd, c->rope_cos_sin + pos * hd);
        return 1;
    }
    const int64_t hd = node->op == TRN_OP_STORE_ROW ? c->cache_head_dim[node->dst] : 0;
    if (hd == 0)
        return 0;
    split(g->buffers[node->dst].ne[0] / hd, ith, nth, 1, &h0, &h1);
    store_cache_heads(c, node->dst, state_at(c, v, node->dst, t0), row_at(v, node->src[0], t0), pos, h0, h1, hd);
    return 1;
}

/* Attention triples [i0, i1) of a pass's n_tok tokens from t0 ((KV head, token, query head of the group), in that
 * order): a run of triples that share a KV head and a token is one call of the table's kernel. */
static void attention_triples(cpu_context *c, const trn_node *node, const buffer_view *v, int t0, int n_tok,
                              int64_t i0, int64_t i1, int ith) {
    const trn_graph *g = c->graph;
    const int group = node->n_head / node->n_head_kv, hd = node->head_dim;
    const int64_t per_kv = (int64_t)n_tok * group;
    const int64_t k_head = cache_head_floats(c, node->src[1], g->n_ctx);
    const int64_t v_head = cache_head_floats(c, node->src[2], g->n_ctx);
    float *scores = c->scores + (int64_t)ith * c->scores_stride;
    for (int64_t i = i0; i < i1;) {
        const int64_t kv = i / per_kv, t = t0 + i % per_kv / group, j = i % group;
        const int n_q = (int)TRN_MIN(group - j, i1 - i);
        const int64_t h = kv * group + j;
        const float *k_cache = state_at(c, v, node->src[1], t), *v_cache = state_at(c, v, node->src[2], t);
        c->ops->attention((const float *)row_at(v, node->src[0], t) + h * hd, n_q, k_cache + kv * k_head,
                          v_cache + kv * v_head, hd, int_at(v, node->src[3], t) + 1, hd, scores,
                          (float *)row_at(v, node->dst, t) + h * hd);
        i += n_q;
    }
}

static void run_node(cpu_context *c, const pass *p, int n, int quantize, int ith, int nth) {
    const trn_graph *g = c->graph;
    const trn_node *node = &g->nodes[n];
    const trn_cpu_ops *ops = c->ops;
    const buffer_view *v = p->view;
    const int64_t width = g->buffers[node->dst].ne[0];
    const int t0 = first_token(c, p, n), n_tok = p->n_tok - t0;
    int64_t begin, end;
    switch (node->op) {
    case TRN_OP_MATVEC: { /* rows split among the threads; every token of the pass */
        const trn_matrix *w = &c->matrix[node->src[0]];
        const float *x = row_at(v, node->src[1], t0);
        const trn_block_q8_act *xq = reads_int8(c, node) ? v->xq + t0 * v->xq_stride : NULL;
        float *dst = row_at(v, node->dst, t0);
        if (n_tok == 1) {
            const product_group pg = group_of(c, n);
            matvec_shared(c, v, &pg, x, xq, ith, nth);
            break;
        }
        const int64_t ld_x = (int64_t)(v->stride[node->src[1]] / sizeof(float));
        const int64_t ld_dst = (int64_t)(v->stride[node->dst] / sizeof(float));
        if (product_splits_tokens(c, w, xq, n_tok, nth)) {
            matmul_by_tokens(c, n, w, x, ld_x, xq, v->xq_stride, dst, ld_dst, n_tok, ith, nth);
            break;
        }
        shared_rows rows = shared_product_rows(c, n, width, (int64_t)w->cols * n_tok, ith, nth);
        if (ops->matmul)
            ops->matmul(w, x, ld_x, xq, v->xq_stride, dst, ld_dst, n_tok, &rows.base);
        else
            trn_matmul_by_matvec(ops->matvec, w, x, ld_x, xq, v->xq_stride, dst, ld_dst, n_tok, &rows.base);
        break;
    }
    case TRN_OP_ATTENTION: { /* (KV head, token, query head of the group) triples; in a batch put up as in
                                matvec_shared: a thread's own share from the front, one call's triples at a time,
                                then, from the back, what the others have not started; so a core slowed down (a busy
                                machine's other tenants) holds the others up by one call, not by half the heads (a
                                step's one or two calls per thread, a few microseconds each, are split as before) */
        row_queue *queues = c->queues + (size_t)n * (size_t)c->n_threads;
        split((int64_t)node->n_head * n_tok, ith, nth, 1, &begin, &end);
        atomic_store_explicit(&queues[ith].range, (uint64_t)end << 32 | (uint64_t)begin, memory_order_relaxed);
        const int queues_taken = c->attention_steal && n_tok > 1 ? nth : 1;
        for (int k = 0; k < queues_taken; k++)
            while (claim_rows(&queues[(ith + k) % nth], node->n_head / node->n_head_kv, k > 0, &begin, &end))
                attention_triples(c, node, v, t0, n_tok, begin, end, ith);
        break;
    }
    case TRN_OP_RMSNORM: /* the norm's scale from the whole row in every thread, its elements in ranges */
    case TRN_OP_SWIGLU:
    case TRN_OP_ADD: /* vector ranges of every token's row */
        for (int64_t t = 0; t < n_tok; t++) {
            split_row(n_tok, width, ith, nth, elementwise_align(width), t, &begin, &end);
            if (begin >= end)
                continue;
            const float *a = row_at(v, node->src[0], t0 + t), *b = row_at(v, node->src[1], t0 + t);
            float *dst = row_at(v, node->dst, t0 + t);
            if (node->op == TRN_OP_RMSNORM)
                ops->rmsnorm(a, b, dst, width, node->eps, begin, end);
            else if (node->op == TRN_OP_SWIGLU)
                ops->swiglu(a + begin, b + begin, dst + begin, end - begin);
            else
                ops->add(a + begin, b + begin, dst + begin, end - begin);
            if (quantize) /* the blocks just written: quantize_rows' split of (token, block) pairs is the same */
                ops->quantize_act(dst + begin, v->xq + (t0 + t) * v->xq_stride + begin / TRN_QK_K, end - begin);
        }
        break;
    default: /* per-token ops: tokens split among the threads (in a step, RoPE and the KV stores split heads) */
        if (n_tok == 1 && step_heads(c, node, v, t0, ith, nth))
            break;
        split(n_tok, ith, nth, 1, &begin, &end);
        for (int64_t t = t0 + begin; t < t0 + end; t++) {
            const void *s0 = node->src[0] >= 0 ? row_at(v, node->src[0], t) : NULL;
            const void *s1 = node->src[1] >= 0 ? row_at(v, node->src[1], t) : NULL;
            void *dst = row_at(v, node->dst, t);
            switch (node->op) {
            case TRN_OP_GET_ROW:
                ops->get_row(&c->matrix[node->src[0]], *(const int32_t *)s1, dst);
                break;
            case TRN_OP_ROPE:
                ops->rope(s0, dst, node->n_head, node->head_dim,
                          c->rope_cos_sin + (int64_t)*(const int32_t *)s1 * node->head_dim);
                break;
            case TRN_OP_STORE_ROW: { /* dst is a KV cache (head-major) or the history: one row per position */
                const int64_t pos = *(const int32_t *)s1, hd = c->cache_head_dim[node->dst];
                if (hd == 0) {
                    memcpy((uint8_t *)state_at(c, v, node->dst, t) + (size_t)pos * (size_t)width * 4, s0,
                           (size_t)width * 4);
                    break;
                }
                store_cache_heads(c, node->dst, state_at(c, v, node->dst, t), s0, pos, 0, width / hd, hd);
                break;
            }
            case TRN_OP_SAMPLE: {
                const int pos = int_at(v, node->src[2], t);
                float *logits = (float *)s0; /* the raw logits stay an output: copied where sampling modifies them */
                if (!trn_sampling_keeps_logits(&c->config.sampling)) {
                    memcpy(c->sample_logits, s0, (size_t)g->model->hp.n_vocab * sizeof(float));
                    logits = c->sample_logits;
                }
                *(int32_t *)dst = trn_sampler_sample(c->sampler, &c->config.sampling, logits,
                                                     state_at(c, v, node->src[1], t), pos + 1, pos);
                break;
            }
            default:
                break;
            }
        }
        break;
    }
}

/* Waits until all nth threads have arrived. While waiting, prefetches [*from, end) a line at a time, advancing
 * *from past what it fetched (the caller's part of the next product, in the order the kernel reads it). */
static void barrier_wait(spin_barrier *b, int nth, const uint8_t **from, const uint8_t *end) {
    if (nth == 1)
        return;
    const int generation = atomic_load_explicit(&b->generation, memory_order_relaxed);
    if (atomic_fetch_add_explicit(&b->arrived, 1, memory_order_acq_rel) == nth - 1) {
        atomic_store_explicit(&b->arrived, 0, memory_order_relaxed);
        atomic_store_explicit(&b->generation, generation + 1, memory_order_release);
        return;
    }
    for (long spins = 0; atomic_load_explicit(&b->generation, memory_order_acquire) == generation; spins++) {
        if (*from < end) {
            prefetch_line(*from);
            *from += 64;
        } else if (spins < b->spins_before_yield) {
            cpu_relax();
        } else {
            sched_yield();
        }
    }
}

void trn_cpu_run_pass(cpu_context *c, const pass *p) {
    const trn_graph *g = c->graph;
    const int profiled = c->profile && (p->n_tok > 1) == c->profile_batches;
    c->profile_steps += profiled;
#pragma omp parallel num_threads(c->n_threads)
    {
        const int ith = get_thread_num();
        int nth = 1;
#ifdef TRN_HAVE_OPENMP
        nth = omp_get_num_threads();
#endif
        prof_entry *table = profiled ? c->profile[ith] : NULL;
        double t = table ? trn_time_s() : 0.0;
        int kind = 0; /* profile kind of the last item that worked, which a barrier's wait is charged to */
        for (int i = 0; i < c->n_plan && c->plan[i].node < p->n_nodes; i++) {
            const plan_item *item = &c->plan[i];
            const trn_node *node = &g->nodes[item->node];
            if ((item->step_skip && p->n_tok == 1) || item->node < p->first_node)
                continue;
            switch (item->kind) {
            case ITEM_BARRIER: {
                const uint8_t *from = NULL, *end = NULL;
                if (item->prefetch >= 0 && p->n_tok == 1) { /* steps: the first bytes of this thread's rows */
                    const product_group pg = group_of(c, item->prefetch);
                    int64_t r0, r1, first = 0;
                    size_t bytes;
                    product_rows(pg.rows, ith, nth, &r0, &r1);
                    int m = pg.first; /* the product that holds the thread's first row */
                    while (m + 1 < pg.end && r0 >= first + c->matrix[g->nodes[m].src[0]].rows)
                        first += c->matrix[g->nodes[m++].src[0]].rows;
                    const trn_matrix *w = &c->matrix[g->nodes[m].src[0]];
                    trn_layout_row_span(w, r0 - first, TRN_MIN(r1 - first, w->rows), &from, &bytes);
                    end = from + TRN_MIN(bytes, (size_t)PREFETCH_MAX_BYTES);
                }
                barrier_wait(&c->barrier, nth, &from, end);
                profile_mark(table, kind, 1, &t);
                break;
            }
            case ITEM_QUANTIZE: {
                const int t0 = first_token(c, p, item->node);
                quantize_rows(c, p->view, node->src[1], t0, p->n_tok - t0, ith, nth);
                kind = PROF_QUANTIZE;
                profile_mark(table, kind, 0, &t);
                break;
            }
            case ITEM_NODE:
                if (node->op == TRN_OP_SAMPLE && !p->sample)
                    break;
                run_node(c, p, item->node, item->quantize, ith, nth);
                kind = table ? trn_cpu_profile_kind(table, node, g->buffers[node->dst].ne[0]) : 0;
                profile_mark(table, kind, 0, &t);
                break;
            }
        }
    }
}
