#!/usr/bin/env python3
"""plot_cpu_bench.py: CPU tokens/s by weight format and thread count, as a PNG bar chart.

Runs `trinity bench --json` on the synthetic Trinity-1.1B-shaped models (`tinyllama`: TQ2_0, `tinyllama-tq1`: TQ1_0)
at each thread count, on the CPU, and draws per (format, threads) three bars: decode, prefill token by token and
prefill batched (tokens/s of a --prompt-tokens prompt, both measured in the same run). Where the JSON gives a prefill
bound (prefill_bound_tokens_per_s: the batched kernel's multiply-add peak, probed in the same run), a black tick over
the batched bar marks it, labelled with the kernel it belongs to (prefill_kernel: "vpdpbusd", "amx tdpbsud", ...),
and the summary lines print both. The raw JSON of every run is written beside the PNG (same name, .json).

    pip install matplotlib
    python3 scripts/plot_cpu_bench.py [--trinity build/trinity] [--out out/cpu_bench.png] [--threads 1 2]
                                      [--models tinyllama tinyllama-tq1] [--prompt-tokens 64] [--decode-tokens 32]

The machine's other load changes the figures: run it on an otherwise idle machine, and compare bars of one run.
"""
import argparse
import json
import os
import subprocess
import sys

FORMATS = {"tinyllama": "TQ2_0", "tinyllama-tq1": "TQ1_0"}
SERIES = [  # (JSON key, legend label)
    ("decode_tokens_per_s", "decode"),
    ("prefill_token_by_token_tokens_per_s", "prefill, token by token"),
    ("prefill_tokens_per_s", "prefill, batched"),
]


def fail(message):
    print("error: %s" % message, file=sys.stderr)
    sys.exit(1)


def run_bench(trinity, model, threads, prompt_tokens, decode_tokens):
    cmd = [trinity, "bench", "--synthetic", model, "-t", str(threads), "--device", "cpu", "--json",
           "--prompt-tokens", str(prompt_tokens), "--decode-tokens", str(decode_tokens)]
    print("running: %s" % " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no message"])[-1]
        fail("%s exited with %d: %s" % (" ".join(cmd), proc.returncode, last))
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as e:
        fail("%s did not print one JSON object (%s)" % (" ".join(cmd), e))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trinity", default="build/trinity", help="the trinity binary (default build/trinity)")
    parser.add_argument("--out", default="out/cpu_bench.png", help="the PNG to write (default out/cpu_bench.png)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (default 1 2)")
    parser.add_argument("--models", nargs="+", default=list(FORMATS), choices=list(FORMATS),
                        help="synthetic models (default: both)")
    parser.add_argument("--prompt-tokens", type=int, default=64)
    parser.add_argument("--decode-tokens", type=int, default=32)
    args = parser.parse_args()
    if not os.access(args.trinity, os.X_OK):
        fail("%s is not an executable trinity binary (build it, or pass --trinity PATH)" % args.trinity)
    if any(t < 1 for t in args.threads):
        fail("--threads: thread counts must be at least 1")
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        fail("matplotlib is not installed: pip install matplotlib")

    if os.path.dirname(args.out):
        os.makedirs(os.path.dirname(args.out), exist_ok=True)
    runs = []
    for model in args.models:
        for threads in args.threads:
            result = run_bench(args.trinity, model, threads, args.prompt_tokens, args.decode_tokens)
            runs.append({"model": model, "format": FORMATS[model], "threads": threads, "result": result})

    fig, ax = plt.subplots(figsize=(2.2 + 1.9 * len(runs), 4.8))
    width = 0.8 / len(SERIES)
    for s, (key, label) in enumerate(SERIES):
        xs = [i + (s - (len(SERIES) - 1) / 2) * width for i in range(len(runs))]
        values = [run["result"][key] for run in runs]
        bars = ax.bar(xs, values, width, label=label)
        ax.bar_label(bars, labels=["%.0f" % v for v in values], fontsize=7, padding=2)
        if key != "prefill_tokens_per_s":
            continue
        # the batched prefill's multiply-add bound, where the run probed one (null otherwise)
        bounded = [(x, run["result"]) for x, run in zip(xs, runs) if run["result"].get("prefill_bound_tokens_per_s")]
        for n, (x, r) in enumerate(bounded):
            ax.hlines(r["prefill_bound_tokens_per_s"], x - width / 2, x + width / 2, colors="black", linewidth=1.5,
                      label="prefill bound (kernel's multiply-add peak)" if n == 0 else None)
            ax.annotate("%s bound %.0f" % (r.get("prefill_kernel") or "batched", r["prefill_bound_tokens_per_s"]),
                        (x, r["prefill_bound_tokens_per_s"]), textcoords="offset points", xytext=(0, 3),
                        ha="center", fontsize=6)
    ax.set_xticks(range(len(runs)))
    ax.set_xticklabels(["%s\n%d thread%s" % (r["format"], r["threads"], "" if r["threads"] == 1 else "s") for r in runs])
    ax.set_ylabel("tokens/s")
    device = runs[0]["result"].get("device", "cpu").split(",")[0] + ")" if runs else "cpu"
    ax.set_title("Trinity-1.1B shape (synthetic weights), %d-token prompt: %s" % (args.prompt_tokens, device),
                 fontsize=9)
    ax.legend(fontsize=8)
    ax.margins(y=0.12)
    fig.tight_layout()
    fig.savefig(args.out, dpi=120)
    raw = os.path.splitext(args.out)[0] + ".json"
    with open(raw, "w") as f:
        json.dump(runs, f, indent=1)
    for run in runs:
        r = run["result"]
        bound = r.get("prefill_bound_tokens_per_s")
        print("%-6s %d thread%s: decode %7.2f, prefill token by token %7.2f, batched %7.2f tokens/s (%.2fx)%s" %
              (run["format"], run["threads"], " " if run["threads"] == 1 else "s", r["decode_tokens_per_s"],
               r["prefill_token_by_token_tokens_per_s"], r["prefill_tokens_per_s"], r["prefill_speedup"],
               "; %s bound %.2f tokens/s" % (r.get("prefill_kernel") or "batched", bound) if bound else ""))
    print("wrote %s and %s" % (args.out, raw))


if __name__ == "__main__":
    main()
