/* device_math.cuh: small device functions shared by the CUDA kernels.
 *  - Explicitly rounded float operations (mul_rn, add_rn, sub_rn, div_rn).
 *  - Per-element math, also compiled for the host so tests can check it (__host__ __device__): the RoPE rotation of
 *    one pair and silu(g) * u, each with the rounding of the CPU reference (cpu_fallback/ops_ref.c): every product
 *    rounded before the sum, no multiply-add contracted into an FMA.
 *  - Order keys of floats (the sampler's sorts, the greedy argmax folded into the LM head).
 *  - Programmatic dependent launch (PDL) markers, and the launch configuration that asks for it. */
#ifndef TRN_DEVICE_MATH_CUH
#define TRN_DEVICE_MATH_CUH

#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

/* Single correctly rounded operations (no contraction into an FMA), the same on the host. */
static __host__ __device__ __forceinline__ float mul_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

static __host__ __device__ __forceinline__ float add_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

static __host__ __device__ __forceinline__ float sub_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

static __host__ __device__ __forceinline__ float div_rn(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fdiv_rn(a, b);
#else
    return a / b;
#endif
}

/* (y0, y1) = (x0, x1) rotated by the angle with cosine c and sine s, as rope_ref: x0 c - x1 s, x0 s + x1 c, each
 * product rounded before the sum. */
static __host__ __device__ inline void trn_cuda_rope_pair(float x0, float x1, float c, float s, float *y0, float *y1) {
#ifdef __CUDA_ARCH__
    *y0 = __fsub_rn(__fmul_rn(x0, c), __fmul_rn(x1, s));
    *y1 = __fadd_rn(__fmul_rn(x0, s), __fmul_rn(x1, c));
#else
    const float a = x0 * c, b = x1 * s, e = x0 * s, f = x1 * c; /* host: compile with -ffp-contract=off */
    *y0 = a - b;
    *y1 = e + f;
#endif
}

/* silu(g) * u with silu(g) = g / (1 + exp(-g)), as swiglu_ref. */
static __host__ __device__ inline float trn_cuda_silu_mul(float g, float u) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(__fdiv_rn(g, __fadd_rn(1.0f, expf(-g))), u);
#else
    return g / (1.0f + expf(-g)) * u;
#endif
}

/* A float as an unsigned integer of the same order (larger float, larger key); -0.0 and +0.0 share a key, as they
 * compare equal on the CPU. */
static __host__ __device__ inline uint32_t trn_cuda_desc_key(float v) {
    uint32_t b;
    memcpy(&b, &v, sizeof(b));
    if (v == 0.0f)
        b = 0;
    return (b & 0x80000000u) ? ~b : (b | 0x80000000u);
}

/* Greedy argmax as one 64-bit maximum (atomicMax across blocks): the larger key is the larger value, then the lower
 * id, the CPU's choice among equal logits; a NaN has the lowest value, so it is never chosen while any value is a
 * number (all NaN: id 0, as the CPU). The id is ~key's low 32 bits. */
static __host__ __device__ inline unsigned long long trn_cuda_argmax_key(float v, int id) {
    const unsigned long long value = v != v ? 0ull : (unsigned long long)trn_cuda_desc_key(v);
    return (value << 32) | (unsigned long long)(~(uint32_t)id);
}

/* Programmatic dependent launch (sm_90 and newer; no-ops elsewhere, in the Pascal build (TRN_CUDA_PASCAL) and for
 * kernels launched without the attribute; the CUDA emulator runs a block of a PDL launch in a graph ahead of the
 * kernel before it, stopped at trn_pdl_wait()).
 * A kernel launched with cudaLaunchAttributeProgrammaticStreamSerialization may start while the kernel before it
 * is still running: before trn_pdl_wait() it may read only what no earlier kernel writes (weights) and write
 * nothing; trn_pdl_wait() returns once every earlier kernel has finished and its writes are visible.
 * trn_pdl_launch_dependents() lets the next such kernel start early. */
static __device__ __forceinline__ void trn_pdl_wait() {
#if defined(TRN_CUDA_EMULATOR) && !defined(TRN_CUDA_PASCAL)
    trn_emu::pdl_wait();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(TRN_CUDA_PASCAL)
    asm volatile("griddepcontrol.wait;" ::: "memory");
#endif
}

/* Asks the L2 cache for the 128-byte line holding p (device memory); the thread does not wait for it. */
static __device__ __forceinline__ void trn_prefetch_l2(const void *p) {
#if defined(TRN_CUDA_EMULATOR)
    trn_emu::prefetch_l2(p);
#elif defined(__CUDA_ARCH__)
    asm volatile("prefetch.global.L2 [%0];" ::"l"(p));
#endif
}

/* A cudaLaunchKernelEx configuration: grid x block threads, smem bytes of dynamic shared memory, on stream, launched
 * with programmatic dependent launch where pdl is set. *attribute holds the PDL attribute; it must outlive the
 * cudaLaunchKernelEx call. */
static inline cudaLaunchConfig_t trn_launch_config(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, bool pdl,
                                                   cudaLaunchAttribute *attribute) {
    cudaLaunchConfig_t config = {};
    config.gridDim = grid;
    config.blockDim = block;
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    attribute->id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute->val.programmaticStreamSerializationAllowed = 1;
    config.attrs = pdl ? attribute : nullptr;
    config.numAttrs = pdl ? 1 : 0;
    return config;
}

static __device__ __forceinline__ void trn_pdl_launch_dependents() {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && !defined(TRN_CUDA_PASCAL) && !defined(TRN_CUDA_EMULATOR)
    asm volatile("griddepcontrol.launch_dependents;" :::);
#endif
}

#endif
