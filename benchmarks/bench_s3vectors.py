"""The S3 Vectors API against AWS's published S3 Vectors figures, side by
side with ivflake's native API in the same run, on one server over moto
behind a 20 ms-per-request proxy (`latency_proxy.py`): ingest through
PutVectors (boto3, 1 and 8 client processes) and the native upsert; query
p50/p99 through boto3 and the native search, warm (lists in memory) and
cold (a server whose memory cache holds nothing, so each query fetches its
lists from the store), interleaved query by query; queries per second at 1,
8 and 32 clients; recall@10 against exact search. Requests are SigV4
signed and verified, as in production.

AWS's figures (S3 Vectors user guide, 2026): warm queries "as low as 100
ms", cold "sub-second", "hundreds" of queries per second per index, writes
up to 2,500 vectors/s per index.

Usage (from the repo root):
    cargo build --release -p ivflake-cli -p ivflake-server --example serve_throttled
    python -m benchmarks.bench_s3vectors --out docs/data/bench_s3vectors.json
    python -m benchmarks.bench_s3vectors --store moto --out docs/data/bench_s3vectors_moto.json
"""
import argparse
import json
import multiprocessing as mp
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

import numpy as np

from benchmarks.common import Generator, free_port, log, stop_all, summary, wait_port

KEY_ID, SECRET = "AKIABENCHMARK0000001", "bench-secret"
BUCKET, INDEX, NATIVE = "bench", "items", "nat"
BATCH = 500


def s3v_client(url):
    import boto3
    from botocore.config import Config

    return boto3.client("s3vectors", endpoint_url=url, region_name="us-east-1", aws_access_key_id=KEY_ID,
                        aws_secret_access_key=SECRET, config=Config(retries={"max_attempts": 1},
                                                                     max_pool_connections=64))


def post(url, path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


# ------------------------------------------------------------------ ingest workers


def _put_s3v(args):
    url, xb, start = args
    c = s3v_client(url)
    for s in range(0, len(xb), BATCH):
        c.put_vectors(vectorBucketName=BUCKET, indexName=INDEX, vectors=[
            {"key": f"v{start + i}", "data": {"float32": xb[i].tolist()},
             "metadata": {"shard": (start + i) % 16}} for i in range(s, min(s + BATCH, len(xb)))])
    return len(xb)


def _put_s3v_raw(args):
    """PutVectors with its JSON built before the clock starts (boto3's
    serializer, not the server, is what limits a Python client), each
    request still SigV4-signed (botocore's signer) when it is sent."""
    import http.client

    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    url, xb, start, start_at = args
    bodies = raw_bodies(xb, start)
    time.sleep(max(0.0, start_at - time.time()))
    host = url.removeprefix("http://")
    conn = http.client.HTTPConnection(host, timeout=600)
    signer = SigV4Auth(Credentials(KEY_ID, SECRET), "s3vectors", "us-east-1")
    n = 0
    for body, rows in bodies:
        req = AWSRequest(method="POST", url=f"{url}/PutVectors", data=body,
                         headers={"Content-Type": "application/json", "Host": host})
        signer.add_auth(req)
        conn.request("POST", "/PutVectors", body=body, headers=dict(req.headers))
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"PutVectors: {resp.status}")
        n += rows
    return n, time.time()


def raw_bodies(xb, start):
    out = []
    for s in range(0, len(xb), BATCH):
        rows = range(s, min(s + BATCH, len(xb)))
        body = json.dumps({"vectorBucketName": BUCKET, "indexName": INDEX, "vectors": [
            {"key": f"v{start + i}", "data": {"float32": xb[i].tolist()}, "metadata": {"shard": (start + i) % 16}}
            for i in rows]}).encode()
        out.append((body, len(rows)))
    return out


def _put_native(args):
    url, xb, start = args
    for s in range(0, len(xb), BATCH):
        rows = range(s, min(s + BATCH, len(xb)))
        post(url, f"/v1/indexes/{NATIVE}/upsert", {"ids": [start + i for i in rows], "vectors": [xb[i].tolist() for i in rows]})
    return len(xb)


def cpu_seconds(pid):
    """User and system CPU seconds a process has used (Linux /proc)."""
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest(pool, worker, url, xb, start, clients):
    parts = np.array_split(np.arange(len(xb)), clients)
    jobs = [(url, xb[p], start + int(p[0])) for p in parts if len(p)]
    t = time.perf_counter()
    done = sum(pool.map(worker, jobs) if clients > 1 else [worker(j) for j in jobs])
    return done / (time.perf_counter() - t)


# ------------------------------------------------------------------ query workers


def _s3v_query(c, q, k=10):
    return c.query_vectors(vectorBucketName=BUCKET, indexName=INDEX, topK=k, queryVector={"float32": q.tolist()})


def _native_query(url, q, nprobe, k=10):
    return post(url, f"/v1/indexes/{NATIVE}/search", {"vectors": [q.tolist()], "k": k, "nprobe": nprobe})


def _qps_worker(args):
    kind, url, xq, seconds, threads, nprobe = args
    stop = time.time() + seconds
    counts = [0] * threads

    def run(t):
        c = s3v_client(url) if kind == "s3v" else None
        i = t
        while time.time() < stop:
            q = xq[i % len(xq)]
            if kind == "s3v":
                _s3v_query(c, q)
            else:
                _native_query(url, q, nprobe)
            counts[t] += 1
            i += threads
    ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(counts)


def qps(pool, kind, url, xq, clients, seconds, nprobe):
    procs = min(clients, 8)
    threads = clients // procs
    jobs = [(kind, url, xq[p::procs], seconds, threads, nprobe) for p in range(procs)]
    t = time.perf_counter()
    n = sum(pool.map(_qps_worker, jobs))
    return n / (time.perf_counter() - t)


class RawQueries:
    """QueryVectors with each request SigV4-signed by botocore's signer and
    sent on one kept-alive connection, without boto3's client: what the
    server takes, apart from the Python client's own cost."""

    def __init__(self, url):
        import http.client

        from botocore.auth import SigV4Auth
        from botocore.credentials import Credentials

        self.url, self.host = url, url.removeprefix("http://")
        self.conn = http.client.HTTPConnection(self.host, timeout=600)
        self.signer = SigV4Auth(Credentials(KEY_ID, SECRET), "s3vectors", "us-east-1")

    def query(self, q, k=10):
        from botocore.awsrequest import AWSRequest

        body = json.dumps({"vectorBucketName": BUCKET, "indexName": INDEX, "topK": k,
                           "queryVector": {"float32": q.tolist()}}).encode()
        req = AWSRequest(method="POST", url=f"{self.url}/QueryVectors", data=body,
                         headers={"Content-Type": "application/json", "Host": self.host})
        self.signer.add_auth(req)
        self.conn.request("POST", "/QueryVectors", body=body, headers=dict(req.headers))
        resp = self.conn.getresponse()
        out = resp.read()
        if resp.status != 200:
            raise RuntimeError(out)
        return out


def interleaved(url, xq, nprobe):
    """Per query, boto3's QueryVectors, the same signed by hand, then the
    native search: ms each."""
    c = s3v_client(url)
    raw = RawQueries(url)
    s3v, signed, native = [], [], []
    for q in xq:
        t = time.perf_counter()
        _s3v_query(c, q)
        s3v.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        raw.query(q)
        signed.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        _native_query(url, q, nprobe)
        native.append((time.perf_counter() - t) * 1000)
    return {"s3v": summary(s3v), "s3v_signed_by_hand": summary(signed), "native": summary(native)}


# ------------------------------------------------------------------ servers


def start_server(binary, config_text, env, work, name):
    port = free_port()
    cfg = os.path.join(work, f"{name}.toml")
    open(cfg, "w").write(f'listen = "127.0.0.1:{port}"\n' + config_text)
    proc = subprocess.Popen([binary, "serve", "--config", cfg], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, f"{name}.log"), "w"))
    wait_port(port, proc)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                if r.status == 200:
                    return proc, url
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{name} did not become ready")


def round_trip_ms(endpoint, n=50):
    """One GET of a small object through the proxy: the store's round trip."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="test",
                      aws_secret_access_key="test")
    s3.put_object(Bucket=BUCKET, Key="rtt", Body=b"x" * 4096)
    ms = []
    for _ in range(n):
        t = time.perf_counter()
        s3.get_object(Bucket=BUCKET, Key="rtt")["Body"].read()
        ms.append((time.perf_counter() - t) * 1000)
    return summary(ms)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--delay-ms", type=int, default=20)
    p.add_argument("--qps-seconds", type=float, default=10)
    p.add_argument("--store", choices=["throttled", "moto"], default="throttled",
                   help="throttled: object_store's ThrottledStore in the server process (serve_throttled example); "
                        "moto: moto behind latency_proxy.py")
    p.add_argument("--binary", default="target/release/ivflake")
    p.add_argument("--example", default="target/release/examples/serve_throttled")
    p.add_argument("--out", default="docs/data/bench_s3vectors.json")
    a = p.parse_args()
    work = tempfile.mkdtemp(prefix="ivflake-s3v-")
    procs = []
    result = {"n": a.n, "d": a.d, "delay_ms": a.delay_ms, "store": a.store, "cores": os.cpu_count()}
    gen = Generator(a.d, 11)
    xb = np.concatenate([gen.chunk(0, s, min(50_000, a.n - s)) for s in range(0, a.n, 50_000)])
    xq = gen.chunk(1, 0, a.queries)
    # The factory the S3 Vectors API picks for n (vectors.factory = "auto").
    nlist = 1
    while nlist * 2 <= 4 * np.sqrt(a.n) * np.sqrt(2):
        nlist *= 2
    factory = f"IVF{nlist},SQ8"
    nprobe = max(16, nlist // 8)
    env = dict(os.environ, AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test",
               AWS_REGION="us-east-1", IVFLAKE_VECTORS_ACCESS_KEY_ID=KEY_ID,
               IVFLAKE_VECTORS_SECRET_ACCESS_KEY=SECRET, RUST_LOG="warn", OMP_WAIT_POLICY="PASSIVE")
    native_index = f'[indexes.{NATIVE}]\nuri = "s3://{BUCKET}/native/"\nwritable = true\ncompact_unindexed_entries = 0\n'
    vectors = f'[vectors]\nroot = "s3://{BUCKET}/s3v"\ncompact_unindexed_entries = 0\n'
    try:
        if a.store == "throttled":
            # object_store's ThrottledStore in the server's process: every
            # request waits delay_ms, and the store costs nothing more.
            result["store_round_trip_ms"] = {"p50": float(a.delay_ms), "note": "ThrottledStore's wait, by construction"}
            ports = [free_port(), free_port()]
            cfgs = []
            for name, port, extra in (("warm", ports[0], ""), ("cold", ports[1], "[cache]\nmemory_bytes = 0\n")):
                cfg = os.path.join(work, f"{name}.toml")
                open(cfg, "w").write(f'listen = "127.0.0.1:{port}"\n[vectors]\ncompact_unindexed_entries = 0\n{extra}')
                cfgs.append(cfg)
            server = subprocess.Popen([a.example, *cfgs, str(a.delay_ms), str(a.d), factory], env=env,
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                      stderr=open(os.path.join(work, "throttled.log"), "w"), text=True)
            procs.append(server)
            if server.stdout.readline().strip() != "ready":
                raise RuntimeError(open(os.path.join(work, "throttled.log")).read()[-3000:])
            url, cold_url = (f"http://127.0.0.1:{p}" for p in ports)
        else:
            # moto, and the latency proxy in front of it.
            endpoint_file = os.path.join(work, "endpoint")
            empty = os.path.join(work, "empty")
            os.makedirs(empty)
            moto = subprocess.Popen([sys.executable, "scripts/s3_server.py", empty, endpoint_file, BUCKET],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(moto)
            for _ in range(300):
                if os.path.exists(endpoint_file):
                    break
                time.sleep(0.1)
            upstream = open(endpoint_file).read().strip().removeprefix("http://")
            port_file = os.path.join(work, "proxy")
            proxy = subprocess.Popen([sys.executable, "-m", "benchmarks.latency_proxy", "--upstream", upstream,
                                      "--delay-ms", str(a.delay_ms), "--port-file", port_file],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append(proxy)
            for _ in range(300):
                if os.path.exists(port_file) and open(port_file).read().strip():
                    break
                time.sleep(0.1)
            store = f"http://127.0.0.1:{open(port_file).read().split()[0]}"
            env["AWS_ENDPOINT_URL"] = store
            result["store_round_trip_ms"] = round_trip_ms(store)
            subprocess.run([a.binary, "create", f"s3://{BUCKET}/native/", "--d", str(a.d), "--factory", factory],
                           env=env, check=True, stdout=subprocess.DEVNULL)
            server, url = start_server(a.binary, vectors + native_index, env, work, "warm")
            procs.append(server)
        log(f"store round trip {result['store_round_trip_ms']}")
        c = s3v_client(url)
        c.create_vector_bucket(vectorBucketName=BUCKET)
        c.create_index(vectorBucketName=BUCKET, indexName=INDEX, dataType="float32", dimension=a.d,
                       distanceMetric="euclidean")

        ctx = mp.get_context("fork")
        with ctx.Pool(8) as pool:
            one = min(20_000, a.n // 4)
            ing, cpu = {}, {}

            def measured(name, run, vectors):
                before = cpu_seconds(server.pid)
                ing[name] = run()
                cpu[name] = (cpu_seconds(server.pid) - before) * 1e6 / vectors

            # New keys in every phase: [0, one) from one client, then half
            # of the rest from 8 boto3 clients and half from 8 clients whose
            # bodies were built beforehand; the native index takes the same.
            mid = (one + a.n) // 2
            measured("s3v_1_client", lambda: ingest(pool, _put_s3v, url, xb[:one], 0, 1), one)
            measured("native_1_client", lambda: ingest(pool, _put_native, url, xb[:one], 0, 1), one)
            measured("s3v_8_clients", lambda: ingest(pool, _put_s3v, url, xb[one:mid], one, 8), mid - one)
            measured("native_8_clients", lambda: ingest(pool, _put_native, url, xb[one:], one, 8), a.n - one)
            # Every worker builds its bodies, then all start at one moment.
            parts = np.array_split(np.arange(mid, a.n), 8)
            start_at = time.time() + 30
            done = pool.map_async(_put_s3v_raw, [(url, xb[p], int(p[0]), start_at) for p in parts])
            time.sleep(max(0.0, start_at - time.time()))
            before = cpu_seconds(server.pid)
            done = done.get()
            cpu["s3v_raw_8_clients"] = (cpu_seconds(server.pid) - before) * 1e6 / (a.n - mid)
            ing["s3v_raw_8_clients"] = sum(n for n, _ in done) / (max(end for _, end in done) - start_at)
            result["ingest_vectors_per_s"] = ing
            # The server's CPU per vector written: its capacity per core is 1e6 / this.
            result["ingest_server_cpu_us_per_vector"] = cpu
            log(f"server cpu per vector (us) {cpu}")
            log(f"ingest {ing}")

            t = time.perf_counter()
            rep = post(url, f"/v1/vector-buckets/{BUCKET}/indexes/{INDEX}/compact", {})
            result["compact_s3v_s"] = time.perf_counter() - t
            result["compact_s3v"] = rep["compacted"]
            t = time.perf_counter()
            post(url, f"/v1/indexes/{NATIVE}/compact", {})
            result["compact_native_s"] = time.perf_counter() - t
            log(f"compacted: s3v {result['compact_s3v_s']:.1f} s, native {result['compact_native_s']:.1f} s")

            # Recall@10 of QueryVectors against exact search.
            sq = (xq ** 2).sum(1)[:, None] - 2 * xq @ xb.T + (xb ** 2).sum(1)[None, :]
            ref = np.argsort(sq, axis=1)[:, :10]
            rec = []
            for i, q in enumerate(xq[:100]):
                got = {int(v["key"][1:]) for v in _s3v_query(c, q)["vectors"]}
                rec.append(len(got & set(ref[i].tolist())) / 10)
            result["recall_at_10"] = float(np.mean(rec))
            result["factory"], result["nprobe"] = factory, nprobe
            log(f"recall@10 {result['recall_at_10']:.3f} ({factory}, nprobe {nprobe})")

            interleaved(url, xq, nprobe)  # warms every probed list
            result["warm"] = interleaved(url, xq, nprobe)
            log(f"warm {result['warm']}")
            result["qps"] = {}
            for clients in (1, 8, 32):
                result["qps"][str(clients)] = {
                    "s3v": qps(pool, "s3v", url, xq, clients, a.qps_seconds, nprobe),
                    "native": qps(pool, "native", url, xq, clients, a.qps_seconds, nprobe),
                }
                log(f"qps {clients}: {result['qps'][str(clients)]}")
        if a.store == "moto":
            # Cold: a server whose memory cache holds nothing; each query's
            # lists come from the store through the proxy.
            server.terminate()
            server.wait(30)
            cold, cold_url = start_server(a.binary, vectors + native_index + "[cache]\nmemory_bytes = 0\n", env,
                                          work, "cold")
            procs.append(cold)
        result["cold"] = interleaved(cold_url, xq[:100], nprobe)
        log(f"cold {result['cold']}")
        result["aws_published"] = {"warm_ms": 100, "cold_ms": 1000, "ingest_vectors_per_s": 2500,
                                   "qps_per_index": "hundreds"}
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        json.dump(result, open(a.out, "w"), indent=1)
        log(f"wrote {a.out}")
    finally:
        stop_all(procs)


if __name__ == "__main__":
    main()
