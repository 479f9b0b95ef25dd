/* cuda_ops.h: the CUDA kernels of every graph op, as C-callable launchers (one .cu file per op family).
 *
 * Every launcher enqueues on `stream` and returns cudaGetLastError() as an int (0 = success), so the backend can
 * name the failing launch; none synchronizes, so all of them can be captured into a CUDA Graph. Shapes follow
 * ops.h (the CPU definitions these kernels are tested against): W[rows][cols], vectors contiguous. Scalars that
 * change per token (token id, position) are read from device memory, never passed by value, so a captured graph
 * serves every token. */
#ifndef TRN_CUDA_OPS_H
#define TRN_CUDA_OPS_H

#include <stdint.h>

#include "host/tensor_types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct CUstream_st *trn_cuda_stream; /* cudaStream_t without the CUDA headers */

/* A weight matrix in device memory, in the layout the kernels read (prepared once at load).
 * Ternary (TQ2_0, TQ1_0): codes and scales split so codes are 16-byte aligned:
 *   qs: [rows][nb * bytes_per_block_codes] (TQ2_0: 64 bytes per block as in the file; TQ1_0: 48 + 4 = 52 bytes,
 *       qs then qh), d: [rows][nb] fp16 scales.
 * Every other type: the file's rows as they are (data), d unused. */
typedef struct {
    trn_type type;
    int64_t rows, cols;
    const void *qs;       /* ternary codes, or the whole row data for other types */
    const trn_fp16 *d;    /* ternary scales */
    size_t row_bytes;     /* bytes of one row in qs (ternary) or data (other types) */
} trn_cuda_matrix;

/* int8 activations per block of 256, as trn_block_q8_act on the CPU: d = max|x| / 127, q = rint(x / d)
 * (round half to even), sum = sum(q). */
typedef struct {
    float d;
    int32_t sum;
    int8_t q[256];
} trn_cuda_q8_block;

/* ---- gemv_ternary.cu ---- */
/* x[n] -> xq[n/256]. */
int trn_cuda_quantize_act(const float *x, trn_cuda_q8_block *xq, int64_t n, trn_cuda_stream stream);
/* y[rows] = W @ x. With xq (int8 mode) the block sums are exact integers (dp4a) and each row is
 * sum_b (d_w[b] * xq[b].d) * (isum_b - ...) in block order, as the CPU reference; with xq == NULL float activations
 * (per block d * sum((code - 1) * x)). The same kernel as trn_cuda_ternary with one matrix, input XQ or F32 and
 * output STORE. */
int trn_cuda_gemv_ternary(const trn_cuda_matrix *w, const float *x, const trn_cuda_q8_block *xq, float *y,
                          trn_cuda_stream stream);

/* Fused ternary products: one launch reads up to three matrices of one type and width and replaces the nodes around
 * them: the input prologue (RMSNorm and int8 quantization, done by every CTA into its shared memory) and the output
 * epilogue (residual add, SwiGLU, or RoPE with the K/V cache store). */
typedef enum {
    TRN_CUDA_IN_XQ,         /* xq, quantized beforehand by trn_cuda_quantize_act */
    TRN_CUDA_IN_F32,        /* float activations x (the f32 mode) */
    TRN_CUDA_IN_QUANT,      /* x quantized to int8 in the kernel */
    TRN_CUDA_IN_NORM_QUANT, /* RMSNorm(x) * norm (eps), then quantized, in the kernel */
    TRN_CUDA_IN_EMBED_NORM_QUANT, /* the first launch of a step: its input is row *token of embed, dequantized as
                                     trn_cuda_get_row does, which the launch also writes to x_row; then NORM_QUANT.
                                     With history (and pos): history[*pos] = *token, the token history's store */
} trn_cuda_input;

typedef enum {
    TRN_CUDA_OUT_STORE,  /* y[rows of all matrices, in order] = W x */
    TRN_CUDA_OUT_ADD,    /* y[rows] += W x (the residual add; y is not an input of the product) */
    TRN_CUDA_OUT_SWIGLU, /* w = {gate, up} of equal rows: y[rows] = silu(gate x) * (up x) */
    TRN_CUDA_OUT_QKV,    /* w = {q, k, v}: y[rows of q] = RoPE(q x); row *pos of k_cache [n_ctx][rows of k] =
                            RoPE(k x), of v_cache = v x; RoPE rotates adjacent pairs of each head of head_dim by row
                            *pos of rope_cos_sin [n_ctx][head_dim] (interleaved cos, sin) */
} trn_cuda_output;

/* Which ternary kernel runs a launch (gemv_ternary.cu): AUTO is CLASSIC (one row per warp at a time; measured on
 * GPUs); LEAN (four rows per warp iteration, activations in registers) where it serves the launch (int8 mode, rows
 * of every matrix a multiple of 4; TQ2_0, or TQ1_0 rows of at most 8 blocks), CLASSIC elsewhere. Both give the same
 * bits. */
typedef enum {
    TRN_CUDA_TERNARY_AUTO,
    TRN_CUDA_TERNARY_CLASSIC,
    TRN_CUDA_TERNARY_LEAN,
} trn_cuda_ternary_kernel;

typedef struct {
    int n_mat;
    trn_cuda_matrix w[3];
    trn_cuda_input input;
    const float *x;                 /* QUANT, NORM_QUANT, F32: [cols], 16-byte aligned */
    const trn_cuda_q8_block *xq;    /* XQ: [cols / 256] */
    const float *norm;              /* NORM_QUANT: [cols], 16-byte aligned */
    float eps;
    trn_cuda_output output;
    float *y;
    float *k_cache, *v_cache;       /* QKV */
    const float *rope_cos_sin;      /* QKV */
    const int32_t *pos;             /* QKV */
    int head_dim;                   /* QKV */
    trn_cuda_ternary_kernel kernel; /* AUTO (0) unless a test or TRN_CUDA_TERNARY asks for another */
    trn_cuda_matrix embed;          /* EMBED_NORM_QUANT: the token embedding, any type trn_cuda_get_row reads */
    const int32_t *token;           /* EMBED_NORM_QUANT: the row of embed (device) */
    float *x_row;                   /* EMBED_NORM_QUANT: [cols], 16-byte aligned: the row, as trn_cuda_get_row writes it */
    int32_t *history;               /* EMBED_NORM_QUANT, optional: [n_ctx] token ids; needs pos */
    void *argmax;                   /* STORE output (int8 input), optional: trn_cuda_argmax_scratch_bytes() of device
                                       memory zeroed once and left to the kernel after (one launch at a time); the
                                       launch then also writes to *next the lowest id of the largest y (NaN never
                                       chosen while a number is there): greedy sampling folded into the LM head */
    int32_t *next;                  /* with argmax */
} trn_cuda_ternary_op;

/* Bytes of the argmax scratch of trn_cuda_ternary_op (a 64-bit key and a block counter). */
size_t trn_cuda_argmax_scratch_bytes(void);

/* Enqueues op. pdl: launch with programmatic dependent launch (sm_90: the kernel starts while the one before it
 * finishes, reading weights early; see device_math.cuh). */
int trn_cuda_ternary(const trn_cuda_ternary_op *op, int pdl, trn_cuda_stream stream);

/* ---- gemm_ternary.cu: a prompt's ternary products (prefill) ---- */
/* y[t][rows] = W @ x_t for t < n_tokens (row t of y at y + t * ld_y), int8 activations xq[n_tokens][cols / 256]
 * (trn_cuda_quantize_act over the tokens' rows): per (row, token) the arithmetic of trn_cuda_gemv_ternary's int8
 * mode (exact integer block sums, acc += (d_w * d_x) * (float)(isum - sum(q)) from 0 in block order), so every
 * result is bitwise the matrix-vector product's. Weight tiles are unpacked from the codes into int8 in shared memory
 * and multiplied on int8 tensor cores (mma.sync m16n8k32, sm_80+) or with dp4a (older GPUs, the Pascal code path). */
int trn_cuda_gemm_ternary(const trn_cuda_matrix *w, const trn_cuda_q8_block *xq, int n_tokens, float *y, int64_t ld_y,
                          trn_cuda_stream stream);

/* ---- gemv_float.cu: F32, F16, BF16, Q8_0, Q4_K, Q6_K ---- */
int trn_cuda_gemv_float(const trn_cuda_matrix *w, const float *x, float *y, trn_cuda_stream stream);
/* dst[cols] = row *row_index (device int32) of W as floats (embedding lookup), any type incl. ternary. */
int trn_cuda_get_row(const trn_cuda_matrix *w, const int32_t *row_index, float *dst, trn_cuda_stream stream);

/* ---- elementwise.cu ---- */
/* dst[n] = x / sqrt(mean(x^2) + eps) * weight */
int trn_cuda_rmsnorm(const float *x, const float *weight, float *dst, int64_t n, float eps, trn_cuda_stream stream);
/* dst[n] = silu(gate) * up */
int trn_cuda_swiglu(const float *gate, const float *up, float *dst, int64_t n, trn_cuda_stream stream);
/* dst[n] = a + b */
int trn_cuda_add(const float *a, const float *b, float *dst, int64_t n, trn_cuda_stream stream);
/* dst[n_heads][head_dim] = src with adjacent pairs rotated by cos_sin[*pos][head_dim] (interleaved cos, sin). */
int trn_cuda_rope(const float *src, float *dst, int n_heads, int head_dim, const float *cos_sin, const int32_t *pos,
                  trn_cuda_stream stream);
/* Row *pos of cache[n_ctx][width] = src[width] (width elements of elem_bytes: 4 for floats and int32 ids). */
int trn_cuda_store_row(const void *src, void *cache, int64_t width, const int32_t *pos, trn_cuda_stream stream);

/* dst[n] = x as fp16 (bf16 = 0) or bf16 (bf16 = 1) bits, rounded to nearest even */
int trn_cuda_to_half(const float *x, uint16_t *dst, int64_t n, int bf16, trn_cuda_stream stream);

/* Occupies the stream for `microseconds` (one thread spinning on the global timer): tests slow a copy stream with it on
 * purpose. */
int trn_cuda_delay(int microseconds, trn_cuda_stream stream);

/* ---- attention.cu ---- */
/* Device byte ranges the split attention kernel asks the L2 cache to fetch (`prefetch.global.L2`, a line per
 * request, the requests spread over every thread of the grid) before its trn_pdl_wait(): the weights of the launches
 * that follow it (TRN_CUDA_L2_PREFETCH=1, cuda_backend.cu), read from HBM while attention itself waits on latency.
 * Ranges must lie in device memory and hold nothing an earlier kernel of the step writes. */
#define TRN_CUDA_L2_RANGES 8
typedef struct trn_cuda_l2_prefetch {
    int n;
    const void *ptr[TRN_CUDA_L2_RANGES];
    unsigned long long bytes[TRN_CUDA_L2_RANGES];
} trn_cuda_l2_prefetch;

/* out[n_head][hd] = softmax(q . k_t / sqrt(hd)) v over t = 0..*pos, K/V caches [n_ctx][n_head_kv * hd];
 * query head h reads KV head h / (n_head / n_head_kv). With `scratch` (device memory of
 * trn_cuda_attention_scratch_bytes for the same shapes and n_ctx, zeroed once before the first launch and left to the
 * kernel after; one launch at a time may use it) and shapes the split kernel serves, positions are split across
 * blocks; with NULL, or other shapes, one block per query head. Launches that share a scratch in one stream with
 * pdl set rely on every kernel between them calling trn_pdl_wait() before it returns (device_math.cuh): the last
 * block of a launch resets the scratch's counters, which the next launch must not see before. split_positions: the
 * split kernel's positions per block, 64 or 32 (0: 64); the scratch serves either. prefetch: ranges for the split
 * kernel to bring into L2 (NULL or n = 0: none; the other kernels ignore it). */
int trn_cuda_attention(const float *q, const float *k_cache, const float *v_cache, float *out, int n_head,
                       int n_head_kv, int head_dim, int n_ctx, const int32_t *pos, void *scratch, int split_positions,
                       int pdl, const struct trn_cuda_l2_prefetch *prefetch, trn_cuda_stream stream);
/* Bytes of scratch the split kernel needs for these shapes; 0 where it does not serve them (head_dim other than 64,
 * more than 8 query heads per KV head). */
size_t trn_cuda_attention_scratch_bytes(int n_head, int n_head_kv, int head_dim, int n_ctx);

/* ---- the rows of a prefill batch ----
 * The per-token ops above over n_rows tokens at once (n_rows <= TRN_CUDA_MAX_ROWS; token t in the grid's second
 * dimension): token t's vectors are row t of contiguous [n_rows][width] arrays (width: the op's vector length), its
 * position pos[t] and id row_index[t] are device arrays. Each row is bitwise the single-token launch's. */
#define TRN_CUDA_MAX_ROWS 65535
int trn_cuda_rmsnorm_rows(const float *x, const float *weight, float *dst, int64_t n, float eps, int n_rows,
                          trn_cuda_stream stream);
int trn_cuda_rope_rows(const float *src, float *dst, int n_heads, int head_dim, const float *cos_sin,
                       const int32_t *pos, int n_rows, trn_cuda_stream stream);
int trn_cuda_store_rows(const void *src, void *cache, int64_t width, const int32_t *pos, int n_rows,
                        trn_cuda_stream stream);
int trn_cuda_get_rows(const trn_cuda_matrix *w, const int32_t *row_index, float *dst, int n_rows,
                      trn_cuda_stream stream);
/* y[t][rows] = W x[t][cols] (float weight types) */
int trn_cuda_gemv_float_rows(const trn_cuda_matrix *w, const float *x, float *y, int n_rows, trn_cuda_stream stream);
/* Token t attends to positions 0..pos[t] of the caches, which hold the whole batch's K and V before the launch
 * (causal). step_kernel 1: the general kernel over the tokens (one block per query head and token), each row bitwise
 * the single-token launch's; 0: the query-block kernel where it serves the shapes (head_dim 64, up to 8 query heads
 * per KV head, 16-byte aligned caches: a block per KV head and 8 tokens), rows within float rounding of the
 * general kernel's; the general kernel elsewhere. */
int trn_cuda_attention_rows(const float *q, const float *k_cache, const float *v_cache, float *out, int n_head,
                            int n_head_kv, int head_dim, int n_ctx, const int32_t *pos, int n_rows, int step_kernel,
                            trn_cuda_stream stream);

/* ---- sample.cu ---- */
typedef struct {
    float temp;           /* <= 0: greedy (lowest id on ties) */
    int top_k;            /* <= 0: off */
    float top_p;          /* >= 1: off */
    float repeat_penalty; /* 1: off */
    uint64_t seed;
} trn_cuda_sampling;

/* Scratch the sampler needs for a vocabulary of n_vocab (bytes). */
size_t trn_cuda_sample_scratch_bytes(int n_vocab);
/* `params` is a host pointer, read at launch (a captured graph keeps the values of capture time).
 * *next = the token sampled from logits[n_vocab] with the rules and draw of host/sampler.h (penalty over
 * history[0..*pos], then temperature, top-k, top-p, and u = hash(seed, *pos)); logits are not modified. pdl: launch
 * with programmatic dependent launch (its one block waits for the kernel before it on the GPU, not on the host's
 * launch: the decode step's LM head). */
int trn_cuda_sample(const float *logits, int n_vocab, const int32_t *history, const int32_t *pos,
                    const trn_cuda_sampling *params, void *scratch, int32_t *next, int pdl, trn_cuda_stream stream);

#ifdef __cplusplus
}
#endif

#endif
