/* emulator.cpp: the CUDA emulator's engine (the model and its checks are described in include/cuda_runtime.h).
 *  - fibers: a stack per thread of a block and an x86-64 context switch (six callee-saved registers and the stack
 *    pointer); a block's threads run in rounds until each waits at a barrier or a warp collective, which are then
 *    resolved together;
 *  - memory: device and pinned host allocations in one registry, so launches and copies can check their pointers;
 *    device memory starts filled with 0xff bytes (NaN as floats), as unwritten device memory holds no zeros;
 *  - streams, events and CUDA Graphs: work runs when it is issued, or is recorded while its stream is captured and
 *    runs at each launch of the instantiated graph;
 *  - the cuBLAS calls of include/cublas_v2.h as loops. */
#include "cuda_runtime.h"
#include "cublas_v2.h"

#include <sys/mman.h>
#include <time.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#if !defined(__x86_64__)
#error "the CUDA emulator's context switch is written for x86-64"
#endif

/* trn_emu_switch(save, load): saves the callee-saved registers on this stack and its pointer in *save, then
 * continues on the stack `load` (one saved the same way, or prepared by start_fiber). */
extern "C" void trn_emu_switch(void **save, void *load);
asm(R"(
    .text
    .globl trn_emu_switch
    .type trn_emu_switch, @function
trn_emu_switch:
    pushq %rbp
    pushq %rbx
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, (%rdi)
    movq %rsi, %rsp
    popq %r15
    popq %r14
    popq %r13
    popq %r12
    popq %rbx
    popq %rbp
    ret
    .size trn_emu_switch, .-trn_emu_switch
    .section .note.GNU-stack,"",@progbits
    .text
)");

uint3 threadIdx = {0, 0, 0}, blockIdx = {0, 0, 0};
dim3 blockDim, gridDim;

namespace trn_emu {

namespace {

/* ---- reporting ---- */
const char *g_kernel = "";      /* the kernel running */
const uint3 *g_named = nullptr; /* the thread a report names */
[[noreturn]] void fail(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cuda emulator: kernel %s, block (%u,%u,%u)", g_kernel, blockIdx.x, blockIdx.y, blockIdx.z);
    if (g_named)
        fprintf(stderr, ", thread (%u,%u,%u)", g_named->x, g_named->y, g_named->z);
    fprintf(stderr, ": ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    abort();
}
[[noreturn]] void fail_host(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "cuda emulator: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    fflush(stderr);
    abort();
}

/* ---- fibers ---- */
enum fiber_state { RUNNABLE, AT_BARRIER, AT_WARP, DONE };
enum { OP_MMA = 100 };
constexpr size_t kStackBytes = 512 * 1024;
constexpr int kMaxThreads = 1024;

struct fiber {
    uint3 tid;
    unsigned linear = 0; /* threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z) */
    void *sp = nullptr;
    char *stack = nullptr; /* mapped with a guard page below it */
    fiber_state state = DONE;
    /* the collective or barrier it waits at */
    int op = 0;
    unsigned mask = 0;
    uint64_t value = 0, result = 0;
    int arg = 0, width = 32;
    /* mma: the lane's fragments */
    const uint32_t *mma_a = nullptr, *mma_b = nullptr;
    int32_t *mma_d = nullptr;
};

fiber g_fibers[kMaxThreads];
int g_threads = 0;                /* threads of the block running */
int g_done = 0;                   /* of them exited */
int g_at_barrier = 0;             /* of them waiting at __syncthreads */
unsigned g_warp_waiting[kMaxThreads / 32]; /* per warp: the lanes waiting at a collective */
unsigned g_warp_exited[kMaxThreads / 32];  /* per warp: the lanes that have exited */
fiber *g_current = nullptr;
void *g_scheduler_sp = nullptr;
void (*g_run)(void *) = nullptr; /* the kernel call every thread makes */
void *g_closure = nullptr;
std::vector<unsigned char> g_dynamic_shared;

void check_exit(fiber *f);
void yield_to_scheduler();

void fiber_entry() {
    g_run(g_closure);
    g_current->state = DONE;
    g_done++;
    g_warp_exited[g_current->linear / 32] |= 1u << (g_current->linear & 31u);
    check_exit(g_current);
    yield_to_scheduler();
    abort(); /* never resumed */
}

void start_fiber(fiber *f) {
    if (!f->stack) {
        const size_t page = 4096;
        void *m = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m == MAP_FAILED)
            fail_host("out of memory for thread stacks");
        mprotect(m, page, PROT_NONE); /* a stack overflow faults instead of writing over the next stack */
        f->stack = static_cast<char *>(m) + page;
    }
    const uintptr_t top = ((uintptr_t)(f->stack + kStackBytes)) & ~(uintptr_t)15;
    void **sp = reinterpret_cast<void **>(top - 64);
    for (int i = 0; i < 6; i++)
        sp[i] = nullptr;                            /* r15 r14 r13 r12 rbx rbp */
    sp[6] = reinterpret_cast<void *>(&fiber_entry); /* returned to by trn_emu_switch */
    sp[7] = nullptr;                                /* fiber_entry's return address: it never returns */
    f->sp = sp;
    f->state = RUNNABLE;
}

fiber *next_in_round();
void enter(fiber *f);
/* The running thread waits: the next runnable thread of the round runs, or the scheduler starts a new round. */
void yield_to_scheduler() {
    fiber *self = g_current;
    if (fiber *next = next_in_round()) {
        enter(next);
        trn_emu_switch(&self->sp, next->sp);
    } else {
        trn_emu_switch(&self->sp, g_scheduler_sp);
    }
    g_current = self; /* resumed by the scheduler or by another thread, which set these already */
}

/* ---- the order threads run in ---- */
enum order_kind { ORDER_ROTATE, ORDER_SHUFFLE, ORDER_FORWARD, ORDER_REVERSE };
order_kind g_order = ORDER_ROTATE;
uint64_t g_rng = 0x2545F4914F6CDD1Dull;
uint64_t next_random() {
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return g_rng;
}

void read_settings() {
    static bool done = false;
    if (done)
        return;
    done = true;
    if (const char *o = getenv("TRN_CUDA_EMU_ORDER")) {
        if (!strcmp(o, "forward"))
            g_order = ORDER_FORWARD;
        else if (!strcmp(o, "reverse"))
            g_order = ORDER_REVERSE;
        else if (!strcmp(o, "shuffle"))
            g_order = ORDER_SHUFFLE;
        else if (strcmp(o, "rotate") != 0)
            fail_host("TRN_CUDA_EMU_ORDER=%s: expected rotate, shuffle, forward or reverse", o);
    }
    if (const char *s = getenv("TRN_CUDA_EMU_SEED"))
        g_rng = strtoull(s, nullptr, 0) | 1;
}

const char *op_name(int op) {
    switch (op) {
    case OP_SHFL_IDX: return "__shfl_sync";
    case OP_SHFL_UP: return "__shfl_up_sync";
    case OP_SHFL_DOWN: return "__shfl_down_sync";
    case OP_SHFL_XOR: return "__shfl_xor_sync";
    case OP_BALLOT: return "__ballot_sync";
    case OP_SYNCWARP: return "__syncwarp";
    case OP_MMA: return "mma.sync";
    default: return "?";
    }
}

/* The source lane of lane `lane`'s shuffle, or -1 where it reads its own value. */
int shuffle_source(const fiber &f, int lane) {
    const int w = f.width, base = lane & ~(w - 1);
    switch (f.op) {
    case OP_SHFL_IDX: return base + (f.arg & (w - 1));
    case OP_SHFL_UP: return (lane - base) >= f.arg ? lane - f.arg : -1;
    case OP_SHFL_DOWN: return (lane - base) + f.arg < w ? lane + f.arg : -1;
    case OP_SHFL_XOR: {
        const int src = lane ^ f.arg;
        return src >= base + w ? -1 : src;
    }
    default: return -1;
    }
}

void resolve_mma(fiber *lanes) {
    int8_t A[16][32], B[32][8];
    int32_t C[16][8];
    for (int lane = 0; lane < 32; lane++) {
        const int g = lane >> 2, t = lane & 3;
        const fiber &f = lanes[lane];
        for (int j = 0; j < 4; j++) {
            A[g][4 * t + j] = (int8_t)(f.mma_a[0] >> (8 * j));
            A[g + 8][4 * t + j] = (int8_t)(f.mma_a[1] >> (8 * j));
            A[g][16 + 4 * t + j] = (int8_t)(f.mma_a[2] >> (8 * j));
            A[g + 8][16 + 4 * t + j] = (int8_t)(f.mma_a[3] >> (8 * j));
            B[4 * t + j][g] = (int8_t)(f.mma_b[0] >> (8 * j));
            B[16 + 4 * t + j][g] = (int8_t)(f.mma_b[1] >> (8 * j));
        }
        C[g][2 * t] = f.mma_d[0];
        C[g][2 * t + 1] = f.mma_d[1];
        C[g + 8][2 * t] = f.mma_d[2];
        C[g + 8][2 * t + 1] = f.mma_d[3];
    }
    for (int i = 0; i < 16; i++)
        for (int n = 0; n < 8; n++) {
            uint32_t s = (uint32_t)C[i][n]; /* wraps, as the s32 accumulator does */
            for (int k = 0; k < 32; k++)
                s += (uint32_t)((int32_t)A[i][k] * (int32_t)B[k][n]);
            C[i][n] = (int32_t)s;
        }
    for (int lane = 0; lane < 32; lane++) {
        const int g = lane >> 2, t = lane & 3;
        int32_t *d = lanes[lane].mma_d;
        d[0] = C[g][2 * t];
        d[1] = C[g][2 * t + 1];
        d[2] = C[g + 8][2 * t];
        d[3] = C[g + 8][2 * t + 1];
    }
}

/* Lane f has arrived at a collective: completes it where every lane of its mask is there (returns true: the lanes
 * are runnable again, f included), or reports a mask that cannot complete. */
bool try_complete_collective(fiber *f) {
    const int w0 = (int)(f->linear & ~31u), n_lanes = g_threads - w0 < 32 ? g_threads - w0 : 32;
    fiber *lanes = &g_fibers[w0];
    const unsigned mask = f->mask;
    if (n_lanes < 32 && (mask >> n_lanes) != 0)
        fail("%s with mask 0x%08x names lanes this block (%d threads) does not have", op_name(f->op), mask, g_threads);
    unsigned &waiting = g_warp_waiting[w0 / 32];
    waiting |= 1u << (f->linear & 31u);
    if (const unsigned exited = g_warp_exited[w0 / 32] & mask)
        fail("%s with mask 0x%08x: lane %d of the mask has exited", op_name(f->op), mask, __builtin_ctz(exited));
    if ((waiting & mask) != mask)
        return false;
    for (int m = 0; m < 32; m++) {
        if (!(mask >> m & 1u))
            continue;
        const fiber &o = lanes[m];
        if (o.mask != mask || o.op != f->op)
            fail("lanes of one warp meet at different collectives: lane %u at %s (mask 0x%08x), lane %d at %s (mask "
                 "0x%08x)", f->linear & 31u, op_name(f->op), mask, m, op_name(o.op), o.mask);
        if (o.width != f->width)
            fail("%s: lanes %u and %d give different widths (%d, %d)", op_name(f->op), f->linear & 31u, m, f->width,
                 o.width);
    }
    if (f->op == OP_MMA) {
        if (mask != 0xffffffffu)
            fail("mma.sync needs all 32 lanes of the warp");
        resolve_mma(lanes);
    } else if (f->op == OP_BALLOT) {
        unsigned bits = 0;
        for (int m = 0; m < 32; m++)
            if ((mask >> m & 1u) && lanes[m].value)
                bits |= 1u << m;
        for (int m = 0; m < 32; m++)
            if (mask >> m & 1u)
                lanes[m].result = bits;
    } else if (f->op != OP_SYNCWARP) {
        for (int m = 0; m < 32; m++) {
            if (!(mask >> m & 1u))
                continue;
            const int src = shuffle_source(lanes[m], m);
            if (src >= 0 && !(mask >> src & 1u)) {
                g_named = &lanes[m].tid;
                fail("%s with mask 0x%08x reads lane %d, which is outside the mask", op_name(f->op), mask, src);
            }
            lanes[m].result = src >= 0 ? lanes[src].value : lanes[m].value;
        }
    }
    for (int m = 0; m < 32; m++)
        if (mask >> m & 1u)
            lanes[m].state = RUNNABLE;
    waiting &= ~mask;
    return true;
}

/* Thread f has arrived at __syncthreads: releases the block where every thread is there (returns true). */
bool try_release_barrier() {
    if (g_at_barrier + g_done < g_threads)
        return false;
    if (g_done)
        fail("__syncthreads reached by %d threads while %d of the block's %d have exited", g_at_barrier, g_done,
             g_threads);
    int count = 0;
    for (int i = 0; i < g_threads; i++)
        count += g_fibers[i].value != 0;
    for (int i = 0; i < g_threads; i++) {
        fiber &f = g_fibers[i];
        switch (f.op) {
        case BAR_COUNT: f.result = (uint64_t)count; break;
        case BAR_AND: f.result = count == g_threads; break;
        case BAR_OR: f.result = count > 0; break;
        default: f.result = 0;
        }
        f.state = RUNNABLE;
    }
    g_at_barrier = 0;
    return true;
}

/* A thread exited: a collective or barrier that waits for it can never complete. */
void check_exit(fiber *f) {
    const int w0 = (int)(f->linear & ~31u);
    const unsigned waiting = g_warp_waiting[w0 / 32], bit = 1u << (f->linear & 31u);
    for (int m = 0; m < 32; m++)
        if ((waiting >> m & 1u) && (g_fibers[w0 + m].mask & bit)) {
            g_named = &g_fibers[w0 + m].tid;
            fail("waits at %s (mask 0x%08x) for lane %u, which has exited", op_name(g_fibers[w0 + m].op),
                 g_fibers[w0 + m].mask, f->linear & 31u);
        }
    if (g_at_barrier && g_at_barrier + g_done == g_threads)
        fail("__syncthreads reached by %d threads while %d of the block's %d have exited", g_at_barrier, g_done,
             g_threads);
}

[[noreturn]] void report_deadlock() {
    for (int i = 0; i < g_threads; i++)
        if (g_fibers[i].state == AT_WARP) {
            g_named = &g_fibers[i].tid;
            fail("deadlock: waits at %s (mask 0x%08x) while %d threads wait at __syncthreads and %d have exited",
                 op_name(g_fibers[i].op), g_fibers[i].mask, g_at_barrier, g_done);
        }
    fail("deadlock: %d threads wait at __syncthreads, %d have exited", g_at_barrier, g_done);
}

/* The round in progress: threads are visited in g_order_of, from g_round_start by g_round_step (mod threads). */
std::vector<int> g_order_of;
int g_round_start = 0, g_round_step = 1, g_round_idx = 0, g_round_left = 0;
bool g_round_ran = false;

/* The next runnable thread of this round, or nullptr where the round is over. */
fiber *next_in_round() {
    while (g_round_left > 0) {
        fiber *f = &g_fibers[g_order_of[(size_t)g_round_idx]];
        g_round_idx += g_round_step;
        if (g_round_idx >= g_threads)
            g_round_idx -= g_threads;
        g_round_left--;
        if (f->state == RUNNABLE)
            return f;
    }
    return nullptr;
}

void enter(fiber *f) {
    g_current = f;
    g_named = &f->tid;
    threadIdx = f->tid;
    g_round_ran = true;
}

void run_block() {
    for (int i = 0; i < g_threads; i++) {
        fiber &f = g_fibers[i];
        f.tid = {i % blockDim.x, i / blockDim.x % blockDim.y, i / (blockDim.x * blockDim.y)};
        f.linear = (unsigned)i;
        start_fiber(&f);
    }
    memset(g_warp_waiting, 0, sizeof(g_warp_waiting));
    memset(g_warp_exited, 0, sizeof(g_warp_exited));
    g_done = 0;
    g_at_barrier = 0;
    g_order_of.resize((size_t)g_threads);
    for (int i = 0; i < g_threads; i++)
        g_order_of[(size_t)i] = g_order == ORDER_REVERSE ? g_threads - 1 - i : i;
    while (g_done < g_threads) {
        /* rotate: each round starts at a random thread and goes either way round; shuffle: a random permutation */
        g_round_start = 0;
        g_round_step = 1;
        if (g_order == ORDER_ROTATE) {
            const uint64_t r = next_random();
            g_round_start = (int)(r % (uint64_t)g_threads);
            g_round_step = (r >> 32) & 1 ? 1 : g_threads - 1;
        } else if (g_order == ORDER_SHUFFLE) {
            for (int i = g_threads - 1; i > 0; i--)
                std::swap(g_order_of[(size_t)i], g_order_of[(size_t)(next_random() % (uint64_t)(i + 1))]);
        }
        g_round_left = g_threads;
        g_round_idx = g_round_start;
        g_round_ran = false;
        if (fiber *f = next_in_round()) {
            enter(f);
            trn_emu_switch(&g_scheduler_sp, f->sp); /* back here when the round has no runnable thread left */
        }
        g_current = nullptr;
        g_named = nullptr;
        if (!g_round_ran)
            report_deadlock();
    }
}

std::recursive_mutex g_lock; /* one kernel (and one registry change) at a time */

/* ---- memory registry ---- */
enum memory_kind { DEVICE_MEMORY, PINNED_HOST };
struct allocation {
    size_t bytes;
    memory_kind kind;
};
std::map<uintptr_t, allocation> g_memory;
size_t g_device_bytes = 0;
constexpr size_t kDeviceMemory = (size_t)16 << 30; /* what cudaMemGetInfo reports as the emulated device's total */

/* The allocation holding [p, p + bytes), or nullptr. */
const allocation *find_allocation(const void *p, size_t bytes) {
    const uintptr_t a = (uintptr_t)p;
    auto it = g_memory.upper_bound(a);
    if (it == g_memory.begin())
        return nullptr;
    --it;
    if (a + bytes > it->first + it->second.bytes)
        return nullptr;
    return &it->second;
}

void *allocate(size_t bytes, memory_kind kind) {
    void *p = nullptr; /* exactly `bytes`, so that AddressSanitizer (TRN_SANITIZE) sees a read past the end */
    if (posix_memalign(&p, 256, bytes ? bytes : 1) != 0)
        return nullptr;
    if (kind == DEVICE_MEMORY)
        memset(p, 0xff, bytes); /* unwritten device memory is not zero */
    std::lock_guard<std::recursive_mutex> lock(g_lock);
    g_memory[(uintptr_t)p] = {bytes, kind};
    if (kind == DEVICE_MEMORY)
        g_device_bytes += bytes;
    return p;
}

cudaError_t release(void *p, memory_kind kind) {
    if (!p)
        return cudaSuccess;
    std::lock_guard<std::recursive_mutex> lock(g_lock);
    auto it = g_memory.find((uintptr_t)p);
    if (it == g_memory.end() || it->second.kind != kind)
        return cudaErrorInvalidValue;
    if (kind == DEVICE_MEMORY)
        g_device_bytes -= it->second.bytes;
    g_memory.erase(it);
    free(p);
    return cudaSuccess;
}

/* ---- errors ---- */
thread_local cudaError_t g_last_error = cudaSuccess;
cudaError_t note_error(cudaError_t e) {
    if (e != cudaSuccess)
        g_last_error = e;
    return e;
}

/* ---- streams, events, graphs ---- */
using work = std::function<void()>;
} // namespace
} // namespace trn_emu

struct trn_emu_graph {
    std::vector<std::shared_ptr<trn_emu::work>> nodes; /* in issue order, which respects every dependency */
    std::vector<CUstream_st *> joined;                 /* streams drawn into the capture by an event */
};
struct trn_emu_graph_exec {
    std::vector<std::shared_ptr<trn_emu::work>> nodes;
};
struct CUstream_st {
    bool capturing = false;
    trn_emu_graph *graph = nullptr;
};
struct trn_emu_event {
    double ms = 0;
    bool recorded = false;
    trn_emu_graph *captured_in = nullptr; /* recorded on a capturing stream: a stream that waits for it joins */
};
struct trn_emu_cublas {
    cudaStream_t stream = nullptr;
};

namespace trn_emu {
namespace {

double now_ms() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e3 + (double)t.tv_nsec * 1e-6;
}

/* Runs `w` now, or records it in the graph being captured on `stream`. */
void submit(cudaStream_t stream, work w) {
    if (stream && stream->capturing) {
        stream->graph->nodes.push_back(std::make_shared<work>(std::move(w)));
        return;
    }
    std::lock_guard<std::recursive_mutex> lock(g_lock);
    w();
}

std::map<const void *, int> g_max_dynamic_shared; /* cudaFuncSetAttribute's opt-ins */

cudaError_t check_copy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, const char *call) {
    if (bytes == 0)
        return cudaSuccess;
    std::lock_guard<std::recursive_mutex> lock(g_lock);
    const allocation *d = find_allocation(dst, bytes), *s = find_allocation(src, bytes);
    const bool dst_device = d && d->kind == DEVICE_MEMORY, src_device = s && s->kind == DEVICE_MEMORY;
    bool ok = true;
    switch (kind) {
    case cudaMemcpyHostToDevice: ok = dst_device && !src_device; break;
    case cudaMemcpyDeviceToHost: ok = src_device && !dst_device; break;
    case cudaMemcpyDeviceToDevice: ok = (dst_device || d) && (src_device || s); break;
    case cudaMemcpyHostToHost: ok = !dst_device && !src_device; break;
    case cudaMemcpyDefault: ok = true; break;
    default: return cudaErrorInvalidMemcpyDirection;
    }
    if (!ok)
        fail_host("%s of %zu bytes, kind %d: destination %p is %s, source %p is %s", call, bytes, (int)kind, dst,
                  dst_device ? "device memory" : d ? "pinned host memory" : "not device memory", src,
                  src_device ? "device memory" : s ? "pinned host memory" : "not device memory");
    return cudaSuccess;
}

} // namespace

/* ---- the device side ---- */
/* A thread reaches a collective: it goes on at once where it completes it, else waits for the other lanes. */
static void arrive_at_collective(fiber *f) {
    f->state = AT_WARP;
    if (try_complete_collective(f)) {
        threadIdx = f->tid;
        return;
    }
    yield_to_scheduler();
}

uint64_t warp_collective(collective_op op, unsigned mask, uint64_t value, int arg, int width) {
    fiber *f = g_current;
    if (!f)
        fail_host("%s called outside a kernel", op_name(op));
    const int lane = (int)(f->linear & 31u);
    if (!(mask >> lane & 1u))
        fail("lane %d calls %s with mask 0x%08x, which leaves it out", lane, op_name(op), mask);
    if (width < 1 || width > 32 || (width & (width - 1)))
        fail("%s with width %d (a power of two up to 32 is needed)", op_name(op), width);
    f->op = op;
    f->mask = mask;
    f->value = value;
    f->arg = arg;
    f->width = op == OP_BALLOT || op == OP_SYNCWARP ? 32 : width;
    arrive_at_collective(f);
    return f->result;
}

void mma_m16n8k32_s8(int32_t d[4], const uint32_t a[4], const uint32_t b[2]) {
    fiber *f = g_current;
    if (!f)
        fail_host("mma.sync called outside a kernel");
    f->op = OP_MMA;
    f->mask = 0xffffffffu;
    f->width = 32;
    f->mma_a = a;
    f->mma_b = b;
    f->mma_d = d;
    arrive_at_collective(f);
}

int block_barrier(barrier_op op, int predicate) {
    fiber *f = g_current;
    if (!f)
        fail_host("__syncthreads called outside a kernel");
    f->op = op;
    f->value = (uint64_t)predicate;
    f->state = AT_BARRIER;
    g_at_barrier++;
    if (try_release_barrier())
        threadIdx = f->tid;
    else
        yield_to_scheduler();
    return (int)f->result;
}

void trap(const char *what) { fail("%s", what); }

void *dynamic_shared() { return g_dynamic_shared.empty() ? nullptr : g_dynamic_shared.data(); }

unsigned long long global_timer_ns() {
    timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (unsigned long long)t.tv_sec * 1000000000ull + (unsigned long long)t.tv_nsec;
}

void check_kernel_pointer(const char *name, int index, const void *p) {
    std::lock_guard<std::recursive_mutex> lock(g_lock);
    if (!find_allocation(p, 0))
        fail_host("kernel %s: argument %d (%p) points neither into device memory nor into pinned host memory", name,
                  index, p);
}

cudaError_t enqueue_kernel(const char *name, const void *kernel, dim3 grid, dim3 block, size_t smem,
                           cudaStream_t stream, void (*run)(void *), void *closure, void (*free_closure)(void *)) {
    const uint64_t threads = (uint64_t)block.x * block.y * block.z;
    if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.y > 65535 || grid.z > 65535 || threads == 0 ||
        threads > kMaxThreads || block.z > 64) {
        free_closure(closure);
        return note_error(cudaErrorInvalidConfiguration);
    }
    {
        std::lock_guard<std::recursive_mutex> lock(g_lock);
        auto opt_in = g_max_dynamic_shared.find(kernel);
        const size_t limit = opt_in != g_max_dynamic_shared.end() ? (size_t)opt_in->second : 48 * 1024;
        if (smem > limit) { /* as on the GPU: over 48 KB only after cudaFuncSetAttribute */
            free_closure(closure);
            return note_error(cudaErrorInvalidValue);
        }
    }
    std::shared_ptr<void> owned(closure, free_closure);
    submit(stream, [=]() {
        std::lock_guard<std::recursive_mutex> lock(g_lock);
        read_settings();
        g_kernel = name;
        gridDim = grid;
        blockDim = block;
        g_threads = (int)threads;
        g_run = run;
        g_closure = owned.get();
        for (unsigned z = 0; z < grid.z; z++)
            for (unsigned y = 0; y < grid.y; y++)
                for (unsigned x = 0; x < grid.x; x++) {
                    blockIdx = {x, y, z};
                    g_dynamic_shared.assign(smem, 0xff);
                    run_block();
                }
        blockIdx = {0, 0, 0};
        g_kernel = "";
    });
    return cudaSuccess;
}

float half_bits_to_float(unsigned short h) {
    const uint32_t sign = (uint32_t)(h >> 15) << 31, e = (h >> 10) & 31u, m = h & 1023u;
    uint32_t bits;
    if (e == 31)
        bits = sign | 0x7f800000u | (m << 13);
    else if (e != 0)
        bits = sign | ((e + 112) << 23) | (m << 13);
    else if (m == 0)
        bits = sign;
    else {
        int shift = 0;
        uint32_t mm = m;
        while (!(mm & 1024u)) {
            mm <<= 1;
            shift++;
        }
        bits = sign | ((uint32_t)(113 - shift) << 23) | ((mm & 1023u) << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

unsigned short float_to_half_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    const uint32_t sign = (x >> 16) & 0x8000u;
    const uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) /* inf or NaN */
        return (unsigned short)(sign | 0x7c00u | (ax > 0x7f800000u ? 0x200u : 0u));
    if (ax >= 0x477ff000u) /* rounds to at least 65536: inf */
        return (unsigned short)(sign | 0x7c00u);
    if (ax < 0x38800000u) { /* below the smallest normal half: a subnormal, rounded to nearest even */
        const float a = fabsf(f) * 16777216.0f; /* in units of 2^-24, exact */
        const uint32_t r = (uint32_t)lrintf(a);
        return (unsigned short)(sign | r);
    }
    const uint32_t e = (ax >> 23) - 112, m = ax & 0x7fffffu;
    uint32_t h = (e << 10) | (m >> 13);
    const uint32_t rest = m & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++;
    return (unsigned short)(sign | h);
}

unsigned short float_to_bf16_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u)
        return (unsigned short)((x >> 16) | 0x40u);
    x += 0x7fffu + ((x >> 16) & 1u);
    return (unsigned short)(x >> 16);
}

} // namespace trn_emu

using namespace trn_emu;

/* ---- the runtime API ---- */
const char *cudaGetErrorString(cudaError_t err) {
    switch (err) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorInvalidDevicePointer: return "invalid device pointer";
    case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
    case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
    case cudaErrorNoDevice: return "no CUDA-capable device is detected";
    case cudaErrorInvalidResourceHandle: return "invalid resource handle";
    case cudaErrorMisalignedAddress: return "misaligned address";
    case cudaErrorNotSupported: return "operation not supported";
    default: return "unknown error";
    }
}
const char *cudaGetErrorName(cudaError_t err) { return cudaGetErrorString(err); }
cudaError_t cudaGetLastError() {
    const cudaError_t e = g_last_error;
    g_last_error = cudaSuccess;
    return e;
}
cudaError_t cudaPeekAtLastError() { return g_last_error; }

static int emulated_sms() {
    const char *s = getenv("TRN_CUDA_EMU_SMS");
    const int n = s ? atoi(s) : 0;
    return n > 0 && n <= 256 ? n : 4;
}
cudaError_t cudaGetDeviceCount(int *count) { *count = 1; return cudaSuccess; }
cudaError_t cudaGetDevice(int *device) { *device = 0; return cudaSuccess; }
cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : note_error(cudaErrorInvalidDevice); }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device) {
    if (device != 0)
        return note_error(cudaErrorInvalidDevice);
    memset(prop, 0, sizeof(*prop));
    snprintf(prop->name, sizeof(prop->name), "CUDA emulator (CPU, sm_90 rules)");
    prop->totalGlobalMem = kDeviceMemory;
    prop->sharedMemPerBlock = 48 * 1024;
    prop->sharedMemPerBlockOptin = 227 * 1024;
    prop->l2CacheSize = 50 << 20;
    prop->major = 9;
    prop->minor = 0;
    prop->multiProcessorCount = emulated_sms();
    prop->warpSize = 32;
    prop->maxThreadsPerBlock = 1024;
    prop->maxThreadsPerMultiProcessor = 2048;
    prop->regsPerBlock = 65536;
    prop->clockRate = 1000000;
    prop->memoryClockRate = 1000000;
    prop->memoryBusWidth = 1024;
    return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
    if (device != 0)
        return note_error(cudaErrorInvalidDevice);
    switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = emulated_sms(); return cudaSuccess;
    case cudaDevAttrComputeCapabilityMajor: *value = 9; return cudaSuccess;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; return cudaSuccess;
    }
    return note_error(cudaErrorInvalidValue);
}
cudaError_t cudaDriverGetVersion(int *version) { *version = CUDART_VERSION; return cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int *version) { *version = CUDART_VERSION; return cudaSuccess; }
cudaError_t cudaDeviceSynchronize() { return cudaSuccess; }
cudaError_t cudaDeviceReset() { return cudaSuccess; }
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    std::lock_guard<std::recursive_mutex> lock(g_lock);
    *total_bytes = kDeviceMemory;
    *free_bytes = kDeviceMemory > g_device_bytes ? kDeviceMemory - g_device_bytes : 0;
    return cudaSuccess;
}

cudaError_t cudaMalloc(void **p, size_t bytes) {
    *p = nullptr;
    if (bytes == 0)
        return cudaSuccess;
    {
        std::lock_guard<std::recursive_mutex> lock(g_lock);
        if (bytes > kDeviceMemory - g_device_bytes)
            return note_error(cudaErrorMemoryAllocation);
    }
    *p = allocate(bytes, DEVICE_MEMORY);
    return *p ? cudaSuccess : note_error(cudaErrorMemoryAllocation);
}
cudaError_t cudaFree(void *p) { return note_error(release(p, DEVICE_MEMORY)); }
cudaError_t cudaMallocHost(void **p, size_t bytes) {
    *p = allocate(bytes ? bytes : 1, PINNED_HOST);
    return *p ? cudaSuccess : note_error(cudaErrorMemoryAllocation);
}
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned) { return cudaMallocHost(p, bytes); }
cudaError_t cudaFreeHost(void *p) { return note_error(release(p, PINNED_HOST)); }
cudaError_t cudaHostGetDevicePointer(void **device, void *host, unsigned) {
    std::lock_guard<std::recursive_mutex> lock(g_lock);
    const allocation *a = find_allocation(host, 0);
    if (!a || a->kind != PINNED_HOST)
        return note_error(cudaErrorInvalidValue);
    *device = host;
    return cudaSuccess;
}
cudaError_t cudaMemcpy(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind) {
    const cudaError_t e = check_copy(dst, src, bytes, kind, "cudaMemcpy");
    if (e != cudaSuccess)
        return note_error(e);
    std::lock_guard<std::recursive_mutex> lock(g_lock);
    if (bytes)
        memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
    const cudaError_t e = check_copy(dst, src, bytes, kind, "cudaMemcpyAsync");
    if (e != cudaSuccess)
        return note_error(e);
    submit(stream, [=]() {
        if (bytes)
            memmove(dst, src, bytes);
    });
    return cudaSuccess;
}
cudaError_t cudaMemset(void *dst, int value, size_t bytes) { return cudaMemsetAsync(dst, value, bytes, nullptr); }
cudaError_t cudaMemsetAsync(void *dst, int value, size_t bytes, cudaStream_t stream) {
    {
        std::lock_guard<std::recursive_mutex> lock(g_lock);
        const allocation *a = find_allocation(dst, bytes);
        if (bytes && (!a || a->kind != DEVICE_MEMORY))
            fail_host("cudaMemset of %zu bytes at %p: not device memory", bytes, dst);
    }
    submit(stream, [=]() { memset(dst, value, bytes); });
    return cudaSuccess;
}

cudaError_t cudaStreamCreate(cudaStream_t *s) { *s = new CUstream_st(); return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { return cudaStreamCreate(s); }
cudaError_t cudaStreamDestroy(cudaStream_t s) {
    if (s && s->capturing)
        delete s->graph;
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    return s && s->capturing ? note_error(cudaErrorStreamCaptureUnsupported) : cudaSuccess;
}
/* Work runs in issue order, so a wait orders nothing; but as in CUDA, a stream that waits for an event recorded
 * during a capture joins that capture (its work is recorded, not run) until the capture ends. */
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
    if (s && e->captured_in && !s->capturing) {
        s->capturing = true;
        s->graph = e->captured_in;
        e->captured_in->joined.push_back(s);
    }
    return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
    if (!s || s->capturing)
        return note_error(cudaErrorStreamCaptureUnsupported);
    s->capturing = true;
    s->graph = new trn_emu_graph();
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
    if (!s || !s->capturing)
        return note_error(cudaErrorInvalidValue);
    *graph = s->graph;
    for (CUstream_st *joined : s->graph->joined) {
        joined->capturing = false;
        joined->graph = nullptr;
    }
    s->graph->joined.clear();
    s->graph = nullptr;
    s->capturing = false;
    return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus *status) {
    *status = s && s->capturing ? cudaStreamCaptureStatusActive : cudaStreamCaptureStatusNone;
    return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t *e) { *e = new trn_emu_event(); return cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) { return cudaEventCreate(e); }
cudaError_t cudaEventDestroy(cudaEvent_t e) { delete e; return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) { return cudaEventRecordWithFlags(e, s, 0); }
cudaError_t cudaEventRecordWithFlags(cudaEvent_t e, cudaStream_t s, unsigned) {
    e->captured_in = s && s->capturing ? s->graph : nullptr;
    submit(s, [e]() {
        e->ms = now_ms();
        e->recorded = true;
    });
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventQuery(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    if (!start->recorded || !end->recorded)
        return note_error(cudaErrorInvalidResourceHandle);
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long) {
    *exec = new trn_emu_graph_exec{graph->nodes};
    return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
    for (const auto &node : exec->nodes)
        submit(s, *node);
    return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) { delete graph; return cudaSuccess; }
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) { delete exec; return cudaSuccess; }
cudaError_t cudaProfilerStart() { return cudaSuccess; }
cudaError_t cudaProfilerStop() { return cudaSuccess; }
cudaError_t cudaFuncGetAttributes(cudaFuncAttributes *attr, const void *) {
    memset(attr, 0, sizeof(*attr));
    attr->maxThreadsPerBlock = 1024;
    attr->ptxVersion = 90;
    attr->binaryVersion = 90;
    return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value) {
    if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize)
        g_max_dynamic_shared[func] = value;
    return cudaSuccess;
}

/* ---- cuBLAS ---- */
static double element(const void *base, cudaDataType type, size_t i) {
    switch (type) {
    case CUDA_R_32F: return static_cast<const float *>(base)[i];
    case CUDA_R_16F: return half_bits_to_float(static_cast<const unsigned short *>(base)[i]);
    case CUDA_R_16BF: return __bfloat162float({static_cast<const unsigned short *>(base)[i]});
    }
    return NAN;
}
cublasStatus_t cublasCreate_v2(cublasHandle_t *handle) { *handle = new trn_emu_cublas(); return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) { delete handle; return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t stream) {
    handle->stream = stream;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasSgemv_v2(cublasHandle_t handle, cublasOperation_t trans, int m, int n, const float *alpha,
                              const float *A, int lda, const float *x, int incx, const float *beta, float *y,
                              int incy) {
    if (m < 0 || n < 0 || lda < (m > 1 ? m : 1) || incx == 0 || incy == 0)
        return CUBLAS_STATUS_INVALID_VALUE;
    const float a = *alpha, b = *beta;
    submit(handle->stream, [=]() {
        const int out = trans == CUBLAS_OP_N ? m : n, in = trans == CUBLAS_OP_N ? n : m;
        for (int i = 0; i < out; i++) {
            double s = 0;
            for (int j = 0; j < in; j++) {
                const size_t idx = trans == CUBLAS_OP_N ? (size_t)i + (size_t)j * lda : (size_t)j + (size_t)i * lda;
                s += (double)A[idx] * x[(size_t)j * incx];
            }
            float &yi = y[(size_t)i * incy];
            yi = (float)(a * s + (b != 0 ? (double)b * yi : 0.0));
        }
    });
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t cublasGemmEx(cublasHandle_t handle, cublasOperation_t transa, cublasOperation_t transb, int m, int n,
                            int k, const void *alpha, const void *A, cudaDataType Atype, int lda, const void *B,
                            cudaDataType Btype, int ldb, const void *beta, void *C, cudaDataType Ctype, int ldc,
                            cublasComputeType_t, cublasGemmAlgo_t) {
    if (Ctype != CUDA_R_32F || m < 0 || n < 0 || k < 0 || ldc < m)
        return CUBLAS_STATUS_NOT_SUPPORTED;
    const float a = *static_cast<const float *>(alpha), b = *static_cast<const float *>(beta);
    submit(handle->stream, [=]() {
        float *c = static_cast<float *>(C);
        for (int j = 0; j < n; j++)
            for (int i = 0; i < m; i++) {
                double s = 0;
                for (int p = 0; p < k; p++) {
                    const size_t ia = transa == CUBLAS_OP_N ? (size_t)i + (size_t)p * lda : (size_t)p + (size_t)i * lda;
                    const size_t ib = transb == CUBLAS_OP_N ? (size_t)p + (size_t)j * ldb : (size_t)j + (size_t)p * ldb;
                    s += element(A, Atype, ia) * element(B, Btype, ib);
                }
                float &cij = c[(size_t)i + (size_t)j * ldc];
                cij = (float)(a * s + (b != 0 ? (double)b * cij : 0.0));
            }
    });
    return CUBLAS_STATUS_SUCCESS;
}
