#!/usr/bin/env bash
# Coverage-guided fuzzing of one loader (docs/reliability.md):
#   scripts/fuzz.sh TARGET [SECONDS]     TARGET: idx image checkpoint safetensors settings
# New inputs go to fuzz/corpus/TARGET (not committed); the committed corpus
# tests/fuzz-corpus/TARGET seeds the run. Afterwards, `scripts/fuzz.sh TARGET merge` keeps
# the edge-covering subset of the small new inputs in tests/fuzz-corpus/TARGET.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
target=${1:?target: idx image checkpoint safetensors settings}
secs=${2:-1800}
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$HOME/.cache/latent-lab/fuzz-target}"
case $target in
    checkpoint|safetensors) max_len=262144 ;;
    *) max_len=16384 ;;
esac
mkdir -p "corpus/$target"
# The fuzzer itself: the instrumented build (`cargo fuzz run` builds it first), or an
# already-built binary in $FUZZ_BIN_DIR (runs without rebuilding after a source change).
fuzz() {
    if [ -n "${FUZZ_BIN_DIR:-}" ]; then
        "$FUZZ_BIN_DIR/$target" "$@"
    else
        local dirs=() a
        for a in "$@"; do [[ $a == -* ]] && break; dirs+=("$a"); done
        cargo fuzz run --sanitizer none "$target" "${dirs[@]}" -- "${@:${#dirs[@]}+1}"
    fi
}
if [ "$secs" = merge ]; then
    # Inputs of at most $MERGE_MAX_BYTES (default 8 KiB) are offered, so the committed
    # corpus stays small; libFuzzer keeps those that add coverage to what is committed.
    small=$(mktemp -d); out=$(mktemp -d)
    find "corpus/$target" -type f -size -"${MERGE_MAX_BYTES:-8192}"c -exec cp -t "$small" {} +
    cp "../tests/fuzz-corpus/$target"/* "$out/"
    fuzz "$out" "$small" -set_cover_merge=1 -use_counters=0 -max_len=$max_len -timeout=20
    # libFuzzer names the kept inputs by their SHA-1: skip those already committed (the
    # seeds and earlier regressions keep their names).
    have=$(sha1sum ../tests/fuzz-corpus/"$target"/* | cut -d' ' -f1)
    for f in "$out"/*; do
        h=$(basename "$f")
        [ -e "../tests/fuzz-corpus/$target/$h" ] && continue
        grep -qx "$h" <<<"$have" || cp "$f" "../tests/fuzz-corpus/$target/$h"
    done
    rm -rf "$out" "$small"
    exit 0
fi
fuzz "corpus/$target" "../tests/fuzz-corpus/$target" \
    -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -max_len=$max_len -print_final_stats=1
