# cli_lib.sh: helpers shared by the shell tests of the `trinity` command (sourced, not run).
# The sourcing script sets WORK, OUT, ERR, LIMIT and the counters PASSED, FAILED, SKIPPED.

# run CMD...: runs CMD in an empty $WORK under `timeout $LIMIT`; sets RC, fills $OUT and $ERR.
run() {
    rm -rf "$WORK" && mkdir "$WORK" || exit 1
    (cd "$WORK" && exec timeout "$LIMIT" "$@") >"$OUT" 2>"$ERR" </dev/null
    RC=$?
}

details() {
    echo "    exit code: $RC"
    echo "    stdout (first 5 lines):"
    head -n 5 "$OUT" | cut -c1-300 | sed 's/^/      | /'
    echo "    stderr (last 10 lines):"
    tail -n 10 "$ERR" | cut -c1-300 | sed 's/^/      | /'
}

ok() {
    PASSED=$((PASSED + 1))
    echo "ok   $1"
}

not_ok() {
    FAILED=$((FAILED + 1))
    echo "FAIL $1: $2"
    details
}

skip() {
    SKIPPED=$((SKIPPED + 1))
    echo "SKIPPED $1: $2"
}

check() { # check NAME WHAT-FAILED STATUS
    if [ "$3" -eq 0 ]; then ok "$1"; else not_ok "$1" "$2"; fi
}

# A sanitizer report or a crash message anywhere in stderr.
sanitizer_report() {
    grep -E -m1 -e 'AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:|==[0-9]+==' \
        -e 'Segmentation fault|Aborted|core dumped' "$ERR"
}
