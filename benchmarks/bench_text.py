"""Full-text (BM25) and hybrid (BM25 + vector, Reciprocal Rank Fusion)
search: ivflake beside LanceDB's full-text search, on the same generated
documents and the same store, an S3 server (s3rver) behind
`latency_proxy.py`'s 20 ms per request. A bench, not a test.

Usage (from the repo root; a release build of the ivflake package and
lancedb in the venv; `machine.ivflake_module_debug` in the JSON says
whether the module was a dev-profile build):

    OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_text \\
        --n 1000000 --report docs/data/bench_text.json
    .venv/bin/python -m benchmarks.plot_text docs/data/bench_text.json --out docs/img/text.png

`--n 20000 --cold-queries 10` checks the whole script in a few minutes.

Data (fixed seeds, nothing downloaded): N documents, ids 0..N-1, each 10-30
words drawn from a Zipf-Mandelbrot law (exponent 1, offset 2.7) over a
vocabulary of 50,000 pronounceable pseudo-words (2-4 syllables), a 64-d
float32 vector from common.py's clustered generator, and an integer `cat`
(0-9). 200 queries of 1-3 words: each word common (rank < 100, 30%), middle
(100-5,000, 40%) or rare (a word of rank >= 5,000 that occurs in the
documents, 30%); hybrid queries add a vector from the same clusters.

Both indexes are built in a local directory (timed; their bytes counted),
then copied into s3rver (untimed) and read through the proxy:
  ivflake  `ivflake.create(factory="IVF<nlist>,SQ8", text_fields={"body": "en"})`,
           `upsert` in batches of 100,000 with the body and cat attributes,
           `compact()` (trains the quantizer and SQ8, writes the base and the
           text bundle).
  LanceDB  one table (id, body, cat, vector), `create_fts_index("body")`
           (native, not tantivy; English stemming, no stop words, as
           ivflake's "en"), `create_index(IVF_SQ, num_partitions=nlist)`.
Queries, k 10, nprobe 16, one at a time, wall time of the Python call:
  full-text  ivflake `query(text={"body": q})`; LanceDB
             `search(q, query_type="fts")`.
  hybrid     ivflake `query(xq, text=...)` (RRF of the vector top-k and the
             BM25 top-k); LanceDB `search(query_type="hybrid").vector(xq)
             .text(q)` with its RRFReranker.
Warm: one open handle per system (ivflake with a staleness of an hour, so
no refresh LIST; LanceDB never checks for new versions by default), every
query run once untimed, then timed, both systems interleaved query by query
(the first alternating). Cold: per query a fresh handle opened outside the
timer (ivflake `open_mutable`: the commit point, the base's header and,
beside them, the text bundle's tail; LanceDB a new connection with a new
Session and `open_table`), then the timed query: ivflake's reads postings
(and, for hybrid, the probed lists); LanceDB's loads its FTS index's
metadata, then postings. Since the two split the work between open and
query differently, each cold row also gives open + query, per query.
Interleaved query by query. "Cold, text metadata loaded": the same, after
an untimed full-text query of a word no document has, so only postings
come from the store. The proxy counts each system's requests per query;
ivflake's own `last_stats` gives its GETs, the vector search's and the
text's.
LanceDB returns row ids (`_rowid`), as ivflake returns ids: selecting its
`id` column would read the data file, one more round trip a query.

The store is s3rver 3.7.1, installed by this script into --s3rver-dir
(not bench_scale.py's copy) and patched to answer suffix ranges
(`Range: bytes=-N`, which object_store sends for a Parquet footer) with
the last N bytes as S3 does; unpatched it answers bytes 0-N.

Servers (s3rver, the proxy) bind 127.0.0.1 and are stopped on exit; every
loop is bounded by its count and by --max-minutes.
"""
import argparse
import gc
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
os.environ.setdefault("LANCEDB_LOG", "error")

import numpy as np  # noqa: E402

from benchmarks import latency_proxy  # noqa: E402
from benchmarks.bench_scale import s3_client, start_proxy  # noqa: E402  (the same proxy and client as the 10M run)
from benchmarks.common import Generator, free_port, log, stop_all, summary, wait_port  # noqa: E402

BUCKET = "bench"
S3_KEY = "S3RVER"
S3RVER_VERSION = "3.7.1"
VOCAB = 50_000
ZIPF_S, ZIPF_Q = 1.0, 2.7
DOC_WORDS = (10, 30)
CATS = 10
CHUNK = 100_000  # documents generated, and upserted, per step
# A word no document has (the syllables have no "q"): a full-text query of
# it loads a text index's metadata and reads no postings.
ABSENT_WORD = "qqxqzz"
TABLE = "docs"


# ---------------------------------------------------------------- data

ONSETS = ["b", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "t", "v", "w", "z",
          "br", "ch", "dr", "gl", "kr", "pl", "sh", "st", "tr"]
VOWELS = ["a", "e", "i", "o", "u", "ai", "ea", "ou"]
CODAS = ["", "", "", "", "l", "m", "n", "r", "k", "t"]


def vocabulary(seed):
    """VOCAB distinct pseudo-words of 2-4 syllables; rank = position."""
    rng = np.random.default_rng([seed, 1])
    words, seen = [], set()
    for _ in range(100):  # bounded: each round adds tens of thousands
        syl = rng.choice([2, 3, 4], size=40_000, p=[0.45, 0.4, 0.15])
        parts = [rng.integers(0, len(x), size=(40_000, 4)) for x in (ONSETS, VOWELS, CODAS)]
        for i in range(40_000):
            w = "".join(ONSETS[parts[0][i, j]] + VOWELS[parts[1][i, j]] + CODAS[parts[2][i, j]]
                        for j in range(syl[i]))
            if w not in seen:
                seen.add(w)
                words.append(w)
                if len(words) == VOCAB:
                    return words
    raise RuntimeError("vocabulary: too few distinct words")


def zipf_p():
    p = 1.0 / (np.arange(VOCAB) + 1 + ZIPF_Q) ** ZIPF_S
    return p / p.sum()


def documents(n, seed):
    """(bodies, cats, counts of each word over all documents); chunk by
    chunk, each reproducible from the seed alone."""
    words = np.array(vocabulary(seed), dtype=object)
    cdf = np.cumsum(zipf_p())
    bodies, cats = [], []
    counts = np.zeros(VOCAB, dtype=np.int64)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        rng = np.random.default_rng([seed, 2, start])
        lengths = rng.integers(DOC_WORDS[0], DOC_WORDS[1] + 1, m)
        tokens = np.minimum(np.searchsorted(cdf, rng.random(int(lengths.sum()))), VOCAB - 1)
        counts += np.bincount(tokens, minlength=VOCAB)
        w = words[tokens].tolist()
        ends = np.cumsum(lengths)
        begins = ends - lengths
        bodies.extend(" ".join(w[b:e]) for b, e in zip(begins.tolist(), ends.tolist()))
        cats.append(rng.integers(0, CATS, m))
    return bodies, np.concatenate(cats).astype(np.int64), counts, words


def text_queries(nq, seed, counts, words):
    rng = np.random.default_rng([seed, 3])
    present = np.flatnonzero(counts > 0)
    rare = present[present >= 5000]
    mid = present[(present >= 100) & (present < 5000)]
    out, kinds = [], []
    for _ in range(nq):
        q, kind = [], []
        for _ in range(int(rng.integers(1, 4))):
            c = rng.choice(3, p=[0.3, 0.4, 0.3])
            pool = present[present < 100] if c == 0 else mid if c == 1 else rare
            if len(pool) == 0:
                pool = present
            q.append(words[int(rng.choice(pool))])
            kind.append(["common", "middle", "rare"][c])
        out.append(" ".join(q))
        kinds.append(kind)
    return out, kinds


def vectors(n, d, seed):
    gen = Generator(d, seed)
    return np.concatenate([gen.chunk(0, s, min(CHUNK, n - s)) for s in range(0, n, CHUNK)]), gen


def nlist_for(n):
    """1024 lists, or the most a compaction trains at 39 vectors a list."""
    nlist = 1024
    while nlist > 16 and nlist * 39 > n:
        nlist //= 2
    return nlist


def dir_bytes(path):
    total, files = 0, 0
    for root, _, names in os.walk(path):
        for name in names:
            total += os.path.getsize(os.path.join(root, name))
            files += 1
    return total, files


# ---------------------------------------------------------------- builds


def build_ivflake(a, path, xb, bodies, cats):
    import ivflake

    if os.path.exists(path):
        shutil.rmtree(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    out = {}
    t0 = time.perf_counter()
    idx = ivflake.create(path, d=a.d, metric="l2", factory=a.factory, text_fields={"body": "en"},
                         staleness=3600.0)
    ids = np.arange(a.n, dtype=np.int64)
    for s in range(0, a.n, CHUNK):
        e = min(a.n, s + CHUNK)
        idx.upsert(xb[s:e], ids[s:e], attributes={"body": bodies[s:e], "cat": cats[s:e].tolist()})
    out["ingest_s"] = time.perf_counter() - t0
    log(f"ivflake: {a.n} upserted in {out['ingest_s']:.1f} s ({a.n / out['ingest_s']:.0f} docs/s)")
    t = time.perf_counter()
    out["compact_report"] = idx.compact()
    out["compact_s"] = time.perf_counter() - t
    out["build_s"] = time.perf_counter() - t0
    out["nlist"] = idx.nlist
    out["unindexed_after"] = idx.unindexed
    # Compaction leaves the folded log and the empty first base for readers
    # still on the old version; gc (untimed, no retention) deletes them, so
    # what is counted is what the current version names.
    out["bytes_before_gc"], out["files_before_gc"] = dir_bytes(path)
    t = time.perf_counter()
    out["gc_report"] = idx.gc(retention_secs=0.0)
    out["gc_s"] = time.perf_counter() - t
    out["bytes_total"], out["files"] = dir_bytes(path)
    # What the current version reads: the base file and its siblings (the
    # text bundle, attribute and kept-rows segments), not the write log.
    base = idx.base_uri
    base_dir = os.path.dirname(base.removeprefix("file://"))
    out["bytes_by_dir"] = {}
    for name in sorted(os.listdir(path)):
        sub = os.path.join(path, name)
        out["bytes_by_dir"][name] = dir_bytes(sub)[0] if os.path.isdir(sub) else os.path.getsize(sub)
    out["base_files"] = {}
    if os.path.isdir(base_dir):
        for name in sorted(os.listdir(base_dir)):
            out["base_files"][name] = os.path.getsize(os.path.join(base_dir, name))
    out["base_uri"] = base
    # The folded log's records stay until gc finds them older than twice a
    # writer's view age, whatever the retention: not part of the index.
    out["bytes_current"] = out["bytes_total"] - out["bytes_by_dir"].get("_log", 0)
    log(f"ivflake: compacted in {out['compact_s']:.1f} s; build {out['build_s']:.1f} s, "
        f"{out['bytes_current'] / 1e6:.1f} MB without the folded log, {out['bytes_total'] / 1e6:.1f} MB in {out['files']} files after gc ({out['bytes_before_gc'] / 1e6:.1f} MB "
        f"before); by dir {out['bytes_by_dir']}; base files {out['base_files']}")
    del idx
    gc.collect()
    return out


def lance_fts_args():
    """Analysis as ivflake's "en": simple tokenizer, lower case, English
    Snowball stemmer, no stop words, no folding, terms up to 40 bytes."""
    return dict(use_tantivy=False, base_tokenizer="simple", language="English", lower_case=True, stem=True,
                remove_stop_words=False, ascii_folding=False, max_token_length=40, with_position=False)


def build_lance(a, path, xb, bodies, cats):
    import lancedb
    import pyarrow as pa

    if os.path.exists(path):
        shutil.rmtree(path)
    os.makedirs(path, exist_ok=True)
    out = {}
    schema = pa.schema([("id", pa.int64()), ("body", pa.string()), ("cat", pa.int64()),
                        ("vector", pa.list_(pa.float32(), a.d))])

    def batches():
        for s in range(0, a.n, CHUNK):
            e = min(a.n, s + CHUNK)
            yield pa.RecordBatch.from_arrays(
                [pa.array(np.arange(s, e, dtype=np.int64)), pa.array(bodies[s:e], pa.string()),
                 pa.array(cats[s:e]),
                 pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(xb[s:e]).reshape(-1)), a.d)],
                schema=schema)

    t0 = time.perf_counter()
    db = lancedb.connect(path)
    tbl = db.create_table(TABLE, data=pa.RecordBatchReader.from_batches(schema, batches()), schema=schema,
                          mode="overwrite")
    out["write_s"] = time.perf_counter() - t0
    t = time.perf_counter()
    tbl.create_fts_index("body", **lance_fts_args())
    out["fts_index_s"] = time.perf_counter() - t
    t = time.perf_counter()
    from lancedb.index import IvfSq

    tbl.create_index("vector", config=IvfSq(distance_type="l2", num_partitions=a.nlist))
    out["vector_index_s"] = time.perf_counter() - t
    out["build_s"] = time.perf_counter() - t0
    out["bytes_total"], out["files"] = dir_bytes(path)
    tdir = os.path.join(path, f"{TABLE}.lance")
    out["bytes_by_dir"] = {}
    for name in sorted(os.listdir(tdir)):
        sub = os.path.join(tdir, name)
        out["bytes_by_dir"][name] = dir_bytes(sub)[0] if os.path.isdir(sub) else os.path.getsize(sub)
    out["indices"] = [str(i) for i in tbl.list_indices()]
    out["bytes_by_index"] = {}
    for i in tbl.list_indices():
        uuid = getattr(i, "index_uuid", None)
        if uuid and os.path.isdir(os.path.join(tdir, "_indices", uuid)):
            out["bytes_by_index"][i.name] = dir_bytes(os.path.join(tdir, "_indices", uuid))[0]
    # Row ids stand for ids in the query rows: check they are the same.
    probe = tbl.search(bodies[0].split()[-1], query_type="fts", fts_columns="body").select(["id"]).with_row_id(True)
    probe = probe.limit(100).to_arrow()
    if probe.column("id").to_pylist() != probe.column("_rowid").to_pylist():
        raise RuntimeError("LanceDB row ids are not the ids: the query rows would need the id column")
    log(f"LanceDB: write {out['write_s']:.1f} s, FTS index {out['fts_index_s']:.1f} s, IVF_SQ "
        f"{out['vector_index_s']:.1f} s; {out['bytes_total'] / 1e6:.1f} MB in {out['files']} files; "
        f"by dir {out['bytes_by_dir']}, by index {out['bytes_by_index']}")
    del tbl, db
    gc.collect()
    return out


# ---------------------------------------------------------------- store


# s3rver 3.7.1 reads a suffix range, `Range: bytes=-N` (the last N bytes,
# which object_store asks for a Parquet footer), as `bytes=0-N`. This
# bench's own copy of it is patched to answer the last N bytes, as S3 does.
SUFFIX_PATCH_MARK = "/* ivflake bench_text: suffix ranges */"
SUFFIX_PATCHES = (
    ("lib/controllers/object.js",
     "    options.start = Number(start);\n    if (end) options.end = Number(end);\n",
     "    if (start === '' && end) {\n      options.suffix = Number(end); " + SUFFIX_PATCH_MARK + "\n    } else {\n"
     "      options.start = Number(start);\n      if (end) options.end = Number(end);\n    }\n"),
    ("lib/stores/filesystem.js",
     "      const lastByte = Math.max(0, Number(metadata['content-length']) - 1);\n",
     "      const lastByte = Math.max(0, Number(metadata['content-length']) - 1);\n"
     "      if (options && options.suffix !== undefined) { " + SUFFIX_PATCH_MARK + "\n"
     "        options.start = Math.max(0, lastByte + 1 - options.suffix);\n        delete options.end;\n      }\n"),
)


def install_s3rver(prefix):
    binary = os.path.join(prefix, "node_modules", ".bin", "s3rver")
    if not os.path.exists(binary):
        log(f"installing s3rver {S3RVER_VERSION} into {prefix}")
        os.makedirs(prefix, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", prefix, f"s3rver@{S3RVER_VERSION}"], check=True,
                       stdout=subprocess.DEVNULL, timeout=600)
    pkg = os.path.join(prefix, "node_modules", "s3rver")
    for rel, old, new in SUFFIX_PATCHES:
        path = os.path.join(pkg, rel)
        text = open(path).read()
        if SUFFIX_PATCH_MARK in text:
            continue
        if text.count(old) != 1:
            raise RuntimeError(f"cannot patch suffix ranges into {path}: the code it replaces is not there once")
        open(path, "w").write(text.replace(old, new))
    return binary


def start_s3rver(a, work, procs):
    binary = install_s3rver(a.s3rver_dir)
    port = free_port()
    data = os.path.join(work, "s3rver-data")
    shutil.rmtree(data, ignore_errors=True)
    os.makedirs(data)
    proc = subprocess.Popen([binary, "-d", data, "-a", "127.0.0.1", "-p", str(port), "--silent",
                             "--configure-bucket", BUCKET], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    procs.append(proc)
    wait_port(port, proc)
    return port


def upload_dir(s3, local, prefix):
    from boto3.s3.transfer import TransferConfig

    cfg = TransferConfig(multipart_threshold=64 << 20, multipart_chunksize=64 << 20, max_concurrency=4)
    n = 0
    for root, _, names in os.walk(local):
        for name in sorted(names):
            path = os.path.join(root, name)
            key = prefix + "/" + os.path.relpath(path, local).replace(os.sep, "/")
            s3.upload_file(path, BUCKET, key, Config=cfg)
            n += 1
    return n


def round_trips(port, s3, n=50):
    """One 4 KiB GET through the proxy on a kept-alive connection: the
    store's round trip, the reference for cold rows."""
    import http.client

    body = bytes(range(256)) * 16
    s3.put_object(Bucket=BUCKET, Key="rtt", Body=body)
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", f"/{BUCKET}/rtt", headers={"Range": "bytes=-100"})
    r = conn.getresponse()
    if r.status != 206 or r.read() != body[-100:]:
        raise RuntimeError("the store does not answer suffix ranges (bytes=-N) as S3 does")
    ms = []
    for i in range(n + 1):
        t = time.perf_counter()
        conn.request("GET", f"/{BUCKET}/rtt", headers={"Range": "bytes=0-4095"})
        r = conn.getresponse()
        r.read()
        if i:
            ms.append((time.perf_counter() - t) * 1000)
    conn.close()
    return summary(ms)


def lance_opts(port):
    return {"aws_endpoint": f"http://127.0.0.1:{port}", "allow_http": "true", "aws_access_key_id": S3_KEY,
            "aws_secret_access_key": S3_KEY, "aws_region": "us-east-1"}


def set_ivflake_env(port):
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ALLOW_HTTP="true",
                      AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_KEY, AWS_REGION="us-east-1",
                      AWS_DEFAULT_REGION="us-east-1")


# ---------------------------------------------------------------- the two systems


class Ivflake:
    name = "ivflake"

    def __init__(self, uri, k, nprobe):
        self.uri, self.k, self.nprobe = uri, k, nprobe

    def open(self):
        import ivflake

        return ivflake.open_mutable(self.uri, staleness=3600.0)

    def fts(self, h, text):
        hits = h.query(None, k=self.k, text={"body": text}, nprobe=self.nprobe)
        self.last_scores = [x["bm25"].get("body") for x in hits]
        return [int(x["id"]) for x in hits]

    def hybrid(self, h, xq, text):
        hits = h.query(xq, k=self.k, text={"body": text}, nprobe=self.nprobe)
        return [int(x["id"]) for x in hits]

    def stats(self, h):
        s = h.last_stats
        return dict(s) if s else {}


class Lance:
    name = "lancedb"

    def __init__(self, uri, opts, k, nprobe):
        self.uri, self.opts, self.k, self.nprobe = uri, opts, k, nprobe
        from lancedb.rerankers import RRFReranker

        self.reranker = RRFReranker()

    def open(self):
        import lancedb

        db = lancedb.connect(self.uri, storage_options=self.opts, session=lancedb.Session())
        return db.open_table(TABLE)

    # Row ids only, as ivflake returns ids: selecting the `id` column would
    # read the data file (one more round trip a query, warm or cold). The
    # table is one fragment written in id order, so a row id is the id
    # (checked at build).
    def fts(self, h, text):
        t = (h.search(text, query_type="fts", fts_columns="body").select(["_rowid"]).with_row_id(True)
             .limit(self.k).to_arrow())
        self.last_scores = t.column("_score").to_pylist() if "_score" in t.schema.names else None
        return t.column("_rowid").to_pylist()

    def hybrid(self, h, xq, text):
        t = (h.search(query_type="hybrid", fts_columns="body").vector(xq).text(text).nprobes(self.nprobe)
             .select(["_rowid"]).with_row_id(True).limit(self.k).rerank(self.reranker).to_arrow())
        return t.column("_rowid").to_pylist()

    def stats(self, h):
        return {}


def timed(fn):
    t = time.perf_counter()
    r = fn()
    return r, (time.perf_counter() - t) * 1000


def overlap(a_ids, b_ids, k):
    return float(np.mean([len(set(x) & set(y)) / max(1, min(k, max(len(x), len(y))))
                          for x, y in zip(a_ids, b_ids)]))


def score_agreement(a_scores, b_scores):
    """Per query, the largest relative difference between the two systems'
    BM25 scores rank by rank (the same scores with other ids are ties
    broken differently), and the share of queries within 1e-3."""
    diffs = []
    for x, y in zip(a_scores, b_scores):
        if x is None or y is None or len(x) != len(y):
            diffs.append(float("inf"))
            continue
        diffs.append(max([abs(u - v) / max(abs(u), abs(v), 1e-9) for u, v in zip(x, y)] or [0.0]))
    return {"max_rel_diff_p50": float(np.median(diffs)), "max_rel_diff_max": float(max(diffs)),
            "share_within_1e-3": float(np.mean([d <= 1e-3 for d in diffs]))}


def keep_stats(s):
    """The per-query fields of ivflake's last_stats worth keeping."""
    keys = ("gets", "bytes_fetched", "lists_probed", "lists_from_store", "lists_from_memory", "total_ms",
            "compute_jobs")
    out = {k: s[k] for k in keys if k in s}
    if isinstance(s.get("cost"), dict):
        out["cost"] = s["cost"]
    return out


def run_warm(systems, xq, texts, control, deadline):
    """Both kinds, every query once untimed, then timed, interleaved."""
    handles = {s.name: s.open() for s in systems}
    rows = {s.name: {"fts": {"ms": [], "ids": [], "scores": []}, "hybrid": {"ms": [], "ids": []}} for s in systems}
    gets = {s.name: {"fts": 0, "hybrid": 0} for s in systems}
    for s in systems:
        for i in range(len(texts)):
            s.fts(handles[s.name], texts[i])
            s.hybrid(handles[s.name], xq[i], texts[i])
    requests = {s.name: {"fts": 0, "hybrid": 0} for s in systems}
    for i in range(len(texts)):
        if time.time() > deadline:
            log(f"warm: time budget spent after {i} queries")
            break
        order = systems if i % 2 == 0 else systems[::-1]
        for kind in ("fts", "hybrid"):
            for s in order:
                h = handles[s.name]
                latency_proxy.query(control, "reset")
                if kind == "fts":
                    ids, ms = timed(lambda: s.fts(h, texts[i]))
                else:
                    ids, ms = timed(lambda: s.hybrid(h, xq[i], texts[i]))
                requests[s.name][kind] += latency_proxy.query(control, "reset")["requests"]
                rows[s.name][kind]["ms"].append(ms)
                rows[s.name][kind]["ids"].append(ids)
                if kind == "fts":
                    rows[s.name][kind]["scores"].append(s.last_scores)
                st = s.stats(h)
                gets[s.name][kind] += int(st.get("gets", 0))
    out = {}
    for s in systems:
        out[s.name] = {}
        for kind in ("fts", "hybrid"):
            r = rows[s.name][kind]
            n = len(r["ms"])
            out[s.name][kind] = {**summary(r["ms"]), "latency_ms": r["ms"], "ids": r["ids"],
                                 "store_requests_per_query": requests[s.name][kind] / max(1, n)}
            if "scores" in r:
                out[s.name][kind]["scores"] = r["scores"]
            if s.name == "ivflake":
                out[s.name][kind]["gets_total"] = gets[s.name][kind]
    del handles
    gc.collect()
    return out


def run_cold(systems, xq, texts, control, nq, deadline, variant):
    """Per query and system, a fresh handle opened outside the timer
    (variant "meta": then an untimed full-text query of an absent word),
    then the timed query; interleaved query by query."""
    kinds = ("fts", "hybrid") if variant == "open" else ("fts",)
    rows = {s.name: {k: {"ms": [], "ids": [], "requests": [], "bytes_down": [], "stats": [], "open_ms": [],
                         "open_requests": []}
                     for k in kinds} for s in systems}
    done = 0
    for i in range(nq):
        if time.time() > deadline:
            log(f"cold ({variant}): time budget spent after {i} queries")
            break
        order = systems if i % 2 == 0 else systems[::-1]
        for kind in kinds:
            for s in order:
                latency_proxy.query(control, "reset")
                h, open_ms = timed(s.open)
                open_requests = latency_proxy.query(control, "reset")["requests"]
                if variant == "meta":
                    s.fts(h, ABSENT_WORD)
                latency_proxy.query(control, "reset")
                if kind == "fts":
                    ids, ms = timed(lambda: s.fts(h, texts[i]))
                else:
                    ids, ms = timed(lambda: s.hybrid(h, xq[i], texts[i]))
                px = latency_proxy.query(control, "reset")
                r = rows[s.name][kind]
                r["ms"].append(ms)
                r["ids"].append(ids)
                r["open_ms"].append(open_ms)
                r["open_requests"].append(open_requests)
                r["requests"].append(px["requests"])
                r["bytes_down"].append(px["bytes_down"])
                r["stats"].append(keep_stats(s.stats(h)))
                del h
        done = i + 1
    out = {"queries": done}
    for s in systems:
        out[s.name] = {}
        for kind in kinds:
            r = rows[s.name][kind]
            row = {**summary(r["ms"]), "latency_ms": r["ms"], "ids": r["ids"],
                   "open_ms": summary(r["open_ms"]),
                   "open_plus_query_ms": summary([a + b for a, b in zip(r["open_ms"], r["ms"])]),
                   "open_requests_per_open": float(np.mean(r["open_requests"])),
                   "store_requests_per_query": float(np.mean(r["requests"])),
                   "store_requests": r["requests"],
                   "bytes_down_per_query": float(np.mean(r["bytes_down"]))}
            if s.name == "ivflake":
                row["stats"] = r["stats"]
                gets = [st.get("gets", 0) for st in r["stats"]]
                row["gets_per_query"] = float(np.mean(gets))
                row["gets_p50"] = float(np.median(gets))
                row["gets_max"] = int(max(gets))
                row["bytes_fetched_per_query"] = float(np.mean([st.get("bytes_fetched", 0) for st in r["stats"]]))
                row["library_total_ms"] = summary([st.get("total_ms", 0.0) for st in r["stats"]])
            out[s.name][kind] = row
    gc.collect()
    return out


# ---------------------------------------------------------------- main


def log_rows(phase, rows, systems):
    for s in systems:
        for kind, r in rows[s.name].items():
            gets = r.get("gets_per_query", r.get("gets_total"))
            log(f"{phase} {kind} {s.name}: p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, "
                f"{r['store_requests_per_query']:.2f} store requests a query" +
                (f", GETs {gets}" if gets is not None else ""))
    for kind in ("fts", "hybrid"):
        if f"overlap_{kind}" in rows:
            log(f"{phase} {kind}: top-k overlap ivflake / LanceDB {rows[f'overlap_{kind}']:.3f}")


def rows_of(res):
    """Each measured row: (phase, kind, ivflake's figures, LanceDB's)."""
    for phase in ("warm", "cold", "cold_meta"):
        for kind in ("fts", "hybrid"):
            try:
                yield phase, kind, res[phase]["ivflake"][kind], res[phase]["lancedb"][kind]
            except KeyError:
                continue


def ratios(res):
    """ivflake / LanceDB per row, p50 and p99."""
    out = {f"{phase}/{kind}": {"p50": i["p50"] / l_["p50"], "p99": i["p99"] / l_["p99"]}
           for phase, kind, i, l_ in rows_of(res)}
    for phase, kind, i, l_ in rows_of(res):
        if phase == "cold" and "open_plus_query_ms" in i and "open_plus_query_ms" in l_:
            a, b = i["open_plus_query_ms"], l_["open_plus_query_ms"]
            out[f"{phase}/{kind}/open+query"] = {"p50": a["p50"] / b["p50"], "p99": a["p99"] / b["p99"]}
    return out


def print_table(res):
    names = {"warm": "warm", "cold": "cold (fresh open)", "cold_meta": "cold, text metadata loaded"}
    print("| row | ivflake p50 / p99 ms | LanceDB p50 / p99 ms | ivflake / LanceDB p50 / p99 | "
          "ivflake GETs (last_stats) | store requests (proxy) ivflake / LanceDB |")
    print("|---|---:|---:|---:|---:|---:|")
    for phase, kind, i, l_ in rows_of(res):
        g = i.get("gets_per_query", i.get("gets_total", 0) / max(1, i["n"]))
        print(f"| {'full-text' if kind == 'fts' else 'hybrid'}, {names[phase]} | {i['p50']:.2f} / {i['p99']:.2f} | "
              f"{l_['p50']:.2f} / {l_['p99']:.2f} | {i['p50'] / l_['p50']:.2f}× / {i['p99'] / l_['p99']:.2f}× | "
              f"{g:.1f} | {i['store_requests_per_query']:.1f} / {l_['store_requests_per_query']:.1f} |")
    for phase, kind, i, l_ in rows_of(res):
        if phase == "cold" and "open_plus_query_ms" in i and "open_plus_query_ms" in l_:
            a, b = i["open_plus_query_ms"], l_["open_plus_query_ms"]
            print(f"| {'full-text' if kind == 'fts' else 'hybrid'}, {names[phase]}: open + query | "
                  f"{a['p50']:.2f} / {a['p99']:.2f} | {b['p50']:.2f} / {b['p99']:.2f} | "
                  f"{a['p50'] / b['p50']:.2f}× / {a['p99'] / b['p99']:.2f}× | | "
                  f"{i['open_requests_per_open']:.1f} / {l_['open_requests_per_open']:.1f} at open |")
    for name, b in res["build"].items():
        print(f"build {name}: {b['build_s']:.1f} s, {b['bytes_total'] / 1e6:.1f} MB in {b['files']} files")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--d", type=int, default=64)
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--cold-queries", type=int, default=50, help="queries per cold row")
    p.add_argument("-k", "--k", type=int, default=10)
    p.add_argument("--nprobe", type=int, default=16)
    p.add_argument("--delay-ms", type=float, default=20.0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--work", default="/tmp/ivflake-text")
    p.add_argument("--report", default="docs/data/bench_text.json")
    p.add_argument("--s3rver-dir", default=os.path.expanduser("~/.cache/ivflake/s3rver-text"),
                   help="where s3rver is installed and patched (not bench_scale.py's copy)")
    p.add_argument("--max-minutes", type=float, default=40, help="time budget of the query phases")
    p.add_argument("--reuse", action="store_true", help="reuse both indexes under --work if built with these parameters")
    p.add_argument("--systems", default="ivflake,lancedb", help="which to run (a check of one side alone)")
    p.add_argument("--label", default="", help="free text saved in the JSON (e.g. how the ivflake module was built)")
    p.add_argument("--proxy-log", help="append each request the proxy sees (method, path, Range) to this file")
    a = p.parse_args()
    a.nlist = nlist_for(a.n)
    a.factory = f"IVF{a.nlist},SQ8"
    work = os.path.abspath(a.work)
    os.makedirs(work, exist_ok=True)
    started = time.time()
    import importlib.metadata as md

    a.systems = a.systems.split(",")
    import ivflake

    so = ivflake._ivflake.__file__
    res = {
        "params": {k: v for k, v in vars(a).items() if k not in ("work", "s3rver_dir", "report", "label", "proxy_log")},
        "label": a.label,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "lancedb": md.version("lancedb"), "ivflake": ivflake.__version__,
                    "ivflake_module": so, "ivflake_module_bytes": os.path.getsize(so),
                    # Overflow checks are on in the dev profile only.
                    "ivflake_module_debug": b"attempt to add with overflow" in open(so, "rb").read(),
                    "s3rver": S3RVER_VERSION},
        "data": {"vocab": VOCAB, "zipf_s": ZIPF_S, "zipf_q": ZIPF_Q, "doc_words": DOC_WORDS, "cats": CATS},
        "load": {"start": os.getloadavg()},
        "timings": {},
    }

    def save():
        res["elapsed_s"] = time.time() - started
        os.makedirs(os.path.dirname(os.path.abspath(a.report)), exist_ok=True)
        tmp = a.report + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f)
        os.replace(tmp, a.report)

    log(f"data: {a.n} documents, {a.d}-d vectors, {a.queries} queries")
    t = time.perf_counter()
    bodies, cats, counts, words = documents(a.n, a.seed)
    xb, gen = vectors(a.n, a.d, a.seed)
    xq = gen.chunk(1, 0, a.queries)
    texts, kinds = text_queries(a.queries, a.seed, counts, words)
    words_rank = {w: r for r, w in enumerate(words)}
    res["timings"]["data_s"] = time.perf_counter() - t
    ntok = int(counts.sum())
    res["data"].update(tokens=ntok, words_per_doc=ntok / a.n, distinct_words=int((counts > 0).sum()),
                       top_word_share=float(counts.max() / ntok),
                       body_bytes=int(sum(len(b) for b in bodies)),
                       query_examples=texts[:10], query_word_kinds=kinds,
                       query_word_occurrences=[[int(counts[words_rank[w]]) for w in q.split()] for q in texts])
    log(f"data: {ntok} words ({ntok / a.n:.1f} a document), {res['data']['distinct_words']} distinct, "
        f"{res['data']['body_bytes'] / 1e6:.0f} MB of text, in {res['timings']['data_s']:.1f} s; "
        f"queries e.g. {texts[:3]}")

    ivf_local = os.path.join(work, "build", "ivflake")
    lance_local = os.path.join(work, "build", "lance")
    meta_path = os.path.join(work, "build", "build.json")
    params = {"n": a.n, "d": a.d, "seed": a.seed, "factory": a.factory, "generator": 1}
    builders = {"ivflake": (build_ivflake, ivf_local), "lancedb": (build_lance, lance_local)}
    old = json.load(open(meta_path)) if os.path.exists(meta_path) else {}
    if old.get("params") != params:
        old = {"params": params, "build": {}}
    build = {}
    for name in a.systems:
        if a.reuse and name in old["build"]:
            build[name] = old["build"][name]
            log(f"reusing {name}'s index under --work")
            continue
        fn, path = builders[name]
        build[name] = fn(a, path, xb, bodies, cats)
        res["load"][f"after_{name}_build"] = os.getloadavg()
        old["build"][name] = build[name]
        json.dump(old, open(meta_path, "w"))
    res["build"] = build
    del bodies
    gc.collect()
    save()

    procs = []
    try:
        s3port = start_s3rver(a, work, procs)
        proxy_port, control = start_proxy(a, work, s3port, procs)
        log(f"s3rver on 127.0.0.1:{s3port}, proxy (+{a.delay_ms} ms) on 127.0.0.1:{proxy_port}")
        s3 = s3_client(s3port)
        prefix = f"text-{a.n}"
        t = time.perf_counter()
        nfiles = sum(upload_dir(s3, builders[name][1], f"{prefix}/{'lance' if name == 'lancedb' else name}")
                     for name in a.systems)
        res["timings"]["upload_s"] = time.perf_counter() - t
        log(f"uploaded {nfiles} files to s3rver in {res['timings']['upload_s']:.1f} s")
        res["round_trip_ms"] = round_trips(proxy_port, s3)
        log(f"one 4 KiB GET through the proxy: p50 {res['round_trip_ms']['p50']:.2f} ms")
        set_ivflake_env(proxy_port)
        systems = [Ivflake(f"s3://{BUCKET}/{prefix}/ivflake/", a.k, a.nprobe),
                   Lance(f"s3://{BUCKET}/{prefix}/lance", lance_opts(proxy_port), a.k, a.nprobe)]
        systems = [s for s in systems if s.name in a.systems]
        deadline = time.time() + a.max_minutes * 60

        log("warm")
        res["warm"] = run_warm(systems, xq, texts, control, deadline)
        w = res["warm"]
        if len(systems) == 2:
            for kind in ("fts", "hybrid"):
                w[f"overlap_{kind}"] = overlap(w["ivflake"][kind]["ids"], w["lancedb"][kind]["ids"], a.k)
            w["bm25_scores"] = score_agreement(w["ivflake"]["fts"]["scores"], w["lancedb"]["fts"]["scores"])
            log(f"BM25 scores rank by rank, ivflake against LanceDB: {w['bm25_scores']}")
        log_rows("warm", res["warm"], systems)
        res["load"]["after_warm"] = os.getloadavg()
        save()

        nc = min(a.cold_queries, a.queries)
        log(f"cold, a fresh handle per query ({nc} queries)")
        res["cold"] = run_cold(systems, xq, texts, control, nc, deadline, "open")
        log_rows("cold", res["cold"], systems)
        res["load"]["after_cold"] = os.getloadavg()
        save()

        log(f"cold with the text index's metadata loaded ({nc} queries)")
        res["cold_meta"] = run_cold(systems, xq, texts, control, nc, deadline, "meta")
        log_rows("cold_meta", res["cold_meta"], systems)
        res["load"]["end"] = os.getloadavg()
        res["ratios"] = ratios(res)
        save()
    finally:
        stop_all(procs)
        if not a.reuse:
            shutil.rmtree(os.path.join(work, "s3rver-data"), ignore_errors=True)
    print_table(res)
    log(f"wrote {a.report} in {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
