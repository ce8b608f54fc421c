"""The measured inputs of docs/scaling.md (the plan for one billion vectors):
what a vector costs in each codec's lists, and what the header costs, in
bytes and in open time, as nlist grows. A bench, not a test.

Usage (from the repo root; the venv `make test` makes, with the ivflake
package installed in it):

    OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_scaling \
        --out docs/data/scaling.json
    .venv/bin/python -m benchmarks.plot_scaling docs/data/scaling.json --out docs/img/scaling.png

`--quick` checks the script in a minute or two (fewer vectors, nlist 1024
and 4096 only). Data come from common.py's generator (fixed seeds); nothing
is downloaded. Files go to --work (under /tmp) and are deleted once measured
unless --keep.

Part 1, codecs. For each --dims d and each codec (Flat, SQ8, PQ32,
PQ32x4fs, RaBitQ): `IVF<--codec-nlist>,<codec>` by faiss-cpu's
index_factory, trained on --train vectors and filled with --n, written with
faiss.write_index. Measured:
  - list bytes, from the file's own list table: array lists (every codec
    but fast-scan) hold n × (code_size + 8) bytes a list (codes, then 8-byte
    ids); block lists (fast-scan) hold two u64 counts, n ids and
    ceil(n / 32) blocks of 32 codes. Bytes per vector = list bytes / ntotal.
  - the same bytes as ivflake sees them: `bytes_probed` of one cold search
    (memory cache 0) probing every list;
  - warm single-query searches through ivflake (every list in the memory
    cache, 0 GETs): `scan_ms` over the codes the probed lists hold, so
    nanoseconds per code scanned, and `quantizer_ms`, `total_ms`;
  - the same queries through ivflake's disk tier (memory cache 0, the lists
    on --work's disk, which the OS page cache holds at this size);
  - faiss-cpu searching the file in memory, one thread, for reference.

Part 2, header against nlist. For each --sweep-dims d, nlist in --nlists and
codec SQ8 and PQ32, a file made without training on millions of vectors:
  - centroids: nlist vectors from the generator (a random draw, not
    k-means), added to an IndexFlatL2 (and, for --hnsw-nlists at the largest
    sweep dimension, to an IndexHNSWFlat(d, 32) with efSearch --ef-search);
  - the IVF (IndexIVFScalarQuantizer QT_8bit, or IndexIVFPQ M=32 nbits=8,
    residual codes) built on that quantizer; its codec trained once per d
    on 9,984 residuals (the noise below) and copied into every nlist's
    index, which is then marked trained;
  - max(nlist, --min-add) vectors, each one centroid plus gaussian noise
    (std --noise), added with `add_core` under their own centroid as the
    precomputed assignment (no search over nlist centroids), so every list
    is non-empty and the file's list table is the full one a large index
    has.
Measured: file bytes, list bytes (as above), header bytes = file − list
bytes; `ivflake.open(path)` from the local directory --reps times after one
untimed open (page cache warm), wall time and `open_stats`; the resident
memory an open adds and its peak; the quantizer's time per single query inside ivflake
(`quantizer_ms` at nprobe --nprobe) and in faiss-cpu (one thread);
faiss-cpu's read_index of the whole file, for reference. The memory is measured in fresh processes (--mem-reps): one opens a tiny
index first (runtime, store, Faiss statics), then this file; the figures are
VmRSS after the open and VmHWM during it (reset through clear_refs), each
over VmRSS before it.

The JSON holds every figure, the environment and the run's seconds.
"""
import argparse
import gc
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import faiss
import numpy as np

from benchmarks.common import Generator, log, pct

# Factory strings of the codecs, as docs/scaling.md names them. `PQ32np`:
# the same codes and file size as `PQ32`, without the polysemous training
# (about 12 s of two cores and nothing a search reads; docs/benchmarks.md,
# "make test on a fresh clone").
CODECS = {"Flat": "Flat", "SQ8": "SQ8", "PQ32": "PQ32np", "PQ32x4fs": "PQ32x4fs", "RaBitQ": "RaBitQ"}
# Faiss warns below 39 training points per centroid: 39 × 256 for PQ's 8-bit codebooks.
PQ_TRAIN = 9984
PQ_M = 32
SEED = 42


def median(xs):
    return float(statistics.median(xs)) if xs else None


def list_bytes_of(index):
    """The bytes of the file's inverted lists and their sizes: array lists
    n × (code_size + 8); block lists (fast-scan) 16 + 8n + ceil(n/bbs) × block_size."""
    ivf = faiss.extract_index_ivf(index)
    il = faiss.downcast_InvertedLists(ivf.invlists)
    sizes = np.fromiter((il.list_size(i) for i in range(ivf.nlist)), dtype=np.int64, count=ivf.nlist)
    if isinstance(il, faiss.BlockInvertedLists):
        blocks = -(-sizes // il.n_per_block)
        total = int((16 + 8 * sizes + blocks * il.block_size).sum())
        layout = {"kind": "block", "n_per_block": int(il.n_per_block), "block_size": int(il.block_size)}
    else:
        total = int((sizes * (il.code_size + 8)).sum())
        layout = {"kind": "array", "code_size": int(il.code_size)}
    return total, sizes, layout


def probed_codes(quantizer, sizes, xq, nprobe):
    """Codes each query's probed lists hold (what its scan reads)."""
    faiss.omp_set_num_threads(1)
    _, lists = quantizer.search(xq, nprobe)
    return [int(sizes[row[row >= 0]].sum()) for row in lists]


def time_faiss_cpu(index, xq, k, nprobe, passes=2):
    """Single-query search times of faiss-cpu in memory, one thread; the last pass."""
    faiss.omp_set_num_threads(1)
    faiss.extract_index_ivf(index).nprobe = nprobe
    ms = []
    for _ in range(passes):
        ms = []
        for i in range(len(xq)):
            t = time.perf_counter()
            index.search(xq[i:i + 1], k)
            ms.append((time.perf_counter() - t) * 1e3)
    return ms


def stats_rows(index, xq, k, nprobe, passes=2):
    """`last_stats` of single-query ivflake searches; the last pass's."""
    rows = []
    for _ in range(passes):
        rows = []
        for i in range(len(xq)):
            index.search(xq[i:i + 1], k, nprobe=nprobe)
            rows.append(dict(index.last_stats))
    return rows


def stat_summary(rows, codes):
    def col(name):
        return [float(r[name]) for r in rows]
    scan_ns = [r["scan_ms"] * 1e6 / c for r, c in zip(rows, codes) if c]
    return {
        "total_ms_p50": pct(col("total_ms"), 50),
        "total_ms_p99": pct(col("total_ms"), 99),
        "quantizer_ms_p50": pct(col("quantizer_ms"), 50),
        "fetch_ms_p50": pct(col("fetch_ms"), 50),
        "scan_ms_p50": pct(col("scan_ms"), 50),
        "scan_ns_per_code_p50": pct(scan_ns, 50),
        "codes_per_query_mean": float(np.mean(codes)),
        "lists_from_memory_mean": float(np.mean(col("lists_from_memory"))),
        "lists_from_disk_mean": float(np.mean(col("lists_from_disk"))),
        "lists_from_store_mean": float(np.mean(col("lists_from_store"))),
        "gets_mean": float(np.mean(col("gets"))),
        "n": len(rows),
    }


def wait_disk_tier(index, want_bytes, seconds=30):
    """Waits for the background disk writes to hold `want_bytes` (or to stop
    growing for two seconds, or the time to pass); returns cache_info."""
    deadline = time.time() + seconds
    last, since = -1, time.time()
    info = index.cache_info()
    while time.time() < deadline:
        info = index.cache_info()
        now = info.get("disk_resident_bytes", 0)
        if now >= want_bytes:
            break
        if now != last:
            last, since = now, time.time()
        elif now > 0 and time.time() - since > 2:
            break
        time.sleep(0.1)
    return info


# ---------------------------------------------------------------- part 1: codecs


def measure_codecs(ivflake, a, d, work):
    gen = Generator(d, SEED)
    xb = gen.chunk(0, 0, a.n)
    xq = gen.chunk(1, 0, a.nq)
    rows = []
    for name, factory in CODECS.items():
        path = os.path.join(work, f"codec-d{d}-{name}.faiss")
        log(f"d={d} {name}: IVF{a.codec_nlist},{factory}, train {a.train}, add {a.n}")
        faiss.omp_set_num_threads(a.build_threads)
        t0 = time.perf_counter()
        index = faiss.index_factory(d, f"IVF{a.codec_nlist},{factory}")
        index.train(xb[:a.train])
        t1 = time.perf_counter()
        index.add(xb)
        t2 = time.perf_counter()
        faiss.write_index(index, path)
        file_bytes = os.path.getsize(path)
        list_bytes, sizes, layout = list_bytes_of(index)
        ivf = faiss.extract_index_ivf(index)
        row = {
            "d": d, "codec": name, "factory": f"IVF{a.codec_nlist},{factory}", "type": type(index).__name__,
            "nlist": a.codec_nlist, "ntotal": int(index.ntotal), "code_size": int(ivf.code_size),
            "file_bytes": file_bytes, "list_bytes": list_bytes, "header_bytes": file_bytes - list_bytes,
            "bytes_per_vector": list_bytes / index.ntotal,
            "code_plus_id_bytes": ivf.code_size + 8,
            "list_layout": layout, "list_size_min": int(sizes.min()), "list_size_max": int(sizes.max()),
            "train_s": t1 - t0, "add_s": t2 - t1,
        }
        codes = probed_codes(ivf.quantizer, sizes, xq, a.codec_nprobe)

        # What ivflake reads: one cold search probing every list.
        cold = ivflake.open(path, memory_cache_bytes=0)
        cold.search(xq[:1], 10, nprobe=a.codec_nlist)
        s = cold.last_stats
        row["ivflake_full_scan"] = {k: s[k] for k in ("lists_probed", "gets", "bytes_fetched", "bytes_probed")}
        row["ivflake_type"] = cold.type
        del cold

        # Warm: every list in the memory cache.
        warm = ivflake.open(path, memory_cache_bytes=2 * file_bytes + (64 << 20))
        row["ivflake_warm_load"] = warm.warm(largest=a.codec_nlist)
        row["ivflake_warm"] = stat_summary(stats_rows(warm, xq, 10, a.codec_nprobe), codes)
        del warm

        # The disk tier: memory cache 0, every list on --work's disk.
        disk_dir = tempfile.mkdtemp(prefix="disk-", dir=work)
        disk = ivflake.open(path, memory_cache_bytes=0, disk_cache_dir=disk_dir,
                            disk_cache_bytes=4 * file_bytes + (64 << 20))
        disk.search(xq[:1], 10, nprobe=a.codec_nlist)  # every list once, written in the background
        info = wait_disk_tier(disk, row["ivflake_full_scan"]["bytes_probed"])
        row["ivflake_disk"] = stat_summary(stats_rows(disk, xq, 10, a.codec_nprobe), codes)
        row["ivflake_disk"]["disk_resident_bytes"] = info.get("disk_resident_bytes")
        del disk
        shutil.rmtree(disk_dir, ignore_errors=True)

        ms = time_faiss_cpu(index, xq, 10, a.codec_nprobe)
        row["faiss_cpu_in_memory"] = {
            "total_ms_p50": pct(ms, 50), "total_ms_p99": pct(ms, 99),
            "ns_per_code_p50": pct([m * 1e6 / c for m, c in zip(ms, codes) if c], 50), "n": len(ms),
        }
        log(f"  {row['bytes_per_vector']:.2f} B/vector; ivflake warm scan "
            f"{row['ivflake_warm']['scan_ns_per_code_p50']:.1f} ns/code, total p50 {row['ivflake_warm']['total_ms_p50']:.3f} ms")
        row["load_average"] = os.getloadavg()
        rows.append(row)
        del index
        if not a.keep:
            os.remove(path)
    return rows


# ---------------------------------------------------------------- part 2: header against nlist


def trained_codecs(d, noise, seed):
    """An SQ8 and a PQ32 codec trained on residuals like those of part 2's
    vectors (the noise around their centroid), to copy into every nlist's index."""
    res = (noise * np.random.default_rng([seed, d, 7]).standard_normal((PQ_TRAIN, d))).astype("float32")
    tmp_q = faiss.IndexFlatL2(d)
    tmp_q.add(np.zeros((1, d), dtype="float32"))
    sq = faiss.IndexIVFScalarQuantizer(tmp_q, d, 1, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2)
    sq.sq.train(res)
    pq = faiss.IndexIVFPQ(tmp_q, d, 1, PQ_M, 8)
    t = time.perf_counter()
    pq.pq.train(res)
    return {"SQ8": sq, "PQ32": pq, "pq_train_s": time.perf_counter() - t, "tmp_q": tmp_q}


def build_sweep_file(quantizer, d, nlist, codec, trained, xb, assign, path):
    if codec == "SQ8":
        index = faiss.IndexIVFScalarQuantizer(quantizer, d, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2)
        index.sq = trained["SQ8"].sq
    else:
        index = faiss.IndexIVFPQ(quantizer, d, nlist, PQ_M, 8)
        index.pq = trained["PQ32"].pq
    index.is_trained = True
    index.add_core(len(xb), faiss.swig_ptr(xb), None, faiss.swig_ptr(assign))
    faiss.write_index(index, path)
    return index


# Resident memory of one open, in a fresh process: a small index is opened
# first (the tokio runtime, the store and Faiss's statics), so the difference
# is this index's header alone; an allocator that reused freed memory would
# hide it inside a process that opened the file before.
MEMORY_PROBE = r"""
import json, sys
import ivflake
def kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
baseline = ivflake.open(sys.argv[1])
before = kib("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # VmHWM := VmRSS
index = ivflake.open(sys.argv[2])
print(json.dumps({"before_kib": before, "after_kib": kib("VmRSS"), "peak_kib": kib("VmHWM")}))
"""


def baseline_index(work):
    path = os.path.join(work, "baseline-IVF4-Flat-d8.faiss")
    if not os.path.exists(path):
        x = np.random.default_rng(SEED).standard_normal((256, 8)).astype("float32")
        index = faiss.index_factory(8, "IVF4,Flat")
        index.train(x)
        index.add(x)
        faiss.write_index(index, path)
    return path


def memory_of_open(path, work, reps):
    rows = []
    for _ in range(reps):
        done = subprocess.run([sys.executable, "-c", MEMORY_PROBE, baseline_index(work), path],
                              capture_output=True, text=True, env=dict(os.environ))
        if done.returncode != 0:
            raise RuntimeError(f"memory probe of {path} failed:\n{done.stderr[-2000:]}")
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    return {
        "rss_after_open_bytes_median": median([(r["after_kib"] - r["before_kib"]) * 1024 for r in rows]),
        "rss_peak_during_open_bytes_median": median([(r["peak_kib"] - r["before_kib"]) * 1024 for r in rows]),
        "memory_probes": rows,
    }


def measure_open(ivflake, path, reps, nprobe, xq, work, mem_reps):
    gc.collect()
    probe = ivflake.open(path)  # untimed: the page cache holds the file after it
    del probe
    gc.collect()
    walls, stats = [], []
    for _ in range(reps):
        gc.collect()
        t = time.perf_counter()
        index = ivflake.open(path)
        walls.append((time.perf_counter() - t) * 1e3)
        stats.append(dict(index.open_stats))
        del index
    out = {
        "reps": reps,
        "wall_ms": walls, "wall_ms_median": median(walls),
        "open_stats_ms_median": median([s["ms"] for s in stats]),
        "open_stats": stats[0],
    }
    out.update(memory_of_open(path, work, mem_reps))
    # The quantizer inside ivflake: single queries (their few lists come cold
    # from the local directory; quantizer_ms is timed apart from that).
    index = ivflake.open(path)
    rows = stats_rows(index, xq, 10, nprobe, passes=1)
    out["ivflake_quantizer_ms_p50"] = pct([r["quantizer_ms"] for r in rows], 50)
    out["ivflake_total_ms_p50"] = pct([r["total_ms"] for r in rows], 50)
    out["ivflake_type"] = index.type
    del index
    gc.collect()
    return out


def faiss_read_ms(path, reps=3):
    """faiss-cpu's read_index of the whole file from the page cache (the
    reference for open; IVF-PQ's precomputed table skipped, as ivflake's
    default skips it past 64 MiB)."""
    ms = []
    for _ in range(reps):
        t = time.perf_counter()
        index = faiss.read_index(path, faiss.IO_FLAG_SKIP_PRECOMPUTE_TABLE)
        ms.append((time.perf_counter() - t) * 1e3)
        del index
    return median(ms)


def quantizer_ms(quantizer, xq, nprobe):
    faiss.omp_set_num_threads(1)
    ms = []
    for i in range(len(xq)):
        t = time.perf_counter()
        quantizer.search(xq[i:i + 1], nprobe)
        ms.append((time.perf_counter() - t) * 1e3)
    return pct(ms, 50)


def sweep(ivflake, a, d, work, with_hnsw):
    gen = Generator(d, SEED)
    xq = gen.chunk(1, 0, a.nq_quantizer)
    faiss.omp_set_num_threads(a.build_threads)
    trained = trained_codecs(d, a.noise, SEED)
    log(f"d={d}: SQ8 and PQ32 codecs trained on {PQ_TRAIN} residuals (PQ: {trained['pq_train_s']:.1f} s)")
    rows = []
    for nlist in a.nlists:
        faiss.omp_set_num_threads(a.build_threads)
        centroids = gen.chunk(2, 0, nlist)
        n_add = max(nlist, a.min_add)
        assign = (np.arange(n_add) % nlist).astype("int64")
        rng = np.random.default_rng([SEED, d, nlist])
        xb = centroids[assign] + (a.noise * rng.standard_normal((n_add, d), dtype="float32"))
        quantizers = [("flat", faiss.IndexFlatL2(d), 0.0)]
        quantizers[0][1].add(centroids)
        if with_hnsw and nlist in a.hnsw_nlists:
            h = faiss.IndexHNSWFlat(d, 32)
            t = time.perf_counter()
            h.add(centroids)
            h.hnsw.efSearch = a.ef_search
            quantizers.append(("HNSW32", h, time.perf_counter() - t))
        for qname, quantizer, q_build_s in quantizers:
            q_ms = quantizer_ms(quantizer, xq, a.nprobe)
            codecs = ["SQ8", "PQ32"] if qname == "flat" else ["PQ32"]
            for codec in codecs:
                path = os.path.join(work, f"sweep-d{d}-{qname}-IVF{nlist}-{codec}.faiss")
                faiss.omp_set_num_threads(a.build_threads)
                t = time.perf_counter()
                index = build_sweep_file(quantizer, d, nlist, codec, trained, xb, assign, path)
                build_s = time.perf_counter() - t
                file_bytes = os.path.getsize(path)
                list_bytes, sizes, layout = list_bytes_of(index)
                header = file_bytes - list_bytes
                row = {
                    "d": d, "nlist": nlist, "codec": codec, "quantizer": qname,
                    "ef_search": a.ef_search if qname != "flat" else None,
                    "ntotal": int(index.ntotal), "empty_lists": int((sizes == 0).sum()),
                    "file_bytes": file_bytes, "list_bytes": list_bytes, "header_bytes": header,
                    "header_bytes_per_list": header / nlist,
                    "centroid_bytes": nlist * d * 4, "list_sizes_table_bytes": 8 * nlist,
                    "quantizer_build_s": q_build_s, "add_and_write_s": build_s,
                    "faiss_cpu_quantizer_ms_p50": q_ms, "nprobe": a.nprobe,
                }
                del index
                gc.collect()
                row.update(measure_open(ivflake, path, a.reps, a.nprobe, xq, work, a.mem_reps))
                row["faiss_cpu_read_index_ms_median"] = faiss_read_ms(path)
                row["load_average"] = os.getloadavg()
                log(f"d={d} IVF{nlist} {qname} {codec}: header {header / 2**20:.2f} MiB, open "
                    f"{row['wall_ms_median']:.1f} ms (stats {row['open_stats_ms_median']:.1f}), "
                    f"RSS +{row['rss_after_open_bytes_median'] / 2**20:.1f} MiB, quantizer "
                    f"{row['ivflake_quantizer_ms_p50']:.3f} ms in ivflake, {q_ms:.3f} ms in faiss-cpu")
                rows.append(row)
                if not a.keep:
                    os.remove(path)
        del quantizers, xb, centroids
        gc.collect()
    return rows


def environment(ivflake):
    def git(*args):
        try:
            return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return None
    rabitq = {"factory": "IVF256,RaBitQ"}
    try:
        rabitq["type"] = type(faiss.index_factory(768, "IVF256,RaBitQ")).__name__
        rabitq["supported"] = True
    except Exception as e:  # noqa: BLE001 - recorded, not raised: the doc says so
        rabitq.update(supported=False, error=str(e))
    return {
        "python": platform.python_version(), "faiss_cpu": faiss.__version__, "numpy": np.__version__,
        "ivflake": getattr(ivflake, "__version__", None), "ivflake_module": os.path.relpath(ivflake.__file__, os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
        "git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
        "cpus": os.cpu_count(), "machine": platform.machine(),
        "mem_total_gib": os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30,
        "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY"),
        "OPENBLAS_NUM_THREADS": os.environ.get("OPENBLAS_NUM_THREADS"),
        "rabitq": rabitq,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="docs/data/scaling.json")
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "ivflake-scaling"))
    p.add_argument("--quick", action="store_true", help="a small run that checks the script")
    p.add_argument("--keep", action="store_true", help="keep the index files in --work")
    p.add_argument("--dims", default="128,768", help="part 1: dimensions")
    p.add_argument("--n", type=int, default=32768, help="part 1: vectors per codec index")
    p.add_argument("--train", type=int, default=PQ_TRAIN, help="part 1: training vectors")
    # 32768 / 8 = 4096 vectors a list on average, the order of a list of a
    # billion vectors in 262,144 lists (3,815), so per-list costs (PQ's
    # distance table) weigh about as they would there.
    p.add_argument("--codec-nlist", type=int, default=8, help="part 1: lists (n / nlist vectors a list)")
    p.add_argument("--codec-nprobe", type=int, default=4, help="part 1: nprobe of the timed searches")
    p.add_argument("--nq", type=int, default=100, help="part 1: single-query searches per row")
    p.add_argument("--sweep-dims", default="768,128", help="part 2: dimensions")
    p.add_argument("--nlists", default="1024,4096,16384,65536,262144", help="part 2: nlist values")
    p.add_argument("--hnsw-nlists", default="65536,262144",
                   help="part 2: nlists that also get an HNSW32 quantizer (PQ32, at the first --sweep-dims only)")
    p.add_argument("--ef-search", type=int, default=128, help="part 2: the HNSW quantizer's efSearch")
    p.add_argument("--min-add", type=int, default=16384, help="part 2: at least this many vectors a file")
    p.add_argument("--noise", type=float, default=0.05, help="part 2: std of a vector around its centroid")
    p.add_argument("--reps", type=int, default=5, help="part 2: timed opens per file (after one untimed)")
    p.add_argument("--mem-reps", type=int, default=3, help="part 2: fresh processes measuring an open's memory")
    p.add_argument("--nprobe", type=int, default=32, help="part 2: nprobe of the quantizer timings")
    p.add_argument("--nq-quantizer", type=int, default=20, help="part 2: single queries per quantizer timing")
    p.add_argument("--build-threads", type=int, default=os.cpu_count() or 1)
    a = p.parse_args()
    if a.quick:
        a.n, a.nq, a.reps, a.nq_quantizer, a.mem_reps = 8192, 30, 3, 10, 1
        a.nlists, a.hnsw_nlists, a.min_add = "1024,4096", "4096", 4096
    a.dims = [int(x) for x in a.dims.split(",") if x]
    a.sweep_dims = [int(x) for x in a.sweep_dims.split(",") if x]
    a.nlists = [int(x) for x in a.nlists.split(",")]
    a.hnsw_nlists = [int(x) for x in a.hnsw_nlists.split(",") if x]
    a.train = min(a.train, a.n)

    import ivflake  # after argparse, so --help works without the package

    os.makedirs(a.work, exist_ok=True)
    start = time.time()
    result = {
        "what": "bytes per vector by codec, header and open against nlist (docs/scaling.md)",
        "args": {k: v for k, v in vars(a).items()},
        "environment": environment(ivflake),
        "load_average_start": os.getloadavg(),
    }
    out_dir = os.path.dirname(a.out)
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)

    def save():
        result["seconds"] = time.time() - start
        result["load_average_end"] = os.getloadavg()
        with open(a.out, "w") as f:
            json.dump(result, f, indent=1)

    result["codecs"] = []
    for d in a.dims:
        result["codecs"] += measure_codecs(ivflake, a, d, a.work)
        save()
    result["nlist_sweep"] = []
    for i, d in enumerate(a.sweep_dims):
        result["nlist_sweep"] += sweep(ivflake, a, d, a.work, with_hnsw=(i == 0))
        save()
    save()
    if not a.keep:
        shutil.rmtree(a.work, ignore_errors=True)
    log(f"wrote {a.out} in {result['seconds']:.0f} s")


if __name__ == "__main__":
    sys.exit(main())
