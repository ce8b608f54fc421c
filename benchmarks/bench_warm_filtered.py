"""Warm filtered searches, before and after the one-pipeline change,
A B A B: two `ivflake` binaries search the same index with the same
attribute filter, alternating, and each reports the library's own `total_ms`
per search (`--stats`). A warm pass is the second pass over the queries in
one process, so every list and column chunk is in the memory cache.

Usage: .venv/bin/python -m benchmarks.bench_warm_filtered OLD_BIN NEW_BIN WORK_DIR [ROUNDS [PLOT.png]]
Needs numpy and pyarrow. Generates its data from fixed seeds; nothing is
downloaded. Prints a markdown table: p50 per selectivity, old and new, and
their ratio (the median over rounds of each run's p50).
"""
import json
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from .common import priced_vectors

N = 100_000
D = 64
NQ = 200
K = 10
NLIST = 256
NPROBE = 16
# price is uniform in [0, 100): `price < bound` keeps bound percent of rows.
SELECTIVITIES = [(0.001, 0.1), (0.1, 10.0), (1.0, 100.0)]
# And the same search without a filter: the plain path must not slow down.
PLAIN = (None, None)


def data():
    return priced_vectors(N, D, NQ)


def warm_p50(binary, uri, queries_file, flt):
    args = [binary, "search", uri, "--queries", queries_file, "-k", str(K), "--nprobe", str(NPROBE),
            "--batch", "1", "--stats"] + (["--filter", flt] if flt else [])
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env)
    stats = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    stats = [s for s in stats if "open" not in s][-NQ:]
    assert all(s["lists_from_store"] == 0 and s["lists_from_disk"] == 0 for s in stats), "a warm pass read the store"
    ids = [json.loads(line)["ids"] for line in out.stdout.splitlines()][-NQ:]
    return float(np.percentile([s["total_ms"] for s in stats], 50)), ids


def plot(rows, rounds, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [r[0] for r in rows]
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.bar(x - 0.2, [r[1] for r in rows], 0.4, label="before (two pipelines)")
    ax.bar(x + 0.2, [r[2] for r in rows], 0.4, label="after (one pipeline)")
    for i, r in enumerate(rows):
        ax.annotate(f"{r[2] / r[1]:.2f}x", (i + 0.2, r[2]), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(x, labels)
    ax.set_xlabel("attribute filter selectivity")
    ax.set_ylabel("warm p50 per search (ms)")
    ax.set_title(f"Warm single-query searches, A B A B, median of {rounds} rounds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(old, new, work, rounds=4, plot_path=None):
    os.makedirs(work, exist_ok=True)
    xb, xq, price, ids = data()
    vec = pa.FixedSizeListArray.from_arrays(pa.array(xb.reshape(-1), pa.float32()), D)
    table = pa.table({"id": pa.array(ids), "vector": vec, "price": pa.array(price)})
    pq.write_table(table, os.path.join(work, "data.parquet"))
    uri = os.path.join(work, "idx.faiss")
    subprocess.run([new, "build", "--input", os.path.join(work, "data.parquet"), "--factory",
                    f"IVF{NLIST},Flat", "--output", uri], check=True, capture_output=True)
    queries = os.path.join(work, "warm.npy")
    np.save(queries, np.vstack([xq, xq]).astype("float32"))
    print(f"{N} x {D}-d, IVF{NLIST},Flat, nprobe {NPROBE}, k {K}, {NQ} single-query searches a pass; "
          f"p50 of the warm pass, median of {rounds} A B A B rounds")
    print()
    print("| selectivity | before (ms) | after (ms) | after / before |")
    print("| --- | --- | --- | --- |")
    rows = []
    for sel, bound in SELECTIVITIES + [PLAIN]:
        flt = json.dumps({"price": {"$lt": bound}}) if bound is not None else None
        p50 = {old: [], new: []}
        answers = {}
        for _ in range(rounds):
            for binary in (old, new):
                value, found = warm_p50(binary, uri, queries, flt)
                p50[binary].append(value)
                answers[binary] = found
        assert answers[old] == answers[new], "the two binaries answered differently"
        before, after = float(np.median(p50[old])), float(np.median(p50[new]))
        label = f"{sel * 100:g}%" if sel is not None else "no filter"
        print(f"| {label} | {before:.3f} | {after:.3f} | {after / before:.2f} |")
        rows.append((label, before, after))
    if plot_path:
        plot(rows, rounds, plot_path)


if __name__ == "__main__":
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]) if len(sys.argv) > 4 else 4,
         sys.argv[5] if len(sys.argv) > 5 else None)
