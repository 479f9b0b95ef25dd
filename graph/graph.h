/* graph.h: the static compute graph (IR) of one decode step of a Llama model.
 *
 * A graph is a list of nodes over buffers, built once per model and context size. Buffers are:
 *   weights      bound to model tensors (never written),
 *   inputs       the step scalars `token` and `pos` (int32), written by the host before each step,
 *   activations  scratch vectors, placed by the buffer planner at offsets in one arena,
 *   state        persistent across steps: the KV cache of every layer and the token history,
 *   outputs      `logits` and `next_token`, read by the host after a step.
 * Because token and position live in buffers, the same graph (and, on the GPU, the same captured CUDA
 * Graph) serves every token. Backends execute nodes in order; a node reads its sources and writes `dst`.
 * Nothing here touches a device. */
#ifndef TRN_GRAPH_H
#define TRN_GRAPH_H

#include <stdio.h>

#include "host/model.h"

typedef enum {
    TRN_BUF_WEIGHT,
    TRN_BUF_INPUT,
    TRN_BUF_ACTIVATION,
    TRN_BUF_STATE,
    TRN_BUF_OUTPUT,
} trn_buf_kind;

typedef struct {
    char name[48];
    trn_buf_kind kind;
    trn_type type;      /* element type: the tensor's for weights, F32 otherwise (see is_i32) */
    int is_i32;         /* inputs, token history and next_token hold int32 */
    int64_t ne[2];      /* ne[0] contiguous: weights [cols, rows], caches [kv_dim, n_ctx], vectors [n, 1] */
    size_t bytes;
    const trn_gguf_tensor *tensor; /* weights */
    size_t offset;      /* activations: byte offset in the arena (set by the planner) */
    int first_node, last_node; /* activations: live range, for planning */
} trn_buffer;

typedef enum {
    TRN_OP_GET_ROW,     /* dst[n_embd] = row src1[0] (token) of src0 (embedding table [n_vocab][n_embd]) */
    TRN_OP_RMSNORM,     /* dst[n] = src0[n] / sqrt(mean(src0^2) + eps) * src1[n] (weight) */
    TRN_OP_MATVEC,      /* dst[rows] = src0 W[rows][cols] @ src1 x[cols] */
    TRN_OP_ROPE,        /* dst[n_heads][head_dim] = src0 with adjacent pairs rotated by position src1[0] */
    TRN_OP_STORE_ROW,   /* row src1[0] (pos) of dst (cache [n_ctx][width]) = src0[width] */
    TRN_OP_ATTENTION,   /* dst[n_head*hd] = softmax(q K^T / sqrt(hd)) V over positions 0..src3[0];
                           src0 q, src1 K cache, src2 V cache, src3 pos; GQA: query head h uses KV head
                           h / (n_head / n_head_kv) */
    TRN_OP_SWIGLU,      /* dst[n] = silu(src0[n]) * src1[n] */
    TRN_OP_ADD,         /* dst[n] = src0[n] + src1[n] */
    TRN_OP_SAMPLE,      /* dst[0] (int32) = next token sampled from src0 logits, with the repetition penalty
                           over src1 history[0..src2[0]] (pos); parameters and seed set at prepare */
    TRN_OP_COUNT
} trn_op;

#define TRN_MAX_SRC 4

/* Chains of nodes a backend may run as one kernel, marked by the builder on a chain's first node. Only the chain's
 * outputs are read after it (q, the caches; swiglu; x; logits): the values it computes inside (the normed input, the
 * unrotated k, v, gate, up, a product before its residual add) may stay in registers. Whether a chain is fused is
 * the backend's choice (its kernels' types and modes). */
typedef enum {
    TRN_FUSE_NONE = 0,
    TRN_FUSE_NORM_QKV_ROPE_STORE, /* RMSNORM h; MATVEC q, k, v of h; ROPE q; ROPE k; STORE_ROW k; STORE_ROW v (8) */
    TRN_FUSE_NORM_GATE_UP_SWIGLU, /* RMSNORM h; MATVEC gate, up of h; SWIGLU (4) */
    TRN_FUSE_NORM_PRODUCT,        /* RMSNORM h; MATVEC of h (2: the LM head) */
    TRN_FUSE_PRODUCT_ADD,         /* MATVEC o; ADD x = x + o (2: a residual) */
    TRN_FUSE_COUNT
} trn_fusion;

typedef struct {
    trn_op op;
    int layer;              /* -1 outside the blocks */
    int dst;
    int src[TRN_MAX_SRC];   /* buffer ids, -1 when unused */
    /* op parameters */
    float eps;              /* RMSNORM */
    int n_head, n_head_kv, head_dim; /* ROPE (n_head = heads rotated), ATTENTION */
    float rope_base;        /* ROPE */
    /* marks of the builder (what backends may do together) */
    trn_fusion fusion;      /* on a chain's first node: the chain; TRN_FUSE_NONE elsewhere */
    int fusion_nodes;       /* on a chain's first node: its length (this node and the next fusion_nodes - 1) */
    int group_nodes;        /* on the first of consecutive products of one input (Q, K, V; gate, up): how many; a
                               backend may run them as one product over all their rows. 0 elsewhere */
} trn_node;

typedef struct {
    const trn_model *model;
    int n_ctx;
    trn_buffer *buffers;
    int n_buffers;
    trn_node *nodes;
    int n_nodes;
    int n_body_nodes;      /* nodes before the final norm: enough for a prompt token whose logits are unused */
    size_t arena_bytes;    /* planned activation arena */
    int buf_token, buf_pos, buf_history, buf_logits, buf_next_token;
} trn_graph;

/* Builds the decode step for `model` with a KV cache of n_ctx positions, and plans its activations. */
trn_status trn_graph_build_decode(const trn_model *model, int n_ctx, trn_graph **out);
void trn_graph_free(trn_graph *graph);

/* A readable listing: one line per node with its buffers, shapes and types, then totals. */
void trn_graph_print(const trn_graph *graph, FILE *out);

const char *trn_op_name(trn_op op);
const char *trn_fusion_name(trn_fusion fusion); /* "norm+qkv+rope+store", ... */
/* Bytes of all state buffers (KV cache, history). */
size_t trn_graph_state_bytes(const trn_graph *graph);

#endif
