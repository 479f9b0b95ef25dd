/* test_cuda_gemv.cu: the kernels of cuda/gemv_ternary.cu and cuda/gemv_float.cu on a GPU against the CPU reference
 * (cpu_fallback/ops_ref.c, quants.c), then timings at Trinity-1.1B shapes. First, on the host (no GPU needed), the
 * lane arithmetic of cuda/ternary_lane.cuh: the lean kernels' block sums (TQ2_0: masked planes; TQ1_0: activations
 * in registers) equal the classic ones for every code and activation pattern tried. Exit status 1 on any mismatch, 77 (skipped, after the host checks) where no
 * GPU is present. Expect: int8 ternary rows (classic and lean kernels), quantized activations and get_row bitwise equal;
 * f32-mode and float types within 1e-6 of sum|w x| per row (F32 also against cuBLAS's Sgemv); the fused launches of trn_cuda_ternary as check_fused
 * says, and the folded ends of a step (embedding row in, greedy argmax out) as check_folded says. */
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
extern "C" {
extern "C" {
#include "host/tensor_types.h"
#include "cpu_fallback/ops.h"
#include "cpu_fallback/quants.h"
}
}
#include "cuda/cuda_ops.h"
#include "cuda/ternary_lane.cuh"
#include "cuda_test_util.cuh"


static double row_err(const trn_matrix *m, const float *x, const float *got, const float *want) {
    std::vector<float> w((size_t)m->cols);
    double worst = 0;
    for (int64_t r = 0; r < m->rows; r++) {
        trn_dequantize_row(m->type, (const uint8_t *)m->data + r * m->row_bytes, w.data(), m->cols);
        double s = 1e-30;
        for (int64_t i = 0; i < m->cols; i++) s += fabs((double)w[(size_t)i] * x[i]);
        double e = fabs((double)got[r] - want[r]) / s;
        if (!(e <= worst)) worst = e;
    }
    return worst;
}

struct dev_matrix { trn_cuda_matrix m; std::vector<uint8_t> file; size_t file_rb; };

/* file rows of any type; ternary ones split into codes + scales as cuda_backend.cu does */
static dev_matrix make(trn_type t, int64_t rows, int64_t cols) {
    dev_matrix dm{};
    const size_t rb = trn_row_bytes(t, cols);
    dm.file.resize((size_t)rows * rb);
    dm.file_rb = rb;
    std::vector<float> f((size_t)cols);
    if (t == TRN_TYPE_Q4_K || t == TRN_TYPE_Q6_K) {
        for (auto &b : dm.file) b = brand();
        const size_t bb = t == TRN_TYPE_Q4_K ? 144 : 210;
        for (size_t k = 0; k < dm.file.size() / bb; k++) {
            trn_fp16 d = trn_f32_to_fp16(frand(0.0005f, 0.01f)), dm2 = trn_f32_to_fp16(frand(0.0f, 0.01f));
            if (t == TRN_TYPE_Q4_K) { memcpy(&dm.file[k * bb], &d, 2); memcpy(&dm.file[k * bb + 2], &dm2, 2); }
            else memcpy(&dm.file[k * bb + 208], &d, 2);
        }
    } else if (t == TRN_TYPE_TQ2_0 || t == TRN_TYPE_TQ1_0) {
        dm.file = random_ternary_rows(t, rows, cols);
        dm.m = upload_ternary(t, dm.file, rows, cols);
        return dm;
    } else {
        for (int64_t r = 0; r < rows; r++) {
            for (auto &v : f) v = frand(-1.0f, 1.0f);
            trn_quantize_row(t, f.data(), dm.file.data() + (size_t)r * rb, cols);
        }
    }
    dm.m = {t, rows, cols, up(dm.file.data(), dm.file.size()), nullptr, rb};
    return dm;
}

static void check(trn_type t, int64_t rows, int64_t cols) {
    dev_matrix dm = make(t, rows, cols);
    trn_matrix cm = {t, dm.file.data(), rows, cols, dm.file_rb, TRN_LAYOUT_ROWS};
    std::vector<float> x((size_t)cols);
    for (auto &v : x) v = frand(-2.0f, 2.0f);
    float *dx = up(x.data(), x.size()), *dy;
    CK(cudaMalloc(&dy, (size_t)rows * 4));
    std::vector<float> want((size_t)rows);
    const bool tern = t == TRN_TYPE_TQ2_0 || t == TRN_TYPE_TQ1_0;
    if (tern) {
        const int nb = (int)(cols / 256);
        std::vector<trn_block_q8_act> xq((size_t)nb);
        trn_cpu_ops_ref()->quantize_act(x.data(), xq.data(), cols);
        trn_cuda_q8_block *dxq;
        CK(cudaMalloc(&dxq, (size_t)nb * sizeof(trn_cuda_q8_block)));
        LK(trn_cuda_quantize_act(dx, dxq, cols, nullptr));
        auto gq = down(dxq, (size_t)nb);
        if (memcmp(gq.data(), xq.data(), (size_t)nb * 264)) { failures++; printf("FAIL quantize_act cols %lld\n", (long long)cols); }
        trn_cpu_ops_ref()->matvec(&cm, x.data(), xq.data(), want.data(), 0, rows);
        LK(trn_cuda_gemv_ternary(&dm.m, dx, dxq, dy, nullptr));
        auto y = down(dy, (size_t)rows);
        const bool same = memcmp(y.data(), want.data(), (size_t)rows * 4) == 0;
        if (!same) { failures++; printf("FAIL %s int8 %lldx%lld not bitwise (row 0: %.9g vs %.9g, err %.3g)\n", trn_type_name(t), (long long)rows, (long long)cols, y[0], want[0], row_err(&cm, x.data(), y.data(), want.data())); }
        /* the lean kernel (where it serves the shape; the classic one elsewhere), the same bits */
        trn_cuda_ternary_op op = {};
        op.n_mat = 1; op.w[0] = dm.m; op.input = TRN_CUDA_IN_XQ; op.xq = dxq; op.output = TRN_CUDA_OUT_STORE; op.y = dy;
        op.kernel = TRN_CUDA_TERNARY_LEAN;
        CK(cudaMemset(dy, 0xff, (size_t)rows * 4));
        LK(trn_cuda_ternary(&op, 0, nullptr));
        y = down(dy, (size_t)rows);
        if (memcmp(y.data(), want.data(), (size_t)rows * 4)) { failures++; printf("FAIL %s int8 lean %lldx%lld not bitwise (row 0: %.9g vs %.9g)\n", trn_type_name(t), (long long)rows, (long long)cols, y[0], want[0]); }
        CK(cudaFree(dxq));
        trn_cpu_ops_ref()->matvec(&cm, x.data(), NULL, want.data(), 0, rows);
        LK(trn_cuda_gemv_ternary(&dm.m, dx, nullptr, dy, nullptr));
        y = down(dy, (size_t)rows);
        double e = row_err(&cm, x.data(), y.data(), want.data());
        if (!(e < 1e-6)) { failures++; printf("FAIL %s f32 %lldx%lld err %.3g\n", trn_type_name(t), (long long)rows, (long long)cols, e); }
        printf("%-6s %6lld x %-6lld int8 %s, f32 err %.2g\n", trn_type_name(t), (long long)rows, (long long)cols, same ? "bitwise" : "DIFFERS", e);
    } else {
        trn_cpu_ops_ref()->matvec(&cm, x.data(), NULL, want.data(), 0, rows);
        LK(trn_cuda_gemv_float(&dm.m, dx, dy, nullptr));
        auto y = down(dy, (size_t)rows);
        double e = row_err(&cm, x.data(), y.data(), want.data());
        if (!(e < 1e-6)) failures++;
        printf("%-6s %6lld x %-6lld err %.2g%s", trn_type_name(t), (long long)rows, (long long)cols, e, e < 1e-6 ? "" : "  FAIL");
        if (t == TRN_TYPE_F32) { /* and against cuBLAS: W row-major is the column-major cols x rows matrix W^T */
            cublasHandle_t handle;
            float *dref, one = 1.0f, zero = 0.0f;
            CK(cudaMalloc(&dref, (size_t)rows * 4));
            if (cublasCreate(&handle) != CUBLAS_STATUS_SUCCESS ||
                cublasSgemv(handle, CUBLAS_OP_T, (int)cols, (int)rows, &one, (const float *)dm.m.qs, (int)cols, dx, 1,
                            &zero, dref, 1) != CUBLAS_STATUS_SUCCESS) { failures++; printf("  FAIL cublasSgemv"); }
            else {
                auto r = down(dref, (size_t)rows);
                const double ec = row_err(&cm, x.data(), y.data(), r.data());
                if (!(ec < 1e-6)) failures++;
                printf(", vs cuBLAS %.2g%s", ec, ec < 1e-6 ? "" : "  FAIL");
                cublasDestroy(handle);
            }
            CK(cudaFree(dref));
        }
        printf("\n");
    }
    /* get_row of the last row, bitwise */
    int32_t idx = (int32_t)(rows - 1), *didx = up(&idx, 1);
    float *drow;
    CK(cudaMalloc(&drow, (size_t)cols * 4));
    LK(trn_cuda_get_row(&dm.m, didx, drow, nullptr));
    auto got = down(drow, (size_t)cols);
    std::vector<float> wrow((size_t)cols);
    trn_dequantize_row(t, dm.file.data() + (size_t)(rows - 1) * dm.file_rb, wrow.data(), cols);
    if (memcmp(got.data(), wrow.data(), (size_t)cols * 4)) { failures++; printf("FAIL get_row %s cols %lld\n", trn_type_name(t), (long long)cols); }
    CK(cudaFree(drow)); CK(cudaFree(didx)); CK(cudaFree(dx)); CK(cudaFree(dy));
    CK(cudaFree((void *)dm.m.qs)); if (dm.m.d) CK(cudaFree((void *)dm.m.d));
}


/* trn_cuda_ternary's fused prologues and epilogues against the CPU composition of the same nodes. QUANT input:
 * bitwise (quantization and block sums are exact; RoPE and the add are single rounded operations); NORM_QUANT: the
 * fused RMSNorm sums its squares in another order, so NMSE <= 1e-5 (a last-bit change can move one int8 value);
 * SWIGLU: CUDA's expf against glibc's, relative error <= 1e-5. */
static double nmse(const float *a, const float *b, size_t n) {
    double num = 0, den = 1e-30;
    for (size_t i = 0; i < n; i++) { num += ((double)a[i] - b[i]) * ((double)a[i] - b[i]); den += (double)b[i] * b[i]; }
    return num / den;
}

static void check_fused(trn_type t, int64_t cols, int n_head, int n_kv, int hd, int64_t ff, trn_cuda_ternary_kernel kernel) {
    const trn_cpu_ops *ref = trn_cpu_ops_ref();
    const int nb = (int)(cols / 256), q_rows = n_head * hd, kv_rows = n_kv * hd, n_ctx = 5, pos = 3;
    dev_matrix wq = make(t, q_rows, cols), wk = make(t, kv_rows, cols), wv = make(t, kv_rows, cols);
    dev_matrix wg = make(t, ff, cols), wu = make(t, ff, cols);
    auto view = [&](dev_matrix &d, int64_t rows) { return trn_matrix{t, d.file.data(), rows, cols, d.file_rb, TRN_LAYOUT_ROWS}; };
    trn_matrix cq = view(wq, q_rows), ck = view(wk, kv_rows), cv = view(wv, kv_rows), cg = view(wg, ff), cu = view(wu, ff);
    std::vector<float> x((size_t)cols), norm((size_t)cols), h((size_t)cols), table((size_t)n_ctx * hd);
    for (auto &v : x) v = frand(-3.0f, 3.0f);
    for (auto &v : norm) v = frand(0.5f, 1.5f);
    for (int p = 0; p < n_ctx; p++) for (int i = 0; i < hd / 2; i++) { const double a = p * pow(10000.0, -2.0 * i / hd); table[(size_t)p * hd + 2 * i] = (float)cos(a); table[(size_t)p * hd + 2 * i + 1] = (float)sin(a); }
    std::vector<trn_block_q8_act> xq((size_t)nb);
    float *dx = up(x.data(), x.size()), *dnorm = up(norm.data(), norm.size()), *dtable = up(table.data(), table.size());
    int32_t *dpos = up(&pos, 1);
    const char *name = trn_type_name(t);
    auto fail = [&](const char *what, double err) { failures++; printf("FAIL fused %s %s cols %lld: %.3g\n", name, what, (long long)cols, err); };
    trn_cuda_ternary_op op = {};

    /* QKV, QUANT input: q roped, row pos of the caches written, the others untouched (NaN) */
    std::vector<float> q((size_t)q_rows), k((size_t)kv_rows), v((size_t)kv_rows);
    ref->quantize_act(x.data(), xq.data(), cols);
    ref->matvec(&cq, x.data(), xq.data(), q.data(), 0, q_rows);
    ref->matvec(&ck, x.data(), xq.data(), k.data(), 0, kv_rows);
    ref->matvec(&cv, x.data(), xq.data(), v.data(), 0, kv_rows);
    ref->rope(q.data(), q.data(), n_head, hd, table.data() + (size_t)pos * hd);
    ref->rope(k.data(), k.data(), n_kv, hd, table.data() + (size_t)pos * hd);
    std::vector<float> nan_cache((size_t)n_ctx * kv_rows, NAN);
    float *dq, *dkc = up(nan_cache.data(), nan_cache.size()), *dvc = up(nan_cache.data(), nan_cache.size());
    CK(cudaMalloc(&dq, (size_t)q_rows * 4));
    op.n_mat = 3; op.w[0] = wq.m; op.w[1] = wk.m; op.w[2] = wv.m;
    op.input = TRN_CUDA_IN_QUANT; op.x = dx;
    op.output = TRN_CUDA_OUT_QKV; op.y = dq; op.k_cache = dkc; op.v_cache = dvc; op.rope_cos_sin = dtable; op.pos = dpos; op.head_dim = hd;
    op.kernel = kernel; LK(trn_cuda_ternary(&op, 1, nullptr));
    auto gq = down(dq, (size_t)q_rows), gk = down(dkc, nan_cache.size()), gv = down(dvc, nan_cache.size());
    if (memcmp(gq.data(), q.data(), q.size() * 4)) fail("QKV q", nmse(gq.data(), q.data(), q.size()));
    if (memcmp(&gk[(size_t)pos * kv_rows], k.data(), k.size() * 4)) fail("QKV k", nmse(&gk[(size_t)pos * kv_rows], k.data(), k.size()));
    if (memcmp(&gv[(size_t)pos * kv_rows], v.data(), v.size() * 4)) fail("QKV v", nmse(&gv[(size_t)pos * kv_rows], v.data(), v.size()));
    for (int p = 0; p < n_ctx; p++) for (int i = 0; i < kv_rows && p != pos; i++)
        if (!std::isnan(gk[(size_t)p * kv_rows + i]) || !std::isnan(gv[(size_t)p * kv_rows + i])) { fail("QKV wrote another cache row", p); p = n_ctx; break; }

    /* STORE with NORM_QUANT (the LM head's fusion) on the q matrix */
    ref->rmsnorm(x.data(), norm.data(), h.data(), cols, 1e-5f, 0, cols);
    ref->quantize_act(h.data(), xq.data(), cols);
    ref->matvec(&cq, h.data(), xq.data(), q.data(), 0, q_rows);
    op = {}; op.n_mat = 1; op.w[0] = wq.m; op.input = TRN_CUDA_IN_NORM_QUANT; op.x = dx; op.norm = dnorm; op.eps = 1e-5f;
    op.output = TRN_CUDA_OUT_STORE; op.y = dq;
    op.kernel = kernel; LK(trn_cuda_ternary(&op, 0, nullptr));
    gq = down(dq, (size_t)q_rows);
    const double e_norm = nmse(gq.data(), q.data(), q.size());
    if (!(e_norm <= 1e-5)) fail("NORM_QUANT", e_norm);

    /* SWIGLU with NORM_QUANT */
    std::vector<float> g((size_t)ff), u((size_t)ff), act((size_t)ff);
    ref->matvec(&cg, h.data(), xq.data(), g.data(), 0, ff);
    ref->matvec(&cu, h.data(), xq.data(), u.data(), 0, ff);
    ref->swiglu(g.data(), u.data(), act.data(), ff);
    float *dact;
    CK(cudaMalloc(&dact, (size_t)ff * 4));
    op = {}; op.n_mat = 2; op.w[0] = wg.m; op.w[1] = wu.m; op.input = TRN_CUDA_IN_NORM_QUANT; op.x = dx; op.norm = dnorm;
    op.eps = 1e-5f; op.output = TRN_CUDA_OUT_SWIGLU; op.y = dact;
    op.kernel = kernel; LK(trn_cuda_ternary(&op, 1, nullptr));
    auto gact = down(dact, (size_t)ff);
    const double e_swiglu = nmse(gact.data(), act.data(), act.size());
    if (!(e_swiglu <= 1e-5)) fail("SWIGLU", e_swiglu);

    /* ADD with QUANT input (the residual add): y = y0 + W x, bitwise */
    std::vector<float> y0((size_t)q_rows), want((size_t)q_rows);
    for (auto &e : y0) e = frand(-1.0f, 1.0f);
    ref->quantize_act(x.data(), xq.data(), cols);
    ref->matvec(&cq, x.data(), xq.data(), want.data(), 0, q_rows);
    ref->add(y0.data(), want.data(), want.data(), q_rows);
    CK(cudaMemcpy(dq, y0.data(), y0.size() * 4, cudaMemcpyHostToDevice));
    op = {}; op.n_mat = 1; op.w[0] = wq.m; op.input = TRN_CUDA_IN_QUANT; op.x = dx; op.output = TRN_CUDA_OUT_ADD; op.y = dq;
    op.kernel = kernel; LK(trn_cuda_ternary(&op, 1, nullptr));
    gq = down(dq, (size_t)q_rows);
    if (memcmp(gq.data(), want.data(), want.size() * 4)) fail("ADD", nmse(gq.data(), want.data(), want.size()));
    printf("fused %-6s %-7s cols %-5lld q %d kv %d hd %d ff %lld: QKV, ADD bitwise checked; NORM_QUANT nmse %.2g, SWIGLU nmse %.2g\n",
           name, kernel == TRN_CUDA_TERNARY_LEAN ? "lean" : "classic", (long long)cols, q_rows, kv_rows, hd, (long long)ff, e_norm, e_swiglu);
    for (void *p : {(void *)dx, (void *)dnorm, (void *)dtable, (void *)dpos, (void *)dq, (void *)dkc, (void *)dvc, (void *)dact}) CK(cudaFree(p));
    for (dev_matrix *d : {&wq, &wk, &wv, &wg, &wu}) { CK(cudaFree((void *)d->m.qs)); CK(cudaFree((void *)d->m.d)); }
}

/* The folded ends of a step (TRN_CUDA_FOLD_ENDS, cuda_backend.cu). EMBED_NORM_QUANT: QKV from token 3's row of an
 * embedding of each type get_row reads, against get_row then NORM_QUANT: q and the cache rows bitwise, the row
 * written to x_row bitwise get_row's, and the token stored at history[pos]. The argmax of a STORE launch: rows r and
 * r + rows / 2 equal (each maximum present twice, in different CTAs: the lower id must win), logits bitwise those
 * without the argmax, the id the host's first maximum of them; three inputs, the first two launched twice in a row
 * (the scratch resets itself). */
static void check_folded(trn_type t, int64_t cols, trn_cuda_ternary_kernel kernel) {
    const int n_head = 4, n_kv = 2, hd = 64, q_rows = n_head * hd, kv_rows = n_kv * hd, n_ctx = 5, pos = 3;
    const int vocab = 5, token = 3;
    dev_matrix wq = make(t, q_rows, cols), wk = make(t, kv_rows, cols), wv = make(t, kv_rows, cols);
    std::vector<float> norm((size_t)cols), table((size_t)n_ctx * hd);
    for (auto &v : norm) v = frand(0.5f, 1.5f);
    for (auto &v : table) v = frand(-1.0f, 1.0f);
    float *dnorm = up(norm.data(), norm.size()), *dtable = up(table.data(), table.size());
    const int32_t pos_v = pos, token_v = token;
    int32_t *dpos = up(&pos_v, 1), *dtoken = up(&token_v, 1);
    const char *name = trn_type_name(t);
    /* q, then the k and v cache rows at pos, of one QKV launch with the input op_in describes */
    auto qkv = [&](trn_cuda_ternary_op op) {
        std::vector<float> nan_cache((size_t)n_ctx * kv_rows, NAN);
        float *dq, *dkc = up(nan_cache.data(), nan_cache.size()), *dvc = up(nan_cache.data(), nan_cache.size());
        CK(cudaMalloc(&dq, (size_t)q_rows * 4));
        op.n_mat = 3; op.w[0] = wq.m; op.w[1] = wk.m; op.w[2] = wv.m; op.norm = dnorm; op.eps = 1e-5f;
        op.output = TRN_CUDA_OUT_QKV; op.y = dq; op.k_cache = dkc; op.v_cache = dvc; op.rope_cos_sin = dtable;
        op.pos = dpos; op.head_dim = hd; op.kernel = kernel;
        LK(trn_cuda_ternary(&op, 0, nullptr));
        std::vector<float> out = down(dq, (size_t)q_rows), kc = down(dkc, nan_cache.size()), vc = down(dvc, nan_cache.size());
        out.insert(out.end(), kc.begin() + (size_t)pos * kv_rows, kc.begin() + (size_t)(pos + 1) * kv_rows);
        out.insert(out.end(), vc.begin() + (size_t)pos * kv_rows, vc.begin() + (size_t)(pos + 1) * kv_rows);
        for (void *p : {(void *)dq, (void *)dkc, (void *)dvc}) CK(cudaFree(p));
        return out;
    };
    for (trn_type et : {TRN_TYPE_F32, TRN_TYPE_F16, TRN_TYPE_Q8_0, t}) {
        dev_matrix emb = make(et, vocab, cols);
        float *drow, *dx_row;
        CK(cudaMalloc(&drow, (size_t)cols * 4));
        CK(cudaMalloc(&dx_row, (size_t)cols * 4));
        std::vector<int32_t> hist((size_t)n_ctx, -1);
        int32_t *dhist = up(hist.data(), hist.size());
        LK(trn_cuda_get_row(&emb.m, dtoken, drow, nullptr));
        trn_cuda_ternary_op op = {};
        op.input = TRN_CUDA_IN_NORM_QUANT; op.x = drow;
        const std::vector<float> want = qkv(op);
        op = {};
        op.input = TRN_CUDA_IN_EMBED_NORM_QUANT; op.embed = emb.m; op.token = dtoken; op.x_row = dx_row; op.history = dhist;
        const std::vector<float> got = qkv(op);
        const auto row = down(drow, (size_t)cols), x_row = down(dx_row, (size_t)cols);
        hist = down(dhist, hist.size());
        if (memcmp(got.data(), want.data(), want.size() * 4)) { failures++; printf("FAIL folded %s: EMBED_NORM_QUANT from %s: QKV differs from get_row + NORM_QUANT\n", name, trn_type_name(et)); }
        if (memcmp(x_row.data(), row.data(), row.size() * 4)) { failures++; printf("FAIL folded %s: EMBED_NORM_QUANT from %s: x_row differs from get_row\n", name, trn_type_name(et)); }
        if (hist[(size_t)pos] != token || hist[0] != -1) { failures++; printf("FAIL folded %s: EMBED_NORM_QUANT did not store token %d at history[%d] alone\n", name, token, pos); }
        for (void *p : {(void *)drow, (void *)dx_row, (void *)dhist, (void *)emb.m.qs, (void *)emb.m.d}) if (p) CK(cudaFree(p));
    }

    /* the argmax: a head of 2 x 1000 rows, the second half a copy of the first (1000: not a multiple of the warps of
     * the emulator's grid either, so equal rows fall to different warps and CTAs there too) */
    const int half = 1000, rows = 2 * half;
    std::vector<uint8_t> file = random_ternary_rows(t, half, cols);
    file.insert(file.end(), file.begin(), file.end());
    const trn_cuda_matrix head = upload_ternary(t, file, rows, cols);
    void *scratch;
    CK(cudaMalloc(&scratch, trn_cuda_argmax_scratch_bytes()));
    CK(cudaMemset(scratch, 0, trn_cuda_argmax_scratch_bytes()));
    float *dy, *dy_plain;
    int32_t *dnext;
    CK(cudaMalloc(&dy, (size_t)rows * 4));
    CK(cudaMalloc(&dy_plain, (size_t)rows * 4));
    CK(cudaMalloc(&dnext, 4));
    int checked = 0;
    for (int launch = 0; launch < 3; launch++) {
        std::vector<float> x((size_t)cols);
        for (auto &v : x) v = frand(-3.0f, 3.0f);
        float *dx = up(x.data(), x.size());
        trn_cuda_ternary_op op = {};
        op.n_mat = 1; op.w[0] = head; op.input = TRN_CUDA_IN_NORM_QUANT; op.x = dx; op.norm = dnorm; op.eps = 1e-5f;
        op.output = TRN_CUDA_OUT_STORE; op.y = dy_plain; op.kernel = kernel;
        LK(trn_cuda_ternary(&op, 0, nullptr));
        op.y = dy; op.argmax = scratch; op.next = dnext;
        LK(trn_cuda_ternary(&op, 1, nullptr));
        if (launch < 2) LK(trn_cuda_ternary(&op, 1, nullptr)); /* the same input again: the same id */
        const auto y = down(dy, (size_t)rows), y_plain = down(dy_plain, (size_t)rows);
        const int32_t next = down(dnext, 1)[0];
        int want = 0;
        for (int r = 1; r < rows; r++) if (y_plain[(size_t)r] > y_plain[(size_t)want]) want = r;
        if (memcmp(y.data(), y_plain.data(), y.size() * 4)) { failures++; printf("FAIL folded %s: the argmax changed the logits\n", name); }
        if (next != want || want >= half || y_plain[(size_t)want] != y_plain[(size_t)want + half]) { failures++; printf("FAIL folded %s: argmax %d, want %d (the first of two equal maxima)\n", name, next, want); }
        else checked++;
        CK(cudaFree(dx));
    }
    printf("folded %-6s %-7s cols %-5lld: EMBED_NORM_QUANT from F32, F16, Q8_0, %s rows bitwise get_row + NORM_QUANT; argmax right on %d of 3 inputs (ties across CTAs)\n",
           name, kernel == TRN_CUDA_TERNARY_LEAN ? "lean" : "classic", (long long)cols, name, checked);
    for (void *p : {(void *)dnorm, (void *)dtable, (void *)dpos, (void *)dtoken, scratch, (void *)dy, (void *)dy_plain, (void *)dnext, (void *)head.qs, (void *)head.d}) CK(cudaFree(p));
    for (dev_matrix *d : {&wq, &wk, &wv}) { CK(cudaFree((void *)d->m.qs)); CK(cudaFree((void *)d->m.d)); }
}

static void bench(trn_type t, int64_t rows, int64_t cols, bool int8, trn_cuda_ternary_kernel kernel = TRN_CUDA_TERNARY_AUTO) {
    dev_matrix dm = make(t, rows, cols);
    std::vector<float> x((size_t)cols);
    for (auto &v : x) v = frand(-2.0f, 2.0f);
    float *dx = up(x.data(), x.size()), *dy;
    CK(cudaMalloc(&dy, (size_t)rows * 4));
    trn_cuda_q8_block *dxq = nullptr;
    const bool tern = t == TRN_TYPE_TQ2_0 || t == TRN_TYPE_TQ1_0;
    if (tern && int8) { CK(cudaMalloc(&dxq, (size_t)(cols / 256) * 264)); LK(trn_cuda_quantize_act(dx, dxq, cols, nullptr)); }
    trn_cuda_ternary_op op = {};
    op.n_mat = 1; op.w[0] = dm.m; op.input = dxq ? TRN_CUDA_IN_XQ : TRN_CUDA_IN_F32; op.x = dx; op.xq = dxq;
    op.output = TRN_CUDA_OUT_STORE; op.y = dy; op.kernel = kernel;
    auto launch = [&] { if (tern) LK(trn_cuda_ternary(&op, 0, nullptr)); else LK(trn_cuda_gemv_float(&dm.m, dx, dy, nullptr)); };
    for (int i = 0; i < 20; i++) launch();
    cudaEvent_t a, b; CK(cudaEventCreate(&a)); CK(cudaEventCreate(&b));
    const int reps = 200;
    CK(cudaEventRecord(a));
    for (int i = 0; i < reps; i++) launch();
    CK(cudaEventRecord(b)); CK(cudaEventSynchronize(b));
    float ms; CK(cudaEventElapsedTime(&ms, a, b));
    const double bytes = (double)rows * dm.m.row_bytes + (tern ? rows * (cols / 256) * 2.0 : 0.0);
    const double us = ms * 1000.0 / reps;
    printf("bench %-6s %s%s %6lld x %-6lld %8.2f us  %7.1f GB/s (weights)\n", trn_type_name(t), tern ? (int8 ? "int8" : "f32 ") : "    ", kernel == TRN_CUDA_TERNARY_LEAN ? " lean" : "     ", (long long)rows, (long long)cols, us, bytes / us * 1e-3);
    if (dxq) CK(cudaFree(dxq));
    CK(cudaFree(dx)); CK(cudaFree(dy)); CK(cudaFree((void *)dm.m.qs)); if (dm.m.d) CK(cudaFree((void *)dm.m.d));
}

/* Host: tq2_planes_isum (lean) against tq2_lane_isum (classic) for random code words (every 2-bit value, incl. the
 * unused code 3), random activations over all of -128..127, and the extremes. */
static void check_lane_arithmetic() {
    std::vector<uint8_t> act(kActBlock);
    int checked = 0, bad = 0;
    for (int trial = 0; trial < 20000; trial++) {
        const int mode = trial % 4; /* random; all codes 2 and activations 127; codes 3 and -128; codes 0 */
        for (auto &a : act) a = mode == 0 ? brand() : mode == 1 ? 127 : mode == 2 ? 0x80 : brand();
        uint4 c;
        uint32_t *w = &c.x;
        for (int i = 0; i < 4; i++) w[i] = mode == 0 ? (uint32_t)rnd() : mode == 1 ? 0xaaaaaaaau : mode == 2 ? 0xffffffffu : 0u;
        for (int part = 0; part < 4; part++) {
            int4 a[4];
            for (int l = 0; l < 4; l++) memcpy(&a[l], tq2_lane_acts(act.data(), part) + 32 * l, 16);
            const int want = tq2_lane_isum(c, act.data(), part), got = tq2_planes_isum(c, a);
            if (got != want && bad++ < 5) printf("FAIL lane arithmetic: planes %d, classic %d (trial %d part %d)\n", got, want, trial, part);
            checked++;
        }
    }
    if (bad) failures++;
    printf("host: lean TQ2_0 block sums (masked planes, u8 x s8 dp4a) equal the classic ones in %d of %d lane cases\n", checked - bad, checked);
    /* TQ1_0: every code word j of a block, random words (incl. bytes >= 243) and activations */
    checked = bad = 0;
    for (int trial = 0; trial < 20000; trial++) {
        for (auto &a : act) a = brand();
        const uint32_t w = trial % 7 == 0 ? 0xffffffffu : (uint32_t)rnd();
        for (int j = 0; j < 13; j++) {
            int a[5];
            tq1_lane_acts(act.data(), j, a);
            const int want = tq1_word_isum(w, j, act.data()), got = tq1_regs_isum(w, a);
            if (got != want && bad++ < 5) printf("FAIL TQ1_0 lane arithmetic: registers %d, classic %d (trial %d word %d)\n", got, want, trial, j);
            checked++;
        }
    }
    if (bad) failures++;
    printf("host: TQ1_0 word sums by quotients (tq1_regs_isum, both kernels) equal the digit-by-digit ones in %d of %d lane cases\n", checked - bad, checked);
}

int main() {
    check_lane_arithmetic();
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        if (failures) { printf("FAILED: %d host check failures\n", failures); return 1; }
        printf("SKIPPED: no usable GPU: the CUDA kernels compiled and linked, their GPU tests did not run (host checks passed)\n");
        return 77;
    }
    cudaDeviceProp p; CK(cudaGetDeviceProperties(&p, 0));
    printf("device: %s, %d SMs\n", p.name, p.multiProcessorCount);
    const trn_type all[] = {TRN_TYPE_TQ2_0, TRN_TYPE_TQ1_0, TRN_TYPE_F32, TRN_TYPE_F16, TRN_TYPE_BF16, TRN_TYPE_Q8_0, TRN_TYPE_Q4_K, TRN_TYPE_Q6_K};
    const int64_t shapes[][2] = {{1, 256}, {7, 512}, {37, 2304}, {256, 2048}, {2048, 5632}, {1000, 8448}, {5000, 2048}};
    for (trn_type t : all) for (auto &s : shapes) check(t, s[0], s[1]);
    for (trn_type t : {TRN_TYPE_F32, TRN_TYPE_F16, TRN_TYPE_BF16}) for (int64_t c : {7, 64, 172, 33}) check(t, 9, c);
    for (int64_t c : {32, 64, 96, 288}) check(TRN_TYPE_Q8_0, 9, c);
    for (trn_type t : {TRN_TYPE_TQ2_0, TRN_TYPE_TQ1_0}) {
        for (trn_cuda_ternary_kernel k : {TRN_CUDA_TERNARY_AUTO, TRN_CUDA_TERNARY_LEAN}) {
            check_fused(t, 2048, 32, 4, 64, 5632, k); /* Trinity-1.1B */
            check_fused(t, 512, 4, 2, 16, 40, k);     /* 2 blocks per row: lanes past the row idle */
            check_fused(t, 5632, 2, 1, 8, 24, k);     /* 22 blocks: the lean kernel's several steps per row */
            check_fused(t, 512, 2, 1, 24, 40, k);     /* a head size not a power of two: QKV falls back to classic */
            check_folded(t, 2048, k);
        }
    }
    printf("%s: %d failures\n", failures ? "FAILED" : "all checks passed", failures);
#ifdef TRN_CUDA_EMULATOR
    printf("timings skipped: the CUDA emulator runs the kernels on the CPU\n");
    return failures ? 1 : 0;
#endif
    const int64_t trinity[][2] = {{2048, 2048}, {256, 2048}, {5632, 2048}, {2048, 5632}, {32000, 2048}};
    for (auto &s : trinity) {
        bench(TRN_TYPE_TQ2_0, s[0], s[1], true); bench(TRN_TYPE_TQ2_0, s[0], s[1], true, TRN_CUDA_TERNARY_LEAN); bench(TRN_TYPE_TQ2_0, s[0], s[1], false);
        bench(TRN_TYPE_TQ1_0, s[0], s[1], true); if (s[1] <= 2048) bench(TRN_TYPE_TQ1_0, s[0], s[1], true, TRN_CUDA_TERNARY_LEAN);
    }
    bench(TRN_TYPE_Q6_K, 32000, 2048, false); bench(TRN_TYPE_F16, 32000, 2048, false); bench(TRN_TYPE_Q8_0, 32000, 2048, false); bench(TRN_TYPE_Q4_K, 32000, 2048, false);
    return failures ? 1 : 0;
}
