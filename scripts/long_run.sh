#!/usr/bin/env bash
# Long run with the window open: trains the VAE while the explorer's slider is dragged every
# frame, for SECS seconds (default 3600), under Xvfb. Samples the process's resident memory
# every 30 s and prints the curve, then the app's own frame-time / decode-latency percentiles.
#
#   scripts/long_run.sh [SECS] [BINARY]
#
# Needs xvfb-run (Debian: xvfb) and a Vulkan driver (mesa-vulkan-drivers) on a headless machine.
set -euo pipefail
secs="${1:-3600}"
bin="${2:-${CARGO_TARGET_DIR:-target}/release/latent-lab}"
[ -x "$bin" ] || { echo "no binary at $bin (cargo build --release first)" >&2; exit 2; }
out="$(mktemp -d)"
home="$out/home"; mkdir -p "$home"
HOME="$home" xvfb-run -a -s "-screen 0 1280x900x24" \
    "$bin" --bench-ui "$secs" --bench-out "$out/bench.json" --screenshot "$out/end.png" &
runner=$!
# xvfb-run starts the app as a child; find it.
pid=""
for _ in $(seq 1 100); do
    pid="$(pgrep -n -f -- "--bench-out $out/bench.json" | head -n1 || true)"
    [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$(basename "$bin" | cut -c1-15)" ] && break
    pid=""; sleep 0.2
done
[ -n "$pid" ] || { echo "the app did not start" >&2; wait "$runner"; exit 1; }
echo "seconds,rss_mb" | tee "$out/rss.csv"
start=$(date +%s)
while kill -0 "$pid" 2>/dev/null; do
    rss_kb="$(awk '/^VmRSS:/ {print $2}' /proc/"$pid"/status 2>/dev/null || true)"
    [ -n "$rss_kb" ] && echo "$(( $(date +%s) - start )),$(( rss_kb / 1024 ))" | tee -a "$out/rss.csv"
    sleep 30
done
wait "$runner"
echo "app report: $(cat "$out/bench.json")"
echo "files: $out (rss.csv, bench.json, end.png)"
