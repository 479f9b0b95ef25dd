/* cuda_kernel_lab.cu: the CUDA twin of kernel_lab. Every launch kind of a Trinity-1.1B decode step, timed in
 * isolation at the model's shapes, for every variant of the ternary kernel, and checked.
 *
 * Usage: cuda_kernel_lab [--reps N] [--json FILE]
 *
 * Launch kinds (kernel names as a profile shows them): ternary_qkv_rope (RMSNorm + int8 + Q/K/V + RoPE + cache
 * store, 2560 x 2048), ternary_residual (output projection 2048 x 2048 and down projection 2048 x 5632, int8 + add),
 * ternary_swiglu (RMSNorm + int8 + gate/up 2 x 5632 x 2048 + SwiGLU), lm_head (RMSNorm + int8 + 32000 x 2048), for
 * TQ2_0 and TQ1_0, each with the classic and the lean kernel; attention (split kernel, 32 query / 4 KV heads of 64,
 * at positions 511 and 1535 of a 2048 context); the sampler (greedy over 32000 logits).
 *
 * Timing: each entry is captured into a CUDA Graph of 20 back-to-back launches (so host launch cost is not in the
 * figure), replayed reps times; the median replay / 20 is the time per launch, once with plain launches and, on
 * sm_90, once with programmatic dependent launch as the engine runs them (the next launch's weight loads overlap
 * the previous one's tail). GB/s counts the bytes a launch must read (weights: codes + fp16 scales; attention: the
 * K and V rows), and the fraction is of the device-copy probe (cudaMemcpy device to device, read + write bytes).
 *
 * Checks: every ternary variant's output equals the classic kernel's bit for bit on the same launch (the classic
 * kernel is checked against the CPU reference by tests/test_cuda_gemv.cu), and the residual launches' classic output
 * equals the CPU reference composition (quantize, matvec, add) bit for bit here too. Exit status 1 on a mismatch, 77
 * where no GPU is present. */
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

extern "C" {
#include "cpu_fallback/ops.h"
#include "cpu_fallback/quants.h"
#include "host/tensor_types.h"
}
#include "cuda/cuda_ops.h"
#include "cuda/weights.h"

#define CK(call)                                                                                                      \
    do {                                                                                                              \
        cudaError_t e_ = (call);                                                                                      \
        if (e_ != cudaSuccess) {                                                                                      \
            fprintf(stderr, "cuda_kernel_lab: %s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_));   \
            exit(2);                                                                                                  \
        }                                                                                                             \
    } while (0)
#define LK(call) CK((cudaError_t)(call))

namespace {

uint64_t rng_state = 0x2545F4914F6CDD1Dull;
uint64_t rnd() {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
float frand(float lo, float hi) { return lo + (hi - lo) * (float)((rnd() >> 11) * (1.0 / 9007199254740992.0)); }

template <class T> T *to_device(const std::vector<T> &h) {
    T *d;
    CK(cudaMalloc(&d, h.size() * sizeof(T) + 16));
    CK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice));
    return d;
}
template <class T> std::vector<T> to_host(const T *d, size_t n) {
    std::vector<T> h(n);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
}

/* A ternary matrix in file rows (for the CPU reference) and in the device's split layout (codes, scales). */
struct matrix {
    trn_type type;
    int64_t rows, cols;
    std::vector<uint8_t> file;
    size_t file_row_bytes;
    trn_cuda_matrix dev;
    double bytes() const { return (double)rows * (double)dev.row_bytes + (double)rows * (double)(cols / 256) * 2.0; }
};

matrix make_matrix(trn_type t, int64_t rows, int64_t cols) {
    matrix m{t, rows, cols, {}, trn_row_bytes(t, cols), {}};
    const size_t block = t == TRN_TYPE_TQ2_0 ? 66 : 54, code_bytes = block - 2, nb = (size_t)(cols / 256);
    m.file.resize((size_t)rows * m.file_row_bytes);
    for (auto &b : m.file)
        b = (uint8_t)(rnd() >> 40);
    std::vector<uint8_t> codes((size_t)rows * nb * code_bytes);
    std::vector<trn_fp16> scales((size_t)rows * nb);
    for (size_t k = 0; k < (size_t)rows * nb; k++) {
        const trn_fp16 d = trn_f32_to_fp16(frand(0.001f, 0.05f));
        memcpy(&m.file[k * block + code_bytes], &d, 2);
        memcpy(&codes[k * code_bytes], &m.file[k * block], code_bytes);
        scales[k] = d;
    }
    m.dev = {t, rows, cols, to_device(codes), to_device(scales), nb * code_bytes};
    return m;
}

void free_matrix(matrix &m) {
    CK(cudaFree(const_cast<void *>(m.dev.qs)));
    CK(cudaFree(const_cast<trn_fp16 *>(m.dev.d)));
}

struct result {
    std::string kind, type, variant;
    double us = 0, us_pdl = 0, bytes = 0;
    bool checked = false, ok = true;
};

/* Median time per launch (µs) of `launch` over reps replays of a graph of 20 launches. */
template <class F> double time_launches(F launch, int reps, cudaStream_t stream) {
    constexpr int kPerGraph = 20;
    cudaGraph_t graph;
    cudaGraphExec_t exec;
    CK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
    for (int i = 0; i < kPerGraph; i++)
        launch(stream);
    CK(cudaStreamEndCapture(stream, &graph));
    CK(cudaGraphInstantiate(&exec, graph, 0));
    CK(cudaGraphLaunch(exec, stream)); /* warm-up */
    CK(cudaStreamSynchronize(stream));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    std::vector<double> us;
    for (int r = 0; r < reps; r++) {
        CK(cudaEventRecord(a, stream));
        CK(cudaGraphLaunch(exec, stream));
        CK(cudaEventRecord(b, stream));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        us.push_back(ms * 1000.0 / kPerGraph);
    }
    CK(cudaEventDestroy(a));
    CK(cudaEventDestroy(b));
    CK(cudaGraphExecDestroy(exec));
    CK(cudaGraphDestroy(graph));
    std::sort(us.begin(), us.end());
    return us[us.size() / 2];
}

constexpr int kDim = 2048, kFf = 5632, kVocab = 32000, kHeads = 32, kKvHeads = 4, kHeadDim = 64, kCtx = 2048;

struct lab {
    int reps = 30;
    bool pdl_capable = false;
    cudaStream_t stream = nullptr;
    std::vector<result> results;
    int failures = 0;
    float *x = nullptr, *norm = nullptr, *y = nullptr, *y_ref = nullptr, *k_cache = nullptr, *v_cache = nullptr;
    float *rope = nullptr;
    int32_t *pos = nullptr;
    std::vector<float> host_x;
};

/* Times op (its kernel set to each variant) and checks each variant's output against the classic kernel's. */
void run_ternary(lab &L, const char *kind, trn_type t, trn_cuda_ternary_op op, double bytes, int64_t out_n,
                 const std::vector<float> *cpu_reference) {
    const trn_cuda_ternary_kernel variants[] = {TRN_CUDA_TERNARY_CLASSIC, TRN_CUDA_TERNARY_LEAN};
    std::vector<float> classic_out;
    for (trn_cuda_ternary_kernel v : variants) {
        op.kernel = v;
        result r{kind, trn_type_name(t), v == TRN_CUDA_TERNARY_LEAN ? "lean" : "classic"};
        r.bytes = bytes;
        /* check: one launch on a known output (ADD accumulates: start from zeros) */
        CK(cudaMemset(op.y, 0, (size_t)out_n * 4));
        LK(trn_cuda_ternary(&op, 0, L.stream));
        std::vector<float> out = to_host(op.y, (size_t)out_n);
        if (v == TRN_CUDA_TERNARY_CLASSIC) {
            classic_out = out;
            if (cpu_reference) {
                r.checked = true;
                r.ok = memcmp(out.data(), cpu_reference->data(), out.size() * 4) == 0;
            }
        } else {
            r.checked = true;
            r.ok = memcmp(out.data(), classic_out.data(), out.size() * 4) == 0;
        }
        if (!r.ok) {
            L.failures++;
            printf("FAIL %s %s %s: output differs from the %s\n", kind, r.type.c_str(), r.variant.c_str(),
                   v == TRN_CUDA_TERNARY_CLASSIC ? "CPU reference" : "classic kernel's");
        }
        r.us = time_launches([&](cudaStream_t s) { LK(trn_cuda_ternary(&op, 0, s)); }, L.reps, L.stream);
        if (L.pdl_capable)
            r.us_pdl = time_launches([&](cudaStream_t s) { LK(trn_cuda_ternary(&op, 1, s)); }, L.reps, L.stream);
        L.results.push_back(r);
    }
}

void lab_type(lab &L, trn_type t) {
    matrix q = make_matrix(t, kDim, kDim), k = make_matrix(t, kKvHeads * kHeadDim, kDim),
           v = make_matrix(t, kKvHeads * kHeadDim, kDim), o = make_matrix(t, kDim, kDim), gate = make_matrix(t, kFf, kDim),
           up = make_matrix(t, kFf, kDim), down = make_matrix(t, kDim, kFf), head = make_matrix(t, kVocab, kDim);
    trn_cuda_ternary_op op = {};

    op.n_mat = 3;
    op.w[0] = q.dev, op.w[1] = k.dev, op.w[2] = v.dev;
    op.input = TRN_CUDA_IN_NORM_QUANT, op.x = L.x, op.norm = L.norm, op.eps = 1e-5f;
    op.output = TRN_CUDA_OUT_QKV, op.y = L.y, op.k_cache = L.k_cache, op.v_cache = L.v_cache;
    op.rope_cos_sin = L.rope, op.pos = L.pos, op.head_dim = kHeadDim;
    run_ternary(L, "ternary_qkv_rope", t, op, q.bytes() + k.bytes() + v.bytes(), kDim, nullptr);

    /* residual launches: the CPU reference is quantize, matvec, add to zeros */
    const trn_cpu_ops *ref = trn_cpu_ops_ref();
    auto residual = [&](const char *kind, matrix &w) {
        std::vector<float> x(L.host_x.begin(), L.host_x.begin() + w.cols), want((size_t)w.rows), zero((size_t)w.rows, 0.0f);
        std::vector<trn_block_q8_act> xq((size_t)(w.cols / 256));
        ref->quantize_act(x.data(), xq.data(), w.cols);
        trn_matrix cm = {t, w.file.data(), w.rows, w.cols, w.file_row_bytes, TRN_LAYOUT_ROWS};
        ref->matvec(&cm, x.data(), xq.data(), want.data(), 0, w.rows);
        ref->add(zero.data(), want.data(), want.data(), w.rows);
        trn_cuda_ternary_op r = {};
        r.n_mat = 1, r.w[0] = w.dev, r.input = TRN_CUDA_IN_QUANT, r.x = L.x, r.output = TRN_CUDA_OUT_ADD, r.y = L.y;
        run_ternary(L, kind, t, r, w.bytes(), w.rows, &want);
    };
    residual("ternary_residual (output)", o);

    op = {};
    op.n_mat = 2, op.w[0] = gate.dev, op.w[1] = up.dev;
    op.input = TRN_CUDA_IN_NORM_QUANT, op.x = L.x, op.norm = L.norm, op.eps = 1e-5f;
    op.output = TRN_CUDA_OUT_SWIGLU, op.y = L.y;
    run_ternary(L, "ternary_swiglu", t, op, gate.bytes() + up.bytes(), kFf, nullptr);

    residual("ternary_residual (down)", down);

    op = {};
    op.n_mat = 1, op.w[0] = head.dev, op.input = TRN_CUDA_IN_NORM_QUANT, op.x = L.x, op.norm = L.norm, op.eps = 1e-5f;
    op.output = TRN_CUDA_OUT_STORE, op.y = L.y;
    run_ternary(L, "lm_head", t, op, head.bytes(), kVocab, nullptr);

    for (matrix *m : {&q, &k, &v, &o, &gate, &up, &down, &head})
        free_matrix(*m);
}

void lab_attention(lab &L) {
    const size_t scratch_bytes = trn_cuda_attention_scratch_bytes(kHeads, kKvHeads, kHeadDim, kCtx);
    void *scratch = nullptr;
    CK(cudaMalloc(&scratch, scratch_bytes ? scratch_bytes : 1));
    CK(cudaMemset(scratch, 0, scratch_bytes ? scratch_bytes : 1));
    float *out;
    CK(cudaMalloc(&out, (size_t)kHeads * kHeadDim * 4));
    for (int position : {287, 511, 1535}) {
        for (int split : {64, 32}) {
            CK(cudaMemcpy(L.pos, &position, 4, cudaMemcpyHostToDevice));
            result r{"attention", "f32", !scratch_bytes ? "per head" : split == 64 ? "split 64" : "split 32"};
            r.bytes = 2.0 * (position + 1) * kKvHeads * kHeadDim * 4;
            r.kind += " @" + std::to_string(position);
            auto launch = [&](int pdl, cudaStream_t s) {
                LK(trn_cuda_attention(L.y, L.k_cache, L.v_cache, out, kHeads, kKvHeads, kHeadDim, kCtx, L.pos,
                                      scratch_bytes ? scratch : nullptr, split, pdl, nullptr, s));
            };
            r.us = time_launches([&](cudaStream_t s) { launch(0, s); }, L.reps, L.stream);
            if (L.pdl_capable)
                r.us_pdl = time_launches([&](cudaStream_t s) { launch(1, s); }, L.reps, L.stream);
            L.results.push_back(r);
        }
    }
    CK(cudaFree(out));
    CK(cudaFree(scratch));
}

void lab_sampler(lab &L) {
    void *scratch;
    CK(cudaMalloc(&scratch, trn_cuda_sample_scratch_bytes(kVocab)));
    int32_t *history, *next;
    CK(cudaMalloc(&history, kCtx * 4));
    CK(cudaMemset(history, 0, kCtx * 4));
    CK(cudaMalloc(&next, 4));
    const int position = 100;
    CK(cudaMemcpy(L.pos, &position, 4, cudaMemcpyHostToDevice));
    trn_cuda_sampling greedy = {0.0f, 0, 1.0f, 1.0f, 1};
    result r{"sampler (greedy)", "f32", "-"};
    r.bytes = kVocab * 4.0;
    auto launch = [&](int pdl, cudaStream_t s) {
        LK(trn_cuda_sample(L.y, kVocab, history, L.pos, &greedy, scratch, next, pdl, s));
    };
    r.us = time_launches([&](cudaStream_t s) { launch(0, s); }, L.reps, L.stream);
    if (L.pdl_capable) /* as the decode step launches it (after the LM head) */
        r.us_pdl = time_launches([&](cudaStream_t s) { launch(1, s); }, L.reps, L.stream);
    L.results.push_back(r);
    CK(cudaFree(scratch));
    CK(cudaFree(history));
    CK(cudaFree(next));
}

} // namespace

int main(int argc, char **argv) {
    lab L;
    const char *json_path = nullptr;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            L.reps = atoi(argv[++i]);
            if (L.reps < 1 || L.reps > 10000) {
                fprintf(stderr, "cuda_kernel_lab: --reps must be 1..10000\n");
                return 2;
            }
        } else if (!strcmp(argv[i], "--json") && i + 1 < argc) {
            json_path = argv[++i];
        } else {
            fprintf(stderr, "usage: cuda_kernel_lab [--reps N] [--json FILE]\n");
            return 2;
        }
    }
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        printf("SKIPPED: no usable GPU: cuda_kernel_lab compiled, nothing measured\n");
        return 77;
    }
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
#ifndef TRN_CUDA_PASCAL
    L.pdl_capable = prop.major >= 9;
#endif
    double copy_gbs = 0;
    if (trn_cuda::copy_bandwidth(false, (size_t)256 << 20, 10, &copy_gbs) != TRN_OK)
        copy_gbs = 0;
    printf("device: %s (sm_%d%d, %d SMs), device-copy probe %.0f GB/s, %d replays of 20 launches per entry\n",
           prop.name, prop.major, prop.minor, prop.multiProcessorCount, copy_gbs, L.reps);
    CK(cudaStreamCreateWithFlags(&L.stream, cudaStreamNonBlocking));

    L.host_x.resize(kFf);
    for (auto &v : L.host_x)
        v = frand(-3.0f, 3.0f);
    std::vector<float> norm(kFf), rope((size_t)kCtx * kHeadDim), caches((size_t)kCtx * kKvHeads * kHeadDim);
    for (auto &v : norm)
        v = frand(0.5f, 1.5f);
    for (int p = 0; p < kCtx; p++)
        for (int i = 0; i < kHeadDim / 2; i++) {
            const double a = p * pow(10000.0, -2.0 * i / kHeadDim);
            rope[(size_t)p * kHeadDim + 2 * i] = (float)cos(a);
            rope[(size_t)p * kHeadDim + 2 * i + 1] = (float)sin(a);
        }
    for (auto &v : caches)
        v = frand(-1.0f, 1.0f);
    L.x = to_device(L.host_x);
    L.norm = to_device(norm);
    L.rope = to_device(rope);
    L.k_cache = to_device(caches);
    L.v_cache = to_device(caches);
    CK(cudaMalloc(&L.y, (size_t)kVocab * 4));
    const int position = 1000;
    L.pos = to_device(std::vector<int32_t>{position});

    lab_type(L, TRN_TYPE_TQ2_0);
    lab_type(L, TRN_TYPE_TQ1_0);
    lab_attention(L);
    lab_sampler(L);

    printf("\n%-28s %-6s %-8s %9s %9s %9s %8s  %s\n", "launch kind", "type", "kernel", "MB read", "us", "us (PDL)",
           "GB/s", "check");
    for (const result &r : L.results) {
        const double us = L.pdl_capable && r.us_pdl > 0 ? r.us_pdl : r.us, gbs = r.bytes / us * 1e-3;
        char pdl[32] = "-";
        if (r.us_pdl > 0)
            snprintf(pdl, sizeof pdl, "%9.2f", r.us_pdl);
        printf("%-28s %-6s %-8s %9.2f %9.2f %9s %8.0f  %s", r.kind.c_str(), r.type.c_str(), r.variant.c_str(),
               r.bytes / 1e6, r.us, pdl, gbs, !r.checked ? "-" : r.ok ? "bitwise" : "DIFFERS");
        if (copy_gbs > 0)
            printf("  (%.0f%% of copy)", 100.0 * gbs / copy_gbs);
        printf("\n");
    }
    printf("%s: %d failures\n", L.failures ? "FAILED" : "all checks passed", L.failures);
    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (!f) {
            fprintf(stderr, "cuda_kernel_lab: cannot write %s\n", json_path);
            return 2;
        }
        fprintf(f, "{\"device\": \"%s\", \"sm\": %d, \"copy_gbs\": %.1f, \"failures\": %d, \"entries\": [", prop.name,
                prop.major * 10 + prop.minor, copy_gbs, L.failures);
        for (size_t i = 0; i < L.results.size(); i++) {
            const result &r = L.results[i];
            fprintf(f, "%s\n {\"kind\": \"%s\", \"type\": \"%s\", \"kernel\": \"%s\", \"bytes\": %.0f, \"us\": %.3f, "
                       "\"us_pdl\": %.3f, \"checked\": %s, \"ok\": %s}",
                    i ? "," : "", r.kind.c_str(), r.type.c_str(), r.variant.c_str(), r.bytes, r.us, r.us_pdl,
                    r.checked ? "true" : "false", r.ok ? "true" : "false");
        }
        fprintf(f, "\n]}\n");
        fclose(f);
    }
    return L.failures ? 1 : 0;
}
