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
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef TRN_HAVE_OPENMP
#include <omp.h>
#endif

#include "ops.h"
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#define prefetch_line(p) _mm_prefetch((const char *)(p), _MM_HINT_T1)
#else
#define cpu_relax() ((void)0)
#define prefetch_line(p) __builtin_prefetch((p), 0, 2)
#endif

enum { CPU_DEFAULT_BATCH = 64 }; /* prefill tokens per batch where the config does not say */

/* TRN_CPU_PROFILE=1: per thread and kind of node, the time spent in the node and then waiting at the barrier
 * after it, over single-token steps (TRN_CPU_PROFILE=prefill: over batched prefill passes instead); printed when
 * the backend is freed. Kinds: the graph's ops, MATVEC by
 * output width, and the int8 quantization of a matrix input. */
enum { PROF_MATVEC_WIDTHS = 6, PROF_QUANTIZE = TRN_OP_COUNT, PROF_KINDS = TRN_OP_COUNT + 1 + PROF_MATVEC_WIDTHS };
typedef struct {
    double work_s, wait_s;
    int64_t width; /* MATVEC kinds: the output width they stand for */
    long count;
} prof_entry;

/* The schedule of a pass, made once at prepare (make_plan): nodes, the int8 quantization of a matrix input, and
 * barriers only where a node depends on the work of another thread. */
typedef enum { ITEM_NODE, ITEM_QUANTIZE, ITEM_BARRIER } item_kind;
typedef struct {
    item_kind kind;
    int node;     /* the node run, or quantized for (its src[1]), or that the barrier precedes */
    int quantize; /* ITEM_NODE of an elementwise op: each thread also quantizes the blocks of dst it wrote */
    int prefetch; /* ITEM_BARRIER: the next MATVEC node, whose weights a waiting thread prefetches; -1 none */
    int step_skip; /* not run in a step: a product of a group after the first, which the first one runs */
} plan_item;

/* The barrier between the items of a pass: a counter and a generation, spun on. A thread that waits prefetches
 * (into its L2) the start of its part of the next matrix-vector product's weights, so that the time one thread
 * waits for another is spent streaming weights, which is what bounds a decode step. */
typedef struct {
    _Alignas(64) atomic_int arrived;
    _Alignas(64) atomic_int generation;
    long spins_before_yield; /* SPINS_BEFORE_YIELD, or 0 with more threads than processors */
} spin_barrier;

enum {
    PREFETCH_MAX_BYTES = 256 << 10, /* per thread and barrier: a quarter of a 1 MB L2 */
    SPINS_BEFORE_YIELD = 1 << 14,   /* then a waiting thread gives its processor up (another thread may need it) */
};

/* A thread's rows of one matrix-vector product in a step, [front, back) packed in one word: the owner takes chunks
 * from the front, a thread done with its own rows takes them from the back (a memory-bound product's halves
 * rarely finish together on a busy machine). Which thread computes a row does not change its value. */
typedef struct {
    _Alignas(64) _Atomic uint64_t range;
} row_queue;

enum { CHUNK_BYTES = 32 << 10 }; /* rows claimed at a time: about this many bytes of weights */

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
    uint8_t *repacked;   /* every repacked weight matrix, one region on 2 MB pages (trn_alloc_huge) */
    void **data;         /* [n_buffers] where each buffer's elements are */
    void **owned;        /* [n_buffers] allocations made here (state, outputs, widened norms) */
    trn_matrix *matrix;  /* [n_buffers] weight views */
    trn_block_q8_act *xq; /* int8 copy of the current matrix-vector input */
    float *rope_cos_sin; /* [n_ctx][head_dim] interleaved cos, sin per pair */
    float *scores;       /* [n_threads][TRN_ATTENTION_SCRATCH(n_ctx)] attention scratch */
    int *cache_head_dim; /* [n_buffers] head_dim for a KV cache, 0 for other buffers: caches are stored head-major
                            (the graph's rows are [n_ctx][n_head_kv * head_dim]), so that a KV head's part is one
                            sequential stream for the attention kernel: V as [n_head_kv][n_ctx][head_dim], K in the
                            attention entry's blocks of 16 positions (ops.h: trn_k_index) */
    uint8_t *cache_is_k; /* [n_buffers] 1 for a K cache */
    float *kv_region;    /* every KV cache, one region on 2 MB pages */
    float *sample_logits; /* [n_vocab] copy the sampler may modify, so the logits output stays raw */
    trn_sampler *sampler;
    char description[96];
    buffer_view one;     /* a step: data, the planned arena, xq */
    buffer_view batch;   /* prefill: rows of up to max_batch tokens */
    int max_batch;
    uint8_t *batch_arena;  /* [arena_bytes * max_batch] */
    int32_t *batch_inputs; /* [2][max_batch]: token ids, then positions */
    plan_item *plan;     /* [n_plan] what the threads do in a pass, in order (make_plan) */
    int n_plan;
    int *group_end;      /* [n_nodes] for a product that heads a group a step runs as one (group_products): one
                            past the group's last node; 0 for other nodes */
    int *kv_ahead;       /* [n_nodes] for a layer's first product (Q): its attention node, whose KV rows a step
                            requests while that product streams its weights; -1 for other nodes */
    spin_barrier barrier;
    row_queue *queues;   /* [n_nodes][n_threads] */
    prof_entry (*profile)[PROF_KINDS]; /* TRN_CPU_PROFILE: [n_threads][kind] times of passes; NULL otherwise */
    int profile_steps;   /* passes profiled */
    int profile_batches; /* TRN_CPU_PROFILE=prefill: profile batches of several tokens, not steps */
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

enum { MATVEC_ROW_ALIGN = 16 }; /* a thread's rows of a product start at a multiple: whole X16 and X4 groups */

/* Thread ith's own rows [*r0, *r1) of a product with `rows` rows: what it computes in a prefill, what it starts
 * with in a step (matvec_shared), and what it prefetches while waiting before the product. */
static void product_rows(int64_t rows, int ith, int nth, int64_t *r0, int64_t *r1) {
    split(rows, ith, nth, MATVEC_ROW_ALIGN, r0, r1);
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

/* Floats of one KV head's part of cache `id` that hold its first n positions; with n = n_ctx, the distance from
 * one KV head's part to the next. */
static int64_t cache_head_floats(const cpu_context *c, int id, int64_t n) {
    const int hd = c->cache_head_dim[id];
    return c->cache_is_k[id] ? TRN_K_FLOATS(n, hd) : n * hd;
}

/* Bytes of KV cache `id` in kv_region: every KV head's part, 64-byte aligned. */
static size_t cache_bytes(const cpu_context *c, int id) {
    const int64_t heads = c->graph->buffers[id].ne[0] / c->cache_head_dim[id];
    return ((size_t)(heads * cache_head_floats(c, id, c->graph->n_ctx)) * sizeof(float) + 63) & ~(size_t)63;
}

/* Lines of a thread's KV rows still to request: its KV heads [kv, kv1) of K, then [kv0, kv1) of V, the first
 * floats[0] of each K head and floats[1] of each V head (head-major caches, head_floats apart). */
typedef struct {
    const float *cache[2];
    int64_t head_floats[2], floats[2], kv, kv1, kv0;
    int which;      /* 0: K, 1: V, 2: done */
    int64_t at;     /* bytes of the current head requested */
} kv_cursor;

/* Requests the next `lines` lines of k into L2. */
static void kv_request(kv_cursor *k, int64_t lines) {
    for (; lines > 0 && k->which < 2; lines--) {
        prefetch_line((const char *)(k->cache[k->which] + k->kv * k->head_floats[k->which]) + k->at);
        k->at += 64;
        if (k->at >= k->floats[k->which] * (int64_t)sizeof(float)) {
            k->at = 0;
            if (++k->kv == k->kv1) {
                k->kv = k->kv0;
                k->which++;
            }
        }
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
 * of a step), so it only takes rows its owner has put up. kv (or NULL): KV rows to request, kv_lines of them spread
 * over the thread's own chunks. */
static void matvec_shared(cpu_context *c, const buffer_view *v, const product_group *pg, const float *x,
                          const trn_block_q8_act *xq, int ith, int nth, kv_cursor *kv, int64_t kv_lines) {
    const size_t row_bytes = c->matrix[c->graph->nodes[pg->first].src[0]].row_bytes;
    const int64_t chunk = TRN_MAX(1, CHUNK_BYTES / (int64_t)row_bytes / MATVEC_ROW_ALIGN) * MATVEC_ROW_ALIGN;
    int64_t begin, end, r0, r1;
    product_rows(pg->rows, ith, nth, &begin, &end);
    row_queue *queues = c->queues + (size_t)pg->first * (size_t)c->n_threads;
    atomic_store_explicit(&queues[ith].range, (uint64_t)end << 32 | (uint64_t)begin, memory_order_relaxed);
    const int64_t per_chunk = kv ? kv_lines / TRN_MAX(1, (end - begin) / chunk) + 1 : 0;
    while (claim_rows(&queues[ith], chunk, 0, &r0, &r1)) {
        if (kv)
            kv_request(kv, per_chunk);
        group_matvec(c, v, pg, x, xq, r0, r1);
    }
    for (int k = 1; k < nth; k++)
        while (claim_rows(&queues[(ith + k) % nth], chunk, 1, &r0, &r1))
            group_matvec(c, v, pg, x, xq, r0, r1);
}

/* Requests into L2 the first n_pos positions of KV heads [kv0, kv1) of the K and V caches of an attention node:
 * what a step's attention is about to read. */
static void prefetch_kv(const cpu_context *c, const trn_node *att, int64_t kv0, int64_t kv1, int64_t n_pos) {
    for (int k = 1; k <= 2; k++) {
        const int id = att->src[k];
        const int64_t stride = cache_head_floats(c, id, c->graph->n_ctx), bytes = cache_head_floats(c, id, n_pos) * 4;
        for (int64_t kv = kv0; kv < kv1; kv++)
            for (int64_t at = 0; at < bytes; at += 64)
                prefetch_line((const char *)((const float *)c->data[id] + kv * stride) + at);
    }
}

/* KV heads [kv0, kv1) of one row (`row`, head_dim hd each) into a head-major cache at position pos. */
static void store_cache_heads(const cpu_context *c, int cache, const float *row, int64_t pos, int64_t kv0, int64_t kv1,
                              int64_t hd) {
    const int64_t stride = cache_head_floats(c, cache, c->graph->n_ctx);
    for (int64_t kv = kv0; kv < kv1; kv++) {
        float *head = (float *)c->data[cache] + kv * stride;
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
    store_cache_heads(c, node->dst, row_at(v, node->src[0], t0), pos, h0, h1, hd);
    return 1;
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
            kv_cursor kv_rows, *kv = NULL;
            int64_t kv_lines = 0;
            if (c->kv_ahead[n] >= 0) { /* this layer's attention: its KV rows, spread over the product */
                const trn_node *att = &g->nodes[c->kv_ahead[n]];
                const int group = att->n_head / att->n_head_kv;
                int64_t h0, h1;
                split(att->n_head, ith, nth, 1, &h0, &h1);
                const int64_t pos = int_at(v, att->src[3], t0); /* positions so far */
                kv_rows = (kv_cursor){.cache = {c->data[att->src[1]], c->data[att->src[2]]},
                                      .head_floats = {cache_head_floats(c, att->src[1], g->n_ctx),
                                                      cache_head_floats(c, att->src[2], g->n_ctx)},
                                      .floats = {cache_head_floats(c, att->src[1], pos),
                                                 cache_head_floats(c, att->src[2], pos)},
                                      .kv = h0 / group, .kv1 = h1 > h0 ? (h1 - 1) / group + 1 : h0 / group,
                                      .kv0 = h0 / group, .which = h1 > h0 ? 0 : 2};
                kv = &kv_rows;
                kv_lines = (kv_rows.kv1 - kv_rows.kv) * (kv_rows.floats[0] + kv_rows.floats[1]) * (int64_t)sizeof(float) / 64;
            }
            const product_group pg = group_of(c, n);
            matvec_shared(c, v, &pg, x, xq, ith, nth, kv, kv_lines);
            if (kv)
                kv_request(kv, kv_lines); /* whatever the chunks left */
            break;
        }
        product_rows(width, ith, nth, &begin, &end);
        const int64_t ld_x = (int64_t)(v->stride[node->src[1]] / sizeof(float));
        const int64_t ld_dst = (int64_t)(v->stride[node->dst] / sizeof(float));
        if (ops->matmul)
            ops->matmul(w, x, ld_x, xq, v->xq_stride, dst, ld_dst, n_tok, begin, end);
        else
            trn_matmul_by_matvec(ops->matvec, w, x, ld_x, xq, v->xq_stride, dst, ld_dst, n_tok, begin, end);
        break;
    }
    case TRN_OP_ATTENTION: { /* (KV head, token, query head of the group) triples in that order: a thread's run of
                                triples that share a KV head and a token is one call */
        const int group = node->n_head / node->n_head_kv, hd = node->head_dim;
        const int64_t per_kv = (int64_t)n_tok * group;
        const int64_t k_head = cache_head_floats(c, node->src[1], g->n_ctx), v_head = cache_head_floats(c, node->src[2], g->n_ctx);
        const float *k_cache = c->data[node->src[1]], *v_cache = c->data[node->src[2]];
        float *scores = c->scores + (int64_t)ith * TRN_ATTENTION_SCRATCH(g->n_ctx);
        split((int64_t)node->n_head * n_tok, ith, nth, 1, &begin, &end);
        if (n_tok == 1 && end > begin) /* a step: this thread's KV heads, every position, requested up front */
            prefetch_kv(c, node, begin / group, (end - 1) / group + 1, int_at(v, node->src[3], t0) + 1);
        for (int64_t i = begin; i < end;) {
            const int64_t kv = i / per_kv, t = t0 + i % per_kv / group, j = i % group;
            const int n_q = (int)TRN_MIN(group - j, end - i);
            const int64_t h = kv * group + j;
            ops->attention((const float *)row_at(v, node->src[0], t) + h * hd, n_q, k_cache + kv * k_head,
                           v_cache + kv * v_head, hd, int_at(v, node->src[3], t) + 1, hd, scores,
                           (float *)row_at(v, node->dst, t) + h * hd);
            i += n_q;
        }
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
                    memcpy((uint8_t *)c->data[node->dst] + (size_t)pos * (size_t)width * 4, s0, (size_t)width * 4);
                    break;
                }
                store_cache_heads(c, node->dst, s0, pos, 0, width / hd, hd);
                break;
            }
            case TRN_OP_SAMPLE: {
                const int pos = int_at(v, node->src[2], t);
                float *logits = (float *)s0; /* the raw logits stay an output: copied where sampling modifies them */
                if (!trn_sampling_keeps_logits(&c->config.sampling)) {
                    memcpy(c->sample_logits, s0, (size_t)g->model->hp.n_vocab * sizeof(float));
                    logits = c->sample_logits;
                }
                *(int32_t *)dst = trn_sampler_sample(c->sampler, &c->config.sampling, logits, s1, pos + 1, pos);
                break;
            }
            default:
                break;
            }
        }
        break;
    }
}

/* The profile kind of node n: its op, or for MATVEC one kind per output width (the first PROF_MATVEC_WIDTHS
 * widths met; later ones share the op's own kind). */
static int profile_kind(prof_entry *table, const trn_node *node, int64_t width) {
    if (node->op != TRN_OP_MATVEC)
        return node->op;
    prof_entry *e = table + TRN_OP_COUNT + 1;
    for (int k = 0; k < PROF_MATVEC_WIDTHS; k++)
        if (e[k].width == width || (e[k].width == 0 && (e[k].width = width)))
            return TRN_OP_COUNT + 1 + k;
    return node->op;
}

/* Closes the interval [*t, now) as work or wait of kind k in a thread's table, where there is one. */
static inline void profile_mark(prof_entry *table, int k, int waited, double *t) {
    if (!table)
        return;
    const double now = trn_time_s();
    prof_entry *e = &table[k];
    if (waited) {
        e->wait_s += now - *t;
    } else {
        e->work_s += now - *t;
        e->count++;
    }
    *t = now;
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

static void run_pass(cpu_context *c, const pass *p) {
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
            if (item->step_skip && p->n_tok == 1)
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
                kind = table ? profile_kind(table, node, g->buffers[node->dst].ne[0]) : 0;
                profile_mark(table, kind, 0, &t);
                break;
            }
        }
    }
}

/* ---- the plan: which thread work may follow which without a barrier ---- */

/* A byte range one item reads or writes: activations share the arena (region 0, where the planner reuses
 * offsets), every other buffer is its own region, the int8 scratch too. */
typedef struct {
    int region;
    size_t lo, hi;
    int write;
} mem_access;

enum { REGION_XQ = -1, MAX_ACCESSES = TRN_MAX_SRC + 3 };

static mem_access buffer_access(const trn_graph *g, int id, int write) {
    const trn_buffer *b = &g->buffers[id];
    if (b->kind == TRN_BUF_ACTIVATION)
        return (mem_access){0, b->offset, b->offset + b->bytes, write};
    return (mem_access){id + 1, 0, b->bytes, write};
}

/* Nodes whose threads each take whole tokens (split over the pass's tokens): the rows of a token that one such
 * node writes are read by the next one in the same thread, so no barrier is needed between them. */
static int takes_tokens(const trn_node *node) {
    return node->op == TRN_OP_GET_ROW || node->op == TRN_OP_ROPE || node->op == TRN_OP_STORE_ROW;
}

/* Which tokens of a pass a node runs for (first_token): 0 body, 1 head, 2 the sampled token. */
static int token_class(const trn_graph *g, int n) {
    return g->nodes[n].op == TRN_OP_SAMPLE ? 2 : n >= g->n_body_nodes ? 1 : 0;
}

typedef struct {
    mem_access acc[MAX_ACCESSES];
    int n_acc;
    int local;  /* token class + 1 for nodes that take whole tokens, 0 otherwise */
} item_effects;

static int conflicts(const item_effects *a, const item_effects *b) {
    if (a->local && a->local == b->local)
        return 0;
    for (int i = 0; i < a->n_acc; i++)
        for (int j = 0; j < b->n_acc; j++) {
            const mem_access *x = &a->acc[i], *y = &b->acc[j];
            if ((x->write || y->write) && x->region == y->region && x->lo < y->hi && y->lo < x->hi)
                return 1;
        }
    return 0;
}

/* Whether product b may join the group that product a heads in a step: one type and layout, and rows in whole
 * sixteens (a thread's rows never cut a group of the X16 and X4 layouts). The graph says which products read one
 * input (group_nodes); these are this backend's conditions. */
static int groups_with(const cpu_context *c, int a, int b) {
    const trn_graph *g = c->graph;
    const trn_node *x = &g->nodes[a], *y = &g->nodes[b];
    const trn_matrix *u = &c->matrix[x->src[0]], *w = &c->matrix[y->src[0]];
    return reads_int8(c, x) == reads_int8(c, y) && u->type == w->type && u->layout == w->layout &&
           u->rows % MATVEC_ROW_ALIGN == 0 && w->rows % MATVEC_ROW_ALIGN == 0;
}

/* Runs the graph's product groups (group_nodes: Q, K and V; gate and up) as one product in a step, where the plan
 * puts no barrier between their nodes: the threads split the rows of all of them (matvec_shared), so that each
 * thread reads one span of weights instead of a piece of each matrix. Prefill batches run them one by one.
 * TRN_CPU_GROUPS=0 turns this off. */
static void group_products(cpu_context *c) {
    const char *groups = getenv("TRN_CPU_GROUPS");
    if (groups && strcmp(groups, "0") == 0)
        return;
    const trn_graph *g = c->graph;
    for (int i = 0; i < c->n_plan; i++) {
        plan_item *head = &c->plan[i];
        if (head->kind != ITEM_NODE || g->nodes[head->node].group_nodes < 2)
            continue;
        const int last = head->node + g->nodes[head->node].group_nodes; /* one past the graph's group */
        int j = i + 1;
        while (j < c->n_plan && c->plan[j].kind == ITEM_NODE && c->plan[j].node == c->plan[j - 1].node + 1 &&
               c->plan[j].node < last && groups_with(c, head->node, c->plan[j].node))
            c->plan[j++].step_skip = 1;
        if (j - i > 1)
            c->group_end[head->node] = c->plan[j - 1].node + 1;
        i = j - 1;
    }
}

/* Makes c->plan. First where each int8 matrix input is quantized: by the elementwise node that wrote it (each
 * thread its own blocks, no extra pass) where no other int8 product comes between, else in a pass of its own
 * before the product; an input already in the scratch is not quantized again. Then the items in node order, with
 * a barrier before an item only where it touches memory that an item since the last barrier wrote, or writes
 * what such an item read. */
static trn_status make_plan(cpu_context *c) {
    const trn_graph *g = c->graph;
    uint8_t *before = calloc((size_t)g->n_nodes, 1), *after = calloc((size_t)g->n_nodes, 1);
    item_effects *open = malloc((size_t)g->n_nodes * 2 * sizeof(item_effects)); /* items since the last barrier */
    c->plan = malloc((size_t)g->n_nodes * 3 * sizeof(plan_item));
    if (!before || !after || !open || !c->plan) {
        free(before);
        free(after);
        free(open);
        return trn_fail(TRN_ERR_NOMEM, "out of memory planning the CPU backend's steps");
    }
    int quantized = -1, quantized_class = -1;
    for (int n = 0; n < g->n_nodes; n++) {
        const trn_node *node = &g->nodes[n];
        if (reads_int8(c, node) && (node->src[1] != quantized || token_class(g, n) != quantized_class)) {
            int writer = n - 1;
            while (writer >= 0 && g->nodes[writer].dst != node->src[1])
                writer--;
            int fuse = writer >= 0 && token_class(g, writer) == token_class(g, n) &&
                       g->buffers[node->src[1]].ne[0] % TRN_QK_K == 0 &&
                       (g->nodes[writer].op == TRN_OP_RMSNORM || g->nodes[writer].op == TRN_OP_SWIGLU ||
                        g->nodes[writer].op == TRN_OP_ADD);
            for (int m = writer + 1; fuse && m < n; m++)
                fuse = !reads_int8(c, &g->nodes[m]);
            if (fuse)
                after[writer] = 1;
            else
                before[n] = 1;
            quantized = node->src[1];
            quantized_class = token_class(g, n);
        }
        if (node->dst == quantized)
            quantized = -1;
    }
    int n_open = 0;
    c->n_plan = 0;
    for (int n = 0; n < g->n_nodes; n++) {
        const trn_node *node = &g->nodes[n];
        for (int part = 0; part < 2; part++) {
            item_effects e = {.n_acc = 0};
            if (part == 0) { /* the quantization pass of the node's input, where planned */
                if (!before[n])
                    continue;
                e.acc[e.n_acc++] = buffer_access(g, node->src[1], 0);
                e.acc[e.n_acc++] = (mem_access){REGION_XQ, 0, 1, 1};
            } else {
                for (int k = 0; k < TRN_MAX_SRC; k++)
                    if (node->src[k] >= 0 && g->buffers[node->src[k]].kind != TRN_BUF_WEIGHT)
                        e.acc[e.n_acc++] = buffer_access(g, node->src[k], 0);
                e.acc[e.n_acc++] = buffer_access(g, node->dst, 1);
                if (reads_int8(c, node) || after[n])
                    e.acc[e.n_acc++] = (mem_access){REGION_XQ, 0, 1, after[n]};
                e.local = takes_tokens(node) ? token_class(g, n) + 1 : 0;
            }
            int wait = 0;
            for (int i = 0; i < n_open && !wait; i++)
                wait = conflicts(&open[i], &e);
            if (wait) {
                int next = n; /* the first product from here on */
                while (next < g->n_nodes && g->nodes[next].op != TRN_OP_MATVEC)
                    next++;
                c->plan[c->n_plan++] = (plan_item){ITEM_BARRIER, n, 0, next < g->n_nodes ? next : -1, 0};
                n_open = 0;
            }
            open[n_open++] = e;
            c->plan[c->n_plan++] = (plan_item){part == 0 ? ITEM_QUANTIZE : ITEM_NODE, n, after[n], -1, 0};
        }
    }
    free(before);
    free(after);
    free(open);
    group_products(c);
    return TRN_OK;
}

/* Prints the profile: per kind, calls per step and microseconds per step of work and of barrier wait, per thread. */
static void print_profile(const cpu_context *c) {
    if (!c->profile || c->profile_steps == 0)
        return;
    const double steps = c->profile_steps;
    fprintf(stderr, "cpu profile (TRN_CPU_PROFILE): %d %s, microseconds per pass, work / barrier wait per thread\n",
            c->profile_steps, c->profile_batches ? "prefill batches" : "steps");
    double total[2] = {0.0, 0.0};
    for (int k = 0; k < PROF_KINDS; k++) {
        const prof_entry *e0 = &c->profile[0][k];
        if (e0->count == 0)
            continue;
        char name[48];
        if (k == PROF_QUANTIZE)
            snprintf(name, sizeof(name), "quantize");
        else if (k > PROF_QUANTIZE)
            snprintf(name, sizeof(name), "matvec %lld rows", (long long)e0->width);
        else
            snprintf(name, sizeof(name), "%s", trn_op_name((trn_op)k));
        fprintf(stderr, "  %-18s %6.1f calls", name, e0->count / steps);
        for (int th = 0; th < c->n_threads; th++) {
            const prof_entry *e = &c->profile[th][k];
            fprintf(stderr, "  %8.1f / %6.1f", e->work_s / steps * 1e6, e->wait_s / steps * 1e6);
            total[0] += th == 0 ? e->work_s : 0.0;
            total[1] += th == 0 ? e->wait_s : 0.0;
        }
        fprintf(stderr, "\n");
    }
    int barriers = 0;
    for (int i = 0; i < c->n_plan; i++)
        barriers += c->plan[i].kind == ITEM_BARRIER;
    fprintf(stderr, "  thread 0: %.1f us work + %.1f us waiting per step; %d barriers per step (%d nodes)\n",
            total[0] / steps * 1e6, total[1] / steps * 1e6, barriers, c->graph->n_nodes);
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
    print_profile(c);
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
    free(c->kv_ahead);
    free(c->group_end);
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
    c->ops = trn_cpu_ops_for_backend(config->kernels, &kernels);
    if (!c->ops)
        return trn_fail(TRN_ERR_INVALID, "kernels '%s'%s are not available: expected scalar, avx2, avx512 or "
                        "auto, a table this build and CPU can run", kernels, config->kernels && *config->kernels ? "" : " (TRN_KERNELS)");
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
    c->scores = trn_alloc((size_t)c->n_threads * (size_t)TRN_ATTENTION_SCRATCH(g->n_ctx) * sizeof(float));
    c->cache_head_dim = calloc((size_t)g->n_buffers, sizeof(int));
    c->cache_is_k = calloc((size_t)g->n_buffers, 1);
    c->kv_ahead = malloc((size_t)g->n_nodes * sizeof(int));
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
    if (!c->data || !c->owned || !c->matrix || !c->arena || !c->queues || !c->xq || !c->rope_cos_sin || !c->scores ||
        !c->cache_head_dim || !c->cache_is_k || !c->kv_ahead || !c->group_end || !c->sampler || !c->sample_logits || !c->one.stride || !c->batch.data || !c->batch.stride || !c->batch.xq || !c->batch_arena ||
        !c->batch_inputs) {
        cpu_release(c);
        return trn_fail(TRN_ERR_NOMEM, "out of memory preparing the CPU backend");
    }
    for (int n = 0; n < g->n_nodes; n++) {
        c->kv_ahead[n] = -1;
        if (g->nodes[n].op != TRN_OP_ATTENTION)
            continue;
        c->cache_head_dim[g->nodes[n].src[1]] = c->cache_head_dim[g->nodes[n].src[2]] = g->nodes[n].head_dim;
        c->cache_is_k[g->nodes[n].src[1]] = 1;
        int first = -1; /* the first product after the norm that precedes this attention */
        for (int m = n - 1; m >= 0 && g->nodes[m].op != TRN_OP_RMSNORM && g->nodes[m].op != TRN_OP_ATTENTION; m--)
            if (g->nodes[m].op == TRN_OP_MATVEC)
                first = m;
        if (first >= 0)
            c->kv_ahead[first] = n;
    }
    size_t repacked_bytes = 0, repacked_at = 0; /* each repacked matrix 64-byte aligned in c->repacked */
    for (int i = 0; i < g->n_buffers; i++)
        if (repack_layout(c, i) != TRN_LAYOUT_ROWS)
            repacked_bytes += (g->buffers[i].bytes + 63) & ~(size_t)63;
    if (repacked_bytes && !(c->repacked = trn_alloc_huge(repacked_bytes))) {
        cpu_release(c);
        return trn_fail(TRN_ERR_NOMEM, "out of memory repacking %.1f MB of weights", repacked_bytes / 1e6);
    }
    size_t kv_bytes = 0, kv_at = 0; /* each KV cache 64-byte aligned in c->kv_region, zeroed */
    for (int i = 0; i < g->n_buffers; i++)
        if (c->cache_head_dim[i])
            kv_bytes += cache_bytes(c, i);
    if (kv_bytes) {
        if (!(c->kv_region = trn_alloc_huge(kv_bytes))) {
            cpu_release(c);
            return trn_fail(TRN_ERR_NOMEM, "out of memory for %.1f MB of KV cache", kv_bytes / 1e6);
        }
        memset(c->kv_region, 0, kv_bytes);
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
        default: /* inputs, state, outputs: their own zeroed memory (KV caches: their part of kv_region) */
            if (c->cache_head_dim[i]) {
                c->data[i] = (uint8_t *)c->kv_region + kv_at;
                kv_at += cache_bytes(c, i);
                break;
            }
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
    const trn_status planned = make_plan(c);
    if (planned != TRN_OK) {
        cpu_release(c);
        return planned;
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
