/* cpu_internal.h: internal to the CPU backend: the context a prepared backend holds, the plan of a pass and the
 * helpers its parts share. The parts: cpu_backend.c (the backend interface: prepare, step, prefill, free),
 * cpu_plan.c (the plan: barriers, where inputs are quantized, product groups), cpu_exec.c (a pass: nodes split over
 * the threads, the barrier, row queues, KV prefetch), cpu_profile.c (TRN_CPU_PROFILE). */
#ifndef TRN_CPU_INTERNAL_H
#define TRN_CPU_INTERNAL_H

#include <stdatomic.h>
#include <stdint.h>

#include "host/sampler.h"
#include "cpu_backend.h"
#include "ops.h"

enum { CPU_DEFAULT_BATCH = 128 }; /* prefill tokens per batch where the config does not say */

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
    const int32_t *slot;   /* [tokens] the sequence slot whose state (KV cache, history) each token uses; NULL: 0 */
} buffer_view;

/* One pass: n_tok tokens through nodes [first_node, n_nodes); the head nodes (from the graph's n_body_nodes on) for
 * tokens [head_first, n_tok) only; SAMPLE, where `sample` is set, for the last token. */
typedef struct {
    const buffer_view *view;
    int n_tok, head_first, n_nodes, sample;
    int first_node;        /* 0 but for a batch's head pass (decode_batch) */
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
    double widened_bytes; /* bytes the matrices held wider than the file's type add (ops.h, tq1_0_as_tq2_0) */
    trn_block_q8_act *xq; /* int8 copy of the current matrix-vector input */
    float *rope_cos_sin; /* [n_ctx][head_dim] interleaved cos, sin per pair */
    float *scores;       /* [n_threads][scores_stride] attention scratch */
    int64_t scores_stride; /* TRN_ATTENTION_SCRATCH(n_ctx, head_dim) */
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
    int split_tokens;      /* a batch's ternary products split tokens, not rows, where every thread gets at least
                              this many (the table's matmul_split_tokens; 0 with TRN_CPU_SPLIT_TOKENS=0: rows) */
    int attention_steal;   /* a thread done with its attention heads takes calls another has not started (0 with
                              TRN_CPU_ATTENTION_STEAL=0: each thread its own even share) */
    uint8_t *batch_arena;  /* [arena_bytes * max_batch] */
    int32_t *batch_inputs; /* [2][max_batch]: token ids, then positions */
    int32_t *batch_slots;  /* [max_batch]: decode_batch's sequence slot of each token */
    int n_slots;           /* sequences whose state the backend holds (config n_slots) */
    size_t kv_slot_bytes;  /* one slot's part of kv_region (slot s of every cache: s * kv_slot_bytes further) */
    plan_item *plan;     /* [n_plan] what the threads do in a pass, in order (make_plan) */
    int n_plan;
    int *group_end;      /* [n_nodes] for a product that heads a group a step runs as one (group_products): one
                            past the group's last node; 0 for other nodes */
    spin_barrier barrier;
    row_queue *queues;   /* [n_nodes][n_threads] */
    prof_entry (*profile)[PROF_KINDS]; /* TRN_CPU_PROFILE: [n_threads][kind] times of passes; NULL otherwise */
    int profile_steps;   /* passes profiled */
    int profile_batches; /* TRN_CPU_PROFILE=prefill: profile batches of several tokens, not steps */
} cpu_context;

enum { MATVEC_ROW_ALIGN = 16 }; /* a thread's rows of a product start at a multiple: whole X16 and X4 groups */

static inline int is_ternary(trn_type type) { return type == TRN_TYPE_TQ1_0 || type == TRN_TYPE_TQ2_0; }

/* Whether a MATVEC node reads its input as int8 blocks (ternary weight, int8 activations). */
static inline int reads_int8(const cpu_context *c, const trn_node *node) {
    return node->op == TRN_OP_MATVEC && c->config.act == TRN_ACT_INT8 && is_ternary(c->matrix[node->src[0]].type);
}

/* Floats of one KV head's part of cache `id` that hold its first n positions; with n = n_ctx, the distance from
 * one KV head's part to the next. */
static inline int64_t cache_head_floats(const cpu_context *c, int id, int64_t n) {
    const int hd = c->cache_head_dim[id];
    return c->cache_is_k[id] ? TRN_K_FLOATS(n, hd) : n * hd;
}


/* Row of token t of buffer id. */
static inline void *row_at(const buffer_view *v, int id, int64_t t) {
    return (uint8_t *)v->data[id] + (size_t)t * v->stride[id];
}

static inline int32_t int_at(const buffer_view *v, int id, int64_t t) { return *(const int32_t *)row_at(v, id, t); }

/* Where state buffer `id` (a KV cache or the token history) of token t's sequence slot begins: slot 0 is c->data[id];
 * the others follow, kv_slot_bytes apart for KV caches, a buffer's bytes apart otherwise. */
static inline void *state_at(const cpu_context *c, const buffer_view *v, int id, int64_t t) {
    const size_t slot = v->slot ? (size_t)v->slot[t] : 0;
    return (uint8_t *)c->data[id] + slot * (c->cache_head_dim[id] ? c->kv_slot_bytes : c->graph->buffers[id].bytes);
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


/* cpu_plan.c: makes c->plan (and the product groups of a step) from the graph and the kernel table. */
trn_status trn_cpu_make_plan(cpu_context *c);
/* cpu_exec.c: runs pass p on c->n_threads threads (one OpenMP parallel region). */
void trn_cpu_run_pass(cpu_context *c, const pass *p);
/* cpu_profile.c: the profile kind of a node (its op, or for MATVEC one per output width), and the printout. */
int trn_cpu_profile_kind(prof_entry *table, const trn_node *node, int64_t width);
void trn_cpu_print_profile(const cpu_context *c);

#endif
