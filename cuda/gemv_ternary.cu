/* gemv_ternary.cu: ternary (TQ2_0, TQ1_0) matrix-vector products and the int8 activation quantizer.
 *
 * Owns trn_cuda_quantize_act and trn_cuda_gemv_ternary (cuda_ops.h). Does not own the split weight layout (made by
 * cuda_backend.cu at load: codes [rows][nb * 64 or 52] bytes, fp16 scales [rows][nb]) or float-weight products
 * (gemv_float.cu). The math is that of cpu_fallback/ops_ref.c:
 *  - quantize_act: per block of 256, d = max|x| / 127, id = 1 / d (0 if d == 0), q = rint(x * id) (half to even),
 *    sum = sum(q). Every step is one correctly rounded IEEE operation (explicit _rn intrinsics, no contraction),
 *    so the blocks are bitwise the CPU's.
 *  - int8 mode: per block isum = sum(code * q) (dp4a, exact), term = (d_w * d_x) * (float)(isum - sum(q)), and a
 *    row adds its terms in block order, as the CPU loop does: bitwise the CPU result.
 *  - f32 mode (xq == NULL): per block d_w * sum((code - 1) * x); every product is exact but the 256 of a block are
 *    added in a tree rather than the CPU's left-to-right loop, so rows agree with the CPU to float rounding
 *    (per row ~1e-7 of sum |w x|), not bitwise. Block terms are still added in block order.
 *
 * Launch configuration (batch 1 is memory bound: 2-bit weights must stream at HBM speed):
 *  - one warp per row, 8 warps (rows) per CTA of 256 threads, __launch_bounds__(256, 4) (<= 64 registers, so four
 *    CTAs = 32 warps fit an SM on sm_61..sm_90); grid = min(ceil(rows / 8), 4 * SMs), each warp walking rows
 *    row, row + 8 * grid, ... and loading the codes of its next row (or next part of a long row) while it computes
 *    the current one: a load is 0.5 to 2 KB per warp, two in flight once a warp has several rows (LM head).
 *    Register use (ptxas, sm_75 and sm_90): 31 to 64 per thread, no spills.
 *  - int8 mode: the CTA first stages the whole quantized activation vector in shared memory (nb * 328 bytes, read
 *    once per CTA from L2) in a padded layout that makes the 16-byte reads below bank-conflict free; codes stream
 *    from HBM straight into registers (16-byte loads, evict-first), where they are decoded: on sm_75 and older
 *    there is no cp.async, so a staging copy of the codes through shared memory would only add a store and a load.
 *  - TQ2_0: a chunk of 8 blocks (512 bytes) is one uint4 per lane: lane = 4 * block + part, part = the 16-byte
 *    quarter of the block's 64 code bytes (half h = part / 2, column 16 * (part % 2)). Bit plane l of those bytes
 *    holds 16 consecutive weights 128 h + 32 l + 16 (part % 2) + 0..15, whose activations are one 16-byte read.
 *    A load is NCH = min(4, ceil(nb / 8)) chunks (f32 mode: at most 3), the whole row up to cols 8192
 *    (Trinity-1.1B: cols 2048 -> 1 chunk, 5632 -> 3); longer rows take several loads.
 *  - TQ1_0 (52 code bytes = 13 words per block, rows only 4-byte aligned): each half-warp takes one block, lane j
 *    < 13 its word j (3 lanes idle); 2 * NS blocks per load, NS = the power of two >= nb / 2, at most 8 (f32
 *    mode: 4). Base-3 digits are extracted four at a time in 16-bit lanes of 32-bit multiplies (tq1_next_digits).
 *  - quantize_act: one CTA of 256 threads per block of 256 values. */
#include "ternary_device.cuh"

static_assert(sizeof(trn_cuda_q8_block) == 264 && offsetof(trn_cuda_q8_block, q) == 8, "trn_cuda_q8_block layout");

using namespace trn_ternary;

/* ---- device code ---- */

namespace {

/* ---- activation quantizer ---- */

/* x (n,) -> xq (n / 256,): CTA b quantizes x[256 b .. 256 b + 255], one value per thread. */
__global__ void __launch_bounds__(kCtaThreads) quantize_act_kernel(const float *__restrict__ x,
                                                                   trn_cuda_q8_block *__restrict__ xq) {
    __shared__ float warp_max[kWarpsPerCta];
    __shared__ int warp_sum[kWarpsPerCta];
    const int t = threadIdx.x, lane = t & (kWarp - 1), warp = t >> 5;
    const int64_t b = blockIdx.x;
    const float v = x[b * TRN_QK_K + t];
    float m = fmaxf(0.0f, fabsf(v)); /* fmaxf drops NaNs, as the CPU's loop from 0 does; max is order-free */
    for (int o = kWarp / 2; o > 0; o /= 2)
        m = fmaxf(m, __shfl_xor_sync(kFullMask, m, o));
    if (lane == 0)
        warp_max[warp] = m;
    __syncthreads();
    float amax = 0.0f;
    for (int w = 0; w < kWarpsPerCta; w++)
        amax = fmaxf(amax, warp_max[w]);
    const float d = div_rn(amax, 127.0f);
    const float id = d > 0.0f ? div_rn(1.0f, d) : 0.0f;
    const int q = rint_to_int(mul_rn(v, id));
    xq[b].q[t] = (int8_t)q;
    int s = q;
    for (int o = kWarp / 2; o > 0; o /= 2)
        s += __shfl_xor_sync(kFullMask, s, o);
    if (lane == 0)
        warp_sum[warp] = s;
    __syncthreads();
    if (t == 0) {
        int sum = 0;
        for (int w = 0; w < kWarpsPerCta; w++)
            sum += warp_sum[w];
        xq[b].d = d;
        xq[b].sum = sum;
    }
}

/* The launch's wait: programmatic dependent launch (no-ops without it), the next kernel then free to start. */
struct pdl_wait {
    __device__ void operator()() const {
        trn_pdl_wait();
        trn_pdl_launch_dependents();
    }
};

template <class F, int N, bool INT8>
__global__ void __launch_bounds__(kCtaThreads, kCtasPerSm) ternary_kernel(const ternary_params p) {
    extern __shared__ __align__(16) uint8_t smem[];
    ternary_body<F, N, INT8>(p, smem, blockIdx.x, gridDim.x, pdl_wait{});
}

} // namespace

/* ---- launchers ---- */

namespace {

/* Largest nb whose staged activations fit the 48 KB of shared memory every card gives without opting in:
 * cols up to 38144 (Llama-family FFNs reach 28672). */
constexpr int kMaxBlocksPerRow = (48 * 1024 - kWarpsPerCta * 4) / kActBytesPerBlock;

int sm_count() {
    int device = 0, n = 0;
    if (cudaGetDevice(&device) != cudaSuccess ||
        cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, device) != cudaSuccess || n <= 0)
        return 0;
    return n;
}

bool aligned(const void *p, uintptr_t n) { return (reinterpret_cast<uintptr_t>(p) & (n - 1)) == 0; }

template <class F, int N, bool INT8>
cudaError_t launch(const ternary_params &p, int grid, size_t smem, bool pdl, cudaStream_t stream) {
    cudaLaunchConfig_t config = {};
    config.gridDim = dim3((unsigned)grid);
    config.blockDim = dim3(kCtaThreads);
    config.dynamicSmemBytes = smem;
    config.stream = stream;
    cudaLaunchAttribute attribute;
    attribute.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attribute.val.programmaticStreamSerializationAllowed = 1;
    config.attrs = pdl ? &attribute : nullptr;
    config.numAttrs = pdl ? 1 : 0;
    const cudaError_t err = cudaLaunchKernelEx(&config, ternary_kernel<F, N, INT8>, p);
    return err != cudaSuccess ? err : cudaGetLastError();
}

cudaError_t dispatch(const ternary_params &p, ternary_variant v, int grid, size_t smem, bool pdl, cudaStream_t s) {
    if (v.tq2) {
        if (v.int8)
            return v.n == 1 ? launch<Tq2Format, 1, true>(p, grid, smem, pdl, s)
                 : v.n == 2 ? launch<Tq2Format, 2, true>(p, grid, smem, pdl, s)
                 : v.n == 3 ? launch<Tq2Format, 3, true>(p, grid, smem, pdl, s)
                            : launch<Tq2Format, 4, true>(p, grid, smem, pdl, s);
        return v.n == 1 ? launch<Tq2Format, 1, false>(p, grid, 0, pdl, s)
             : v.n == 2 ? launch<Tq2Format, 2, false>(p, grid, 0, pdl, s)
                        : launch<Tq2Format, 3, false>(p, grid, 0, pdl, s);
    }
    if (v.int8)
        return v.n == 1 ? launch<Tq1Format, 1, true>(p, grid, smem, pdl, s)
             : v.n == 2 ? launch<Tq1Format, 2, true>(p, grid, smem, pdl, s)
             : v.n == 4 ? launch<Tq1Format, 4, true>(p, grid, smem, pdl, s)
                        : launch<Tq1Format, 8, true>(p, grid, smem, pdl, s);
    return v.n == 1 ? launch<Tq1Format, 1, false>(p, grid, 0, pdl, s)
         : v.n == 2 ? launch<Tq1Format, 2, false>(p, grid, 0, pdl, s)
                    : launch<Tq1Format, 4, false>(p, grid, 0, pdl, s);
}

} // namespace

namespace trn_ternary {

int ternary_grid(int64_t units) {
    const int64_t wanted = (units + kWarpsPerCta - 1) / kWarpsPerCta;
    const int sms = sm_count();
    const int64_t cap = sms > 0 ? (int64_t)sms * kCtasPerSm : wanted;
    return (int)(wanted < cap ? wanted : cap);
}

/* Steps per load (the variant's N): TQ2_0 the whole row up to cols 8192 in int8 mode (Trinity-1.1B: cols 2048 -> 1,
 * 5632 -> 3), TQ1_0 up to 16 blocks; f32 mode keeps a quarter less in flight (3 and 4) to stay within 64 registers. */
cudaError_t ternary_prepare(const trn_cuda_ternary_op *op, ternary_params *out, ternary_variant *variant,
                            size_t *smem) {
    if (!op || op->n_mat < 1 || op->n_mat > 3 || !op->y)
        return cudaErrorInvalidValue;
    const trn_cuda_matrix *w = op->w;
    const bool tq2 = w[0].type == TRN_TYPE_TQ2_0;
    if ((!tq2 && w[0].type != TRN_TYPE_TQ1_0) || w[0].cols <= 0 || w[0].cols % TRN_QK_K != 0 ||
        w[0].cols / TRN_QK_K > kMaxBlocksPerRow)
        return cudaErrorInvalidValue;
    const int nb = (int)(w[0].cols / TRN_QK_K);
    /* 16-byte code loads (TQ2_0) or 4-byte ones (TQ1_0) */
    const uintptr_t code_align = tq2 ? 16 : 4;
    if (w[0].row_bytes < (size_t)nb * (tq2 ? TRN_QK_K / 4 : kTq1Bytes) || w[0].row_bytes % code_align != 0)
        return cudaErrorInvalidValue;
    ternary_params &p = *out;
    p = ternary_params{};
    int64_t total_rows = 0;
    for (int m = 0; m < op->n_mat; m++) {
        if (w[m].type != w[0].type || w[m].cols != w[0].cols || w[m].row_bytes != w[0].row_bytes || w[m].rows < 0 ||
            !w[m].qs || !w[m].d)
            return cudaErrorInvalidValue;
        if (!aligned(w[m].qs, code_align) || !aligned(w[m].d, 2))
            return cudaErrorMisalignedAddress;
        p.qs[m] = static_cast<const uint8_t *>(w[m].qs);
        p.d[m] = w[m].d;
        p.rows[m] = w[m].rows;
        total_rows += w[m].rows;
    }
    const bool int8 = op->input != TRN_CUDA_IN_F32;
    switch (op->input) {
    case TRN_CUDA_IN_XQ:
        if (!op->xq)
            return cudaErrorInvalidValue;
        if (!aligned(op->xq, 4))
            return cudaErrorMisalignedAddress;
        break;
    case TRN_CUDA_IN_NORM_QUANT:
        if (!op->norm)
            return cudaErrorInvalidValue;
        if (!aligned(op->norm, 16))
            return cudaErrorMisalignedAddress;
        [[fallthrough]];
    case TRN_CUDA_IN_QUANT:
    case TRN_CUDA_IN_F32:
        if (!op->x)
            return cudaErrorInvalidValue;
        if (!aligned(op->x, 16))
            return cudaErrorMisalignedAddress;
        break;
    default:
        return cudaErrorInvalidValue;
    }
    int rows_per_unit = 1;
    switch (op->output) {
    case TRN_CUDA_OUT_STORE:
    case TRN_CUDA_OUT_ADD:
        break;
    case TRN_CUDA_OUT_SWIGLU:
        if (op->n_mat != 2 || w[0].rows != w[1].rows)
            return cudaErrorInvalidValue;
        rows_per_unit = 2;
        break;
    case TRN_CUDA_OUT_QKV:
        if (op->n_mat != 3 || w[1].rows != w[2].rows || !op->k_cache || !op->v_cache || !op->rope_cos_sin ||
            !op->pos || op->head_dim <= 0 || op->head_dim % 2 != 0 || w[0].rows % op->head_dim != 0 ||
            w[1].rows % op->head_dim != 0)
            return cudaErrorInvalidValue;
        rows_per_unit = 2;
        break;
    default:
        return cudaErrorInvalidValue;
    }
    p.n_mat = op->n_mat;
    p.nb = nb;
    p.row_bytes = w[0].row_bytes;
    p.rows_per_unit = rows_per_unit;
    p.n_units = total_rows / rows_per_unit;
    p.input = op->input;
    p.x = op->x;
    p.xq = op->xq;
    p.xq_aligned8 = op->xq && aligned(op->xq, 8);
    p.norm = op->norm;
    p.eps = op->eps;
    p.output = op->output;
    p.y = op->y;
    p.k_cache = op->k_cache;
    p.v_cache = op->v_cache;
    p.rope_cos_sin = op->rope_cos_sin;
    p.pos = op->pos;
    p.head_dim = op->head_dim;
    const int steps = tq2 ? (nb + 7) / 8 : (nb + 1) / 2;
    const int max_n = tq2 ? (int8 ? 4 : 3) : (int8 ? 8 : 4);
    int n = 1;
    while (n < steps && n < max_n)
        n = tq2 ? n + 1 : 2 * n;
    *variant = ternary_variant{tq2, int8, n};
    *smem = int8 ? (size_t)nb * kActBytesPerBlock : 0;
    return cudaSuccess;
}

} // namespace trn_ternary

extern "C" int trn_cuda_quantize_act(const float *x, trn_cuda_q8_block *xq, int64_t n, trn_cuda_stream stream) {
    if (n == 0)
        return cudaSuccess;
    if (n < 0 || n % TRN_QK_K != 0 || !x || !xq)
        return cudaErrorInvalidValue;
    if (!aligned(xq, 4))
        return cudaErrorMisalignedAddress;
    quantize_act_kernel<<<(unsigned)(n / TRN_QK_K), kCtaThreads, 0, stream>>>(x, xq);
    return (int)cudaGetLastError();
}

extern "C" int trn_cuda_ternary(const trn_cuda_ternary_op *op, int pdl, trn_cuda_stream stream) {
    ternary_params p;
    ternary_variant v;
    size_t smem = 0;
    const cudaError_t err = ternary_prepare(op, &p, &v, &smem);
    if (err != cudaSuccess || p.n_units == 0)
        return (int)err;
    return (int)dispatch(p, v, ternary_grid(p.n_units), smem, pdl != 0, reinterpret_cast<cudaStream_t>(stream));
}

extern "C" int trn_cuda_gemv_ternary(const trn_cuda_matrix *w, const float *x, const trn_cuda_q8_block *xq, float *y,
                                     trn_cuda_stream stream) {
    if (!w || (!x && !xq))
        return cudaErrorInvalidValue;
    trn_cuda_ternary_op op = {};
    op.n_mat = 1;
    op.w[0] = *w;
    op.input = xq ? TRN_CUDA_IN_XQ : TRN_CUDA_IN_F32;
    op.x = x;
    op.xq = xq;
    op.output = TRN_CUDA_OUT_STORE;
    op.y = y;
    return trn_cuda_ternary(&op, 0, stream);
}
