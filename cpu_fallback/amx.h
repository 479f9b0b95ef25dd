/* amx.h: internal to cpu_fallback/: Intel AMX (eight tile registers of up to 16 rows x 64 bytes, int8 tile dot
 * products) for the batched prefill kernel (ops_amx_matmul.c):
 * - whether this CPU and OS let the process use the tiles (trn_amx_usable, amx.c);
 * - the tile configuration block (palette 1);
 * - the few tile operations the kernel is written against, TRN_TILE_*, with two implementations: the instructions
 *   (where the file is compiled with -mamx-tile -mamx-int8: ops_amx_matmul.c) and a scalar emulator with the same
 *   semantics (where TRN_AMX_EMULATE is defined: ops_amx_matmul_emulated.c, functions in amx.c), which runs on any
 *   CPU. The emulator follows the Intel SDM's definitions, faults included (it aborts where the instruction would
 *   raise #UD: an unconfigured tile, shapes that do not match), so a kernel that runs under it uses the tiles as
 *   the hardware allows.
 *
 * Tile numbers are compile-time constants (the instructions encode them). Operations:
 *   TRN_TILE_CONFIG(cfg)       ldtilecfg: tile t gets cfg->rows[t] rows of cfg->colsb[t] bytes, all tiles zeroed
 *   TRN_TILE_ZERO(t)           tilezero
 *   TRN_TILE_LOAD(t, p, s)     tileloadd: row i of tile t = the colsb[t] bytes at p + i * s (s in bytes)
 *   TRN_TILE_STORE(t, p, s)    tilestored: the reverse
 *   TRN_TILE_DPBSUD(c, a, b)   tdpbsud: for m < rows[c], n < colsb[c] / 4:
 *                              C[m][n] += sum over k < colsb[a] / 4, i < 4 of s8(A[m][4k + i]) * u8(B[k][4n + i])
 *                              (int32, wrapping; a: signed bytes, b: unsigned bytes)
 *   TRN_TILE_RELEASE()         tilerelease: back to the unconfigured state */
#ifndef TRN_AMX_H
#define TRN_AMX_H

#include <stdint.h>

enum { TRN_AMX_TILES = 8, TRN_AMX_MAX_ROWS = 16, TRN_AMX_MAX_COLSB = 64 };

/* The 64-byte operand of ldtilecfg (palette 1). */
typedef struct {
    _Alignas(64) uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} trn_amx_config;

/* 1 where the CPU reports AMX-TILE and AMX-INT8 (CPUID.(7,0):EDX bits 24, 25), the OS enables tile state in XCR0
 * (bits 17, 18) and, on Linux, grants this process the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM); else 0, and
 * *why (where why is not NULL) says which of those failed. The first call asks the OS; later calls return its answer. */
int trn_amx_usable(const char **why);

/* The emulator: one tile state per thread, as the hardware keeps one per thread. */
void trn_amx_emu_config(const trn_amx_config *cfg);
void trn_amx_emu_zero(int t);
void trn_amx_emu_load(int t, const void *base, int64_t stride);
void trn_amx_emu_store(int t, void *base, int64_t stride);
void trn_amx_emu_dpbsud(int c, int a, int b);
void trn_amx_emu_release(void);

#if defined(TRN_AMX_EMULATE)
#define TRN_TILE_CONFIG(cfg) trn_amx_emu_config(cfg)
#define TRN_TILE_ZERO(t) trn_amx_emu_zero(t)
#define TRN_TILE_LOAD(t, p, s) trn_amx_emu_load(t, p, s)
#define TRN_TILE_STORE(t, p, s) trn_amx_emu_store(t, p, s)
#define TRN_TILE_DPBSUD(c, a, b) trn_amx_emu_dpbsud(c, a, b)
#define TRN_TILE_RELEASE() trn_amx_emu_release()
#elif (defined(__AMX_TILE__) || defined(__AMXTILE__)) && (defined(__AMX_INT8__) || defined(__AMXINT8__)) /* GCC, clang */
#include <immintrin.h>
/* GCC's ldtilecfg and tileloadd intrinsics are asm statements that do not tell the compiler which memory they read,
 * so a compiler barrier ahead of each makes every store before it (the codes just unpacked, the configuration) land
 * in memory first. */
#define TRN_TILE_CONFIG(cfg) do { __asm__ volatile("" ::: "memory"); _tile_loadconfig(cfg); } while (0)
#define TRN_TILE_ZERO(t) _tile_zero(t)
#define TRN_TILE_LOAD(t, p, s) do { __asm__ volatile("" ::: "memory"); _tile_loadd(t, p, s); } while (0)
#define TRN_TILE_STORE(t, p, s) do { _tile_stored(t, p, s); __asm__ volatile("" ::: "memory"); } while (0)
#define TRN_TILE_DPBSUD(c, a, b) _tile_dpbsud(c, a, b)
#define TRN_TILE_RELEASE() _tile_release()
#endif

#endif
