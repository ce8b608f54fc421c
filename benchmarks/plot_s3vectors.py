"""Plot of benchmarks/bench_s3vectors.py's JSON for docs/benchmarks.md.

Usage (from the repo root):
    python -m benchmarks.plot_s3vectors docs/data/bench_s3vectors.json [--out docs/img/s3vectors.png]

Four panels, ivflake's S3 Vectors API (boto3) beside its native API, with
AWS's published S3 Vectors figures as lines: warm and cold query p50/p99,
queries per second at 1, 8 and 32 clients, and ingest vectors/s.
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

COLORS = {"s3v": "tab:blue", "s3v_signed_by_hand": "tab:cyan", "native": "tab:green"}
LABELS = {"s3v": "S3 Vectors API (boto3)", "s3v_signed_by_hand": "S3 Vectors API (signed by hand)",
          "native": "native API"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--out", default="docs/img/s3vectors.png")
    a = p.parse_args()
    r = json.load(open(a.results))
    aws = r["aws_published"]
    fig, (warm, cold, qps, ingest) = plt.subplots(1, 4, figsize=(16, 3.9))
    width = 0.27
    for ax, phase, line in ((warm, "warm", aws["warm_ms"]), (cold, "cold", aws["cold_ms"])):
        for i, api in enumerate(("s3v", "s3v_signed_by_hand", "native")):
            s = r[phase][api]
            ax.bar([x + i * width for x in (0, 1)], [s["p50"], s["p99"]], width, color=COLORS[api], label=LABELS[api])
        ax.axhline(line, color="tab:red", linestyle="--", label=f"S3 Vectors, published ({line} ms)")
        ax.set_xticks([width, 1 + width], ["p50", "p99"])
        ax.set_yscale("log")
        ax.set_title(f"{phase} query latency (ms, log)")
    warm.legend(fontsize=7)
    clients = sorted(r["qps"], key=int)
    width = 0.38
    for i, api in enumerate(("s3v", "native")):
        qps.bar([x + i * width for x in range(len(clients))], [r["qps"][c][api] for c in clients], width,
                color=COLORS[api])
    qps.set_xticks([x + width / 2 for x in range(len(clients))], [f"{c} clients" for c in clients])
    qps.set_title("queries per second, warm")
    ing = r["ingest_vectors_per_s"]
    keys = [k for k in ("s3v_8_clients", "native_8_clients", "s3v_raw_8_clients") if k in ing]
    ingest.bar([k.replace("_8_clients", "").replace("_", " ") for k in keys], [ing[k] for k in keys],
               color=[COLORS["native" if k.startswith("native") else "s3v"] for k in keys])
    ingest.axhline(aws["ingest_vectors_per_s"], color="tab:red", linestyle="--", label="S3 Vectors limit (2,500/s)")
    ingest.set_title("ingest, 8 clients (vectors/s)")
    ingest.legend(fontsize=7)
    store = "ThrottledStore" if r.get("store") == "throttled" else "moto behind a proxy"
    fig.suptitle(f"{r['n']:,} × {r['d']} vectors, {r['factory']}, nprobe {r['nprobe']}, a {r['delay_ms']} ms store "
                 f"({store}); 2 cores shared by the server and the Python clients", fontsize=9)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
