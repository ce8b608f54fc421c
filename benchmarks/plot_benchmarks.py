"""Plots of benchmarks/bench_scale.py's JSON for docs/benchmarks.md.

Usage (from the repo root):
    python -m benchmarks.plot_benchmarks WORK/bench_scale.json [--out-dir docs/img]

Writes, into --out-dir:
  scale-latency.png    single-query latency against nprobe: ivflake cold from
                       S3 (s3rver + proxy), cold from a local directory, warm,
                       and Faiss in memory (p50 lines, p99 dashed; log y)
  scale-lancedb.png    ivflake next to LanceDB IVF_PQ on the same data and
                       store: latency, store requests per cold query, recall@10
  scale-quantizer.png  the coarse quantizer alone against nlist: flat vs HNSW32,
                       at nprobe 32 and at the nprobe scanning as many codes
"""
import argparse
import json
import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def series(rows, nprobes, key):
    return [rows[str(p)][key] for p in nprobes]


def title_of(res):
    p = res["params"]
    n = p["n"]
    size = f"{n / 1e6:g}M" if n >= 1e6 else f"{n / 1e3:g}k"
    return f"{size} × {p['d']}-d, IVF{p['nlist']},PQ{p['pq']}, k={p['k']}, one query per search"


def plot_latency(res, out):
    nprobes = res["params"]["nprobes"]
    iv, fa = res["ivflake"], res["faiss"]
    delay = res["params"]["delay_ms"]
    rows = [
        (f"ivflake cold, S3 (s3rver + {delay:g} ms proxy)", iv["cold_s3"], "tab:red"),
        ("ivflake cold, local directory", iv["cold_local"], "tab:orange"),
        ("ivflake warm (memory cache)", iv["warm"], "tab:blue"),
        ("Faiss in memory, no residual table (as ivflake)", fa["no_table"], "tab:green"),
        ("Faiss in memory, read_index default (table)", fa["table"], "tab:olive"),
    ]
    fig, ax = plt.subplots(figsize=(8, 6.2))
    for label, r, color in rows:
        ax.plot(nprobes, series(r, nprobes, "p50"), "o-", color=color, label=f"{label}: p50")
        ax.plot(nprobes, series(r, nprobes, "p99"), "--", color=color, alpha=0.6, linewidth=1)
    bare = res.get("bare_get", {}).get("proxy", {}).get("serial", {}).get("p50")
    if bare:
        ax.axhline(bare, color="grey", linestyle=":", linewidth=1)
        ax.text(nprobes[-1], bare * 1.08, f"one bare range GET through the proxy: {bare:.1f} ms", color="grey",
                fontsize=8, ha="right")
    ax.set_xscale("log", base=2)
    ax.set_xticks(nprobes)
    ax.set_xticklabels([str(p) for p in nprobes])
    ax.set_yscale("log")
    ax.set_xlabel("nprobe")
    ax.set_ylabel("latency per query, ms (p50 solid, p99 dashed)")
    ax.set_title(title_of(res), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_lancedb(res, out):
    nprobes = res["params"]["nprobes"]
    iv, la = res["ivflake"], res["lance"]
    delay = res["params"]["delay_ms"]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.6))
    ax = axes[0]
    for label, r, color, style in (
        ("ivflake cold (S3)", iv["cold_s3"], "tab:red", "o-"),
        ("LanceDB cold (S3)", la["cold"], "tab:purple", "s-"),
        ("ivflake warm", iv["warm"], "tab:blue", "o--"),
        ("LanceDB warm", la["warm"], "tab:pink", "s--"),
    ):
        ax.plot(nprobes, series(r, nprobes, "p50"), style, color=color, label=label)
    ax.set_yscale("log")
    ax.set_ylabel("p50 latency per query, ms")
    ax.set_title(f"latency (store: s3rver + {delay:g} ms proxy)", fontsize=10)
    ax = axes[1]
    ax.plot(nprobes, [iv["cold_s3"][str(p)]["per_query"]["gets"] for p in nprobes], "o-", color="tab:red",
            label="ivflake: range GETs (one wave, up to 32 at once)")
    ax.plot(nprobes, series(la["cold"], nprobes, "requests"), "s-", color="tab:purple",
            label="LanceDB: requests (seen by the proxy)")
    ax.set_yscale("log")
    ax.set_ylabel("store requests per cold query")
    ax.set_title("requests per cold query", fontsize=10)
    ax = axes[2]
    ax.plot(nprobes, series(iv["warm"], nprobes, "recall"), "o-", color="tab:blue", label="ivflake (= Faiss)")
    if la["warm"][str(nprobes[0])]["recall"] is not None:
        ax.plot(nprobes, series(la["warm"], nprobes, "recall"), "s-", color="tab:pink", label="LanceDB")
    ax.set_ylabel("recall@10 against exact search")
    ax.set_ylim(0, 1)
    ax.set_title("recall@10", fontsize=10)
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xticks(nprobes)
        ax.set_xticklabels([str(p) for p in nprobes])
        ax.set_xlabel("nprobe")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    lance_n = res["params"]["lance_n"]
    sub = "" if lance_n == res["params"]["n"] else f" (LanceDB on the first {lance_n:,} vectors)"
    fig.suptitle(title_of(res) + sub, fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_quantizer(res, out):
    """Left: nprobe 32 at every nlist. Right: the nprobe that scans as many
    codes as nprobe 32 at nlist 4096 (nprobe = 32 × nlist / 4096)."""
    q = res["quantizer"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8), sharey=True)
    panels = (
        ("nprobe 32", [r for r in q if r["nprobe"] == 32]),
        ("nprobe = 32 × nlist / 4096 (the same codes scanned)",
         [r for r in q if r["nprobe"] == max(1, 32 * r["nlist"] // 4096)]),
    )
    for ax, (name, rows) in zip(axes, panels):
        nlists = [r["nlist"] for r in rows]
        ax.plot(nlists, [r["flat"]["p50"] for r in rows], "o-", label="flat quantizer (exact)")
        ax.plot(nlists, [r["hnsw"]["p50"] for r in rows], "s-",
                label="HNSW32: smallest efSearch (of nprobe, 2×, 4×)\nfinding ≥ 95% of the exact lists, else 4 × nprobe")
        ax.plot(nlists, [r["scan_ms_est"] for r in rows], "^:", color="grey", label="scan of the probed lists (est.)")
        for r in rows:
            ax.annotate(f"nprobe {r['nprobe']}, ef {r.get('ef_search', '?')}: list recall {r['hnsw_list_recall']:.2f}",
                        (r["nlist"], r["hnsw"]["p50"]), fontsize=7, textcoords="offset points", xytext=(4, -12))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(nlists)
        ax.set_xticklabels([str(n) for n in nlists])
        ax.set_xlabel("nlist")
        ax.set_title(name, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("ms per query (p50), 1 thread")
    fig.suptitle(f"coarse quantizer alone (faiss-cpu, d={res['params']['d']}) and the scan it leads to "
                 f"(N={res['params']['n']:,})", fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--out-dir", default="docs/img")
    a = p.parse_args()
    res = json.load(open(a.results))
    os.makedirs(a.out_dir, exist_ok=True)
    written = []
    plot_latency(res, os.path.join(a.out_dir, "scale-latency.png"))
    written.append("scale-latency.png")
    if "lance" in res:
        plot_lancedb(res, os.path.join(a.out_dir, "scale-lancedb.png"))
        written.append("scale-lancedb.png")
    if res.get("quantizer"):
        plot_quantizer(res, os.path.join(a.out_dir, "scale-quantizer.png"))
        written.append("scale-quantizer.png")
    for name in written:
        print(os.path.join(a.out_dir, name))


if __name__ == "__main__":
    main()
