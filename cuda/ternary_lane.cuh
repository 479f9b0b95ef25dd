/* ternary_lane.cuh: the per-lane integer arithmetic of the ternary kernels (gemv_ternary.cu), compiled for the device
 * and for the host, so tests check it on a machine without a GPU (tests/test_cuda_gemv.cu).
 *
 * Owns the shared-memory layout of the int8 activations (act_offset) and a lane's share of one block's exact integer
 * dot product in two forms: tq2_lane_isum (the classic kernel: each 2-bit plane shifted down and masked, signed
 * dp4a) and tq2_planes_isum (the lean kernel: each plane masked in place, i.e. 4^l times the codes, unsigned-by-signed
 * dp4a into one sum per plane, the 4^l undone once by exact arithmetic shifts). Both return the same integer. The same
 * for TQ1_0's base-3 words: tq1_word_isum (digit by digit, activations read from shared memory per digit: the
 * reference the tests hold the kernels to) and tq1_regs_isum (whole quotients instead of digits, activations in
 * registers: what both TQ1_0 kernels run). */
#ifndef TRN_CUDA_TERNARY_LANE_CUH
#define TRN_CUDA_TERNARY_LANE_CUH

#include <cuda_runtime.h>
#include <stdint.h>

/* Int8 activations in shared memory: block b's 256 values at kActBlock * b, values 128..255 after 32 bytes of
 * padding (byte i at act_offset(b, i)), then nb float scales, then nb int sums. In the TQ2_0 kernels a quarter-warp
 * reads 16 bytes at 320 b + 160 h + 32 l + 16 c for two consecutive b, h and c in {0, 1}: 16-byte bank groups
 * (20 b + 10 h + 2 l + c) mod 8, eight different ones, so no bank conflicts. */
constexpr int kActHalf = 160;
constexpr int kActBlock = 2 * kActHalf;
constexpr int kActBytesPerBlock = kActBlock + 8; /* + scale + sum */

static __host__ __device__ __forceinline__ int act_offset(int b, int i) {
    return b * kActBlock + (i >> 7) * kActHalf + (i & 127);
}

/* c + the dot product of the four signed bytes of a and b. */
static __host__ __device__ __forceinline__ int dot4_i8(int a, int b, int c) {
#ifdef __CUDA_ARCH__
    return __dp4a(a, b, c);
#else
    for (int k = 0; k < 4; k++)
        c += (int)(int8_t)(a >> (8 * k)) * (int)(int8_t)(b >> (8 * k));
    return c;
#endif
}

/* c + the dot product of the four unsigned bytes of a and the four signed bytes of b (dp4a.u32.s32, sm_61+). */
static __host__ __device__ __forceinline__ int dot4_u8s8(uint32_t a, int b, int c) {
#if defined(TRN_CUDA_EMULATOR)
    return trn_emu::dp4a_u8s8(a, b, c); /* tests/cuda_emulator */
#elif defined(__CUDA_ARCH__)
    int d;
    asm("dp4a.u32.s32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));
    return d;
#else
    for (int k = 0; k < 4; k++)
        c += (int)(uint8_t)(a >> (8 * k)) * (int)(int8_t)(b >> (8 * k));
    return c;
#endif
}

/* The 64 activations a lane multiplies with its 16 code bytes of a block (part = which 16 of the 64): plane l's 16
 * weights 128 h + 32 l + 16 (part % 2) + 0..15 (h = part / 2) are a[l], one 16-byte read at act_b + ... */
static __host__ __device__ __forceinline__ const uint8_t *tq2_lane_acts(const uint8_t *act_b, int part) {
    return act_b + (part >> 1) * kActHalf + (part & 1) * 16;
}

/* A lane's share of block b's integer dot product: its 16 code bytes c (bytes 16 part .. 16 part + 15 of the 64),
 * act_b = the block's activations in shared memory. Byte 32 h + m holds in bits 2 l, 2 l + 1 the code of weight
 * 128 h + 32 l + m; for the lane's bytes m = 16 (part % 2) + 4 i + k (word i, byte k of c). */
static __host__ __device__ __forceinline__ int tq2_lane_isum(uint4 c, const uint8_t *act_b, int part) {
    const uint8_t *a = tq2_lane_acts(act_b, part);
    int s = 0;
    for (int l = 0; l < 4; l++) { /* constant trip counts: unrolled without a pragma (also compiled for the host) */
        const int4 v = *reinterpret_cast<const int4 *>(a + 32 * l); /* weights 128 h + 32 l + 16 (part % 2) + 0..15 */
        const uint32_t mask = 0x03030303u;
        s = dot4_i8((int)((c.x >> (2 * l)) & mask), v.x, s);
        s = dot4_i8((int)((c.y >> (2 * l)) & mask), v.y, s);
        s = dot4_i8((int)((c.z >> (2 * l)) & mask), v.z, s);
        s = dot4_i8((int)((c.w >> (2 * l)) & mask), v.w, s);
    }
    return s;
}

/* The same integer as tq2_lane_isum with the lane's activations already in registers (a[l] = the 16 bytes at
 * tq2_lane_acts(act_b, part) + 32 l). Plane l masked in place is 4^l * code per byte (at most 2 * 64 = 128, hence
 * unsigned bytes); s_l = 4^l * S_l exactly (|s_3| <= 16 * 128 * 128), so s_l >> 2 l (arithmetic) is S_l. Two
 * instructions per word and plane (mask, dp4a) instead of three. */
static __host__ __device__ __forceinline__ int tq2_planes_isum(uint4 c, const int4 (&a)[4]) {
    int s[4];
    for (int l = 0; l < 4; l++) {
        const uint32_t mask = 0x03030303u << (2 * l);
        int t = dot4_u8s8(c.x & mask, a[l].x, 0);
        t = dot4_u8s8(c.y & mask, a[l].y, t);
        t = dot4_u8s8(c.z & mask, a[l].z, t);
        s[l] = dot4_u8s8(c.w & mask, a[l].w, t);
    }
    return s[0] + (s[1] >> 2) + (s[2] >> 4) + (s[3] >> 6);
}

/* ---- TQ1_0 ---- */

/* Where the digits of code word j (bytes 4 j .. 4 j + 3 of qs[48] ++ qh[4]) go: digit n of the word's byte k is
 * weight 4 (base + stride n) + k, for n < digits. qs[0..31]: weight 32 n + m; qs[32..47]: 160 + 16 n + m;
 * qh[0..3]: 240 + 4 n + m (four digits). */
struct tq1_word_map {
    int base, stride, digits;
};

static __host__ __device__ __forceinline__ tq1_word_map tq1_word(int j) {
    if (j < 8)
        return {j, 8, 5};
    if (j < 12)
        return {32 + j, 4, 5}; /* (160 + 4 (j - 8)) / 4 */
    return {60, 1, 4};
}

/* Bytes 1 and 3 of w in the low bytes of its 16-bit lanes: (w >> 8) & 0x00ff00ff (one prmt on the device). */
static __host__ __device__ __forceinline__ uint32_t tq1_odd_bytes(uint32_t w) {
#ifdef __CUDA_ARCH__
    return __byte_perm(w, 0u, 0x4341u);
#else
    return (w >> 8) & 0x00ff00ffu;
#endif
}

/* Byte k of the result is byte 1 of e's 16-bit lane k / 2 (k even) or of o's (k odd): the high bytes of the four
 * lanes of a spread word, back in byte order (one prmt on the device). */
static __host__ __device__ __forceinline__ uint32_t tq1_high_bytes(uint32_t e, uint32_t o) {
#ifdef __CUDA_ARCH__
    return __byte_perm(e, o, 0x7351u);
#else
    return ((e >> 8) & 0x00ff00ffu) | (o & 0xff00ff00u);
#endif
}

/* Base-3 digits of four bytes at once. A byte q holds its digits as a fraction: digit n is
 * ((q * 3^n mod 256) * 3) >> 8. The bytes are spread over 16-bit lanes (e: bytes 0 and 2, o: bytes 1 and 3);
 * t = 3 * (q * 3^n mod 256) < 768 never leaves its lane, its high byte is digit n and its low byte q * 3^(n+1)
 * mod 256, the next step's input. Returns the four codes of digit n as bytes and advances e, o. */
static __host__ __device__ __forceinline__ uint32_t tq1_next_digits(uint32_t &e, uint32_t &o) {
    const uint32_t te = e * 3u, to = o * 3u;
    e = te & 0x00ff00ffu;
    o = to & 0x00ff00ffu;
    return tq1_high_bytes(te, to);
}

/* A lane's share of a TQ1_0 block's integer dot product, digit by digit: code word w (word j of the block), act_b =
 * the block's activations in shared memory. */
static __host__ __device__ __forceinline__ int tq1_word_isum(uint32_t w, int j, const uint8_t *act_b) {
    const tq1_word_map m = tq1_word(j);
    uint32_t e = w & 0x00ff00ffu, o = tq1_odd_bytes(w);
    int s = 0;
    for (int n = 0; n < 5; n++) {
        if (n < m.digits) {
            const uint32_t codes = tq1_next_digits(e, o);
            const int i = 4 * (m.base + m.stride * n); /* first weight of the four */
            s = dot4_i8((int)codes, *reinterpret_cast<const int *>(act_b + act_offset(0, i)), s);
        }
    }
    return s;
}

/* The 5 activation words a lane multiplies with a code word of map m (a[n] = the 4 activations of digit n; 0 for
 * the qh word's missing fifth digit, and all 0 where not live: selects, not branches, so loads stay predicated). */
static __host__ __device__ __forceinline__ void tq1_lane_acts(const uint8_t *act_b, const tq1_word_map &m, bool live,
                                                              int (&a)[5]) {
    for (int n = 0; n < 5; n++)
        a[n] = live && n < m.digits ? *reinterpret_cast<const int *>(act_b + act_offset(0, 4 * (m.base + m.stride * n)))
                                    : 0;
}

/* The same for code word j of a block. */
static __host__ __device__ __forceinline__ void tq1_lane_acts(const uint8_t *act_b, int j, int (&a)[5]) {
    tq1_lane_acts(act_b, tq1_word(j), true, a);
}

/* 3 x. On the device one IADD3 (x + x + x), an ALU-pipe instruction, where ptxas turns a multiplication by a
 * constant (and shift-and-add forms of it) into IMAD, which issues on the FMA pipe that also runs every dp4a: with
 * half of tq1_regs_isum's multiplies here, the two pipes share its work. */
static __host__ __device__ __forceinline__ uint32_t times3_alu(uint32_t x) {
#if defined(__CUDA_ARCH__) && !defined(TRN_CUDA_EMULATOR)
    uint32_t y;
    asm("{ .reg .b32 t; add.u32 t, %1, %1; add.u32 %0, t, %1; }" : "=r"(y) : "r"(x));
    return y;
#else
    return 3u * x;
#endif
}

/* The same integer as tq1_word_isum with the lane's activations already in registers (tq1_lane_acts), by whole
 * quotients instead of digits: H_m = floor(3^m q / 256) <= 242 for m <= 5 (3^5 * 255 < 2^16: e * 3^m and o * 3^m
 * never leave their 16-bit lanes, so H_m of four bytes is one multiply per lane pair and one byte permutation), and
 * digit n is c_n = H_{n+1} - 3 H_n (H_0 = 0), so sum_n c_n a_n = sum_{m=1..5} H_m a_{m-1} - 3 sum_{m=1..4} H_m a_m:
 * nine unsigned-by-signed dp4a on quotients that need no masking, where the digits cost a multiply, a mask and a
 * merge each. The fifth digit is always decoded, and the qh word's is multiplied by a[4] = 0. */
static __host__ __device__ __forceinline__ int tq1_regs_isum(uint32_t w, const int (&a)[5]) {
    const uint32_t e = w & 0x00ff00ffu, o = tq1_odd_bytes(w);
    int s1 = 0, s3 = 0;
    uint32_t e_pow3 = e, pow3 = 1;
    for (int m = 1; m <= 5; m++) { /* constant trip count: unrolled, pow3 = 3^m a constant */
        e_pow3 = times3_alu(e_pow3);
        pow3 *= 3u;
        const uint32_t h = tq1_high_bytes(e_pow3, o * pow3); /* byte k: H_m of byte k */
        s1 = dot4_u8s8(h, a[m - 1], s1);
        if (m < 5)
            s3 = dot4_u8s8(h, a[m], s3);
    }
    return s1 - 3 * s3;
}

#endif
