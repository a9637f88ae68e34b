#!/usr/bin/env bash
# Mutation testing of the lines a change touched in the core: cargo-mutants
# (https://mutants.rs) mutates the Rust lines under rust/core/src that differ
# between BASE and the work tree, and runs the core's tests against each
# mutant (settings in .cargo/mutants.toml). A mutant no test catches fails
# the run, with its diff in the log.
#
#   scripts/mutants-diff.sh [BASE] [BUDGET_SECONDS]
#
# BASE defaults to $ZDFUZZ_MUTANTS_BASE, else HEAD~1 (CI runs on main: the
# newest commit is the change). Within BUDGET_SECONDS (default 300) the
# mutants left untested are listed and the run passes: the budget keeps CI
# within its time; a whole-file run has no budget (docs/mutants.md).
set -euo pipefail
cd "$(dirname "$0")/.."
base=${1:-${ZDFUZZ_MUTANTS_BASE:-HEAD~1}}
budget=${2:-300}
if ! git rev-parse -q --verify "$base^{commit}" >/dev/null; then
    echo "== mutants: no commit $base to compare with: skipped"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
git diff "$base" -- rust/core/src >"$work/diff"
cargo mutants --list -p zdfuzz-core --in-diff "$work/diff" >"$work/list"
n=$(wc -l <"$work/list")
echo "== mutants: $n mutants on the core lines changed since $(git rev-parse --short "$base")"
[ "$n" -gt 0 ] || exit 0
# --in-place: no copy of the tree (CI's clone is throw-away; an interrupted
# run restores the file it mutated); the baseline already passed in the suite
set +e
timeout --signal=INT --kill-after=30 "$budget" \
    cargo mutants -p zdfuzz-core --in-diff "$work/diff" --in-place --baseline skip \
    --timeout 60 --build-timeout 600 -o "$work" >"$work/log" 2>&1
rc=$?
set -e
out=$work/mutants.out
grep -E '^(MISSED|TIMEOUT|Found|[0-9]+ mutants tested)' "$work/log" || true
tested=$(cat "$out"/caught.txt "$out"/missed.txt "$out"/timeout.txt "$out"/unviable.txt 2>/dev/null | wc -l)
if [ -s "$out/missed.txt" ]; then
    echo "== mutants: the core's tests miss $(wc -l <"$out/missed.txt") of $tested mutants of the changed lines:"
    cat "$out/missed.txt"
    exit 1
fi
case $rc in
    0 | 3) echo "== mutants: none of $tested missed (caught, hung a test, or did not compile)" ;;
    124 | 130 | 137)
        echo "== mutants: time budget (${budget}s) reached after $tested of $n; not tested:"
        grep -vxF -f <(cat "$out"/caught.txt "$out"/timeout.txt "$out"/unviable.txt 2>/dev/null) "$work/list" || true
        ;;
    *)
        tail -20 "$work/log"
        exit "$rc"
        ;;
esac
