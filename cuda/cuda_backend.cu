/* cuda_backend.cu: runs a trn_graph on an NVIDIA GPU, behind the backend interface of graph/backend.h.
 *
 * Owns: device choice and the free-memory check, the device buffers (the activation arena the planner sized, the KV
 * cache, the token history, int8 activation scratch, the sampler's scratch, a RoPE cos/sin table), the launch plan
 * (built once at prepare; in int8 mode the graph's fusion chains run as trn_cuda_ternary launches, see
 * match_fusion, and on sm_90 kernels use programmatic dependent launch), and two captured CUDA Graphs: the whole
 * step (token and position copied in from pinned host memory, every node, the sampled id copied back to pinned
 * memory) and the body alone (for prompt tokens whose logits are unused). A step writes token and position into pinned memory, launches
 * one graph, waits, and reads the sampled id.
 * Does not own: the kernels (the other .cu files, behind cuda_ops.h), weight placement and its copies (weights.cu).
 * Switches: TRN_CUDA_NO_GRAPH=1 (plain launches, to bisect a wrong result, with an NVTX range per layer stage; a
 * captured graph replays without host code, so it shows as one range per step), TRN_CUDA_NO_FUSION=1,
 * TRN_CUDA_NO_PDL=1, TRN_CUDA_PROFILE=1 (time per kind of launch, printed when the backend is freed),
 * TRN_CUDA_TERNARY=classic|lean (which ternary kernel the fused launches use; see cuda_ops.h),
 * TRN_CUDA_ATTENTION_SPLIT=64|32 (positions per block of the split attention kernel), TRN_CUDA_PREFILL=batched (prompts
 * as batches through prefill.cu; the default, until a GPU has run it: token by token), TRN_CUDA_FOLD_ENDS=1 (the
 * history store and embedding row folded into the first launch, greedy sampling into the LM head: fold_plan_ends). */
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nvtx3/nvToolsExt.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "cuda_check.h"
#include "cuda_ops.h"
#include "prefill.h"
#include "weights.h"

extern "C" {
#include "cpu_fallback/quants.h"
#include "cuda_backend.h"
}

namespace {

/* One launch of the plan: a fused ternary product covering several nodes, or one node by its own kernel (an
 * unfused ternary product in int8 mode quantizing its input first where the previous one did not). */
struct launch_entry {
    int node = 0, n_nodes = 1;
    bool fused = false, quantize = false;
    bool no_pdl = false;               /* launched without programmatic dependent launch (a step's first kernel) */
    trn_cuda_ternary_op op{};
    trn_cuda_l2_prefetch prefetch{}; /* attention, TRN_CUDA_L2_PREFETCH=1: the weights of the launches up to the next */
};

struct cuda_context {
    const trn_graph *graph = nullptr;
    trn_backend_config config{};
    int device = 0;
    cudaDeviceProp prop{};
    cudaStream_t stream = nullptr;
    std::vector<void *> device_allocations;
    std::vector<void *> buffer;          /* [n_buffers] device address of each buffer's elements */
    std::vector<trn_cuda_matrix> matrix; /* [n_buffers] weight views */
    trn_cuda_q8_block *xq = nullptr;
    float *rope_cos_sin = nullptr;
    void *sample_scratch = nullptr;
    void *attention_scratch = nullptr;   /* the split attention kernel's (fused plans only); nullptr: one block per head */
    void *argmax_scratch = nullptr;      /* TRN_CUDA_FOLD_ENDS=1: the LM head's greedy argmax */
    int32_t *pinned = nullptr;           /* [0] token, [1] position, [2] sampled id */
    float *host_logits = nullptr;
    trn_cuda_sampling sampling{};
    cudaGraphExec_t full = nullptr, body = nullptr;
    bool use_graph = true, fuse = true, pdl = false;
    bool fold_ends = false;              /* TRN_CUDA_FOLD_ENDS=1: see fold_plan_ends */
    int folded = 0;                      /* launches fold_plan_ends removed */
    trn_cuda_ternary_kernel ternary_kernel = TRN_CUDA_TERNARY_AUTO; /* TRN_CUDA_TERNARY */
    int attention_split = 0;             /* TRN_CUDA_ATTENTION_SPLIT: positions per block of the split kernel (0: 64) */
    double l2_prefetch_mb = 0.0;         /* TRN_CUDA_L2_PREFETCH=1: the most one attention launch asks L2 for (MB) */
    std::vector<launch_entry> plan;      /* the launches of a full step, in order */
    int plan_body = 0;                   /* entries before the head: a prompt token's step */
    int launches = 0;                    /* kernel launches per full step */
    trn_cuda::weights weights;           /* placement of the weights, the copies of streamed ones */
    bool batched_prefill = false;        /* TRN_CUDA_PREFILL=batched: prompts as batches (prefill.cu) */
    trn_cuda::prefill prefill;
    bool profile = false;                /* TRN_CUDA_PROFILE=1: an event after every launch of a full step */
    std::vector<cudaEvent_t> profile_events; /* [plan entries + 1] */
    std::vector<double> profile_ms;      /* [plan entries] summed over profiled steps */
    int profile_steps = 0;
    size_t device_bytes = 0;
    char description[480] = "";
};

constexpr int kDefaultPrefillBatch = 512; /* tokens per prefill batch where the configuration leaves it open */

cuda_context *ctx_of(trn_backend *b) { return static_cast<cuda_context *>(b->context); }

bool env_flag(const char *name) {
    const char *v = getenv(name);
    return v && v[0] == '1';
}

trn_status device_alloc(cuda_context *c, void **out, size_t bytes, const char *what) {
    TRN_TRY(trn_cuda_alloc(out, bytes, what, &c->device_bytes));
    c->device_allocations.push_back(*out);
    return TRN_OK;
}

void release(cuda_context *c) {
    if (c->full)
        cudaGraphExecDestroy(c->full);
    if (c->body)
        cudaGraphExecDestroy(c->body);
    for (void *p : c->device_allocations)
        cudaFree(p);
    trn_cuda::prefill_release(&c->prefill);
    trn_cuda::weights_release(&c->weights);
    for (cudaEvent_t e : c->profile_events)
        cudaEventDestroy(e);
    if (c->pinned)
        cudaFreeHost(c->pinned);
    if (c->stream)
        cudaStreamDestroy(c->stream);
    free(c->host_logits);
    *c = cuda_context();
}

bool is_ternary(trn_type t) { return t == TRN_TYPE_TQ2_0 || t == TRN_TYPE_TQ1_0; }

/* Device bytes the graph needs besides its weights: arena, state, outputs, RoPE table, scratch, and a margin. */
size_t other_bytes_needed(const trn_graph *g) {
    size_t total = g->arena_bytes + trn_graph_state_bytes(g) + (size_t)g->n_ctx * g->model->hp.head_dim * 4;
    for (int i = 0; i < g->n_buffers; i++)
        if (g->buffers[i].kind == TRN_BUF_OUTPUT || g->buffers[i].kind == TRN_BUF_INPUT)
            total += g->buffers[i].bytes;
    const trn_hparams *hp = &g->model->hp;
    return total + trn_cuda_sample_scratch_bytes(hp->n_vocab) +
           trn_cuda_attention_scratch_bytes(hp->n_head, hp->n_head_kv, hp->head_dim, g->n_ctx) + ((size_t)64 << 20);
}

bool matvec_ternary(const cuda_context *c, const trn_node *node) {
    return node->op == TRN_OP_MATVEC && is_ternary(c->matrix[node->src[0]].type);
}

/* Fusion: the graph's chains (trn_fusion, marked by the builder) that one trn_cuda_ternary launch replaces (int8 mode):
 *   norm+qkv+rope+store   -> NORM_QUANT + QKV
 *   norm+gate+up+swiglu   -> NORM_QUANT + SWIGLU
 *   norm+product          -> NORM_QUANT + STORE (LM head)
 *   product+add           -> QUANT + ADD
 * and a ternary product outside a chain -> QUANT + STORE. This backend's condition: every product of the chain is
 * ternary, of one type and width. Returns the nodes covered, 0 where node n is not run this way. */
int match_fusion(const cuda_context *c, int n, trn_cuda_ternary_op *op) {
    const trn_graph *g = c->graph;
    const trn_node *first = &g->nodes[n];
    auto at = [&](int i) { return &g->nodes[n + i]; };
    auto buf = [&](int id) { return static_cast<float *>(c->buffer[id]); };
    auto products_fit = [&](int from, int count) { /* nodes [from, from + count) of the chain */
        const trn_cuda_matrix &w0 = c->matrix[at(from)->src[0]];
        for (int i = from; i < from + count; i++) {
            const trn_cuda_matrix &w = c->matrix[at(i)->src[0]];
            if (!matvec_ternary(c, at(i)) || w.type != w0.type || w.cols != w0.cols)
                return false;
        }
        return true;
    };
    *op = trn_cuda_ternary_op{};
    switch (first->fusion) {
    case TRN_FUSE_NORM_QKV_ROPE_STORE:
    case TRN_FUSE_NORM_GATE_UP_SWIGLU:
    case TRN_FUSE_NORM_PRODUCT: {
        const int n_mat = first->fusion == TRN_FUSE_NORM_QKV_ROPE_STORE ? 3
                          : first->fusion == TRN_FUSE_NORM_GATE_UP_SWIGLU ? 2 : 1;
        if (!products_fit(1, n_mat))
            return 0;
        op->input = TRN_CUDA_IN_NORM_QUANT;
        op->x = buf(first->src[0]);
        op->norm = buf(first->src[1]);
        op->eps = first->eps;
        op->n_mat = n_mat;
        for (int i = 0; i < n_mat; i++)
            op->w[i] = c->matrix[at(1 + i)->src[0]];
        if (first->fusion == TRN_FUSE_NORM_QKV_ROPE_STORE) { /* q k v, rope q, rope k, store k, store v */
            op->output = TRN_CUDA_OUT_QKV;
            op->y = buf(at(1)->dst);
            op->k_cache = buf(at(6)->dst);
            op->v_cache = buf(at(7)->dst);
            op->rope_cos_sin = c->rope_cos_sin;
            op->pos = static_cast<const int32_t *>(c->buffer[g->buf_pos]);
            op->head_dim = at(4)->head_dim;
        } else if (first->fusion == TRN_FUSE_NORM_GATE_UP_SWIGLU) { /* gate up, swiglu */
            op->output = TRN_CUDA_OUT_SWIGLU;
            op->y = buf(at(3)->dst);
        } else {
            op->output = TRN_CUDA_OUT_STORE;
            op->y = buf(at(1)->dst);
        }
        return first->fusion_nodes;
    }
    default:
        break;
    }
    if (!matvec_ternary(c, first))
        return 0;
    op->n_mat = 1;
    op->w[0] = c->matrix[first->src[0]];
    op->input = TRN_CUDA_IN_QUANT;
    op->x = buf(first->src[1]);
    if (first->fusion == TRN_FUSE_PRODUCT_ADD) { /* the product, then x = x + its result */
        op->output = TRN_CUDA_OUT_ADD;
        op->y = buf(at(1)->dst);
        return 2;
    }
    op->output = TRN_CUDA_OUT_STORE;
    op->y = buf(first->dst);
    return 1;
}

/* The launches of a full step, built once at prepare (the graph is static, so is this plan). */
void build_plan(cuda_context *c) {
    const trn_graph *g = c->graph;
    const bool int8 = c->config.act == TRN_ACT_INT8;
    c->plan.clear();
    c->plan_body = 0;
    int quantized = -1; /* buffer whose int8 copy is in c->xq (unfused path) */
    for (int n = 0; n < g->n_nodes;) {
        launch_entry e;
        e.node = n;
        const int covered = c->fuse && int8 ? match_fusion(c, n, &e.op) : 0; /* chains never span body and head */
        if (covered > 0) {
            e.op.kernel = c->ternary_kernel;
            e.fused = true;
            e.n_nodes = covered;
            quantized = -1;
        } else {
            const trn_node *node = &g->nodes[n];
            if (int8 && matvec_ternary(c, node) && node->src[1] != quantized) {
                e.quantize = true;
                quantized = node->src[1];
            }
            if (node->dst == quantized)
                quantized = -1;
        }
        if (n < g->n_body_nodes)
            c->plan_body++;
        c->plan.push_back(e);
        n += e.n_nodes;
    }
    c->launches = 0;
    for (const launch_entry &e : c->plan)
        c->launches += 1 + (e.quantize ? 1 : 0);
}

/* TRN_CUDA_FOLD_ENDS=1 (issue 17 item 5): a step's first and last kernels folded into their neighbours where the
 * plan allows it. The token history's store and the embedding row go into layer 0's fused QKV launch (input
 * EMBED_NORM_QUANT: each CTA reads the token's row itself, CTA 0 writes it to the residual stream for layer 0's
 * residual add; the embedding resident or mapped, as weights.cu places it, never streamed); greedy sampling without
 * a penalty goes into the LM head (an argmax over its rows, cuda_ops.h). The folded first launch waits for the host's
 * copy like any kernel (no programmatic dependent launch: before it is the copy of token and position, not a
 * kernel). The floats are get_row's and the argmax is the sampler's rule, so logits and tokens are bitwise those of
 * the separate kernels. */
void fold_plan_ends(cuda_context *c) {
    const trn_graph *g = c->graph;
    std::vector<launch_entry> &plan = c->plan;
    const size_t before = plan.size();
    if (plan.size() >= 3 && !plan[0].fused && !plan[1].fused && plan[2].fused) {
        const trn_node *store = &g->nodes[plan[0].node], *get = &g->nodes[plan[1].node];
        launch_entry &first = plan[2];
        const int embd = get->src[0];
        const int group = embd >= 0 ? c->weights.group_of_buffer[(size_t)embd] : -1;
        if (store->op == TRN_OP_STORE_ROW && store->dst == g->buf_history && store->src[0] == g->buf_token &&
            get->op == TRN_OP_GET_ROW && get->src[1] == g->buf_token && first.op.input == TRN_CUDA_IN_NORM_QUANT &&
            first.op.output == TRN_CUDA_OUT_QKV && first.op.x == c->buffer[(size_t)get->dst] && group >= 0 &&
            c->weights.groups[(size_t)group].where != trn_cuda::placement::streamed) {
            first.op.input = TRN_CUDA_IN_EMBED_NORM_QUANT;
            first.op.embed = c->matrix[(size_t)embd];
            first.op.token = static_cast<const int32_t *>(c->buffer[(size_t)g->buf_token]);
            first.op.x_row = static_cast<float *>(c->buffer[(size_t)get->dst]);
            first.op.history = static_cast<int32_t *>(c->buffer[(size_t)g->buf_history]);
            first.no_pdl = true;
            plan.erase(plan.begin(), plan.begin() + 2);
            c->plan_body -= 2;
        }
    }
    const trn_cuda_sampling &sp = c->sampling;
    const bool greedy = sp.temp <= 0.0f && !(sp.repeat_penalty != 1.0f && sp.repeat_penalty > 0.0f);
    const size_t n = plan.size();
    if (greedy && c->argmax_scratch && n >= 2 && plan[n - 2].fused && !plan[n - 1].fused &&
        plan[n - 2].op.output == TRN_CUDA_OUT_STORE && g->nodes[plan[n - 1].node].op == TRN_OP_SAMPLE &&
        g->nodes[plan[n - 1].node].src[0] == g->buf_logits && plan[n - 2].op.y == c->buffer[(size_t)g->buf_logits]) {
        plan[n - 2].op.argmax = c->argmax_scratch;
        plan[n - 2].op.next = static_cast<int32_t *>(c->buffer[(size_t)g->nodes[plan[n - 1].node].dst]);
        plan.pop_back();
    }
    c->folded = (int)(before - plan.size());
    c->launches -= c->folded;
}

/* TRN_CUDA_L2_PREFETCH=1: each attention launch of the plan asks the L2 cache for the resident ternary weights of the
 * launches after it, up to the next attention (its layer's output, gate/up and down projections, the next layer's QKV,
 * or the LM head), while attention itself reads little (its K and V rows); in launch order while they fit in half the
 * L2, then merged into at most TRN_CUDA_L2_RANGES ranges (the weights of a layer lie together in one blob, so a merged
 * range covers little else: norms, and gaps of alignment). Streamed and mapped weights are left out. */
void plan_prefetch(cuda_context *c) {
    const trn_graph *g = c->graph;
    const unsigned long long cap = c->prop.l2CacheSize > 0 ? (unsigned long long)c->prop.l2CacheSize / 2 : 0;
    c->l2_prefetch_mb = 0.0;
    for (size_t i = 0; i < c->plan.size(); i++) {
        launch_entry &att = c->plan[i];
        if (att.fused || g->nodes[att.node].op != TRN_OP_ATTENTION)
            continue;
        std::vector<std::pair<uintptr_t, uintptr_t>> ranges; /* [begin, end) */
        unsigned long long total = 0;
        for (size_t j = i + 1; j < c->plan.size(); j++) {
            const launch_entry &e = c->plan[j];
            if (!e.fused && g->nodes[e.node].op == TRN_OP_ATTENTION)
                break;
            for (int n = e.node; n < e.node + e.n_nodes; n++) {
                const int id = g->nodes[n].src[0];
                if (!matvec_ternary(c, &g->nodes[n]) || c->weights.group_of_buffer[(size_t)id] < 0 ||
                    c->weights.groups[(size_t)c->weights.group_of_buffer[(size_t)id]].where !=
                        trn_cuda::placement::resident)
                    continue;
                const trn_cuda_matrix &w = c->matrix[(size_t)id];
                const size_t codes = (size_t)w.rows * w.row_bytes,
                             scales = (size_t)w.rows * (size_t)(w.cols / TRN_QK_K) * sizeof(trn_fp16);
                if (total + codes + scales > cap)
                    continue;
                total += codes + scales;
                ranges.push_back({(uintptr_t)w.qs, (uintptr_t)w.qs + codes});
                ranges.push_back({(uintptr_t)w.d, (uintptr_t)w.d + scales});
            }
        }
        std::sort(ranges.begin(), ranges.end());
        std::vector<std::pair<uintptr_t, uintptr_t>> merged;
        for (const auto &r : ranges) {
            if (!merged.empty() && r.first <= merged.back().second)
                merged.back().second = std::max(merged.back().second, r.second);
            else
                merged.push_back(r);
        }
        while (merged.size() > TRN_CUDA_L2_RANGES) { /* join the two ranges with the smallest gap between them */
            size_t k = 0;
            for (size_t m = 1; m + 1 < merged.size(); m++)
                if (merged[m + 1].first - merged[m].second < merged[k + 1].first - merged[k].second)
                    k = m;
            merged[k].second = merged[k + 1].second;
            merged.erase(merged.begin() + (std::ptrdiff_t)k + 1);
        }
        att.prefetch = trn_cuda_l2_prefetch{};
        att.prefetch.n = (int)merged.size();
        double bytes = 0.0;
        for (size_t m = 0; m < merged.size(); m++) {
            att.prefetch.ptr[m] = reinterpret_cast<const void *>(merged[m].first);
            att.prefetch.bytes[m] = merged[m].second - merged[m].first;
            bytes += (double)att.prefetch.bytes[m];
        }
        c->l2_prefetch_mb = std::max(c->l2_prefetch_mb, bytes / 1e6);
    }
}

/* Enqueues one node by its own kernel. */
trn_status run_node(cuda_context *c, const launch_entry &e) {
    const trn_graph *g = c->graph;
    trn_cuda_stream s = reinterpret_cast<trn_cuda_stream>(c->stream);
    const trn_node *node = &g->nodes[e.node];
    void *dst = c->buffer[node->dst];
    auto src = [&](int i) { return node->src[i] >= 0 ? c->buffer[node->src[i]] : nullptr; };
    const trn_buffer *dst_buf = &g->buffers[node->dst];
    switch (node->op) {
    case TRN_OP_GET_ROW:
        CUDA_LAUNCH_CHECK(trn_cuda_get_row(&c->matrix[node->src[0]], static_cast<const int32_t *>(src(1)),
                                           static_cast<float *>(dst), s));
        break;
    case TRN_OP_RMSNORM:
        CUDA_LAUNCH_CHECK(trn_cuda_rmsnorm(static_cast<const float *>(src(0)), static_cast<const float *>(src(1)),
                                           static_cast<float *>(dst), dst_buf->ne[0], node->eps, s));
        break;
    case TRN_OP_MATVEC: {
        const trn_cuda_matrix *w = &c->matrix[node->src[0]];
        const float *x = static_cast<const float *>(src(1));
        if (is_ternary(w->type)) {
            const bool int8 = c->config.act == TRN_ACT_INT8;
            if (e.quantize)
                CUDA_LAUNCH_CHECK(trn_cuda_quantize_act(x, c->xq, w->cols, s));
            CUDA_LAUNCH_CHECK(trn_cuda_gemv_ternary(w, x, int8 ? c->xq : nullptr, static_cast<float *>(dst), s));
        } else {
            CUDA_LAUNCH_CHECK(trn_cuda_gemv_float(w, x, static_cast<float *>(dst), s));
        }
        break;
    }
    case TRN_OP_ROPE:
        CUDA_LAUNCH_CHECK(trn_cuda_rope(static_cast<const float *>(src(0)), static_cast<float *>(dst), node->n_head,
                                        node->head_dim, c->rope_cos_sin, static_cast<const int32_t *>(src(1)), s));
        break;
    case TRN_OP_STORE_ROW:
        CUDA_LAUNCH_CHECK(trn_cuda_store_row(src(0), dst, dst_buf->ne[0], static_cast<const int32_t *>(src(1)), s));
        break;
    case TRN_OP_ATTENTION:
        CUDA_LAUNCH_CHECK(trn_cuda_attention(static_cast<const float *>(src(0)), static_cast<const float *>(src(1)),
                                             static_cast<const float *>(src(2)), static_cast<float *>(dst),
                                             node->n_head, node->n_head_kv, node->head_dim, g->n_ctx,
                                             static_cast<const int32_t *>(src(3)), c->attention_scratch,
                                             c->attention_split, c->pdl, e.prefetch.n ? &e.prefetch : nullptr, s));
        break;
    case TRN_OP_SWIGLU:
        CUDA_LAUNCH_CHECK(trn_cuda_swiglu(static_cast<const float *>(src(0)), static_cast<const float *>(src(1)),
                                          static_cast<float *>(dst), dst_buf->ne[0], s));
        break;
    case TRN_OP_ADD:
        CUDA_LAUNCH_CHECK(trn_cuda_add(static_cast<const float *>(src(0)), static_cast<const float *>(src(1)),
                                       static_cast<float *>(dst), dst_buf->ne[0], s));
        break;
    case TRN_OP_SAMPLE:
        CUDA_LAUNCH_CHECK(trn_cuda_sample(static_cast<const float *>(src(0)), g->model->hp.n_vocab,
                                          static_cast<const int32_t *>(src(1)), static_cast<const int32_t *>(src(2)),
                                          &c->sampling, c->sample_scratch, static_cast<int32_t *>(dst), c->pdl, s));
        break;
    default:
        return trn_fail(TRN_ERR_UNSUPPORTED, "the CUDA backend has no kernel for op %s", trn_op_name(node->op));
    }
    return TRN_OK;
}

/* Records profile event i on the stream; under stream capture as an event record node of the graph (a plain record
 * there only orders streams and never fires). */
trn_status record_profile_event(cuda_context *c, int i) {
    cudaStreamCaptureStatus capturing = cudaStreamCaptureStatusNone;
    CUDA_CHECK(cudaStreamIsCapturing(c->stream, &capturing));
    CUDA_CHECK(cudaEventRecordWithFlags(c->profile_events[(size_t)i], c->stream,
                                        capturing == cudaStreamCaptureStatusActive ? cudaEventRecordExternal : 0));
    return TRN_OK;
}

/* Enqueues plan entries [0, n_entries) on the stream (covering the first n_nodes nodes), with the copies of streamed
 * weights around them and an NVTX range per layer where `ranges` is set. */
trn_status run_plan(cuda_context *c, int n_entries, int n_nodes, bool ranges) {
    trn_cuda::weights *w = &c->weights;
    TRN_TRY(trn_cuda::weights_enqueue_begin(w, c->stream, n_nodes));
    int open_layer = -2, group = -1;
    for (int i = 0; i < n_entries; i++) {
        const launch_entry &e = c->plan[(size_t)i];
        const int layer = c->graph->nodes[e.node].layer;
        if (ranges && layer != open_layer) {
            if (open_layer != -2)
                nvtxRangePop();
            char label[32];
            snprintf(label, sizeof(label), layer >= 0 ? "blk.%d" : "head", layer);
            nvtxRangePushA(label);
            open_layer = layer;
        }
        const int entry_group = w->group_of_node[(size_t)e.node];
        if (entry_group != group) {
            TRN_TRY(trn_cuda::weights_enqueue_group(w, c->stream, group, entry_group, n_nodes));
            group = entry_group;
        }
        const bool timed = c->profile && n_entries == (int)c->plan.size();
        if (timed && i == 0)
            TRN_TRY(record_profile_event(c, 0));
        if (e.fused)
            CUDA_LAUNCH_CHECK(
                trn_cuda_ternary(&e.op, c->pdl && !e.no_pdl, reinterpret_cast<trn_cuda_stream>(c->stream)));
        else
            TRN_TRY(run_node(c, e));
        if (timed)
            TRN_TRY(record_profile_event(c, i + 1));
    }
    TRN_TRY(trn_cuda::weights_enqueue_end(w, c->stream, group, n_nodes));
    if (ranges && open_layer != -2)
        nvtxRangePop();
    return TRN_OK;
}

/* Inputs in (pinned -> device, one copy), the nodes, and for a full step the sampled id out (device -> pinned). */
trn_status enqueue_step(cuda_context *c, bool full, bool ranges) {
    const trn_graph *g = c->graph;
    /* token and position in one copy: pinned[0..1] to the pair allocated side by side at prepare */
    CUDA_CHECK(cudaMemcpyAsync(c->buffer[g->buf_token], &c->pinned[0], 2 * sizeof(int32_t), cudaMemcpyHostToDevice,
                               c->stream));
    TRN_TRY(run_plan(c, full ? (int)c->plan.size() : c->plan_body, full ? g->n_nodes : g->n_body_nodes, ranges));
    if (full)
        CUDA_CHECK(cudaMemcpyAsync(&c->pinned[2], c->buffer[g->buf_next_token], sizeof(int32_t), cudaMemcpyDeviceToHost,
                                   c->stream));
    return TRN_OK;
}

trn_status capture(cuda_context *c, bool full, cudaGraphExec_t *exec) {
    cudaGraph_t graph = nullptr;
    CUDA_CHECK(cudaStreamBeginCapture(c->stream, cudaStreamCaptureModeThreadLocal));
    trn_status status = enqueue_step(c, full, false);
    cudaError_t end = cudaStreamEndCapture(c->stream, &graph);
    if (status != TRN_OK) {
        if (graph)
            cudaGraphDestroy(graph);
        return status;
    }
    if (end != cudaSuccess)
        return trn_fail(TRN_ERR_DEVICE, "cudaStreamEndCapture failed: %s", cudaGetErrorString(end));
    cudaError_t inst = cudaGraphInstantiate(exec, graph, 0);
    cudaGraphDestroy(graph);
    if (inst != cudaSuccess)
        return trn_fail(TRN_ERR_DEVICE, "cudaGraphInstantiate failed: %s", cudaGetErrorString(inst));
    return TRN_OK;
}

trn_status capture_both(cuda_context *c) {
    if (c->full) {
        cudaGraphExecDestroy(c->full);
        c->full = nullptr;
    }
    TRN_TRY(capture(c, true, &c->full));
    return capture(c, false, &c->body);
}

trn_status prepare_impl(cuda_context *c, const trn_graph *g, const trn_backend_config *config) {
    c->graph = g;
    c->config = *config;
    c->use_graph = !env_flag("TRN_CUDA_NO_GRAPH"); /* the bisecting mode: plain launches, one kernel per node */
    c->fuse = c->use_graph && !env_flag("TRN_CUDA_NO_FUSION");
    if (const char *kernel = getenv("TRN_CUDA_TERNARY"); kernel && kernel[0]) {
        if (strcmp(kernel, "lean") == 0)
            c->ternary_kernel = TRN_CUDA_TERNARY_LEAN;
        else if (strcmp(kernel, "classic") == 0)
            c->ternary_kernel = TRN_CUDA_TERNARY_CLASSIC;
        else
            return trn_fail(TRN_ERR_INVALID, "TRN_CUDA_TERNARY=%s: expected classic or lean", kernel);
    }
    if (const char *split = getenv("TRN_CUDA_ATTENTION_SPLIT"); split && split[0]) {
        if (strcmp(split, "32") != 0 && strcmp(split, "64") != 0)
            return trn_fail(TRN_ERR_INVALID, "TRN_CUDA_ATTENTION_SPLIT=%s: expected 32 or 64", split);
        c->attention_split = atoi(split);
    }
    c->fold_ends = c->fuse && config->act == TRN_ACT_INT8 && env_flag("TRN_CUDA_FOLD_ENDS"); /* fused int8 plans */
    if (const char *prefill = getenv("TRN_CUDA_PREFILL"); prefill && prefill[0]) {
        if (strcmp(prefill, "batched") != 0 && strcmp(prefill, "steps") != 0)
            return trn_fail(TRN_ERR_INVALID, "TRN_CUDA_PREFILL=%s: expected batched or steps", prefill);
        c->batched_prefill = strcmp(prefill, "batched") == 0;
    }
    /* a batch's rows are a grid dimension of the row kernels: at most TRN_CUDA_MAX_ROWS */
    const int max_batch = std::min({config->max_batch > 0 ? config->max_batch : kDefaultPrefillBatch, g->n_ctx,
                                    TRN_CUDA_MAX_ROWS});
    c->sampling = {config->sampling.temp, config->sampling.top_k, config->sampling.top_p,
                   config->sampling.repeat_penalty, config->sampling.seed};
    nvtxRangePushA("load");
    CUDA_CHECK(cudaSetDevice(c->device));
    CUDA_CHECK(cudaGetDeviceProperties(&c->prop, c->device));
#ifdef TRN_CUDA_PASCAL
    c->pdl = false; /* the Pascal code path: no programmatic dependent launch on any GPU */
#else
    c->pdl = c->fuse && c->prop.major >= 9 && !env_flag("TRN_CUDA_NO_PDL");
#endif
    size_t free_bytes = 0, total_bytes = 0;
    CUDA_CHECK(cudaMemGetInfo(&free_bytes, &total_bytes));
    const size_t other_bytes =
        other_bytes_needed(g) + (c->batched_prefill ? trn_cuda::prefill_device_bytes(g, max_batch) : 0);
    if (other_bytes > free_bytes) {
        nvtxRangePop();
        return trn_fail(TRN_ERR_NOMEM, "out of device memory: a context of %d needs %.2f GB besides the weights, %s "
                        "has %.2f GB free", g->n_ctx, other_bytes / 1e9, c->prop.name, free_bytes / 1e9);
    }
    CUDA_CHECK(cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking));
    CUDA_CHECK(cudaMallocHost(reinterpret_cast<void **>(&c->pinned), 4 * sizeof(int32_t)));
    c->buffer.assign((size_t)g->n_buffers, nullptr);
    c->matrix.assign((size_t)g->n_buffers, trn_cuda_matrix{});
    TRN_TRY(trn_cuda::weights_place(&c->weights, g, config, free_bytes, other_bytes, c->matrix, c->buffer));
    c->device_bytes += c->weights.device_bytes;
    if (!c->weights.pinned) /* copies from pageable memory cannot be captured: plain launches */
        c->use_graph = false;
    void *arena = nullptr;
    TRN_TRY(device_alloc(c, &arena, g->arena_bytes, "the activation arena"));
    /* token and position side by side (as in pinned memory), so that a step copies both in one 8-byte copy */
    void *inputs = nullptr;
    TRN_TRY(device_alloc(c, &inputs, 2 * sizeof(int32_t), "the step's token and position"));
    CUDA_CHECK(cudaMemset(inputs, 0, 2 * sizeof(int32_t)));
    c->buffer[(size_t)g->buf_token] = inputs;
    c->buffer[(size_t)g->buf_pos] = static_cast<int32_t *>(inputs) + 1;
    int64_t max_cols = 0;
    for (int i = 0; i < g->n_buffers; i++) {
        const trn_buffer *buf = &g->buffers[i];
        if (i == g->buf_token || i == g->buf_pos)
            continue; /* allocated above */
        if (buf->kind == TRN_BUF_WEIGHT) {
            max_cols = std::max<int64_t>(max_cols, buf->ne[0]);
        } else if (buf->kind == TRN_BUF_ACTIVATION) {
            c->buffer[i] = static_cast<uint8_t *>(arena) + buf->offset;
        } else {
            TRN_TRY(device_alloc(c, &c->buffer[i], buf->bytes, buf->name));
            CUDA_CHECK(cudaMemset(c->buffer[i], 0, buf->bytes));
        }
    }
    void *p = nullptr;
    TRN_TRY(device_alloc(c, &p, (size_t)(max_cols / TRN_QK_K + 1) * sizeof(trn_cuda_q8_block), "activation scratch"));
    c->xq = static_cast<trn_cuda_q8_block *>(p);
    const int hd = g->model->hp.head_dim;
    std::vector<float> table((size_t)g->n_ctx * hd);
    for (int pos = 0; pos < g->n_ctx; pos++) /* as the CPU backend: angle = pos * base^(-2i / head_dim) */
        for (int i = 0; i < hd / 2; i++) {
            const double angle = pos * std::pow((double)g->model->hp.rope_base, -2.0 * i / hd);
            table[(size_t)pos * hd + 2 * i] = (float)std::cos(angle);
            table[(size_t)pos * hd + 2 * i + 1] = (float)std::sin(angle);
        }
    TRN_TRY(device_alloc(c, &p, table.size() * sizeof(float), "the RoPE table"));
    c->rope_cos_sin = static_cast<float *>(p);
    CUDA_CHECK(cudaMemcpy(c->rope_cos_sin, table.data(), table.size() * sizeof(float), cudaMemcpyHostToDevice));
    TRN_TRY(device_alloc(c, &c->sample_scratch, trn_cuda_sample_scratch_bytes(g->model->hp.n_vocab), "sampler scratch"));
    const trn_hparams *hp = &g->model->hp;
    const size_t attention_bytes = trn_cuda_attention_scratch_bytes(hp->n_head, hp->n_head_kv, hp->head_dim, g->n_ctx);
    if (c->fuse && attention_bytes) { /* its counters start at zero; the kernel leaves them so */
        TRN_TRY(device_alloc(c, &c->attention_scratch, attention_bytes, "attention scratch"));
        CUDA_CHECK(cudaMemset(c->attention_scratch, 0, attention_bytes));
    }
    if (c->fold_ends) { /* zeroed once; the LM head leaves it zeroed */
        TRN_TRY(device_alloc(c, &c->argmax_scratch, trn_cuda_argmax_scratch_bytes(), "argmax scratch"));
        CUDA_CHECK(cudaMemset(c->argmax_scratch, 0, trn_cuda_argmax_scratch_bytes()));
    }
    if (c->batched_prefill) {
        trn_cuda::prefill_resources res;
        res.graph = g;
        res.stream = c->stream;
        res.matrix = &c->matrix;
        res.buffer = &c->buffer;
        res.placed = &c->weights;
        res.rope_cos_sin = c->rope_cos_sin;
        res.sampling = &c->sampling;
        res.sample_scratch = c->sample_scratch;
        res.act = config->act;
        res.step_attention = !c->fuse;
        TRN_TRY(trn_cuda::prefill_prepare(&c->prefill, res, max_batch));
        c->device_bytes += c->prefill.device_bytes;
    }
    c->host_logits = static_cast<float *>(malloc((size_t)g->model->hp.n_vocab * sizeof(float)));
    if (!c->host_logits)
        return trn_fail(TRN_ERR_NOMEM, "out of memory for the logits");
    CUDA_CHECK(cudaDeviceSynchronize());
    build_plan(c);
    if (c->fold_ends)
        fold_plan_ends(c);
    if (c->fuse && env_flag("TRN_CUDA_L2_PREFETCH"))
        plan_prefetch(c);
    c->profile = env_flag("TRN_CUDA_PROFILE");
    if (c->profile) { /* an event between launches breaks programmatic dependent launch: profiled without it */
        c->pdl = false;
        c->profile_events.assign(c->plan.size() + 1, nullptr);
        c->profile_ms.assign(c->plan.size(), 0.0);
        for (cudaEvent_t &e : c->profile_events)
            CUDA_CHECK(cudaEventCreate(&e));
    }
    if (c->use_graph) {
        /* one warm-up step outside capture (first launches load modules), then capture both graphs */
        c->pinned[0] = 0;
        c->pinned[1] = 0;
        TRN_TRY(enqueue_step(c, true, false));
        CUDA_CHECK(cudaStreamSynchronize(c->stream));
        trn_status captured = capture_both(c);
        if (captured != TRN_OK && c->pdl) { /* a driver that cannot capture programmatic launches: without them */
            fprintf(stderr, "warning: capturing the step with programmatic dependent launch failed (%s); "
                            "capturing without it\n", trn_last_error());
            c->pdl = false;
            (void)cudaGetLastError();
            captured = capture_both(c);
        }
        TRN_TRY(captured);
    }
    nvtxRangePop();
#ifdef TRN_CUDA_PASCAL
    const bool pascal_path = true;
#else
    const bool pascal_path = false;
#endif
    char prefill_note[160] = "";
    if (c->batched_prefill)
        snprintf(prefill_note, sizeof(prefill_note), ", batched prefill (%d tokens, float products by %s)", max_batch,
                 c->prefill.blas ? "cuBLAS" : "the step's kernels");
    char prefetch_note[96] = "";
    if (c->l2_prefetch_mb > 0.0)
        snprintf(prefetch_note, sizeof(prefetch_note), ", L2 prefetch (%.1f MB)", c->l2_prefetch_mb);
    if (c->folded > 0)
        snprintf(prefetch_note + strlen(prefetch_note), sizeof(prefetch_note) - strlen(prefetch_note),
                 ", %d kernels folded", c->folded);
    snprintf(c->description, sizeof(c->description),
             "cuda (%s, sm_%d%d, %s%s%s%s%s, act %s, %d kernels per token, %s%s%s, %.2f GB on the device)", c->prop.name,
             c->prop.major, c->prop.minor, c->use_graph ? "CUDA Graph" : c->fuse ? "no graph: pageable weights" : "no graph: TRN_CUDA_NO_GRAPH",
             c->fuse ? ", fused" : ", unfused", c->pdl ? ", PDL" : pascal_path ? ", Pascal code path" : "",
             c->fuse && c->ternary_kernel == TRN_CUDA_TERNARY_LEAN ? ", lean ternary kernel" : "", prefetch_note,
             config->act == TRN_ACT_F32 ? "f32" : "int8", c->launches, c->weights.note,
             c->weights.dense_f16 ? " (dense f16: ternary matrices expanded)" : "", prefill_note,
             c->device_bytes / 1e9);
    return TRN_OK;
}

extern const trn_backend_i cuda_iface, cuda_iface_batched;

trn_status cuda_prepare(trn_backend *b, const trn_graph *g, const trn_backend_config *config) {
    cuda_context *c = ctx_of(b);
    const int device = c->device;
    release(c);
    c->device = device;
    trn_status status = prepare_impl(c, g, config);
    if (status != TRN_OK) {
        release(c);
        c->device = device;
    }
    b->iface = c->batched_prefill ? &cuda_iface_batched : &cuda_iface;
    return status;
}

trn_status cuda_prefill(trn_backend *b, const int *tokens, int n_tokens, int pos0, int want_output, int *next_token,
                        float *all_logits) {
    cuda_context *c = ctx_of(b);
    const trn_graph *g = c->graph;
    if (n_tokens < 1)
        return trn_fail(TRN_ERR_INVALID, "prefill of %d tokens: at least one is needed", n_tokens);
    if (pos0 < 0 || pos0 > g->n_ctx - n_tokens)
        return trn_fail(TRN_ERR_INVALID, "prefill of %d tokens at position %d does not fit the context of %d", n_tokens,
                        pos0, g->n_ctx);
    for (int i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= g->model->hp.n_vocab)
            return trn_fail(TRN_ERR_INVALID, "token id %d is outside the vocabulary of %d", tokens[i],
                            g->model->hp.n_vocab);
    CUDA_CHECK(cudaSetDevice(c->device)); /* the caller's thread may have another device current */
    return trn_cuda::prefill_run(&c->prefill, tokens, n_tokens, pos0, want_output, next_token, all_logits);
}

trn_status cuda_step(trn_backend *b, int token, int pos, int want_output, int *next_token) {
    cuda_context *c = ctx_of(b);
    const trn_graph *g = c->graph;
    if (pos < 0 || pos >= g->n_ctx)
        return trn_fail(TRN_ERR_INVALID, "position %d is outside the context of %d", pos, g->n_ctx);
    if (token < 0 || token >= g->model->hp.n_vocab)
        return trn_fail(TRN_ERR_INVALID, "token id %d is outside the vocabulary of %d", token, g->model->hp.n_vocab);
    CUDA_CHECK(cudaSetDevice(c->device)); /* the caller's thread may have another device current */
    nvtxRangePushA(want_output ? "decode step" : "prefill token");
    c->pinned[0] = token;
    c->pinned[1] = pos;
    trn_status status = TRN_OK;
    if (c->use_graph) {
        cudaError_t err = cudaGraphLaunch(want_output ? c->full : c->body, c->stream);
        if (err != cudaSuccess)
            status = trn_fail(TRN_ERR_DEVICE, "cudaGraphLaunch failed: %s", cudaGetErrorString(err));
    } else {
        status = enqueue_step(c, want_output != 0, true);
    }
    if (status == TRN_OK) {
        cudaError_t err = cudaStreamSynchronize(c->stream);
        if (err != cudaSuccess)
            status = trn_fail(TRN_ERR_DEVICE, "decode step at position %d failed on the device: %s", pos,
                              cudaGetErrorString(err));
    }
    nvtxRangePop();
    if (status == TRN_OK && want_output && c->profile) {
        for (size_t i = 0; i < c->profile_ms.size(); i++) {
            float ms = 0.0f;
            if (cudaEventElapsedTime(&ms, c->profile_events[i], c->profile_events[i + 1]) == cudaSuccess)
                c->profile_ms[i] += ms;
        }
        c->profile_steps++;
    }
    if (status == TRN_OK && want_output && next_token)
        *next_token = c->pinned[2];
    return status;
}

const float *cuda_logits(trn_backend *b) {
    cuda_context *c = ctx_of(b);
    const int n = c->graph->model->hp.n_vocab;
    if (cudaMemcpy(c->host_logits, c->buffer[c->graph->buf_logits], (size_t)n * sizeof(float), cudaMemcpyDeviceToHost) !=
        cudaSuccess)
        return nullptr;
    return c->host_logits;
}

const char *cuda_describe(trn_backend *b) { return ctx_of(b)->description; }

/* TRN_CUDA_PROFILE=1: time per step of each kind of launch (events between launches, so without programmatic
 * dependent launch), summed over the layers, on standard error. */
void print_profile(const cuda_context *c) {
    if (!c->profile || c->profile_steps == 0)
        return;
    const trn_graph *g = c->graph;
    std::vector<std::string> labels;
    std::vector<double> us;
    std::vector<int> counts;
    double total = 0.0;
    for (size_t i = 0; i < c->plan.size(); i++) {
        const launch_entry &e = c->plan[i];
        const trn_node *node = &g->nodes[e.node];
        std::string label = trn_op_name(node->op);
        for (int n = e.node; n < e.node + e.n_nodes; n++) /* name a launch by its first weight matrix */
            if (g->nodes[n].op == TRN_OP_MATVEC) {
                const char *name = g->buffers[g->nodes[n].src[0]].name;
                const char *dot = g->nodes[n].layer >= 0 ? strchr(strchr(name, '.') + 1, '.') : nullptr;
                label = std::string(e.fused ? "fused " : "matvec ") + (dot ? dot + 1 : name);
                break;
            }
        const double t = 1e3 * c->profile_ms[i] / c->profile_steps;
        total += t;
        const auto at = std::find(labels.begin(), labels.end(), label);
        if (at == labels.end()) {
            labels.push_back(label);
            us.push_back(t);
            counts.push_back(1);
        } else {
            us[(size_t)(at - labels.begin())] += t;
            counts[(size_t)(at - labels.begin())]++;
        }
    }
    fprintf(stderr, "profile: %d steps, %.1f us per step between the first and last launch (no PDL), by launch:\n",
            c->profile_steps, total);
    for (size_t i = 0; i < labels.size(); i++)
        fprintf(stderr, "profile: %-36s %4d launches %9.1f us %5.1f%%  %6.2f us each\n", labels[i].c_str(), counts[i],
                us[i], 100.0 * us[i] / total, us[i] / counts[i]);
}

void cuda_free(trn_backend *b) {
    if (!b)
        return;
    print_profile(ctx_of(b));
    release(ctx_of(b));
    delete ctx_of(b);
    free(b);
}

void cuda_stats(trn_backend *b, trn_backend_stats *out) {
    const cuda_context *c = ctx_of(b);
    const trn_cuda::weights *w = &c->weights;
    out->weights = w->mode == TRN_WEIGHTS_MAPPED ? "mapped" : w->mode == TRN_WEIGHTS_STREAMING ? "streaming" : "resident";
    out->resident_layers = w->resident_layers;
    out->n_layers = w->n_layers;
    out->h2d_bytes_per_token = trn_cuda::weights_h2d_bytes(w);
    out->mapped_bytes_per_token = c->graph ? trn_cuda::weights_mapped_bytes(w, c->graph) : 0.0;
    out->device_bytes = (double)c->device_bytes;
}

/* decode_batch: none (trinity_batch keeps one backend per slot); prefill: token by token unless TRN_CUDA_PREFILL=batched */
const trn_backend_i cuda_iface = {
    "cuda", cuda_prepare, cuda_step, cuda_logits, cuda_describe, cuda_free, cuda_stats, nullptr, nullptr,
};
const trn_backend_i cuda_iface_batched = {
    "cuda", cuda_prepare, cuda_step, cuda_logits, cuda_describe, cuda_free, cuda_stats, cuda_prefill, nullptr,
};

} // namespace

extern "C" trn_status trn_cuda_backend_create(trn_backend **out) {
    *out = nullptr;
    /* Without a driver the runtime spends about half a second finding out; the driver library's absence is quicker
     * to see, and it is the common case on a CPU-only machine. */
#ifndef TRN_CUDA_EMULATOR /* the emulator (tests/cuda_emulator) needs no driver */
    void *driver = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!driver)
        return trn_fail(TRN_ERR_DEVICE, "no NVIDIA driver is installed (libcuda.so.1 not found)");
    dlclose(driver);
#endif
    int count = 0;
    cudaError_t err = cudaGetDeviceCount(&count);
    if (err == cudaErrorInsufficientDriver) {
        int driver_version = 0;
        cudaDriverGetVersion(&driver_version);
        return trn_fail(TRN_ERR_DEVICE, "the NVIDIA driver (CUDA %d.%d) is too old for this build's CUDA runtime %d.%d",
                        driver_version / 1000, driver_version % 1000 / 10, CUDART_VERSION / 1000,
                        CUDART_VERSION % 1000 / 10);
    }
    if (err == cudaErrorNoDevice || (err == cudaSuccess && count == 0))
        return trn_fail(TRN_ERR_DEVICE, "no CUDA device is present");
    if (err != cudaSuccess)
        return trn_fail(TRN_ERR_DEVICE, "no usable CUDA device: %s", cudaGetErrorString(err));
    cudaDeviceProp prop;
    err = cudaGetDeviceProperties(&prop, 0);
    if (err != cudaSuccess)
        return trn_fail(TRN_ERR_DEVICE, "cannot query CUDA device 0: %s", cudaGetErrorString(err));
    if (prop.major * 10 + prop.minor < 61)
        return trn_fail(TRN_ERR_DEVICE, "%s (sm_%d%d) is older than sm_61, which the kernels need", prop.name,
                        prop.major, prop.minor);
    trn_backend *b = static_cast<trn_backend *>(calloc(1, sizeof(trn_backend)));
    cuda_context *c = new (std::nothrow) cuda_context();
    if (!b || !c) {
        free(b);
        delete c;
        return trn_fail(TRN_ERR_NOMEM, "out of memory creating the CUDA backend");
    }
    b->iface = &cuda_iface;
    b->context = c;
    *out = b;
    return TRN_OK;
}

extern "C" trn_status trn_cuda_copy_bandwidth(int host_to_device, size_t bytes, int reps, double *gbs) {
    return trn_cuda::copy_bandwidth(host_to_device != 0, bytes, reps, gbs);
}
