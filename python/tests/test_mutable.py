"""Mutable indexes through Python against faiss-cpu: 20 batches of upserts
(new and overwriting ids) and deletes on faiss-cpu-written IVF-Flat, IVF-PQ
and IVF-SQ8 files equal faiss-cpu after the same `remove_ids` +
`add_with_ids` on the same base, from a directory and from moto; equal again
after `compact`, and `faiss.read_index` of the new base file equals it too.
A filtered search equals faiss with an `IDSelectorBatch`."""

import os
import uuid

import faiss
import numpy as np
import pytest

import ivflake

FIXTURES = ["ivfflat_l2", "ivfpq_l2", "ivfsq8_l2"]
BATCHES = 20


def same(D, I, D_ref, I_ref, exact):
    """Per query, the ids strictly inside the k-th distance agree (ties at the
    boundary may pick either), and the distances too for exact codecs."""
    for q in range(len(I)):
        last = D_ref[q].max()
        inside = set(I_ref[q][D_ref[q] < last])
        assert inside <= set(I[q]), (q, I[q], I_ref[q])
        if exact:
            np.testing.assert_allclose(np.sort(D[q]), np.sort(D_ref[q]), rtol=1e-4, atol=1e-3)


def run_writes(index, reference, d, nb, queries, k, nprobe, exact):
    rng = np.random.default_rng(7)
    for batch in range(BATCHES):
        new = 1_000_000 + batch * 30 + np.arange(30)
        old = rng.choice(nb, 10, replace=False)
        ids = np.unique(np.concatenate([new, old])).astype(np.int64)
        xb = rng.standard_normal((len(ids), d)).astype(np.float32)
        index.upsert(xb, ids)
        reference.remove_ids(ids)
        reference.add_with_ids(xb, ids)
        if batch % 3 == 1:
            gone = rng.choice(nb, 15, replace=False).astype(np.int64)
            index.delete(gone)
            reference.remove_ids(gone)
        if batch % 5 == 4:
            D, I = index.search(queries, k, nprobe=nprobe)
            same(D, I, *reference.search(queries, k), exact)
            assert index.last_stats["log_position"] == index.log_position
    allowed = np.concatenate([np.arange(0, nb, 3), 1_000_000 + np.arange(300)]).astype(np.int64)
    D, I = index.search(queries, k, nprobe=nprobe, ids=allowed)
    params = faiss.SearchParametersIVF(sel=faiss.IDSelectorBatch(allowed), nprobe=nprobe)
    same(D, I, *reference.search(queries, k, params=params), exact)


@pytest.mark.parametrize("name", FIXTURES)
@pytest.mark.parametrize("where", ["directory", "moto"])
def test_writes_equal_faiss_cpu(name, where, fixtures, manifest, queries, s3_uri, tmp_path):
    k, nprobe = manifest["k"], manifest["nprobe"]
    path = fixtures / f"{name}.faiss"
    reference = faiss.read_index(str(path))
    reference.nprobe = nprobe
    if where == "moto":
        base = s3_uri(name)
        root = f"s3://{os.environ['IVFLAKE_S3_BUCKET']}/mutable-py/{name}-{uuid.uuid4().hex}/"
    else:
        base = str(path)
        root = str(tmp_path / name)
    index = ivflake.create(root, from_uri=base)
    assert isinstance(ivflake.open(root), ivflake.MutableIndex)
    exact = "flat" in name
    run_writes(index, reference, reference.d, reference.ntotal, queries, k, nprobe, exact)
    expected = reference.search(queries, k)

    report = index.compact()
    assert report["entries"] == reference.ntotal
    assert index.unindexed == 0
    D, I = index.search(queries, k, nprobe=nprobe)
    same(D, I, *expected, exact)
    # The new base is a standard file faiss-cpu reads, with the same answers.
    if where == "directory":
        compacted = faiss.read_index(index.base_uri)
    else:
        plain = ivflake.open(index.base_uri)
        assert plain.ntotal == reference.ntotal
        compacted = None
    if compacted is not None:
        compacted.nprobe = nprobe
        assert compacted.ntotal == reference.ntotal
        same(*compacted.search(queries, k), *expected, exact)
    assert index.compact() is None


def test_empty_index_trains_on_first_compaction(tmp_path):
    d = 16
    rng = np.random.default_rng(3)
    xb = rng.standard_normal((600, d)).astype(np.float32)
    ids = np.arange(600, dtype=np.int64) * 2
    index = ivflake.create(str(tmp_path / "e"), d=d, metric="l2", factory="IVF8,Flat")
    index.upsert(xb, ids)
    # Exact before training: faiss's brute force on the same vectors.
    flat = faiss.IndexIDMap(faiss.IndexFlatL2(d))
    flat.add_with_ids(xb, ids)
    D, I = index.search(xb[:20], 5)
    D_ref, I_ref = flat.search(xb[:20], 5)
    same(D, I, D_ref, I_ref, True)
    report = index.compact()
    assert report["trained"] and index.nlist == 8
    trained = faiss.read_index(index.base_uri)
    assert trained.nlist == 8 and trained.ntotal == 600


def test_bad_writes_raise_value_error(tmp_path):
    index = ivflake.create(str(tmp_path / "b"), d=4, factory="IVF4,Flat")
    with pytest.raises(ValueError, match="d = 4"):
        index.upsert(np.zeros((2, 3), np.float32), [1, 2])
    with pytest.raises(ValueError, match="twice"):
        index.upsert(np.zeros((2, 4), np.float32), [1, 1])
    with pytest.raises(ValueError, match="non-finite"):
        index.upsert(np.full((1, 4), np.nan, np.float32), [1])
    with pytest.raises(ValueError, match="ids for"):
        index.upsert(np.zeros((2, 4), np.float32), [1])
    assert index.log_position is None


def test_writes_with_attributes_filter_like_faiss_cpu(tmp_path):
    """Attributes given as a dict of columns, a list of dicts and (when
    installed) a pyarrow Table; a filtered search equals faiss-cpu with an
    IDSelectorBatch of exactly the matching ids, before and after the
    compaction that trains the index."""
    d, n = 16, 2000
    rng = np.random.default_rng(11)
    xb = rng.standard_normal((n, d)).astype(np.float32)
    ids = np.arange(n, dtype=np.int64) * 3
    color = rng.choice(["red", "green", "blue"], n)
    price = rng.uniform(0, 100, n)
    index = ivflake.create(str(tmp_path / "a"), d=d, factory="IVF16,Flat")
    index.upsert(xb, ids, attributes={"color": color, "price": price})
    # Overwrite 200 ids: new vectors, new rows (some without a price).
    again = ids[:200]
    xb2 = rng.standard_normal((200, d)).astype(np.float32)
    rows = [{"color": "red", "price": None if i % 4 == 0 else float(i)} for i in range(200)]
    index.upsert(xb2, again, attributes=rows)
    xb[:200], color[:200] = xb2, "red"
    price[:200] = [np.nan if i % 4 == 0 else float(i) for i in range(200)]
    gone = ids[500:600]
    index.delete(gone)
    live = np.ones(n, bool)
    live[500:600] = False

    flt = {"color": "red", "price": {"$lt": 50}}
    match = ids[live & (color == "red") & (price < 50)]
    queries = rng.standard_normal((20, d)).astype(np.float32)
    exact = faiss.IndexIDMap(faiss.IndexFlatL2(d))
    exact.add_with_ids(xb[live], ids[live])
    params = faiss.SearchParameters(sel=faiss.IDSelectorBatch(match))
    D, I = index.search(queries, 10, attribute_filter=flt)
    same(D, I, *exact.search(queries, 10, params=params), True)
    assert set(I.ravel()) - {-1} <= set(match)

    report = index.compact()
    assert report["trained"] and index.nlist == 16
    trained = faiss.read_index(index.base_uri)
    params = faiss.SearchParametersIVF(sel=faiss.IDSelectorBatch(match), nprobe=8)
    D, I = index.search(queries, 10, nprobe=8, attribute_filter=flt)
    same(D, I, *trained.search(queries, 10, params=params), True)

    with pytest.raises(ValueError, match=r"attributes\[0\]\.color"):
        index.upsert(xb[:1], ids[:1], attributes=[{"color": 5}])
    with pytest.raises(ValueError, match="rows for"):
        index.upsert(xb[:2], ids[:2], attributes=[{"color": "red"}])
    pa = pytest.importorskip("pyarrow")
    table = pa.table({"color": ["blue"], "price": [1.0]})
    index.upsert(xb[:1], ids[:1], attributes=table)
    D, I = index.search(xb[:1], 1, nprobe=16, attribute_filter={"color": "blue", "price": 1.0})
    assert I[0, 0] == ids[0]


def test_get_returns_vectors_and_attributes_as_written(tmp_path):
    """`get` returns each id's raw vector bit for bit and its attributes,
    from the log and, after compaction, from the kept rows; absent and
    deleted ids give NaN rows and None."""
    d, n = 8, 500
    rng = np.random.default_rng(5)
    xb = rng.standard_normal((n, d)).astype(np.float32)
    ids = np.arange(n, dtype=np.int64) + 100
    index = ivflake.create(str(tmp_path / "g"), d=d, factory="IVF4,Flat")
    index.upsert(xb, ids, attributes={"k": [int(i % 5) for i in ids]})
    index.delete(ids[:3])
    for when in ["in the log", "compacted"]:
        want = np.concatenate([ids[:5], [7]])
        got, attrs = index.get(want)
        assert np.isnan(got[:3]).all() and np.isnan(got[5]).all(), when
        assert attrs[:3] == [None] * 3 and attrs[5] is None, when
        np.testing.assert_array_equal(got[3:5], xb[3:5])
        assert attrs[3:5] == [{"k": int(ids[3] % 5)}, {"k": int(ids[4] % 5)}], when
        index.compact()
    report = index.compact(retrain=True)
    assert report["trained"] and report["entries"] == n - 3
    got, _ = index.get(ids[3:6])
    np.testing.assert_array_equal(got, xb[3:6])
    bare = ivflake.create(str(tmp_path / "h"), d=d, factory="IVF4,Flat", keep_vectors=False)
    bare.upsert(xb[:2], ids[:2], attributes=[{"a": "x"}, {"a": "y"}])
    got, attrs = bare.get(ids[:2])
    assert np.isnan(got).all() and attrs == [{"a": "x"}, {"a": "y"}]
    with pytest.raises(ivflake.UnsupportedIndex, match="vectors"):
        bare.compact(retrain=True)
