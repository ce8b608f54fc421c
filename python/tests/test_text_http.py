"""Full-text and hybrid search through the native HTTP API (`POST
/v1/indexes/{name}/query`) of `ivflake serve` on a writable index the CLI
created with `--text-field`: BM25 rankings against `bm25s` (Lucene's BM25,
k1 = 1.2, b = 0.75, on the same tokens; tantivy's scores are bm25s's times
k1 + 1) right after writes and after compaction; RRF against the vector-only
and text-only rankings; text fields added later with `/text-fields`; bad
requests answered 4xx naming the field."""

import json
import subprocess
import urllib.error
import urllib.request

import bm25s
import numpy as np
import pytest

from conftest import cli_binary, serve

D = 8
K = 10
VOCAB = 300


def post(url, path, body):
    req = urllib.request.Request(url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


def refused(url, path, body):
    with pytest.raises(urllib.error.HTTPError) as e:
        post(url, path, body)
    return e.value.code, json.loads(e.value.read())["error"]


def words(rng, n):
    return [f"w{min(int(VOCAB ** rng.random()), VOCAB - 1)}" for _ in range(n)]


def test_query_route_ranks_as_bm25s_and_fuses_by_rrf(tmp_path):
    root = tmp_path / "docs"
    subprocess.run([str(cli_binary()), "create", str(root), "--d", str(D), "--factory", "IVF4,Flat",
                    "--text-field", "body:en"], check=True, capture_output=True)
    rng = np.random.default_rng(3)
    docs = {}
    with serve(cli_binary(), {"docs": str(root) + "/"}, token=None) as url:
        def put(start, n):
            ids = list(range(start, start + n))
            rows = []
            for i in ids:
                docs[i] = words(rng, int(rng.integers(3, 31)))
                rows.append({"body": " ".join(docs[i]), "title": f"Title {i}"})
            vectors = rng.standard_normal((n, D)).astype(np.float32).tolist()
            for at in range(0, n, 500):
                post(url, "/v1/indexes/docs/upsert", {"ids": ids[at:at + 500], "vectors": vectors[at:at + 500],
                                                       "attributes": rows[at:at + 500]})

        def check(what):
            keys = list(docs)
            model = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
            model.index([docs[k] for k in keys], show_progress=False)
            overlaps = []
            for i in range(15):
                terms = list(dict.fromkeys(words(rng, 1 + i % 3)))
                hits = post(url, "/v1/indexes/docs/query", {"text": {"body": " ".join(terms)}, "k": K})["hits"]
                scores = model.get_scores(terms)
                order = [j for j in np.argsort(-scores, kind="stable")[:K] if scores[j] > 0]
                assert len(hits) == len(order), what
                for h, j in zip(hits, order):
                    assert h["bm25"]["body"] == pytest.approx(2.2 * scores[j], rel=1e-3), (what, terms)
                if order:
                    overlaps.append(len({h["id"] for h in hits} & {keys[j] for j in order}) / len(order))
            assert np.mean(overlaps) >= 0.95, (what, overlaps)

        put(0, 2000)
        check("right after the writes")
        post(url, "/v1/indexes/docs/compact", {})
        check("after compaction")
        put(2000, 300)
        check("base and writes")

        q = rng.standard_normal(D).astype(np.float32).tolist()
        vec = post(url, "/v1/indexes/docs/search", {"vectors": [q], "k": K, "nprobe": 4})["results"][0]["ids"]
        txt = [h["id"] for h in post(url, "/v1/indexes/docs/query", {"text": {"body": "w1 w2"}, "k": K})["hits"]]
        fused = {}
        for ranking in (vec, txt):
            for rank, i in enumerate(ranking, 1):
                fused[i] = fused.get(i, 0.0) + 1.0 / (60 + rank)
        expected = sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))[:K]
        hybrid = post(url, "/v1/indexes/docs/query", {"vector": q, "text": {"body": "w1 w2"}, "k": K, "nprobe": 4,
                                                       "return_attributes": ["body"]})["hits"]
        assert [h["fused"] for h in hybrid] == pytest.approx([s for _, s in expected], rel=1e-5)
        for h in hybrid:
            assert h["attributes"]["body"] == " ".join(docs[h["id"]])

        # A field added later covers what was written before it.
        code, error = refused(url, "/v1/indexes/docs/query", {"text": {"title": "title 7"}})
        assert code == 400 and error["field"] == "text"
        post(url, "/v1/indexes/docs/text-fields", {"fields": {"body": "en", "title": "standard"}})
        hits = post(url, "/v1/indexes/docs/query", {"text": {"title": "title 7"}, "k": 3})["hits"]
        assert hits[0]["id"] == 7
        code, error = refused(url, "/v1/indexes/docs/text-fields", {"fields": {"body": "xx"}})
        assert code == 400 and error["field"] == "fields"
        code, error = refused(url, "/v1/indexes/docs/query", {"text": {"body": "x" * 2000}})
        assert code == 400 and error["field"] == "text"
        code, error = refused(url, "/v1/indexes/docs/query", {"k": K})
        assert code == 400 and error["field"] == "text"
