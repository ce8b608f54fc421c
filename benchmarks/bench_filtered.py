"""Filtered vector search: ivflake (attributes beside a Faiss IVF index) next
to LanceDB's own filtered search (pylance, prefilter=True) on the same data.

Usage (from the repo root):
    python -m benchmarks.bench_filtered IVFLAKE_BIN WORK_DIR
Needs numpy, pyarrow and pylance. Generates everything from fixed seeds;
nothing is downloaded. Prints a markdown table (docs/benchmarks.md).

ivflake runs as `ivflake search --batch 1 --stats`, one query per search, and
its latency is the library's own `total_ms` per search; `--memory-cache-bytes
0` makes every search read the store (cold), the default cache after a pass
over the queries is warm. LanceDB runs in this process: cold opens the dataset
anew for each query (its index and data caches start empty), warm reuses one
dataset after a pass. Both read a local directory (the OS page cache is warm
for both), so "cold" is a cold process-level cache, not a cold disk.
"""
import json
import os
import subprocess
import sys
import time

# Lance warns on every search that `_distance` is projected; keep the table readable.
os.environ.setdefault("LANCE_LOG", "error")
import lance  # noqa: E402
import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

from .common import priced_vectors  # noqa: E402

N = 100_000
D = 64
NQ = 100
K = 10
NLIST = 256
NPROBE = 16
SELECTIVITIES = [(0.5, 50.0), (0.1, 10.0), (0.01, 1.0), (0.001, 0.1)]


def data():
    return priced_vectors(N, D, NQ)


def truth(xb, xq, mask, ids):
    cand = np.nonzero(mask)[0]
    out = []
    for q in xq:
        d = ((xb[cand] - q) ** 2).sum(1)
        out.append(set(ids[cand[np.argsort(d)[:K]]].tolist()))
    return out


def recall(found, exact):
    hits = sum(len(set(f) & e) for f, e in zip(found, exact))
    return hits / max(1, sum(len(e) for e in exact))


def pct(xs, p):
    return float(np.percentile(np.array(xs), p))


def ivflake_run(binary, uri, queries_file, flt, cold):
    args = [binary, "search", uri, "--queries", queries_file, "-k", str(K), "--nprobe", str(NPROBE),
            "--filter", flt, "--batch", "1", "--stats"]
    if cold:
        args += ["--memory-cache-bytes", "0"]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE", OPENBLAS_NUM_THREADS="1")
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env)
    ids = [json.loads(line)["ids"] for line in out.stdout.splitlines()]
    stats = [json.loads(line) for line in out.stderr.splitlines() if line.startswith("{")]
    stats = [s for s in stats if "open" not in s]  # the first line: what open cost
    return ids, stats


def main(binary, work):
    os.makedirs(work, exist_ok=True)
    xb, xq, price, ids = data()
    vec = pa.FixedSizeListArray.from_arrays(pa.array(xb.reshape(-1), pa.float32()), D)
    table = pa.table({"id": pa.array(ids), "vector": vec, "price": pa.array(price)})
    pq.write_table(table, os.path.join(work, "data.parquet"))
    uri = os.path.join(work, "idx.faiss")
    subprocess.run([binary, "build", "--input", os.path.join(work, "data.parquet"), "--factory",
                    f"IVF{NLIST},Flat", "--output", uri], check=True, capture_output=True)

    # One leading query absorbs opening (header, attributes footer) in cold
    # runs; warm runs search the queries twice and keep the second pass.
    def npy(path, arr):
        np.save(path, arr.astype("float32"))
        return path
    cold_q = npy(os.path.join(work, "cold.npy"), np.vstack([xq[:1], xq]))
    warm_q = npy(os.path.join(work, "warm.npy"), np.vstack([xq, xq]))

    lance_uri = os.path.join(work, "data.lance")
    lance.write_dataset(table, lance_uri, mode="overwrite")
    lance.dataset(lance_uri).create_index("vector", index_type="IVF_FLAT", num_partitions=NLIST, metric="l2")

    def lance_query(ds, q, flt):
        t = time.perf_counter()
        r = ds.to_table(columns=["id"], nearest={"column": "vector", "q": q, "k": K, "nprobes": NPROBE},
                        filter=flt, prefilter=True)
        return r.column("id").to_pylist(), (time.perf_counter() - t) * 1000

    rows = []
    for sel, bound in SELECTIVITIES:
        exact = truth(xb, xq, price < bound, ids)
        flt = json.dumps({"price": {"$lt": bound}})
        for cold in (True, False):
            found, stats = ivflake_run(binary, uri, cold_q if cold else warm_q, flt, cold)
            found, stats = found[-NQ:], stats[-NQ:]
            lat = [s["total_ms"] for s in stats]
            rows.append(("ivflake", sel, "cold" if cold else "warm", pct(lat, 50), pct(lat, 99), recall(found, exact),
                         np.mean([s["lists_pruned"] for s in stats]), np.mean([s["extra_lists_probed"] for s in stats]),
                         np.mean([s["bytes_fetched"] for s in stats])))
        sql = f"price < {bound}"
        cold_lat, cold_found = [], []
        for q in xq:
            f, ms = lance_query(lance.dataset(lance_uri), q, sql)
            cold_found.append(f)
            cold_lat.append(ms)
        ds = lance.dataset(lance_uri)
        for q in xq:
            lance_query(ds, q, sql)
        warm_lat, warm_found = [], []
        for q in xq:
            f, ms = lance_query(ds, q, sql)
            warm_found.append(f)
            warm_lat.append(ms)
        for mode, lat, found in (("cold", cold_lat, cold_found), ("warm", warm_lat, warm_found)):
            rows.append(("LanceDB", sel, mode, pct(lat, 50), pct(lat, 99), recall(found, exact), None, None, None))

    print(f"{N} x {D}-d vectors, IVF{NLIST},Flat, nprobe {NPROBE}, k {K}, {NQ} queries one at a time, "
          f"filter price < bound (uniform, independent of the vectors); pylance {lance.__version__}")
    print()
    print("| engine | selectivity | cache | p50 ms | p99 ms | recall@10 | lists pruned | extra lists | bytes fetched |")
    print("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for e, sel, mode, p50, p99, rec, pruned, extra, fetched in rows:
        opt = lambda v, f: "–" if v is None else f.format(v)
        print(f"| {e} | {sel * 100:g}% | {mode} | {p50:.2f} | {p99:.2f} | {rec:.3f} | {opt(pruned, '{:.1f}')} | "
              f"{opt(extra, '{:.1f}')} | {opt(fetched, '{:,.0f}')} |")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
