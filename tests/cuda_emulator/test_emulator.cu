/* test_emulator.cu: the CUDA emulator's own semantics and checks (built only with -DTRN_CUDA_EMULATOR=ON).
 * Run without arguments: warp collectives (shuffles of each kind and width, ballot, __syncthreads_count), dynamic
 * shared memory, mma.sync m16n8k32 against a plain product with the PTX ISA's fragment layout, a captured graph
 * replayed, a PDL launch that reads before its trn_pdl_wait() what the kernel before it writes (it must see the
 * value from before that kernel ran, at every other pair; in a graph and outside one), two streams' work in both
 * orders where no event orders it (in a graph and outside one) and in order where one does; then each broken kernel
 * or call below in a child process, which must abort with its one-line report:
 *   exited      a lane exits before a full-mask shuffle          -> "has exited"
 *   barrier     half the block waits at __syncthreads             -> "exited" (the other half returned)
 *   outside     a shuffle reads a lane outside its mask           -> "outside the mask"
 *   mixed       lanes of one mask at a shuffle and at a ballot    -> "different collectives"
 *   pointer     a kernel given pageable host memory               -> "points neither"
 *   copy        cudaMemcpy HostToDevice into host memory          -> "not device memory"
 *   prefetch    an L2 prefetch just past a device allocation      -> "not in device memory"
 * Exit 0 when all hold, 1 otherwise. */
#include <cuda_runtime.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

static int failures = 0;
static void check(bool ok, const char *what) {
    printf("%s %s\n", ok ? "PASS" : "FAIL", what);
    failures += !ok;
}

/* out[t] for 64 threads (two warps): every collective's result for thread t, 6 values each */
static __global__ void collectives_kernel(int *out) {
    extern __shared__ int dyn[];
    const int t = threadIdx.x, lane = t & 31;
    dyn[t] = 1000 + t;
    __syncthreads();
    const int from_dyn = dyn[63 - t];
    const int idx = __shfl_sync(0xffffffffu, t * 10, 5);              /* lane 5 of the warp */
    const int up = __shfl_up_sync(0xffffffffu, t, 3, 16);             /* within 16-lane groups */
    const int down = __shfl_down_sync(0xffffffffu, t, 2);
    const int xr = __shfl_xor_sync(0xffffffffu, t, 17);
    const unsigned ballot = __ballot_sync(0xffffffffu, lane % 3 == 0);
    const int count = __syncthreads_count(t < 10);
    int *o = out + 7 * t;
    o[0] = from_dyn, o[1] = idx, o[2] = up, o[3] = down, o[4] = xr, o[5] = (int)ballot, o[6] = count;
}

static __global__ void mma_kernel(const uint32_t *a, const uint32_t *b, int32_t *d) {
    const int lane = threadIdx.x;
    uint32_t fa[4], fb[2];
    int32_t acc[4] = {1, 2, 3, 4};
    for (int i = 0; i < 4; i++) fa[i] = a[4 * lane + i];
    for (int i = 0; i < 2; i++) fb[i] = b[2 * lane + i];
    trn_emu::mma_m16n8k32_s8(acc, fa, fb);
    for (int i = 0; i < 4; i++) d[4 * lane + i] = acc[i];
}

static __global__ void add_one_kernel(int *x) { x[threadIdx.x] += 1; }
static __global__ void set_kernel(int *x, int v) { x[0] = v; }
static __global__ void copy_kernel(const int *x, int *y) { y[0] = x[0]; }
/* One launch of the pair add_one, read_around_wait (4 blocks) seen in before_after: 1 where exactly one block read the
 * old value (`old`) before its wait and the others the new one, 0 where all read the new one, -1 otherwise. */
static int pdl_launch_kind(const int *before_after, int old) {
    int stale = 0, right = 0;
    for (int b = 0; b < 4; b++) {
        stale += before_after[2 * b] == old && before_after[2 * b + 1] == old + 1;
        right += before_after[2 * b] == old + 1 && before_after[2 * b + 1] == old + 1;
    }
    return stale == 1 && right == 3 ? 1 : stale == 0 && right == 4 ? 0 : -1;
}
/* launched with PDL after add_one_kernel: x read before and after the wait, each block into its own pair */
static __global__ void read_around_wait_kernel(const int *x, int *before_after) {
    const int early = x[threadIdx.x];
    trn_emu::pdl_wait();
    if (threadIdx.x == 0) {
        before_after[2 * blockIdx.x] = early;
        before_after[2 * blockIdx.x + 1] = x[0];
    }
}

static __global__ void exited_kernel(int *out) {
    if (threadIdx.x == 31)
        return;
    out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
}
static __global__ void barrier_kernel(int *out) {
    if (threadIdx.x < 16)
        return;
    __syncthreads();
    out[threadIdx.x] = 1;
}
static __global__ void outside_kernel(int *out) {
    if (threadIdx.x < 16)
        out[threadIdx.x] = __shfl_sync(0x0000ffffu, (int)threadIdx.x, 20);
}
/* trn_prefetch_l2 (cuda/device_math.cuh) of element from + lane of a */
static __global__ void prefetch_kernel(const int *a, int from) { trn_emu::prefetch_l2(a + from + threadIdx.x); }
static __global__ void mixed_kernel(int *out) {
    if (threadIdx.x & 1)
        out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, (int)threadIdx.x, 1);
    else
        out[threadIdx.x] = (int)__ballot_sync(0xffffffffu, 1);
}

/* the broken cases, each run in a child process */
static void broken(const char *which) {
    int *d = nullptr;
    cudaMalloc(&d, 64 * sizeof(int));
    if (!strcmp(which, "exited"))
        exited_kernel<<<1, 32>>>(d);
    else if (!strcmp(which, "barrier"))
        barrier_kernel<<<1, 32>>>(d);
    else if (!strcmp(which, "outside"))
        outside_kernel<<<1, 32>>>(d);
    else if (!strcmp(which, "mixed"))
        mixed_kernel<<<1, 32>>>(d);
    else if (!strcmp(which, "pointer")) {
        static int host[64];
        add_one_kernel<<<1, 32>>>(host);
    } else if (!strcmp(which, "prefetch")) {
        prefetch_kernel<<<1, 32>>>(d, 64); /* d holds 64 ints */
    } else if (!strcmp(which, "copy")) {
        static int host[64], src[64];
        cudaMemcpy(host, src, sizeof(src), cudaMemcpyHostToDevice);
    }
    exit(0); /* reached only where the emulator let it pass */
}

/* Runs this program with `which`; true where it aborted and its stderr holds `want`. */
static bool aborts_with(const char *self, const char *which, const char *want) {
    int pipefd[2];
    if (pipe(pipefd) != 0)
        return false;
    const pid_t pid = fork();
    if (pid == 0) {
        dup2(pipefd[1], 2);
        close(pipefd[0]);
        execl(self, self, which, (char *)nullptr);
        _exit(3);
    }
    close(pipefd[1]);
    std::string err;
    char buf[512];
    ssize_t n;
    while ((n = read(pipefd[0], buf, sizeof(buf))) > 0)
        err.append(buf, (size_t)n);
    close(pipefd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    const bool ok = WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && err.find(want) != std::string::npos &&
                    err.find('\n') == err.size() - 1;
    if (!ok)
        printf("     %s: status %d, stderr: %s", which, status, err.c_str());
    return ok;
}

int main(int argc, char **argv) {
    if (argc > 1) {
        broken(argv[1]);
        return 0;
    }
    /* collectives */
    int *d_out;
    cudaMalloc(&d_out, 64 * 7 * sizeof(int));
    collectives_kernel<<<1, 64, 64 * sizeof(int)>>>(d_out);
    int out[64 * 7];
    cudaMemcpy(out, d_out, sizeof(out), cudaMemcpyDeviceToHost);
    bool ok = true;
    for (int t = 0; t < 64; t++) {
        const int lane = t & 31, w0 = t & ~31, g0 = t & ~15;
        unsigned ballot = 0;
        for (int l = 0; l < 32; l += 3) ballot |= 1u << l;
        const int want[7] = {1000 + 63 - t, (w0 + 5) * 10, t - g0 >= 3 ? t - 3 : t, lane + 2 < 32 ? t + 2 : t,
                             t ^ 17, (int)ballot, 10};
        ok = ok && memcmp(out + 7 * t, want, sizeof(want)) == 0;
    }
    check(ok, "collectives: __shfl_sync, __shfl_up_sync (width 16), __shfl_down_sync, __shfl_xor_sync, __ballot_sync, "
              "__syncthreads_count, dynamic shared memory");

    /* mma.sync m16n8k32: A 16x32 row-major, B 32x8 (k, n), fragments laid out by the PTX ISA's rules */
    int8_t A[16][32], B[32][8];
    for (int i = 0; i < 16; i++)
        for (int k = 0; k < 32; k++) A[i][k] = (int8_t)((i * 37 + k * 11) % 255 - 127);
    for (int k = 0; k < 32; k++)
        for (int n = 0; n < 8; n++) B[k][n] = (int8_t)((k * 53 + n * 29) % 251 - 125);
    uint32_t fa[32 * 4], fb[32 * 2];
    for (int lane = 0; lane < 32; lane++) {
        const int g = lane >> 2, t = lane & 3;
        for (int r = 0; r < 4; r++) {
            const int row = g + 8 * (r & 1), col = 4 * t + 16 * (r >> 1);
            uint32_t v = 0;
            for (int j = 0; j < 4; j++) v |= (uint32_t)(uint8_t)A[row][col + j] << (8 * j);
            fa[4 * lane + r] = v;
        }
        for (int r = 0; r < 2; r++) {
            uint32_t v = 0;
            for (int j = 0; j < 4; j++) v |= (uint32_t)(uint8_t)B[4 * t + 16 * r + j][g] << (8 * j);
            fb[2 * lane + r] = v;
        }
    }
    uint32_t *da, *db;
    int32_t *dd;
    cudaMalloc(&da, sizeof(fa));
    cudaMalloc(&db, sizeof(fb));
    cudaMalloc(&dd, 32 * 4 * sizeof(int32_t));
    cudaMemcpy(da, fa, sizeof(fa), cudaMemcpyHostToDevice);
    cudaMemcpy(db, fb, sizeof(fb), cudaMemcpyHostToDevice);
    mma_kernel<<<1, 32>>>(da, db, dd);
    int32_t got[32 * 4];
    cudaMemcpy(got, dd, sizeof(got), cudaMemcpyDeviceToHost);
    ok = true;
    for (int lane = 0; lane < 32; lane++) {
        const int g = lane >> 2, t = lane & 3;
        for (int r = 0; r < 4; r++) {
            const int row = g + 8 * (r >> 1), col = 2 * t + (r & 1);
            int32_t s = 1 + r; /* the accumulator's initial value */
            for (int k = 0; k < 32; k++) s += A[row][k] * B[k][col];
            ok = ok && got[4 * lane + r] == s;
        }
    }
    check(ok, "mma.sync m16n8k32 s8: D = A B + C in the PTX ISA's fragment layout");

    /* prmt.b32 (default mode): the byte order of CUDA's documentation of __byte_perm */
    check(__byte_perm(0x33221100u, 0x77665544u, 0x7351u) == 0x77335511u &&
              __byte_perm(0x33221100u, 0x77665544u, 0x0123u) == 0x00112233u &&
              __byte_perm(0x33221100u, 0u, 0x4341u) == 0x00330011u,
          "__byte_perm: byte i of the result is byte (s >> 4 i) & 7 of y:x");

    /* a graph: captured work does not run until the graph is launched, then runs at each launch */
    int *dx;
    cudaMalloc(&dx, 32 * sizeof(int));
    cudaMemset(dx, 0, 32 * sizeof(int));
    cudaStream_t s;
    cudaStreamCreate(&s);
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    add_one_kernel<<<1, 32, 0, s>>>(dx);
    cudaStreamEndCapture(s, &graph);
    cudaGraphInstantiate(&exec, graph, 0);
    int x0[32], x2[32];
    cudaMemcpy(x0, dx, sizeof(x0), cudaMemcpyDeviceToHost);
    cudaGraphLaunch(exec, s);
    cudaGraphLaunch(exec, s);
    cudaMemcpy(x2, dx, sizeof(x2), cudaMemcpyDeviceToHost);
    check(x0[0] == 0 && x0[31] == 0 && x2[0] == 2 && x2[31] == 2, "graph: nothing runs at capture, each launch runs");
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);

    /* PDL: add_one, then read_around_wait (4 blocks) launched with the attribute; launched 4 times, the pair runs
     * one block ahead at every other launch: that block reads the old value before its wait, the new one after */
    int *d_ba;
    cudaMalloc(&d_ba, 8 * sizeof(int));
    cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    add_one_kernel<<<1, 32, 0, s>>>(dx);
    cudaLaunchAttribute pdl_attr[1];
    pdl_attr[0].id = cudaLaunchAttributeProgrammaticStreamSerialization;
    pdl_attr[0].val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3(4);
    config.blockDim = dim3(32);
    config.stream = s;
    config.attrs = pdl_attr;
    config.numAttrs = 1;
    cudaLaunchKernelEx(&config, read_around_wait_kernel, (const int *)dx, d_ba);
    cudaStreamEndCapture(s, &graph);
    cudaGraphInstantiate(&exec, graph, 0);
    int stale_launches = 0, right_launches = 0;
    for (int launch = 0; launch < 4; launch++) { /* dx holds 2 before the first */
        int ba[8];
        cudaGraphLaunch(exec, s);
        cudaMemcpy(ba, d_ba, sizeof(ba), cudaMemcpyDeviceToHost);
        const int kind = pdl_launch_kind(ba, 2 + launch);
        stale_launches += kind == 1;
        right_launches += kind == 0;
    }
    check(stale_launches == 2 && right_launches == 2,
          "PDL in a graph: a block runs ahead to trn_pdl_wait() at every other launch and reads the old value");
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    /* the same pair launched outside a graph, 4 times (dx holds 6 before the first) */
    stale_launches = right_launches = 0;
    for (int launch = 0; launch < 4; launch++) {
        int ba[8];
        add_one_kernel<<<1, 32, 0, s>>>(dx);
        cudaLaunchKernelEx(&config, read_around_wait_kernel, (const int *)dx, d_ba);
        cudaMemcpy(ba, d_ba, sizeof(ba), cudaMemcpyDeviceToHost);
        const int kind = pdl_launch_kind(ba, 6 + launch);
        stale_launches += kind == 1;
        right_launches += kind == 0;
    }
    check(stale_launches == 2 && right_launches == 2,
          "PDL outside a graph: a block runs ahead to trn_pdl_wait() at every other pair and reads the old value");
    cudaFree(d_ba);

    /* two streams: s sets x = 1, forks s2 (which copies x to y), then sets x = 2; nothing orders the copy against the
     * second set, so over 16 launches the copy must see both 1 and 2 */
    int *d_xy;
    cudaMalloc(&d_xy, 2 * sizeof(int));
    cudaStream_t s2;
    cudaStreamCreate(&s2);
    cudaEvent_t fork, join;
    cudaEventCreate(&fork);
    cudaEventCreate(&join);
    cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal);
    set_kernel<<<1, 1, 0, s>>>(d_xy, 1);
    cudaEventRecord(fork, s);
    cudaStreamWaitEvent(s2, fork, 0);
    copy_kernel<<<1, 1, 0, s2>>>(d_xy, d_xy + 1);
    set_kernel<<<1, 1, 0, s>>>(d_xy, 2);
    cudaEventRecord(join, s2);
    cudaStreamWaitEvent(s, join, 0);
    cudaStreamEndCapture(s, &graph);
    cudaGraphInstantiate(&exec, graph, 0);
    int seen[3] = {0, 0, 0};
    for (int launch = 0; launch < 16; launch++) {
        int xy[2];
        cudaGraphLaunch(exec, s);
        cudaMemcpy(xy, d_xy, sizeof(xy), cudaMemcpyDeviceToHost);
        if (xy[0] == 2 && (xy[1] == 1 || xy[1] == 2))
            seen[xy[1]]++;
    }
    check(seen[1] > 0 && seen[2] > 0 && seen[1] + seen[2] == 16,
          "graph of two streams: work no event orders runs in both orders");
    cudaGraphExecDestroy(exec);
    cudaGraphDestroy(graph);
    /* the same outside a graph, 16 times; then with s2 waiting for an event recorded after the second set */
    for (int ordered = 0; ordered < 2; ordered++) {
        seen[1] = seen[2] = 0;
        for (int round = 0; round < 16; round++) {
            int xy[2];
            set_kernel<<<1, 1, 0, s>>>(d_xy, 1);
            cudaEventRecord(fork, s);
            if (ordered)
                set_kernel<<<1, 1, 0, s>>>(d_xy, 2), cudaEventRecord(fork, s);
            cudaStreamWaitEvent(s2, fork, 0);
            copy_kernel<<<1, 1, 0, s2>>>(d_xy, d_xy + 1);
            if (!ordered)
                set_kernel<<<1, 1, 0, s>>>(d_xy, 2);
            cudaDeviceSynchronize();
            cudaMemcpy(xy, d_xy, sizeof(xy), cudaMemcpyDeviceToHost);
            if (xy[0] == 2 && (xy[1] == 1 || xy[1] == 2))
                seen[xy[1]]++;
        }
        if (ordered)
            check(seen[2] == 16, "streams outside a graph: an event orders their work");
        else
            check(seen[1] > 0 && seen[2] > 0 && seen[1] + seen[2] == 16,
                  "streams outside a graph: work no event orders runs in both orders");
    }
    cudaEventDestroy(fork);
    cudaEventDestroy(join);
    cudaStreamDestroy(s2);
    cudaFree(d_xy);
    cudaStreamDestroy(s);
    cudaFree(dx), cudaFree(da), cudaFree(db), cudaFree(dd), cudaFree(d_out);

    /* an L2 prefetch inside device memory is a no-op (its check passes) */
    int *d_pf = nullptr;
    cudaMalloc(&d_pf, 64 * sizeof(int));
    prefetch_kernel<<<1, 32>>>(d_pf, 32);
    check(cudaDeviceSynchronize() == cudaSuccess, "an L2 prefetch of device memory passes");
    cudaFree(d_pf);

    /* the checks bite */
    const char *cases[][2] = {{"exited", "has exited"},         {"barrier", "exited"},
                              {"outside", "outside the mask"},  {"mixed", "different collectives"},
                              {"pointer", "points neither"},    {"copy", "not device memory"},
                              {"prefetch", "not in device memory"}};
    for (auto &c : cases) {
        const std::string what = std::string("reported and aborted: ") + c[0];
        check(aborts_with(argv[0], c[0], c[1]), what.c_str());
    }
    printf("test_emulator: %d failed\n", failures);
    return failures ? 1 : 0;
}
