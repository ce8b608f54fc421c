"""ivflake quick start: build a Faiss index, put it in a directory (or S3),
search it with ivflake cold and warm, check recall against faiss-cpu in
memory, and plot the latency of all three.

    make deps && make python-dev          # a venv with faiss-cpu, matplotlib and ivflake
    .venv/bin/python examples/quickstart.py
    # S3 instead of a directory: set AWS_ENDPOINT_URL (and credentials; the
    # bucket is $IVFLAKE_S3_BUCKET, default ivflake-quickstart, created if missing)

Everything is generated from a fixed seed; nothing is downloaded.
"""

import argparse
import os
import pathlib
import time

import faiss
import numpy as np

import ivflake


def make_data(n, nq, d, seed=0):
    """Clustered vectors, like embeddings: queries near the data, not uniform noise."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(256, d)).astype("float32") * 3
    xb = centers[rng.integers(0, len(centers), n)] + rng.normal(size=(n, d)).astype("float32")
    xq = centers[rng.integers(0, len(centers), nq)] + rng.normal(size=(nq, d)).astype("float32")
    return xb.astype("float32"), xq.astype("float32")


def store_index(path, args):
    """The index's URI: a file in --dir, or an object in S3 when AWS_ENDPOINT_URL is set."""
    if not os.environ.get("AWS_ENDPOINT_URL"):
        return str(path)
    import boto3  # only needed for the S3 variant

    bucket = os.environ.get("IVFLAKE_S3_BUCKET", "ivflake-quickstart")
    s3 = boto3.client("s3", endpoint_url=os.environ["AWS_ENDPOINT_URL"])
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)
    key = f"quickstart/{path.name}"
    s3.upload_file(str(path), bucket, key)
    return f"s3://{bucket}/{key}"


def per_query_ms(search, xq):
    """Latency of each single-query search, in milliseconds."""
    out = np.empty(len(xq))
    for i in range(len(xq)):
        start = time.perf_counter()
        search(xq[i : i + 1])
        out[i] = (time.perf_counter() - start) * 1000
    return out


def recall_at_k(found, truth):
    k = truth.shape[1]
    hits = sum(len(set(f[f >= 0]) & set(t[t >= 0])) for f, t in zip(found, truth))
    return hits / (len(truth) * k)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", default="quickstart-data", help="where the index file goes")
    parser.add_argument("--n", type=int, default=200_000, help="vectors in the index")
    parser.add_argument("--d", type=int, default=64, help="dimension")
    parser.add_argument("--queries", type=int, default=300, help="single-query searches per method")
    parser.add_argument("--factory", default="IVF1024,PQ16", help="faiss.index_factory string")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--nprobe", type=int, default=16)
    # The tracked docs/quickstart-latency.png changes only when asked for (--plot docs/quickstart-latency.png).
    parser.add_argument("--plot", default=None, help="PNG to write [default: latency.png under --dir; '' for none]")
    args = parser.parse_args()
    if args.plot is None:
        args.plot = str(pathlib.Path(args.dir) / "latency.png")

    # 1. Build an index with faiss-cpu.
    xb, xq = make_data(args.n, args.queries, args.d)
    started = time.perf_counter()
    index = faiss.index_factory(args.d, args.factory)
    index.train(xb[: min(len(xb), 100_000)])
    index.add(xb)
    print(f"built {args.factory} over {args.n} x {args.d} in {time.perf_counter() - started:.1f} s")

    # 2. Write it where ivflake will read it.
    out = pathlib.Path(args.dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.faiss"
    faiss.write_index(index, str(path))
    uri = store_index(path, args)
    print(f"index file: {uri} ({path.stat().st_size / 2**20:.1f} MiB)")

    # faiss-cpu in memory: the reference, and exact neighbours for recall.
    reference = faiss.read_index(str(path))
    faiss.extract_index_ivf(reference).nprobe = args.nprobe
    exact = faiss.IndexFlatL2(args.d)
    exact.add(xb)
    _, I_exact = exact.search(xq, args.k)

    # 3. Open with ivflake (reads only the header) and search.
    # Cold: no memory cache, so every search fetches the lists it probes.
    cold = ivflake.open(uri, memory_cache_bytes=0)
    warm = ivflake.open(uri)
    print(f"opened {warm!r}")
    for idx in (cold, warm):
        idx.nprobe = args.nprobe

    lat_cold = per_query_ms(lambda q: cold.search(q, args.k), xq)
    cold_stats = cold.last_stats
    warm.warm(list(range(warm.nlist)))  # or simply search once: lists stay cached
    lat_warm = per_query_ms(lambda q: warm.search(q, args.k), xq)
    lat_faiss = per_query_ms(lambda q: reference.search(q, args.k), xq)

    D_ivflake, I_ivflake = warm.search(xq, args.k)
    D_faiss, I_faiss = reference.search(xq, args.k)
    print(f"the last cold search: {cold_stats['lists_probed']} lists probed, {cold_stats['gets']} GETs,"
          f" {cold_stats['bytes_fetched'] / 1024:.0f} KiB fetched")
    # Order can differ among neighbours at equal distance: faiss-cpu's wheel and
    # the libfaiss ivflake links are different builds and round differently.
    same_rows = int((I_ivflake == I_faiss).all(axis=1).sum())
    print(f"recall@{args.k} of ivflake against faiss-cpu in memory: {recall_at_k(I_ivflake, I_faiss):.4f}"
          f" ({same_rows}/{len(xq)} queries with the very same ids in the same order)")
    print(f"recall@{args.k} against exact search: ivflake {recall_at_k(I_ivflake, I_exact):.4f},"
          f" faiss {recall_at_k(I_faiss, I_exact):.4f}")

    rows = [("ivflake cold (no cache)", lat_cold), ("ivflake warm", lat_warm), ("faiss in memory", lat_faiss)]
    print(f"\nsingle-query latency over {args.queries} queries, k={args.k}, nprobe={args.nprobe}:")
    print(f"{'':24} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}")
    for name, lat in rows:
        p50, p90, p99 = np.percentile(lat, [50, 90, 99])
        print(f"{name:24} {p50:8.3f} {p90:8.3f} {p99:8.3f}")

    # 4. The plot.
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
        for (name, lat), color in zip(rows, ("tab:blue", "tab:orange", "tab:green")):
            ordered = np.sort(lat)
            ax.plot(ordered, np.arange(1, len(ordered) + 1) / len(ordered), label=name, color=color)
        ax.set_xscale("log")
        ax.set_xlabel("single-query latency (ms, log scale)")
        ax.set_ylabel("fraction of queries")
        where = "S3" if uri.startswith("s3://") else "a local directory"
        ax.set_title(f"{args.factory}, {args.n:,} x {args.d}, k={args.k}, nprobe={args.nprobe}, from {where}",
                     fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        pathlib.Path(args.plot).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.plot)
        print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
