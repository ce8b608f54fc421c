"""The checksum sidecar from Python: `manifest="require"`, and a list that
fails its checksum, which `allow_partial` leaves out (in process and over HTTP)."""

import shutil
import struct
import subprocess

import faiss
import numpy as np
import pytest

import ivflake
from conftest import assert_same_as_faiss, cli_binary, expected, serve

TOKEN = "python-integrity-test-token"


def _write_sidecar(path):
    """`ivflake manifest <path>`: writes `<path>.ivfmanifest` beside the index."""
    subprocess.run([str(cli_binary()), "manifest", str(path)], check=True, capture_output=True)
    sidecar = path.with_name(path.name + ".ivfmanifest")
    assert sidecar.exists()
    return sidecar


def _list_spans(sidecar):
    """(offset, len) of each list, from the sidecar (crates/ivflake/src/manifest.rs):
    magic (8) | version u32 | file_len, header_len, header_xxh3, nlist: u64 |
    nlist x (offset, len, xxh3): u64 | xxh3 u64, all little-endian."""
    raw = sidecar.read_bytes()
    assert raw[:8] == b"IVFKMAN1"
    (nlist,) = struct.unpack_from("<Q", raw, 12 + 24)
    return [struct.unpack_from("<QQ", raw, 12 + 32 + 24 * i) for i in range(nlist)]


def test_manifest_require_refuses_an_index_without_a_sidecar(tmp_path, fixtures, manifest, queries):
    path = tmp_path / "ivfpq_l2.faiss"
    shutil.copy(fixtures / "ivfpq_l2.faiss", path)
    # The index is there: the error names the sidecar and what to do, and
    # is not IndexNotFound, which would read as if the index were missing.
    with pytest.raises(ivflake.IvflakeError, match=r"no checksum sidecar at .*\.ivfmanifest.*ivflake manifest") as e:
        ivflake.open(str(path), manifest="require")
    assert not isinstance(e.value, ivflake.IndexNotFound)
    ivflake.open(str(path))  # "auto" opens it, unverified

    _write_sidecar(path)
    index = ivflake.open(str(path), manifest="require")
    D, I = index.search(queries, manifest["k"], nprobe=manifest["nprobe"])
    assert_same_as_faiss(D, I, *expected(fixtures, "ivfpq_l2"))


def test_manifest_require_refuses_a_sidecar_of_another_file(tmp_path, fixtures):
    path = tmp_path / "ivfpq_l2.faiss"
    other = tmp_path / "ivfflat_l2.faiss"
    shutil.copy(fixtures / "ivfpq_l2.faiss", path)
    shutil.copy(fixtures / "ivfflat_l2.faiss", other)
    shutil.copy(_write_sidecar(other), path.with_name(path.name + ".ivfmanifest"))
    with pytest.raises(ivflake.CorruptIndex):
        ivflake.open(str(path), manifest="require")
    assert ivflake.open(str(path)).nlist > 0  # "auto" warns and opens it unverified


@pytest.fixture(scope="module")
def damaged(tmp_path_factory, fixtures):
    """A copy of `ivfflat_l2` with a sidecar, then one byte of its largest list
    flipped: that list fails its checksum whenever it is fetched. Returns the
    path, the list and the ids it holds."""
    path = tmp_path_factory.mktemp("damaged") / "ivfflat_l2.faiss"
    shutil.copy(fixtures / "ivfflat_l2.faiss", path)
    spans = _list_spans(_write_sidecar(path))
    victim = max(range(len(spans)), key=lambda l: spans[l][1])
    offset, length = spans[victim]
    data = bytearray(path.read_bytes())
    data[offset + length // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    ref = faiss.read_index(str(fixtures / "ivfflat_l2.faiss"))  # owns the lists read below
    invlists = faiss.extract_index_ivf(ref).invlists
    ids = faiss.rev_swig_ptr(invlists.get_ids(victim), invlists.list_size(victim)).copy()
    return path, victim, ids


def _without_the_list(fixtures, queries, ids, nlist):
    """The intact index's answer when the damaged list's rows are left out."""
    intact = ivflake.open(str(fixtures / "ivfflat_l2.faiss"))
    return intact.search(queries, 10, nprobe=nlist, filter={"deny": ids})


def test_allow_partial_leaves_out_a_list_that_fails(damaged, fixtures, queries):
    path, victim, ids = damaged
    index = ivflake.open(str(path), memory_cache_bytes=0)
    with pytest.raises(ivflake.CorruptIndex):
        index.search(queries[:20], 10, nprobe=index.nlist)

    D, I = index.search(queries[:20], 10, nprobe=index.nlist, allow_partial=True)
    assert index.last_stats["failed_lists"] == [victim]
    D_ref, I_ref = _without_the_list(fixtures, queries[:20], ids, index.nlist)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_array_equal(D, D_ref)
    assert not np.isin(I, ids).any()


def test_allow_partial_over_http(damaged, fixtures, queries):
    path, victim, ids = damaged
    with serve(cli_binary(), {"damaged": path}, TOKEN) as url:
        remote = ivflake.Client(url, token=TOKEN).index("damaged")
        nlist = remote.info()["nlist"]
        with pytest.raises(ivflake.CorruptIndex):
            remote.search(queries[:20], 10, nprobe=nlist)
        D, I = remote.search(queries[:20], 10, nprobe=nlist, allow_partial=True)
        assert remote.last_stats["failed_lists"] == [victim]
    D_ref, I_ref = _without_the_list(fixtures, queries[:20], ids, nlist)
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_allclose(D, D_ref, rtol=1e-6)
