/* quants.h: scalar reference conversions between floats and the GGUF tensor types.
 *
 * These are the plain-loop definitions every fast kernel is tested against: dequantization of a row of
 * any supported type, and quantization of floats into the types Trinity writes (F32, F16, BF16, Q8_0,
 * TQ1_0, TQ2_0). Byte layouts are those of ggml (tensor_types.h), so rows round-trip with llama.cpp. */
#ifndef TRN_QUANTS_H
#define TRN_QUANTS_H

#include <stdint.h>

#include "host/tensor_types.h"

/* src: a row of n elements of `type` (n a multiple of the block size) -> dst[n] floats. */
void trn_dequantize_row(trn_type type, const void *src, float *dst, int64_t n);

/* src[n] floats -> a row of `type`. Returns 0 if the type cannot be written (Q4_K, Q6_K) or n is not a
 * multiple of the block size.
 * Q8_0: per block of 32, d = max|x| / 127, q = round(x / d).
 * TQ1_0, TQ2_0: per block of 256, d = max|x|, code = round(x / d) + 1 in {0, 1, 2}: lossless for
 * weights that are already {-1, 0, +1} times one scale per block. */
int trn_quantize_row(trn_type type, const float *src, void *dst, int64_t n);

/* Ternary codes (w + 1, in {0, 1, 2}) of the 256 weights of one block, in weight order. */
void trn_tq2_0_block_codes(const trn_block_tq2_0 *block, uint8_t codes[256]);
void trn_tq1_0_block_codes(const trn_block_tq1_0 *block, uint8_t codes[256]);
/* The TQ2_0 block of 256 codes (in {0, 1, 2}, weight order) and scale d. */
void trn_tq2_0_block_from_codes(const uint8_t codes[256], trn_fp16 d, trn_block_tq2_0 *block);

#endif
