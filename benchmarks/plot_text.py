"""Plot of benchmarks/bench_text.py's JSON for docs/benchmarks.md.

Usage (from the repo root):
    python -m benchmarks.plot_text docs/data/bench_text.json [--out docs/img/text.png]

Two panels, full-text and hybrid: p50 and p99 latency warm and cold
(and, for full-text, cold with the text index's metadata already loaded;
and cold open + query, since the systems split a cold query's reads
between open and query differently),
ivflake beside LanceDB on the same data and the same 20 ms store, log
scale, each pair labelled with ivflake / LanceDB.
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

SYSTEMS = (("ivflake", "ivflake", "tab:blue"), ("lancedb", "LanceDB", "tab:orange"))
PHASES = (("warm", "warm", None), ("cold", "cold", None), ("cold_meta", "cold, text\nmeta loaded", None),
          ("cold", "cold,\nopen + query", "open_plus_query_ms"))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--out", default="docs/img/text.png")
    a = p.parse_args()
    res = json.load(open(a.results))
    fig, axes = plt.subplots(1, 2, figsize=(15, 4.6), gridspec_kw={"width_ratios": [4, 3]})
    width = 0.38
    for ax, (kind, title) in zip(axes, (("fts", "full-text (BM25)"), ("hybrid", "hybrid (BM25 + vector, RRF)"))):
        labels, x = [], 0
        for phase, phase_label, field in PHASES:
            if phase not in res or kind not in res[phase].get("ivflake", {}):
                continue
            if field and field not in res[phase]["ivflake"][kind]:
                continue
            for pct in ("p50", "p99"):
                vals = [(res[phase][s][kind][field] if field else res[phase][s][kind])[pct] for s, _, _ in SYSTEMS]
                for i, (s, name, color) in enumerate(SYSTEMS):
                    ax.bar(x + (i - 0.5) * width, vals[i], width, color=color, label=name if x == 0 else None)
                ax.annotate(f"{vals[0] / vals[1]:.2f}×", (x, max(vals)), textcoords="offset points", xytext=(0, 3),
                            ha="center", fontsize=8)
                labels.append((x, f"{phase_label}\n{pct}"))
                x += 1
        ax.set_xticks([t for t, _ in labels], [lab for _, lab in labels], fontsize=8)
        ax.set_yscale("log")
        ax.set_ylabel("ms")
        ax.set_title(title)
        ax.grid(axis="y", which="both", alpha=0.3)
        ax.legend(loc="upper left")
    pr = res["params"]
    nc = res.get("cold", {}).get("queries", "?")
    fig.suptitle(f"{pr['n']:,} documents, {pr['d']}-d vectors, IVF{pr['nlist']},SQ8 / IVF_SQ, nprobe {pr['nprobe']}, "
                 f"k {pr['k']}; store: s3rver + {pr['delay_ms']:g} ms a request; {len(res['warm']['ivflake']['fts']['latency_ms'])} "
                 f"warm, {nc} cold queries a row; labels: ivflake / LanceDB", fontsize=9)
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
