/* gemm_ternary.cu: a prompt's ternary (TQ2_0, TQ1_0) products with int8 activations (prefill).
 *
 * Owns trn_cuda_gemm_ternary (cuda_ops.h): y[t][r] = W[r] . x_t for n_tokens tokens at once, W [rows][cols] in the
 * split device layout (codes [rows][nb * 64 or 52] bytes, fp16 scales [rows][nb], made by cuda_backend.cu),
 * xq [n_tokens][nb] int8 blocks (trn_cuda_quantize_act), y row t at y + t * ld_y. Does not own the activation
 * quantizer or the matrix-vector kernels (gemv_ternary.cu); the fragment layout, tile layout and unpacking live in
 * gemm_fragment.cuh, compiled for the host too so the test checks them without a GPU.
 *
 * The math is gemv_ternary.cu's int8 mode, so every result is bitwise the matrix-vector product's: per (row r,
 * token t) and block b, isum = sum_i code_i * q_i exactly (codes as stored, 0..3; TQ2_0's invalid code 3 counts as
 * 3, as there), term = (d_w[r][b] * xq[t][b].d) * (float)(isum - xq[t][b].sum), and acc = 0 + term_0 + term_1 + ...
 * in block order, every operation rounded on its own.
 *
 * How the kernel meets memory. A CTA (128 threads, 4 warps) owns a tile of 64 rows x 64 tokens and walks the blocks
 * of 256 in order. Per block: the tile's codes are loaded into registers one block ahead (TQ2_0: 2 uint4 per thread;
 * TQ1_0: up to 7 words), with the tokens' 256 int8 activations (16 x 8 bytes per thread), the row scales and the
 * tokens' d and sum; after a barrier they are unpacked into int8 tiles in shared memory (w_tile [64][272],
 * x_tile [64][272]: rows padded against bank conflicts). Each warp then forms the exact int32 block sums of its
 * 32 rows x 32 tokens, on tensor cores (mma.sync m16n8k32 s8, sm_80 and newer: 8 k-steps x 2 x 4 mma) or with dp4a
 * (older GPUs and the Pascal code path: the same elements per lane, 64 words x 32 dp4a), and folds each element into
 * its float accumulator in registers with the term above. Every accumulator element of a lane is one fixed (row,
 * token) (gemm_fragment.cuh), so the block order of the fold holds per element. Rows past `rows` and tokens past
 * n_tokens are zeros in the tiles and are not stored.
 *
 * Which kernel runs: the mma kernel where the device's compute capability is 8.0 or more and the loaded image of the
 * mma kernel was compiled for compute_80 or newer (a GPU newer than every SASS in the build JIT-compiles the lowest
 * PTX, whose mma kernel is a trap: the sm_75 image never contains mma); the dp4a kernel elsewhere and always in the
 * Pascal build. Decided once per device and cached. */
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <stddef.h>
#include <stdint.h>

#include "cuda_ops.h"
#include "device_math.cuh"
#include "gemm_fragment.cuh"
#include "ternary_lane.cuh"

namespace {

constexpr int kTq2CodeBytes = TRN_QK_K / 4; /* 64 */
constexpr int kTq1CodeBytes = 52;           /* qs[48] ++ qh[4] */
constexpr int kTq1Words = kTq1CodeBytes / 4;

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800 && !defined(TRN_CUDA_PASCAL)
#define TRN_GEMM_HAVE_MMA 1
#else
#define TRN_GEMM_HAVE_MMA 0
#endif

/* ---- the two code formats: one block of the tile's 64 rows, staged in registers, then unpacked ---- */

/* TQ2_0: 64 rows x 4 uint4 = 256 loads, 2 per thread: load i of thread t is row (t + 128 i) / 4, part (t + 128 i) % 4. */
struct Tq2Tile {
    static constexpr int kLoads = kGemmTileRows * 4 / kGemmThreads; /* 2 */
    static constexpr int kCodeBytes = kTq2CodeBytes;
    static constexpr size_t kAlign = 16;
    uint4 c[kLoads];

    __device__ void load(const uint8_t *qs, size_t row_bytes, int64_t row0, int64_t rows, int b) {
        for (int i = 0; i < kLoads; i++) {
            const int idx = threadIdx.x + kGemmThreads * i, row = idx >> 2, part = idx & 3;
            c[i] = row0 + row < rows
                       ? __ldg(reinterpret_cast<const uint4 *>(qs + (size_t)(row0 + row) * row_bytes +
                                                               (size_t)b * kCodeBytes) + part)
                       : make_uint4(0, 0, 0, 0);
        }
    }
    __device__ void unpack(uint8_t *w_tile) const {
        for (int i = 0; i < kLoads; i++) {
            const int idx = threadIdx.x + kGemmThreads * i;
            tq2_unpack_part(c[i], idx & 3, w_tile + (idx >> 2) * kGemmPitch);
        }
    }
};

/* TQ1_0: 64 rows x 13 words = 832 loads, up to 7 per thread: load i of thread t is row (t + 128 i) / 13, word
 * (t + 128 i) % 13 (none past 832). */
struct Tq1Tile {
    static constexpr int kWords = kGemmTileRows * kTq1Words;                   /* 832 */
    static constexpr int kLoads = (kWords + kGemmThreads - 1) / kGemmThreads; /* 7 */
    static constexpr int kCodeBytes = kTq1CodeBytes;
    static constexpr size_t kAlign = 4;
    uint32_t c[kLoads];

    __device__ void load(const uint8_t *qs, size_t row_bytes, int64_t row0, int64_t rows, int b) {
        for (int i = 0; i < kLoads; i++) {
            const int idx = threadIdx.x + kGemmThreads * i, row = idx / kTq1Words, j = idx % kTq1Words;
            c[i] = idx < kWords && row0 + row < rows
                       ? __ldg(reinterpret_cast<const uint32_t *>(qs + (size_t)(row0 + row) * row_bytes +
                                                                  (size_t)b * kCodeBytes) + j)
                       : 0u;
        }
    }
    __device__ void unpack(uint8_t *w_tile) const {
        for (int i = 0; i < kLoads; i++) {
            const int idx = threadIdx.x + kGemmThreads * i;
            if (idx < kWords)
                tq1_unpack_word(c[i], idx % kTq1Words, w_tile + (idx / kTq1Words) * kGemmPitch);
        }
    }
};

/* The tokens' activations of one block: 64 tokens x 32 words of 8 bytes, 16 per thread (load i of thread t: token
 * (t + 128 i) / 32, bytes 8 ((t + 128 i) % 32) ..); 8-byte loads where xq is 8-byte aligned (then every q is: 264 =
 * 8 * 33, q at offset 8), else two 4-byte loads. Thread t < 64 also holds row t's scale and token t's d and sum. */
struct ActTile {
    static constexpr int kLoads = kGemmTileTokens * (TRN_QK_K / 8) / kGemmThreads; /* 16 */
    uint2 q[kLoads];
    uint16_t d_w;
    float d_x;
    int q_sum;

    __device__ void load(const trn_cuda_q8_block *xq, bool aligned8, int nb, int64_t token0, int n_tokens,
                         const uint16_t *d, int64_t row0, int64_t rows, int b) {
        for (int i = 0; i < kLoads; i++) {
            const int idx = threadIdx.x + kGemmThreads * i, token = idx >> 5, k = 8 * (idx & 31);
            q[i] = make_uint2(0, 0);
            if (token0 + token < n_tokens) {
                const int8_t *src = xq[(size_t)(token0 + token) * nb + b].q + k;
                if (aligned8) {
                    q[i] = __ldg(reinterpret_cast<const uint2 *>(src));
                } else {
                    q[i].x = __ldg(reinterpret_cast<const uint32_t *>(src));
                    q[i].y = __ldg(reinterpret_cast<const uint32_t *>(src + 4));
                }
            }
        }
        d_w = 0;
        d_x = 0.0f;
        q_sum = 0;
        const int t = threadIdx.x;
        if (t < kGemmTileRows && row0 + t < rows)
            d_w = __ldg(d + (size_t)(row0 + t) * nb + b);
        if (t < kGemmTileTokens && token0 + t < n_tokens) {
            const trn_cuda_q8_block *blk = xq + (size_t)(token0 + t) * nb + b;
            d_x = __ldg(&blk->d);
            q_sum = __ldg(&blk->sum);
        }
    }
    __device__ void store(uint8_t *x_tile, float *d_w_s, float *d_x_s, int *q_sum_s) const {
        for (int i = 0; i < kLoads; i++) {
            const int idx = threadIdx.x + kGemmThreads * i;
            *reinterpret_cast<uint2 *>(x_tile + (idx >> 5) * kGemmPitch + 8 * (idx & 31)) = q[i];
        }
        const int t = threadIdx.x;
        if (t < kGemmTileRows)
            d_w_s[t] = __half2float(__ushort_as_half(d_w));
        if (t < kGemmTileTokens) {
            d_x_s[t] = d_x;
            q_sum_s[t] = q_sum;
        }
    }
};

/* ---- one block's integer sums of a warp tile: isum[mi][ni][r] = element (row 16 mi + frag_c_row(lane, r), token
 * 8 ni + frag_c_token(lane, r)) of the warp's 32 x 32 tile ---- */

using warp_isums = int[kGemmMTiles][kGemmNTiles][4];

/* f(mi, ni, r) for every element a lane holds of its warp's tile: mma tile (mi, ni), accumulator register r. */
template <class F> __device__ __forceinline__ void for_each_element(F f) {
#pragma unroll
    for (int mi = 0; mi < kGemmMTiles; mi++)
#pragma unroll
        for (int ni = 0; ni < kGemmNTiles; ni++)
#pragma unroll
            for (int r = 0; r < 4; r++)
                f(mi, ni, r);
}

/* Every element of a warp tile's per-lane values (block sums or accumulators) set to `value`. */
template <class T> __device__ __forceinline__ void fill(T (&v)[kGemmMTiles][kGemmNTiles][4], T value) {
    for_each_element([&](int mi, int ni, int r) { v[mi][ni][r] = value; });
}

/* Tensor cores: 8 k-steps of 2 x 4 mma m16n8k32 (sm_80 and newer; a trap where compiled for older targets). */
__device__ __forceinline__ void block_isums_mma(const uint8_t *w_tile, const uint8_t *x_tile, int lane,
                                                warp_isums &acc) {
#if TRN_GEMM_HAVE_MMA
    fill(acc, 0);
#pragma unroll 2
    for (int ks = 0; ks < TRN_QK_K / kGemmMmaK; ks++) {
        uint32_t a[kGemmMTiles][4], bf[kGemmNTiles][2];
#pragma unroll
        for (int mi = 0; mi < kGemmMTiles; mi++)
            load_a_frag(w_tile, kGemmMmaM * mi, ks, lane, a[mi]);
#pragma unroll
        for (int ni = 0; ni < kGemmNTiles; ni++)
            load_b_frag(x_tile, kGemmMmaN * ni, ks, lane, bf[ni]);
#pragma unroll
        for (int mi = 0; mi < kGemmMTiles; mi++)
#pragma unroll
            for (int ni = 0; ni < kGemmNTiles; ni++)
#ifdef TRN_CUDA_EMULATOR
                trn_emu::mma_m16n8k32_s8(acc[mi][ni], a[mi], bf[ni]); /* tests/cuda_emulator */
#else
                asm volatile("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 "
                             "{%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                             : "+r"(acc[mi][ni][0]), "+r"(acc[mi][ni][1]), "+r"(acc[mi][ni][2]), "+r"(acc[mi][ni][3])
                             : "r"(a[mi][0]), "r"(a[mi][1]), "r"(a[mi][2]), "r"(a[mi][3]), "r"(bf[ni][0]),
                               "r"(bf[ni][1]));
#endif
    }
#else
    (void)w_tile, (void)x_tile, (void)lane, (void)acc;
    __trap(); /* never launched: the launcher picks the dp4a kernel where this image lacks mma */
#endif
}

/* dp4a: the same elements per lane, each the dot product of a weight row and a token over the block's 64 words:
 * per word 4 row words (broadcast across the lane's quad) and 8 token words, 32 dp4a. */
__device__ __forceinline__ void block_isums_dp4a(const uint8_t *w_tile, const uint8_t *x_tile, int lane,
                                                 warp_isums &acc) {
    fill(acc, 0);
    const uint8_t *w_rows[kGemmMTiles][2], *x_tokens[kGemmNTiles][2];
#pragma unroll
    for (int mi = 0; mi < kGemmMTiles; mi++)
#pragma unroll
        for (int h = 0; h < 2; h++)
            w_rows[mi][h] = w_tile + (kGemmMmaM * mi + frag_c_row(lane, 2 * h)) * kGemmPitch;
#pragma unroll
    for (int ni = 0; ni < kGemmNTiles; ni++)
#pragma unroll
        for (int j = 0; j < 2; j++)
            x_tokens[ni][j] = x_tile + (kGemmMmaN * ni + frag_c_token(lane, j)) * kGemmPitch;
#pragma unroll 2
    for (int k = 0; k < TRN_QK_K; k += 4) {
        int wv[kGemmMTiles][2], xv[kGemmNTiles][2];
#pragma unroll
        for (int mi = 0; mi < kGemmMTiles; mi++)
#pragma unroll
            for (int h = 0; h < 2; h++)
                wv[mi][h] = *reinterpret_cast<const int *>(w_rows[mi][h] + k);
#pragma unroll
        for (int ni = 0; ni < kGemmNTiles; ni++)
#pragma unroll
            for (int j = 0; j < 2; j++)
                xv[ni][j] = *reinterpret_cast<const int *>(x_tokens[ni][j] + k);
        for_each_element(
            [&](int mi, int ni, int r) { acc[mi][ni][r] = dot4_i8(wv[mi][r >> 1], xv[ni][r & 1], acc[mi][ni][r]); });
    }
}

/* ---- the kernel ---- */

struct gemm_params {
    const uint8_t *qs;   /* codes [rows][row_bytes] */
    const uint16_t *d;   /* scales [rows][nb] */
    size_t row_bytes;
    int64_t rows;
    int nb;
    const trn_cuda_q8_block *xq; /* [n_tokens][nb] */
    bool xq_aligned8;
    int n_tokens;
    float *y;            /* row t at y + t * ld_y */
    int64_t ld_y;
};

/* Grid (row tiles, token tiles), kGemmThreads threads. MMA selects the tensor-core block sums (compiled as a trap
 * where the target lacks them; the launcher never runs it there). */
template <class Tile, bool MMA>
__global__ void __launch_bounds__(kGemmThreads) gemm_ternary_kernel(const gemm_params p) {
    __shared__ __align__(16) uint8_t w_tile[kGemmTileRows * kGemmPitch];
    __shared__ __align__(16) uint8_t x_tile[kGemmTileTokens * kGemmPitch];
    __shared__ float d_w_s[kGemmTileRows], d_x_s[kGemmTileTokens];
    __shared__ int q_sum_s[kGemmTileTokens];

    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    const int warp_row = kGemmWarpRows * (warp % kGemmWarpsM), warp_token = kGemmWarpTokens * (warp / kGemmWarpsM);
    const int64_t row0 = (int64_t)blockIdx.x * kGemmTileRows, token0 = (int64_t)blockIdx.y * kGemmTileTokens;

    float acc[kGemmMTiles][kGemmNTiles][4];
    fill(acc, 0.0f);

    Tile codes;
    ActTile act;
    codes.load(p.qs, p.row_bytes, row0, p.rows, 0);
    act.load(p.xq, p.xq_aligned8, p.nb, token0, p.n_tokens, p.d, row0, p.rows, 0);
    for (int b = 0; b < p.nb; b++) {
        __syncthreads(); /* the previous block's tiles are read */
        codes.unpack(w_tile);
        act.store(x_tile, d_w_s, d_x_s, q_sum_s);
        __syncthreads();
        if (b + 1 < p.nb) { /* the next block's loads in flight during this block's products */
            codes.load(p.qs, p.row_bytes, row0, p.rows, b + 1);
            act.load(p.xq, p.xq_aligned8, p.nb, token0, p.n_tokens, p.d, row0, p.rows, b + 1);
        }
        int isum[kGemmMTiles][kGemmNTiles][4];
        if (MMA)
            block_isums_mma(w_tile + warp_row * kGemmPitch, x_tile + warp_token * kGemmPitch, lane, isum);
        else
            block_isums_dp4a(w_tile + warp_row * kGemmPitch, x_tile + warp_token * kGemmPitch, lane, isum);
        for_each_element([&](int mi, int ni, int r) {
            const int row = warp_row + kGemmMmaM * mi + frag_c_row(lane, r);
            const int token = warp_token + kGemmMmaN * ni + frag_c_token(lane, r);
            acc[mi][ni][r] = fold_block(acc[mi][ni][r], d_w_s[row], d_x_s[token], isum[mi][ni][r], q_sum_s[token]);
        });
    }

    for_each_element([&](int mi, int ni, int r) {
        const int64_t row = row0 + warp_row + kGemmMmaM * mi + frag_c_row(lane, r);
        const int64_t token = token0 + warp_token + kGemmMmaN * ni + frag_c_token(lane, r);
        if (row < p.rows && token < p.n_tokens)
            p.y[token * p.ld_y + row] = acc[mi][ni][r];
    });
}

/* ---- host side ---- */

bool aligned(const void *ptr, uintptr_t n) { return reinterpret_cast<uintptr_t>(ptr) % n == 0; }

/* Whether the current device runs the mma kernel: compute capability 8.0 or more and the image the runtime loads for
 * it compiled for compute_80 or newer (its ptxVersion); never in the Pascal build. Cached per device. */
cudaError_t device_uses_mma(bool &use) {
#ifdef TRN_CUDA_PASCAL
    use = false;
    return cudaSuccess;
#else
    constexpr int kMaxDevices = 64;
    static int cached[kMaxDevices]; /* 0 unknown, 1 dp4a, 2 mma; a race only repeats the same queries */
    int dev = 0;
    cudaError_t err = cudaGetDevice(&dev);
    if (err != cudaSuccess)
        return err;
    if (dev >= 0 && dev < kMaxDevices && cached[dev] != 0) {
        use = cached[dev] == 2;
        return cudaSuccess;
    }
    int major = 0;
    err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    if (err != cudaSuccess)
        return err;
    use = false;
    if (major >= 8) {
        cudaFuncAttributes attr;
        err = cudaFuncGetAttributes(&attr, gemm_ternary_kernel<Tq2Tile, true>);
        if (err != cudaSuccess)
            return err;
        use = attr.ptxVersion >= 80;
    }
    if (dev >= 0 && dev < kMaxDevices)
        cached[dev] = use ? 2 : 1;
    return cudaSuccess;
#endif
}

template <class Tile> void launch(const gemm_params &p, bool mma, cudaStream_t stream) {
    const dim3 grid((unsigned)((p.rows + kGemmTileRows - 1) / kGemmTileRows),
                    (unsigned)((p.n_tokens + kGemmTileTokens - 1) / kGemmTileTokens));
    if (mma)
        gemm_ternary_kernel<Tile, true><<<grid, kGemmThreads, 0, stream>>>(p);
    else
        gemm_ternary_kernel<Tile, false><<<grid, kGemmThreads, 0, stream>>>(p);
}

} // namespace

extern "C" int trn_cuda_gemm_ternary(const trn_cuda_matrix *w, const trn_cuda_q8_block *xq, int n_tokens, float *y,
                                     int64_t ld_y, trn_cuda_stream stream) {
    if (n_tokens <= 0)
        return cudaSuccess;
    if (!w || !xq || !y)
        return cudaErrorInvalidValue;
    const bool tq2 = w->type == TRN_TYPE_TQ2_0;
    if (!tq2 && w->type != TRN_TYPE_TQ1_0)
        return cudaErrorInvalidValue;
    if (w->cols <= 0 || w->cols % TRN_QK_K != 0 || w->cols / TRN_QK_K > INT32_MAX || w->rows < 0)
        return cudaErrorInvalidValue;
    if (w->rows == 0)
        return cudaSuccess;
    const int nb = (int)(w->cols / TRN_QK_K);
    const size_t code_bytes = tq2 ? kTq2CodeBytes : kTq1CodeBytes;
    const uintptr_t code_align = tq2 ? Tq2Tile::kAlign : Tq1Tile::kAlign;
    if (!w->qs || !w->d || w->row_bytes < (size_t)nb * code_bytes || w->row_bytes % code_align != 0 ||
        (n_tokens > 1 && ld_y < w->rows))
        return cudaErrorInvalidValue;
    if (!aligned(w->qs, code_align) || !aligned(w->d, 2) || !aligned(xq, 4))
        return cudaErrorMisalignedAddress;
    if ((w->rows + kGemmTileRows - 1) / kGemmTileRows > INT32_MAX ||
        (n_tokens + kGemmTileTokens - 1) / kGemmTileTokens > 65535)
        return cudaErrorInvalidValue;
    bool mma = false;
    const cudaError_t err = device_uses_mma(mma);
    if (err != cudaSuccess)
        return err;
    gemm_params p = {};
    p.qs = static_cast<const uint8_t *>(w->qs);
    p.d = w->d;
    p.row_bytes = w->row_bytes;
    p.rows = w->rows;
    p.nb = nb;
    p.xq = xq;
    p.xq_aligned8 = aligned(xq, 8);
    p.n_tokens = n_tokens;
    p.y = y;
    p.ld_y = ld_y;
    const cudaStream_t s = reinterpret_cast<cudaStream_t>(stream);
    if (tq2)
        launch<Tq2Tile>(p, mma, s);
    else
        launch<Tq1Tile>(p, mma, s);
    return (int)cudaGetLastError();
}
