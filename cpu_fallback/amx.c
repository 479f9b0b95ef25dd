/* amx.c: whether the process may use Intel AMX (amx.h), and the scalar tile emulator the kernel's emulated build runs
 * on. Compiled without any -m flag: it runs on every x86-64 CPU (the detection) and on any CPU at all (the emulator). */
#define _DEFAULT_SOURCE /* syscall() */
#include "amx.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
#endif
#if defined(__linux__) && defined(__x86_64__)
#include <sys/syscall.h>
#include <unistd.h>
#endif

/* ---- run-time support ---------------------------------------------------------------------------------- */

enum {
    ARCH_REQ_XCOMP_PERM = 0x1023, /* Linux arch_prctl: ask for an extended state component */
    XFEATURE_XTILEDATA = 18,      /* the tile data state (XCR0 bit 18) */
};

static const char *amx_check(void) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    unsigned eax, ebx, ecx, edx;
    if (!__get_cpuid_count(7, 0, &eax, &ebx, &ecx, &edx) || !(edx & (1u << 24)) || !(edx & (1u << 25)))
        return "this CPU has no AMX-TILE and AMX-INT8 (CPUID leaf 7)";
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx) || !(ecx & (1u << 27)))
        return "the OS has not enabled XSAVE (no OSXSAVE)";
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    if ((lo & (3u << 17)) != (3u << 17))
        return "the OS does not enable the tile state (XCR0 bits 17, 18)";
#if defined(__linux__)
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0)
        return "Linux refused the tile data state (arch_prctl ARCH_REQ_XCOMP_PERM; a kernel before 5.16?)";
    return NULL;
#else
    return "AMX is used on Linux only (the tile data state is granted per process there)";
#endif
#else
    return "not an x86-64 build";
#endif
}

int trn_amx_usable(const char **why) {
    static atomic_int state; /* 0: not asked yet, 1: usable, 2: not usable */
    static const char *_Atomic reason;
    int s = atomic_load(&state);
    if (s == 0) {
        const char *r = amx_check(); /* asking twice (two threads at once) is harmless: the grant is idempotent */
        atomic_store(&reason, r);
        s = r ? 2 : 1;
        atomic_store(&state, s);
    }
    if (why)
        *why = s == 1 ? NULL : atomic_load(&reason);
    return s == 1;
}

/* ---- the emulator -------------------------------------------------------------------------------------- */

typedef struct {
    int configured;
    int rows[TRN_AMX_TILES], colsb[TRN_AMX_TILES];
    uint8_t data[TRN_AMX_TILES][TRN_AMX_MAX_ROWS][TRN_AMX_MAX_COLSB];
} emu_state;

static _Thread_local emu_state emu;

/* Where the instruction would raise #UD (or #GP): a kernel bug, reported and fatal. */
static void emu_fault(const char *op, const char *what) {
    fprintf(stderr, "AMX emulator: %s: %s (the instruction would fault)\n", op, what);
    abort();
}

static void emu_check_tile(const char *op, int t) {
    if (!emu.configured)
        emu_fault(op, "tiles not configured");
    if (t < 0 || t >= TRN_AMX_TILES)
        emu_fault(op, "no such tile register");
    if (emu.rows[t] == 0 || emu.colsb[t] == 0)
        emu_fault(op, "the tile is not configured (0 rows or bytes)");
}

void trn_amx_emu_config(const trn_amx_config *cfg) {
    if (cfg->palette == 0) { /* palette 0: the unconfigured state */
        trn_amx_emu_release();
        return;
    }
    if (cfg->palette != 1)
        emu_fault("ldtilecfg", "palette other than 1");
    for (int i = 0; i < 14; i++)
        if (cfg->reserved[i])
            emu_fault("ldtilecfg", "reserved bytes not zero");
    memset(&emu, 0, sizeof(emu));
    for (int t = 0; t < 16; t++) {
        const int rows = cfg->rows[t], colsb = cfg->colsb[t];
        if (t >= TRN_AMX_TILES ? rows || colsb : rows > TRN_AMX_MAX_ROWS || colsb > TRN_AMX_MAX_COLSB || !rows != !colsb)
            emu_fault("ldtilecfg", "a tile's rows or bytes out of range");
        if (t < TRN_AMX_TILES) {
            emu.rows[t] = rows;
            emu.colsb[t] = colsb;
        }
    }
    emu.configured = 1;
}

void trn_amx_emu_release(void) { memset(&emu, 0, sizeof(emu)); }

void trn_amx_emu_zero(int t) {
    emu_check_tile("tilezero", t);
    memset(emu.data[t], 0, sizeof(emu.data[t]));
}

void trn_amx_emu_load(int t, const void *base, int64_t stride) {
    emu_check_tile("tileloadd", t);
    memset(emu.data[t], 0, sizeof(emu.data[t])); /* rows and bytes past the configured shape read as zero */
    for (int r = 0; r < emu.rows[t]; r++)
        memcpy(emu.data[t][r], (const uint8_t *)base + r * stride, (size_t)emu.colsb[t]);
}

void trn_amx_emu_store(int t, void *base, int64_t stride) {
    emu_check_tile("tilestored", t);
    for (int r = 0; r < emu.rows[t]; r++)
        memcpy((uint8_t *)base + r * stride, emu.data[t][r], (size_t)emu.colsb[t]);
}

void trn_amx_emu_dpbsud(int c, int a, int b) {
    emu_check_tile("tdpbsud", c);
    emu_check_tile("tdpbsud", a);
    emu_check_tile("tdpbsud", b);
    if (c == a || c == b || a == b)
        emu_fault("tdpbsud", "the same tile register twice");
    if (emu.colsb[c] % 4 || emu.colsb[a] % 4 || emu.rows[c] != emu.rows[a] || emu.colsb[a] / 4 != emu.rows[b] ||
        emu.colsb[c] != emu.colsb[b])
        emu_fault("tdpbsud", "shapes do not match (C rows = A rows, A bytes / 4 = B rows, C bytes = B bytes)");
    for (int m = 0; m < emu.rows[c]; m++) {
        uint8_t *row = emu.data[c][m];
        for (int n = 0; n < emu.colsb[c] / 4; n++) {
            uint32_t acc;
            memcpy(&acc, row + 4 * n, 4);
            for (int k = 0; k < emu.colsb[a] / 4; k++)
                for (int i = 0; i < 4; i++) /* signed A byte times unsigned B byte, added with int32 wrap-around */
                    acc += (uint32_t)((int32_t)(int8_t)emu.data[a][m][4 * k + i] * (int32_t)emu.data[b][k][4 * n + i]);
            memcpy(row + 4 * n, &acc, 4);
        }
    }
}
