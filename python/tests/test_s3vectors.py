"""The Amazon S3 Vectors API of `ivflake serve --vector-root`, driven by
boto3's own `s3vectors` client, on a local directory and on moto (the S3
server `make test` starts). Results are checked against exact search in
numpy, written data against what was put, response shapes against the
service definition botocore ships, and errors as botocore's exception
classes."""

import gzip
import json
import os
import pathlib
import subprocess
import time
import urllib.request
import uuid

import boto3
import botocore
import numpy as np
import pytest
from botocore import UNSIGNED
from botocore.config import Config

from conftest import _free_port, cli_binary

D = 64
N = 20_000
BATCH = 500
CATEGORIES = ["red", "green", "blue", "cyan", "gold"]
KEY_ID, SECRET = "AKIAIVFLAKETEST00001", "s3cr3t-for-tests-only"
SEARCH_KEY_ID, SEARCH_SECRET = "AKIAIVFLAKESEARCH001", "search-only-secret"


def service_model():
    path = pathlib.Path(botocore.__file__).parent / "data" / "s3vectors" / "2025-07-15" / "service-2.json.gz"
    return json.loads(gzip.open(path).read())


class VectorServer:
    """`ivflake serve --vector-root ROOT` on loopback; restartable on the same root."""

    def __init__(self, root, tmp_path, auth=True):
        self.root, self.auth = root, auth
        self.config = tmp_path / f"vectors-{uuid.uuid4().hex[:6]}.toml"
        # Compaction is asked for by the tests (the native compact route).
        self.config.write_text(
            "[vectors]\ncompact_unindexed_entries = 0\n"
            "[[vectors.access_keys]]\n"
            f'id = "{KEY_ID}"\nsecret_env = "TEST_S3V_SECRET"\nscope = "admin"\n'
            "[[vectors.access_keys]]\n"
            f'id = "{SEARCH_KEY_ID}"\nsecret_env = "TEST_S3V_SEARCH_SECRET"\nscope = "search"\n'
        )
        self.proc = None
        self.start()

    def start(self):
        port = _free_port()
        self.url = f"http://127.0.0.1:{port}"
        env = dict(os.environ, RUST_LOG="warn", TEST_S3V_SECRET=SECRET, TEST_S3V_SEARCH_SECRET=SEARCH_SECRET)
        args = [str(cli_binary()), "serve", "--config", str(self.config), "--vector-root", self.root,
                "--listen", f"127.0.0.1:{port}"]
        if not self.auth:
            args.append("--no-auth")
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        for _ in range(300):  # bounded: 30 s
            if self.proc.poll() is not None:
                pytest.fail(f"ivflake serve exited: {self.proc.stderr.read().decode()[-3000:]}")
            try:
                with urllib.request.urlopen(self.url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        pytest.fail("ivflake serve did not become ready")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def restart(self):
        self.stop()
        self.start()

    def client(self, key_id=KEY_ID, secret=SECRET, unsigned=False):
        config = Config(retries={"max_attempts": 1}, signature_version=UNSIGNED if unsigned else None)
        return boto3.client("s3vectors", endpoint_url=self.url, region_name="us-east-1",
                            aws_access_key_id=key_id, aws_secret_access_key=secret, config=config)

    def compact(self, bucket, index):
        req = urllib.request.Request(f"{self.url}/v1/vector-buckets/{bucket}/indexes/{index}/compact",
                                     method="POST", data=b"")
        with urllib.request.urlopen(req, timeout=300) as r:
            return json.loads(r.read())["compacted"]


@pytest.fixture(params=["dir", "moto"])
def root(request, tmp_path):
    if request.param == "dir":
        return str(tmp_path / "vectors")
    bucket = os.environ.get("IVFLAKE_S3_BUCKET")
    if not bucket or not os.environ.get("AWS_ENDPOINT_URL"):
        pytest.skip("no S3 server: AWS_ENDPOINT_URL and IVFLAKE_S3_BUCKET are set by `make test`")
    return f"s3://{bucket}/s3vectors-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def server(root, tmp_path):
    s = VectorServer(root, tmp_path)
    yield s
    s.stop()


def make_data(seed=7):
    """Clustered vectors (as embeddings are), keys, and metadata of each kind."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((64, D)).astype(np.float32) * 3
    xb = (centers[rng.integers(0, 64, N)] + rng.standard_normal((N, D)).astype(np.float32)).astype(np.float32)
    keys = [f"doc-{i:05d}/é{i % 7}" for i in range(N)]
    meta = [{"category": CATEGORIES[i % 5], "price": float(rng.integers(0, 100)), "in_stock": bool(i % 3),
             "body": f"text of document {i} " * 3} for i in range(N)]
    xq = (centers[rng.integers(0, 64, 40)] + rng.standard_normal((40, D)).astype(np.float32)).astype(np.float32)
    return xb, keys, meta, xq


DATA = make_data()


def exact(xb, xq, k, metric, mask=None):
    """Exact top-k row numbers and distances as S3 Vectors returns them."""
    if metric == "cosine":
        nb = xb / np.linalg.norm(xb, axis=1, keepdims=True)
        nq = xq / np.linalg.norm(xq, axis=1, keepdims=True)
        dist = 1.0 - nq @ nb.T
    else:
        dist = (xq ** 2).sum(1)[:, None] - 2 * xq @ xb.T + (xb ** 2).sum(1)[None, :]
    if mask is not None:
        dist = np.where(mask[None, :], dist, np.inf)
    order = np.argsort(dist, axis=1)[:, :k]
    return order, np.take_along_axis(dist, order, 1)


def put_all(c, bucket, index, rows):
    xb, keys, meta = rows
    for s in range(0, len(keys), BATCH):
        c.put_vectors(vectorBucketName=bucket, indexName=index, vectors=[
            {"key": keys[i], "data": {"float32": xb[i].tolist()}, "metadata": meta[i]}
            for i in range(s, min(s + BATCH, len(keys)))])


def query(c, bucket, index, q, k=10, **kw):
    return c.query_vectors(vectorBucketName=bucket, indexName=index, topK=k,
                           queryVector={"float32": q.tolist()}, **kw)["vectors"]


def check_searches(c, bucket, index, metric, live, min_recall=0.95, exact_distances=True):
    """Recall@10 against exact search; distances and metadata of the hits;
    a filter's precision (1.0) and recall (>= 0.9)."""
    xb, keys, meta, xq = DATA
    live_rows = np.array(sorted(live))
    sub = xb[live_rows]
    ref, ref_d = exact(sub, xq, 10, metric)
    recalls = []
    for qi, q in enumerate(xq):
        hits = query(c, bucket, index, q, returnDistance=True, returnMetadata=True)
        got = [h["key"] for h in hits]
        want = {keys[live_rows[r]] for r in ref[qi]}
        recalls.append(len(want & set(got)) / 10)
        for h in hits:
            row = int(h["key"][4:9])
            assert h["metadata"] == meta[row]
            d = exact(xb[row:row + 1], q[None, :], 1, metric)[1][0, 0]
            tol = 1e-3 if exact_distances else 0.05
            assert abs(h["distance"] - d) <= tol * max(1.0, abs(d)), (h, d)
        ds = [h["distance"] for h in hits]
        assert ds == sorted(ds)
    assert np.mean(recalls) >= min_recall, np.mean(recalls)

    # A filter: every hit matches it (precision 1.0), and recall >= 0.9.
    flt = {"$and": [{"category": {"$in": ["red", "blue"]}}, {"price": {"$lt": 50}}, {"in_stock": True}]}
    mask = np.array([m["category"] in ("red", "blue") and m["price"] < 50 and m["in_stock"] for m in meta])
    mask_live = mask[live_rows]
    fref, _ = exact(sub, xq, 10, metric, mask_live)
    frec = []
    for qi, q in enumerate(xq[:20]):
        hits = query(c, bucket, index, q, filter=flt, returnMetadata=True)
        for h in hits:
            m = h["metadata"]
            assert m["category"] in ("red", "blue") and m["price"] < 50 and m["in_stock"], h
        want = {keys[live_rows[r]] for r in fref[qi]}
        frec.append(len(want & {h["key"] for h in hits}) / 10)
    assert np.mean(frec) >= 0.9, np.mean(frec)


def check_get(c, bucket, index, rows, deleted=()):
    xb, keys, meta, _ = DATA
    ask = [keys[r] for r in rows]
    got = c.get_vectors(vectorBucketName=bucket, indexName=index, keys=ask, returnData=True,
                        returnMetadata=True)["vectors"]
    by_key = {v["key"]: v for v in got}
    for r in rows:
        if r in deleted:
            assert keys[r] not in by_key
            continue
        v = by_key[keys[r]]
        sent = xb[r].view(np.uint32)
        back = np.array(v["data"]["float32"], dtype=np.float32).view(np.uint32)
        np.testing.assert_array_equal(back, sent)  # bit for bit
        assert v["metadata"] == meta[r]


def list_all(c, bucket, index, segments=4, page=700):
    seen = []
    for s in range(segments):
        token = None
        while True:
            kw = {"nextToken": token} if token else {}
            out = c.list_vectors(vectorBucketName=bucket, indexName=index, segmentCount=segments,
                                 segmentIndex=s, maxResults=page, **kw)
            assert len(out["vectors"]) <= page
            seen += [v["key"] for v in out["vectors"]]
            token = out.get("nextToken")
            if not token:
                break
    return seen


def test_boto3_through_puts_queries_deletes_compaction_and_a_restart(server):
    xb, keys, meta, xq = DATA
    c = server.client()
    c.create_vector_bucket(vectorBucketName="shop")
    for index, metric in (("items-l2", "euclidean"), ("items-cos", "cosine")):
        arn = c.create_index(vectorBucketName="shop", indexName=index, dataType="float32", dimension=D,
                             distanceMetric=metric,
                             metadataConfiguration={"nonFilterableMetadataKeys": ["body"]})["indexArn"]
        assert arn == f"arn:aws:s3vectors:us-east-1:000000000000:bucket/shop/index/{index}"
        put_all(c, "shop", index, (xb, keys, meta))

    live = set(range(N))
    for index, metric in (("items-l2", "euclidean"), ("items-cos", "cosine")):
        check_searches(c, "shop", index, metric, live)
        check_get(c, "shop", index, list(range(0, N, 211)))

    # Deleted keys never come back: not by query, get nor list.
    gone = list(range(5, N, 40))
    for index in ("items-l2", "items-cos"):
        for s in range(0, len(gone), BATCH):
            c.delete_vectors(vectorBucketName="shop", indexName=index, keys=[keys[r] for r in gone[s:s + BATCH]])
    live -= set(gone)

    def check_gone(index):
        for r in gone[:30]:
            assert keys[r] not in {h["key"] for h in query(c, "shop", index, xb[r], k=5)}
        check_get(c, "shop", index, gone[:50] + [1, 2, 3], deleted=set(gone))
        listed = list_all(c, "shop", index)
        assert len(listed) == len(set(listed)), "a key listed twice"
        assert set(listed) == {keys[r] for r in live}

    for index in ("items-l2", "items-cos"):
        check_gone(index)

    # Compaction trains IVF (the factory the server chose for the count).
    for index, metric in (("items-l2", "euclidean"), ("items-cos", "cosine")):
        report = server.compact("shop", index)
        assert report["trained"] is True and report["entries"] == len(live)
        check_searches(c, "shop", index, metric, live, exact_distances=False)
        check_gone(index)
        check_get(c, "shop", index, list(range(1, N, 397)), deleted=set(gone))

    # Writes on top of the compacted base, then a restart: nothing is lost.
    extra = [{"key": f"late-{i}", "data": {"float32": xq[i].tolist()}, "metadata": {"category": "late"}}
             for i in range(10)]
    c.put_vectors(vectorBucketName="shop", indexName="items-l2", vectors=extra)
    server.restart()
    c = server.client()
    hits = query(c, "shop", "items-l2", xq[3], k=1, returnDistance=True)
    # Encoded with the trained codec (SQ8): near 0, where neighbours are ~2·d apart.
    assert hits[0]["key"] == "late-3" and hits[0]["distance"] < 1.0
    assert len(list_all(c, "shop", "items-l2")) == len(live) + 10
    check_get(c, "shop", "items-cos", list(range(2, N, 997)), deleted=set(gone))
    check_searches(c, "shop", "items-cos", "cosine", live, exact_distances=False)


def test_query_pages_list_pages_and_tokens(tmp_path):
    server = VectorServer(str(tmp_path / "vectors"), tmp_path)
    try:
        xb, keys, meta, xq = DATA
        c = server.client()
        c.create_vector_bucket(vectorBucketName="b-1")
        c.create_index(vectorBucketName="b-1", indexName="i-1", dataType="float32", dimension=D,
                       distanceMetric="euclidean")
        n = 3000
        put_all(c, "b-1", "i-1", (xb[:n], keys[:n], meta[:n]))
        # topK 250 comes in pages of 100: 100, 100, 50, equal to exact search.
        pages, token = [], None
        while True:
            kw = {"nextToken": token} if token else {}
            out = c.query_vectors(vectorBucketName="b-1", indexName="i-1", topK=250,
                                  queryVector={"float32": xq[0].tolist()}, returnDistance=True, **kw)
            pages.append(out["vectors"])
            token = out.get("nextToken")
            if not token:
                break
        assert [len(p) for p in pages] == [100, 100, 50]
        got = [h["key"] for p in pages for h in p]
        ref, _ = exact(xb[:n], xq[:1], 250, "euclidean")
        assert got == [keys[r] for r in ref[0]]
        # A token is bound to its query and cannot be altered.
        out = c.query_vectors(vectorBucketName="b-1", indexName="i-1", topK=250,
                              queryVector={"float32": xq[0].tolist()})
        with pytest.raises(c.exceptions.ValidationException, match="another request"):
            c.query_vectors(vectorBucketName="b-1", indexName="i-1", topK=250,
                            queryVector={"float32": xq[1].tolist()}, nextToken=out["nextToken"])
        t = out["nextToken"]
        forged = t[:5] + ("A" if t[5] != "A" else "B") + t[6:]
        with pytest.raises(c.exceptions.ValidationException):
            c.query_vectors(vectorBucketName="b-1", indexName="i-1", topK=250,
                            queryVector={"float32": xq[0].tolist()}, nextToken=forged)
        # ListVectors without segments, pages of 1000, with data.
        seen, token = {}, None
        while True:
            kw = {"nextToken": token} if token else {}
            out = c.list_vectors(vectorBucketName="b-1", indexName="i-1", maxResults=1000, returnData=True,
                                 returnMetadata=True, **kw)
            for v in out["vectors"]:
                assert v["key"] not in seen
                seen[v["key"]] = v
            token = out.get("nextToken")
            if not token:
                break
        assert set(seen) == set(keys[:n])
        r = 1234
        np.testing.assert_array_equal(np.array(seen[keys[r]]["data"]["float32"], dtype=np.float32), xb[r])
        assert seen[keys[r]]["metadata"] == meta[r]
    finally:
        server.stop()


def test_every_operation_and_its_errors(tmp_path):
    """Each of the service definition's 22 operations, through boto3, and the
    errors a client meets, as botocore's exception classes."""
    server = VectorServer(str(tmp_path / "vectors"), tmp_path)
    try:
        c = server.client()
        done = set()

        def call(op, **kw):
            done.add(op)
            return getattr(c, botocore.xform_name(op))(**kw)

        E = c.exceptions
        assert call("CreateVectorBucket", vectorBucketName="ops-b", tags={"team": "search"})["vectorBucketArn"]
        with pytest.raises(E.ConflictException):
            c.create_vector_bucket(vectorBucketName="ops-b")
        with pytest.raises(E.ValidationException) as bad_name:
            c.create_vector_bucket(vectorBucketName="Bad_Name")
        assert bad_name.value.response["fieldList"][0]["path"] == "vectorBucketName"
        got = call("GetVectorBucket", vectorBucketName="ops-b")["vectorBucket"]
        assert got["vectorBucketName"] == "ops-b" and got["creationTime"].year >= 2026
        by_arn = c.get_vector_bucket(vectorBucketArn=got["vectorBucketArn"])["vectorBucket"]
        assert by_arn["vectorBucketName"] == "ops-b"
        with pytest.raises(E.NotFoundException):
            c.get_vector_bucket(vectorBucketName="no-such-bucket")
        for i in range(3):
            c.create_vector_bucket(vectorBucketName=f"ops-x{i}")
        first = call("ListVectorBuckets", maxResults=2)
        second = c.list_vector_buckets(maxResults=2, nextToken=first["nextToken"])
        names = [b["vectorBucketName"] for b in first["vectorBuckets"] + second["vectorBuckets"]]
        assert names == ["ops-b", "ops-x0", "ops-x1", "ops-x2"] and "nextToken" not in second
        assert [b["vectorBucketName"] for b in c.list_vector_buckets(prefix="ops-x")["vectorBuckets"]] == \
            ["ops-x0", "ops-x1", "ops-x2"]
        with pytest.raises(E.ValidationException):
            c.list_vector_buckets(maxResults=501)

        policy = json.dumps({"Version": "2012-10-17", "Statement": []})
        call("PutVectorBucketPolicy", vectorBucketName="ops-b", policy=policy)
        assert call("GetVectorBucketPolicy", vectorBucketName="ops-b")["policy"] == policy
        call("DeleteVectorBucketPolicy", vectorBucketName="ops-b")
        with pytest.raises(E.NotFoundException):
            c.get_vector_bucket_policy(vectorBucketName="ops-b")
        call("PutVectorBucketDefaultIndexMode", vectorBucketName="ops-b", defaultIndexMode="ENHANCED")
        assert c.get_vector_bucket(vectorBucketName="ops-b")["vectorBucket"]["defaultIndexMode"] == "ENHANCED"
        c.put_vector_bucket_default_index_mode(vectorBucketName="ops-b", defaultIndexMode="CLASSIC")

        call("CreateIndex", vectorBucketName="ops-b", indexName="idx.a", dataType="float32", dimension=4,
             distanceMetric="euclidean")
        with pytest.raises(E.ConflictException):
            c.create_index(vectorBucketName="ops-b", indexName="idx.a", dataType="float32", dimension=4,
                           distanceMetric="euclidean")
        with pytest.raises(E.NotFoundException):
            c.create_index(vectorBucketName="no-such-bucket", indexName="idx", dataType="float32", dimension=4,
                           distanceMetric="euclidean")
        with pytest.raises(E.ValidationException):
            c.create_index(vectorBucketName="ops-b", indexName="idx-big", dataType="float32", dimension=4097,
                           distanceMetric="euclidean")
        with pytest.raises(E.ValidationException, match="language"):
            c.create_index(vectorBucketName="ops-b", indexName="idx-text", dataType="float32", dimension=4,
                           distanceMetric="euclidean", metadataConfiguration={
                               "textSearchConfigurations": [{"metadataKey": "t", "language": "xx"}]})
        index = call("GetIndex", vectorBucketName="ops-b", indexName="idx.a")["index"]
        assert (index["dimension"], index["distanceMetric"], index["indexMode"]) == (4, "euclidean", "CLASSIC")
        c.create_index(vectorBucketName="ops-b", indexName="idx.b", dataType="float32", dimension=4,
                       distanceMetric="cosine")
        assert [i["indexName"] for i in call("ListIndexes", vectorBucketName="ops-b")["indexes"]] == \
            ["idx.a", "idx.b"]
        call("UpdateIndexMode", vectorBucketName="ops-b", indexName="idx.b", indexMode="ENHANCED")
        assert c.get_index(indexArn=index["indexArn"].replace("idx.a", "idx.b"))["index"]["indexMode"] == \
            "ENHANCED"
        with pytest.raises(E.ValidationException, match="not full-text searchable"):
            call("UpdateMetadataConfiguration", vectorBucketName="ops-b", indexName="idx.a",
                 delete={"textSearchConfigurations": [{"metadataKey": "t"}]})

        arn = index["indexArn"]
        call("TagResource", resourceArn=arn, tags={"a": "1", "b": "2"})
        call("UntagResource", resourceArn=arn, tagKeys=["a"])
        assert call("ListTagsForResource", resourceArn=arn)["tags"] == {"b": "2"}
        assert c.list_tags_for_resource(resourceArn=got["vectorBucketArn"])["tags"] == {"team": "search"}
        with pytest.raises(E.NotFoundException):
            c.list_tags_for_resource(resourceArn=arn.replace("idx.a", "idx-none"))

        vecs = [{"key": f"k{i}", "data": {"float32": [float(i), 1.0, 0.0, 0.0]},
                 "metadata": {"year": 2000 + i, "label": str(i), "tags": ["x", "y"]}} for i in range(20)]
        call("PutVectors", vectorBucketName="ops-b", indexName="idx.a", vectors=vecs)
        with pytest.raises(E.ValidationException, match="dimension 4"):
            c.put_vectors(vectorBucketName="ops-b", indexName="idx.a",
                          vectors=[{"key": "bad", "data": {"float32": [1.0, 2.0]}}])
        with pytest.raises(E.ValidationException):
            c.put_vectors(vectorBucketName="ops-b", indexName="idx.a", vectors=[
                {"key": f"m{i}", "data": {"float32": [0.0] * 4}} for i in range(501)])
        with pytest.raises(E.ValidationException, match="metadata"):
            c.put_vectors(vectorBucketName="ops-b", indexName="idx.a",
                          vectors=[{"key": "bad", "data": {"float32": [0.0] * 4}, "metadata": {"x": None}}])
        with pytest.raises(E.ValidationException, match="zero vector"):
            c.put_vectors(vectorBucketName="ops-b", indexName="idx.b",
                          vectors=[{"key": "z", "data": {"float32": [0.0] * 4}}])
        with pytest.raises(E.NotFoundException):
            c.put_vectors(vectorBucketName="ops-b", indexName="no-index",
                          vectors=[{"key": "k", "data": {"float32": [0.0] * 4}}])
        got_v = call("GetVectors", vectorBucketName="ops-b", indexName="idx.a", keys=["k3", "nope"],
                     returnMetadata=True)["vectors"]
        assert got_v == [{"key": "k3", "metadata": {"year": 2003, "label": "3", "tags": ["x", "y"]}}]
        listed = call("ListVectors", vectorBucketName="ops-b", indexName="idx.a")["vectors"]
        assert sorted(v["key"] for v in listed) == sorted(f"k{i}" for i in range(20))
        with pytest.raises(E.ValidationException):
            c.list_vectors(vectorBucketName="ops-b", indexName="idx.a", segmentCount=4)
        with pytest.raises(E.ValidationException):
            c.list_vectors(vectorBucketName="ops-b", indexName="idx.a", maxResults=1001)

        q = {"float32": [3.0, 1.0, 0.0, 0.0]}
        out = call("QueryVectors", vectorBucketName="ops-b", indexName="idx.a", topK=3, queryVector=q,
                   returnDistance=True)
        assert out["distanceMetric"] == "euclidean"
        assert [(v["key"], v["distance"]) for v in out["vectors"]] == [("k3", 0.0), ("k2", 1.0), ("k4", 1.0)] or \
            [(v["key"], v["distance"]) for v in out["vectors"]] == [("k3", 0.0), ("k4", 1.0), ("k2", 1.0)]
        # Filters as S3 Vectors reads them: a number never equals a string,
        # a missing key passes $ne, and $exists sees arrays.
        def keys_of(flt):
            return sorted(v["key"] for v in c.query_vectors(vectorBucketName="ops-b", indexName="idx.a", topK=30,
                                                             queryVector=q, filter=flt)["vectors"])
        assert keys_of({"year": {"$gte": 2018}}) == ["k18", "k19"]
        assert keys_of({"year": "2018"}) == []
        assert keys_of({"label": {"$in": ["1", "2"]}}) == ["k1", "k2"]
        assert keys_of({"nothing": {"$ne": 5}}) == sorted(f"k{i}" for i in range(20))
        assert keys_of({"$or": [{"label": "1"}, {"year": {"$lt": 2001}}]}) == ["k0", "k1"]
        assert len(keys_of({"tags": {"$exists": True}})) == 20
        with pytest.raises(E.ValidationException, match=r"\$startsWith"):
            keys_of({"label": {"$startsWith": "1"}})
        with pytest.raises(E.ValidationException):
            c.query_vectors(vectorBucketName="ops-b", indexName="idx.a", topK=10_001, queryVector=q)
        with pytest.raises(E.ValidationException, match="dimension"):
            c.query_vectors(vectorBucketName="ops-b", indexName="idx.a", topK=1, queryVector={"float32": [1.0]})
        with pytest.raises(E.ValidationException, match="not full-text searchable"):
            c.query_vectors(vectorBucketName="ops-b", indexName="idx.a", topK=1,
                            queryTexts=[{"text": "red shoes", "metadataKey": "label"}])
        with pytest.raises(E.NotFoundException):
            c.query_vectors(vectorBucketName="ops-b", indexName="missing", topK=1, queryVector=q)
        with pytest.raises(E.ValidationException, match="CLASSIC"):
            c.query_vectors(vectorBucketName="ops-b", indexName="idx.b", topK=1, queryVector=q, queryMode="CLASSIC")

        call("DeleteVectors", vectorBucketName="ops-b", indexName="idx.a", keys=["k3", "never-put"])
        assert "k3" not in keys_of({"year": {"$gte": 2000}})
        with pytest.raises(E.ConflictException):
            c.delete_vector_bucket(vectorBucketName="ops-b")
        call("DeleteIndex", vectorBucketName="ops-b", indexName="idx.a")
        c.delete_index(indexArn=arn.replace("idx.a", "idx.b"))
        with pytest.raises(E.NotFoundException):
            c.get_index(vectorBucketName="ops-b", indexName="idx.a")
        call("DeleteVectorBucket", vectorBucketName="ops-b")
        with pytest.raises(E.NotFoundException):
            c.delete_vector_bucket(vectorBucketName="ops-b")
        # An index of a deleted name starts empty.
        c.create_vector_bucket(vectorBucketName="ops-b")
        c.create_index(vectorBucketName="ops-b", indexName="idx.a", dataType="float32", dimension=4,
                       distanceMetric="euclidean")
        assert c.list_vectors(vectorBucketName="ops-b", indexName="idx.a")["vectors"] == []

        assert done == set(service_model()["operations"]), set(service_model()["operations"]) - done
    finally:
        server.stop()


def test_signatures_scopes_and_no_auth(tmp_path):
    root = str(tmp_path / "vectors")
    server = VectorServer(root, tmp_path)
    try:
        server.client().create_vector_bucket(vectorBucketName="auth-b")
        for client in (server.client(secret="wrong-secret"), server.client(key_id="AKIAUNKNOWN"),
                       server.client(unsigned=True)):
            with pytest.raises(client.exceptions.AccessDeniedException):
                client.list_vector_buckets()
        search = server.client(SEARCH_KEY_ID, SEARCH_SECRET)
        assert [b["vectorBucketName"] for b in search.list_vector_buckets()["vectorBuckets"]] == ["auth-b"]
        with pytest.raises(search.exceptions.AccessDeniedException, match="scope"):
            search.create_vector_bucket(vectorBucketName="auth-c")
        # The secret is in no log line.
        server.stop()
        assert SECRET not in server.proc.stderr.read().decode()
    finally:
        if server.proc.poll() is None:
            server.stop()
    open_server = VectorServer(root, tmp_path, auth=False)
    try:
        unsigned = open_server.client(unsigned=True)
        assert [b["vectorBucketName"] for b in unsigned.list_vector_buckets()["vectorBuckets"]] == ["auth-b"]
    finally:
        open_server.stop()


def _check_shape(model, shape_name, value, path="$"):
    """`value` has exactly the members of `shape_name` (recursively), the
    required ones among them, of the modelled types."""
    shape = model["shapes"][shape_name]
    kind = shape["type"]
    if shape.get("document"):
        assert value is not None, path  # any JSON document (metadata)
    elif kind == "structure":
        assert isinstance(value, dict), path
        members = shape["members"]
        assert set(value) <= set(members), (path, set(value) - set(members))
        assert set(shape.get("required", [])) <= set(value), (path, shape.get("required"))
        for name, v in value.items():
            _check_shape(model, members[name]["shape"], v, f"{path}.{name}")
    elif kind == "list":
        assert isinstance(value, list), path
        for i, v in enumerate(value):
            _check_shape(model, shape["member"]["shape"], v, f"{path}[{i}]")
    elif kind == "map":
        assert isinstance(value, dict), path
        for k, v in value.items():
            _check_shape(model, shape["value"]["shape"], v, f"{path}.{k}")
    elif kind == "string":
        assert isinstance(value, str), path
        if "enum" in shape:
            assert value in shape["enum"], (path, value)
        assert shape.get("min", 0) <= len(value) <= shape.get("max", 1 << 30), path
    elif kind in ("integer", "long"):
        assert isinstance(value, int), path
    elif kind in ("float", "double", "timestamp"):
        assert isinstance(value, (int, float)), path
    elif kind == "boolean":
        assert isinstance(value, bool), path


def test_raw_responses_follow_the_service_definition(tmp_path):
    """The bytes on the wire, not botocore's reading of them: exact bodies
    where they are fixed, and every member of the modelled shape."""
    server = VectorServer(str(tmp_path / "vectors"), tmp_path, auth=False)
    model = service_model()
    try:
        def raw(op, body):
            req = urllib.request.Request(f"{server.url}/{op}", data=json.dumps(body).encode(), method="POST",
                                         headers={"Content-Type": "application/json"})
            try:
                with urllib.request.urlopen(req) as r:
                    return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
            except urllib.error.HTTPError as e:
                return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()

        status, _, body = raw("CreateVectorBucket", {"vectorBucketName": "raw-b"})
        assert (status, body) == (200, b'{"vectorBucketArn":"arn:aws:s3vectors:us-east-1:000000000000:bucket/raw-b"}')
        status, headers, body = raw("CreateVectorBucket", {"vectorBucketName": "raw-b"})
        assert status == 409 and headers["x-amzn-errortype"] == "ConflictException"
        assert set(json.loads(body)) == {"message"}
        status, headers, body = raw("CreateIndex", {"vectorBucketName": "raw-b", "indexName": "raw-i",
                                                    "dataType": "float32", "dimension": 0,
                                                    "distanceMetric": "euclidean"})
        assert status == 400 and headers["x-amzn-errortype"] == "ValidationException"
        assert json.loads(body)["fieldList"] == [
            {"path": "dimension", "message": "must be between 1 and 4096, inclusive; got 0"}]
        _check_shape(model, "ValidationException", json.loads(body))
        raw("CreateIndex", {"vectorBucketName": "raw-b", "indexName": "raw-i", "dataType": "float32",
                            "dimension": 2, "distanceMetric": "cosine"})
        assert raw("PutVectors", {"vectorBucketName": "raw-b", "indexName": "raw-i", "vectors": [
            {"key": "a", "data": {"float32": [1.0, 0.0]}, "metadata": {"m": 1}},
            {"key": "b", "data": {"float32": [0.0, 2.0]}}]})[2] == b"{}"
        for op, body, shape in [
            ("GetVectorBucket", {"vectorBucketName": "raw-b"}, "GetVectorBucketOutput"),
            ("ListVectorBuckets", {}, "ListVectorBucketsOutput"),
            ("GetIndex", {"vectorBucketName": "raw-b", "indexName": "raw-i"}, "GetIndexOutput"),
            ("ListIndexes", {"vectorBucketName": "raw-b"}, "ListIndexesOutput"),
            ("GetVectors", {"vectorBucketName": "raw-b", "indexName": "raw-i", "keys": ["a", "b"],
                            "returnData": True, "returnMetadata": True}, "GetVectorsOutput"),
            ("ListVectors", {"vectorBucketName": "raw-b", "indexName": "raw-i", "returnData": True,
                             "returnMetadata": True}, "ListVectorsOutput"),
            ("QueryVectors", {"vectorBucketName": "raw-b", "indexName": "raw-i", "topK": 2,
                              "queryVector": {"float32": [1.0, 1.0]}, "returnDistance": True,
                              "returnMetadata": True}, "QueryVectorsOutput"),
        ]:
            status, headers, text = raw(op, body)
            assert status == 200 and headers["content-type"] == "application/json", (op, text)
            _check_shape(model, shape, json.loads(text))
        status, _, text = raw("QueryVectors", {"vectorBucketName": "raw-b", "indexName": "raw-i", "topK": 2,
                                               "queryVector": {"float32": [1.0, 1.0]}, "returnDistance": True})
        out = json.loads(text)
        # Cosine distance is 1 - cosine similarity: both at 45 degrees.
        assert out["distanceMetric"] == "cosine"
        for v in out["vectors"]:
            assert abs(v["distance"] - (1 - np.sqrt(0.5))) < 1e-6
    finally:
        server.stop()


def test_the_readme_example_runs_as_written(tmp_path):
    """The README's boto3 block, against `--vector-root DIR --no-auth`; only
    the port changes."""
    import re

    from conftest import REPO

    (block,) = [b for b in re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
                if 'boto3.client("s3vectors"' in b]
    server = VectorServer(str(tmp_path / "vectors"), tmp_path, auth=False)
    try:
        code = block.replace("http://127.0.0.1:8080", server.url)
        assert code != block, "the README's endpoint changed: update this test's substitution"
        scope = {}
        exec(compile(code, "README.md", "exec"), scope)
        (hit,) = scope["hits"]["vectors"]
        q = np.array([1.0, 0.0, 0.0, 0.1])
        v = np.array([0.9, 0.1, 0.0, 0.2])
        assert hit["key"] == "red-shoe"
        assert abs(hit["distance"] - (1 - q @ v / np.linalg.norm(q) / np.linalg.norm(v))) < 1e-6
        assert hit["metadata"] == {"color": "red", "price": 59, "blurb": "a red running shoe"}
    finally:
        server.stop()


def test_langchain_s3_vectors_store_works_unmodified(tmp_path):
    """langchain-aws's `AmazonS3Vectors` vector store (it creates its index,
    puts documents with metadata, queries with a filter, gets and deletes
    by id) against the server, checked against exact search over the same
    embeddings."""
    from langchain_aws.vectorstores import AmazonS3Vectors
    from langchain_core.embeddings import DeterministicFakeEmbedding

    server = VectorServer(str(tmp_path / "vectors"), tmp_path)
    try:
        server.client().create_vector_bucket(vectorBucketName="lc-bucket")
        emb = DeterministicFakeEmbedding(size=32)
        store = AmazonS3Vectors(vector_bucket_name="lc-bucket", index_name="lc-docs", embedding=emb,
                                distance_metric="cosine", client=server.client())
        texts = [f"document number {i} about {CATEGORIES[i % 5]}" for i in range(300)]
        metas = [{"category": CATEGORIES[i % 5], "n": i} for i in range(300)]
        ids = store.add_texts(texts, metadatas=metas, ids=[f"id-{i}" for i in range(300)])
        assert ids == [f"id-{i}" for i in range(300)]

        vecs = np.array(emb.embed_documents(texts), dtype=np.float32)
        query = "document number 17 about gold"
        q = np.array(emb.embed_query(query), dtype=np.float32)
        ref, _ = exact(vecs, q[None, :], 5, "cosine")
        docs = store.similarity_search(query, k=5)
        assert [d.id for d in docs] == [f"id-{r}" for r in ref[0]]
        assert docs[0].page_content == texts[ref[0][0]] and docs[0].metadata == metas[ref[0][0]]

        mask = np.array([m["category"] == "red" for m in metas])
        fref, _ = exact(vecs, q[None, :], 5, "cosine", mask)
        filtered = store.similarity_search(query, k=5, filter={"category": "red"})
        assert [d.id for d in filtered] == [f"id-{r}" for r in fref[0]]

        got = store.get_by_ids(["id-3", "id-4"])
        assert [d.page_content for d in got] == [texts[3], texts[4]]
        store.delete(ids=[f"id-{ref[0][0]}"])
        assert f"id-{ref[0][0]}" not in [d.id for d in store.similarity_search(query, k=5)]
    finally:
        server.stop()
