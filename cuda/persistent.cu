/* persistent.cu: a run of the launch plan's ternary and split attention launches as one cooperative kernel.
 *
 * Owns trn_cuda_persistent_* (cuda_ops.h): the phase descriptors in device memory, the grid-wide barrier and the
 * kernel that walks the phases. Does not own the math: a ternary phase runs ternary_body (ternary_device.cuh), an
 * attention phase runs attention_split_block (attention_split.cuh), the device code of the kernels they replace.
 *
 * Why: a decode step of Trinity-1.1B is 110 small launches of 1-6 MB each (five per layer); between two kernels the
 * GPU drains the grid, launches the next and fills it again, which costs more than reading the weights. Here every
 * CTA stays resident for the whole run (a cooperative launch guarantees they fit at once) and phases are separated by
 * a barrier instead:
 *   phase i (ternary): each warp loads the codes of its first unit -> barrier (phase i - 1 is complete everywhere)
 *                      -> prologue (RMSNorm, int8 quantization of the input into shared memory) -> its units;
 *   phase i (attention): barrier -> blocks (kv, split) taken in turn, CTA c taking c, c + grid, ...
 * So weights of the next phase are in flight while the last CTAs finish the current one, as with programmatic
 * dependent launch, but without a kernel boundary.
 *
 * The barrier: thread 0 of each CTA reads the generation, arrives on a counter (after __syncthreads and a device-wide
 * fence, so the CTA's writes are visible), and the last to arrive resets the counter and bumps the generation; the
 * others spin until the generation changes; a fence and __syncthreads then release the CTA. The counter is back to 0
 * after every barrier, so graph replays need no reset. Data written in one phase and read in a later one goes through
 * ordinary loads (never the non-coherent path): descriptors and weights, read-only for the kernel's life, may use it.
 *
 * Shared memory: the attention block's static arrays (37 KB) plus the ternary phases' dynamic activations (nb * 328
 * bytes); grid = CTAs per SM the occupancy calculator allows (launch bounds: 256 threads, <= 64 registers) x SMs. */
#include <cuda_runtime.h>

#include <algorithm>
#include <new>
#include <vector>

#include "attention_split.cuh"
#include "cuda_ops.h"
#include "ternary_device.cuh"

using namespace trn_ternary;

namespace {

/* Template variants a ternary phase may run (int8 mode only): the format and N of ternary_variant. */
enum phase_code : int {
    kAttention,
    kTq2N1, kTq2N2, kTq2N3, kTq2N4,
    kTq1N1, kTq1N2, kTq1N4, kTq1N8,
};

struct device_phase {
    int code;
    ternary_params t;
    attention_split_params a;
};

__device__ __forceinline__ unsigned load_acquire(const unsigned *p) {
    unsigned v;
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 700
    asm volatile("ld.acquire.gpu.global.u32 %0, [%1];" : "=r"(v) : "l"(p) : "memory");
#else
    v = *reinterpret_cast<const volatile unsigned *>(p);
    __threadfence();
#endif
    return v;
}

/* bar[0]: CTAs arrived at the current barrier; bar[1]: generation. */
__device__ __forceinline__ void grid_barrier(unsigned *bar) {
    __syncthreads();
    if (threadIdx.x == 0) {
        const unsigned generation = load_acquire(bar + 1);
        __threadfence();
        if (atomicAdd(bar, 1u) == gridDim.x - 1) {
            atomicExch(bar, 0u);
            __threadfence();
            atomicExch(bar + 1, generation + 1);
        } else {
            while (load_acquire(bar + 1) == generation) {
            }
        }
        __threadfence();
    }
    __syncthreads();
}

/* The wait of a phase: the barrier, except before the run's first phase (the kernel starts after the ones before it). */
struct barrier_wait {
    unsigned *bar;
    bool first;
    __device__ void operator()() const {
        if (!first)
            grid_barrier(bar);
    }
};

/* One phase of each kind as a function of its own (not inlined), so that each gets the kernel's registers to itself:
 * inlined into one switch, the variants spilled (sm_90, 64 registers: 1.2 KB per thread; as functions, 30-240 bytes
 * of saved registers per call). MinBlocks: the kernel's, so each kernel gets its own copies. */
template <class F, int N, int MinBlocks>
__device__ __noinline__ void ternary_phase(const ternary_params &p, uint8_t *smem, barrier_wait wait) {
    ternary_body<F, N, true>(p, smem, blockIdx.x, gridDim.x, wait);
}

template <int MinBlocks>
__device__ __noinline__ void attention_phase(const attention_split_params &a, barrier_wait wait) {
    wait();
    const int blocks = a.n_head_kv * a.n_splits; /* the active ones first: kv varies fastest */
    for (int b = blockIdx.x; b < blocks; b += gridDim.x) {
        attention_split_block(a, b % a.n_head_kv, b / a.n_head_kv);
        __syncthreads(); /* the block's shared arrays are staged again by the next one */
    }
}

/* MinBlocks: resident CTAs per SM the registers must allow (4: 64 registers, as the ternary kernel; 2: 128). */
template <int MinBlocks>
__global__ void __launch_bounds__(kCtaThreads, MinBlocks)
    persistent_kernel(const device_phase *__restrict__ phases, int count, unsigned *bar) {
    extern __shared__ __align__(16) uint8_t smem[];
    for (int i = 0; i < count; i++) {
        const device_phase &ph = phases[i];
        const barrier_wait wait{bar, i == 0};
        switch (ph.code) {
        case kAttention: attention_phase<MinBlocks>(ph.a, wait); break;
        case kTq2N1: ternary_phase<Tq2Format, 1, MinBlocks>(ph.t, smem, wait); break;
        case kTq2N2: ternary_phase<Tq2Format, 2, MinBlocks>(ph.t, smem, wait); break;
        case kTq2N3: ternary_phase<Tq2Format, 3, MinBlocks>(ph.t, smem, wait); break;
        case kTq2N4: ternary_phase<Tq2Format, 4, MinBlocks>(ph.t, smem, wait); break;
        case kTq1N1: ternary_phase<Tq1Format, 1, MinBlocks>(ph.t, smem, wait); break;
        case kTq1N2: ternary_phase<Tq1Format, 2, MinBlocks>(ph.t, smem, wait); break;
        case kTq1N4: ternary_phase<Tq1Format, 4, MinBlocks>(ph.t, smem, wait); break;
        default: ternary_phase<Tq1Format, 8, MinBlocks>(ph.t, smem, wait); break;
        }
        __syncthreads(); /* shared memory is the next phase's */
    }
}

using persistent_fn = void (*)(const device_phase *, int, unsigned *);

/* The kernel for at most ctas_per_sm CTAs per SM: with 1 or 2, the one allowed 128 registers. */
persistent_fn kernel_for(int ctas_per_sm) {
    return ctas_per_sm == 1 || ctas_per_sm == 2 ? persistent_kernel<2> : persistent_kernel<kCtasPerSm>;
}

int code_of(ternary_variant v) {
    if (v.tq2)
        return v.n == 1 ? kTq2N1 : v.n == 2 ? kTq2N2 : v.n == 3 ? kTq2N3 : kTq2N4;
    return v.n == 1 ? kTq1N1 : v.n == 2 ? kTq1N2 : v.n == 4 ? kTq1N4 : kTq1N8;
}

} // namespace

struct trn_cuda_persistent {
    device_phase *phases = nullptr; /* device copy, one per trn_cuda_phase (NONE: code -1) */
    std::vector<bool> runnable;     /* [n] */
    unsigned *barrier = nullptr;    /* [2], zeroed */
    size_t smem = 0;
    int grid = 0;
    persistent_fn kernel = nullptr;
};

extern "C" int trn_cuda_persistent_create(const trn_cuda_phase *phases, int n, int ctas_per_sm,
                                          trn_cuda_persistent **out) {
    if (!out || n < 0 || (n > 0 && !phases))
        return cudaErrorInvalidValue;
    *out = nullptr;
    int device = 0, cooperative = 0, sms = 0;
    cudaError_t err = cudaGetDevice(&device);
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(&cooperative, cudaDevAttrCooperativeLaunch, device);
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, device);
    if (err != cudaSuccess)
        return err;
    if (!cooperative || sms <= 0)
        return cudaErrorNotSupported;
    std::vector<device_phase> host((size_t)n);
    std::vector<bool> runnable((size_t)n, false);
    size_t smem = 0;
    for (int i = 0; i < n; i++) {
        const trn_cuda_phase &ph = phases[i];
        device_phase &d = host[(size_t)i];
        d = device_phase{};
        d.code = -1;
        if (ph.kind == TRN_CUDA_PHASE_TERNARY) {
            ternary_variant v;
            size_t bytes = 0;
            err = ternary_prepare(&ph.ternary, &d.t, &v, &bytes);
            if (err != cudaSuccess)
                return err;
            /* int8 input computed in the prologue: never read through the non-coherent path (XQ) */
            if (!v.int8 || ph.ternary.input == TRN_CUDA_IN_XQ)
                return cudaErrorNotSupported;
            d.code = code_of(v);
            smem = std::max(smem, bytes);
        } else if (ph.kind == TRN_CUDA_PHASE_ATTENTION) {
            const auto &a = ph.attention;
            if (!a.q || !a.k_cache || !a.v_cache || !a.out || !a.pos || !a.scratch || a.n_head <= 0 ||
                a.n_head_kv <= 0 || a.n_ctx <= 0)
                return cudaErrorInvalidValue;
            if (!split_applies(a.n_head, a.n_head_kv, a.head_dim) || (reinterpret_cast<uintptr_t>(a.k_cache) & 15) ||
                (reinterpret_cast<uintptr_t>(a.v_cache) & 15))
                return cudaErrorNotSupported;
            d.code = kAttention;
            d.a = attention_split_args(a.q, a.k_cache, a.v_cache, a.out, a.n_head, a.n_head_kv, a.n_ctx, a.pos,
                                       a.scratch);
        } else if (ph.kind != TRN_CUDA_PHASE_NONE) {
            return cudaErrorInvalidValue;
        }
        runnable[(size_t)i] = d.code >= 0;
    }
    const persistent_fn kernel = kernel_for(ctas_per_sm);
    cudaFuncAttributes attributes;
    err = cudaFuncGetAttributes(&attributes, kernel);
    if (err != cudaSuccess)
        return err;
    if (attributes.sharedSizeBytes + smem > 48 * 1024) { /* past the default limit: opt in, where the card allows */
        err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)smem);
        if (err != cudaSuccess) {
            (void)cudaGetLastError();
            return cudaErrorNotSupported;
        }
    }
    int per_sm = 0;
    err = cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, kCtaThreads, smem);
    if (err != cudaSuccess)
        return err;
    if (ctas_per_sm > 0)
        per_sm = std::min(per_sm, ctas_per_sm);
    if (per_sm <= 0)
        return cudaErrorNotSupported;
    trn_cuda_persistent *pk = new (std::nothrow) trn_cuda_persistent();
    if (!pk)
        return cudaErrorMemoryAllocation;
    pk->runnable = runnable;
    pk->smem = smem;
    pk->grid = per_sm * sms;
    pk->kernel = kernel;
    err = cudaMalloc(&pk->barrier, 2 * sizeof(unsigned));
    if (err == cudaSuccess)
        err = cudaMemset(pk->barrier, 0, 2 * sizeof(unsigned));
    if (err == cudaSuccess && n > 0)
        err = cudaMalloc(&pk->phases, host.size() * sizeof(device_phase));
    if (err == cudaSuccess && n > 0)
        err = cudaMemcpy(pk->phases, host.data(), host.size() * sizeof(device_phase), cudaMemcpyHostToDevice);
    if (err != cudaSuccess) {
        trn_cuda_persistent_free(pk);
        return err;
    }
    *out = pk;
    return cudaSuccess;
}

extern "C" int trn_cuda_persistent_launch(const trn_cuda_persistent *pk, int first, int count,
                                          trn_cuda_stream stream) {
    if (!pk || first < 0 || count <= 0 || (size_t)first + (size_t)count > pk->runnable.size())
        return cudaErrorInvalidValue;
    for (int i = first; i < first + count; i++)
        if (!pk->runnable[(size_t)i])
            return cudaErrorInvalidValue;
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3((unsigned)pk->grid);
    config.blockDim = dim3(kCtaThreads);
    config.dynamicSmemBytes = pk->smem;
    config.stream = reinterpret_cast<cudaStream_t>(stream);
    cudaLaunchAttribute attribute; /* all CTAs resident at once, or the launch fails: the barrier relies on it */
    attribute.id = cudaLaunchAttributeCooperative;
    attribute.val.cooperative = 1;
    config.attrs = &attribute;
    config.numAttrs = 1;
    const device_phase *phases = pk->phases + first;
    const cudaError_t err = cudaLaunchKernelEx(&config, pk->kernel, phases, count, pk->barrier);
    return (int)(err != cudaSuccess ? err : cudaGetLastError());
}

extern "C" int trn_cuda_persistent_grid(const trn_cuda_persistent *pk) { return pk ? pk->grid : 0; }

extern "C" void trn_cuda_persistent_free(trn_cuda_persistent *pk) {
    if (!pk)
        return;
    cudaFree(pk->phases);
    cudaFree(pk->barrier);
    delete pk;
}
