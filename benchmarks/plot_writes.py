"""Plots of benchmarks/bench_writes.py's JSON for docs/benchmarks.md.

Usage (from the repo root):
    python -m benchmarks.plot_writes docs/data/bench_writes.json [--out docs/img/writes.png]

Two panels: warm query p50 against the unindexed vectors in the log, with
the log and on the base alone (interleaved query by query), and cold p50,
per store; and ingest
throughput, one client and eight, beside Faiss's own add.
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--out", default="docs/img/writes.png")
    a = p.parse_args()
    res = json.load(open(a.results))
    rows = res["rows"]
    fig, (queries, ingest) = plt.subplots(1, 2, figsize=(11, 4.2))
    stores = sorted({r["store"] for r in rows})
    for store in stores:
        levels = sorted((r["value"] for r in rows if r["store"] == store and r["what"] == "queries"),
                        key=lambda v: v["unindexed"])
        x = [max(v["unindexed"], 1e3) for v in levels]
        queries.plot(x, [v["interleaved_with_log_p50_ms"] for v in levels], "o-", label=f"{store}: warm p50, with the log")
        queries.plot(x, [v["interleaved_base_p50_ms"] for v in levels], "o:", label=f"{store}: warm p50, base alone")
        queries.plot(x, [v["cold_p50_ms"] for v in levels], "s--", label=f"{store}: cold p50")
    queries.set_xscale("log")
    queries.set_yscale("log")
    queries.set_xlabel("unindexed vectors in the log (0 drawn at 10^3)")
    queries.set_ylabel("query latency, ms (k=10, nprobe=16)")
    queries.set_title("Queries on a 10M IVF4096,PQ32 base")
    queries.legend(fontsize=8)
    labels, rates = [], []
    for store in stores:
        for r in rows:
            if r["store"] == store and r["what"] == "ingest":
                labels.append(f"{store}\n{r['value']['clients']} client(s)")
                rates.append(r["value"]["vectors_per_s"])
    for r in rows:
        if r["what"] == "faiss_add":
            labels.append("Faiss add_with_ids\nin memory")
            rates.append(r["value"]["vectors_per_s"])
    ingest.bar(range(len(rates)), rates, color=["C0"] * (len(rates) - 1) + ["C3"])
    ingest.set_xticks(range(len(rates)))
    ingest.set_xticklabels(labels, fontsize=7)
    ingest.set_ylabel("vectors per second (batches of 1,000)")
    ingest.set_title("Ingest, acknowledged when durable")
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
