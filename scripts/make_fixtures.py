"""Writes index fixtures with a current faiss-cpu from PyPI, plus faiss-cpu's
own search results, so the Rust tests can check ivflake against them.

Usage: python scripts/make_fixtures.py OUT_DIR
Everything is generated from fixed seeds; nothing is downloaded.
"""
import json
import os
import sys

import faiss
import numpy as np

D = 32
N = 6000
NQ = 200
K = 10
NPROBE = 8

# (name, factory, metric, nprobe)
SUPPORTED = [
    ("ivfflat_l2", "IVF64,Flat", faiss.METRIC_L2),
    ("ivfflat_ip", "IVF64,Flat", faiss.METRIC_INNER_PRODUCT),
    # faiss-cpu's default PQ training (polysemous codebook order) once; the
    # others skip it ("np"): it costs about 12 s each and changes nothing a
    # search reads.
    ("ivfpq_l2", "IVF64,PQ8", faiss.METRIC_L2),
    ("ivfpq_ip", "IVF64,PQ8np", faiss.METRIC_INNER_PRODUCT),
    ("ivfsq8_l2", "IVF64,SQ8", faiss.METRIC_L2),
    ("ivfsq4_ip", "IVF64,SQ4", faiss.METRIC_INNER_PRODUCT),
    ("ivfsqfp16_l2", "IVF64,SQfp16", faiss.METRIC_L2),
    ("opq_ivfpq_l2", "OPQ8,IVF64,PQ8np", faiss.METRIC_L2),
    ("opq_ivfpq_ip", "OPQ8,IVF64,PQ8np", faiss.METRIC_INNER_PRODUCT),
    ("pca_ivfflat_l2", "PCA16,IVF64,Flat", faiss.METRIC_L2),
    ("hnsw_ivfflat_l2", "IVF64_HNSW16,Flat", faiss.METRIC_L2),
    # Fast-scan PQ: block lists ("ilbl"), 4-bit codes packed 32 vectors a block.
    ("ivfpqfs_l2", "IVF64,PQ8x4fs", faiss.METRIC_L2),
    ("ivfpqfs_ip", "IVF64,PQ8x4fs", faiss.METRIC_INNER_PRODUCT),
    ("opq_ivfpqfs_l2", "OPQ8,IVF64,PQ8x4fs", faiss.METRIC_L2),
    ("opq_ivfpqfs_ip", "OPQ8,IVF64,PQ8x4fs", faiss.METRIC_INNER_PRODUCT),
    ("hnsw_ivfpqfs_l2", "IVF64_HNSW16,PQ16x4fs", faiss.METRIC_L2),
    # RaBitQ (Faiss >= 1.11): 1-bit codes in plain array lists.
    ("ivfrabitq_l2", "IVF64,RaBitQ", faiss.METRIC_L2),
    ("ivfrabitq_ip", "IVF64,RaBitQ", faiss.METRIC_INNER_PRODUCT),
]

# Wrapped indexes: refine (re-ranking) and id maps, searched by faiss-cpu at
# each k_factor. (name, factory, metric)
WRAPPED = [
    ("ivfpq_rflat_l2", "IVF64,PQ8np,RFlat", faiss.METRIC_L2),
    ("ivfpq_rsqfp16_l2", "IVF64,PQ8np,Refine(SQfp16)", faiss.METRIC_L2),
    ("opq_ivfpq_rflat_ip", "OPQ8,IVF64,PQ8np,RFlat", faiss.METRIC_INNER_PRODUCT),
    ("idmap2_ivfpq_rflat_l2", "IDMap2,IVF64,PQ8np,RFlat", faiss.METRIC_L2),
    ("idmap_ivfflat_ip", "IDMap,IVF64,Flat", faiss.METRIC_INNER_PRODUCT),
]
K_FACTORS = [1, 4, 16]

# On-disk lists: shards merged with faiss.contrib.ondisk.merge_ondisk, as
# Faiss's recipe for big indexes does; each beside a plain file of the same
# vectors (its "twin"), whose lists hold the same entries in the same order.
ON_DISK = [
    ("ondisk_ivfflat_l2", "IVF64,Flat", faiss.METRIC_L2),
    ("ondisk_ivfpq_l2", "IVF64,PQ8np", faiss.METRIC_L2),
]

UNSUPPORTED = [
    # Written by faiss-cpu >= 1.13 in formats Faiss 1.12 does not know.
    ("ivfrabitq_fastscan", "IVF64,RaBitQfs", faiss.METRIC_L2),
    ("ivfrabitq_4bit", "IVF64,RaBitQ4", faiss.METRIC_L2),
    ("hnsw_flat", "HNSW16", faiss.METRIC_L2),
    ("idmap_flat", "IDMap,Flat", faiss.METRIC_L2),
    # Fast-scan block lists inside a refine index: not served yet.
    ("ivfpqfs_rflat", "IVF64,PQ8x4fs,RFlat", faiss.METRIC_L2),
]


def data():
    rng = np.random.default_rng(7)
    centers = rng.normal(size=(40, D)).astype("float32") * 4
    xb = centers[rng.integers(0, 40, N)] + rng.normal(size=(N, D)).astype("float32")
    xq = centers[rng.integers(0, 40, NQ)] + rng.normal(size=(NQ, D)).astype("float32")
    return xb.astype("float32"), xq.astype("float32")


def attributes_fixture(out, xb, xq):
    """An index built by faiss-cpu with its own ids (add_with_ids) and, apart,
    a Parquet table of attributes keyed by those ids, for `ivflake attributes`."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(11)
    ids = (50_000 + 7 * rng.permutation(N)).astype("int64")
    index = faiss.index_factory(D, "IVF32,Flat", faiss.METRIC_L2)
    index.train(xb)
    index.add_with_ids(xb, ids)
    faiss.write_index(index, os.path.join(out, "attrs_ivfflat.faiss"))
    # Rows in another order than the index's, so the join is tested.
    order = rng.permutation(N)
    table = pa.table(
        {
            "id": pa.array(ids[order], pa.int64()),
            "tag": pa.array(rng.choice(["a", "b", "c"], N).tolist(), pa.string()),
            "score": pa.array(rng.random(N), pa.float64()),
        }
    )
    pq.write_table(table, os.path.join(out, "attrs_ivfflat.parquet"))
    np.save(os.path.join(out, "attrs_queries.npy"), xq[:20])


def user_ids(n, seed):
    """Distinct ids drawn from the whole positive 63-bit range."""
    rng = np.random.default_rng(seed)
    ids = np.unique(rng.integers(0, 2**63 - 1, size=n + 100, dtype=np.int64))
    return rng.permutation(ids)[:n].astype("int64")


def wrapped_fixture(out, name, factory, metric, xb, xq):
    index = faiss.index_factory(D, factory, metric)
    index.train(xb)
    if factory.startswith("IDMap"):
        ids = user_ids(N, 23)
        index.add_with_ids(xb, ids)
        np.save(os.path.join(out, name + ".user_ids.npy"), ids)
    else:
        index.add(xb)
    faiss.write_index(index, os.path.join(out, name + ".faiss"))
    ivf = faiss.SearchParametersIVF(nprobe=NPROBE)
    refined = "RFlat" in factory or "Refine" in factory
    for kf in K_FACTORS if refined else [0]:
        if refined:
            params = faiss.IndexRefineSearchParameters(k_factor=kf, base_index_params=ivf)
        else:
            params = ivf
        dist, ids = index.search(xq, K, params=params)
        np.save(os.path.join(out, f"{name}.kf{kf}.ids.npy"), ids.astype("int64"))
        np.save(os.path.join(out, f"{name}.kf{kf}.dist.npy"), dist.astype("float32"))
    return {
        "name": name,
        "factory": factory,
        "metric": "ip" if metric == faiss.METRIC_INNER_PRODUCT else "l2",
        "k_factors": K_FACTORS if refined else [],
    }


def on_disk_fixture(out, name, factory, metric, xb, xq):
    from faiss.contrib.ondisk import merge_ondisk

    trained = faiss.index_factory(D, factory, metric)
    trained.train(xb)
    empty = faiss.serialize_index(trained)
    twin = faiss.deserialize_index(empty)
    twin.add(xb)
    faiss.write_index(twin, os.path.join(out, name + ".twin.faiss"))
    shards = []
    for i, part in enumerate(np.array_split(np.arange(N), 3)):
        shard = faiss.deserialize_index(empty)
        shard.add_with_ids(xb[part], part.astype("int64"))
        shards.append(os.path.join(out, f"{name}.shard{i}.tmp"))
        faiss.write_index(shard, shards[-1])
    index = faiss.deserialize_index(empty)
    merge_ondisk(index, shards, os.path.join(out, name + ".ivfdata"))
    faiss.write_index(index, os.path.join(out, name + ".faiss"))
    for shard in shards:
        os.remove(shard)
    faiss.extract_index_ivf(index).nprobe = NPROBE
    dist, ids = index.search(xq, K)
    np.save(os.path.join(out, name + ".ids.npy"), ids.astype("int64"))
    np.save(os.path.join(out, name + ".dist.npy"), dist.astype("float32"))
    return {"name": name, "factory": factory, "metric": "ip" if metric == faiss.METRIC_INNER_PRODUCT else "l2"}


def main(out):
    os.makedirs(out, exist_ok=True)
    xb, xq = data()
    np.save(os.path.join(out, "queries.npy"), xq)
    manifest = {"d": D, "k": K, "nprobe": NPROBE, "faiss_version": faiss.__version__, "supported": [], "unsupported": []}
    for name, factory, metric in SUPPORTED:
        try:
            index = faiss.index_factory(D, factory, metric)
        except RuntimeError:
            # An older faiss-cpu (for the version matrix in docs) lacks the type.
            manifest.setdefault("skipped", []).append(name)
            continue
        index.train(xb)
        index.add(xb)
        faiss.write_index(index, os.path.join(out, name + ".faiss"))
        faiss.extract_index_ivf(index).nprobe = NPROBE
        dist, ids = index.search(xq, K)
        np.save(os.path.join(out, name + ".ids.npy"), ids.astype("int64"))
        np.save(os.path.join(out, name + ".dist.npy"), dist.astype("float32"))
        manifest["supported"].append(
            {"name": name, "factory": factory, "metric": "ip" if metric == faiss.METRIC_INNER_PRODUCT else "l2"}
        )
    manifest["wrapped"] = []
    for w in WRAPPED:
        try:
            manifest["wrapped"].append(wrapped_fixture(out, *w, xb, xq))
        except RuntimeError as e:
            # An older faiss-cpu (for the version matrix in docs) lacks the
            # type, or its factory nests the wrappers otherwise.
            print(f"{w[0]}: {e}".splitlines()[0], file=sys.stderr)
            manifest.setdefault("skipped", []).append(w[0])
    manifest["on_disk"] = [on_disk_fixture(out, *o, xb, xq) for o in ON_DISK]
    for name, factory, metric in UNSUPPORTED:
        try:
            index = faiss.index_factory(D, factory, metric)
        except RuntimeError:
            manifest.setdefault("skipped", []).append(name)
            continue
        index.train(xb)
        if name == "idmap_flat":
            index.add_with_ids(xb, np.arange(N, dtype="int64"))
        else:
            index.add(xb)
        faiss.write_index(index, os.path.join(out, name + ".faiss"))
        manifest["unsupported"].append({"name": name, "factory": factory})
    binary = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(64), 64, 8)
    bits = np.random.default_rng(3).integers(0, 256, size=(2000, 8)).astype("uint8")
    binary.train(bits)
    binary.add(bits)
    faiss.write_index_binary(binary, os.path.join(out, "binary_ivf.faiss"))
    manifest["unsupported"].append({"name": "binary_ivf", "factory": "BIVF8"})
    attributes_fixture(out, xb, xq)
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"wrote {len(SUPPORTED)} supported and {len(manifest['unsupported'])} unsupported fixtures to {out}")


if __name__ == "__main__":
    main(sys.argv[1])
