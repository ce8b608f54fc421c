"""Attribute filters from Python: `ivflake attributes` attaches a Parquet
table to an index faiss-cpu built (joined on its ids), then
`Index.search(..., attribute_filter=...)` returns what faiss-cpu returns with
an IDSelector of exactly the matching ids."""

import os
import shutil
import subprocess

import faiss
import numpy as np
import pyarrow.parquet as pq
import pytest

import ivflake
from conftest import cli_binary


@pytest.fixture(scope="module")
def attached(fixtures, tmp_path_factory):
    path = tmp_path_factory.mktemp("attrs") / "idx.faiss"
    shutil.copy(fixtures / "attrs_ivfflat.faiss", path)
    subprocess.run(
        [str(cli_binary()), "attributes", str(path), "--from", str(fixtures / "attrs_ivfflat.parquet"),
         "--id-column", "id"],
        check=True, capture_output=True, env=dict(os.environ, OMP_WAIT_POLICY="PASSIVE"),
    )
    assert (path.parent / "idx.faiss.attrs.parquet").exists()
    return path


def test_attribute_filter_equals_faiss_with_the_matching_ids(fixtures, attached):
    table = pq.read_table(fixtures / "attrs_ivfflat.parquet").to_pydict()
    xq = np.load(fixtures / "attrs_queries.npy")
    index = ivflake.open(str(attached))
    for flt, keep in [
        ({"tag": "b"}, lambda t, s: t == "b"),
        ({"tag": {"$in": ["a", "c"]}, "score": {"$lt": 0.5}}, lambda t, s: t != "b" and s < 0.5),
        ('{"$or": [{"score": {"$gte": 0.9}}, {"tag": "c"}]}', lambda t, s: s >= 0.9 or t == "c"),
    ]:
        allowed = np.array(sorted(i for i, t, s in zip(table["id"], table["tag"], table["score"]) if keep(t, s)),
                           dtype="int64")
        D, I = index.search(xq, 5, nprobe=4, attribute_filter=flt)
        ref = faiss.read_index(str(fixtures / "attrs_ivfflat.faiss"))
        params = faiss.SearchParametersIVF(nprobe=4, sel=faiss.IDSelectorBatch(allowed))
        D_ref, I_ref = ref.search(xq, 5, params=params)
        np.testing.assert_array_equal(I, I_ref)
        np.testing.assert_allclose(D, D_ref, rtol=1e-5)
        assert np.isin(I[I >= 0], allowed).all()


def test_bad_attribute_filters_raise_value_error_naming_the_path(attached, fixtures):
    index = ivflake.open(str(attached))
    xq = np.load(fixtures / "attrs_queries.npy")
    with pytest.raises(ValueError, match=r"attribute_filter\.score\.\$gt"):
        index.search(xq, 5, attribute_filter={"score": {"$gt": "high"}})
    with pytest.raises(ValueError, match=r"attribute_filter\.colour: unknown column"):
        index.search(xq, 5, attribute_filter={"colour": "red"})


def test_the_client_filters_by_attributes_and_returns_them_like_index(attached, fixtures):
    """`Client.search(attribute_filter=, return_attributes=)` over `ivflake
    serve` gives `Index.search`'s (D, I), and the hits' attributes."""
    from conftest import serve

    table = pq.read_table(fixtures / "attrs_ivfflat.parquet").to_pydict()
    tags = dict(zip(table["id"], table["tag"]))
    xq = np.load(fixtures / "attrs_queries.npy")
    local = ivflake.open(str(attached))
    with serve(cli_binary(), {"a": attached}, None) as url:
        remote = ivflake.Client(url).index("a")
        flt = {"tag": {"$in": ["a", "c"]}}
        D, I = remote.search(xq, 5, nprobe=4, attribute_filter=flt, return_attributes=["tag"])
        D_local, I_local = local.search(xq, 5, nprobe=4, attribute_filter=flt)
        np.testing.assert_array_equal(I, I_local)
        np.testing.assert_allclose(D, D_local, rtol=1e-6)
        assert len(remote.last_attributes) == len(xq)
        for ids, rows in zip(I, remote.last_attributes):
            for i, row in zip(ids, rows):
                if i >= 0:
                    assert row["tag"] == tags[i] and row["tag"] in ("a", "c")
