"""The files people write for big indexes, through the Python package and the
HTTP client: refined (`RFlat`, `Refine(SQfp16)`), id-mapped (`IDMap`,
`IDMap2`) and on-disk (`merge_ondisk`) indexes written by faiss-cpu, checked
against faiss-cpu searching the same files in this process."""

import faiss
import numpy as np
import pytest

import ivflake
from conftest import assert_same_as_faiss, cli_binary, serve


def faiss_search(index, xq, k, nprobe, k_factor=None):
    ivf = faiss.SearchParametersIVF(nprobe=nprobe)
    if k_factor is None:
        return index.search(xq, k, params=ivf)
    return index.search(xq, k, params=faiss.IndexRefineSearchParameters(k_factor=k_factor, base_index_params=ivf))


def test_refined_and_id_mapped_indexes_equal_faiss_cpu_at_every_k_factor(fixtures, manifest, queries):
    k, nprobe = manifest["k"], manifest["nprobe"]
    assert len(manifest["wrapped"]) >= 5
    for w in manifest["wrapped"]:
        path = str(fixtures / f"{w['name']}.faiss")
        ours = ivflake.open(path)
        reference = faiss.read_index(path)
        for kf in w["k_factors"] or [None]:
            D, I = ours.search(queries, k, nprobe=nprobe, k_factor=kf)
            assert_same_as_faiss(D, I, *faiss_search(reference, queries, k, nprobe, kf))
            stats = ours.last_stats
            if kf is not None:
                assert stats["refine_candidates"] > 0 and stats["refine_bytes"] > 0, stats


def test_id_maps_return_and_filter_by_user_ids(fixtures, queries):
    name = "idmap2_ivfpq_rflat_l2"
    user_ids = np.load(fixtures / f"{name}.user_ids.npy")
    index = ivflake.open(str(fixtures / f"{name}.faiss"))
    D, I = index.search(queries[:20], 10, nprobe=8)
    assert set(I[I >= 0].tolist()) <= set(user_ids.tolist())
    allowed = user_ids[::3]
    D, I = index.search(queries[:20], 10, nprobe=8, ids=allowed.tolist())
    reference = faiss.read_index(str(fixtures / f"{name}.faiss"))
    sel = faiss.IDSelectorBatch(allowed)
    params = faiss.IndexRefineSearchParameters(base_index_params=faiss.SearchParametersIVF(nprobe=8, sel=sel))
    # IndexIDMap translates the selector for its sub-index only when it is
    # handed one: Faiss's own id-map search, here through the base params.
    mapped = faiss.IDSelectorTranslated(faiss.downcast_index(reference).id_map, sel)
    params.base_index_params.sel = mapped
    D_ref, I_ref = faiss.downcast_index(reference).index.search(queries[:20], 10, params=params)
    I_ref = np.where(I_ref >= 0, user_ids[np.maximum(I_ref, 0)], -1)
    assert_same_as_faiss(D, I, D_ref, I_ref)
    assert set(I[I >= 0].tolist()) <= set(allowed.tolist())


def test_on_disk_indexes_equal_faiss_cpu_reading_them(fixtures, manifest, queries):
    k, nprobe = manifest["k"], manifest["nprobe"]
    for o in manifest["on_disk"]:
        path = str(fixtures / f"{o['name']}.faiss")
        D, I = ivflake.open(path).search(queries, k, nprobe=nprobe)
        reference = faiss.read_index(path)  # maps the .ivfdata the header names
        assert_same_as_faiss(D, I, *faiss_search(reference, queries, k, nprobe))


def test_bad_k_factor_is_a_value_error(fixtures):
    index = ivflake.open(str(fixtures / "ivfpq_rflat_l2.faiss"))
    with pytest.raises(ValueError, match="k_factor"):
        index.search(np.zeros((1, index.d), "float32"), 10, k_factor=0.5)


def test_the_client_passes_k_factor(fixtures, queries):
    name = "ivfpq_rsqfp16_l2"
    with serve(cli_binary(), {"r": fixtures / f"{name}.faiss"}, None) as url:
        remote = ivflake.Client(url).index("r")
        local = ivflake.open(str(fixtures / f"{name}.faiss"))
        for kf in (1, 4, 16):
            # Binary bodies carry k_factor in the query string, JSON bodies in the body.
            for kwargs in ({}, {"attribute_filter": None, "ids": list(range(0, 6000, 2))}):
                D_r, I_r = remote.search(queries[:5], 10, nprobe=8, k_factor=kf, **kwargs)
                D_l, I_l = local.search(queries[:5], 10, nprobe=8, k_factor=kf, **kwargs)
                np.testing.assert_array_equal(I_r, I_l)
                np.testing.assert_allclose(D_r, D_l, rtol=1e-6)
        with pytest.raises(ValueError, match="k_factor"):
            remote.search(queries[:1], 10, k_factor=1000)


def test_a_paged_id_map_answers_the_same_and_refuses_id_filters(fixtures, queries):
    path = str(fixtures / "idmap2_ivfpq_rflat_l2.faiss")
    resident = ivflake.open(path)
    paged = ivflake.open(path, id_map_memory_bytes=0)
    D1, I1 = resident.search(queries[:10], 10, nprobe=8)
    D2, I2 = paged.search(queries[:10], 10, nprobe=8)
    np.testing.assert_array_equal(I1, I2)
    np.testing.assert_array_equal(D1, D2)
    assert paged.last_stats["id_map_gets"] > 0
    with pytest.raises(ValueError, match="id_map_memory_bytes"):
        paged.search(queries[:1], 10, ids=I1[0].tolist())
