"""Full-text and hybrid search from Python (`MutableIndex.query` and
`search(text=...)`) against references that share no code with ivflake:
BM25 by the `bm25s` package (its Lucene variant, k1 = 1.2, b = 0.75) over
the same tokens, and Reciprocal Rank Fusion written here from the
vector-only and text-only rankings.

The text is made here: words `w<n>` (which no analyzer changes) drawn from
a Zipf vocabulary of 300, documents of 3 to 30 words, so tantivy's field
norms are exact (they are up to 40 terms). Checked right after writes (the
writes' text index in memory), after `compact()` (the base's bundle read
from the store), with writes on top of a compacted base, and after deletes
and overwrites, from a directory and from moto."""

import os
import uuid

import bm25s
import numpy as np
import pytest

import ivflake

D, K, VOCAB = 8, 10, 300
K1, B = 1.2, 0.75
# tantivy keeps BM25's (k1 + 1) numerator factor; bm25s's "lucene" method
# drops it, as Lucene has since 8.0. Rankings are the same.
SCORE_RATIO = K1 + 1
RRF_K = 60
QUERIES = 24
ZIPF = 1.0 / np.arange(1, VOCAB + 1)
ZIPF /= ZIPF.sum()


def words(rng, n):
    return [f"w{i}" for i in rng.choice(VOCAB, n, p=ZIPF)]


def query_text(rng):
    """1 to 3 distinct words, most of them common."""
    n = int(rng.integers(1, 4))
    picked = []
    while len(picked) < n:
        w = words(rng, 1)[0]
        if w not in picked:
            picked.append(w)
    return " ".join(picked)


class Corpus:
    """What the index should hold: each live id's words, category and vector."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.docs = {}
        self.vectors = {}
        self.next = 0

    def upsert(self, index, ids, docs=None):
        ids = np.asarray(ids, dtype=np.int64)
        if docs is None:
            docs = [(words(self.rng, int(self.rng.integers(3, 31))), f"c{self.rng.integers(0, 4)}") for _ in ids]
        xb = self.rng.standard_normal((len(ids), D)).astype(np.float32)
        index.upsert(xb, ids, attributes={"body": [" ".join(w) for w, _ in docs], "cat": [c for _, c in docs]})
        for i, doc, x in zip(ids.tolist(), docs, xb):
            self.docs[i] = doc
            self.vectors[i] = x

    def write(self, index, n):
        self.upsert(index, np.arange(self.next, self.next + n))
        self.next += n

    def delete(self, index, ids):
        index.delete(np.asarray(ids, dtype=np.int64))
        for i in ids:
            self.docs.pop(i, None)
            self.vectors.pop(i, None)


class Reference:
    """bm25s over the corpus's live documents, each given as its tokens."""

    def __init__(self, corpus):
        self.ids = np.array(sorted(corpus.docs), dtype=np.int64)
        self.cats = np.array([corpus.docs[i][1] for i in self.ids])
        self.bm25 = bm25s.BM25(method="lucene", k1=K1, b=B)
        self.bm25.index([corpus.docs[i][0] for i in self.ids], show_progress=False)

    def scores(self, text):
        """Every live id's score for `text` (its distinct words), as a dict
        of the ids it matches."""
        terms = list(dict.fromkeys(text.split()))
        scores = self.bm25.get_scores(terms).astype(np.float64)
        return {int(i): float(s) for i, s in zip(self.ids, scores) if s > 0}

    def top(self, text, k, cat=None):
        """The best `k` (id, score), ties by id, of those in category `cat`."""
        cats = dict(zip(self.ids.tolist(), self.cats))
        scored = [(i, s) for i, s in self.scores(text).items() if cat is None or cats[i] == cat]
        scored.sort(key=lambda x: (-x[1], x[0]))
        return scored[:k]


def compare(hits, reference, text, cat=None):
    """`(overlap, ratios)` of one text-only query's hits against the
    reference's top `K`. Unfiltered, their scores must also agree place by
    place (ties may order ids differently). Filtered, a hit may be missed
    (`test_a_filtered_text_query_keeps_tied_candidates_at_its_cut`), which
    the overlap measures."""
    top = reference.top(text, K, cat)
    scores = reference.scores(text)
    assert len(hits) == len(top), (text, hits, top)
    ratios = []
    for place, (hit, (_, want)) in enumerate(zip(hits, top)):
        got = hit["bm25"]["body"]
        assert hit["fused"] is None and hit["distance"] is None
        if cat is None:
            assert abs(got / SCORE_RATIO - want) <= 1e-4 * want, (text, place, got, want)
        assert hit["id"] in scores, f"{text}: {hit['id']} does not hold any of its words"
        ratios.append(got / scores[hit["id"]])
    assert len({h["id"] for h in hits}) == len(hits), f"{text}: an id twice in {hits}"
    # No match at all (a rare word, filtered) is full agreement.
    overlap = len({h["id"] for h in hits} & {i for i, _ in top}) / len(top) if top else 1.0
    return overlap, ratios


def check_bm25(index, corpus, what):
    """`QUERIES` text queries, alone and filtered to category c1 with the
    category returned, against bm25s; prints the measured overlaps and ratios."""
    reference = Reference(corpus)
    overlaps, filtered, ratios = [], [], []
    for _ in range(QUERIES):
        text = query_text(corpus.rng)
        hits = index.query(text={"body": text}, k=K)
        assert index.last_stats["log_position"] == index.log_position
        overlap, r = compare(hits, reference, text)
        overlaps.append(overlap)
        ratios += r
        for hit in hits:
            assert hit["attributes"] is None

        hits = index.query(None, K, text={"body": text}, attribute_filter={"cat": "c1"}, return_attributes=["cat"])
        for hit in hits:
            assert hit["attributes"] == {"cat": "c1"}, (what, text, hit)
        overlap, r = compare(hits, reference, text, cat="c1")
        filtered.append(overlap)
        ratios += r
    mean, mean_filtered = float(np.mean(overlaps)), float(np.mean(filtered))
    ratios = np.array(ratios)
    print(f"{what}: top-{K} overlap with bm25s {mean:.4f} ({len(overlaps)} queries), "
          f"filtered to c1 {mean_filtered:.4f} ({len(filtered)}); "
          f"score ratio {ratios.min():.6f} to {ratios.max():.6f} ({len(ratios)} hits)")
    assert mean >= 0.95, (what, overlaps)
    assert mean_filtered >= 0.95, (what, filtered)
    assert len(ratios) > 10 * QUERIES
    assert np.abs(ratios - SCORE_RATIO).max() <= 1e-3, (what, ratios.min(), ratios.max())


@pytest.fixture(params=["directory", "moto"])
def root(request, tmp_path):
    if request.param == "moto":
        request.getfixturevalue("s3_uri")  # skips without the S3 server
        return f"s3://{os.environ['IVFLAKE_S3_BUCKET']}/text-py/{uuid.uuid4().hex}/"
    return str(tmp_path / "text")


def test_bm25_equals_bm25s_after_writes_compaction_and_more_writes(root):
    index = ivflake.create(root, d=D, factory="IVF4,Flat", text_fields={"body": "en"})
    assert index.text_fields == {"body": "en"}
    corpus = Corpus(7)
    for _ in range(4):
        corpus.write(index, 500)
    check_bm25(index, corpus, "(a) writes only")

    report = index.compact()
    assert report["trained"] and index.nlist == 4 and index.unindexed == 0
    check_bm25(index, corpus, "(b) compacted")

    corpus.write(index, 300)
    assert index.unindexed == 300
    check_bm25(index, corpus, "(c) compacted base and writes")

    # Deletes and overwrites: a deleted id is never returned, an overwritten
    # one is found by its new text only. (Until the next compaction the
    # base's statistics still count the replaced documents, as Lucene's
    # count deleted ones until a merge, so scores are compared after it.)
    gone = list(range(0, 2000, 7))
    corpus.delete(index, gone)
    changed = [i for i in range(5, 2300, 113) if i in corpus.docs]
    corpus.upsert(index, changed, [(["zebra", "w1"], "c1")] * len(changed))
    hits = index.query(text={"body": "zebra"}, k=100)
    assert sorted(h["id"] for h in hits) == sorted(changed)
    for _ in range(QUERIES):
        for hit in index.query(text={"body": query_text(corpus.rng)}, k=50):
            assert hit["id"] not in gone
    index.compact()
    check_bm25(index, corpus, "(d) compacted after deletes and overwrites")

    again = ivflake.open(root)
    assert again.text_fields == {"body": "en"}
    text = query_text(corpus.rng)
    assert again.query(text={"body": text}) == index.query(text={"body": text})


def test_a_filtered_text_query_keeps_tied_candidates_at_its_cut(tmp_path):
    """60 documents of category c0 score highest, then 20 tied ones (ids 0
    to 19, of which 0 to 3 are c1), then 20 lower ones of c1. A query
    filtered to c1 must return 0 to 3, then six of the lower ones. The tied
    documents are split by parity between two lists, so the base's document
    order is never their id order."""
    index = ivflake.create(str(tmp_path / "t"), d=4, factory="IVF2,Flat", text_fields=["body"])
    rng = np.random.default_rng(0)
    for ids, text, cat in [
        (np.arange(1000, 1060), "w1 w1 w2", lambda i: "c0"),
        (np.arange(0, 20), "w1 w3 w4", lambda i: "c1" if i < 4 else "c0"),
        (np.arange(2000, 2020), "w1 w3 w4 w5 w6 w7", lambda i: "c1"),
    ]:
        xb = 0.1 * rng.standard_normal((len(ids), 4)).astype(np.float32)
        xb[:, 0] += np.where(ids % 2 == 0, 10, -10)
        index.upsert(xb, ids, attributes={"body": [text] * len(ids), "cat": [cat(i) for i in ids]})
    assert index.compact()["trained"] and index.nlist == 2
    hits = index.query(text={"body": "w1"}, k=K, attribute_filter={"cat": "c1"})
    ids = [h["id"] for h in hits]
    assert ids[:4] == [0, 1, 2, 3] and len(set(ids)) == K and set(ids[4:]) <= set(range(2000, 2020)), ids


def rrf(rankings, k):
    """Reciprocal Rank Fusion: per id, the sum of 1 / (60 + rank), ranks
    from 1; the best `k`, ties by the smaller id."""
    fused = {}
    for ranking in rankings:
        for rank, i in enumerate(ranking, start=1):
            fused[i] = fused.get(i, 0.0) + 1.0 / (RRF_K + rank)
    return sorted(fused.items(), key=lambda x: (-x[1], x[0]))[:k]


def test_hybrid_is_rrf_of_the_vector_and_text_rankings(tmp_path):
    index = ivflake.create(str(tmp_path / "h"), d=D, factory="IVF4,Flat", text_fields=["body", "cat"])
    assert index.text_fields == {"body": "en", "cat": "en"}
    corpus = Corpus(9)
    corpus.write(index, 1500)
    index.compact()
    corpus.write(index, 200)
    rng = np.random.default_rng(19)
    fused_seen = 0
    for q in range(QUERIES):
        xq = rng.standard_normal(D).astype(np.float32)
        text = query_text(corpus.rng)
        flt = {"cat": "c1"} if q % 4 == 3 else None
        Dv, Iv = index.search(xq[None], K, nprobe=16, attribute_filter=flt)
        vector = [int(i) for i in Iv[0] if i >= 0]
        distance = {int(i): float(d) for i, d in zip(Iv[0], Dv[0]) if i >= 0}
        only_text = index.query(text={"body": text}, k=K, attribute_filter=flt)
        bm25 = {h["id"]: h["bm25"]["body"] for h in only_text}
        assert index.query(xq, K, attribute_filter=flt) == [
            {"id": i, "fused": None, "distance": distance[i], "bm25": {}, "attributes": None} for i in vector
        ]

        hits = index.query(xq, K, text={"body": text}, attribute_filter=flt)
        expected = rrf([vector, [h["id"] for h in only_text]], K)
        assert [h["id"] for h in hits] == [i for i, _ in expected], (text, hits, expected)
        for hit, (_, want) in zip(hits, expected):
            assert abs(hit["fused"] - want) < 1e-6, (text, hit, want)
            assert hit["distance"] == distance.get(hit["id"])
            assert hit["bm25"] == ({"body": bm25[hit["id"]]} if hit["id"] in bm25 else {})
            fused_seen += hit["distance"] is not None and bool(hit["bm25"])
        if flt:
            assert all(corpus.docs[h["id"]][1] == "c1" for h in hits)
        assert index.last_stats["version"] == index.version
        # search(text=...) is the same query.
        assert index.search(xq, K, nprobe=16, attribute_filter=flt, text={"body": text}) == hits

        # Three rankings: the vector, the body and the category fields.
        cat = f"c{q % 4}"
        by_cat = index.query(text={"cat": cat}, k=K)
        assert all(corpus.docs[h["id"]][1] == cat for h in by_cat) and len(by_cat) == K
        three = index.query(xq, K, text={"body": text, "cat": cat}, return_attributes=["cat"])
        expected = rrf([[h["id"] for h in index.query(xq, K)],
                        [h["id"] for h in index.query(text={"body": text}, k=K)],
                        [h["id"] for h in by_cat]], K)
        assert [h["id"] for h in three] == [i for i, _ in expected]
        for hit, (_, want) in zip(three, expected):
            assert abs(hit["fused"] - want) < 1e-6
            assert set(hit["bm25"]) <= {"body", "cat"}
            assert hit["attributes"] == {"cat": corpus.docs[hit["id"]][1]}
    # Some hits were ranked by both the vector and the text.
    assert fused_seen > 0

    # Text only through search: xq None.
    text = query_text(corpus.rng)
    assert index.search(None, K, text={"body": text}) == index.query(text={"body": text}, k=K)


def test_text_fields_set_on_an_index_with_writes_and_a_base(tmp_path):
    """`set_text_fields` on an index created without: the writes, then the
    compacted base, become searchable, and the fields persist."""
    uri = str(tmp_path / "s")
    index = ivflake.create(uri, d=D, factory="IVF4,Flat")
    assert index.text_fields == {}
    corpus = Corpus(13)
    corpus.write(index, 600)
    with pytest.raises(ValueError, match="body"):
        index.query(text={"body": "w1"})
    index.set_text_fields(["body"])
    assert index.text_fields == {"body": "en"}
    check_bm25(index, corpus, "set_text_fields, writes only")
    index.compact()
    corpus.write(index, 100)
    version = index.version
    index.set_text_fields({"body": "en", "cat": "fr"})
    assert index.version > version
    assert ivflake.open_mutable(uri).text_fields == {"body": "en", "cat": "fr"}
    check_bm25(index, corpus, "set_text_fields, base and writes")
    hits = index.query(text={"cat": "c2"}, k=50, return_attributes=["cat"])
    assert len(hits) == 50 and all(h["attributes"] == {"cat": "c2"} for h in hits)


def test_bad_text_input_raises_value_error_naming_it(tmp_path):
    index = ivflake.create(str(tmp_path / "e"), d=D, factory="IVF4,Flat", text_fields={"body": "en"})
    Corpus(3).write(index, 50)
    xq = np.zeros(D, np.float32)
    with pytest.raises(ValueError, match=r'"title" is not a text field.*"body"'):
        index.query(xq, text={"title": "w1"})
    with pytest.raises(ValueError, match=r'text\["body"\] is 0 bytes'):
        index.query(text={"body": ""})
    with pytest.raises(ValueError, match=r'text\["body"\] is 1025 bytes'):
        index.query(text={"body": "w" * 1025})
    with pytest.raises(ValueError, match=r'text\["body"\] must be a str'):
        index.search(xq, K, text={"body": 3})
    with pytest.raises(ValueError, match="at least one entry"):
        index.query(xq, text={})
    with pytest.raises(ValueError, match="dict"):
        index.query(text="w1")
    with pytest.raises(ValueError, match="a vector, text queries, or both"):
        index.query()
    with pytest.raises(ValueError, match="holds 2 vectors"):
        index.query(np.zeros((2, D), np.float32), text={"body": "w1"})
    with pytest.raises(ValueError, match="d = 8"):
        index.query(np.zeros(D + 1, np.float32))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        index.query(text={"body": "w1"}, k=0)
    with pytest.raises(ValueError, match="return_attributes must be a list"):
        index.query(text={"body": "w1"}, return_attributes="cat")
    with pytest.raises(ValueError, match="return_attributes.colour"):
        index.query(text={"body": "w1"}, return_attributes=["colour"])
    with pytest.raises(ValueError, match=r"attribute_filter\.colour"):
        index.query(text={"body": "w1"}, attribute_filter={"colour": "red"})
    with pytest.raises(ValueError, match=r'text_fields\["body"\].*"xx" is not one of .*\ben\b'):
        ivflake.create(str(tmp_path / "f"), d=D, factory="IVF4,Flat", text_fields={"body": "xx"})
    with pytest.raises(ValueError, match="not one string"):
        ivflake.create(str(tmp_path / "g"), d=D, factory="IVF4,Flat", text_fields="body")
    with pytest.raises(ValueError, match="named twice"):
        index.set_text_fields(["body", "body"])
    with pytest.raises(ValueError, match="at most 10"):
        index.set_text_fields([f"c{i}" for i in range(11)])
    assert index.text_fields == {"body": "en"}
    # Without text, search is what it always was.
    Dv, Iv = index.search(xq, 3)
    assert Dv.shape == (1, 3) and Iv.dtype == np.int64


def test_the_native_docs_equal_the_stubs():
    """`help()` and editors (`_ivflake.pyi`) say the same of the new methods."""
    import ast
    import inspect
    import pathlib

    stubs = ast.parse((pathlib.Path(ivflake.__file__).parent / "_ivflake.pyi").read_text())
    (mutable,) = [n for n in stubs.body if isinstance(n, ast.ClassDef) and n.name == "MutableIndex"]
    wanted = {f.name: ast.get_docstring(f) for f in mutable.body if isinstance(f, ast.FunctionDef)
              and f.name in ("query", "set_text_fields", "text_fields")}
    assert len(wanted) == 3
    for name, doc in wanted.items():
        assert inspect.getdoc(getattr(ivflake.MutableIndex, name)) == doc, name
    assert "text=None" in str(inspect.signature(ivflake.MutableIndex.search))
