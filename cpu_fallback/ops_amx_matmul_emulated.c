/* ops_amx_matmul_emulated.c: the AMX kernel of ops_amx_matmul.c built a second time (AVX-512 flags, no AMX ones) with
 * every tile operation done by the scalar emulator of amx.c: trn_matmul_tq_amx_emulated, the `amx-emulated` table's
 * matmul. It runs on any AVX-512 VNNI CPU, so the tests check the kernel's tile code where the CPU has no AMX. */
#define TRN_AMX_EMULATE 1
#include "ops_amx_matmul.c"
