#!/usr/bin/env python3
"""Latent Lab vs PyTorch CPU training throughput, same models, threads, batch and duration.

For each model, runs `latent-lab bench --json ...` and `bench/torch_reference.py --json ...`
alternately for --rounds rounds, takes the median images/s of each side and prints a markdown
table. Run from anywhere; paths are resolved against the repository root.

    python bench/compare.py --threads 2 --seconds 20
    python bench/compare.py --models vae,gan --rounds 5 --json-out bench/results.json
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from decimal import ROUND_DOWN, Decimal

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TORCH_SCRIPT = os.path.join(REPO, "bench", "torch_reference.py")


def default_bin():
    target = os.environ.get("CARGO_TARGET_DIR") or os.path.join(REPO, "target")
    return os.path.join(target, "release", "latent-lab")


def cpu_info():
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return model or platform.processor() or platform.machine(), os.cpu_count()


def last_json(text):
    """The last line of `text` that parses as a JSON object."""
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                return obj
    return None


def pick_result(obj, model):
    """The flat result object; also accepts a report with a "train" list of per-model results."""
    if obj is None or "images_per_s" in obj:
        return obj
    train = [r for r in obj.get("train") or [] if isinstance(r, dict) and "images_per_s" in r]
    for r in train:
        if r.get("model") == model or len(train) == 1:
            flat = {k: v for k, v in obj.items() if not isinstance(v, (list, dict))}
            flat.update(r)
            return flat
    return obj


def run_one(cmd, env, timeout, model):
    t0 = time.time()
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s"
    obj = pick_result(last_json(p.stdout), model)
    if p.returncode != 0 or obj is None or "images_per_s" not in obj:
        tail = (p.stderr or p.stdout).strip().splitlines()[-5:]
        return None, f"exit {p.returncode}, no result: " + " | ".join(tail)
    obj["wall_s"] = round(time.time() - t0, 2)
    return obj, None


def trunc2(x):
    """`x` to 2 decimals, truncated toward zero (never rounded up)."""
    return str(Decimal(x).quantize(Decimal("0.01"), rounding=ROUND_DOWN))


def summary(vals):
    if not vals:
        return None
    return statistics.median(vals), min(vals), max(vals)


def fmt(s):
    if s is None:
        return "n/a"
    med, lo, hi = s
    return f"{med:,.0f} ({lo:,.0f}–{hi:,.0f})"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="vae,gan,dcgan")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--warmup-steps", type=int, default=20, help="untimed steps, both sides")
    p.add_argument("--log-every", type=int, default=10,
                   help="both sides: read the losses back every this many steps (the app's default)")
    p.add_argument("--bin", default=None, help="latent-lab binary (default $CARGO_TARGET_DIR or "
                   "target, /release/latent-lab)")
    p.add_argument("--python", default=sys.executable, help="interpreter for torch_reference.py")
    p.add_argument("--backend", default="cpu")
    p.add_argument("--json-out", default=None, help="write every raw result here")
    args = p.parse_args(argv)

    binary = args.bin or default_bin()
    if not (os.path.isfile(binary) and os.access(binary, os.X_OK)):
        print(f"error: latent-lab binary not found at {binary}\n"
              f"build it first (cargo build --release) or pass --bin PATH", file=sys.stderr)
        return 2
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    cpu, cores = cpu_info()
    n = args.threads
    print(f"CPU: {cpu}, {cores} logical cores")
    print(f"threads {n}, batch {args.batch_size}, {args.seconds:g} s per run, "
          f"{args.rounds} round(s), alternating\n", flush=True)

    env_ours = dict(os.environ, RAYON_NUM_THREADS=str(n))
    env_torch = dict(os.environ, OMP_NUM_THREADS=str(n), MKL_NUM_THREADS=str(n))
    timeout = args.seconds * 4 + 180  # start-up, warm-up, dataset decode
    raw = {"cpu": cpu, "cores": cores, "threads": n, "batch_size": args.batch_size,
           "seconds": args.seconds, "rounds": args.rounds, "binary": binary, "runs": []}
    results = {m: {"ours": [], "torch": []} for m in models}
    errors = []

    for m in models:
        ours_cmd = [binary, "bench", "--json", "--model", m, "--backend", args.backend,
                    "--threads", str(n), "--batch-size", str(args.batch_size),
                    "--seconds", f"{args.seconds:g}", "--no-decode",
                    "--warmup-steps", str(args.warmup_steps), "--log-every", str(args.log_every)]
        torch_cmd = [args.python, TORCH_SCRIPT, "--json", "--model", m, "--threads", str(n),
                     "--batch-size", str(args.batch_size), "--seconds", f"{args.seconds:g}",
                     "--warmup-steps", str(args.warmup_steps), "--log-every", str(args.log_every)]
        for r in range(args.rounds):
            # Alternate which side goes first, so slow drift in machine load hits both.
            order = [("ours", ours_cmd, env_ours), ("torch", torch_cmd, env_torch)]
            if r % 2 == 1:
                order.reverse()
            for side, cmd, env in order:
                obj, err = run_one(cmd, env, timeout, m)
                label = "latent-lab" if side == "ours" else "pytorch"
                if obj is None:
                    errors.append(f"{m} {label} round {r + 1}: {err}")
                    print(f"  {m:6} {label:10} round {r + 1}: FAILED ({err})", flush=True)
                    raw["runs"].append({"model": m, "side": label, "round": r + 1, "error": err})
                    continue
                results[m][side].append(float(obj["images_per_s"]))
                raw["runs"].append({"model": m, "side": label, "round": r + 1, "result": obj})
                print(f"  {m:6} {label:10} round {r + 1}: {obj['images_per_s']:,.1f} img/s",
                      flush=True)

    print()
    print("| model | Latent Lab img/s (median, min–max) | PyTorch img/s (median, min–max) "
          "| ratio (ours/torch) |")
    print("|---|---:|---:|---:|")
    summ = {}
    for m in models:
        o, t = summary(results[m]["ours"]), summary(results[m]["torch"])
        ratio = trunc2(o[0] / t[0]) if o and t and t[0] > 0 else "n/a"
        summ[m] = {"ours": o, "torch": t, "ratio": ratio}
        print(f"| {m} | {fmt(o)} | {fmt(t)} | {ratio} |")
    raw["summary"] = summ
    raw["errors"] = errors

    if args.json_out:
        with open(args.json_out, "w") as f:
            json.dump(raw, f, indent=2)
        print(f"\nraw results: {args.json_out}")
    if errors:
        print(f"\n{len(errors)} run(s) failed:", file=sys.stderr)
        for e in errors:
            print(f"  {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
