"""What more than one benchmark uses: the clustered data generator (so
bench_http and bench_readahead draw from the same distribution as
bench_scale), nearest-rank latency summaries, a stderr log line, and waiting
for a loopback server to listen. Imported as `benchmarks.common`; it starts
nothing and writes no files itself.
"""
import socket
import subprocess
import sys
import time

import numpy as np

# Generated data: clusters overlapping enough that a query's neighbours
# spread over several lists (recall grows with nprobe, as with real
# embeddings), each stretched along its own rank-24 subspace.
N_CLUSTERS = 1000
CENTER_STD = 0.5
STRETCH_RANK = 24
NOISE_STD = 0.2


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def pct(xs, p):
    """Nearest-rank percentile."""
    s = sorted(xs)
    return float(s[max(0, min(len(s), int(np.ceil(p / 100 * len(s)))) - 1)])


def summary(ms):
    return {"p50": pct(ms, 50), "p99": pct(ms, 99), "mean": float(np.mean(ms)), "n": len(ms)}


# ---------------------------------------------------------------- data


class Generator:
    """Clustered gaussians: a centre, a random rank-24 stretch and isotropic
    noise per cluster; each chunk of a stream is reproducible on its own."""

    def __init__(self, d, seed):
        rng = np.random.default_rng(seed)
        self.d, self.seed = d, seed
        self.centers = (rng.standard_normal((N_CLUSTERS, d)) * CENTER_STD).astype("float32")
        self.bases = (rng.standard_normal((N_CLUSTERS, STRETCH_RANK, d)) / np.sqrt(STRETCH_RANK)).astype("float32")

    def chunk(self, stream, start, n):
        rng = np.random.default_rng([self.seed, stream, start])
        cid = rng.integers(0, N_CLUSTERS, n)
        z = rng.standard_normal((n, STRETCH_RANK), dtype="float32")
        x = self.centers[cid] + NOISE_STD * rng.standard_normal((n, self.d), dtype="float32")
        order = np.argsort(cid, kind="stable")
        bounds = np.searchsorted(cid[order], np.arange(N_CLUSTERS + 1))
        for c in range(N_CLUSTERS):
            rows = order[bounds[c]:bounds[c + 1]]
            if len(rows):
                x[rows] += z[rows] @ self.bases[c]
        return x


# ---------------------------------------------------------------- servers


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, proc, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


def priced_vectors(n, d, nq, seed=5):
    """Vectors around 100 centres, queries near them, a `price` uniform in
    [0, 100) per row (so `price < b` keeps b percent of rows) and ids: the
    data of the filtered-search benchmarks."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(100, d)).astype("float32") * 3
    xb = centers[rng.integers(0, 100, n)] + rng.normal(size=(n, d)).astype("float32")
    xq = centers[rng.integers(0, 100, nq)] + rng.normal(size=(nq, d)).astype("float32")
    price = rng.random(n) * 100.0
    ids = np.arange(n, dtype="int64") * 3 + 7
    return xb.astype("float32"), xq.astype("float32"), price, ids


def stop_all(procs):
    """Terminates the bench's servers, then kills any still running after 10 s."""
    for proc in procs:
        proc.terminate()
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
