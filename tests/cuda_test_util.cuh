/* cuda_test_util.cuh: what the single-kernel CUDA tests (test_cuda_gemv.cu, test_cuda_gemm.cu) share: checked CUDA
 * calls that exit with the call and line, a reproducible random stream, device copies, and random ternary matrices in
 * the file format and in the split device layout cuda_backend.cu makes (codes [rows][nb * 64 or 52], fp16 scales
 * [rows][nb]). Each test includes it once (static definitions). */
#ifndef TRN_TESTS_CUDA_TEST_UTIL_CUH
#define TRN_TESTS_CUDA_TEST_UTIL_CUH

#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

extern "C" {
#include "host/tensor_types.h"
}
#include "cuda/cuda_ops.h"

#define CK(call) do { cudaError_t e_ = (call); if (e_ != cudaSuccess) { fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString(e_)); exit(2); } } while (0)
#define LK(call) do { int e_ = (call); if (e_ != 0) { fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #call, cudaGetErrorString((cudaError_t)e_)); exit(2); } } while (0)

static int failures = 0;
static uint64_t st = 0x9E3779B97F4A7C15ull;
static uint64_t rnd() { st ^= st << 13; st ^= st >> 7; st ^= st << 17; return st; }
static float frand(float lo, float hi) { return lo + (hi - lo) * (float)((rnd() >> 11) * (1.0 / 9007199254740992.0)); }
static uint8_t brand() { return (uint8_t)(rnd() >> 32); }

template <class T> static T *up(const T *h, size_t n) { T *d; CK(cudaMalloc(&d, n * sizeof(T) + 16)); CK(cudaMemcpy(d, h, n * sizeof(T), cudaMemcpyHostToDevice)); return d; }
template <class T> static std::vector<T> down(const T *d, size_t n) { std::vector<T> h(n); CK(cudaDeviceSynchronize()); CK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost)); return h; }

/* TQ2_0 / TQ1_0 file rows of random bytes (any codes, incl. TQ2_0 code 3 and TQ1_0 bytes >= 243) with random scales. */
static std::vector<uint8_t> random_ternary_rows(trn_type t, int64_t rows, int64_t cols) {
    std::vector<uint8_t> file((size_t)rows * trn_row_bytes(t, cols));
    for (auto &b : file) b = brand();
    const size_t bb = t == TRN_TYPE_TQ2_0 ? 66 : 54, cb = bb - 2;
    for (size_t k = 0; k < file.size() / bb; k++) { trn_fp16 d = trn_f32_to_fp16(frand(0.001f, 0.05f)); memcpy(&file[k * bb + cb], &d, 2); }
    return file;
}

/* Ternary file rows split into codes + scales on the device, as cuda_backend.cu lays them out. */
static trn_cuda_matrix upload_ternary(trn_type t, const std::vector<uint8_t> &file, int64_t rows, int64_t cols) {
    const size_t bb = t == TRN_TYPE_TQ2_0 ? 66 : 54, cb = bb - 2;
    std::vector<uint8_t> codes(file.size() / bb * cb);
    std::vector<trn_fp16> sc(file.size() / bb);
    for (size_t k = 0; k < sc.size(); k++) { memcpy(&codes[k * cb], &file[k * bb], cb); memcpy(&sc[k], &file[k * bb + cb], 2); }
    return {t, rows, cols, up(codes.data(), codes.size()), up(sc.data(), sc.size()), (size_t)(cols / 256) * cb};
}

#endif
