# cli_lib.sh: what the shell tests of the `trinity` command share (sourced, not run): the set-up, running a
# command, one line per case (ok, FAIL with details, SKIPPED), the checks of a failing and of a succeeding
# command, and the summary line with the exit code. A test script reads
#
#   source "$(dirname "${BASH_SOURCE[0]}")/cli_lib.sh"
#   cli_setup NAME DEFAULT_LIMIT "$@"    # the script's arguments: TRINITY MAKE_TEST_MODELS
#   ... cases ...
#   cli_finish

# cli_setup NAME DEFAULT_LIMIT TRINITY MAKE_TEST_MODELS: checks the arguments (usage: exit 2) and sets
#   TEST_NAME    NAME, for the summary line
#   TRINITY      the command, as an absolute path (it must be an executable: exit 1 otherwise)
#   MAKE_MODELS  make_test_models, as an absolute path (checked by the scripts that use it)
#   LIMIT        seconds per command: TRN_TEST_TIMEOUT, or DEFAULT_LIMIT
#   TMP          a temporary folder, removed on exit; WORK ($TMP/work, empty), OUT and ERR in it
#   PASSED FAILED SKIPPED RC
cli_setup() {
    TEST_NAME=$1
    local default_limit=$2
    shift 2
    if [ $# -ne 2 ]; then
        echo "usage: bash tests/$TEST_NAME.sh TRINITY MAKE_TEST_MODELS" >&2
        exit 2
    fi
    TRINITY=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
    MAKE_MODELS=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
    if [ ! -x "$TRINITY" ]; then
        echo "$TEST_NAME: $TRINITY is not an executable" >&2
        exit 1
    fi
    LIMIT=${TRN_TEST_TIMEOUT:-$default_limit}
    TMP=$(mktemp -d "${TMPDIR:-/tmp}/trinity_$TEST_NAME.XXXXXX") || exit 1
    trap 'rm -rf "$TMP"' EXIT
    WORK=$TMP/work # the working directory of every command: it must stay empty
    mkdir -p "$WORK"
    OUT=$TMP/stdout
    ERR=$TMP/stderr
    PASSED=0
    FAILED=0
    SKIPPED=0
    RC=0
}

# cli_finish: the summary line "NAME: N passed, M failed, K skipped"; exits 1 if a case failed, 77 if none could run.
cli_finish() {
    echo "$TEST_NAME: $PASSED passed, $FAILED failed, $SKIPPED skipped"
    if [ "$FAILED" -gt 0 ]; then exit 1; fi
    if [ "$PASSED" -eq 0 ]; then exit 77; fi
    exit 0
}

# cli_abort NAME WHAT-FAILED: a failure that leaves nothing else to test (a missing fixture, say): its line, the
# summary, exit 1.
cli_abort() {
    FAILED=$((FAILED + 1))
    echo "FAIL $1: $2"
    cli_finish
}

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

# Lines stderr may hold before the error line (an extended regular expression each must match); empty: any.
STDERR_BEFORE_ERROR=""

# expect_error NAME WANT_RC PATTERNS -- CMD...
#   WANT_RC: 1 (run time), 2 (usage) or "any" (any code from 1 to 127).
#   PATTERNS: extended regular expressions separated by '|||', all of which the error line must match
#   (case-insensitive).
# The command must exit with WANT_RC (no signal, no hang, no sanitizer report), print exactly one "error: " line,
# as the last line of stderr, nothing on stdout, and leave $WORK empty (no output, no temporary file).
expect_error() {
    local name=$1 want_rc=$2 patterns=$3
    shift 4
    run "$@"
    local problem="" report
    report=$(sanitizer_report)
    if [ "$RC" -eq 124 ]; then
        problem="timed out after $LIMIT s (hang?)"
    elif [ "$RC" -ge 128 ]; then
        problem="killed by signal $((RC - 128))"
    elif [ -n "$report" ]; then
        problem="sanitizer or crash report on stderr: $report"
    elif [ "$RC" -eq 0 ]; then
        problem="exit code 0 on bad input"
    elif [ "$want_rc" != any ] && [ "$RC" -ne "$want_rc" ]; then
        problem="exit code $RC, expected $want_rc"
    fi
    local lines=()
    mapfile -t lines <"$ERR"
    local n=${#lines[@]} n_errors
    n_errors=$(grep -c '^error: ' "$ERR")
    if [ -z "$problem" ]; then
        if [ "$n" -eq 0 ]; then
            problem="nothing on stderr"
        elif [ "$n_errors" -ne 1 ]; then
            problem="$n_errors lines start with 'error: ' on stderr, expected exactly 1"
        elif [[ "${lines[n - 1]}" != "error: "* ]]; then
            problem="the last line of stderr does not start with 'error: '"
        fi
    fi
    if [ -z "$problem" ] && [ -n "$STDERR_BEFORE_ERROR" ]; then
        local i
        for ((i = 0; i < n - 1; i++)); do
            if ! [[ "${lines[i]}" =~ $STDERR_BEFORE_ERROR ]]; then
                problem="unexpected line on stderr before the error: '${lines[i]}'"
                break
            fi
        done
    fi
    if [ -z "$problem" ]; then
        local message=${lines[n - 1]} pattern rest=$patterns
        while [ -n "$rest" ]; do
            pattern=${rest%%|||*}
            if [ "$pattern" = "$rest" ]; then rest=""; else rest=${rest#*|||}; fi
            if ! grep -q -i -E -e "$pattern" <<<"$message"; then
                problem="the message does not match /$pattern/"
                break
            fi
        done
    fi
    if [ -z "$problem" ] && [ -s "$OUT" ]; then
        problem="output on stdout"
    fi
    if [ -z "$problem" ] && [ -n "$(find "$WORK" -mindepth 1 -print -quit)" ]; then
        problem="files left in the working directory: $(find "$WORK" -mindepth 1 -maxdepth 1 -printf '%f ')"
    fi
    if [ -n "$problem" ]; then not_ok "$name" "$problem"; else ok "$name"; fi
}

# expect_success NAME -- CMD...: exit 0, no error line, no sanitizer report. The caller checks the output.
# Returns 1 (after reporting) when the run itself failed.
expect_success() {
    local name=$1
    shift 2
    run "$@"
    local report
    report=$(sanitizer_report)
    if [ "$RC" -eq 124 ]; then
        not_ok "$name" "timed out after $LIMIT s (hang?)"
    elif [ "$RC" -ge 128 ]; then
        not_ok "$name" "killed by signal $((RC - 128))"
    elif [ -n "$report" ]; then
        not_ok "$name" "sanitizer or crash report on stderr: $report"
    elif [ "$RC" -ne 0 ]; then
        not_ok "$name" "exit code $RC"
    elif grep -q '^error' "$ERR"; then
        not_ok "$name" "an error line on stderr"
    else
        return 0
    fi
    return 1
}
