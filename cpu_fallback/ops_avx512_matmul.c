/* ops_avx512_matmul.c: the batched ternary kernel of ops_avx2_matmul.c built a second time, with 512-bit vpdpbusd
 * and 16-row tiles (compiled with the AVX-512 table's flags): trn_matmul_tq_dpbusd, the AVX-512 table's matmul. Its
 * sums are the same exact integers as the vpmaddubsw build's. */
#define TRN_MATMUL_DPBUSD 1
#include "ops_avx2_matmul.c"
