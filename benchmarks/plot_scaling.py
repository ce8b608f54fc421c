"""The figure of docs/scaling.md from benchmarks/bench_scaling.py's JSON.

Usage (from the repo root):
    python -m benchmarks.plot_scaling docs/data/scaling.json [--out docs/img/scaling.png]

Two panels against nlist, log-log, one line per dimension, codec and coarse
quantizer: the header's bytes (file minus lists), and the median wall time
of `ivflake.open` from a local directory, with faiss-cpu's read_index of
the whole PQ32 file (grey) for reference.
"""
import argparse
import json

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results")
    p.add_argument("--out", default="docs/img/scaling.png")
    a = p.parse_args()
    res = json.load(open(a.results))
    rows = res["nlist_sweep"]
    series = sorted({(r["d"], r["codec"], r["quantizer"]) for r in rows}, key=lambda s: (-s[0], s[2], s[1]))
    fig, (header, open_ms) = plt.subplots(1, 2, figsize=(11, 5.0))
    styles = {"SQ8": "o-", "PQ32": "s--"}
    for d, codec, quantizer in series:
        pts = sorted((r for r in rows if (r["d"], r["codec"], r["quantizer"]) == (d, codec, quantizer)),
                     key=lambda r: r["nlist"])
        x = [r["nlist"] for r in pts]
        style = styles.get(codec, "o-") if quantizer == "flat" else "^:"
        label = f"d={d}, {codec}" + ("" if quantizer == "flat" else f", {quantizer} quantizer")
        header.plot(x, [r["header_bytes"] / 2**20 for r in pts], style, label=label)
        open_ms.plot(x, [r["wall_ms_median"] for r in pts], style, label=label)
        if codec == "PQ32" and quantizer == "flat" and "faiss_cpu_read_index_ms_median" in pts[0]:
            open_ms.plot(x, [r["faiss_cpu_read_index_ms_median"] for r in pts], "x:", color="grey",
                         label=f"d={d}, PQ32: faiss-cpu read_index of the whole file")
    for ax in (header, open_ms):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("nlist")
        ax.grid(True, which="both", alpha=0.3)
    header.set_ylabel("header bytes (file − lists), MiB")
    header.set_title("Header size against nlist")
    open_ms.set_ylabel("ivflake.open, median wall ms (local directory)")
    open_ms.set_title(f"Open time against nlist ({res['args']['reps']} opens each)")
    handles, labels = open_ms.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    open_ms.annotate("PQ32 at nlist 1024: ivflake builds\nthe 32 MiB residual table at open", xy=(1024, 100),
                     xytext=(1100, 900), fontsize=7, arrowprops={"arrowstyle": "->", "color": "grey"})
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    fig.savefig(a.out, dpi=110)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
