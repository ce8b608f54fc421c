"""Plot of benchmarks/bench_refine.py's JSON for docs/benchmarks.md.

Usage (from the repo root):
    python -m benchmarks.plot_refine WORK/bench_refine.json [--out docs/img/refine.png]

One figure, two panels: recall@10 against cold p50 (S3 behind the proxy, in
round trips of one bare GET) and against warm p50, one line per index and
k_factor, a point per nprobe.
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--out", default="docs/img/refine.png")
    a = p.parse_args()
    res = json.load(open(a.results))
    lines = {}
    for r in res["rows"]:
        label = r["index"] if not r["k_factor"] else f"{r['index']}, k_factor {r['k_factor']}"
        lines.setdefault(label, []).append(r)
    fig, (cold, warm) = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for label, rows in lines.items():
        rows.sort(key=lambda r: r["nprobe"])
        style = "o--" if "RFlat" not in label else "o-"
        recall = [r["cold"]["recall"] for r in rows]
        cold.plot([r["cold_round_trips"] for r in rows], recall, style, label=label)
        warm.plot([r["warm"]["p50"] for r in rows], recall, style, label=label)
        for r in rows:
            cold.annotate(str(r["nprobe"]), (r["cold_round_trips"], r["cold"]["recall"]), fontsize=7,
                          textcoords="offset points", xytext=(3, -8))
    cold.axvline(2.2, color="grey", lw=0.8, ls=":")
    cold.axhline(0.95, color="grey", lw=0.8, ls=":")
    warm.axhline(0.95, color="grey", lw=0.8, ls=":")
    cold.set_xlabel("cold p50, in round trips of one bare GET (S3 + 20 ms proxy)")
    warm.set_xlabel("warm p50 (ms, memory cache)")
    warm.set_xscale("log")
    cold.set_ylabel("recall@10")
    p_ = res["params"]
    fig.suptitle(f"{p_['n'] / 1e6:g}M × {p_['d']}-d, IVF{p_['nlist']},PQ{p_['pq']} with and without RFlat; "
                 f"points: nprobe {p_['nprobes']}")
    cold.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
