"""Writes beside LanceDB's format (pylance), side by side in one run, on the
same data and the same local disk: a 1M x 96-d base (the first million
vectors of bench_scale.py's data), 100k upserts in batches of 10k from one
client, warm queries with those 100k unindexed, the fold (ivflake `compact`,
Lance `optimize_indices`), and warm queries after it. Both IVF-PQ with 1024
lists (partitions) and 32 sub-quantizers, nprobe 16, k 10; recall@10
against exact search over all 1.1M vectors (faiss-cpu, brute force).

Usage (from the repo root; pylance and a release build of the ivflake
package in one venv):
    python -m venv /tmp/lancevenv
    /tmp/lancevenv/bin/pip install pylance faiss-cpu numpy
    (cd python && maturin build --release --auditwheel skip -o /tmp/wheels) && /tmp/lancevenv/bin/pip install /tmp/wheels/ivflake-*.whl
    /tmp/lancevenv/bin/python benchmarks/bench_lance_writes.py --data /tmp/ivflake-scale --out docs/data/bench_lance_writes.json
"""
import argparse
import json
import os
import shutil
import tempfile
import time

import faiss
import numpy as np
import pyarrow as pa

N_BASE, N_WRITES, BATCH, D = 1_000_000, 100_000, 10_000, 96
NLIST, M, NPROBE, K = 1024, 32, 16, 10


def recall(found, truth):
    return float(np.mean([len(set(f) & set(t)) / K for f, t in zip(found, truth)]))


def timed_queries(search, queries):
    search(queries[0])  # warm: lists and partitions in the cache
    for q in queries:
        search(q)
    times, found = [], []
    for q in queries:
        t = time.perf_counter()
        found.append(search(q))
        times.append((time.perf_counter() - t) * 1000)
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}, found


def run_ivflake(work, base, writes, queries, truth_before, truth_after):
    import ivflake

    out = {}
    index = faiss.index_factory(D, f"IVF{NLIST},PQ{M}")
    t = time.perf_counter()
    index.train(base[:100_000])
    index.add_with_ids(base, np.arange(N_BASE, dtype=np.int64))
    out["build_s"] = time.perf_counter() - t
    path = os.path.join(work, "base.faiss")
    faiss.write_index(index, path)
    root = os.path.join(work, "ivflake")
    live = ivflake.create(root, from_uri=path)
    ids = np.arange(N_BASE, N_BASE + N_WRITES, dtype=np.int64)
    t = time.perf_counter()
    for s in range(0, N_WRITES, BATCH):
        live.upsert(writes[s : s + BATCH], ids[s : s + BATCH])
    out["ingest_vectors_per_s"] = N_WRITES / (time.perf_counter() - t)

    def search(q):
        _, i = live.search(q.reshape(1, -1), K, nprobe=NPROBE)
        return i[0]

    out["query_unindexed"], found = timed_queries(search, queries)
    out["recall_unindexed"] = recall(found, truth_after)
    t = time.perf_counter()
    report = live.compact()
    out["fold_s"] = time.perf_counter() - t
    out["fold_report"] = report
    out["query_folded"], found = timed_queries(search, queries)
    out["recall_folded"] = recall(found, truth_after)
    return out


def run_lance(work, base, writes, queries, truth_after):
    import lance

    out = {}
    uri = os.path.join(work, "lance")

    def table(x, first):
        vectors = pa.FixedSizeListArray.from_arrays(pa.array(x.ravel(), pa.float32()), D)
        return pa.table({"id": pa.array(np.arange(first, first + len(x), dtype=np.int64)), "vector": vectors})

    t = time.perf_counter()
    ds = lance.write_dataset(table(base, 0), uri)
    ds.create_index("vector", index_type="IVF_PQ", num_partitions=NLIST, num_sub_vectors=M, metric="l2")
    out["build_s"] = time.perf_counter() - t
    t = time.perf_counter()
    for s in range(0, N_WRITES, BATCH):
        ds = lance.write_dataset(table(writes[s : s + BATCH], N_BASE + s), uri, mode="append")
    out["ingest_vectors_per_s"] = N_WRITES / (time.perf_counter() - t)

    def search(q):
        r = ds.to_table(columns=["id"], nearest={"column": "vector", "q": q, "k": K, "nprobes": NPROBE})
        return r["id"].to_numpy()

    out["query_unindexed"], found = timed_queries(search, queries)
    out["recall_unindexed"] = recall(found, truth_after)
    t = time.perf_counter()
    ds.optimize.optimize_indices()
    out["fold_s"] = time.perf_counter() - t
    ds = lance.dataset(uri)
    out["query_folded"], found = timed_queries(search, queries)
    out["recall_folded"] = recall(found, truth_after)
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/tmp/ivflake-scale")
    p.add_argument("--out", default="docs/data/bench_lance_writes.json")
    p.add_argument("--queries", type=int, default=200)
    a = p.parse_args()
    all_vectors = np.memmap(os.path.join(a.data, "base.f32"), dtype="<f4", mode="r").reshape(-1, D)
    base = np.ascontiguousarray(all_vectors[:N_BASE])
    writes = np.ascontiguousarray(all_vectors[N_BASE : N_BASE + N_WRITES])
    queries = np.load(os.path.join(a.data, "queries.npy")).astype("float32")[: a.queries]
    exact = faiss.IndexFlatL2(D)
    exact.add(np.concatenate([base, writes]))
    _, truth = exact.search(queries, K)
    work = tempfile.mkdtemp(prefix="ivflake-lance-")
    faiss.omp_set_num_threads(2)
    try:
        result = {
            "setup": {"n_base": N_BASE, "n_writes": N_WRITES, "batch": BATCH, "d": D, "nlist": NLIST, "m": M,
                      "nprobe": NPROBE, "k": K, "queries": len(queries), "store": "local directory"},
            "ivflake": run_ivflake(work, base, writes, queries, None, truth),
        }
        print(json.dumps(result["ivflake"], indent=1), flush=True)
        result["lance"] = run_lance(work, base, writes, queries, truth)
        import lance

        result["setup"]["pylance"] = lance.__version__
        print(json.dumps(result["lance"], indent=1), flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    json.dump(result, open(a.out, "w"), indent=1)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
