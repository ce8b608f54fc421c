"""Writes the warm benchmark's index files with faiss-cpu (docs/benchmarks.md,
"Warm latency by list layout"): 200k clustered 64-d vectors (the shape
`ivflake bench` uses), IVF1024 with Flat, SQ8, PQ16, PQ16x4fs and RaBitQ,
all sharing one trained coarse quantizer, plus 200 queries as .npy and raw
float32 (for benchmarks/faiss_scan_bench.cc).

Usage (from the repo root):
    python -m benchmarks.bench_files OUT_DIR
"""
import os
import sys

import faiss
import numpy as np

N, D, NLIST, NQ = 200_000, 64, 1024, 200
CODECS = {"flat": "Flat", "sq8": "SQ8", "pq16": "PQ16np", "pq16x4fs": "PQ16x4fs", "rabitq": "RaBitQ"}


def main(out):
    os.makedirs(out, exist_ok=True)
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(2000, D)).astype("float32") * 3
    xb = (centers[rng.integers(0, 2000, N)] + rng.normal(size=(N, D))).astype("float32")
    xq = (centers[rng.integers(0, 2000, NQ)] + rng.normal(size=(NQ, D))).astype("float32")
    np.save(os.path.join(out, "queries.npy"), xq)
    xq.tofile(os.path.join(out, "queries.f32"))
    train = xb[: NLIST * 40]
    coarse = faiss.IndexFlatL2(D)
    faiss.Clustering(D, NLIST).train(train, coarse)
    for name, codec in CODECS.items():
        index = faiss.index_factory(D, f"IVF{NLIST},{codec}")
        ivf = faiss.extract_index_ivf(index)
        ivf.quantizer.add(coarse.reconstruct_n(0, NLIST))
        index.train(train)
        index.add(xb)
        faiss.write_index(index, os.path.join(out, f"{name}.faiss"))
        print(name, os.path.getsize(os.path.join(out, f"{name}.faiss")), flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
