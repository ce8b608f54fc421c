"""Replicas behind a real load balancer, on loopback, with real parts only:
three `ivflake serve` processes, HAProxy in front with the repo's own
config (deploy/k8s/base/haproxy.cfg), moto behind, all started here.

- Cache locality: consistent hashing on the index sends each index to one
  replica, so the run's store GETs stay near one replica's alone, where
  round-robin pays once per replica. Measured all three ways.
- A replica killed with SIGKILL mid-load, and a rolling restart: no client
  sees an error (HAProxy retries on another replica), and the killed
  replica's indexes are served by the others.
- Writes through one replica are seen through another within the
  staleness bound, natively and through the S3 Vectors API, whose requests
  HAProxy routes by the bucket and index in the JSON body.
- Replicas in `[compaction] mode = "worker"` never compact; `ivflake compact
  --watch` does.

With IVFLAKE_REPLICAS_REPORT=path the figures are written there as JSON
(benchmarks/bench_replicas.py runs this file against a release build).
"""

import json
import os
import pathlib
import random
import shutil
import subprocess
import time
import uuid

import boto3
import numpy as np
import pytest
import urllib3
from botocore.config import Config

from cluster import Balancer, Load, Replica, metric, percentile, search_body, wait_until
from conftest import cli_binary

D, N, NLIST, NPROBE = 64, 20_000, 256, 16
INDEXES = [f"catalog-{i}" for i in range(6)]
QUERIES_PER_INDEX, PASSES = 24, 6
STALENESS_S = 1.0
# The S3 Vectors indexes' compaction threshold: the worker folds an index past it.
VECTORS_THRESHOLD = 200
# The servers' own background check period (registry.rs): a replica that
# compacted on its own would have done so within it.
SERVER_COMPACTION_CHECK_S = 10
READY_DELAY_MS = 2000

REPORT = {}


def report(key, value):
    REPORT[key] = value
    path = os.environ.get("IVFLAKE_REPLICAS_REPORT")
    if path:
        pathlib.Path(path).write_text(json.dumps(REPORT, indent=2, sort_keys=True))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Six IVF-Flat indexes (faiss-cpu) and an empty writable one in the
    moto bucket, the replicas' config, and each index's queries."""
    bucket = os.environ.get("IVFLAKE_S3_BUCKET")
    if not bucket or not os.environ.get("AWS_ENDPOINT_URL"):
        pytest.skip("no S3 server: AWS_ENDPOINT_URL and IVFLAKE_S3_BUCKET are set by `make test`")
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is not installed: `make deps` installs it")
    import faiss

    work = tmp_path_factory.mktemp("replicas")
    prefix = f"replicas-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client("s3", region_name="us-east-1")
    rng = np.random.default_rng(26)
    queries = {}
    for name in INDEXES:
        centers = rng.normal(size=(64, D)).astype("float32") * 4
        xb = (centers[rng.integers(0, 64, N)] + rng.normal(size=(N, D))).astype("float32")
        index = faiss.index_factory(D, f"IVF{NLIST},Flat")
        index.train(xb)
        index.add(xb)
        path = work / f"{name}.faiss"
        faiss.write_index(index, str(path))
        s3.upload_file(str(path), bucket, f"{prefix}/{name}.faiss")
        queries[name] = xb[rng.choice(N, QUERIES_PER_INDEX, replace=False)] + 0.01
    writable = f"s3://{bucket}/{prefix}/writable/"
    subprocess.run([str(cli_binary()), "create", writable, "--d", str(D), "--factory", "IVF16,Flat"],
                   check=True, capture_output=True)
    config = work / "ivflake.toml"
    config.write_text(
        f"shutdown_ready_delay_ms = {READY_DELAY_MS}\nshutdown_grace_ms = 10000\n"
        "[cache]\nmemory_bytes = 536870912\n"
        "[compaction]\nmode = \"worker\"\ninterval_ms = 200\n"
        f"[vectors]\nroot = \"s3://{bucket}/{prefix}/vectors/\"\nauth = false\n"
        f"staleness_ms = {int(STALENESS_S * 1000)}\ncompact_unindexed_entries = {VECTORS_THRESHOLD}\n"
        f"[indexes.writable]\nuri = \"{writable}\"\nwritable = true\ncompact_unindexed_entries = 1000\n"
        + "".join(f"[indexes.{n}]\nuri = \"s3://{bucket}/{prefix}/{n}.faiss\"\n" for n in INDEXES))
    return {"work": work, "config": config, "queries": queries}


class Cluster:
    """`n` fresh replicas (cold caches) and, when asked, HAProxy in front."""

    def __init__(self, world, n, balance="repo", balance_factor=None):
        self.replicas = [Replica(cli_binary(), world["config"], f"r{i + 1}", world["work"]) for i in range(n)]
        self.balancer = None
        try:
            for r in self.replicas:
                r.start()
            if balance:
                self.balancer = Balancer(self.replicas, world["work"], None if balance == "repo" else balance,
                                         balance_factor)
                self.balancer.start()
                self.balancer.wait_up([r.name for r in self.replicas])
        except BaseException:
            self.close()
            raise

    def store_gets(self):
        return sum(r.store_gets() for r in self.replicas)

    def by_name(self, name):
        return next(r for r in self.replicas if r.name == name)

    def close(self):
        if self.balancer:
            self.balancer.stop()
        for r in self.replicas:
            r.stop()


def workload(world, passes=PASSES, seed=1):
    work = [(name, q) for name in INDEXES for q in world["queries"][name]] * passes
    random.Random(seed).shuffle(work)
    return work


def run_load(url, work, clients=8):
    load = Load(url, work, clients=clients).start().wait(600)
    assert not load.errors, f"{len(load.errors)} client errors, e.g. {load.errors[:3]}"
    return load


def test_consistent_hashing_keeps_store_gets_near_one_replica(world):
    work = workload(world)
    runs = {}
    modes = [("one replica", 1, None, None), ("consistent hashing", 3, "repo", None),
             ("round-robin", 3, "roundrobin", None)]
    # The benchmark also measures other bounded-load factors than the repo's.
    for factor in filter(None, os.environ.get("IVFLAKE_REPLICAS_FACTORS", "").split(",")):
        modes.append((f"consistent hashing, factor {factor}", 3, "repo", int(factor)))
    for mode, n, balance, factor in modes:
        cluster = Cluster(world, n, balance, factor)
        try:
            before = cluster.store_gets()
            url = cluster.balancer.url if cluster.balancer else cluster.replicas[0].url
            load = run_load(url, work)
            gets = cluster.store_gets() - before
            owners = {}
            for index, replica, _ in load.served:
                owners.setdefault(index, {}).setdefault(replica, 0)
                owners[index][replica] += 1
            busiest = {}
            for replica in (r for _, r, _ in load.served):
                busiest[replica] = busiest.get(replica, 0) + 1
            runs[mode] = {
                "requests_by_replica": busiest,
                "owners": {i: max(c, key=c.get) for i, c in owners.items()},
                "store_gets": gets,
                "requests": len(load.latencies),
                "p50_ms": percentile(load.latencies, 50) * 1e3,
                "p99_ms": percentile(load.latencies, 99) * 1e3,
                # The share of each index's requests its busiest replica served.
                "owner_share": min(max(c.values()) / sum(c.values()) for c in owners.values()),
            }
        finally:
            cluster.close()
    one = runs["one replica"]["store_gets"]
    for run in runs.values():
        run["gets_vs_one_replica"] = run["store_gets"] / one
    report("cache_locality", runs)
    assert one > 0
    assert runs["consistent hashing"]["store_gets"] <= 1.2 * one, runs
    # Round-robin is what consistent hashing saves: every replica reads every hot list.
    assert runs["round-robin"]["store_gets"] >= 2.0 * one, runs
    assert runs["consistent hashing"]["owner_share"] >= 0.8, runs


def test_a_replica_killed_mid_load_costs_clients_no_error(world):
    cluster = Cluster(world, 3)
    load = None
    try:
        run_load(cluster.balancer.url, workload(world, passes=1))  # warm
        load = Load(cluster.balancer.url, workload(world, passes=1, seed=2), repeat=True).start()
        wait_until(lambda: load.count() >= 300, 120, "300 requests before the kill")
        served_by = {}
        for index, replica, _ in list(load.served):
            served_by.setdefault(replica, set()).add(index)
        victim = max(served_by, key=lambda r: len(served_by[r]))
        cluster.by_name(victim).kill()
        cluster.balancer.wait_down(victim)
        down_at = time.monotonic()
        at_down = load.count()
        wait_until(lambda: load.count() >= at_down + 300, 120, "300 requests after the kill")
        load.stop()
        backend = cluster.balancer.stats()["BACKEND"]
        after = {(index, replica) for index, replica, started in load.served if started > down_at}
        orphans = served_by[victim]
        report("sigkill", {"requests": load.count(), "client_errors": len(load.errors),
                           "haproxy_retries": int(backend["wretr"] or 0),
                           "haproxy_redispatches": int(backend["wredis"] or 0),
                           "victim_indexes": sorted(orphans)})
        assert not load.errors, f"{len(load.errors)} client errors, e.g. {load.errors[:3]}"
        assert int(backend["wretr"] or 0) + int(backend["wredis"] or 0) > 0, "the kill was noticed"
        for index in orphans:
            assert any(i == index for i, _ in after), f"{index} was served after the kill"
    finally:
        if load:
            load.stop()
        cluster.close()


def test_a_rolling_restart_costs_clients_no_error(world):
    cluster = Cluster(world, 3)
    load = None
    try:
        load = Load(cluster.balancer.url, workload(world, passes=1, seed=3), repeat=True).start()
        wait_until(lambda: load.count() >= 100, 120, "100 requests before the restart")
        for replica in cluster.replicas:
            replica.stop()  # SIGTERM: /readyz 503, READY_DELAY_MS more accepting, then drain
            assert replica.proc.returncode == 0, replica.log.read_text()[-2000:]
            replica.start()
            cluster.balancer.wait_up([replica.name])
        at_end = load.count()
        wait_until(lambda: load.count() >= at_end + 100, 120, "100 requests after the restart")
        load.stop()
        report("rolling_restart", {"requests": load.count(), "client_errors": len(load.errors)})
        assert not load.errors, f"{len(load.errors)} client errors, e.g. {load.errors[:3]}"
    finally:
        if load:
            load.stop()
        cluster.close()


def _visible_after(write, seen, seconds=10):
    """Seconds from `write()` returning (acknowledged) to `seen()` being true."""
    write()
    acked = time.monotonic()
    wait_until(seen, seconds, "the write visible on the other replica")
    return time.monotonic() - acked


def test_writes_through_one_replica_are_seen_through_another_and_the_worker_compacts(world):
    cluster = Cluster(world, 3)
    http = urllib3.PoolManager()
    rng = np.random.default_rng(5)

    def post(url, body):
        r = http.request("POST", url, body=json.dumps(body).encode(), headers={"Content-Type": "application/json"},
                         timeout=30.0)
        assert r.status == 200, r.data
        return json.loads(r.data)

    try:
        a, b = cluster.replicas[0], cluster.replicas[1]
        native = []
        for i in range(5):
            v = rng.normal(size=D).astype("float32")
            native.append(_visible_after(
                lambda: post(f"{a.url}/v1/indexes/writable/upsert", {"ids": [7000 + i], "vectors": [v.tolist()]}),
                lambda: post(f"{b.url}/v1/indexes/writable/search",
                             {"vectors": [v.tolist()], "k": 1, "nprobe": 16})["results"][0]["ids"][0] == 7000 + i))

        # S3 Vectors: through HAProxy (routed by bucket and index), read back from each replica.
        def client(url):
            return boto3.client("s3vectors", endpoint_url=url, region_name="us-east-1",
                                config=Config(retries={"max_attempts": 1}))
        lb = client(cluster.balancer.url)
        lb.create_vector_bucket(vectorBucketName="shop")
        routed = {}
        for i in range(6):
            name = f"items-{i}"
            lb.create_index(vectorBucketName="shop", indexName=name, dataType="float32", dimension=D,
                            distanceMetric="euclidean")
            for _ in range(3):
                r = lb.query_vectors(vectorBucketName="shop", indexName=name, topK=1,
                                     queryVector={"float32": [0.0] * D})
                routed.setdefault(name, set()).add(r["ResponseMetadata"]["HTTPHeaders"]["x-ivflake-replica"])
        assert all(len(r) == 1 for r in routed.values()), f"one replica per index: {routed}"
        assert len(set().union(*routed.values())) >= 2, f"the indexes spread over replicas: {routed}"
        s3v = []
        for i in range(5):
            v = rng.normal(size=D).astype("float32")
            owner = routed["items-0"].copy().pop()
            other = next(r for r in cluster.replicas if r.name != owner)
            s3v.append(_visible_after(
                lambda: lb.put_vectors(vectorBucketName="shop", indexName="items-0",
                                       vectors=[{"key": f"k{i}", "data": {"float32": v.tolist()}}]),
                lambda: [x["key"] for x in client(other.url).query_vectors(
                    vectorBucketName="shop", indexName="items-0", topK=1,
                    queryVector={"float32": v.tolist()})["vectors"]] == [f"k{i}"]))
        report("staleness", {"bound_s": STALENESS_S, "native_s": native, "s3_vectors_s": s3v})
        # The bound, and a poll and a refresh's round trip on top.
        for delay in native + s3v:
            assert delay <= STALENESS_S + 0.75, (native, s3v)

        # A PutVectors body past HAProxy's 64 KiB buffer still routes by its
        # names (boto3 writes them first), and passes the worker's threshold.
        big = rng.normal(size=(VECTORS_THRESHOLD + 100, D)).astype("float32")
        r = lb.put_vectors(vectorBucketName="shop", indexName="items-1", vectors=[
            {"key": f"b{j}", "data": {"float32": v.tolist()}} for j, v in enumerate(big)])
        assert r["ResponseMetadata"]["HTTPHeaders"]["x-ivflake-replica"] in routed["items-1"]

        # 1,200 more entries pass the writable index's threshold (1,000): the
        # replicas (mode "worker") leave it; `ivflake compact --watch` folds it.
        ids = list(range(20_000, 21_200))
        post(f"{a.url}/v1/indexes/writable/upsert",
             {"ids": ids, "vectors": rng.normal(size=(len(ids), D)).astype("float32").tolist()})
        # Longer than a server's own compaction check: the replicas left it.
        time.sleep(SERVER_COMPACTION_CHECK_S + 1)
        probe = {"vectors": [[0.0] * D], "k": 1, "nprobe": 16}
        before = post(f"{b.url}/v1/indexes/writable/search", probe)["stats"]
        assert before["unindexed_entries"] >= 1200, before
        worker = subprocess.run([str(cli_binary()), "compact", "--watch", "--config", str(world["config"]),
                                 "--rounds", "2"], capture_output=True, text=True, timeout=300)
        assert worker.returncode == 0, worker.stderr
        rounds = [json.loads(line)["round"] for line in worker.stdout.splitlines()]
        compacted = sorted(c["index"] for r in rounds for c in r["compacted"])
        assert compacted == ["shop/items-1", "writable"], worker.stdout
        assert all(not r["failed"] for r in rounds), worker.stdout
        wait_until(lambda: post(f"{b.url}/v1/indexes/writable/search", probe)["stats"]["version"] > before["version"],
                   10, "the replica sees the worker's version")
        after = post(f"{b.url}/v1/indexes/writable/search", probe)["stats"]
        assert after["unindexed_entries"] == 0, after
    finally:
        cluster.close()


def test_latency_through_haproxy_against_direct_and_the_cost_of_a_search(world):
    """Warm p50/p99 through the hop and straight to the replica that owns
    the index; and the dollars each search reports, cold then warm."""
    cluster = Cluster(world, 3)
    http = urllib3.PoolManager(maxsize=2)
    try:
        name = INDEXES[0]
        queries = world["queries"][name]

        def search(url, q):
            started = time.perf_counter()
            r = http.request("POST", f"{url}/v1/indexes/{name}/search", body=search_body(q, nprobe=NPROBE),
                             headers={"Content-Type": "application/json"}, timeout=30.0)
            assert r.status == 200, r.data
            return time.perf_counter() - started, r

        _, first = search(cluster.balancer.url, queries[0])
        owner = cluster.by_name(first.headers["x-ivflake-replica"])
        cold_cost = json.loads(first.data)["stats"]["cost"]
        for q in queries:  # warm every list the queries probe
            search(owner.url, q)
        warm_cost = json.loads(search(owner.url, queries[0])[1].data)["stats"]["cost"]
        direct, hop = [], []
        for _ in range(10):
            for q in queries:
                direct.append(search(owner.url, q)[0])
                hop.append(search(cluster.balancer.url, q)[0])
        figures = {"direct_p50_ms": percentile(direct, 50) * 1e3, "direct_p99_ms": percentile(direct, 99) * 1e3,
                   "haproxy_p50_ms": percentile(hop, 50) * 1e3, "haproxy_p99_ms": percentile(hop, 99) * 1e3,
                   "cold_cost": cold_cost, "warm_cost": warm_cost}
        figures["hop_p50_ms"] = figures["haproxy_p50_ms"] - figures["direct_p50_ms"]
        report("latency", figures)
        # The default prices: S3 Standard's $0.0004 per 1,000 GETs, nothing per byte.
        assert cold_cost["get_requests"] > 0
        assert cold_cost["usd"] == pytest.approx(cold_cost["get_requests"] * 0.0004 / 1000)
        assert warm_cost["get_requests"] == 0 and warm_cost["usd"] == 0
        text = owner.metrics()
        assert metric(text, "ivflake_search_cost_nanodollars_total", f'index="{name}"') >= round(
            cold_cost["usd"] * 1e9)
    finally:
        cluster.close()
