/* test_emulator.cu: the CUDA emulator's own semantics and checks (built only with -DTRN_CUDA_EMULATOR=ON).
 * Run without arguments: warp collectives (shuffles of each kind and width, ballot, __syncthreads_count), dynamic
 * shared memory, mma.sync m16n8k32 against a plain product with the PTX ISA's fragment layout, a captured graph
 * replayed; then each broken kernel or call below in a child process, which must abort with its one-line report:
 *   exited      a lane exits before a full-mask shuffle          -> "has exited"
 *   barrier     half the block waits at __syncthreads             -> "exited" (the other half returned)
 *   outside     a shuffle reads a lane outside its mask           -> "outside the mask"
 *   mixed       lanes of one mask at a shuffle and at a ballot    -> "different collectives"
 *   pointer     a kernel given pageable host memory               -> "points neither"
 *   copy        cudaMemcpy HostToDevice into host memory          -> "not device memory"
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
    cudaStreamDestroy(s);
    cudaFree(dx), cudaFree(da), cudaFree(db), cudaFree(dd), cudaFree(d_out);

    /* the checks bite */
    const char *cases[][2] = {{"exited", "has exited"},         {"barrier", "exited"},
                              {"outside", "outside the mask"},  {"mixed", "different collectives"},
                              {"pointer", "points neither"},    {"copy", "not device memory"}};
    for (auto &c : cases) {
        const std::string what = std::string("reported and aborted: ") + c[0];
        check(aborts_with(argv[0], c[0], c[1]), what.c_str());
    }
    printf("test_emulator: %d failed\n", failures);
    return failures ? 1 : 0;
}
