"""Times faiss-cpu from PyPI searching an index file fully in memory, one
query per search, on one thread: the third row of the warm benchmark in
docs/benchmarks.md, next to `ivflake bench` on the same file.

Usage (from the repo root):
    python -m benchmarks.bench_faiss_cpu INDEX_FILE [--nprobe 32] [-k 10]
        [--queries Q.npy] [--iterations 2000]

Without --queries, queries are the index's own centroids plus Gaussian noise
of a tenth of their spread (fixed seed), so they land in populated lists as
real queries do. Prints one JSON line.
"""
import argparse
import json
import time

import faiss
import numpy as np


def queries_near_centroids(index, n, seed=11):
    ivf = faiss.extract_index_ivf(index)
    centroids = ivf.quantizer.reconstruct_n(0, ivf.nlist)
    rng = np.random.default_rng(seed)
    picked = centroids[rng.integers(0, ivf.nlist, n)]
    noise = rng.normal(size=picked.shape).astype("float32") * centroids.std() * 0.1
    if isinstance(index, faiss.IndexPreTransform):
        # Centroids live after the transform; queries must come before it.
        raise SystemExit("pass --queries for indexes with a pre-transform")
    return (picked + noise).astype("float32")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("index")
    p.add_argument("--nprobe", type=int, default=32)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--queries")
    p.add_argument("--nq", type=int, default=200)
    p.add_argument("--iterations", type=int, default=2000)
    a = p.parse_args()

    faiss.omp_set_num_threads(1)
    index = faiss.read_index(a.index)
    faiss.extract_index_ivf(index).nprobe = a.nprobe
    xq = np.load(a.queries).astype("float32") if a.queries else queries_near_centroids(index, a.nq)
    for q in xq[: min(len(xq), 50)]:  # warm caches and lazily built tables
        index.search(q[None, :], a.k)
    times = []
    for i in range(a.iterations):
        q = xq[i % len(xq)][None, :]
        t0 = time.perf_counter()
        index.search(q, a.k)
        times.append((time.perf_counter() - t0) * 1e3)
    times = np.array(times)
    print(json.dumps({
        "faiss_cpu": faiss.__version__,
        "index": a.index,
        "nprobe": a.nprobe,
        "k": a.k,
        "p50_ms": round(float(np.percentile(times, 50)), 4),
        "p99_ms": round(float(np.percentile(times, 99)), 4),
    }))


if __name__ == "__main__":
    main()
