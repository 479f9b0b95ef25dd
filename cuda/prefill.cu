/* prefill.cu: the CUDA backend's batched prefill: a prompt's tokens through the graph as batches (prefill.h says how
 * and what it promises).
 *
 * Owns: the batch arena and its views (rows, row_bytes), the batch's int8 activations and token/position arrays, the
 * cuBLAS handle (the library loaded with dlopen, so a build without cuBLAS at run time still prefills), and the node
 * loop of a batch. Does not own: the kernels (cuda_ops.h), the step's buffers and weights (cuda_backend.cu,
 * weights.cu). Runs plain launches on the step's stream (a batch is hundreds of kernels of real work each, so a
 * captured graph would save little), with an NVTX range per batch. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <nvtx3/nvToolsExt.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

#include "cuda_check.h"
#include "prefill.h"

namespace trn_cuda {

/* ---- cuBLAS, loaded at run time ---- */

struct cublas_api {
    void *library = nullptr;
    cublasHandle_t handle = nullptr;
    cublasStatus_t (*create)(cublasHandle_t *) = nullptr;
    cublasStatus_t (*destroy)(cublasHandle_t) = nullptr;
    cublasStatus_t (*set_stream)(cublasHandle_t, cudaStream_t) = nullptr;
    cublasStatus_t (*gemm_ex)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int, int, const void *,
                              const void *, cudaDataType, int, const void *, cudaDataType, int, const void *, void *,
                              cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t) = nullptr;
};

#define TRN_STRINGIFY_(x) #x
#define TRN_STRINGIFY(x) TRN_STRINGIFY_(x)
#define CUBLAS_LIBRARY "libcublas.so." TRN_STRINGIFY(CUBLAS_VER_MAJOR)

/* The handle goes; the library stays loaded for the process (cublas_library). */
static void cublas_unload(cublas_api *b) {
    if (!b)
        return;
    if (b->handle)
        b->destroy(b->handle);
    delete b;
}

/* dlopen of the cuBLAS library: by name (the loader's paths), else from the folder of the CUDA runtime in use (a
 * toolkit whose lib folder is not in the loader's cache, with the engine linked by RPATH or LD_LIBRARY_PATH). */
static void *cublas_open() {
    const int flags = RTLD_LAZY | RTLD_LOCAL | RTLD_NODELETE;
    if (void *library = dlopen(CUBLAS_LIBRARY, flags))
        return library;
    Dl_info info;
    if (!dladdr(reinterpret_cast<void *>(&cudaGetDeviceCount), &info) || !info.dli_fname)
        return nullptr;
    const char *slash = strrchr(info.dli_fname, '/');
    if (!slash)
        return nullptr;
    char path[4096];
    snprintf(path, sizeof(path), "%.*s/%s", (int)(slash - info.dli_fname), info.dli_fname, CUBLAS_LIBRARY);
    return dlopen(path, flags);
}

/* The library, opened once per process and never closed: it carries its own CUDA runtime and kernels, which a
 * process should not load and unload again at every prepare. */
static void *cublas_library() {
#ifdef TRN_CUDA_EMULATOR
    static int linked_in; /* any non-null handle: the emulator's functions are taken directly (cublas_load) */
    return &linked_in;
#else
    static void *const library = cublas_open(); /* thread-safe initialisation */
    return library;
#endif
}

/* The library and a handle on `stream`; nullptr with the reason in note where either is missing. */
static cublas_api *cublas_load(cudaStream_t stream, char *note, size_t cap) {
    cublas_api *b = new cublas_api();
    b->library = cublas_library();
    if (!b->library) {
        snprintf(note, cap, "%s not found", CUBLAS_LIBRARY);
        cublas_unload(b);
        return nullptr;
    }
#ifdef TRN_CUDA_EMULATOR /* the emulator's cuBLAS loops are linked in (tests/cuda_emulator) */
    b->create = cublasCreate_v2;
    b->destroy = cublasDestroy_v2;
    b->set_stream = cublasSetStream_v2;
    b->gemm_ex = cublasGemmEx;
#else
    b->create = reinterpret_cast<decltype(b->create)>(dlsym(b->library, "cublasCreate_v2"));
    b->destroy = reinterpret_cast<decltype(b->destroy)>(dlsym(b->library, "cublasDestroy_v2"));
    b->set_stream = reinterpret_cast<decltype(b->set_stream)>(dlsym(b->library, "cublasSetStream_v2"));
    b->gemm_ex = reinterpret_cast<decltype(b->gemm_ex)>(dlsym(b->library, "cublasGemmEx"));
#endif
    if (!b->create || !b->destroy || !b->set_stream || !b->gemm_ex) {
        snprintf(note, cap, "%s lacks cublasGemmEx", CUBLAS_LIBRARY);
        b->destroy = nullptr;
        cublas_unload(b);
        return nullptr;
    }
    if (b->create(&b->handle) != CUBLAS_STATUS_SUCCESS || b->set_stream(b->handle, stream) != CUBLAS_STATUS_SUCCESS) {
        snprintf(note, cap, "cublasCreate failed");
        cublas_unload(b);
        return nullptr;
    }
    snprintf(note, cap, "%s", CUBLAS_LIBRARY);
    return b;
}

/* ---- sizes ---- */

static bool is_ternary(trn_type t) { return t == TRN_TYPE_TQ2_0 || t == TRN_TYPE_TQ1_0; }
static bool blas_type(trn_type t) { return t == TRN_TYPE_F32 || t == TRN_TYPE_F16 || t == TRN_TYPE_BF16; }

static int64_t max_weight_cols(const trn_graph *g) {
    int64_t cols = 0;
    for (int i = 0; i < g->n_buffers; i++)
        if (g->buffers[i].kind == TRN_BUF_WEIGHT)
            cols = std::max<int64_t>(cols, g->buffers[i].ne[0]);
    return cols;
}

/* Bytes of each batch allocation: the arena, int8 activations, fp16 activations, token ids + positions, logits. */
struct batch_sizes {
    size_t arena, xq, x_half, inputs, logits;
    size_t total() const { return arena + xq + x_half + inputs + logits; }
};

static batch_sizes sizes_of(const trn_graph *g, int max_batch) {
    const size_t b = (size_t)max_batch;
    const int64_t cols = max_weight_cols(g);
    return {g->arena_bytes * b, b * (size_t)(cols / TRN_QK_K + 1) * sizeof(trn_cuda_q8_block), b * (size_t)cols * 2,
            2 * b * sizeof(int32_t), b * (size_t)g->model->hp.n_vocab * sizeof(float)};
}

size_t prefill_device_bytes(const trn_graph *g, int max_batch) { return sizes_of(g, max_batch).total(); }

/* ---- prepare, release ---- */

void prefill_release(prefill *p) {
    cublas_unload(p->blas);
    for (void *a : p->allocations)
        cudaFree(a);
    if (p->inputs_pinned)
        cudaFreeHost(p->inputs_pinned);
    *p = prefill();
}

static trn_status allocate(prefill *p, void **out, size_t bytes, const char *what) {
    TRN_TRY(trn_cuda_alloc(out, bytes, what, &p->device_bytes));
    p->allocations.push_back(*out);
    return TRN_OK;
}

trn_status prefill_prepare(prefill *p, const prefill_resources &res, int max_batch) {
    prefill_release(p);
    const trn_graph *g = res.graph;
    p->res = res;
    p->max_batch = max_batch;
    const batch_sizes size = sizes_of(g, max_batch);
    void *arena = nullptr, *inputs = nullptr, *logits = nullptr, *xq = nullptr, *x_half = nullptr;
    TRN_TRY(allocate(p, &arena, size.arena, "the prefill's activation arena"));
    TRN_TRY(allocate(p, &xq, size.xq, "the prefill's int8 activations"));
    TRN_TRY(allocate(p, &x_half, size.x_half, "the prefill's fp16 activations"));
    TRN_TRY(allocate(p, &inputs, size.inputs, "the prefill's token ids and positions"));
    TRN_TRY(allocate(p, &logits, size.logits, "the prefill's logits"));
    p->xq = static_cast<trn_cuda_q8_block *>(xq);
    p->x_half = static_cast<uint16_t *>(x_half);
    CUDA_CHECK(cudaMallocHost(reinterpret_cast<void **>(&p->inputs_pinned), (2 * (size_t)max_batch + 1) * sizeof(int32_t)));
    p->next_pinned = p->inputs_pinned + 2 * max_batch;
    p->rows.assign((size_t)g->n_buffers, nullptr);
    p->row_bytes.assign((size_t)g->n_buffers, 0);
    for (int i = 0; i < g->n_buffers; i++) {
        const trn_buffer *buf = &g->buffers[i];
        p->rows[(size_t)i] = (*res.buffer)[(size_t)i]; /* weights, state, next_token: the step's */
        if (buf->kind == TRN_BUF_ACTIVATION) { /* rows of buffers alive at once stay apart: offset * max_batch */
            p->rows[(size_t)i] = static_cast<uint8_t *>(arena) + buf->offset * (size_t)max_batch;
            p->row_bytes[(size_t)i] = buf->bytes;
        }
    }
    int32_t *ids = static_cast<int32_t *>(inputs);
    p->rows[(size_t)g->buf_token] = ids;
    p->rows[(size_t)g->buf_pos] = ids + max_batch;
    p->row_bytes[(size_t)g->buf_token] = p->row_bytes[(size_t)g->buf_pos] = sizeof(int32_t);
    p->rows[(size_t)g->buf_logits] = logits;
    p->row_bytes[(size_t)g->buf_logits] = g->buffers[g->buf_logits].bytes;
    const char *no_blas = getenv("TRN_CUDA_NO_CUBLAS");
    if (no_blas && no_blas[0] == '1')
        snprintf(p->blas_note, sizeof(p->blas_note), "TRN_CUDA_NO_CUBLAS=1");
    else
        p->blas = cublas_load(res.stream, p->blas_note, sizeof(p->blas_note));
    return TRN_OK;
}

/* ---- one batch ---- */

namespace {

/* The rows [first, first + n) of a batch, as one node sees them. */
struct node_rows {
    const prefill *p;
    int first, n;
    void *at(int buffer) const {
        return static_cast<uint8_t *>(p->rows[(size_t)buffer]) + (size_t)first * p->row_bytes[(size_t)buffer];
    }
    float *f(int buffer) const { return static_cast<float *>(at(buffer)); }
    const int32_t *ids(int buffer) const { return static_cast<const int32_t *>(at(buffer)); }
};

/* y[n][rows] = x[n][cols] W^T by cuBLAS: W row-major [rows][cols] is the column-major cols x rows matrix A, so
 * C (rows x n, column-major: y row-major) = A^T B with B = x (cols x n, column-major). Float accumulation; F16/BF16
 * weights take the activations rounded to their type (the tensor cores' inputs), F32 the pedantic FP32 path. */
trn_status blas_product(prefill *p, const trn_cuda_matrix *w, const float *x, float *y, int n, cublasStatus_t *status) {
    const cudaStream_t s = p->res.stream;
    const float one = 1.0f, zero = 0.0f;
    const int elem = w->type == TRN_TYPE_F32 ? 4 : 2;
    const void *b = x;
    cudaDataType type = CUDA_R_32F;
    cublasComputeType_t compute = CUBLAS_COMPUTE_32F_PEDANTIC;
    if (w->type != TRN_TYPE_F32) {
        const bool bf16 = w->type == TRN_TYPE_BF16;
        CUDA_LAUNCH_CHECK(trn_cuda_to_half(x, p->x_half, (int64_t)n * w->cols, bf16 ? 1 : 0,
                                           reinterpret_cast<trn_cuda_stream>(s)));
        b = p->x_half;
        type = bf16 ? CUDA_R_16BF : CUDA_R_16F;
        compute = CUBLAS_COMPUTE_32F;
    }
    *status = p->blas->gemm_ex(p->blas->handle, CUBLAS_OP_T, CUBLAS_OP_N, (int)w->rows, n, (int)w->cols, &one, w->qs,
                               type, (int)(w->row_bytes / elem), b, type, (int)w->cols, &zero, y, CUDA_R_32F,
                               (int)w->rows, compute, CUBLAS_GEMM_DEFAULT);
    return TRN_OK;
}

trn_status run_product(prefill *p, const trn_node *node, const node_rows &r, int *quantized) {
    const trn_cuda_matrix *w = &(*p->res.matrix)[(size_t)node->src[0]];
    const trn_cuda_stream s = reinterpret_cast<trn_cuda_stream>(p->res.stream);
    const float *x = r.f(node->src[1]);
    float *y = r.f(node->dst);
    if (is_ternary(w->type) && p->res.act == TRN_ACT_INT8) {
        if (*quantized != node->src[1]) { /* Q, K, V (gate, up) share one quantization of their input */
            CUDA_LAUNCH_CHECK(trn_cuda_quantize_act(x, p->xq, (int64_t)r.n * w->cols, s));
            *quantized = node->src[1];
        }
        CUDA_LAUNCH_CHECK(trn_cuda_gemm_ternary(w, p->xq, r.n, y, w->rows, s));
    } else if (is_ternary(w->type)) { /* f32 mode: the step's kernel, token by token */
        for (int t = 0; t < r.n; t++)
            CUDA_LAUNCH_CHECK(trn_cuda_gemv_ternary(w, x + (int64_t)t * w->cols, nullptr, y + (int64_t)t * w->rows, s));
    } else if (p->blas && blas_type(w->type) && r.n > 1 && w->rows <= INT32_MAX && w->cols <= INT32_MAX &&
               w->row_bytes % (w->type == TRN_TYPE_F32 ? 4 : 2) == 0) {
        cublasStatus_t status = CUBLAS_STATUS_SUCCESS;
        TRN_TRY(blas_product(p, w, x, y, r.n, &status));
        if (status == CUBLAS_STATUS_SUCCESS)
            return TRN_OK;
        /* cuBLAS refused (its own memory, most likely, on a full GPU): its errors are synchronous and leave the
         * context usable, so this product and the rest run on the step's kernel, and describe() says why */
        snprintf(p->blas_note, sizeof(p->blas_note), "cublasGemmEx failed at %s:%d (cuBLAS status %d)", __FILE__,
                 __LINE__, (int)status);
        cublas_unload(p->blas);
        p->blas = nullptr;
        CUDA_LAUNCH_CHECK(trn_cuda_gemv_float_rows(w, x, y, r.n, s));
    } else {
        CUDA_LAUNCH_CHECK(trn_cuda_gemv_float_rows(w, x, y, r.n, s));
    }
    return TRN_OK;
}

/* Node `node` over rows r. *quantized: the buffer whose int8 rows are in p->xq (-1: none). */
trn_status run_node_rows(prefill *p, const trn_node *node, const node_rows &r, int *quantized) {
    const trn_graph *g = p->res.graph;
    const trn_cuda_stream s = reinterpret_cast<trn_cuda_stream>(p->res.stream);
    const trn_buffer *dst = &g->buffers[node->dst];
    auto rows_of = [&](int buffer) { /* an elementwise operand must be a row array of its vector length */
        return p->row_bytes[(size_t)buffer] == (size_t)g->buffers[buffer].ne[0] * sizeof(float);
    };
    switch (node->op) {
    case TRN_OP_GET_ROW:
        CUDA_LAUNCH_CHECK(trn_cuda_get_rows(&(*p->res.matrix)[(size_t)node->src[0]], r.ids(node->src[1]),
                                            r.f(node->dst), r.n, s));
        break;
    case TRN_OP_RMSNORM:
        CUDA_LAUNCH_CHECK(trn_cuda_rmsnorm_rows(r.f(node->src[0]), r.f(node->src[1]), r.f(node->dst), dst->ne[0],
                                                node->eps, r.n, s));
        break;
    case TRN_OP_MATVEC:
        TRN_TRY(run_product(p, node, r, quantized));
        break;
    case TRN_OP_ROPE:
        CUDA_LAUNCH_CHECK(trn_cuda_rope_rows(r.f(node->src[0]), r.f(node->dst), node->n_head, node->head_dim,
                                             p->res.rope_cos_sin, r.ids(node->src[1]), r.n, s));
        break;
    case TRN_OP_STORE_ROW:
        CUDA_LAUNCH_CHECK(trn_cuda_store_rows(r.at(node->src[0]), r.at(node->dst), dst->ne[0], r.ids(node->src[1]),
                                              r.n, s));
        break;
    case TRN_OP_ATTENTION:
        CUDA_LAUNCH_CHECK(trn_cuda_attention_rows(r.f(node->src[0]), r.f(node->src[1]), r.f(node->src[2]),
                                                  r.f(node->dst), node->n_head, node->n_head_kv, node->head_dim,
                                                  g->n_ctx, r.ids(node->src[3]), r.n, p->res.step_attention ? 1 : 0, s));
        break;
    case TRN_OP_SWIGLU:
    case TRN_OP_ADD:
        if (!rows_of(node->src[0]) || !rows_of(node->src[1]) || !rows_of(node->dst))
            return trn_fail(TRN_ERR_UNSUPPORTED, "the CUDA prefill needs %s's operands as one row per token",
                            trn_op_name(node->op));
        if (node->op == TRN_OP_SWIGLU)
            CUDA_LAUNCH_CHECK(trn_cuda_swiglu(r.f(node->src[0]), r.f(node->src[1]), r.f(node->dst), r.n * dst->ne[0], s));
        else
            CUDA_LAUNCH_CHECK(trn_cuda_add(r.f(node->src[0]), r.f(node->src[1]), r.f(node->dst), r.n * dst->ne[0], s));
        break;
    case TRN_OP_SAMPLE: /* the last row only: its logits, the history, its position */
        CUDA_LAUNCH_CHECK(trn_cuda_sample(r.f(node->src[0]), g->model->hp.n_vocab, r.ids(node->src[1]),
                                          r.ids(node->src[2]), p->res.sampling, p->res.sample_scratch,
                                          static_cast<int32_t *>(r.at(node->dst)), 0, s));
        break;
    default:
        return trn_fail(TRN_ERR_UNSUPPORTED, "the CUDA prefill has no kernel for op %s", trn_op_name(node->op));
    }
    if (node->dst == *quantized)
        *quantized = -1;
    return TRN_OK;
}

/* One batch of n tokens at positions pos0..: the body over all rows; the head over all rows (head_all) or the last
 * row; the sampler (sample) on the last row. */
trn_status run_batch(prefill *p, const int *tokens, int n, int pos0, bool head, bool head_all, bool sample) {
    const trn_graph *g = p->res.graph;
    const cudaStream_t s = p->res.stream;
    for (int t = 0; t < n; t++) {
        p->inputs_pinned[t] = tokens[t];
        p->inputs_pinned[p->max_batch + t] = pos0 + t;
    }
    CUDA_CHECK(cudaMemcpyAsync(p->rows[(size_t)g->buf_token], p->inputs_pinned, (size_t)n * sizeof(int32_t),
                               cudaMemcpyHostToDevice, s));
    CUDA_CHECK(cudaMemcpyAsync(p->rows[(size_t)g->buf_pos], p->inputs_pinned + p->max_batch, (size_t)n * sizeof(int32_t),
                               cudaMemcpyHostToDevice, s));
    const int n_nodes = head ? g->n_nodes : g->n_body_nodes;
    weights *w = p->res.placed;
    TRN_TRY(weights_enqueue_begin(w, s, n_nodes));
    int group = -1, quantized = -1;
    for (int i = 0; i < n_nodes; i++) {
        const trn_node *node = &g->nodes[i];
        if (i == g->n_body_nodes)
            quantized = -1; /* the head may run on other rows than the body */
        if (node->op == TRN_OP_SAMPLE && !sample)
            continue;
        const int node_group = w->group_of_node[(size_t)i];
        if (node_group != group) {
            TRN_TRY(weights_enqueue_group(w, s, group, node_group, n_nodes));
            group = node_group;
        }
        const bool all_rows = i < g->n_body_nodes || (head_all && node->op != TRN_OP_SAMPLE);
        const node_rows r{p, all_rows ? 0 : n - 1, all_rows ? n : 1};
        TRN_TRY(run_node_rows(p, node, r, &quantized));
    }
    TRN_TRY(weights_enqueue_end(w, s, group, n_nodes));
    return TRN_OK;
}

} // namespace

trn_status prefill_run(prefill *p, const int *tokens, int n_tokens, int pos0, int want_output, int *next_token,
                       float *all_logits) {
    const trn_graph *g = p->res.graph;
    const cudaStream_t s = p->res.stream;
    const int n_vocab = g->model->hp.n_vocab;
    const size_t logits_bytes = (size_t)n_vocab * sizeof(float);
    for (int done = 0; done < n_tokens;) {
        const int n = std::min(p->max_batch, n_tokens - done);
        const bool last = done + n == n_tokens, output = last && want_output;
        auto batch = [&]() -> trn_status { /* enqueues the batch and the copies of its results */
            TRN_TRY(run_batch(p, tokens + done, n, pos0 + done, all_logits || output, all_logits != nullptr, output));
            if (all_logits)
                CUDA_CHECK(cudaMemcpyAsync(all_logits + (size_t)done * n_vocab, p->rows[(size_t)g->buf_logits],
                                           (size_t)n * logits_bytes, cudaMemcpyDeviceToHost, s));
            if (output) { /* the last row's logits into the step's (read by logits()), and the sampled id */
                const char *row = static_cast<const char *>(p->rows[(size_t)g->buf_logits]) + (size_t)(n - 1) * logits_bytes;
                CUDA_CHECK(cudaMemcpyAsync((*p->res.buffer)[(size_t)g->buf_logits], row, logits_bytes,
                                           cudaMemcpyDeviceToDevice, s));
                CUDA_CHECK(cudaMemcpyAsync(p->next_pinned, (*p->res.buffer)[(size_t)g->buf_next_token],
                                           sizeof(int32_t), cudaMemcpyDeviceToHost, s));
            }
            return TRN_OK;
        };
        nvtxRangePushA("prefill batch");
        const trn_status status = batch();
        const cudaError_t err = cudaStreamSynchronize(s); /* the pinned inputs are rewritten by the next batch */
        nvtxRangePop();
        TRN_TRY(status);
        if (err != cudaSuccess)
            return trn_fail(TRN_ERR_DEVICE, "prefill of positions %d..%d failed on the device: %s", pos0 + done,
                            pos0 + done + n - 1, cudaGetErrorString(err));
        done += n;
    }
    if (want_output && next_token)
        *next_token = *p->next_pinned;
    return TRN_OK;
}

} // namespace trn_cuda
