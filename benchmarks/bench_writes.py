"""Writes to a mutable index on a 10M-vector base, side by side in one run:
`crates/ivflake/examples/writes.rs` against a local directory and against
the same directory behind a 20 ms store (object_store's ThrottledStore:
20 ms before every GET, PUT and LIST; it honours conditional creates, as
S3 does). It measures ingest (one client and eight), acknowledgement
latency, warm and cold queries with 0, 10k, 100k and 1M unindexed vectors
(and strong staleness beside bounded), compaction, and Faiss adding the
same 1M vectors to the trained base in memory.

Usage (from the repo root, with the data of benchmarks/bench_scale.py):
    cargo build --release -p ivflake --example writes
    python -m benchmarks.bench_writes --data /tmp/ivflake-scale --out docs/data/bench_writes.json
    python -m benchmarks.plot_writes docs/data/bench_writes.json
"""
import argparse
import json
import os
import subprocess
import tempfile

import numpy as np


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="/tmp/ivflake-scale", help="bench_scale.py's work dir (base.f32, queries.npy, local/index.faiss)")
    p.add_argument("--binary", default="target/release/examples/writes")
    p.add_argument("--delays", default="0,20", help="store latencies in ms, comma-separated")
    p.add_argument("--out", default="docs/data/bench_writes.json")
    a = p.parse_args()
    meta = json.load(open(os.path.join(a.data, "data.json")))
    d = meta["d"]
    index = json.load(open(os.path.join(a.data, "index.json")))
    work = tempfile.mkdtemp(prefix="ivflake-writes-")
    queries = os.path.join(work, "queries.f32")
    np.load(os.path.join(a.data, "queries.npy")).astype("<f4").tofile(queries)
    rows = []
    for delay in a.delays.split(","):
        cmd = [a.binary, os.path.join(a.data, "local", "index.faiss"), os.path.join(a.data, "base.f32"), queries,
               str(d), delay, work]
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
        done = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr[-4000:]}")
        rows += [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
        print(f"delay {delay} ms: {len(rows)} rows so far", flush=True)
        # Written after each store, so a later failure keeps what ran.
        result = {"data": meta, "index": index["params"], "faiss_add_10m_s": index["timings"]["add_s"], "rows": rows}
        os.makedirs(os.path.dirname(a.out), exist_ok=True)
        json.dump(result, open(a.out, "w"), indent=1)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
