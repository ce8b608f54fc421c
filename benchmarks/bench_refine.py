"""Refine at scale: IVF4096,PQ32 against IVF4096,PQ32,RFlat on the same 10M
× 96-d vectors (bench_scale.py's data, seed 42), served by ivflake from an
S3-protocol server (s3rver) behind a loopback proxy adding --delay-ms to
every request (cold), and from its memory cache (warm): recall@10 and
p50/p99 at each nprobe and k_factor, with the refine wave's GETs and bytes.
A bench, not a test.

Usage (from the repo root; `--n 300000` checks the script in minutes):

    cargo build --release -p ivflake-cli
    OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_refine \\
        --ivflake target/release/ivflake --work /tmp/ivflake-scale

The PQ index and the vectors are bench_scale.py's (reused from --work when
there); the refined file is `faiss.IndexRefineFlat(pq_index, xb)` written by
faiss-cpu, so both files hold the same IVF-PQ lists. `--build-only` stops
after writing the files. Servers bind 127.0.0.1 and are killed on exit.
Writes WORK/bench_refine.json and prints a markdown table.

Each row: one query per search, k = --k, `ivflake search --batch 1 --stats`:
  cold S3  `--memory-cache-bytes 0` through the proxy: every search fetches
           its lists, then its candidates' refine codes (a second wave)
  warm     the local files, a cache holding every list and code touched,
           second pass over the queries
ivflake's latency is the library's own `total_ms`. "round trips" divides
the cold p50 by one bare GET's p50 through the proxy.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from benchmarks import bench_scale as scale  # noqa: E402
from benchmarks import latency_proxy  # noqa: E402
from benchmarks.common import log, stop_all, summary  # noqa: E402

REFINED_KEY = "scale/index-rflat.faiss"


def build_refined(a, work, base, pq_path):
    """IndexRefineFlat around the PQ index: the same lists, then every vector."""
    import faiss

    path = os.path.join(work, "local", "index-rflat.faiss")
    meta_path = os.path.join(work, "index-rflat.json")
    meta = {"pq": os.path.getsize(pq_path), "n": a.n, "d": a.d, "seed": a.seed}
    if os.path.exists(path) and os.path.exists(meta_path) and json.load(open(meta_path)) == meta:
        return path
    t = time.time()
    pq = faiss.read_index(pq_path)
    xb = np.ascontiguousarray(base[:])
    refined = faiss.IndexRefineFlat(pq, faiss.swig_ptr(xb))
    faiss.write_index(refined, path)
    del refined, xb
    json.dump(meta, open(meta_path, "w"))
    log(f"wrote {path} ({os.path.getsize(path) >> 20} MiB) in {time.time() - t:.0f} s")
    return path


def upload(path, key, s3port):
    s3 = scale.s3_client(s3port)
    size = os.path.getsize(path)
    try:
        if s3.head_object(Bucket=scale.BUCKET, Key=key)["ContentLength"] == size:
            return
    except Exception:  # noqa: BLE001 (absent: upload it)
        pass
    from boto3.s3.transfer import TransferConfig

    s3.upload_file(path, scale.BUCKET, key, Config=TransferConfig(multipart_chunksize=64 << 20, max_concurrency=4))


def search(a, uri, queries_file, nprobe, k_factor, env, cache_bytes):
    args = [a.ivflake, "search", uri, "--queries", queries_file, "-k", str(a.k), "--nprobe", str(nprobe),
            "--batch", "1", "--stats", "--memory-cache-bytes", str(cache_bytes)]
    if k_factor:
        args += ["--k-factor", str(k_factor)]
    proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    ids = [json.loads(line)["ids"] for line in proc.stdout.splitlines()]
    stats = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    stats = [s for s in stats if "open" not in s]
    return ids, stats


def row(ids, stats, gt):
    keys = ("gets", "bytes_fetched", "refine_gets", "refine_bytes", "refine_candidates")
    return {
        **summary([s["total_ms"] for s in stats]),
        "per_query": {k: float(np.mean([s.get(k, 0) for s in stats])) for k in keys},
        "recall": scale.recall(ids, gt),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    scale.data_arguments(p)
    p.add_argument("--nprobes", default="8,16,32,64")
    p.add_argument("--k-factors", default="4,8,16")
    p.add_argument("--build-only", action="store_true")
    a = p.parse_args()
    a.factory = f"IVF{a.nlist},PQ{a.pq}"
    nprobes = [int(x) for x in a.nprobes.split(",")]
    k_factors = [int(x) for x in a.k_factors.split(",")]
    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    started = time.time()
    log(f"data: {a.n} x {a.d}")
    base, queries, gt, _ = scale.make_data(a, work)
    log(f"index {a.factory}")
    pq_path, _ = scale.build_index(a, work, base)
    log("refined index (RFlat)")
    rf_path = build_refined(a, work, base, pq_path)
    if a.build_only:
        return
    binary = os.path.join(work, "ivflake-refine")
    shutil.copy2(a.ivflake, binary)
    a.ivflake = binary
    qdir = os.path.join(work, "q")
    os.makedirs(qdir, exist_ok=True)
    cold_q, warm_q = os.path.join(qdir, "cold.npy"), os.path.join(qdir, "warm.npy")
    np.save(cold_q, np.vstack([queries[:1], queries]).astype("float32"))
    np.save(warm_q, np.vstack([queries, queries]).astype("float32"))
    nq = len(queries)
    res = {"params": {k: v for k, v in vars(a).items() if k not in ("ivflake", "work", "s3rver_dir")},
           "files": {"pq": os.path.getsize(pq_path), "rflat": os.path.getsize(rf_path)},
           "version": subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip(),
           "load": {"start": os.getloadavg()}, "rows": []}
    out_path = os.path.join(work, "bench_refine.json")
    procs = []
    try:
        s3port = scale.start_s3rver(a, work, procs)
        proxy_port, control = scale.start_proxy(a, work, s3port, procs)
        upload(pq_path, scale.KEY, s3port)
        upload(rf_path, REFINED_KEY, s3port)
        env = scale.s3_env(proxy_port)
        res["bare_get"] = scale.bare_gets(proxy_port, os.path.getsize(pq_path), 4096, 100, 32, a.seed)
        one_get = res["bare_get"]["serial"]["p50"]
        log(f"one bare GET through the proxy: p50 {one_get:.2f} ms")
        files = [("IVF4096,PQ32", scale.KEY, pq_path, [0]), ("IVF4096,PQ32,RFlat", REFINED_KEY, rf_path, k_factors)]
        for nprobe in nprobes:
            for label, key, local, kfs in files:
                for kf in kfs:
                    latency_proxy.query(control, "reset")
                    ids, stats = search(a, f"s3://{scale.BUCKET}/{key}", cold_q, nprobe, kf, env, 0)
                    proxy = latency_proxy.query(control, "reset")
                    cold = row(ids[1:], stats[1:], gt)
                    cold["proxy_requests_per_query"] = proxy["requests"] / (nq + 1)
                    ids, stats = search(a, local, warm_q, nprobe, kf, dict(os.environ), 8 << 30)
                    warm = row(ids[nq:], stats[nq:], gt)
                    r = {"index": label, "nprobe": nprobe, "k_factor": kf, "cold": cold, "warm": warm,
                         "cold_round_trips": cold["p50"] / one_get}
                    res["rows"].append(r)
                    log(f"{label} nprobe {nprobe} k_factor {kf}: recall {cold['recall']:.3f}, cold p50 "
                        f"{cold['p50']:.1f} ms ({r['cold_round_trips']:.2f} round trips), warm p50 "
                        f"{warm['p50']:.3f} ms, refine {cold['per_query']['refine_gets']:.1f} GETs "
                        f"{cold['per_query']['refine_bytes'] / 1024:.0f} KiB")
                    with open(out_path + ".tmp", "w") as f:
                        json.dump(res, f)
                    os.replace(out_path + ".tmp", out_path)
        res["load"]["end"] = os.getloadavg()
        res["elapsed_s"] = time.time() - started
        with open(out_path, "w") as f:
            json.dump(res, f)
    finally:
        stop_all(procs)
    print("| index | nprobe | k_factor | recall@10 | cold S3 p50 / p99 ms | round trips (p50) | warm p50 / p99 ms "
          "| GETs | refine GETs | refine KiB |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for r in res["rows"]:
        c, w = r["cold"], r["warm"]
        print(f"| {r['index']} | {r['nprobe']} | {r['k_factor'] or '-'} | {c['recall']:.3f} | "
              f"{c['p50']:.1f} / {c['p99']:.1f} | {r['cold_round_trips']:.2f} | {w['p50']:.3f} / {w['p99']:.3f} | "
              f"{c['per_query']['gets']:.1f} | {c['per_query']['refine_gets']:.1f} | "
              f"{c['per_query']['refine_bytes'] / 1024:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
