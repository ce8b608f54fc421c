"""Plot of benchmarks/bench_lance_writes.py's JSON for docs/benchmarks.md.

Usage (from the repo root):
    python -m benchmarks.plot_lance_writes docs/data/bench_lance_writes.json [--out docs/img/lance_writes.png]

Three panels, ivflake beside Lance on the same data and disk: ingest
vectors/s, warm query p50 with the writes unindexed and after the fold, and
the fold's seconds.
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--out", default="docs/img/lance_writes.png")
    a = p.parse_args()
    res = json.load(open(a.results))
    systems = ["ivflake", "lance"]
    colors = {"ivflake": "tab:blue", "lance": "tab:orange"}
    fig, (ingest, queries, fold) = plt.subplots(1, 3, figsize=(12, 3.8))
    ingest.bar(systems, [res[s]["ingest_vectors_per_s"] for s in systems], color=[colors[s] for s in systems])
    ingest.set_title("ingest, one client (vectors/s)")
    width = 0.38
    for i, s in enumerate(systems):
        values = [res[s]["query_unindexed"]["p50_ms"], res[s]["query_folded"]["p50_ms"]]
        queries.bar([x + i * width for x in (0, 1)], values, width, label=s, color=colors[s])
    queries.set_xticks([width / 2, 1 + width / 2], ["100k unindexed", "after the fold"])
    queries.set_title("warm query p50 (ms)")
    queries.legend()
    fold.bar(systems, [res[s]["fold_s"] for s in systems], color=[colors[s] for s in systems])
    fold.set_title("fold 100k into the index (s)")
    setup = res["setup"]
    fig.suptitle(
        f"{setup['n_base']:,} x {setup['d']}-d base + {setup['n_writes']:,} writes, IVF{setup['nlist']},PQ{setup['m']}, "
        f"nprobe {setup['nprobe']}, {setup['store']}"
    )
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
