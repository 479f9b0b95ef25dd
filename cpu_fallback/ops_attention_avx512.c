/* ops_attention_avx512.c: the attention kernel of ops_attention.c built a second time, with 16-lane vectors
 * (compiled with the AVX-512 flags): trn_avx512_attention, the AVX-512 table's entry. Its results are bitwise those
 * of the AVX2 build (the arithmetic per head is fixed there, whatever the vector width). */
#define TRN_ATTENTION_AVX512 1
#include "ops_attention.c"
