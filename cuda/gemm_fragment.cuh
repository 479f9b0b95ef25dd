/* gemm_fragment.cuh: the per-lane index math and shared-memory layout of the prefill ternary GEMM (gemm_ternary.cu),
 * compiled for the device and for the host, so tests check it on a machine without a GPU (tests/test_cuda_gemm.cu).
 *
 * Owns: the shared-memory tiles (int8 weight codes [kGemmTileRows][kGemmPitch], int8 activations
 * [kGemmTileTokens][kGemmPitch], one block of 256 per row), the unpacking of TQ2_0 / TQ1_0 codes into those tiles,
 * the fragment layout of mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 (which lane and register holds which
 * element), the loads of A and B fragments from the tiles, and the fold of one block's integer sum into a row's
 * float accumulator (the arithmetic of gemv_ternary.cu's int8 mode).
 *
 * Fragment layout of m16n8k32 with .s8 operands (PTX ISA, "Matrix Fragments for mma.m16n8k32"). With
 * g = lane / 4 (groupID) and c = lane % 4 (threadID_in_group):
 *   A (16 x 32, row major: rows = weight rows, k = the 32 weights of the k-step), 4 registers of 4 bytes:
 *     register r, byte j holds A[g + 8 (r % 2)][4 c + 16 (r / 2) + j]
 *     (the ISA's a_i, i = 4 r + j: row g for i < 4 or 8 <= i < 12, else g + 8; column 4 c + (i % 4), + 16 for i >= 8)
 *   B (32 x 8, column major: k x tokens), 2 registers of 4 bytes:
 *     register r, byte j holds B[4 c + 16 r + j][g]   (b_i, i = 4 r + j: row 4 c + (i % 4), + 16 for i >= 4; column g)
 *   C, D (16 x 8, int32), 4 registers:
 *     register r holds D[g + 8 (r / 2)][2 c + (r % 2)]  (c_i: row g for i < 2, else g + 8; column 2 c + (i % 2))
 * So with A = W (rows x k) and B = X^T (X: tokens x k, each token's activations contiguous), accumulator register r of
 * a lane is the (row g + 8 (r / 2), token 2 c + r % 2) element of the 16 x 8 tile, and both operands are read as
 * aligned 32-bit words of the tiles (4 consecutive k of one row or one token). */
#ifndef TRN_CUDA_GEMM_FRAGMENT_CUH
#define TRN_CUDA_GEMM_FRAGMENT_CUH

#include <cuda_runtime.h>
#include <stdint.h>

#include "device_math.cuh"
#include "ternary_lane.cuh"

/* The CTA tile: 64 rows x 64 tokens, 4 warps in a 2 x 2 grid of 32 x 32 warp tiles (2 x 4 mma tiles of 16 x 8). */
constexpr int kGemmTileRows = 64;
constexpr int kGemmTileTokens = 64;
constexpr int kGemmWarpRows = 32;
constexpr int kGemmWarpTokens = 32;
constexpr int kGemmWarpsM = kGemmTileRows / kGemmWarpRows; /* 2 */
constexpr int kGemmThreads = 32 * kGemmWarpsM * (kGemmTileTokens / kGemmWarpTokens); /* 128 */
constexpr int kGemmMmaM = 16, kGemmMmaN = 8, kGemmMmaK = 32;
constexpr int kGemmMTiles = kGemmWarpRows / kGemmMmaM;   /* 2 */
constexpr int kGemmNTiles = kGemmWarpTokens / kGemmMmaN; /* 4 */
/* Row pitch of both tiles: 256 bytes + 16 of padding (68 words): the 8 groups of a fragment load (rows g, words c)
 * fall on banks 4 g + c, all 32 different. */
constexpr int kGemmPitch = 256 + 16;

/* ---- fragment layout (see the header comment) ---- */

static __host__ __device__ __forceinline__ int frag_a_row(int lane, int reg) { return (lane >> 2) + 8 * (reg & 1); }
static __host__ __device__ __forceinline__ int frag_a_k(int lane, int reg) { return 4 * (lane & 3) + 16 * (reg >> 1); }
static __host__ __device__ __forceinline__ int frag_b_k(int lane, int reg) { return 4 * (lane & 3) + 16 * reg; }
static __host__ __device__ __forceinline__ int frag_b_token(int lane) { return lane >> 2; }
static __host__ __device__ __forceinline__ int frag_c_row(int lane, int reg) { return (lane >> 2) + 8 * (reg >> 1); }
static __host__ __device__ __forceinline__ int frag_c_token(int lane, int reg) { return 2 * (lane & 3) + (reg & 1); }

/* A fragment of the 16 rows from row0 of the weight tile, k-step ks (weights 32 ks .. 32 ks + 31 of the block). */
static __host__ __device__ __forceinline__ void load_a_frag(const uint8_t *w_tile, int row0, int ks, int lane,
                                                            uint32_t (&a)[4]) {
    for (int r = 0; r < 4; r++)
        a[r] = *reinterpret_cast<const uint32_t *>(w_tile + (row0 + frag_a_row(lane, r)) * kGemmPitch +
                                                   kGemmMmaK * ks + frag_a_k(lane, r));
}

/* B fragment of the 8 tokens from token0 of the activation tile, k-step ks. */
static __host__ __device__ __forceinline__ void load_b_frag(const uint8_t *x_tile, int token0, int ks, int lane,
                                                            uint32_t (&b)[2]) {
    for (int r = 0; r < 2; r++)
        b[r] = *reinterpret_cast<const uint32_t *>(x_tile + (token0 + frag_b_token(lane)) * kGemmPitch +
                                                   kGemmMmaK * ks + frag_b_k(lane, r));
}

/* ---- unpacking codes into the weight tile (codes as they are, 0..3, one signed byte per weight) ---- */

/* TQ2_0: bytes 16 part .. 16 part + 15 of a block's 64 (c) into the tile row `dst` (the block's 256 weights). Byte
 * 32 h + m holds in bits 2 l, 2 l + 1 the code of weight 128 h + 32 l + m; the part's bytes are m = 16 (part % 2) +
 * 4 i + k (word i, byte k of c), so plane l is 16 consecutive weights from 128 h + 32 l + 16 (part % 2). */
static __host__ __device__ __forceinline__ void tq2_unpack_part(uint4 c, int part, uint8_t *dst) {
    uint8_t *base = dst + (part >> 1) * 128 + (part & 1) * 16;
    for (int l = 0; l < 4; l++) {
        const uint32_t mask = 0x03030303u;
        *reinterpret_cast<uint4 *>(base + 32 * l) =
            make_uint4((c.x >> (2 * l)) & mask, (c.y >> (2 * l)) & mask, (c.z >> (2 * l)) & mask, (c.w >> (2 * l)) & mask);
    }
}

/* TQ1_0: code word j (bytes 4 j .. 4 j + 3 of qs[48] ++ qh[4]) into the tile row `dst`: digit n of the word's four
 * bytes are weights 4 (base + stride n) + 0..3 (tq1_word). */
static __host__ __device__ __forceinline__ void tq1_unpack_word(uint32_t w, int j, uint8_t *dst) {
    const tq1_word_map m = tq1_word(j);
    uint32_t e = w & 0x00ff00ffu, o = tq1_odd_bytes(w);
    for (int n = 0; n < 5; n++)
        if (n < m.digits) {
            const uint32_t codes = tq1_next_digits(e, o);
            *reinterpret_cast<uint32_t *>(dst + 4 * (m.base + m.stride * n)) = codes;
        }
}

/* ---- the fold ---- */

/* acc + one block's term, as gemv_ternary.cu's int8 mode: (d_w * d_x) * (float)(isum - sum(q)), each operation
 * rounded on its own (no FMA). */
static __host__ __device__ __forceinline__ float fold_block(float acc, float d_w, float d_x, int isum, int q_sum) {
    return add_rn(acc, mul_rn(mul_rn(d_w, d_x), (float)(isum - q_sum)));
}

#endif
