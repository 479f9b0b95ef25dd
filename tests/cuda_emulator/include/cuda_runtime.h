/* cuda_runtime.h of the CUDA emulator (tests/cuda_emulator): the subset of the CUDA runtime API and of the device
 * language that the .cu files of cuda/ and the CUDA tests use, implemented on the CPU so that the kernels run, and
 * are checked, on a machine without a GPU. Not NVIDIA's header: a build with -DTRN_CUDA_EMULATOR=ON puts this folder
 * first on the include path and compiles the .cu files as C++ (after scripts/cuda_emu_rewrite.py has turned each
 * `kernel<<<grid, block, smem, stream>>>(args)` into a call of trn_emu::launcher).
 *
 * The model (emulator.cpp): a kernel's blocks run one after another; a block's threads are fibers (cooperative
 * threads with their own stacks) that run until they reach a barrier (__syncthreads*) or a warp collective
 * (__shfl*_sync, __ballot_sync, __syncwarp, mma.sync), where they wait for the others. Each round visits the
 * runnable threads in an order that changes from round to round (TRN_CUDA_EMU_ORDER=rotate|shuffle|forward|reverse,
 * default rotate: a random first thread, either direction; TRN_CUDA_EMU_SEED), so a read of shared memory that lacks
 * its barrier sees another value than it would in order. Checked, each reported in one line naming the kernel and
 * block, then abort(): a collective whose mask names a lane that exited or does not exist, lanes of one mask meeting
 * at different collectives, a shuffle from a lane outside the mask, a barrier that not every thread of the block
 * reaches (deadlock, or threads that exited), __trap(), a pointer argument that is neither device nor pinned host
 * memory, a copy whose direction does not match where its pointers live, dynamic shared memory over 48 KB without
 * cudaFuncSetAttribute. Streams: work is recorded while its stream (or a stream that waited for an event recorded
 * in the capture) is captured; a graph keeps its edges (stream order, event waits). Outside a capture, work on a
 * stream other than the default one waits in the stream's queue until the host synchronizes. A graph launch or a
 * synchronization runs the work with the streams ranked at random, one as far ahead of another as the edges and
 * events allow (TRN_CUDA_EMU_STREAMS=random|issue, default random; issue: in issue order, at once). Programmatic
 * dependent launch: a block of a kernel launched with the attribute runs up to its trn_pdl_wait() before the kernel
 * ahead of it runs (TRN_CUDA_EMU_PDL=early|off, default early; emulator.cpp, run_grid).
 * Not modelled: timing, concurrency between blocks, the memory model beyond barriers, limits on registers and
 * shared memory.
 * Numerics: the _rn intrinsics are exact IEEE operations as on the GPU; expf, rsqrtf and the like are the C
 * library's (the GPU's approximations differ in the last bits). */
#ifndef TRN_CUDA_EMULATOR_RUNTIME_H
#define TRN_CUDA_EMULATOR_RUNTIME_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

#ifndef TRN_CUDA_EMULATOR
#define TRN_CUDA_EMULATOR 1
#endif
#define CUDART_VERSION 12080

/* ---- the language: qualifiers ---- */
#define __host__
#define __device__
#define __global__
#define __forceinline__ inline
#define __shared__ static /* a block runs alone: a static is the block's shared variable */
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __restrict__ __restrict

/* ---- vector types ---- */
struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
};
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) int2 { int x, y; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned x, y; };
struct __attribute__((aligned(16))) uint4 { unsigned x, y, z, w; };
static inline float2 make_float2(float x, float y) { return {x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
static inline int2 make_int2(int x, int y) { return {x, y}; }
static inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
static inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }

/* ---- fp16 and bf16 (cuda_fp16.h and cuda_bf16.h include this header) ---- */
struct __half { unsigned short x; };
struct __nv_bfloat16 { unsigned short x; };
namespace trn_emu {
float half_bits_to_float(unsigned short h);
unsigned short float_to_half_bits(float f); /* round to nearest even */
unsigned short float_to_bf16_bits(float f); /* round to nearest even */
} // namespace trn_emu
static inline __half __ushort_as_half(unsigned short h) { return {h}; }
static inline unsigned short __half_as_ushort(__half h) { return h.x; }
static inline float __half2float(__half h) { return trn_emu::half_bits_to_float(h.x); }
static inline __half __float2half_rn(float f) { return {trn_emu::float_to_half_bits(f)}; }
static inline __half __float2half(float f) { return __float2half_rn(f); }
static inline __nv_bfloat16 __float2bfloat16_rn(float f) { return {trn_emu::float_to_bf16_bits(f)}; }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 h) { return h.x; }
static inline float __bfloat162float(__nv_bfloat16 h) {
    const uint32_t u = (uint32_t)h.x << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}

/* ---- device intrinsics: arithmetic (compile with -ffp-contract=off: each is one rounding) ---- */
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fsub_rn(float a, float b) { return a - b; }
static inline float __fdiv_rn(float a, float b) { return a / b; }
static inline float __fsqrt_rn(float a) { return sqrtf(a); }
static inline float __frcp_rn(float a) { return 1.0f / a; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __fdividef(float a, float b) { return a / b; }
static inline float rsqrtf(float a) { return 1.0f / sqrtf(a); }
static inline int __float2int_rn(float a) { return (int)lrintf(a); } /* the default rounding mode: nearest even */
static inline int __float2int_rz(float a) { return (int)a; }
static inline float __int_as_float(int a) { float f; memcpy(&f, &a, 4); return f; }
static inline int __float_as_int(float a) { int i; memcpy(&i, &a, 4); return i; }
static inline float __uint_as_float(unsigned a) { float f; memcpy(&f, &a, 4); return f; }
static inline unsigned __float_as_uint(float a) { unsigned u; memcpy(&u, &a, 4); return u; }
static inline int __popc(unsigned a) { return __builtin_popcount(a); }
static inline int __popcll(unsigned long long a) { return __builtin_popcountll(a); }
static inline int __clz(int a) { return a ? __builtin_clz((unsigned)a) : 32; }
static inline int __ffs(int a) { return __builtin_ffs(a); }
static inline unsigned __brev(unsigned a) {
    unsigned r = 0;
    for (int i = 0; i < 32; i++) r |= ((a >> i) & 1u) << (31 - i);
    return r;
}
static inline int __dp4a(int a, int b, int c) {
    for (int k = 0; k < 4; k++) c += (int)(int8_t)(a >> (8 * k)) * (int)(int8_t)(b >> (8 * k));
    return c;
}
static inline unsigned __dp4a(unsigned a, unsigned b, unsigned c) {
    for (int k = 0; k < 4; k++) c += ((a >> (8 * k)) & 255u) * ((b >> (8 * k)) & 255u);
    return c;
}
/* prmt.b32 in its default mode: byte i of the result is byte (s >> 4 i) & 7 of the eight bytes y:x */
static inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
    const unsigned long long xy = (unsigned long long)y << 32 | x;
    unsigned r = 0;
    for (int i = 0; i < 4; i++) r |= (unsigned)(xy >> (8 * ((s >> (4 * i)) & 7u)) & 255u) << (8 * i);
    return r;
}
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }

/* loads with cache hints: plain loads here */
template <class T> static inline T __ldg(const T *p) { return *p; }
template <class T> static inline T __ldcg(const T *p) { return *p; }
template <class T> static inline T __ldcs(const T *p) { return *p; }
template <class T> static inline T __ldlu(const T *p) { return *p; }
template <class T> static inline void __stcs(T *p, T v) { *p = v; }
template <class T> static inline void __stcg(T *p, T v) { *p = v; }

/* atomics: one thread runs at a time, so a plain read-modify-write is atomic */
template <class T> static inline T atomicAdd(T *p, T v) { T old = *p; *p = old + v; return old; }
template <class T> static inline T atomicSub(T *p, T v) { T old = *p; *p = old - v; return old; }
template <class T> static inline T atomicMin(T *p, T v) { T old = *p; *p = v < old ? v : old; return old; }
template <class T> static inline T atomicMax(T *p, T v) { T old = *p; *p = v > old ? v : old; return old; }
template <class T> static inline T atomicExch(T *p, T v) { T old = *p; *p = v; return old; }
template <class T> static inline T atomicCAS(T *p, T cmp, T v) { T old = *p; if (old == cmp) *p = v; return old; }
template <class T> static inline T atomicOr(T *p, T v) { T old = *p; *p = old | v; return old; }
template <class T> static inline T atomicAnd(T *p, T v) { T old = *p; *p = old & v; return old; }
static inline void __threadfence() {}
static inline void __threadfence_block() {}

/* ---- threads, barriers and warp collectives (emulator.cpp) ---- */
namespace trn_emu {

enum collective_op { OP_SHFL_IDX, OP_SHFL_UP, OP_SHFL_DOWN, OP_SHFL_XOR, OP_BALLOT, OP_SYNCWARP };
enum barrier_op { BAR_PLAIN, BAR_COUNT, BAR_AND, BAR_OR };
/* Waits for the lanes of `mask`; returns the value of the source lane (shuffles) or the mask of lanes whose value
 * was non-zero (ballot). */
uint64_t warp_collective(collective_op op, unsigned mask, uint64_t value, int arg, int width);
int block_barrier(barrier_op op, int predicate);
[[noreturn]] void trap(const char *what);
void *dynamic_shared(); /* the block's dynamic shared memory (extern __shared__, rewritten) */
} // namespace trn_emu

/* the running thread's indices: variables the scheduler sets before it resumes a thread (not macros, so that
 * cudaLaunchConfig_t's members of the same names stay usable) */
extern uint3 threadIdx, blockIdx;
extern dim3 blockDim, gridDim;
constexpr int warpSize = 32;

static inline void __syncthreads() { trn_emu::block_barrier(trn_emu::BAR_PLAIN, 1); }
static inline int __syncthreads_count(int p) { return trn_emu::block_barrier(trn_emu::BAR_COUNT, p != 0); }
static inline int __syncthreads_and(int p) { return trn_emu::block_barrier(trn_emu::BAR_AND, p != 0); }
static inline int __syncthreads_or(int p) { return trn_emu::block_barrier(trn_emu::BAR_OR, p != 0); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
    trn_emu::warp_collective(trn_emu::OP_SYNCWARP, mask, 0, 0, 32);
}
[[noreturn]] static inline void __trap() { trn_emu::trap("__trap()"); }

namespace trn_emu {
template <class T> static inline uint64_t to_bits(T v) {
    static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffles move up to 8 bytes");
    uint64_t b = 0;
    memcpy(&b, &v, sizeof(T));
    return b;
}
template <class T> static inline T from_bits(uint64_t b) {
    T v;
    memcpy(&v, &b, sizeof(T));
    return v;
}
} // namespace trn_emu
template <class T> static inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
    return trn_emu::from_bits<T>(trn_emu::warp_collective(trn_emu::OP_SHFL_IDX, mask, trn_emu::to_bits(v), src, width));
}
template <class T> static inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return trn_emu::from_bits<T>(
        trn_emu::warp_collective(trn_emu::OP_SHFL_UP, mask, trn_emu::to_bits(v), (int)delta, width));
}
template <class T> static inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
    return trn_emu::from_bits<T>(
        trn_emu::warp_collective(trn_emu::OP_SHFL_DOWN, mask, trn_emu::to_bits(v), (int)delta, width));
}
template <class T> static inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
    return trn_emu::from_bits<T>(
        trn_emu::warp_collective(trn_emu::OP_SHFL_XOR, mask, trn_emu::to_bits(v), lane_mask, width));
}
static inline unsigned __ballot_sync(unsigned mask, int p) {
    return (unsigned)trn_emu::warp_collective(trn_emu::OP_BALLOT, mask, p != 0, 0, 32);
}
static inline int __any_sync(unsigned mask, int p) { return __ballot_sync(mask, p) != 0; }
static inline int __all_sync(unsigned mask, int p) { return __ballot_sync(mask, p) == mask; }

/* ---- instructions the kernels write as inline PTX (cuda/ calls these where TRN_CUDA_EMULATOR is defined) ---- */
namespace trn_emu {
/* dp4a.u32.s32: c + the dot product of the unsigned bytes of a and the signed bytes of b */
static inline int dp4a_u8s8(uint32_t a, int b, int c) {
    for (int k = 0; k < 4; k++) c += (int)(uint8_t)(a >> (8 * k)) * (int)(int8_t)(b >> (8 * k));
    return c;
}
/* mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {d}, {a}, {b}, {d}: a warp collective; each lane gives its
 * fragments as the PTX ISA lays them out ("Matrix Fragments for mma.m16n8k32") and gets its part of D. */
void mma_m16n8k32_s8(int32_t d[4], const uint32_t a[4], const uint32_t b[2]);
/* %globaltimer: nanoseconds of the host's monotonic clock */
unsigned long long global_timer_ns();
/* trn_pdl_wait() (cuda/device_math.cuh): returns at once, except in a block the emulator runs ahead of the kernel
 * launched before it (a PDL launch in a graph: emulator.cpp, run_grid), where the thread stops until that kernel
 * has run. */
void pdl_wait();
/* prefetch.global.L2 [p] (trn_prefetch_l2, cuda/device_math.cuh): nothing to fetch here, but the address must lie in
 * device memory (a hint to a stray address is a bug in the ranges that asked for it). */
void prefetch_l2(const void *p);
} // namespace trn_emu

/* ---- the runtime API ---- */
enum cudaError {
    cudaSuccess = 0,
    cudaErrorInvalidValue = 1,
    cudaErrorMemoryAllocation = 2,
    cudaErrorInitializationError = 3,
    cudaErrorInvalidConfiguration = 9,
    cudaErrorInvalidDevicePointer = 17,
    cudaErrorInvalidMemcpyDirection = 21,
    cudaErrorInsufficientDriver = 35,
    cudaErrorNoDevice = 100,
    cudaErrorInvalidDevice = 101,
    cudaErrorInvalidResourceHandle = 400,
    cudaErrorNotReady = 600,
    cudaErrorMisalignedAddress = 716,
    cudaErrorLaunchFailure = 719,
    cudaErrorNotSupported = 801,
    cudaErrorStreamCaptureUnsupported = 900,
    cudaErrorStreamCaptureInvalidated = 901,
    cudaErrorUnknown = 999,
};
typedef enum cudaError cudaError_t;
enum cudaMemcpyKind {
    cudaMemcpyHostToHost = 0,
    cudaMemcpyHostToDevice = 1,
    cudaMemcpyDeviceToHost = 2,
    cudaMemcpyDeviceToDevice = 3,
    cudaMemcpyDefault = 4,
};
enum cudaStreamCaptureStatus {
    cudaStreamCaptureStatusNone = 0,
    cudaStreamCaptureStatusActive = 1,
    cudaStreamCaptureStatusInvalidated = 2,
};
enum cudaStreamCaptureMode {
    cudaStreamCaptureModeGlobal = 0,
    cudaStreamCaptureModeThreadLocal = 1,
    cudaStreamCaptureModeRelaxed = 2,
};
enum cudaDeviceAttr {
    cudaDevAttrMultiProcessorCount = 16,
    cudaDevAttrComputeCapabilityMajor = 75,
    cudaDevAttrComputeCapabilityMinor = 76,
};
enum cudaLaunchAttributeID { cudaLaunchAttributeProgrammaticStreamSerialization = 5 };
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };
#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventBlockingSync 0x01
#define cudaEventDisableTiming 0x02
#define cudaEventRecordDefault 0x00
#define cudaEventRecordExternal 0x01
#define cudaHostAllocDefault 0x00
#define cudaHostAllocPortable 0x01
#define cudaHostAllocMapped 0x02
#define cudaHostAllocWriteCombined 0x04

typedef struct CUstream_st *cudaStream_t; /* the name NVIDIA's headers give it (cuda_ops.h declares it too) */
typedef struct trn_emu_event *cudaEvent_t;
typedef struct trn_emu_graph *cudaGraph_t;
typedef struct trn_emu_graph_exec *cudaGraphExec_t;

struct cudaDeviceProp {
    char name[256];
    size_t totalGlobalMem, sharedMemPerBlock, sharedMemPerBlockOptin, l2CacheSize;
    int major, minor, multiProcessorCount, warpSize, maxThreadsPerBlock, clockRate, memoryClockRate,
        memoryBusWidth, regsPerBlock, maxThreadsPerMultiProcessor;
};
struct cudaFuncAttributes {
    size_t sharedSizeBytes, constSizeBytes, localSizeBytes;
    int maxThreadsPerBlock, numRegs, ptxVersion, binaryVersion, maxDynamicSharedSizeBytes;
};
union cudaLaunchAttributeValue {
    int programmaticStreamSerializationAllowed;
    char pad[64];
};
struct cudaLaunchAttribute {
    cudaLaunchAttributeID id;
    cudaLaunchAttributeValue val;
};
struct cudaLaunchConfig_t {
    dim3 gridDim, blockDim;
    size_t dynamicSmemBytes;
    cudaStream_t stream;
    cudaLaunchAttribute *attrs;
    unsigned numAttrs;
};

const char *cudaGetErrorString(cudaError_t err);
const char *cudaGetErrorName(cudaError_t err);
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device);
cudaError_t cudaDriverGetVersion(int *version);
cudaError_t cudaRuntimeGetVersion(int *version);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaDeviceReset();
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);

cudaError_t cudaMalloc(void **p, size_t bytes);
template <class T> static inline cudaError_t cudaMalloc(T **p, size_t bytes) {
    return cudaMalloc(reinterpret_cast<void **>(p), bytes);
}
cudaError_t cudaFree(void *p);
cudaError_t cudaMallocHost(void **p, size_t bytes);
template <class T> static inline cudaError_t cudaMallocHost(T **p, size_t bytes) {
    return cudaMallocHost(reinterpret_cast<void **>(p), bytes);
}
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned flags);
template <class T> static inline cudaError_t cudaHostAlloc(T **p, size_t bytes, unsigned flags) {
    return cudaHostAlloc(reinterpret_cast<void **>(p), bytes, flags);
}
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaHostGetDevicePointer(void **device, void *host, unsigned flags);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream = 0);
cudaError_t cudaMemset(void *dst, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream = 0);

cudaError_t cudaStreamCreate(cudaStream_t *s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned flags = 0);
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status);
cudaError_t cudaEventCreate(cudaEvent_t *e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = 0);
cudaError_t cudaEventRecordWithFlags(cudaEvent_t e, cudaStream_t s = 0, unsigned flags = 0);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaProfilerStart();
cudaError_t cudaProfilerStop();
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *attr, const void *func);
template <class... P> static inline cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *attr, void (*func)(P...)) {
    return cudaFuncGetAttributes(attr, reinterpret_cast<const void *>(func));
}
cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value);
template <class... P>
static inline cudaError_t cudaFuncSetAttribute(void (*func)(P...), cudaFuncAttribute attr, int value) {
    return cudaFuncSetAttribute(reinterpret_cast<const void *>(func), attr, value);
}

/* ---- launches ---- */
namespace trn_emu {
/* Runs `body` (the kernel with its arguments) as a grid now, or records it where `stream` is being captured.
 * Returns the launch's error (a bad configuration); a fault inside the kernel aborts. */
cudaError_t enqueue_kernel(const char *name, const void *kernel, dim3 grid, dim3 block, size_t smem,
                           cudaStream_t stream, bool pdl, void (*run)(void *), void *closure,
                           void (*free_closure)(void *));
/* Where a kernel's pointer argument points neither into device memory nor into mapped host memory: one line
 * naming the kernel and the argument's position, then abort(). */
void check_kernel_pointer(const char *name, int index, const void *p);
template <class T> static inline void check_arg(const char *name, int index, const T &v) {
    if constexpr (std::is_pointer<T>::value)
        if (v)
            check_kernel_pointer(name, index, (const void *)v);
}
template <class... P> struct kernel_call {
    void (*kernel)(P...);
    std::tuple<typename std::decay<P>::type...> args;
    static void run(void *c) {
        kernel_call *k = static_cast<kernel_call *>(c);
        std::apply(k->kernel, k->args);
    }
    static void release(void *c) { delete static_cast<kernel_call *>(c); }
};
template <class... P, class... A>
static inline cudaError_t launch(const char *name, dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
                                 bool pdl, void (*kernel)(P...), A &&...args) {
    static_assert(sizeof...(P) == sizeof...(A), "a kernel launch passes every parameter");
    auto *call = new kernel_call<P...>{kernel, std::tuple<typename std::decay<P>::type...>(std::forward<A>(args)...)};
    int index = 0;
    std::apply([&](const auto &...v) { (check_arg(name, index++, v), ...); }, call->args);
    return enqueue_kernel(name, reinterpret_cast<const void *>(kernel), grid, block, smem, stream, pdl,
                          &kernel_call<P...>::run, call, &kernel_call<P...>::release);
}
/* kernel<<<grid, block, smem, stream>>>(args), rewritten as
 * launcher(kernel, "kernel", grid, block, smem, stream)(args) */
template <class... P> struct launcher_t {
    void (*kernel)(P...);
    const char *name;
    dim3 grid, block;
    size_t smem;
    cudaStream_t stream;
    template <class... A> void operator()(A &&...args) const {
        launch(name, grid, block, smem, stream, false, kernel, std::forward<A>(args)...);
    }
};
template <class... P>
static inline launcher_t<P...> launcher(void (*kernel)(P...), const char *name, dim3 grid, dim3 block, size_t smem = 0,
                                        cudaStream_t stream = 0) {
    return {kernel, name, grid, block, smem, stream};
}
} // namespace trn_emu

/* cudaLaunchKernelEx(config, kernel, args...): the kernel expression's text names the launch in reports */
#define cudaLaunchKernelEx(config, kernel, ...) trn_emu::launch_ex(#kernel, config, kernel, ##__VA_ARGS__)
namespace trn_emu {
template <class... P, class... A>
static inline cudaError_t launch_ex(const char *name, const cudaLaunchConfig_t *config, void (*kernel)(P...),
                                    A &&...args) {
    bool pdl = false;
    for (unsigned i = 0; i < config->numAttrs; i++)
        if (config->attrs[i].id == cudaLaunchAttributeProgrammaticStreamSerialization)
            pdl = config->attrs[i].val.programmaticStreamSerializationAllowed != 0;
    return launch(name, config->gridDim, config->blockDim, config->dynamicSmemBytes, config->stream, pdl, kernel,
                  std::forward<A>(args)...);
}
} // namespace trn_emu

#endif
