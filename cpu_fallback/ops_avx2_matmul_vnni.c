/* ops_avx2_matmul_vnni.c: the batched ternary kernel of ops_avx2_matmul.c built a second time, with 512-bit
 * vpdpbusd and 16-row tiles (compiled with -mavx512f -mavx512bw -mavx512vnni besides the AVX2 flags): trn_matmul_tq_dpbusd.
 * The AVX2 table's matmul entry runs it where the CPU has AVX512F, AVX512BW and AVX512-VNNI; its sums are the same exact
 * integers as the vpmaddubsw build's. */
#define TRN_MATMUL_DPBUSD 1
#include "ops_avx2_matmul.c"
