"""ivflake at scale: one IVF-PQ index of N clustered vectors (10 million by
default), served from a local directory and from an S3-protocol server
(s3rver, which answers range GETs from the object's file) behind a loopback
proxy that adds --delay-ms to every request; next to Faiss in memory and
LanceDB's IVF_PQ on the same data and the same store. A bench, not a test.

Usage (from the repo root; `--n 300000` validates the whole script in minutes):

    cargo build --release -p ivflake-cli
    python -m venv /tmp/bench && /tmp/bench/bin/pip install -r scripts/requirements.txt pylance
    OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 /tmp/bench/bin/python -m benchmarks.bench_scale \
        --ivflake target/release/ivflake --work /tmp/ivflake-scale --n 10000000

Everything is generated from --seed (common.py's clustered gaussians, each
cluster stretched along a random rank-24 subspace); nothing is downloaded. Big files
(the vectors, the index, s3rver's directory, Lance's dataset) go under
--work, and are reused by a later run with the same parameters. s3rver
3.7.1 is installed with npm into --s3rver-dir (outside the repo) on first
use. Servers bind 127.0.0.1 and are killed on exit. Writes
WORK/bench_scale.json (read by benchmarks/plot_benchmarks.py) and prints
markdown tables.

Rows, each one query per search, k = --k, at every --nprobes value:
  ivflake cold S3    `ivflake search s3://… --batch 1 --stats --memory-cache-bytes 0`
                     through the proxy: every search fetches its lists
  ivflake cold local the same on the local file (the OS page cache is warm)
  ivflake warm       the local file, memory cache large enough for every list,
                     second pass over the queries (0 GETs)
  Faiss in memory    faiss-cpu, 1 thread, `read_index` of the same file
                     (with its precomputed residual table, as read_index
                     builds it, and without, as ivflake serves it)
  LanceDB cold/warm  pylance IVF_PQ on a Lance dataset in the same s3rver,
                     through the same proxy (cold: a fresh dataset per query,
                     opened outside the timer; warm: one dataset after a pass)
ivflake's latency is the library's own `total_ms`; Faiss's and LanceDB's
are wall time around the Python call.
"""
import argparse
import http.client
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("LANCE_LOG", "error")

import numpy as np  # noqa: E402

from benchmarks import latency_proxy  # noqa: E402
from benchmarks.common import Generator, free_port, log, pct, stop_all, summary, wait_port  # noqa: E402

BUCKET = "bench"
KEY = "scale/index.faiss"
S3RVER_VERSION = "3.7.1"
# s3rver's own credentials; it accepts anonymous GETs too.
S3_KEY = "S3RVER"
# Vectors generated, and added to the index, per step, so memory stays
# bounded at any --n (the base vectors live in a memmap).
GEN_CHUNK = 500_000
# An HNSW quantizer counts as a replacement for the flat one when it finds
# this share of the exact top-nprobe lists.
HNSW_LIST_RECALL = 0.95


# ---------------------------------------------------------------- data


def make_data(a, work):
    """WORK/base.f32 (raw float32, n × d), queries.npy, gt.npy (exact k-NN)."""
    import faiss

    base_path = os.path.join(work, "base.f32")
    meta_path = os.path.join(work, "data.json")
    meta = {"n": a.n, "d": a.d, "seed": a.seed, "nq": a.nq, "k": a.k, "generator": 3}
    gen = Generator(a.d, a.seed)
    timings = {}
    if not (os.path.exists(meta_path) and json.load(open(meta_path)) == meta):
        t = time.time()
        base = np.memmap(base_path, dtype="float32", mode="w+", shape=(a.n, a.d))
        for start in range(0, a.n, GEN_CHUNK):
            m = min(GEN_CHUNK, a.n - start)
            base[start:start + m] = gen.chunk(0, start, m)
        base.flush()
        del base
        timings["generate_s"] = time.time() - t
        queries = gen.chunk(1, 0, a.nq)
        np.save(os.path.join(work, "queries.npy"), queries)
        # Exact neighbours: a flat scan chunk by chunk, merged.
        t = time.time()
        faiss.omp_set_num_threads(2)
        base = np.memmap(base_path, dtype="float32", mode="r", shape=(a.n, a.d))
        best_d = np.full((a.nq, a.k), np.inf, dtype="float32")
        best_i = np.full((a.nq, a.k), -1, dtype="int64")
        for start in range(0, a.n, 1_000_000):
            flat = faiss.IndexFlatL2(a.d)
            flat.add(np.ascontiguousarray(base[start:start + 1_000_000]))
            dist, idx = flat.search(queries, a.k)
            cd = np.hstack([best_d, dist])
            ci = np.hstack([best_i, idx + start])
            sel = np.argsort(cd, axis=1, kind="stable")[:, :a.k]
            best_d = np.take_along_axis(cd, sel, 1)
            best_i = np.take_along_axis(ci, sel, 1)
        np.save(os.path.join(work, "gt.npy"), best_i)
        timings["ground_truth_s"] = time.time() - t
        json.dump(meta, open(meta_path, "w"))
    base = np.memmap(base_path, dtype="float32", mode="r", shape=(a.n, a.d))
    return base, np.load(os.path.join(work, "queries.npy")), np.load(os.path.join(work, "gt.npy")), timings


def build_index(a, work, base):
    """IVF<nlist>,PQ<m> with faiss-cpu on 2 threads, trained on a sample."""
    import faiss

    path = os.path.join(work, "local", "index.faiss")
    meta_path = os.path.join(work, "index.json")
    meta = {"n": a.n, "d": a.d, "seed": a.seed, "factory": a.factory, "train": a.train_per_list, "generator": 3}
    if os.path.exists(meta_path) and os.path.exists(path):
        old = json.load(open(meta_path))
        if old.get("params") == meta:
            return path, old["timings"]
    os.makedirs(os.path.dirname(path), exist_ok=True)
    faiss.omp_set_num_threads(a.build_threads)
    index = faiss.index_factory(a.d, a.factory)
    nlist = faiss.extract_index_ivf(index).nlist
    ntrain = min(a.n, a.train_per_list * nlist)
    rng = np.random.default_rng(a.seed + 1)
    sample = np.ascontiguousarray(base[np.sort(rng.choice(a.n, ntrain, replace=False))])
    t = time.time()
    index.train(sample)
    train_s = time.time() - t
    del sample
    t = time.time()
    for start in range(0, a.n, GEN_CHUNK):
        index.add(np.ascontiguousarray(base[start:start + GEN_CHUNK]))
    add_s = time.time() - t
    faiss.write_index(index, path)
    timings = {"train_s": train_s, "train_vectors": ntrain, "add_s": add_s, "file_bytes": os.path.getsize(path),
               "threads": a.build_threads}
    json.dump({"params": meta, "timings": timings}, open(meta_path, "w"))
    return path, timings


# ---------------------------------------------------------------- servers


def start_s3rver(a, work, procs):
    binary = os.path.join(a.s3rver_dir, "node_modules", ".bin", "s3rver")
    if not os.path.exists(binary):
        log(f"installing s3rver {S3RVER_VERSION} into {a.s3rver_dir}")
        os.makedirs(a.s3rver_dir, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", a.s3rver_dir, f"s3rver@{S3RVER_VERSION}"], check=True,
                       stdout=subprocess.DEVNULL)
    port = free_port()
    data = os.path.join(work, "s3rver-data")
    os.makedirs(data, exist_ok=True)
    proc = subprocess.Popen([binary, "-d", data, "-a", "127.0.0.1", "-p", str(port), "--silent",
                             "--configure-bucket", BUCKET], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(proc)
    wait_port(port, proc)
    return port


def start_proxy(a, work, upstream_port, procs):
    port_file = os.path.join(work, "proxy.ports")
    if os.path.exists(port_file):
        os.remove(port_file)
    # `a.proxy_log` (bench_text's): the proxy logs each request there.
    proxy_log = getattr(a, "proxy_log", None)
    proc = subprocess.Popen([sys.executable, latency_proxy.__file__,
                             "--upstream", f"127.0.0.1:{upstream_port}", "--delay-ms", str(a.delay_ms),
                             "--port-file", port_file, "--max-seconds", str(a.max_minutes * 60 + 600)] +
                            (["--log", proxy_log] if proxy_log else []))
    procs.append(proc)
    deadline = time.time() + 30
    while not os.path.exists(port_file):
        if time.time() > deadline or proc.poll() is not None:
            raise RuntimeError("the latency proxy did not start")
        time.sleep(0.1)
    port, control = map(int, open(port_file).read().split())
    return port, control


def s3_client(port):
    import boto3

    return boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                        aws_access_key_id=S3_KEY, aws_secret_access_key=S3_KEY)


def upload(path, s3port):
    s3 = s3_client(s3port)
    size = os.path.getsize(path)
    try:
        if s3.head_object(Bucket=BUCKET, Key=KEY)["ContentLength"] == size:
            return None
    except Exception:  # noqa: BLE001 (absent: upload it)
        pass
    from boto3.s3.transfer import TransferConfig

    t = time.time()
    s3.upload_file(path, BUCKET, KEY, Config=TransferConfig(multipart_chunksize=64 << 20, max_concurrency=4))
    return time.time() - t


def s3_env(port):
    return dict(os.environ, AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ALLOW_HTTP="true",
                AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_KEY, AWS_REGION="us-east-1",
                OMP_WAIT_POLICY="PASSIVE", OPENBLAS_NUM_THREADS="1")


# ---------------------------------------------------------------- measurements


def bare_gets(port, object_len, get_len, count, parallel, seed):
    """Range GETs of get_len bytes at random offsets on keep-alive
    connections: `count` one after another, then `count // 4` waves of
    `parallel` GETs at once (one connection each)."""
    rng = np.random.default_rng(seed)
    path = f"/{BUCKET}/{KEY}"

    def one(conn, off):
        t = time.perf_counter()
        conn.request("GET", path, headers={"Range": f"bytes={off}-{off + get_len - 1}"})
        resp = conn.getresponse()
        body = resp.read()
        if resp.status != 206 or len(body) != get_len:
            raise RuntimeError(f"range GET answered {resp.status} with {len(body)} bytes")
        return (time.perf_counter() - t) * 1000

    offsets = rng.integers(0, object_len - get_len, count * 2 + parallel * count)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    one(conn, 0)
    serial = [one(conn, int(o)) for o in offsets[:count]]
    conn.close()
    conns = [http.client.HTTPConnection("127.0.0.1", port, timeout=30) for _ in range(parallel)]
    for c in conns:
        one(c, 0)
    waves = []
    pos = count
    for _ in range(max(1, count // 4)):
        offs = offsets[pos:pos + parallel]
        pos += parallel
        out = [0.0] * parallel
        t = time.perf_counter()
        threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, one(conns[i], int(offs[i]))))
                   for i in range(parallel)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        waves.append((time.perf_counter() - t) * 1000)
    for c in conns:
        c.close()
    return {"get_bytes": get_len, "serial": summary(serial), "parallel": parallel, "wave": summary(waves)}


def timed_run(args, env):
    """Runs a command once under GNU time: (max RSS bytes, wall s, stdout)."""
    rss_file = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"ivflake-bench-rss-{os.getpid()}")
    t = time.perf_counter()
    proc = subprocess.run(["/usr/bin/time", "-o", rss_file, "-f", "%M"] + args, capture_output=True, text=True,
                          env=env, timeout=600)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    rss = int(open(rss_file).read().split()[-1]) * 1024
    os.remove(rss_file)
    return rss, wall, proc.stdout


def inspect_runs(a, uris, control_port, env_s3):
    """`ivflake inspect` of each URI, 3 times: wall time, max RSS, and (for
    S3) the requests the proxy saw; `ivflake --version` as the baseline."""
    res = {}
    for name, uri in uris.items():
        env = env_s3 if uri.startswith("s3://") else dict(os.environ)
        rows = []
        for _ in range(3):
            latency_proxy.query(control_port, "reset")
            rss, wall, out = timed_run([a.ivflake, "inspect", "--json", uri], env)
            row = {"wall_s": wall, "max_rss_bytes": rss, "report": json.loads(out)}
            if uri.startswith("s3://"):
                row["proxy"] = latency_proxy.query(control_port, "reset")
            rows.append(row)
        res[name] = rows
    rows = []
    for _ in range(3):
        rss, wall, _ = timed_run([a.ivflake, "--version"], dict(os.environ))
        rows.append({"wall_s": wall, "max_rss_bytes": rss})
    res["baseline"] = rows
    return res


def ivflake_search(a, uri, queries_file, nprobe, env, cache_bytes):
    args = [a.ivflake, "search", uri, "--queries", queries_file, "-k", str(a.k), "--nprobe", str(nprobe),
            "--batch", "1", "--stats", "--memory-cache-bytes", str(cache_bytes)]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=1800)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    ids = [json.loads(line)["ids"] for line in proc.stdout.splitlines()]
    stats = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    stats = [s for s in stats if "open" not in s]  # the first line: what open cost
    return ids, stats


def recall(found, gt):
    hits = sum(len(set(f[:gt.shape[1]]) & set(g.tolist())) for f, g in zip(found, gt))
    return hits / gt.size


def ivflake_row(ids, stats, gt):
    keys = ("gets", "bytes_fetched", "bytes_probed", "lists_probed", "quantizer_ms", "fetch_ms", "scan_ms")
    return {
        "latency_ms": [s["total_ms"] for s in stats],
        **summary([s["total_ms"] for s in stats]),
        "per_query": {k: float(np.mean([s[k] for s in stats])) for k in keys},
        "quantizer_p50_ms": pct([s["quantizer_ms"] for s in stats], 50),
        "recall": recall(ids, gt),
    }


def faiss_rows(path, queries, gt, nprobes, k):
    """faiss-cpu, 1 thread, the whole file read: with the residual table
    read_index builds and without it; each query timed alone."""
    import faiss

    faiss.omp_set_num_threads(1)
    t = time.time()
    index = faiss.read_index(path)
    read_s = time.time() - t
    ivf = faiss.downcast_index(faiss.extract_index_ivf(index))
    out = {"read_s": read_s, "table": {}, "no_table": {}}
    for mode, use in (("table", 1), ("no_table", -1)):
        ivf.use_precomputed_table = use
        ivf.precompute_table()
        for nprobe in nprobes:
            ivf.nprobe = nprobe
            for i in range(min(20, len(queries))):
                index.search(queries[i:i + 1], k)
            lat, found = [], []
            for i in range(len(queries)):
                t = time.perf_counter()
                _, idx = index.search(queries[i:i + 1], k)
                lat.append((time.perf_counter() - t) * 1000)
                found.append(idx[0].tolist())
            out[mode][str(nprobe)] = {"latency_ms": lat, **summary(lat), "recall": recall(found, gt), "ids": found}
    del index
    return out


def quantizer_share(a, base, queries, nlists, scan_ns_per_code, other_ms):
    """The coarse quantizer alone, one query at a time: a flat index of
    nlist centroids against HNSW32 over the same centroids (centroids are
    random database vectors: the cost does not depend on how they were
    trained), HNSW at efSearch nprobe, 2 × and 4 × nprobe, each with its
    list recall (the share of the exact top-nprobe lists it finds). At
    nprobe 32, and at the nprobe that scans as many codes as nprobe 32 does
    at nlist 4096. A warm query's share is the quantizer's p50 over itself
    plus the estimated scan (codes × ivflake's warm scan cost per code) plus
    the rest of ivflake's warm search (other_ms); for HNSW, at the smallest
    efSearch whose list recall is at least HNSW_LIST_RECALL."""
    import faiss

    def timed(idx, nprobe):
        for i in range(min(20, len(queries))):
            idx.search(queries[i:i + 1], nprobe)
        lat, found = [], []
        for i in range(len(queries)):
            t = time.perf_counter()
            _, found_i = idx.search(queries[i:i + 1], nprobe)
            lat.append((time.perf_counter() - t) * 1000)
            found.append(found_i[0])
        return summary(lat), found

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(a.seed + 7)
    out = []
    for nlist in nlists:
        cents = np.ascontiguousarray(base[np.sort(rng.choice(a.n, nlist, replace=False))])
        flat = faiss.IndexFlatL2(a.d)
        flat.add(cents)
        hnsw = faiss.IndexHNSWFlat(a.d, 32)
        faiss.omp_set_num_threads(2)
        t = time.time()
        hnsw.add(cents)
        build_s = time.time() - t
        faiss.omp_set_num_threads(1)
        for nprobe in sorted({32, max(1, 32 * nlist // 4096)}):
            row = {"nlist": nlist, "nprobe": nprobe, "hnsw_build_s": build_s, "hnsw_sweep": []}
            row["flat"], exact = timed(flat, nprobe)
            for ef in sorted({max(16, nprobe), max(16, 2 * nprobe), max(16, 4 * nprobe)}):
                hnsw.hnsw.efSearch = ef
                lat, found = timed(hnsw, nprobe)
                rec = float(np.mean([len(set(h) & set(f)) / nprobe for h, f in zip(found, exact)]))
                row["hnsw_sweep"].append({"ef_search": ef, **lat, "list_recall": rec})
            good = [h for h in row["hnsw_sweep"] if h["list_recall"] >= HNSW_LIST_RECALL] or row["hnsw_sweep"][-1:]
            pick = good[0]
            row["ef_search"] = pick["ef_search"]
            row["hnsw"] = {k: pick[k] for k in ("p50", "p99", "mean", "n")}
            row["hnsw_list_recall"] = pick["list_recall"]
            codes = nprobe * a.n / nlist
            scan_ms = codes * scan_ns_per_code / 1e6
            row["scan_ms_est"] = scan_ms
            row["flat_share"] = row["flat"]["p50"] / (row["flat"]["p50"] + scan_ms + other_ms)
            row["hnsw_share"] = row["hnsw"]["p50"] / (row["hnsw"]["p50"] + scan_ms + other_ms)
            out.append(row)
            log(f"quantizer nlist {nlist} nprobe {nprobe}: flat {row['flat']['p50']:.3f} ms, hnsw "
                + ", ".join(f"ef {h['ef_search']} {h['p50']:.3f} ms (list recall {h['list_recall']:.3f})"
                            for h in row["hnsw_sweep"]) + f"; scan est {scan_ms:.3f} ms")
    return out


def warm_costs(a, res):
    """Scan cost per code and the rest of a warm search (cache look-ups,
    hops), from ivflake's own warm stats at nprobe 32."""
    nprobe_ref = 32 if 32 in a.nprobes else a.nprobes[len(a.nprobes) // 2]
    w = res["ivflake"]["warm"][str(nprobe_ref)]
    scan_ns = w["per_query"]["scan_ms"] * 1e6 / (nprobe_ref * a.n / a.nlist)
    other_ms = max(0.0, w["mean"] - w["per_query"]["quantizer_ms"] - w["per_query"]["scan_ms"])
    res["scan_ns_per_code"] = scan_ns
    res["warm_other_ms"] = other_ms
    return scan_ns, other_ms


# ---------------------------------------------------------------- LanceDB


def lance_opts(port):
    return {"aws_endpoint": f"http://127.0.0.1:{port}", "allow_http": "true", "aws_access_key_id": S3_KEY,
            "aws_secret_access_key": S3_KEY, "aws_region": "us-east-1"}


def lance_build(a, base, s3port, work):
    """A Lance dataset (id, vector) of the first --lance-n vectors in s3rver,
    written and indexed directly (no proxy), IVF_PQ with the same nlist and
    sub-vectors."""
    import lance
    import pyarrow as pa

    n = a.lance_n
    uri = f"s3://{BUCKET}/scale/lance-{n}.lance"
    meta_path = os.path.join(work, "lance.json")
    params = {"n": n, "d": a.d, "seed": a.seed, "nlist": a.nlist, "m": a.pq, "sample_rate": a.lance_sample_rate,
              "max_iters": a.lance_max_iters, "generator": 3}
    if os.path.exists(meta_path):
        old = json.load(open(meta_path))
        if old.get("params") == params:
            return uri, old["timings"]
    opts = lance_opts(s3port)
    schema = pa.schema([("id", pa.int64()), ("vector", pa.list_(pa.float32(), a.d))])

    def batches():
        for start in range(0, n, 100_000):
            x = np.ascontiguousarray(base[start:min(n, start + 100_000)])
            yield pa.RecordBatch.from_arrays(
                [pa.array(np.arange(start, start + len(x), dtype="int64")),
                 pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1), pa.float32()), a.d)], schema=schema)

    t = time.time()
    lance.write_dataset(pa.RecordBatchReader.from_batches(schema, batches()), uri, mode="overwrite",
                        storage_options=opts)
    write_s = time.time() - t
    t = time.time()
    ds = lance.dataset(uri, storage_options=opts)
    ds.create_index("vector", index_type="IVF_PQ", num_partitions=a.nlist, num_sub_vectors=a.pq, metric="l2",
                    sample_rate=a.lance_sample_rate, max_iters=a.lance_max_iters)
    index_s = time.time() - t
    timings = {"write_s": write_s, "index_s": index_s, "n": n}
    json.dump({"params": params, "timings": timings}, open(meta_path, "w"))
    return uri, timings


def lance_rows(a, uri, s3port, proxy_port, control_port, queries, gt, nprobes):
    """LanceDB's IVF_PQ search, k nearest with `nprobes`, returning row ids
    (`with_row_id`, no column: like ivflake, no read of the data files).
    Cold: a fresh dataset through the proxy per query, opened outside the
    timer, first --lance-cold-queries queries only (Lance reads the probed
    partitions one after another, so a cold query costs about two round
    trips per partition). Warm: one dataset, every query searched once
    before the timed pass (0 requests)."""
    import lance

    proxy_opts, direct_opts = lance_opts(proxy_port), lance_opts(s3port)
    rows_per_file = 1 << 20  # lance.write_dataset's max_rows_per_file

    def query(ds, q, nprobe):
        t = time.perf_counter()
        tab = ds.to_table(columns=[], with_row_id=True,
                          nearest={"column": "vector", "q": q, "k": a.k, "nprobes": nprobe})
        ms = (time.perf_counter() - t) * 1000
        # Row ids of a dataset written in order: fragment << 32 | offset.
        ids = [(r >> 32) * rows_per_file + (r & 0xFFFFFFFF) for r in tab.column("_rowid").to_pylist()]
        return ids, ms

    def rec(found, rows):
        return recall(found, gt[rows]) if a.lance_n == a.n else None

    out = {"cold": {}, "warm": {}, "open_ms": [], "cold_queries": min(a.lance_cold_queries, len(queries))}
    nc = out["cold_queries"]
    for nprobe in nprobes:
        lat, found, reqs = [], [], []
        for i in range(nc):
            t = time.perf_counter()
            ds = lance.dataset(uri, storage_options=proxy_opts)
            out["open_ms"].append((time.perf_counter() - t) * 1000)
            latency_proxy.query(control_port, "reset")
            f, ms = query(ds, queries[i], nprobe)
            reqs.append(latency_proxy.query(control_port, "reset"))
            lat.append(ms)
            found.append(f)
            del ds
        out["cold"][str(nprobe)] = {
            "latency_ms": lat, **summary(lat),
            "requests": float(np.mean([r["requests"] for r in reqs])),
            "bytes_down": float(np.mean([r["bytes_down"] for r in reqs])),
            "recall": rec(found, slice(0, nc)),
        }
        # Warm: partitions loaded straight from s3rver, then the timed pass.
        warm_ds = lance.dataset(uri, storage_options=direct_opts)
        for q in queries:
            query(warm_ds, q, nprobe)
        lat, found = [], []
        for q in queries:
            f, ms = query(warm_ds, q, nprobe)
            lat.append(ms)
            found.append(f)
        out["warm"][str(nprobe)] = {"latency_ms": lat, **summary(lat), "recall": rec(found, slice(None))}
        del warm_ds
        c, w = out["cold"][str(nprobe)], out["warm"][str(nprobe)]
        log(f"lance nprobe {nprobe}: cold p50 {c['p50']:.1f} ms ({c['requests']:.1f} requests), "
            f"warm p50 {w['p50']:.2f} ms, recall {w['recall']}")
    return out


# ---------------------------------------------------------------- main


def data_arguments(p):
    """The arguments that make the data, the index and their place under
    --work: shared with bench_refine.py, which reuses both."""
    p.add_argument("--ivflake", default="target/release/ivflake")
    p.add_argument("--work", default="/tmp/ivflake-scale")
    p.add_argument("--n", type=int, default=10_000_000)
    p.add_argument("--d", type=int, default=96)
    p.add_argument("--nlist", type=int, default=4096)
    p.add_argument("--pq", type=int, default=32, help="PQ sub-quantizers (8 bits each)")
    p.add_argument("--train-per-list", type=int, default=40, help="training vectors per list")
    p.add_argument("--nq", type=int, default=200)
    p.add_argument("-k", "--k", type=int, default=10)
    p.add_argument("--delay-ms", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--build-threads", type=int, default=2, help="faiss-cpu threads for training and adding")
    p.add_argument("--s3rver-dir", default=os.path.expanduser("~/.cache/ivflake/s3rver"))
    p.add_argument("--max-minutes", type=float, default=120, help="the proxy's lifetime bound")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    data_arguments(p)
    p.add_argument("--nprobes", default="8,16,32,64,128")
    p.add_argument("--quantizer-nlists", default="1024,4096,16384,65536")
    p.add_argument("--lance-n", type=int, default=None, help="vectors in the Lance dataset [default: --n; 0: skip]")
    p.add_argument("--lance-sample-rate", type=int, default=40, help="Lance k-means training vectors per partition")
    p.add_argument("--lance-max-iters", type=int, default=20)
    p.add_argument("--lance-cold-queries", type=int, default=20, help="queries per nprobe for LanceDB cold")
    p.add_argument("--label", default="", help="free text saved in the JSON (e.g. the commit of the binary)")
    p.add_argument("--out", default=None, help="JSON results [default: WORK/bench_scale.json]")
    p.add_argument("--quantizer-only", action="store_true",
                   help="rerun only the coarse-quantizer measurement into an existing results JSON")
    a = p.parse_args()
    a.factory = f"IVF{a.nlist},PQ{a.pq}"
    a.nprobes = [int(x) for x in a.nprobes.split(",")]
    a.lance_n = a.n if a.lance_n is None else a.lance_n
    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    out_path = a.out or os.path.join(work, "bench_scale.json")
    if a.quantizer_only:
        res = json.load(open(out_path))
        base, queries, _, _ = make_data(a, work)
        scan_ns, other_ms = warm_costs(a, res)
        res["quantizer"] = quantizer_share(a, base, queries, [int(x) for x in a.quantizer_nlists.split(",")],
                                           scan_ns, other_ms)
        res["load"]["quantizer_only"] = os.getloadavg()
        with open(out_path + ".tmp", "w") as f:
            json.dump(res, f)
        os.replace(out_path + ".tmp", out_path)
        print_tables(res)
        return
    # A copy, so a rebuild of the workspace during the run cannot swap the binary.
    binary = os.path.join(work, "ivflake")
    shutil.copy2(a.ivflake, binary)
    ivflake_version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    a.ivflake = binary
    import faiss
    import importlib.metadata as md

    res = {
        "params": {k: v for k, v in vars(a).items() if k not in ("ivflake", "work", "s3rver_dir", "out", "label")},
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                    "faiss_cpu": faiss.__version__, "python": platform.python_version()},
        "load": {},
        "ivflake_version": ivflake_version,
        "label": a.label,
    }
    try:
        res["machine"]["pylance"] = md.version("pylance")
    except md.PackageNotFoundError:
        pass
    started = time.time()
    res["load"]["start"] = os.getloadavg()

    def save():
        res["elapsed_s"] = time.time() - started
        tmp = out_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f)
        os.replace(tmp, out_path)

    log(f"data: {a.n} x {a.d}")
    base, queries, gt, t_data = make_data(a, work)
    res["timings"] = dict(t_data)
    log(f"index {a.factory}")
    path, t_build = build_index(a, work, base)
    res["timings"].update(t_build)
    res["index_file_bytes"] = os.path.getsize(path)
    qdir = os.path.join(work, "q")
    os.makedirs(qdir, exist_ok=True)
    cold_q = os.path.join(qdir, "cold.npy")
    warm_q = os.path.join(qdir, "warm.npy")
    # One leading query absorbs opening and the first connections in cold runs;
    # warm runs search the queries twice and keep the second pass.
    np.save(cold_q, np.vstack([queries[:1], queries]).astype("float32"))
    np.save(warm_q, np.vstack([queries, queries]).astype("float32"))
    nq = len(queries)

    procs = []
    try:
        s3port = start_s3rver(a, work, procs)
        proxy_port, control = start_proxy(a, work, s3port, procs)
        log(f"s3rver on 127.0.0.1:{s3port}, proxy (+{a.delay_ms} ms) on 127.0.0.1:{proxy_port}")
        up = upload(path, s3port)
        if up is not None:
            res["timings"]["upload_s"] = up
        env_s3 = s3_env(proxy_port)
        s3_uri = f"s3://{BUCKET}/{KEY}"
        save()

        # The store's own cost per GET: a bare range GET of a mean list's bytes.
        list_bytes = max(4096, int(res["index_file_bytes"] / a.nlist))
        res["bare_get"] = {
            "direct": bare_gets(s3port, res["index_file_bytes"], list_bytes, 100, 32, a.seed),
            "proxy": bare_gets(proxy_port, res["index_file_bytes"], list_bytes, 100, 32, a.seed),
        }
        for k_, v in res["bare_get"].items():
            log(f"bare GET {k_}: {v['get_bytes']} B serial p50 {v['serial']['p50']:.2f} ms, "
                f"wave of {v['parallel']} p50 {v['wave']['p50']:.2f} ms")

        res["open"] = inspect_runs(a, {"s3": s3_uri, "local": path}, control, env_s3)
        o = res["open"]["s3"][0]
        log(f"open: s3 {o['wall_s']:.3f} s, {o['proxy']['requests']} requests, RSS {o['max_rss_bytes'] >> 20} MiB; "
            f"header {o['report']['header_bytes']} B")
        save()

        # Faiss in memory, before LanceDB fills the page cache and the heap.
        log("faiss-cpu in memory")
        res["faiss"] = faiss_rows(path, queries, gt, a.nprobes, a.k)
        for mode in ("table", "no_table"):
            for nprobe in a.nprobes:
                res["faiss"][mode][str(nprobe)].pop("ids")
        save()

        res["ivflake"] = {"cold_s3": {}, "cold_local": {}, "warm": {}}
        for nprobe in a.nprobes:
            latency_proxy.query(control, "reset")
            ids, stats = ivflake_search(a, s3_uri, cold_q, nprobe, env_s3, 0)
            proxy = latency_proxy.query(control, "reset")
            row = ivflake_row(ids[1:], stats[1:], gt)
            row["first_query_ms"] = stats[0]["total_ms"]
            row["proxy_requests_per_query"] = proxy["requests"] / (nq + 1)
            res["ivflake"]["cold_s3"][str(nprobe)] = row
            ids, stats = ivflake_search(a, path, cold_q, nprobe, dict(os.environ), 0)
            res["ivflake"]["cold_local"][str(nprobe)] = ivflake_row(ids[1:], stats[1:], gt)
            ids, stats = ivflake_search(a, path, warm_q, nprobe, dict(os.environ), 4 << 30)
            row = ivflake_row(ids[nq:], stats[nq:], gt)
            row["gets_second_pass"] = sum(s["gets"] for s in stats[nq:])
            res["ivflake"]["warm"][str(nprobe)] = row
            r = res["ivflake"]
            log(f"ivflake nprobe {nprobe}: cold s3 p50 {r['cold_s3'][str(nprobe)]['p50']:.1f} ms "
                f"({r['cold_s3'][str(nprobe)]['per_query']['gets']:.1f} GETs), cold local "
                f"{r['cold_local'][str(nprobe)]['p50']:.2f} ms, warm {r['warm'][str(nprobe)]['p50']:.3f} ms, "
                f"faiss {res['faiss']['no_table'][str(nprobe)]['p50']:.3f} ms, "
                f"recall {r['cold_s3'][str(nprobe)]['recall']:.3f}")
            save()
        res["load"]["after_ivflake"] = os.getloadavg()

        scan_ns, other_ms = warm_costs(a, res)
        log("coarse quantizer: flat vs HNSW32")
        res["quantizer"] = quantizer_share(a, base, queries, [int(x) for x in a.quantizer_nlists.split(",")], scan_ns,
                                           other_ms)
        save()

        if a.lance_n > 0:
            log(f"LanceDB: writing {a.lance_n} vectors and building IVF_PQ")
            uri, t_lance = lance_build(a, base, s3port, work)
            res["timings"]["lance"] = t_lance
            log(f"LanceDB built: write {t_lance['write_s']:.0f} s, index {t_lance['index_s']:.0f} s")
            save()
            res["lance"] = lance_rows(a, uri, s3port, proxy_port, control, queries, gt, a.nprobes)
        res["load"]["end"] = os.getloadavg()
        save()
    finally:
        stop_all(procs)
    log(f"done in {time.time() - started:.0f} s; results in {out_path}")
    print_tables(res)


def print_tables(res):
    nprobes = res["params"]["nprobes"]
    iv, fa = res["ivflake"], res["faiss"]
    print("| nprobe | cold S3 p50 / p99 | cold local p50 / p99 | warm p50 / p99 | Faiss (no table) p50 / p99 | "
          "Faiss (table) p50 / p99 | GETs | KiB fetched | recall@10 |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for nprobe in nprobes:
        s = str(nprobe)
        c, l, w = iv["cold_s3"][s], iv["cold_local"][s], iv["warm"][s]
        f1, f2 = fa["no_table"][s], fa["table"][s]
        print(f"| {nprobe} | {c['p50']:.1f} / {c['p99']:.1f} | {l['p50']:.2f} / {l['p99']:.2f} | "
              f"{w['p50']:.3f} / {w['p99']:.3f} | {f1['p50']:.3f} / {f1['p99']:.3f} | "
              f"{f2['p50']:.3f} / {f2['p99']:.3f} | {c['per_query']['gets']:.1f} | "
              f"{c['per_query']['bytes_fetched'] / 1024:.0f} | {c['recall']:.3f} |")
    if "lance" in res:
        print()
        print("| nprobe | LanceDB cold S3 p50 / p99 | requests | LanceDB warm p50 / p99 | recall@10 |")
        print("| ---: | ---: | ---: | ---: | ---: |")
        for nprobe in nprobes:
            c, w = res["lance"]["cold"][str(nprobe)], res["lance"]["warm"][str(nprobe)]
            rec = "–" if w["recall"] is None else f"{w['recall']:.3f}"
            print(f"| {nprobe} | {c['p50']:.1f} / {c['p99']:.1f} | {c['requests']:.1f} | "
                  f"{w['p50']:.2f} / {w['p99']:.2f} | {rec} |")
    print()
    print("| nlist | nprobe | flat p50 ms | HNSW32 p50 ms at efSearch (list recall) | est. scan ms | flat share | "
          "HNSW share |")
    print("| ---: | ---: | ---: | --- | ---: | ---: | ---: |")
    for r in res["quantizer"]:
        sweep = r.get("hnsw_sweep") or [{"ef_search": r["ef_search"], "p50": r["hnsw"]["p50"],
                                         "list_recall": r["hnsw_list_recall"]}]
        hn = ", ".join(f"{h['p50']:.3f} at {h['ef_search']} ({h['list_recall']:.3f})" for h in sweep)
        print(f"| {r['nlist']} | {r['nprobe']} | {r['flat']['p50']:.3f} | {hn} | {r['scan_ms_est']:.3f} | "
              f"{r['flat_share'] * 100:.0f}% | {r['hnsw_share'] * 100:.0f}% (ef {r['ef_search']}) |")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--tables":
        print_tables(json.load(open(sys.argv[2])))
    else:
        main()
