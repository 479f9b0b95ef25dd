/* graph.c: building, planning and printing the decode-step graph (see graph.h). */
#include "graph.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    trn_graph *g;
    int cap_buffers, cap_nodes;
    int failed;
} builder;

static int add_buffer(builder *b, trn_buf_kind kind, const char *name, int64_t ne0, int64_t ne1, int is_i32) {
    trn_graph *g = b->g;
    if (g->n_buffers == b->cap_buffers) {
        int cap = b->cap_buffers ? 2 * b->cap_buffers : 256;
        trn_buffer *grown = realloc(g->buffers, (size_t)cap * sizeof(trn_buffer));
        if (!grown) {
            b->failed = 1;
            return 0;
        }
        g->buffers = grown;
        b->cap_buffers = cap;
    }
    trn_buffer *buf = &g->buffers[g->n_buffers];
    memset(buf, 0, sizeof(*buf));
    snprintf(buf->name, sizeof(buf->name), "%s", name);
    buf->kind = kind;
    buf->type = TRN_TYPE_F32;
    buf->is_i32 = is_i32;
    buf->ne[0] = ne0;
    buf->ne[1] = ne1;
    buf->bytes = (size_t)(ne0 * ne1) * 4;
    buf->first_node = buf->last_node = -1;
    return g->n_buffers++;
}

static int add_weight(builder *b, const trn_gguf_tensor *t) {
    /* a tensor used twice (tied LM head) is bound to one buffer */
    for (int i = 0; i < b->g->n_buffers; i++)
        if (b->g->buffers[i].tensor == t)
            return i;
    int id = add_buffer(b, TRN_BUF_WEIGHT, t->name, t->ne[0], t->ne[1], 0);
    if (b->failed)
        return id;
    trn_buffer *buf = &b->g->buffers[id];
    buf->type = t->type;
    buf->bytes = t->bytes;
    buf->tensor = t;
    return id;
}

static int activation(builder *b, int layer, const char *name, int64_t n) {
    char full[48];
    if (layer >= 0)
        snprintf(full, sizeof(full), "blk.%d.%s", layer, name);
    else
        snprintf(full, sizeof(full), "%s", name);
    return add_buffer(b, TRN_BUF_ACTIVATION, full, n, 1, 0);
}

/* Marks the last `count` nodes added as one chain of `fusion`. */
static void mark_chain(builder *b, trn_fusion fusion, int count) {
    if (b->failed)
        return;
    trn_node *first = &b->g->nodes[b->g->n_nodes - count];
    first->fusion = fusion;
    first->fusion_nodes = count;
}

static trn_node *add_node(builder *b, trn_op op, int layer, int dst, int s0, int s1, int s2, int s3) {
    trn_graph *g = b->g;
    if (g->n_nodes == b->cap_nodes) {
        int cap = b->cap_nodes ? 2 * b->cap_nodes : 512;
        trn_node *grown = realloc(g->nodes, (size_t)cap * sizeof(trn_node));
        if (!grown) {
            b->failed = 1;
            static trn_node sink;
            return &sink;
        }
        g->nodes = grown;
        b->cap_nodes = cap;
    }
    trn_node *n = &g->nodes[g->n_nodes++];
    memset(n, 0, sizeof(*n));
    n->op = op;
    n->layer = layer;
    n->dst = dst;
    n->src[0] = s0;
    n->src[1] = s1;
    n->src[2] = s2;
    n->src[3] = s3;
    return n;
}

/* Live ranges, then first-fit placement: each activation gets the lowest offset that overlaps no buffer
 * whose live range intersects its own. Offsets are 64-byte aligned for the SIMD kernels. */
static void plan_activations(trn_graph *g) {
    for (int n = 0; n < g->n_nodes; n++) {
        const trn_node *node = &g->nodes[n];
        int ids[TRN_MAX_SRC + 1] = {node->dst, node->src[0], node->src[1], node->src[2], node->src[3]};
        for (int i = 0; i < TRN_MAX_SRC + 1; i++) {
            if (ids[i] < 0)
                continue;
            trn_buffer *buf = &g->buffers[ids[i]];
            if (buf->first_node < 0)
                buf->first_node = n;
            buf->last_node = n;
        }
    }
    g->arena_bytes = 0;
    for (int i = 0; i < g->n_buffers; i++) {
        trn_buffer *buf = &g->buffers[i];
        if (buf->kind != TRN_BUF_ACTIVATION)
            continue;
        size_t size = (buf->bytes + 63) & ~(size_t)63;
        size_t offset = 0;
        for (int moved = 1; moved;) { /* bump past every conflicting placed buffer until none conflicts */
            moved = 0;
            for (int j = 0; j < i; j++) {
                const trn_buffer *other = &g->buffers[j];
                if (other->kind != TRN_BUF_ACTIVATION || other->last_node < buf->first_node ||
                    other->first_node > buf->last_node)
                    continue;
                size_t other_size = (other->bytes + 63) & ~(size_t)63;
                if (offset < other->offset + other_size && other->offset < offset + size) {
                    offset = other->offset + other_size;
                    moved = 1;
                }
            }
        }
        buf->offset = offset;
        if (offset + size > g->arena_bytes)
            g->arena_bytes = offset + size;
    }
}

trn_status trn_graph_build_decode(const trn_model *model, int n_ctx, trn_graph **out) {
    *out = NULL;
    const trn_hparams *hp = &model->hp;
    if (n_ctx < 1 || n_ctx > TRN_MAX_CONTEXT)
        return trn_fail(TRN_ERR_INVALID, "context size %d must be from 1 to %d", n_ctx, TRN_MAX_CONTEXT);
    trn_graph *g = calloc(1, sizeof(*g));
    if (!g)
        return trn_fail(TRN_ERR_NOMEM, "out of memory building the graph");
    g->model = model;
    g->n_ctx = n_ctx;
    builder b = {g, 0, 0, 0};
    const int64_t q_dim = (int64_t)hp->n_head * hp->head_dim;
    const int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;

    g->buf_token = add_buffer(&b, TRN_BUF_INPUT, "token", 1, 1, 1);
    g->buf_pos = add_buffer(&b, TRN_BUF_INPUT, "pos", 1, 1, 1);
    g->buf_history = add_buffer(&b, TRN_BUF_STATE, "history", 1, n_ctx, 1); /* [n_ctx] rows of one id */

    int x = activation(&b, -1, "x", hp->n_embd); /* the residual stream */
    add_node(&b, TRN_OP_STORE_ROW, -1, g->buf_history, g->buf_token, g->buf_pos, -1, -1);
    add_node(&b, TRN_OP_GET_ROW, -1, x, add_weight(&b, model->token_embd), g->buf_token, -1, -1);

    for (int l = 0; l < hp->n_layer && !b.failed; l++) {
        const trn_layer_weights *w = &model->layers[l];
        char name[48];
        snprintf(name, sizeof(name), "cache.k.%d", l);
        int k_cache = add_buffer(&b, TRN_BUF_STATE, name, kv_dim, n_ctx, 0);
        snprintf(name, sizeof(name), "cache.v.%d", l);
        int v_cache = add_buffer(&b, TRN_BUF_STATE, name, kv_dim, n_ctx, 0);

        /* attention */
        int h = activation(&b, l, "attn_in", hp->n_embd);
        int q = activation(&b, l, "q", q_dim);
        int k = activation(&b, l, "k", kv_dim);
        int v = activation(&b, l, "v", kv_dim);
        int att = activation(&b, l, "attn", q_dim);
        int o = activation(&b, l, "attn_out", hp->n_embd);
        trn_node *n = add_node(&b, TRN_OP_RMSNORM, l, h, x, add_weight(&b, w->attn_norm), -1, -1);
        n->eps = hp->rms_eps;
        add_node(&b, TRN_OP_MATVEC, l, q, add_weight(&b, w->wq), h, -1, -1);
        add_node(&b, TRN_OP_MATVEC, l, k, add_weight(&b, w->wk), h, -1, -1);
        add_node(&b, TRN_OP_MATVEC, l, v, add_weight(&b, w->wv), h, -1, -1);
        n = add_node(&b, TRN_OP_ROPE, l, q, q, g->buf_pos, -1, -1);
        n->n_head = hp->n_head, n->head_dim = hp->head_dim, n->rope_base = hp->rope_base;
        n = add_node(&b, TRN_OP_ROPE, l, k, k, g->buf_pos, -1, -1);
        n->n_head = hp->n_head_kv, n->head_dim = hp->head_dim, n->rope_base = hp->rope_base;
        add_node(&b, TRN_OP_STORE_ROW, l, k_cache, k, g->buf_pos, -1, -1);
        add_node(&b, TRN_OP_STORE_ROW, l, v_cache, v, g->buf_pos, -1, -1);
        mark_chain(&b, TRN_FUSE_NORM_QKV_ROPE_STORE, 8);
        if (!b.failed)
            g->nodes[g->n_nodes - 7].group_nodes = 3; /* q, k, v */
        n = add_node(&b, TRN_OP_ATTENTION, l, att, q, k_cache, v_cache, g->buf_pos);
        n->n_head = hp->n_head, n->n_head_kv = hp->n_head_kv, n->head_dim = hp->head_dim;
        add_node(&b, TRN_OP_MATVEC, l, o, add_weight(&b, w->wo), att, -1, -1);
        add_node(&b, TRN_OP_ADD, l, x, x, o, -1, -1);
        mark_chain(&b, TRN_FUSE_PRODUCT_ADD, 2);

        /* feed-forward (SwiGLU) */
        int hf = activation(&b, l, "ffn_in", hp->n_embd);
        int gate = activation(&b, l, "gate", hp->n_ff);
        int up = activation(&b, l, "up", hp->n_ff);
        int act = activation(&b, l, "swiglu", hp->n_ff);
        int down = activation(&b, l, "ffn_out", hp->n_embd);
        n = add_node(&b, TRN_OP_RMSNORM, l, hf, x, add_weight(&b, w->ffn_norm), -1, -1);
        n->eps = hp->rms_eps;
        add_node(&b, TRN_OP_MATVEC, l, gate, add_weight(&b, w->w_gate), hf, -1, -1);
        add_node(&b, TRN_OP_MATVEC, l, up, add_weight(&b, w->w_up), hf, -1, -1);
        add_node(&b, TRN_OP_SWIGLU, l, act, gate, up, -1, -1);
        mark_chain(&b, TRN_FUSE_NORM_GATE_UP_SWIGLU, 4);
        if (!b.failed)
            g->nodes[g->n_nodes - 3].group_nodes = 2; /* gate, up */
        add_node(&b, TRN_OP_MATVEC, l, down, add_weight(&b, w->w_down), act, -1, -1);
        add_node(&b, TRN_OP_ADD, l, x, x, down, -1, -1);
        mark_chain(&b, TRN_FUSE_PRODUCT_ADD, 2);
    }
    g->n_body_nodes = g->n_nodes;

    int xn = activation(&b, -1, "out_norm", hp->n_embd);
    g->buf_logits = add_buffer(&b, TRN_BUF_OUTPUT, "logits", hp->n_vocab, 1, 0);
    g->buf_next_token = add_buffer(&b, TRN_BUF_OUTPUT, "next_token", 1, 1, 1);
    trn_node *n = add_node(&b, TRN_OP_RMSNORM, -1, xn, x, add_weight(&b, model->output_norm), -1, -1);
    n->eps = hp->rms_eps;
    add_node(&b, TRN_OP_MATVEC, -1, g->buf_logits, add_weight(&b, model->output), xn, -1, -1);
    mark_chain(&b, TRN_FUSE_NORM_PRODUCT, 2);
    add_node(&b, TRN_OP_SAMPLE, -1, g->buf_next_token, g->buf_logits, g->buf_history, g->buf_pos, -1);

    if (b.failed) {
        trn_graph_free(g);
        return trn_fail(TRN_ERR_NOMEM, "out of memory building the graph");
    }
    plan_activations(g);
    *out = g;
    return TRN_OK;
}

void trn_graph_free(trn_graph *g) {
    if (!g)
        return;
    free(g->buffers);
    free(g->nodes);
    free(g);
}

const char *trn_op_name(trn_op op) {
    static const char *names[TRN_OP_COUNT] = {"get_row", "rmsnorm", "matvec", "rope", "store_row",
                                              "attention", "swiglu", "add", "sample"};
    return (unsigned)op < TRN_OP_COUNT ? names[op] : "?";
}

const char *trn_fusion_name(trn_fusion fusion) {
    static const char *names[TRN_FUSE_COUNT] = {"none", "norm+qkv+rope+store", "norm+gate+up+swiglu", "norm+product",
                                                "product+add"};
    return (unsigned)fusion < TRN_FUSE_COUNT ? names[fusion] : "?";
}

size_t trn_graph_state_bytes(const trn_graph *g) {
    size_t total = 0;
    for (int i = 0; i < g->n_buffers; i++)
        if (g->buffers[i].kind == TRN_BUF_STATE)
            total += g->buffers[i].bytes;
    return total;
}

static void describe_buffer(const trn_graph *g, int id, char *out, size_t cap) {
    const trn_buffer *buf = &g->buffers[id];
    const char *type = buf->is_i32 ? "i32" : trn_type_name(buf->type);
    if (buf->ne[1] > 1)
        snprintf(out, cap, "%s %s[%lldx%lld]", buf->name, type, (long long)buf->ne[1], (long long)buf->ne[0]);
    else
        snprintf(out, cap, "%s %s[%lld]", buf->name, type, (long long)buf->ne[0]);
}

void trn_graph_print(const trn_graph *g, FILE *out) {
    const trn_hparams *hp = &g->model->hp;
    int counts[TRN_BUF_OUTPUT + 1] = {0};
    size_t weight_bytes = 0;
    for (int i = 0; i < g->n_buffers; i++) {
        counts[g->buffers[i].kind]++;
        if (g->buffers[i].kind == TRN_BUF_WEIGHT)
            weight_bytes += g->buffers[i].bytes;
    }
    fprintf(out, "graph: one decode step of '%s': %d layers, context %d, %d nodes, %d buffers\n", g->model->name,
            hp->n_layer, g->n_ctx, g->n_nodes, g->n_buffers);
    fprintf(out, "inputs: token i32[1], pos i32[1]; outputs: logits f32[%d], next_token i32[1]\n", hp->n_vocab);
    fprintf(out, "marks: [chain]: nodes a backend may run as one kernel; [group]: products of one input a backend may "
                 "run as one\n");
    fprintf(out, "%-5s %-10s %-34s %s\n", "node", "op", "dst", "sources");
    for (int n = 0; n < g->n_nodes; n++) {
        const trn_node *node = &g->nodes[n];
        char dst[96], srcs[256] = "", one[96];
        describe_buffer(g, node->dst, dst, sizeof(dst));
        for (int s = 0; s < TRN_MAX_SRC && node->src[s] >= 0; s++) {
            describe_buffer(g, node->src[s], one, sizeof(one));
            size_t len = strlen(srcs);
            snprintf(srcs + len, sizeof(srcs) - len, "%s%s", s ? ", " : "", one);
        }
        char params[64] = "";
        if (node->op == TRN_OP_RMSNORM)
            snprintf(params, sizeof(params), "  eps=%g", node->eps);
        else if (node->op == TRN_OP_ROPE)
            snprintf(params, sizeof(params), "  heads=%d base=%g", node->n_head, node->rope_base);
        else if (node->op == TRN_OP_ATTENTION)
            snprintf(params, sizeof(params), "  heads=%d kv_heads=%d", node->n_head, node->n_head_kv);
        char marks[96] = "";
        if (node->fusion != TRN_FUSE_NONE)
            snprintf(marks, sizeof(marks), "  [chain %s: %d nodes]", trn_fusion_name(node->fusion), node->fusion_nodes);
        if (node->group_nodes > 1) {
            size_t len = strlen(marks);
            snprintf(marks + len, sizeof(marks) - len, "  [group of %d products]", node->group_nodes);
        }
        if (n == g->n_body_nodes)
            fprintf(out, "---- head (skipped for prompt tokens whose logits are unused) ----\n");
        fprintf(out, "%-5d %-10s %-34s %s%s%s\n", n, trn_op_name(node->op), dst, srcs, params, marks);
    }
    fprintf(out, "buffers: %d weights (%.1f MB), %d inputs, %d activations planned into a %zu-byte arena, "
                 "%d state (%.1f MB: KV cache and history), %d outputs\n",
            counts[TRN_BUF_WEIGHT], weight_bytes / 1e6, counts[TRN_BUF_INPUT], counts[TRN_BUF_ACTIVATION],
            g->arena_bytes, counts[TRN_BUF_STATE], trn_graph_state_bytes(g) / 1e6, counts[TRN_BUF_OUTPUT]);
}
