"""Warm single-query latency of Faiss IVF-PQ with and without the precomputed
residual table, alternated three times on the same index and queries; the
numbers behind ivflake's default residual-table budget (docs/benchmarks.md).

Usage (from the repo root):
    OMP_WAIT_POLICY=PASSIVE .venv/bin/python -m benchmarks.bench_residual_table NLIST
"""
import time, numpy as np, faiss, sys
faiss.omp_set_num_threads(1)
rng = np.random.default_rng(0)
d, n, nlist, M = 128, 200_000, int(sys.argv[1]), 32
centers = rng.standard_normal((1000, d)).astype("float32") * 4
x = (centers[rng.integers(0, 1000, n)] + rng.standard_normal((n, d))).astype("float32")
q = (centers[rng.integers(0, 1000, 200)] + rng.standard_normal((200, d))).astype("float32")
index = faiss.index_factory(d, f"IVF{nlist},PQ{M}")
index.train(x[:100_000]); index.add(x)
table_mb = nlist * M * 256 * 4 / 2**20
def run(use):
    index.use_precomputed_table = use
    index.precompute_table()
    for nprobe in (8, 32):
        index.nprobe = nprobe
        ts = []
        for i in range(len(q)):
            t = time.perf_counter(); index.search(q[i:i+1], 10); ts.append(time.perf_counter() - t)
        yield nprobe, np.median(ts) * 1e3
res = {}
for rep in range(3):
    for use in (1, -1):
        for nprobe, p50 in run(use):
            res.setdefault((use, nprobe), []).append(p50)
for nprobe in (8, 32):
    on = min(res[(1, nprobe)]); off = min(res[(-1, nprobe)])
    print(f"nlist {nlist} (table {table_mb:.0f} MiB) nprobe {nprobe}: with table {on:.3f} ms, without {off:.3f} ms, ratio {off/on:.2f}")
