"""Does reading ahead into lists no query asked for pay? A trace-driven study
over a stream of novel queries with a byte-bounded LRU list cache, as
ivflake's memory cache is. A bench, not a test.

Usage (from the repo root; the index from bench_scale.py, or any IVF file):

    .venv/bin/python -m benchmarks.bench_readahead --index /tmp/ivflake-scale/local/index.faiss \
        --d 96 --out docs/data/bench_readahead.json

The probes are real: Faiss's quantizer on the file's own centroids, for
queries from common.py's generator (a stream the index never saw), and
the GETs are planned as the library plans them (lists at most --gap bytes
apart share a GET). What each policy adds to a GET:

  probed    nothing: the probed lists that miss, as ivflake fetches today
  gap       also keep the unprobed lists that lie wholly inside a merged
            GET (their bytes arrive anyway, so they cost nothing)
  next-B    extend every GET by up to B bytes of the lists that follow it
            in the file (read-ahead into file neighbours)
  rank-M    also fetch, in the same wave, the M lists ranked just after
            nprobe by centroid distance (neighbours in space, not in file)

A query's time is modelled from the store's cost: 0 when every probed list
is cached (a warm search, about a millisecond), else one round trip
(--rtt-ms) plus the transfer of the largest GET of its wave at
--mbps per connection. The model's parameters are the 10M run's measured
ones (docs/benchmarks.md: 24 ms per bare GET through the proxy; ivflake
bench's 100 MB/s per connection). Reports, per policy and cache size: the
share of queries that needed the store, bytes fetched per query, and the
modelled mean and p50/p99.
"""
import argparse
import bisect
import json
import sys
from collections import OrderedDict

import numpy as np

from benchmarks.common import Generator


class Lru:
    """Lists by bytes, least recently used out first (moka's TinyLFU aside)."""

    def __init__(self, capacity):
        self.capacity, self.used, self.items = capacity, 0, OrderedDict()

    def hit(self, lst):
        if lst in self.items:
            self.items.move_to_end(lst)
            return True
        return False

    def put(self, lst, size):
        if lst in self.items or size > self.capacity:
            return
        self.items[lst] = size
        self.used += size
        while self.used > self.capacity:
            _, s = self.items.popitem(last=False)
            self.used -= s


def plan(missing, offsets, sizes, gap):
    """Missing lists sorted by offset, grouped into GETs as the library does."""
    groups, cur = [], []
    for lst in sorted(missing, key=lambda i: offsets[i]):
        if cur and offsets[lst] - (offsets[cur[-1]] + sizes[cur[-1]]) > gap:
            groups.append(cur)
            cur = []
        cur.append(lst)
    if cur:
        groups.append(cur)
    return groups


def simulate(policy, arg, probes, extra, offsets, sizes, order, cache_bytes, gap, rtt_ms, mbps):
    cache = Lru(cache_bytes)
    starts = [offsets[i] for i in order]
    ms, fetched, store_queries = [], [], 0
    for q in range(len(probes)):
        lists = [int(x) for x in probes[q] if x >= 0 and sizes[x] > 0]
        missing = [x for x in lists if not cache.hit(x)]
        if policy == "rank" and missing:
            missing += [int(x) for x in extra[q][:arg] if x >= 0 and sizes[x] > 0 and not cache.hit(x)]
        if not missing:
            ms.append(0.0)
            fetched.append(0)
            continue
        store_queries += 1
        largest, total, keep = 0, 0, []
        for group in plan(missing, offsets, sizes, gap):
            lo = offsets[group[0]]
            hi = offsets[group[-1]] + sizes[group[-1]]
            if policy == "next":
                hi += arg
            members = group
            if policy in ("gap", "next"):
                # every list wholly inside the GET, extended by `arg` for next-B
                limit = hi + (arg if policy == "next" else 0)
                members = []
                for j in order[bisect.bisect_left(starts, lo):]:
                    if offsets[j] + sizes[j] > limit:
                        break
                    members.append(j)
                hi = offsets[members[-1]] + sizes[members[-1]]
            nbytes = hi - lo
            largest, total = max(largest, nbytes), total + nbytes
            keep += members
        for lst in keep:
            cache.put(lst, sizes[lst])
        ms.append(rtt_ms + largest / (mbps * 1e3))
        fetched.append(total)
    ms = np.array(ms)
    return {
        "store_share": store_queries / len(probes),
        "bytes_per_query": float(np.mean(fetched)),
        "mean_ms": float(ms.mean()),
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--index", required=True)
    p.add_argument("--d", type=int, required=True, help="the generator's dimension (the index's d)")
    p.add_argument("--seed", type=int, default=7, help="bench_scale.py's --seed for the same clusters")
    p.add_argument("--queries", type=int, default=20000)
    p.add_argument("--nprobes", default="8,32")
    p.add_argument("--cache-fractions", default="0.05,0.25")
    p.add_argument("--gap", type=int, default=64 << 10)
    p.add_argument("--rtt-ms", type=float, default=24.0)
    p.add_argument("--mbps", type=float, default=100.0)
    p.add_argument("--out")
    a = p.parse_args()
    import faiss

    index = faiss.read_index(a.index, faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY)
    ivf = faiss.extract_index_ivf(index)
    inv = ivf.invlists
    nlist, code = ivf.nlist, inv.code_size
    sizes = np.array([inv.list_size(i) * (code + 8) for i in range(nlist)], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])  # file order is list order
    order = list(range(nlist))
    queries = Generator(a.d, a.seed).chunk(2, 0, a.queries)
    if isinstance(index, faiss.IndexPreTransform):
        for i in range(index.chain.size()):
            queries = index.chain.at(i).apply(queries)
    data_bytes = int(sizes.sum())
    res = {"params": vars(a), "nlist": nlist, "data_bytes": data_bytes,
           "mean_list_bytes": float(sizes.mean()), "rows": []}
    for nprobe in [int(x) for x in a.nprobes.split(",")]:
        _, ranked = ivf.quantizer.search(queries, nprobe + 16)
        probes, extra = ranked[:, :nprobe], ranked[:, nprobe:]
        for frac in [float(x) for x in a.cache_fractions.split(",")]:
            for policy, arg in [("probed", 0), ("gap", 0), ("next", 64 << 10), ("next", 256 << 10),
                                ("next", 1 << 20), ("rank", 4), ("rank", 16)]:
                r = simulate(policy, arg, probes, extra, offsets, sizes, order, int(frac * data_bytes), a.gap,
                             a.rtt_ms, a.mbps)
                name = policy if policy in ("probed", "gap") else \
                    f"next-{arg >> 10}K" if policy == "next" else f"rank-{arg}"
                row = {"nprobe": nprobe, "cache_fraction": frac, "policy": name} | r
                res["rows"].append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    print(f"{nlist} lists, {data_bytes / 2**20:.1f} MiB of list data, {a.queries} novel queries; "
          f"model: {a.rtt_ms} ms a round trip + {a.mbps} MB/s per GET\n")
    print("| nprobe | cache | policy | queries that need the store | bytes / query | mean ms | p50 ms | p99 ms |")
    print("| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |")
    for r in res["rows"]:
        print(f"| {r['nprobe']} | {r['cache_fraction']:.0%} | {r['policy']} | {r['store_share']:.1%} | "
              f"{r['bytes_per_query'] / 1024:.0f} KiB | {r['mean_ms']:.1f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")


if __name__ == "__main__":
    main()
