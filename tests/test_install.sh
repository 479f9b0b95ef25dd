#!/usr/bin/env bash
# test_install.sh: Trinity as a library others embed.
#
#   bash tests/test_install.sh BUILD_DIR
#
# `cmake --install BUILD_DIR` into a temporary prefix must put the header, libtrinity.so (exporting trinity_*
# symbols alone) and libtrinity.a, the CMake package and trinity.pc in place; tests/consumer/consumer.c, which
# includes <trinity.h> and nothing of the source tree, is then built twice against that prefix, with
# find_package(trinity) and with pkg-config, and each build runs on the synthetic model. pkg-config missing:
# that build is skipped with a message. Prints "test_install: N passed, M failed, K skipped".
set -u
BUILD=$(cd "$1" && pwd)
SRC=$(cd "$(dirname "$0")/.." && pwd)
TMP=$(mktemp -d "${TMPDIR:-/tmp}/trinity_test_install.XXXXXX") || exit 1
trap 'rm -rf "$TMP"' EXIT
P=$TMP/prefix
PASSED=0 FAILED=0 SKIPPED=0
ok() { PASSED=$((PASSED + 1)); echo "ok   $1"; }
not_ok() { FAILED=$((FAILED + 1)); echo "FAIL $1: $2"; [ -n "${3:-}" ] && tail -n 20 "$3" | sed 's/^/      | /'; }

if cmake --install "$BUILD" --prefix "$P" >"$TMP/install.log" 2>&1; then ok "cmake --install"; else
    not_ok "cmake --install" "failed" "$TMP/install.log"; echo "test_install: $PASSED passed, $FAILED failed"; exit 1; fi
LIB=$P/lib
missing=""
for f in include/trinity.h lib/libtrinity.so lib/libtrinity.a lib/cmake/trinity/trinityConfig.cmake \
    lib/cmake/trinity/trinityConfigVersion.cmake lib/pkgconfig/trinity.pc bin/trinity; do
    [ -e "$P/$f" ] || missing="$missing $f"
done
if [ -z "$missing" ]; then ok "installed files"; else not_ok "installed files" "missing:$missing"; fi
others=$(nm -D --defined-only "$LIB/libtrinity.so" 2>/dev/null | awk '{print $3}' | grep -v '^trinity_' | head -n 5)
if [ -z "$others" ] && nm -D --defined-only "$LIB/libtrinity.so" | grep -q ' trinity_session_generate$'; then
    ok "libtrinity.so exports the API alone"
else
    not_ok "libtrinity.so exports the API alone" "other symbols: $others"
fi

# run_consumer NAME EXE: the consumer must exit 0 and report its tokens
run_consumer() {
    if "$2" >"$TMP/$1.out" 2>&1 && grep -q '^consumer: trinity .* generated' "$TMP/$1.out"; then ok "$1: runs"; else
        not_ok "$1: runs" "exit code or output wrong" "$TMP/$1.out"; fi
}

if cmake -S "$SRC/tests/consumer" -B "$TMP/cmake" -DCMAKE_PREFIX_PATH="$P" >"$TMP/cmake.log" 2>&1 &&
    cmake --build "$TMP/cmake" >>"$TMP/cmake.log" 2>&1; then
    ok "find_package(trinity): builds"
    run_consumer "find_package(trinity)" "$TMP/cmake/consumer"
else
    not_ok "find_package(trinity): builds" "configure or build failed" "$TMP/cmake.log"
fi

if command -v pkg-config >/dev/null; then
    flags=$(PKG_CONFIG_PATH=$LIB/pkgconfig pkg-config --cflags --libs trinity 2>"$TMP/pc.log")
    # shellcheck disable=SC2086
    if [ -n "$flags" ] && cc "$SRC/tests/consumer/consumer.c" $flags -Wl,-rpath,"$LIB" -o "$TMP/pc_consumer" \
        >>"$TMP/pc.log" 2>&1; then
        ok "pkg-config trinity: builds ($flags)"
        run_consumer "pkg-config trinity" "$TMP/pc_consumer"
    else
        not_ok "pkg-config trinity: builds" "pkg-config or cc failed" "$TMP/pc.log"
    fi
else
    SKIPPED=$((SKIPPED + 1))
    echo "SKIPPED pkg-config build: pkg-config not found"
fi

echo "test_install: $PASSED passed, $FAILED failed, $SKIPPED skipped"
[ "$FAILED" -eq 0 ]
