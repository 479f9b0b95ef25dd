/* test_cuda_gemm.cu: the prefill ternary GEMM (cuda/gemm_ternary.cu, trn_cuda_gemm_ternary).
 *
 * On the host (no GPU needed), the index math of cuda/gemm_fragment.cuh:
 *  - the fragment layout: a model of mma.sync m16n8k32 s8 written from the PTX ISA's element tables (a_i, b_i, c_i
 *    per lane), fed with the registers load_a_frag / load_b_frag read from the tiles, gives back through
 *    frag_c_row / frag_c_token the plain product of the tiles, over a whole block (8 k-steps, the 2 x 4 mma tiles of
 *    a warp) of random int8 data and the extremes;
 *  - the unpacking: tq2_unpack_part and tq1_unpack_word write into a tile row the codes trn_tq2_0_block_codes and
 *    trn_tq1_0_block_codes give (cpu_fallback/quants.c), for random bytes (TQ2_0 code 3, TQ1_0 bytes >= 243);
 *  - the whole kernel emulated (64 x 64 tiles, unpacking, the mma model, the fold in block order) is bitwise the CPU
 *    reference matvec per token.
 * On a GPU: random TQ2_0 and TQ1_0 matrices, n_tokens in {1, 7, 64, 65, 200}: every result bitwise equal to
 * trn_cuda_gemv_ternary's int8 mode token by token and to the CPU reference (cpu_fallback/ops_ref.c), outputs past
 * the rows (ld_y > rows) untouched; then timings at Trinity-1.1B shapes with 512 tokens (a benchmark print).
 * Exit status 1 on any mismatch, 77 (skipped, after the host checks) where no GPU is present. */
#include <cuda_runtime.h>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
extern "C" {
#include "host/tensor_types.h"
#include "cpu_fallback/ops.h"
#include "cpu_fallback/quants.h"
}
#include "cuda/cuda_ops.h"
#include "cuda/gemm_fragment.cuh"
#include "cuda_test_util.cuh"


/* ---- host: a model of mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32, from the PTX ISA's fragment tables ---- */

/* d[lane][4] = A B + c for the warp's registers a[lane][4] (A 16 x 32 s8), b[lane][2] (B 32 x 8 s8). Element i of a
 * lane's A registers (byte i % 4 of register i / 4): row groupID for i < 4 or 8 <= i < 12, else groupID + 8;
 * column threadID_in_group * 4 + (i & 3), + 16 for i >= 8. Of B (8 elements): row threadID_in_group * 4 + (i & 3),
 * + 16 for i >= 4; column groupID. Of C/D (4 int32): row groupID for i < 2, else groupID + 8; column
 * threadID_in_group * 2 + (i & 1). Returns false if a register set does not cover A or B exactly once. */
static bool mma_model(const uint32_t a[32][4], const uint32_t b[32][2], int d[32][4]) {
    int A[16][32], B[32][8], seen_a[16][32] = {}, seen_b[32][8] = {};
    for (int lane = 0; lane < 32; lane++) {
        const int group = lane >> 2, tig = lane & 3;
        for (int i = 0; i < 16; i++) {
            const int row = (i < 4 || (i >= 8 && i < 12)) ? group : group + 8;
            const int col = tig * 4 + (i & 3) + (i >= 8 ? 16 : 0);
            A[row][col] = (int8_t)(a[lane][i / 4] >> (8 * (i % 4)));
            seen_a[row][col]++;
        }
        for (int i = 0; i < 8; i++) {
            const int row = tig * 4 + (i & 3) + (i >= 4 ? 16 : 0), col = group;
            B[row][col] = (int8_t)(b[lane][i / 4] >> (8 * (i % 4)));
            seen_b[row][col]++;
        }
    }
    for (int r = 0; r < 16; r++) for (int k = 0; k < 32; k++) if (seen_a[r][k] != 1) return false;
    for (int k = 0; k < 32; k++) for (int n = 0; n < 8; n++) if (seen_b[k][n] != 1) return false;
    for (int lane = 0; lane < 32; lane++) {
        const int group = lane >> 2, tig = lane & 3;
        for (int i = 0; i < 4; i++) {
            const int row = i < 2 ? group : group + 8, col = tig * 2 + (i & 1);
            int s = 0;
            for (int k = 0; k < 32; k++) s += A[row][k] * B[k][col];
            d[lane][i] += s;
        }
    }
    return true;
}

/* One warp's block sums as block_isums_mma forms them, with the model in place of the instruction:
 * isum[lane][mi][ni][r] for the 32 rows of w_tile and 32 tokens of x_tile (pitch kGemmPitch). */
typedef int lane_isums[32][kGemmMTiles][kGemmNTiles][4];
static bool warp_isums_model(const uint8_t *w_tile, const uint8_t *x_tile, lane_isums &isum) {
    memset(isum, 0, sizeof(lane_isums));
    for (int ks = 0; ks < TRN_QK_K / kGemmMmaK; ks++)
        for (int mi = 0; mi < kGemmMTiles; mi++)
            for (int ni = 0; ni < kGemmNTiles; ni++) {
                uint32_t a[32][4], b[32][2];
                int d[32][4];
                for (int lane = 0; lane < 32; lane++) {
                    load_a_frag(w_tile, kGemmMmaM * mi, ks, lane, a[lane]);
                    load_b_frag(x_tile, kGemmMmaN * ni, ks, lane, b[lane]);
                    memcpy(d[lane], isum[lane][mi][ni], sizeof d[lane]);
                }
                if (!mma_model(a, b, d)) return false;
                for (int lane = 0; lane < 32; lane++) memcpy(isum[lane][mi][ni], d[lane], sizeof d[lane]);
            }
    return true;
}

static void check_fragments() {
    std::vector<uint8_t> w(kGemmWarpRows * kGemmPitch), x(kGemmWarpTokens * kGemmPitch);
    int checked = 0, bad = 0;
    for (int trial = 0; trial < 200; trial++) {
        const int mode = trial % 4; /* random; all 127 x -128; all -128 x -128; random x 1 */
        for (auto &v : w) v = mode == 0 || mode == 3 ? brand() : mode == 1 ? 127 : 0x80;
        for (auto &v : x) v = mode == 0 ? brand() : mode == 3 ? 1 : 0x80;
        lane_isums isum;
        if (!warp_isums_model(w.data(), x.data(), isum)) { failures++; printf("FAIL fragments: the loads do not cover A or B exactly once\n"); return; }
        for (int lane = 0; lane < 32; lane++)
            for (int mi = 0; mi < kGemmMTiles; mi++) for (int ni = 0; ni < kGemmNTiles; ni++) for (int r = 0; r < 4; r++) {
                const int row = kGemmMmaM * mi + frag_c_row(lane, r), tok = kGemmMmaN * ni + frag_c_token(lane, r);
                int want = 0;
                for (int k = 0; k < TRN_QK_K; k++) want += (int8_t)w[row * kGemmPitch + k] * (int8_t)x[tok * kGemmPitch + k];
                if (isum[lane][mi][ni][r] != want && bad++ < 5)
                    printf("FAIL fragments: lane %d tile (%d, %d) reg %d: %d, want %d (row %d token %d)\n", lane, mi, ni, r, isum[lane][mi][ni][r], want, row, tok);
                checked++;
            }
    }
    if (bad) failures++;
    printf("host: m16n8k32 fragment layout (ISA model, a warp's 2 x 4 tiles over 8 k-steps): %d of %d block sums equal the plain product\n", checked - bad, checked);
}

static void check_unpack() {
    int bad = 0;
    std::vector<uint8_t> row(kGemmPitch);
    uint8_t want[256];
    for (int trial = 0; trial < 5000; trial++) {
        trn_block_tq2_0 b2;
        for (auto &q : b2.qs) q = trial % 10 == 0 ? 0xff : brand();
        trn_tq2_0_block_codes(&b2, want);
        memset(row.data(), 0xee, row.size());
        for (int part = 0; part < 4; part++) {
            uint4 c;
            memcpy(&c, b2.qs + 16 * part, 16);
            tq2_unpack_part(c, part, row.data());
        }
        if (memcmp(row.data(), want, 256) && bad++ < 5) printf("FAIL TQ2_0 unpack (trial %d)\n", trial);
        trn_block_tq1_0 b1;
        for (auto &q : b1.qs) q = trial % 10 == 0 ? 0xff : brand();
        for (auto &q : b1.qh) q = trial % 10 == 0 ? 0xff : brand();
        trn_tq1_0_block_codes(&b1, want);
        uint8_t bytes[52];
        memcpy(bytes, b1.qs, 48);
        memcpy(bytes + 48, b1.qh, 4);
        memset(row.data(), 0xee, row.size());
        for (int j = 0; j < 13; j++) {
            uint32_t word;
            memcpy(&word, bytes + 4 * j, 4);
            tq1_unpack_word(word, j, row.data());
        }
        if (memcmp(row.data(), want, 256) && bad++ < 5) printf("FAIL TQ1_0 unpack (trial %d)\n", trial);
    }
    if (bad) failures++;
    printf("host: TQ2_0 and TQ1_0 codes unpacked into the tile equal trn_tq*_block_codes in %d of %d blocks\n", 10000 - bad, 10000);
}

/* The kernel on the host: 64 x 64 CTA tiles, 2 x 2 warps, codes unpacked block by block, the mma model, the fold;
 * against the CPU reference matvec per token, bitwise. */
static void check_emulation(trn_type t, int64_t rows, int64_t cols, int n_tokens) {
    const int nb = (int)(cols / 256);
    const size_t bb = t == TRN_TYPE_TQ2_0 ? 66 : 54, rb = trn_row_bytes(t, cols);
    std::vector<uint8_t> file = random_ternary_rows(t, rows, cols);
    trn_matrix cm = {t, file.data(), rows, cols, rb, TRN_LAYOUT_ROWS};
    std::vector<float> x((size_t)n_tokens * cols), want((size_t)n_tokens * rows), got((size_t)n_tokens * rows);
    for (auto &v : x) v = frand(-2.0f, 2.0f);
    std::vector<trn_block_q8_act> xq((size_t)n_tokens * nb);
    trn_cpu_ops_ref()->quantize_act(x.data(), xq.data(), (int64_t)n_tokens * cols);
    for (int tok = 0; tok < n_tokens; tok++)
        trn_cpu_ops_ref()->matvec(&cm, x.data() + (size_t)tok * cols, xq.data() + (size_t)tok * nb, want.data() + (size_t)tok * rows, 0, rows);
    std::vector<uint8_t> w_tile(kGemmTileRows * kGemmPitch), x_tile(kGemmTileTokens * kGemmPitch);
    float d_w[kGemmTileRows], d_x[kGemmTileTokens];
    int q_sum[kGemmTileTokens];
    for (int64_t row0 = 0; row0 < rows; row0 += kGemmTileRows)
        for (int token0 = 0; token0 < n_tokens; token0 += kGemmTileTokens) {
            static float acc[kGemmTileRows][kGemmTileTokens];
            for (auto &r : acc) for (auto &v : r) v = 0.0f;
            for (int b = 0; b < nb; b++) {
                memset(w_tile.data(), 0, w_tile.size());
                memset(x_tile.data(), 0, x_tile.size());
                for (int r = 0; r < kGemmTileRows; r++) {
                    d_w[r] = 0.0f;
                    if (row0 + r >= rows) continue;
                    const uint8_t *blk = file.data() + (size_t)(row0 + r) * rb + (size_t)b * bb;
                    trn_fp16 d;
                    memcpy(&d, blk + bb - 2, 2);
                    d_w[r] = trn_fp16_to_f32(d);
                    if (t == TRN_TYPE_TQ2_0)
                        for (int part = 0; part < 4; part++) { uint4 c; memcpy(&c, blk + 16 * part, 16); tq2_unpack_part(c, part, &w_tile[r * kGemmPitch]); }
                    else
                        for (int j = 0; j < 13; j++) { uint32_t word; memcpy(&word, blk + 4 * j, 4); tq1_unpack_word(word, j, &w_tile[r * kGemmPitch]); }
                }
                for (int k = 0; k < kGemmTileTokens; k++) {
                    d_x[k] = 0.0f;
                    q_sum[k] = 0;
                    if (token0 + k >= n_tokens) continue;
                    const trn_block_q8_act *a = &xq[(size_t)(token0 + k) * nb + b];
                    memcpy(&x_tile[k * kGemmPitch], a->q, 256);
                    d_x[k] = a->d;
                    q_sum[k] = a->sum;
                }
                for (int warp = 0; warp < kGemmThreads / 32; warp++) {
                    const int warp_row = kGemmWarpRows * (warp % kGemmWarpsM), warp_token = kGemmWarpTokens * (warp / kGemmWarpsM);
                    lane_isums isum;
                    if (!warp_isums_model(&w_tile[warp_row * kGemmPitch], &x_tile[warp_token * kGemmPitch], isum)) { failures++; return; }
                    for (int lane = 0; lane < 32; lane++)
                        for (int mi = 0; mi < kGemmMTiles; mi++) for (int ni = 0; ni < kGemmNTiles; ni++) for (int r = 0; r < 4; r++) {
                            const int row = warp_row + kGemmMmaM * mi + frag_c_row(lane, r), tok = warp_token + kGemmMmaN * ni + frag_c_token(lane, r);
                            acc[row][tok] = fold_block(acc[row][tok], d_w[row], d_x[tok], isum[lane][mi][ni][r], q_sum[tok]);
                        }
                }
            }
            for (int r = 0; r < kGemmTileRows && row0 + r < rows; r++)
                for (int k = 0; k < kGemmTileTokens && token0 + k < n_tokens; k++)
                    got[(size_t)(token0 + k) * rows + row0 + r] = acc[r][k];
        }
    const bool same = memcmp(got.data(), want.data(), got.size() * 4) == 0;
    if (!same) failures++;
    printf("host: the kernel emulated, %s %lld x %lld, %d tokens: %s the CPU reference\n", trn_type_name(t), (long long)rows, (long long)cols, n_tokens, same ? "bitwise" : "FAIL: differs from");
}

/* ---- GPU ---- */


struct dev_matrix { trn_cuda_matrix m; std::vector<uint8_t> file; size_t file_rb; };

/* Random file rows, split into codes + scales as cuda_backend.cu does. */
static dev_matrix make(trn_type t, int64_t rows, int64_t cols) {
    dev_matrix dm{};
    dm.file_rb = trn_row_bytes(t, cols);
    dm.file = random_ternary_rows(t, rows, cols);
    dm.m = upload_ternary(t, dm.file, rows, cols);
    return dm;
}

static void free_matrix(dev_matrix &dm) { CK(cudaFree((void *)dm.m.qs)); CK(cudaFree((void *)dm.m.d)); }

static void check_gemm(trn_type t, int64_t rows, int64_t cols, int n_tokens) {
    const int nb = (int)(cols / 256);
    const int64_t ld_y = rows + 5; /* outputs past the rows must stay untouched */
    dev_matrix dm = make(t, rows, cols);
    trn_matrix cm = {t, dm.file.data(), rows, cols, dm.file_rb, TRN_LAYOUT_ROWS};
    std::vector<float> x((size_t)n_tokens * cols);
    for (auto &v : x) v = frand(-2.0f, 2.0f);
    std::vector<trn_block_q8_act> xq((size_t)n_tokens * nb);
    trn_cpu_ops_ref()->quantize_act(x.data(), xq.data(), (int64_t)n_tokens * cols);
    float *dx = up(x.data(), x.size()), *dy, *dv;
    trn_cuda_q8_block *dxq;
    CK(cudaMalloc(&dxq, xq.size() * sizeof(trn_cuda_q8_block)));
    LK(trn_cuda_quantize_act(dx, dxq, (int64_t)n_tokens * cols, nullptr)); /* rows of whole blocks: one call */
    auto gq = down(dxq, xq.size());
    if (memcmp(gq.data(), xq.data(), xq.size() * sizeof(trn_cuda_q8_block))) { failures++; printf("FAIL quantize_act %d tokens x %lld\n", n_tokens, (long long)cols); }
    const size_t ny = (size_t)n_tokens * ld_y;
    CK(cudaMalloc(&dy, ny * 4));
    CK(cudaMalloc(&dv, (size_t)rows * 4));
    CK(cudaMemset(dy, 0xff, ny * 4));
    LK(trn_cuda_gemm_ternary(&dm.m, dxq, n_tokens, dy, ld_y, nullptr));
    auto y = down(dy, ny);
    std::vector<float> want((size_t)rows);
    int vs_cpu = 0, vs_gemv = 0, pad = 0;
    for (int tok = 0; tok < n_tokens; tok++) {
        const float *yt = y.data() + (size_t)tok * ld_y;
        trn_cpu_ops_ref()->matvec(&cm, x.data() + (size_t)tok * cols, xq.data() + (size_t)tok * nb, want.data(), 0, rows);
        if (memcmp(yt, want.data(), (size_t)rows * 4)) {
            if (vs_cpu++ < 3) for (int64_t r = 0; r < rows; r++) if (memcmp(&yt[r], &want[r], 4)) { printf("  token %d row %lld: %.9g, CPU %.9g\n", tok, (long long)r, yt[r], want[r]); break; }
        }
        LK(trn_cuda_gemv_ternary(&dm.m, nullptr, dxq + (size_t)tok * nb, dv, nullptr));
        auto v = down(dv, (size_t)rows);
        if (memcmp(yt, v.data(), (size_t)rows * 4)) vs_gemv++;
        for (int64_t r = rows; r < ld_y; r++) {
            uint32_t bits;
            memcpy(&bits, &yt[r], 4);
            if (bits != 0xffffffffu) pad++;
        }
    }
    const bool ok = !vs_cpu && !vs_gemv && !pad;
    if (!ok) failures++;
    printf("%-6s %6lld x %-6lld %3d tokens: %s (tokens differing: %d vs CPU, %d vs gemv; %d padding floats written)\n",
           trn_type_name(t), (long long)rows, (long long)cols, n_tokens, ok ? "bitwise" : "FAIL", vs_cpu, vs_gemv, pad);
    CK(cudaFree(dx)); CK(cudaFree(dy)); CK(cudaFree(dv)); CK(cudaFree(dxq));
    free_matrix(dm);
}

/* The contract's edges: no launch for n_tokens <= 0, non-ternary types refused. */
static void check_arguments() {
    dev_matrix dm = make(TRN_TYPE_TQ2_0, 4, 256);
    float *dy;
    trn_cuda_q8_block *dxq;
    CK(cudaMalloc(&dy, 64)); CK(cudaMalloc(&dxq, sizeof(trn_cuda_q8_block)));
    int bad = 0;
    if (trn_cuda_gemm_ternary(&dm.m, dxq, 0, dy, 4, nullptr) != 0) bad++;
    if (trn_cuda_gemm_ternary(&dm.m, dxq, -3, dy, 4, nullptr) != 0) bad++;
    trn_cuda_matrix f = dm.m;
    f.type = TRN_TYPE_F32;
    if (trn_cuda_gemm_ternary(&f, dxq, 1, dy, 4, nullptr) != cudaErrorInvalidValue) bad++;
    CK(cudaGetLastError());
    if (bad) failures++;
    printf("arguments: n_tokens <= 0 a no-op, a non-ternary type refused: %s\n", bad ? "FAIL" : "ok");
    CK(cudaFree(dy)); CK(cudaFree(dxq));
    free_matrix(dm);
}

/* 512 tokens at a Trinity-1.1B shape: the GEMM, and for scale the same products as 512 gemv launches. */
static void bench(trn_type t, int64_t rows, int64_t cols) {
    const int n_tokens = 512, nb = (int)(cols / 256);
    dev_matrix dm = make(t, rows, cols);
    std::vector<float> x((size_t)n_tokens * cols);
    for (auto &v : x) v = frand(-2.0f, 2.0f);
    float *dx = up(x.data(), x.size()), *dy;
    trn_cuda_q8_block *dxq;
    CK(cudaMalloc(&dxq, (size_t)n_tokens * nb * sizeof(trn_cuda_q8_block)));
    CK(cudaMalloc(&dy, (size_t)n_tokens * rows * 4));
    LK(trn_cuda_quantize_act(dx, dxq, (int64_t)n_tokens * cols, nullptr));
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a)); CK(cudaEventCreate(&b));
    for (int i = 0; i < 5; i++) LK(trn_cuda_gemm_ternary(&dm.m, dxq, n_tokens, dy, rows, nullptr));
    const int reps = 50;
    CK(cudaEventRecord(a));
    for (int i = 0; i < reps; i++) LK(trn_cuda_gemm_ternary(&dm.m, dxq, n_tokens, dy, rows, nullptr));
    CK(cudaEventRecord(b)); CK(cudaEventSynchronize(b));
    float ms;
    CK(cudaEventElapsedTime(&ms, a, b));
    const double us = ms * 1000.0 / reps, macs = (double)rows * cols * n_tokens;
    CK(cudaEventRecord(a));
    for (int tok = 0; tok < n_tokens; tok++) LK(trn_cuda_gemv_ternary(&dm.m, nullptr, dxq + (size_t)tok * nb, dy + (size_t)tok * rows, nullptr));
    CK(cudaEventRecord(b)); CK(cudaEventSynchronize(b));
    float ms_gemv;
    CK(cudaEventElapsedTime(&ms_gemv, a, b));
    printf("bench %-6s %5lld x %-5lld %d tokens: %9.1f us  %8.1f GMAC/s  %6.1f TOPS (int8)   512 gemv launches %9.1f us\n",
           trn_type_name(t), (long long)rows, (long long)cols, n_tokens, us, macs / us * 1e-3, 2.0 * macs / us * 1e-6, ms_gemv * 1000.0);
    CK(cudaEventDestroy(a)); CK(cudaEventDestroy(b));
    CK(cudaFree(dx)); CK(cudaFree(dy)); CK(cudaFree(dxq));
    free_matrix(dm);
}

int main() {
    check_fragments();
    check_unpack();
    for (trn_type t : {TRN_TYPE_TQ2_0, TRN_TYPE_TQ1_0}) {
        check_emulation(t, 70, 512, 5);   /* rows past the tile, several blocks */
        check_emulation(t, 64, 256, 66);  /* tokens past the tile */
    }
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
        if (failures) { printf("FAILED: %d host check failures\n", failures); return 1; }
        printf("SKIPPED: no usable GPU: the GEMM kernels compiled and linked, their GPU tests did not run (host checks passed)\n");
        return 77;
    }
    cudaDeviceProp p;
    CK(cudaGetDeviceProperties(&p, 0));
#ifdef TRN_CUDA_PASCAL
    const bool mma = false; /* the Pascal code path: dp4a everywhere */
#else
    const bool mma = p.major >= 8;
#endif
    printf("device: %s, sm_%d%d, %d SMs (the %s kernel)\n", p.name, p.major, p.minor, p.multiProcessorCount, mma ? "mma" : "dp4a");
    check_arguments();
#ifdef TRN_CUDA_EMULATOR /* the shapes of one to three row tiles (tests/cuda_emulator runs kernels on the CPU) */
    const int64_t shapes[][2] = {{256, 256}, {100, 2048}, {3001, 768}};
#else
    const int64_t shapes[][2] = {{256, 256}, {100, 2048}, {2048, 2048}, {5632, 2048}, {2048, 5632}, {3001, 768}};
#endif
    for (trn_type t : {TRN_TYPE_TQ2_0, TRN_TYPE_TQ1_0})
        for (auto &s : shapes)
            for (int n : {1, 7, 64, 65, 200}) check_gemm(t, s[0], s[1], n);
    printf("%s: %d failures\n", failures ? "FAILED" : "all checks passed", failures);
#ifdef TRN_CUDA_EMULATOR
    printf("timings skipped: the CUDA emulator runs the kernels on the CPU\n");
    return failures ? 1 : 0;
#endif
    const int64_t trinity[][2] = {{2048, 2048}, {5632, 2048}, {2048, 5632}};
    for (trn_type t : {TRN_TYPE_TQ2_0, TRN_TYPE_TQ1_0})
        for (auto &s : trinity) bench(t, s[0], s[1]);
    return failures ? 1 : 0;
}
