/* emulator.cpp: the CUDA emulator's engine (the model and its checks are described in include/cuda_runtime.h).
 *  - fibers: a stack per thread of a block and an x86-64 context switch (six callee-saved registers and the stack
 *    pointer); a block's threads run in rounds until each waits at a barrier or a warp collective, which are then
 *    resolved together;
 *  - memory: device and pinned host allocations in one registry, so launches and copies can check their pointers;
 *    device memory starts filled with 0xff bytes (NaN as floats), as unwritten device memory holds no zeros;
 *  - streams, events and CUDA Graphs: work waits in its stream's queue until the host synchronizes (drain), or is
 *    recorded while its stream is captured (a node with its edges) and runs at each launch of the instantiated
 *    graph; either way with the streams ranked at random, a PDL launch's block ahead of the kernel before it
 *    (cudaGraphLaunch, run_grid);
 *  - the cuBLAS calls of include/cublas_v2.h as loops. */
#include "cuda_runtime.h"
#include "cublas_v2.h"

#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#if !defined(__x86_64__)
#error "the CUDA emulator's context switch is written for x86-64"
#endif
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define TRN_EMU_ASAN 1 /* AddressSanitizer is told of every stack switch (TRN_SANITIZE=address) */
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
enum fiber_state { RUNNABLE, AT_BARRIER, AT_WARP, AT_PDL_WAIT, DONE };
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
int g_at_pdl_wait = 0;            /* of them stopped at trn_pdl_wait() (the early phase of a PDL launch) */
bool g_pdl_early = false;         /* the block runs ahead of the kernel before it: trn_pdl_wait() stops a thread */
unsigned g_warp_waiting[kMaxThreads / 32]; /* per warp: the lanes waiting at a collective */
unsigned g_warp_exited[kMaxThreads / 32];  /* per warp: the lanes that have exited */
fiber *g_current = nullptr;
void *g_scheduler_sp = nullptr;
void (*g_run)(void *) = nullptr; /* the kernel call every thread makes */
void *g_closure = nullptr;
std::vector<unsigned char> g_dynamic_shared;

void check_exit(fiber *f);
void yield_to_scheduler(bool exiting = false);

/* trn_emu_switch from the running context (a fiber, or the scheduler on the thread's own stack) to the one saved at
 * `load`, which runs on fiber `to`'s stack, or on the thread's where `to` is null. `exiting`: the running fiber
 * never resumes. Under AddressSanitizer, each switch is announced, so that it tracks the stack in use. */
void switch_context(void **save, void *load, const fiber *to, bool exiting = false) {
#ifdef TRN_EMU_ASAN
    static void *thread_stack = nullptr;
    static size_t thread_stack_bytes = 0;
    if (!thread_stack) {
        pthread_attr_t attr;
        pthread_getattr_np(pthread_self(), &attr);
        pthread_attr_getstack(&attr, &thread_stack, &thread_stack_bytes);
        pthread_attr_destroy(&attr);
    }
    void *fake_stack = nullptr;
    __sanitizer_start_switch_fiber(exiting ? nullptr : &fake_stack, to ? to->stack : thread_stack,
                                   to ? kStackBytes : thread_stack_bytes);
    trn_emu_switch(save, load);
    __sanitizer_finish_switch_fiber(fake_stack, nullptr, nullptr);
#else
    (void)to, (void)exiting;
    trn_emu_switch(save, load);
#endif
}

void fiber_entry() {
#ifdef TRN_EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, nullptr, nullptr); /* the first switch to this fiber, completed */
#endif
    g_run(g_closure);
    g_current->state = DONE;
    g_done++;
    g_warp_exited[g_current->linear / 32] |= 1u << (g_current->linear & 31u);
    check_exit(g_current);
    yield_to_scheduler(true);
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
#ifdef TRN_EMU_ASAN
    /* the redzones of the frames an exited thread left behind (fiber_entry's, the switch's: the kernel's own frames
     * returned), at the top of the stack, where the next thread's frames go */
    constexpr size_t kTopBytes = 64 * 1024;
    ASAN_UNPOISON_MEMORY_REGION(f->stack + kStackBytes - kTopBytes, kTopBytes);
#endif
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
void yield_to_scheduler(bool exiting) {
    fiber *self = g_current;
    if (fiber *next = next_in_round()) {
        enter(next);
        switch_context(&self->sp, next->sp, next, exiting);
    } else {
        switch_context(&self->sp, g_scheduler_sp, nullptr, exiting);
    }
    g_current = self; /* resumed by the scheduler or by another thread, which set these already */
}

/* ---- the order threads run in ---- */
enum order_kind { ORDER_ROTATE, ORDER_SHUFFLE, ORDER_FORWARD, ORDER_REVERSE };
order_kind g_order = ORDER_ROTATE;
bool g_pdl_early_runs = true; /* TRN_CUDA_EMU_PDL: run a block of a PDL launch ahead of the kernel before it */
bool g_streams_random = true; /* TRN_CUDA_EMU_STREAMS: streams ahead of one another at random (else issue order) */
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
    if (const char *p = getenv("TRN_CUDA_EMU_PDL")) {
        if (!strcmp(p, "off"))
            g_pdl_early_runs = false;
        else if (strcmp(p, "early") != 0)
            fail_host("TRN_CUDA_EMU_PDL=%s: expected early or off", p);
    }
    if (const char *g = getenv("TRN_CUDA_EMU_STREAMS")) {
        if (!strcmp(g, "issue"))
            g_streams_random = false;
        else if (strcmp(g, "random") != 0)
            fail_host("TRN_CUDA_EMU_STREAMS=%s: expected random or issue", g);
    }
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

/* Starts the threads of block blockIdx (they run in run_rounds). */
void begin_block() {
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
    g_at_pdl_wait = 0;
    g_order_of.resize((size_t)g_threads);
    for (int i = 0; i < g_threads; i++)
        g_order_of[(size_t)i] = g_order == ORDER_REVERSE ? g_threads - 1 - i : i;
}

/* Runs the block's threads in rounds until all have exited, or, in the early phase of a PDL launch (g_pdl_early),
 * until none can go on and some wait at trn_pdl_wait(). */
void run_rounds() {
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
            switch_context(&g_scheduler_sp, f->sp, f); /* back here when the round has no runnable thread left */
        }
        g_current = nullptr;
        g_named = nullptr;
        if (!g_round_ran) {
            if (g_pdl_early && g_at_pdl_wait > 0)
                return;
            report_deadlock();
        }
    }
}

/* A block stopped at trn_pdl_wait() while another kernel runs: its threads' states and the scheduler's, its
 * dynamic shared memory, and which grid it belongs to. Its threads' stacks stay its own: the running kernel gets
 * the spare ones. Static __shared__ variables belong to their function (run_grid never holds a block of the kernel
 * that runs meanwhile); a device function with one, called by both kernels and by the held block before its wait,
 * would be clobbered: none in cuda/ is. */
struct suspended_block {
    std::vector<fiber> fibers;
    int threads, done, at_barrier, at_pdl_wait;
    unsigned warp_waiting[kMaxThreads / 32], warp_exited[kMaxThreads / 32];
    void (*run)(void *);
    void *closure;
    std::vector<unsigned char> dynamic_shared;
    std::vector<int> order_of;
    const char *kernel;
    dim3 grid, block;
    uint3 block_idx;
};
char *g_spare_stacks[kMaxThreads]; /* the stacks a suspended block's slots lend the kernel that runs meanwhile */

void suspend_block(suspended_block &b) {
    b.fibers.assign(g_fibers, g_fibers + g_threads);
    for (int i = 0; i < g_threads; i++)
        std::swap(g_fibers[i].stack, g_spare_stacks[i]); /* nullptr: a stack is mapped when the slot starts */
    b.threads = g_threads, b.done = g_done, b.at_barrier = g_at_barrier, b.at_pdl_wait = g_at_pdl_wait;
    memcpy(b.warp_waiting, g_warp_waiting, sizeof(g_warp_waiting));
    memcpy(b.warp_exited, g_warp_exited, sizeof(g_warp_exited));
    b.run = g_run, b.closure = g_closure;
    b.dynamic_shared.swap(g_dynamic_shared);
    b.order_of.swap(g_order_of);
    b.kernel = g_kernel, b.grid = gridDim, b.block = blockDim, b.block_idx = blockIdx;
}

void resume_block(suspended_block &b) {
    for (int i = 0; i < b.threads; i++) {
        std::swap(g_fibers[i].stack, g_spare_stacks[i]);
        g_fibers[i] = b.fibers[(size_t)i];
    }
    g_threads = b.threads, g_done = b.done, g_at_barrier = b.at_barrier, g_at_pdl_wait = b.at_pdl_wait;
    memcpy(g_warp_waiting, b.warp_waiting, sizeof(g_warp_waiting));
    memcpy(g_warp_exited, b.warp_exited, sizeof(g_warp_exited));
    g_run = b.run, g_closure = b.closure;
    g_dynamic_shared.swap(b.dynamic_shared);
    g_order_of.swap(b.order_of);
    g_kernel = b.kernel, gridDim = b.grid, blockDim = b.block, blockIdx = b.block_idx;
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
/* A kernel launch, kept whole so that a graph can run one of its blocks ahead of the kernel before it. */
struct kernel_launch {
    const char *name;
    const void *kernel;
    dim3 grid, block;
    size_t smem;
    bool pdl; /* launched with cudaLaunchAttributeProgrammaticStreamSerialization */
    void (*run)(void *);
    std::shared_ptr<void> closure;
};
struct graph_node {
    work run;
    std::shared_ptr<const kernel_launch> kernel; /* where the node is a kernel */
    std::vector<size_t> deps;                    /* the nodes it waits for (earlier ones: issue order is valid) */
    cudaStream_t stream;                         /* the stream it was captured on */
};
} // namespace
} // namespace trn_emu

struct trn_emu_graph {
    std::vector<trn_emu::graph_node> nodes; /* in issue order, which respects every dependency */
    std::vector<CUstream_st *> joined;      /* streams drawn into the capture by an event */
};
/* The nodes a capturing stream's next work depends on (its last node, and those of events it waited for). */
using capture_tail = std::vector<size_t>;
struct trn_emu_graph_exec {
    std::vector<trn_emu::graph_node> nodes;
    uint64_t launches = 0;
};
/* Work issued to a stream outside a capture, not run yet: a kernel launch, other work, or a wait for an event. */
struct pending_work {
    trn_emu::work run;
    std::shared_ptr<const trn_emu::kernel_launch> kernel;
    trn_emu_event *event;  /* a wait: for the event's record number `record` to have run */
    uint64_t record;
};
struct CUstream_st {
    bool capturing = false;
    trn_emu_graph *graph = nullptr;
    capture_tail tail;
    std::deque<pending_work> pending;
};
struct trn_emu_event {
    double ms = 0;
    bool recorded = false;
    trn_emu_graph *captured_in = nullptr; /* recorded on a capturing stream: a stream that waits for it joins */
    capture_tail tail;                    /* and depends from then on on these nodes */
    uint64_t issued = 0, completed = 0;   /* records issued outside a capture, and the last of them that ran */
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

} // namespace
void run_grid(const kernel_launch &k, const work *concurrent);
namespace {

/* Streams outside a capture (TRN_CUDA_EMU_STREAMS=random, the default): work issued to a stream other than the
 * default one waits in the stream's queue until the host synchronizes (a synchronize call, a blocking copy, a free,
 * work on the default stream, a capture or graph launch): then every queue runs, the streams ranked at random, a
 * ready head of the highest first (a wait is ready once its event's record has run), so one stream runs as far
 * ahead of another as the events allow. A kernel launched with PDL right after another kernel of its stream runs a
 * block ahead of it (run_grid), at every other such pair. With `issue`, work runs when it is issued. */
std::vector<CUstream_st *> g_queued; /* the streams with work waiting, each once */
uint64_t g_eager_pairs = 0;

void drain() {
    static bool draining = false;
    if (draining || g_queued.empty())
        return;
    draining = true;
    std::lock_guard<std::recursive_mutex> lock(g_lock);
    read_settings();
    std::vector<uint64_t> rank(g_queued.size());
    for (uint64_t &r : rank)
        r = next_random();
    for (;;) {
        size_t best = g_queued.size();
        bool left = false;
        for (size_t q = 0; q < g_queued.size(); q++) {
            const std::deque<pending_work> &p = g_queued[q]->pending;
            if (p.empty())
                continue;
            left = true;
            const pending_work &head = p.front();
            if (head.event && head.event->completed < head.record)
                continue;
            if (best == g_queued.size() || rank[q] > rank[best])
                best = q;
        }
        if (best == g_queued.size()) {
            if (left)
                fail_host("streams wait for events whose records can never run (a cycle of cudaStreamWaitEvent)");
            break;
        }
        std::deque<pending_work> &p = g_queued[best]->pending;
        pending_work head = std::move(p.front());
        p.pop_front();
        if (head.event)
            continue;
        const kernel_launch *a = head.kernel.get(), *b = !p.empty() ? p.front().kernel.get() : nullptr;
        if (g_pdl_early_runs && a && b && b->pdl && b->kernel != a->kernel && g_eager_pairs++ % 2 == 1) {
            pending_work next = std::move(p.front());
            p.pop_front();
            run_grid(*next.kernel, &head.run);
        } else {
            head.run();
        }
    }
    g_queued.clear();
    draining = false;
}

/* Runs `w` now, or records it in the graph being captured on `stream` (with the kernel launch it is, if any), or
 * queues it on `stream` (drain). */
void submit(cudaStream_t stream, work w, std::shared_ptr<const kernel_launch> kernel = nullptr) {
    if (stream && stream->capturing) {
        std::vector<trn_emu::graph_node> &nodes = stream->graph->nodes;
        nodes.push_back({std::move(w), std::move(kernel), stream->tail, stream});
        stream->tail.assign(1, nodes.size() - 1);
        return;
    }
    std::lock_guard<std::recursive_mutex> lock(g_lock);
    read_settings();
    if (stream && g_streams_random) {
        if (stream->pending.empty())
            g_queued.push_back(stream);
        stream->pending.push_back({std::move(w), std::move(kernel), nullptr, 0});
        return;
    }
    drain(); /* the default stream waits for the others */
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

void prefetch_l2(const void *p) {
    std::lock_guard<std::recursive_mutex> lock(g_lock);
    const allocation *a = find_allocation(p, 1);
    if (!a || a->kind != DEVICE_MEMORY)
        fail("an L2 prefetch of %p, which is not in device memory", p);
}

void pdl_wait() {
    fiber *f = g_current;
    if (!f)
        fail_host("trn_pdl_wait called outside a kernel");
    if (!g_pdl_early)
        return;
    f->state = AT_PDL_WAIT;
    g_at_pdl_wait++;
    yield_to_scheduler();
}

/* Runs the grid of `k`. With `concurrent` (the kernel launched before it, on which it depends programmatically),
 * one block, chosen at random, runs first until its threads stop at trn_pdl_wait(); then `concurrent` runs whole;
 * then that block goes on, and the other blocks run. So what the block reads before its wait is what the kernel
 * before it had not yet written, and what it writes there, that kernel sees: the two races a PDL launch allows. */
void run_grid(const kernel_launch &k, const work *concurrent) {
    std::lock_guard<std::recursive_mutex> lock(g_lock);
    read_settings();
    const uint64_t blocks = (uint64_t)k.grid.x * k.grid.y * k.grid.z;
    const uint64_t early = concurrent ? next_random() % blocks : blocks;
    auto start = [&](uint64_t b) {
        g_kernel = k.name;
        gridDim = k.grid;
        blockDim = k.block;
        g_threads = (int)((uint64_t)k.block.x * k.block.y * k.block.z);
        g_run = k.run;
        g_closure = k.closure.get();
        blockIdx = {(unsigned)(b % k.grid.x), (unsigned)(b / k.grid.x % k.grid.y),
                    (unsigned)(b / ((uint64_t)k.grid.x * k.grid.y))};
        g_dynamic_shared.assign(k.smem, 0xff);
        begin_block();
    };
    if (concurrent) {
        start(early);
        g_pdl_early = true;
        run_rounds();
        g_pdl_early = false;
        if (g_done < g_threads) {
            suspended_block held;
            suspend_block(held);
            (*concurrent)();
            resume_block(held);
            for (int i = 0; i < g_threads; i++)
                if (g_fibers[i].state == AT_PDL_WAIT)
                    g_fibers[i].state = RUNNABLE;
            g_at_pdl_wait = 0;
            run_rounds();
        } else {
            (*concurrent)();
        }
    }
    for (uint64_t b = 0; b < blocks; b++)
        if (b != early) {
            start(b);
            run_rounds();
        }
    blockIdx = {0, 0, 0};
    g_kernel = "";
}

cudaError_t enqueue_kernel(const char *name, const void *kernel, dim3 grid, dim3 block, size_t smem,
                           cudaStream_t stream, bool pdl, void (*run)(void *), void *closure,
                           void (*free_closure)(void *)) {
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
    auto launch = std::make_shared<const kernel_launch>(
        kernel_launch{name, kernel, grid, block, smem, pdl, run, std::shared_ptr<void>(closure, free_closure)});
    submit(stream, [launch]() { run_grid(*launch, nullptr); }, launch);
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
cudaError_t cudaDeviceSynchronize() { drain(); return cudaSuccess; }
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
cudaError_t cudaFree(void *p) { drain(); return note_error(release(p, DEVICE_MEMORY)); }
cudaError_t cudaMallocHost(void **p, size_t bytes) {
    *p = allocate(bytes ? bytes : 1, PINNED_HOST);
    return *p ? cudaSuccess : note_error(cudaErrorMemoryAllocation);
}
cudaError_t cudaHostAlloc(void **p, size_t bytes, unsigned) { return cudaMallocHost(p, bytes); }
cudaError_t cudaFreeHost(void *p) { drain(); return note_error(release(p, PINNED_HOST)); }
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
    drain();
    if (bytes)
        memmove(dst, src, bytes);
    return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t bytes, cudaMemcpyKind kind, cudaStream_t stream) {
    const cudaError_t e = check_copy(dst, src, bytes, kind, "cudaMemcpyAsync");
    if (e != cudaSuccess)
        return note_error(e);
    bool pageable = false; /* a side in pageable host memory: the copy is done when the call returns, as in CUDA */
    {
        std::lock_guard<std::recursive_mutex> lock(g_lock);
        pageable = bytes && (!find_allocation(dst, bytes) || !find_allocation(src, bytes));
    }
    if (pageable && !(stream && stream->capturing)) {
        std::lock_guard<std::recursive_mutex> lock(g_lock);
        drain();
        memmove(dst, src, bytes);
        return cudaSuccess;
    }
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
    drain();
    if (s && s->capturing)
        delete s->graph;
    delete s;
    return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t s) {
    if (s && s->capturing)
        return note_error(cudaErrorStreamCaptureUnsupported);
    drain();
    return cudaSuccess;
}
/* Work runs in issue order, so a wait orders nothing outside a capture; as in CUDA, a stream that waits for an event
 * recorded during a capture joins that capture (its work is recorded, not run) until the capture ends, and its next
 * node depends on the event's. */
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned) {
    if (s && !s->capturing && !e->captured_in && e->completed < e->issued) { /* queued: waits for the record */
        std::lock_guard<std::recursive_mutex> lock(g_lock);
        if (s->pending.empty())
            g_queued.push_back(s);
        s->pending.push_back({work(), nullptr, e, e->issued});
        return cudaSuccess;
    }
    if (!s || !e->captured_in)
        return cudaSuccess;
    if (!s->capturing) {
        s->capturing = true;
        s->graph = e->captured_in;
        s->tail = e->tail;
        e->captured_in->joined.push_back(s);
    } else if (s->graph == e->captured_in) {
        s->tail.insert(s->tail.end(), e->tail.begin(), e->tail.end());
    }
    return cudaSuccess;
}
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
    if (!s || s->capturing)
        return note_error(cudaErrorStreamCaptureUnsupported);
    drain();
    s->capturing = true;
    s->graph = new trn_emu_graph();
    s->tail.clear();
    return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t *graph) {
    if (!s || !s->capturing)
        return note_error(cudaErrorInvalidValue);
    *graph = s->graph;
    for (CUstream_st *joined : s->graph->joined) {
        joined->capturing = false;
        joined->graph = nullptr;
        joined->tail.clear();
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
cudaError_t cudaEventDestroy(cudaEvent_t e) { drain(); delete e; return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) { return cudaEventRecordWithFlags(e, s, 0); }
cudaError_t cudaEventRecordWithFlags(cudaEvent_t e, cudaStream_t s, unsigned) {
    const uint64_t number = s && s->capturing ? 0 : ++e->issued;
    submit(s, [e, number]() {
        e->ms = now_ms();
        e->recorded = true;
        if (number)
            e->completed = number;
    });
    e->captured_in = s && s->capturing ? s->graph : nullptr;
    if (e->captured_in)
        e->tail = s->tail;
    else
        e->tail.clear();
    return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) { drain(); return cudaSuccess; }
cudaError_t cudaEventQuery(cudaEvent_t) { drain(); return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
    drain();
    if (!start->recorded || !end->recorded)
        return note_error(cudaErrorInvalidResourceHandle);
    *ms = (float)(end->ms - start->ms);
    return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t *exec, cudaGraph_t graph, unsigned long long) {
    *exec = new trn_emu_graph_exec{graph->nodes};
    return cudaSuccess;
}
/* A graph's nodes run in an order their dependencies allow: in issue order (TRN_CUDA_EMU_STREAMS=issue), or (random,
 * the default) with the streams they were captured on ranked at random at each launch, a ready node of the highest
 * ranked stream first: one stream runs as far ahead of another as the edges let it, so work of two streams that
 * misses an event between them runs in the wrong order at some launch.
 * A kernel launched with PDL that depends on a kernel of its stream runs a block ahead of it (run_grid), at every
 * other such pair in turn (each launch takes the other half), so that no two blocks are held at once. */
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
    if (s && s->capturing) { /* a graph launched into a capture: its nodes one after another */
        for (const auto &node : exec->nodes)
            submit(s, node.run, node.kernel);
        return cudaSuccess;
    }
    std::lock_guard<std::recursive_mutex> lock(g_lock);
    read_settings();
    drain(); /* the graph runs now, after all work issued before it */
    const auto &nodes = exec->nodes;
    const size_t n = nodes.size(), parity = exec->launches++ % 2;
    std::vector<size_t> waiting(n, 0);
    std::vector<std::vector<size_t>> children(n);
    for (size_t i = 0; i < n; i++)
        for (size_t d : nodes[i].deps) {
            waiting[i]++;
            children[d].push_back(i);
        }
    std::vector<char> done(n, 0);
    std::map<cudaStream_t, uint64_t> rank;
    for (const graph_node &node : nodes)
        if (!rank.count(node.stream))
            rank[node.stream] = g_streams_random ? next_random() : 0;
    std::vector<size_t> ready;
    for (size_t i = 0; i < n; i++)
        if (!waiting[i])
            ready.push_back(i);
    auto finish = [&](size_t i) {
        done[i] = 1;
        for (size_t c : children[i])
            if (--waiting[c] == 0)
                ready.push_back(c);
    };
    while (!ready.empty()) {
        size_t pick = 0; /* of the highest ranked stream's ready nodes, the earliest */
        for (size_t r = 1; r < ready.size(); r++) {
            const uint64_t a = rank[nodes[ready[r]].stream], b = rank[nodes[ready[pick]].stream];
            if (a > b || (a == b && ready[r] < ready[pick]))
                pick = r;
        }
        const size_t i = ready[pick];
        ready.erase(ready.begin() + (std::ptrdiff_t)pick);
        if (done[i])
            continue;
        const kernel_launch *a = nodes[i].kernel.get();
        size_t follower = n;
        for (size_t c : children[i]) {
            const kernel_launch *b = nodes[c].kernel.get();
            if (!a || !g_pdl_early_runs)
                break;
            if (done[c] || !b || !b->pdl || nodes[c].stream != nodes[i].stream || b->kernel == a->kernel ||
                c % 2 != parity)
                continue;
            bool others_done = true;
            for (size_t d : nodes[c].deps)
                others_done = others_done && (d == i || done[d]);
            if (others_done) {
                follower = c;
                break;
            }
        }
        if (follower < n) {
            run_grid(*nodes[follower].kernel, &nodes[i].run);
            finish(i);
            finish(follower);
        } else {
            nodes[i].run();
            finish(i);
        }
    }
    for (size_t i = 0; i < n; i++)
        if (!done[i])
            fail_host("cudaGraphLaunch: node %zu of %zu never became ready (a dependency cycle)", i, n);
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
