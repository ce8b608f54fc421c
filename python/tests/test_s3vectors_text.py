"""Full-text and hybrid search through the Amazon S3 Vectors API, driven by
boto3's own `s3vectors` client against `ivflake serve --vector-root`, on a
local directory and on moto. BM25 rankings are checked against `bm25s`
(Lucene's BM25, k1 = 1.2, b = 0.75, on the same tokens: tantivy's scores
are bm25s's times k1 + 1), before and after compaction and right after a
write; hybrid results against Reciprocal Rank Fusion computed here from
the vector-only and text-only rankings; configuration changes through
`UpdateMetadataConfiguration`."""

import bm25s
import numpy as np
import pytest

from test_s3vectors import VectorServer, root  # noqa: F401  (the directory / moto fixture)

D = 8
N = 3000
VOCAB = 300
K = 10


@pytest.fixture
def server(root, tmp_path):  # noqa: F811
    s = VectorServer(root, tmp_path)
    yield s
    s.stop()


def words(rng, n):
    """Words `w<i>` (no analyzer changes them), Zipf-like: some are common."""
    return [f"w{min(int(VOCAB ** rng.random()), VOCAB - 1)}" for _ in range(n)]


class Corpus:
    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.docs = {}  # key -> tokens of "body"
        self.vectors = {}

    def put(self, client, n, start):
        batch = []
        for i in range(start, start + n):
            key = f"doc-{i}"
            tokens = words(self.rng, int(self.rng.integers(3, 31)))
            v = self.rng.standard_normal(D).astype(np.float32)
            self.docs[key], self.vectors[key] = tokens, v
            batch.append({"key": key, "data": {"float32": v.tolist()},
                          "metadata": {"body": " ".join(tokens), "cat": f"c{i % 4}", "title": f"Title {i}"}})
        for at in range(0, len(batch), 500):
            client.put_vectors(vectorBucketName="text-b", indexName="docs", vectors=batch[at:at + 500])

    def reference(self, query_tokens):
        """bm25s's top-K keys and scores over every document."""
        keys = list(self.docs)
        model = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
        model.index([self.docs[k] for k in keys], show_progress=False)
        scores = model.get_scores(query_tokens)
        order = np.argsort(-scores, kind="stable")[:K]
        return [(keys[i], float(scores[i])) for i in order if scores[i] > 0]

    def queries(self, n=20):
        return [list(dict.fromkeys(words(self.rng, 1 + i % 3))) for i in range(n)]


def text_search(client, text, **extra):
    r = client.query_vectors(vectorBucketName="text-b", indexName="docs", topK=K, returnScores=True,
                             queryTexts=[{"text": text, "metadataKey": "body"}], **extra)
    return [(v["key"], v["scores"]["bm25Scores"][0]["score"]) for v in r["vectors"]]


def check_bm25(client, corpus, what):
    overlaps = []
    for terms in corpus.queries():
        ours = text_search(client, " ".join(terms))
        ref = corpus.reference(terms)
        assert len(ours) == len(ref), (what, terms)
        if not ref:
            continue
        # The scores, rank by rank: tantivy's are bm25s's times (k1 + 1).
        for (_, a), (_, b) in zip(ours, ref):
            assert a == pytest.approx(2.2 * b, rel=1e-3), (what, terms, ours, ref)
        overlaps.append(len({k for k, _ in ours} & {k for k, _ in ref}) / len(ref))
    # Ties at the K-th place may pick other documents of the same score.
    assert np.mean(overlaps) >= 0.95, (what, overlaps)


def test_full_text_and_hybrid_search_through_boto3(server):
    c = server.client()
    c.create_vector_bucket(vectorBucketName="text-b")
    c.create_index(vectorBucketName="text-b", indexName="docs", dataType="float32", dimension=D,
                   distanceMetric="euclidean", metadataConfiguration={
                       "nonFilterableMetadataKeys": ["body"],
                       "textSearchConfigurations": [{"metadataKey": "body", "language": "en"}]})
    got = c.get_index(vectorBucketName="text-b", indexName="docs")["index"]["metadataConfiguration"]
    assert got["textSearchConfigurations"] == [{"metadataKey": "body", "language": "en", "status": "ACTIVE"}]

    corpus = Corpus(5)
    corpus.put(c, N, 0)
    check_bm25(c, corpus, "right after the writes")
    server.compact("text-b", "docs")
    check_bm25(c, corpus, "after compaction")
    corpus.put(c, 400, N)
    check_bm25(c, corpus, "base and new writes")

    # Hybrid: RRF of the vector-only and text-only rankings, 1 / (60 + rank).
    for i, terms in enumerate(corpus.queries(5)):
        q = corpus.rng.standard_normal(D).astype(np.float32).tolist()
        text = " ".join(terms)
        vec = c.query_vectors(vectorBucketName="text-b", indexName="docs", topK=K, queryVector={"float32": q},
                              returnDistance=True)["vectors"]
        txt = text_search(c, text)
        fused = {}
        for ranking in ([v["key"] for v in vec], [k for k, _ in txt]):
            for rank, key in enumerate(ranking, 1):
                fused[key] = fused.get(key, 0.0) + 1.0 / (60 + rank)
        expected = sorted(fused.items(), key=lambda kv: -kv[1])[:K]
        hybrid = c.query_vectors(vectorBucketName="text-b", indexName="docs", topK=K, queryVector={"float32": q},
                                 queryTexts=[{"text": text, "metadataKey": "body"}], returnScores=True,
                                 returnDistance=True, returnMetadata=True)["vectors"]
        assert [h["scores"]["fused"] for h in hybrid] == pytest.approx([s for _, s in expected], rel=1e-5)
        distance = {v["key"]: v["distance"] for v in vec}
        bm25 = dict(txt)
        for h in hybrid:
            assert h["metadata"]["body"] == " ".join(corpus.docs[h["key"]])
            if h["key"] in distance:
                assert h["scores"]["vectorDistance"] == pytest.approx(distance[h["key"]], rel=1e-5)
            else:
                assert "vectorDistance" not in h["scores"]
            if h["key"] in bm25:
                assert h["scores"]["bm25Scores"] == [{"metadataKey": "body", "score": pytest.approx(bm25[h["key"]])}]

    # A filter applies to the text ranking too.
    terms = corpus.queries(1)[0]
    hits = c.query_vectors(vectorBucketName="text-b", indexName="docs", topK=K, filter={"cat": "c1"},
                           queryTexts=[{"text": " ".join(terms), "metadataKey": "body"}],
                           returnMetadata=True)["vectors"]
    assert hits and all(h["metadata"]["cat"] == "c1" for h in hits)

    # A key made searchable later covers what was put before; then removed.
    E = c.exceptions
    with pytest.raises(E.ValidationException, match="not full-text searchable"):
        c.query_vectors(vectorBucketName="text-b", indexName="docs", topK=K,
                        queryTexts=[{"text": "Title 7", "metadataKey": "title"}])
    c.update_metadata_configuration(vectorBucketName="text-b", indexName="docs",
                                    add={"textSearchConfigurations": [{"metadataKey": "title"}]})
    got = c.get_index(vectorBucketName="text-b", indexName="docs")["index"]["metadataConfiguration"]
    assert {"metadataKey": "title", "status": "ACTIVE"} in got["textSearchConfigurations"]
    hits = c.query_vectors(vectorBucketName="text-b", indexName="docs", topK=3,
                           queryTexts=[{"text": "title 7", "metadataKey": "title"}])["vectors"]
    assert hits[0]["key"] == "doc-7"
    c.update_metadata_configuration(vectorBucketName="text-b", indexName="docs",
                                    delete={"textSearchConfigurations": [{"metadataKey": "title"}]})
    with pytest.raises(E.ValidationException, match="not full-text searchable"):
        c.query_vectors(vectorBucketName="text-b", indexName="docs", topK=K,
                        queryTexts=[{"text": "Title 7", "metadataKey": "title"}])
    # The configuration survives a restart.
    server.restart()
    c = server.client()
    assert text_search(c, " ".join(terms)) == text_search(c, " ".join(terms))
    with pytest.raises(E.ValidationException, match="queryVector"):
        c.query_vectors(vectorBucketName="text-b", indexName="docs", topK=K)
    with pytest.raises(E.ValidationException, match="one page"):
        c.query_vectors(vectorBucketName="text-b", indexName="docs", topK=K, nextToken="x",
                        queryTexts=[{"text": "w1", "metadataKey": "body"}])
    with pytest.raises(E.ValidationException, match="distinct"):
        c.query_vectors(vectorBucketName="text-b", indexName="docs", topK=K,
                        queryTexts=[{"text": "w1", "metadataKey": "body"}, {"text": "w2", "metadataKey": "body"}])
