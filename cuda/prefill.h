/* prefill.h: the CUDA backend's batched prefill (C++, internal to cuda/; implemented in prefill.cu).
 *
 * A prompt runs through the graph in batches of up to max_batch tokens: every node once per batch over the rows of
 * all its tokens, as the CPU backend's prefill does (cpu_fallback/cpu_backend.c). Activations live in a batch arena
 * (the planner's offsets times max_batch, one row per token), token ids and positions in device arrays; the weights,
 * KV caches, token history and the sampler are the step's (lent by cuda_backend.cu through prefill_resources).
 * Per node:
 *   ternary product, int8 mode  the batch's rows quantized (trn_cuda_quantize_act over all rows), then
 *                               trn_cuda_gemm_ternary: int8 tensor cores, bitwise the matrix-vector product's rows
 *   ternary product, f32 mode   the step's kernel once per token
 *   F32/F16/BF16 product        cuBLAS (loaded at run time: libcublas.so.<major>), GEMM with float accumulation;
 *                               where it cannot be loaded, or TRN_CUDA_NO_CUBLAS=1, the step's kernel over the rows
 *   attention                   the query-block kernel (a block per KV head and 8 tokens); with
 *                               TRN_CUDA_NO_FUSION=1 the step's general kernel over the rows
 *   other products, every other op  the step's kernels over the rows (the _rows launchers of cuda_ops.h)
 * Attention: the batch's K and V are stored in the cache before the attention node, which gives token t positions
 * 0..pos0 + t (the causal mask). The head (final norm, LM head) runs for the last token alone, or for every token
 * where all logits are asked for; the sampler for the last token.
 *
 * Results: with TRN_CUDA_NO_FUSION=1 every op but the cuBLAS products is bitwise the unfused step's (the plain kernel
 * per node); so with TRN_CUDA_NO_CUBLAS=1 too, a batch's KV cache and logits are bitwise those of token-by-token
 * unfused steps. By default, against the fused step, the differences are float rounding: the fused RMSNorm's order,
 * the query-block attention's (and the split kernel's on the step side), cuBLAS's. */
#ifndef TRN_CUDA_PREFILL_H
#define TRN_CUDA_PREFILL_H

#include <cuda_runtime.h>

#include <vector>

#include "cuda_ops.h"
#include "weights.h"

namespace trn_cuda {

/* What the step's context lends the prefill (owned by cuda_backend.cu, outliving the prefill). */
struct prefill_resources {
    const trn_graph *graph = nullptr;
    cudaStream_t stream = nullptr;
    const std::vector<trn_cuda_matrix> *matrix = nullptr; /* [n_buffers] weight views */
    const std::vector<void *> *buffer = nullptr;          /* [n_buffers] the step's device buffers */
    weights *placed = nullptr;                            /* copies of streamed weights */
    const float *rope_cos_sin = nullptr;
    const trn_cuda_sampling *sampling = nullptr;
    void *sample_scratch = nullptr;
    trn_act_mode act = TRN_ACT_INT8;
    bool step_attention = false; /* the step is unfused (TRN_CUDA_NO_FUSION, NO_GRAPH): its general attention kernel */
};

struct cublas_api; /* cuBLAS entry points, loaded at run time (prefill.cu) */

struct prefill {
    prefill_resources res;
    int max_batch = 0;
    std::vector<void *> rows;       /* [n_buffers] batch address of each buffer (row 0), or the step's buffer */
    std::vector<size_t> row_bytes;  /* [n_buffers] bytes between a buffer's rows; 0: one copy shared by all tokens */
    std::vector<void *> allocations;
    trn_cuda_q8_block *xq = nullptr; /* [max_batch][max_cols / 256] */
    uint16_t *x_half = nullptr;      /* [max_batch][max_cols]: activations as fp16/bf16 for cuBLAS */
    int32_t *inputs_pinned = nullptr; /* [2][max_batch]: token ids, positions (copied to the device per batch) */
    int32_t *next_pinned = nullptr;
    cublas_api *blas = nullptr;      /* nullptr: float products by the step's kernel over the rows */
    size_t device_bytes = 0;
    char blas_note[256] = "";        /* why cuBLAS is not used, or its library */
};

/* Device bytes a prefill of max_batch tokens allocates for graph g. */
size_t prefill_device_bytes(const trn_graph *g, int max_batch);
trn_status prefill_prepare(prefill *p, const prefill_resources &res, int max_batch);
/* The backend contract of graph/backend.h's prefill (positions already checked against the context by the caller). */
trn_status prefill_run(prefill *p, const int *tokens, int n_tokens, int pos0, int want_output, int *next_token,
                       float *all_logits);
void prefill_release(prefill *p);

} // namespace trn_cuda

#endif
