#!/usr/bin/env bash
# Coverage-guided fuzzing of one loader (docs/reliability.md):
#   scripts/fuzz.sh TARGET [SECONDS]     TARGET: idx image checkpoint safetensors settings
# New inputs go to fuzz/corpus/TARGET (not committed); the committed corpus
# tests/fuzz-corpus/TARGET seeds the run. Afterwards, `scripts/fuzz.sh TARGET merge` keeps
# the inputs that add coverage, minimised, in tests/fuzz-corpus/TARGET.
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
if [ "$secs" = merge ]; then
    out=$(mktemp -d)
    cargo fuzz run --sanitizer none "$target" "$out" "corpus/$target" "../tests/fuzz-corpus/$target" -- \
        -merge=1 -max_len=$max_len -timeout=20
    # libFuzzer names the kept inputs by their SHA-1: skip those already committed (the
    # seeds and earlier regressions keep their names).
    have=$(sha1sum ../tests/fuzz-corpus/"$target"/* | cut -d' ' -f1)
    for f in "$out"/*; do
        h=$(basename "$f")
        grep -qx "$h" <<<"$have" || cp "$f" "../tests/fuzz-corpus/$target/$h"
    done
    rm -rf "$out"
    exit 0
fi
cargo fuzz run --sanitizer none "$target" "corpus/$target" "../tests/fuzz-corpus/$target" -- \
    -max_total_time="$secs" -timeout=20 -rss_limit_mb=4096 -max_len=$max_len -print_final_stats=1
