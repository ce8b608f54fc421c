"""ivflake.open(...).search(...) returns faiss-cpu's results on faiss-cpu's files."""

import pathlib
import time

import faiss
import numpy as np
import pytest

import ivflake
from conftest import assert_agrees_with_faiss, assert_same_as_faiss, expected

SUPPORTED = [
    "ivfflat_l2",
    "ivfflat_ip",
    "ivfpq_l2",
    "ivfpq_ip",
    "ivfsq8_l2",
    "ivfsq4_ip",
    "ivfsqfp16_l2",
    "opq_ivfpq_l2",
    "opq_ivfpq_ip",
    "pca_ivfflat_l2",
    "hnsw_ivfflat_l2",
    "ivfpqfs_l2",
    "ivfpqfs_ip",
    "opq_ivfpqfs_l2",
    "opq_ivfpqfs_ip",
    "hnsw_ivfpqfs_l2",
    "ivfrabitq_l2",
    "ivfrabitq_ip",
]


def test_fixture_list_matches_the_manifest(manifest):
    assert sorted(SUPPORTED) == sorted(e["name"] for e in manifest["supported"])


@pytest.mark.parametrize("name", SUPPORTED)
def test_directory_search_equals_faiss(fixtures, manifest, queries, name):
    index = ivflake.open(str(fixtures / f"{name}.faiss"))
    D, I = index.search(queries, manifest["k"], nprobe=manifest["nprobe"])
    if name.startswith("ivfrabitq"):
        # ivflake links Faiss 1.12, whose RaBitQ scoring faiss-cpu 1.13 rewrote:
        # ivflake equals the linked Faiss exactly (the Rust equivalence tests),
        # and agrees with faiss-cpu 1.15.1 on nearly every id.
        assert_agrees_with_faiss(D, I, *expected(fixtures, name), min_agreement=0.97)
    else:
        assert_same_as_faiss(D, I, *expected(fixtures, name))


@pytest.mark.parametrize("name", ["ivfflat_l2", "ivfpq_ip", "opq_ivfpq_l2", "hnsw_ivfflat_l2", "opq_ivfpqfs_l2"])
def test_s3_search_equals_faiss(fixtures, manifest, queries, s3_uri, name):
    index = ivflake.open(s3_uri(name))
    D, I = index.search(queries, manifest["k"], nprobe=manifest["nprobe"])
    assert_same_as_faiss(D, I, *expected(fixtures, name))
    stats = index.last_stats
    assert stats["queries"] == len(queries)
    assert stats["lists_from_store"] > 0 and stats["gets"] > 0


def test_s3_store_options_override_the_environment(fixtures, manifest, queries, s3_uri, monkeypatch):
    import os

    endpoint = os.environ["AWS_ENDPOINT_URL"]
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    index = ivflake.open(s3_uri("ivfsq8_l2"), endpoint=endpoint, allow_http=True, region="us-east-1")
    D, I = index.search(queries, manifest["k"], nprobe=manifest["nprobe"])
    assert_same_as_faiss(D, I, *expected(fixtures, "ivfsq8_l2"))


def test_warm_search_reads_nothing_from_the_store(fixtures, manifest, queries):
    index = ivflake.open(fixtures / "ivfpq_l2.faiss")  # an os.PathLike works too
    opened = index.open_stats
    assert opened["gets"] >= 1 and opened["bytes"] > 0 and opened["ms"] > 0, opened
    index.search(queries, manifest["k"], nprobe=manifest["nprobe"])
    cold = index.last_stats
    D, I = index.search(queries, manifest["k"], nprobe=manifest["nprobe"])
    warm = index.last_stats
    assert cold["gets"] > 0
    assert warm["gets"] == 0 and warm["lists_from_memory"] == warm["lists_probed"]
    # Each search's store requests, priced at S3 Standard's $0.0004 per 1,000 GETs.
    assert cold["cost"]["usd"] == pytest.approx(cold["gets"] * 0.0004 / 1000)
    assert warm["cost"] == {"get_requests": 0, "list_requests": 0, "bytes": 0, "usd": 0.0}
    assert_same_as_faiss(D, I, *expected(fixtures, "ivfpq_l2"))
    info = index.cache_info()
    assert info["memory_hits"] > 0 and info["residency"]["lists_in_memory"] > 0


def test_preload_loads_every_list_and_novel_queries_read_nothing(fixtures, manifest, queries):
    index = ivflake.open(fixtures / "ivfpq_l2.faiss", preload="auto")
    status = index.preloaded()
    assert status["state"] == "done", status
    assert status["load"]["lists_loaded"] == status["lists_planned"] > 0
    assert status["load"]["failed_lists"] == []
    assert index.cache_info()["residency"]["lists_in_memory"] == status["lists_planned"]
    D, I = index.search(queries, manifest["k"], nprobe=manifest["nprobe"])
    assert index.last_stats["gets"] == 0
    assert_same_as_faiss(D, I, *expected(fixtures, "ivfpq_l2"))
    assert ivflake.open(fixtures / "ivfpq_l2.faiss").preloaded()["state"] == "off"
    with pytest.raises(ValueError, match="preload"):
        ivflake.open(fixtures / "ivfpq_l2.faiss", preload=2.0)
    with pytest.raises(ValueError, match="preload"):
        ivflake.open(fixtures / "ivfpq_l2.faiss", preload="always")


def test_faiss_read_index_side_by_side(fixtures, queries):
    """The same file read by faiss and opened by ivflake: same answer at other k and nprobe."""
    path = str(fixtures / "ivfflat_ip.faiss")
    ref = faiss.read_index(path)
    ref.nprobe = 3
    D_ref, I_ref = ref.search(queries[:20], 25)
    index = ivflake.open(path)
    index.nprobe = 3
    D, I = index.search(queries[:20], 25)
    assert_same_as_faiss(D, I, D_ref, I_ref)


def test_properties(fixtures, manifest):
    path = fixtures / "opq_ivfpq_ip.faiss"
    ref = faiss.read_index(str(path))
    index = ivflake.open(str(path))
    assert index.d == ref.d == manifest["d"]
    assert index.ntotal == ref.ntotal
    assert index.nlist == faiss.extract_index_ivf(ref).nlist
    assert index.metric == "inner_product"
    assert "IndexIVFPQ" in index.type and index.type.startswith("LinearTransform,")  # OPQ
    # A directory store gives every file an ETag, so the version is that, not
    # the size `version` falls back to; the same file opened again has the same one.
    assert index.version not in ("", str(path.stat().st_size))
    assert ivflake.open(str(path)).version == index.version
    assert index.nprobe == faiss.extract_index_ivf(ref).nprobe
    index.nprobe = 7
    assert index.nprobe == 7
    assert index.uri == str(path)
    assert "nprobe=7" in repr(index)
    assert ivflake.open(str(fixtures / "ivfflat_l2.faiss")).metric == "l2"


def test_version_is_the_installed_package_s():
    import importlib.metadata

    assert ivflake.__version__ == importlib.metadata.version("ivflake")


def test_input_forms_give_the_same_results(fixtures, manifest, queries):
    index = ivflake.open(str(fixtures / "ivfsq8_l2.faiss"))
    k, nprobe = manifest["k"], manifest["nprobe"]
    D, I = index.search(queries[:5], k, nprobe=nprobe)
    for form in (
        queries[:5].astype(np.float64),  # converted
        np.asfortranarray(queries[:5]),  # made C-contiguous
        queries[:5].tolist(),  # a list of lists
        np.ascontiguousarray(np.repeat(queries[:5], 2, axis=0)[::2]),  # a copy of a strided view
        np.repeat(queries[:5], 2, axis=0)[::2],  # a strided view itself
    ):
        D2, I2 = index.search(form, k, nprobe=nprobe)
        np.testing.assert_array_equal(I2, I)
        np.testing.assert_array_equal(D2, D)
    D1, I1 = index.search(queries[3], k, nprobe=nprobe)  # one 1-D vector is one query
    assert D1.shape == (1, k)
    np.testing.assert_array_equal(I1[0], I[3])


def test_fewer_neighbours_than_k_are_minus_one(fixtures, queries):
    index = ivflake.open(str(fixtures / "ivfflat_l2.faiss"))
    D, I = index.search(queries[:2], 10, filter={"allow": [5, 17, 4000]}, nprobe=64)
    assert I.shape == (2, 10)
    assert set(I[0][:3]) == {5, 17, 4000}
    assert (I[:, 3:] == -1).all()


def test_id_filters_match_faiss_selectors(fixtures, manifest, queries):
    path = str(fixtures / "ivfflat_l2.faiss")
    ref = faiss.read_index(path)
    index = ivflake.open(path)
    k, nprobe = manifest["k"], manifest["nprobe"]
    allowed = np.arange(0, 6000, 3, dtype=np.int64)
    cases = [
        ({"ids": allowed}, faiss.IDSelectorBatch(allowed)),
        ({"filter": {"allow": allowed.tolist()}}, faiss.IDSelectorBatch(allowed)),
        ({"filter": {"deny": allowed}}, faiss.IDSelectorNot(faiss.IDSelectorBatch(allowed))),
        ({"filter": {"range": [1000, 3000]}}, faiss.IDSelectorRange(1000, 3000)),
        ({"filter": {"range": {"start": 1000, "end": 3000}}}, faiss.IDSelectorRange(1000, 3000)),
    ]
    for kwargs, selector in cases:
        params = faiss.SearchParametersIVF(sel=selector, nprobe=nprobe)
        D_ref, I_ref = ref.search(queries[:50], k, params=params)
        D, I = index.search(queries[:50], k, nprobe=nprobe, **kwargs)
        assert_same_as_faiss(D, I, D_ref, I_ref)


def test_warm_then_search_hits_memory(fixtures, manifest, queries):
    index = ivflake.open(str(fixtures / "ivfsq4_ip.faiss"))
    report = index.warm(list(range(index.nlist)))
    assert report["lists_from_store"] > 0 and report["failed_lists"] == []
    index.search(queries, manifest["k"], nprobe=manifest["nprobe"])
    assert index.last_stats["gets"] == 0
    again = index.warm(largest=4)
    assert again["lists_already_in_memory"] == again["lists_requested"] == 4


def test_version_is_the_objects_etag(gated_s3):
    index = ivflake.open(gated_s3.uri, **gated_s3.options)
    assert index.version == gated_s3.etag


def test_warm_most_probed_loads_the_lists_searches_probed(fixtures, manifest, queries):
    # Without a memory tier every warm-up fetches what it names, so the
    # report counts exactly the lists it chose.
    uncached = ivflake.open(str(fixtures / "ivfflat_l2.faiss"), memory_cache_bytes=0)
    assert uncached.warm(most_probed=8)["lists_requested"] == 0  # nothing probed yet
    for _ in range(3):
        uncached.search(queries[:1], 10, nprobe=3)
    probed = uncached.last_stats["lists_probed"]
    report = uncached.warm(most_probed=8)
    assert report["lists_requested"] == report["lists_from_store"] == probed
    assert uncached.warm(most_probed=1)["lists_requested"] == 1

    # With a memory tier: the lists chosen are the ones the search put there.
    cached = ivflake.open(str(fixtures / "ivfflat_l2.faiss"))
    cached.search(queries[:1], 10, nprobe=3)
    report = cached.warm(most_probed=8)
    assert report["lists_requested"] == report["lists_already_in_memory"] == probed
    assert report["gets"] == 0


def test_reload_switches_to_the_new_version(tmp_path, fixtures, manifest, queries):
    path = tmp_path / "index.faiss"
    path.write_bytes((fixtures / "ivfflat_l2.faiss").read_bytes())
    index = ivflake.open(str(path))
    assert index.metric == "l2"
    before = index.version
    path.write_bytes((fixtures / "ivfflat_ip.faiss").read_bytes())
    index.reload()
    assert index.metric == "inner_product"
    assert index.version != before
    D, I = index.search(queries, manifest["k"], nprobe=manifest["nprobe"])
    assert_same_as_faiss(D, I, *expected(fixtures, "ivfflat_ip"))


def test_disk_cache_serves_a_second_open(tmp_path, fixtures, manifest, queries):
    src = fixtures / "ivfpq_l2.faiss"
    cache = tmp_path / "cache"
    first = ivflake.open(str(src), disk_cache_dir=str(cache), disk_cache_bytes=64 << 20, memory_cache_bytes=0)
    report = first.warm(list(range(first.nlist)))
    # Disk writes finish in the background; wait (bounded) until all are there.
    for _ in range(200):
        if first.cache_info()["residency"]["lists_on_disk"] >= report["lists_from_store"]:
            break
        time.sleep(0.05)
    del first
    second = ivflake.open(str(src), disk_cache_dir=cache, memory_cache_bytes=0)
    D, I = second.search(queries, manifest["k"], nprobe=manifest["nprobe"])
    assert_same_as_faiss(D, I, *expected(fixtures, "ivfpq_l2"))
    assert second.last_stats["lists_from_disk"] > 0
    assert second.cache_info()["disk_enabled"] is True
    assert any(pathlib.Path(cache).rglob("*.ivl"))


def test_help_shows_the_full_docs_of_the_stubs():
    """`help(ivflake.open)` and `help(Index.search)` give the whole text, with
    parameters, errors and an example: the native docstrings equal the
    stubs' (`_ivflake.pyi`, what editors read), so neither drifts."""
    import ast
    import inspect

    stubs = ast.parse((pathlib.Path(ivflake.__file__).parent / "_ivflake.pyi").read_text())
    wanted = {}
    for node in stubs.body:
        if isinstance(node, ast.FunctionDef) and node.name == "open":
            wanted[ivflake.open] = ast.get_docstring(node)
        if isinstance(node, ast.ClassDef) and node.name == "Index":
            for f in node.body:
                if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and f.name in ("search", "search_async"):
                    wanted[getattr(ivflake.Index, f.name)] = ast.get_docstring(f)
    assert len(wanted) == 3
    for obj, doc in wanted.items():
        assert inspect.getdoc(obj) == doc, obj.__name__
    assert "Example::" in inspect.getdoc(ivflake.open) and "Raises" in inspect.getdoc(ivflake.open)
    assert "nprobe" in str(inspect.signature(ivflake.Index.search))
