"""Warm single-query latency through the Python package against faiss-cpu's
`index.search` on the same file, interleaved query by query in one run (so
drift on a shared machine hits both alike).

    python python/benchmarks/warm_latency.py [--n 200000 --d 64 --factory IVF1024,Flat --nprobe 32]

Prints a table: p50/p90/p99 per row and the ratio to faiss. Builds its index
from a fixed seed into a temporary directory; downloads nothing. Run it
against a release build (`pip install ./python`), not `maturin develop`'s.
"""

import argparse
import tempfile
import time

import faiss
import numpy as np

import ivflake


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=200_000)
    parser.add_argument("--d", type=int, default=64)
    parser.add_argument("--factory", default="IVF1024,Flat")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nprobe", type=int, default=32)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--faiss-threads", type=int, default=1, help="OpenMP threads for faiss (0: its default)")
    args = parser.parse_args()
    if args.faiss_threads:
        faiss.omp_set_num_threads(args.faiss_threads)

    rng = np.random.default_rng(0)
    centers = rng.normal(size=(256, args.d)).astype("float32") * 3
    xb = (centers[rng.integers(0, 256, args.n)] + rng.normal(size=(args.n, args.d))).astype("float32")
    xq = (centers[rng.integers(0, 256, args.queries)] + rng.normal(size=(args.queries, args.d))).astype("float32")
    index = faiss.index_factory(args.d, args.factory)
    index.train(xb[:100_000])
    index.add(xb)

    with tempfile.TemporaryDirectory() as tmp:
        path = f"{tmp}/index.faiss"
        faiss.write_index(index, path)
        ref = faiss.read_index(path)
        faiss.extract_index_ivf(ref).nprobe = args.nprobe
        ours = ivflake.open(path)
        ours.nprobe = args.nprobe
        ours.warm(list(range(ours.nlist)))

        rows = {"faiss-cpu index.search (in memory)": [], "ivflake Index.search (warm)": []}
        fns = [lambda q: ref.search(q, args.k), lambda q: ours.search(q, args.k)]
        same_ids, max_dd = 0, 0.0
        for i in range(args.queries):
            q = xq[i : i + 1]
            order = (0, 1) if i % 2 == 0 else (1, 0)  # alternate who goes first
            out = [None, None]
            for j in order:
                start = time.perf_counter()
                out[j] = fns[j](q)
                list(rows.values())[j].append((time.perf_counter() - start) * 1000)
            same_ids += bool((out[0][1] == out[1][1]).all())
            max_dd = max(max_dd, float(np.abs(out[0][0] - out[1][0]).max()))
        assert ours.last_stats["gets"] == 0, "the warm rows must not touch the store"

    print(f"{args.factory}, {args.n} x {args.d}, k={args.k}, nprobe={args.nprobe}, "
          f"{args.queries} single-query searches each, faiss threads={args.faiss_threads or 'default'}")
    print(f"{'row':40} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'p50 ratio':>10}")
    base = np.percentile(rows["faiss-cpu index.search (in memory)"], 50)
    for name, lat in rows.items():
        p50, p90, p99 = np.percentile(lat, [50, 90, 99])
        print(f"{name:40} {p50:8.3f} {p90:8.3f} {p99:8.3f} {p50 / base:9.2f}x")
    # faiss-cpu's wheel and the libfaiss ivflake links are different builds
    # (SIMD, version): distances agree to rounding, not to the bit.
    print(f"identical ids: {same_ids}/{args.queries} queries; largest distance difference {max_dd:.2e}")


if __name__ == "__main__":
    main()
