/* elementwise.cu: the small vector ops of a decode step on the GPU: RMSNorm, SwiGLU, residual add, RoPE and the
 * KV-cache (or token history) row store; the per-token ones also over the rows of a prefill batch (_rows: token t
 * in blockIdx, each row bitwise the single-token launch's). Launchers are declared in cuda_ops.h; the CPU definitions they follow are
 * the scalar references in cpu_fallback/ops_ref.c and the STORE_ROW / ROPE cases of cpu_fallback/cpu_backend.c.
 *
 * Owns: these five kernels, the fp16/bf16 conversion of activations for cuBLAS, and a delay kernel tests use to slow a
 * stream. The per-element math (trn_cuda_rope_pair,
 * trn_cuda_silu_mul) is in device_math.cuh, shared with the fused epilogues of gemv_ternary.cu.
 * Does not own: matrix-vector products (gemv_*.cu), attention (attention.cu), sampling (sample.cu), the RoPE
 * cos/sin table (built once by the backend at prepare).
 *
 * Rounding: rmsnorm sums x^2 in a different order than the CPU (a tree instead of a loop), so its scale differs in
 * the last bits. RoPE and the final products use explicitly rounded intrinsics (__fmul_rn and friends) so that no
 * multiply-add is contracted into an FMA: rope is bitwise the CPU reference. silu uses the precise expf (CUDA's
 * expf is within 2 ulp; glibc's is within 1), so swiglu may differ from the CPU by an ulp or two; a build with
 * --use_fast_math would replace expf by __expf and is not supported. */
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "cuda_ops.h"
#include "device_math.cuh"

#define EW_THREADS 256
#define RMSNORM_THREADS 1024

/* ---- kernels ---- */

/* x[rows][n], weight[n] -> dst[rows][n] = x * (1 / sqrt(mean(x^2) + eps)) * weight. One block per row (blockIdx.x);
 * dst may be x. */
static __global__ void __launch_bounds__(RMSNORM_THREADS)
    rmsnorm_kernel(const float *x, const float *weight, float *dst, int n, float eps) {
    __shared__ float warp_sums[RMSNORM_THREADS / 32];
    __shared__ float scale_shared;
    const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
    x += (int64_t)blockIdx.x * n;
    dst += (int64_t)blockIdx.x * n;
    float ss = 0.0f;
    for (int i = tid; i < n; i += blockDim.x)
        ss += x[i] * x[i];
    for (int off = 16; off > 0; off >>= 1)
        ss += __shfl_xor_sync(0xffffffffu, ss, off);
    if (lane == 0)
        warp_sums[warp] = ss;
    __syncthreads();
    if (warp == 0) {
        ss = lane < (int)(blockDim.x >> 5) ? warp_sums[lane] : 0.0f;
        for (int off = 16; off > 0; off >>= 1)
            ss += __shfl_xor_sync(0xffffffffu, ss, off);
        if (lane == 0)
            scale_shared = __fdiv_rn(1.0f, __fsqrt_rn(__fadd_rn(__fdiv_rn(ss, (float)n), eps)));
    }
    __syncthreads();
    const float scale = scale_shared;
    for (int i = tid; i < n; i += blockDim.x)
        dst[i] = __fmul_rn(__fmul_rn(x[i], scale), weight[i]);
}

/* gate[n], up[n] -> dst[n] = silu(gate) * up */
static __global__ void swiglu_kernel(const float *gate, const float *up, float *dst, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = trn_cuda_silu_mul(gate[i], up[i]);
}

/* a[n], b[n] -> dst[n] = a + b */
static __global__ void add_kernel(const float *a, const float *b, float *dst, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = __fadd_rn(a[i], b[i]);
}

/* src[tokens][n_heads][head_dim] -> dst (may be src): pair (2i, 2i+1) of every head of token t (blockIdx.y) rotated
 * by row pos[t] of cos_sin[n_ctx][head_dim] (interleaved cos, sin of pair i). One thread per pair. */
static __global__ void rope_kernel(const float *src, float *dst, int n_pairs, int half_dim, const float *cos_sin,
                            const int32_t *pos) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= n_pairs)
        return;
    src += (int64_t)blockIdx.y * 2 * n_pairs;
    dst += (int64_t)blockIdx.y * 2 * n_pairs;
    pos += blockIdx.y;
    const int head_dim = 2 * half_dim;
    const int h = j / half_dim, i = j - h * half_dim;
    const float *cs = cos_sin + (int64_t)(*pos) * head_dim + 2 * i;
    const int64_t e = (int64_t)h * head_dim + 2 * i;
    const float x0 = src[e], x1 = src[e + 1];
    float y0, y1;
    trn_cuda_rope_pair(x0, x1, cs[0], cs[1], &y0, &y1);
    dst[e] = y0;
    dst[e + 1] = y1;
}

/* src[tokens][width] (4-byte elements) -> row pos[t] of cache[n_ctx][width] for token t (blockIdx.y) */
static __global__ void store_row_kernel(const uint32_t *src, uint32_t *cache, int64_t width, const int32_t *pos) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < width)
        cache[(int64_t)pos[blockIdx.y] * width + i] = src[(int64_t)blockIdx.y * width + i];
}

/* x[n] -> dst[n] as fp16 or bf16 (round to nearest even): the activations of a float product run by cuBLAS. fp16
 * saturates at +-65504 (an activation past fp16's range would otherwise become inf and the products NaN). */
template <bool BF16> static __global__ void to_half_kernel(const float *x, uint16_t *dst, int64_t n) {
    const int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n)
        dst[i] = BF16 ? __bfloat16_as_ushort(__float2bfloat16_rn(x[i]))
                      : __half_as_ushort(__float2half_rn(fminf(fmaxf(x[i], -65504.0f), 65504.0f)));
}

/* the global timer in nanoseconds */
static __device__ __forceinline__ unsigned long long global_timer_ns() {
#ifdef TRN_CUDA_EMULATOR
    return trn_emu::global_timer_ns(); /* tests/cuda_emulator */
#else
    unsigned long long t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    return t;
#endif
}

/* spins until `ns` nanoseconds of the global timer have passed */
static __global__ void delay_kernel(unsigned long long ns) {
    const unsigned long long start = global_timer_ns();
    while (global_timer_ns() - start < ns) {
    }
}

/* ---- launchers ---- */

/* Launch configurations (none depends on a per-token value, so all of them can be captured into a CUDA Graph):
 *   rmsnorm     one block of 1024 threads per row (n is at most a few thousand: one block reads it at L2 speed and
 *               needs no second reduction kernel)
 *   swiglu, add one thread per element, blocks of 256
 *   rope        one thread per (head, pair), blocks of 256; reads the position from device memory
 *   store_row   one thread per 4-byte element, blocks of 256; reads the position from device memory */

static unsigned blocks_for(int64_t n, int threads) { return (unsigned)((n + threads - 1) / threads); }

extern "C" int trn_cuda_rmsnorm_rows(const float *x, const float *weight, float *dst, int64_t n, float eps,
                                     int n_rows, trn_cuda_stream stream) {
    if (n <= 0 || n > INT32_MAX || n_rows <= 0 || n_rows > TRN_CUDA_MAX_ROWS)
        return (int)cudaErrorInvalidValue;
    rmsnorm_kernel<<<(unsigned)n_rows, RMSNORM_THREADS, 0, (cudaStream_t)stream>>>(x, weight, dst, (int)n, eps);
    return (int)cudaGetLastError();
}

extern "C" int trn_cuda_rmsnorm(const float *x, const float *weight, float *dst, int64_t n, float eps,
                                trn_cuda_stream stream) {
    return trn_cuda_rmsnorm_rows(x, weight, dst, n, eps, 1, stream);
}

extern "C" int trn_cuda_swiglu(const float *gate, const float *up, float *dst, int64_t n, trn_cuda_stream stream) {
    if (n <= 0)
        return (int)cudaErrorInvalidValue;
    swiglu_kernel<<<blocks_for(n, EW_THREADS), EW_THREADS, 0, (cudaStream_t)stream>>>(gate, up, dst, n);
    return (int)cudaGetLastError();
}

extern "C" int trn_cuda_add(const float *a, const float *b, float *dst, int64_t n, trn_cuda_stream stream) {
    if (n <= 0)
        return (int)cudaErrorInvalidValue;
    add_kernel<<<blocks_for(n, EW_THREADS), EW_THREADS, 0, (cudaStream_t)stream>>>(a, b, dst, n);
    return (int)cudaGetLastError();
}

extern "C" int trn_cuda_rope_rows(const float *src, float *dst, int n_heads, int head_dim, const float *cos_sin,
                                  const int32_t *pos, int n_rows, trn_cuda_stream stream) {
    if (n_heads <= 0 || head_dim <= 0 || head_dim % 2 != 0 || n_rows <= 0 || n_rows > TRN_CUDA_MAX_ROWS)
        return (int)cudaErrorInvalidValue;
    const int n_pairs = n_heads * (head_dim / 2);
    rope_kernel<<<dim3(blocks_for(n_pairs, EW_THREADS), (unsigned)n_rows), EW_THREADS, 0, (cudaStream_t)stream>>>(
        src, dst, n_pairs, head_dim / 2, cos_sin, pos);
    return (int)cudaGetLastError();
}

extern "C" int trn_cuda_rope(const float *src, float *dst, int n_heads, int head_dim, const float *cos_sin,
                             const int32_t *pos, trn_cuda_stream stream) {
    return trn_cuda_rope_rows(src, dst, n_heads, head_dim, cos_sin, pos, 1, stream);
}

extern "C" int trn_cuda_store_rows(const void *src, void *cache, int64_t width, const int32_t *pos, int n_rows,
                                   trn_cuda_stream stream) {
    if (width <= 0 || n_rows <= 0 || n_rows > TRN_CUDA_MAX_ROWS)
        return (int)cudaErrorInvalidValue;
    store_row_kernel<<<dim3(blocks_for(width, EW_THREADS), (unsigned)n_rows), EW_THREADS, 0, (cudaStream_t)stream>>>(
        static_cast<const uint32_t *>(src), static_cast<uint32_t *>(cache), width, pos);
    return (int)cudaGetLastError();
}

extern "C" int trn_cuda_store_row(const void *src, void *cache, int64_t width, const int32_t *pos,
                                  trn_cuda_stream stream) {
    return trn_cuda_store_rows(src, cache, width, pos, 1, stream);
}

extern "C" int trn_cuda_to_half(const float *x, uint16_t *dst, int64_t n, int bf16, trn_cuda_stream stream) {
    if (n <= 0)
        return (int)cudaErrorInvalidValue;
    if (bf16)
        to_half_kernel<true><<<blocks_for(n, EW_THREADS), EW_THREADS, 0, (cudaStream_t)stream>>>(x, dst, n);
    else
        to_half_kernel<false><<<blocks_for(n, EW_THREADS), EW_THREADS, 0, (cudaStream_t)stream>>>(x, dst, n);
    return (int)cudaGetLastError();
}

extern "C" int trn_cuda_delay(int microseconds, trn_cuda_stream stream) {
    if (microseconds < 0)
        return (int)cudaErrorInvalidValue;
    delay_kernel<<<1, 1, 0, (cudaStream_t)stream>>>((unsigned long long)microseconds * 1000ull);
    return (int)cudaGetLastError();
}
