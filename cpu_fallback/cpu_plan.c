/* cpu_plan.c: the CPU backend's plan of a pass, made once at prepare: where each int8 matrix input is quantized,
 * barriers only where a node depends on another thread's work, and which of the graph's product groups a step runs
 * as one product. Nothing here runs a node. */
#include <stdlib.h>
#include <string.h>

#include "cpu_internal.h"

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
trn_status trn_cpu_make_plan(cpu_context *c) {
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

