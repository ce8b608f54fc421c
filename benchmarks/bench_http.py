"""Warm QPS of `ivflake serve` under wrk against the library's own, in one run,
and where the server's per-request time goes. A bench, not a test.

Usage (from the repo root; wrk from Debian: `apt-get install wrk`):

    OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 .venv/bin/python -m benchmarks.bench_http \
        --work /tmp/ivflake-http --out docs/data/bench_http.json

It builds release binaries (`ivflake` and the library example `qps`), makes
N clustered vectors (common.py's generator, bench_scale.py's too) and an
IVF-PQ index with faiss-cpu in --work, and serves that file from a local
directory, every list preloaded into the memory cache. Then, for each --concurrency C, in rounds
(A B A B, so drift hits both alike):

  library    examples/qps.rs: C tasks on one tokio runtime, each searching
             one query at a time through `IvfIndex::search`
  HTTP       wrk -c C -t min(C, 2) POSTing one query per request (JSON) to
             /v1/indexes/bench/search of one `ivflake serve`

and once, with one connection, GET /healthz (the HTTP floor: hyper, axum's
router and wrk, no search). The server's Prometheus histograms give the
mean time inside the handler and inside the library's search, so the
per-request overhead splits into: wire + client + hyper, handler (parse,
render, admission) and search. Faiss in memory (faiss-cpu, 1 thread, the
same file) is the warm reference. The server and the load generator share
the machine's cores, as they would on one box.
"""
import argparse
import json
import os
import re
import subprocess
import tempfile
import time
import urllib.request

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from benchmarks.common import Generator, free_port, log, summary, wait_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# wrk's Lua hook: one request body per line of BODIES, taken in turn.
WRK_SCRIPT = """
local bodies = {}
for line in io.lines(os.getenv("IVFLAKE_BODIES")) do bodies[#bodies + 1] = line end
local i = 0
request = function()
  i = i % #bodies + 1
  return wrk.format("POST", "/v1/indexes/bench/search", {["Content-Type"] = "application/json"}, bodies[i])
end
"""


def build_binaries():
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ivflake-cli"], cwd=ROOT, check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "ivflake", "--example", "qps"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target/release/ivflake"), os.path.join(ROOT, "target/release/examples/qps")


def make_index(a):
    import faiss

    path = os.path.join(a.work, "index.faiss")
    gen = Generator(a.d, a.seed)
    queries = gen.chunk(1, 0, a.nq)
    if not os.path.exists(path):
        base = gen.chunk(0, 0, a.n)
        index = faiss.index_factory(a.d, a.factory)
        index.train(base[: min(a.n, 64 * faiss.extract_index_ivf(index).nlist)])
        index.add(base)
        faiss.write_index(index, path)
    queries.astype("<f4").tofile(os.path.join(a.work, "queries.f32"))
    with open(os.path.join(a.work, "bodies.jsonl"), "w") as f:
        for q in queries:
            f.write(json.dumps({"vectors": [q.tolist()], "k": a.k, "nprobe": a.nprobe}) + "\n")
    return path, queries


def faiss_in_memory(a, path, queries, seconds):
    """One query at a time, one thread, the whole file in memory."""
    import faiss

    faiss.omp_set_num_threads(1)
    index = faiss.read_index(path)
    faiss.extract_index_ivf(index).nprobe = a.nprobe
    for q in queries:  # touch every list once
        index.search(q[None], a.k)
    ms, end, i = [], time.time() + seconds, 0
    while time.time() < end:
        t = time.perf_counter()
        index.search(queries[i % len(queries)][None], a.k)
        ms.append((time.perf_counter() - t) * 1e3)
        i += 1
    return summary(ms) | {"qps": len(ms) / seconds}


def library(a, qps_bin, path, c):
    out = subprocess.run(
        [qps_bin, path, os.path.join(a.work, "queries.f32"), str(c), str(a.seconds), str(a.k), str(a.nprobe)],
        check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def wrk(a, port, c, route=None):
    cmd = ["wrk", "-c", str(c), "-t", str(min(c, 2)), "-d", f"{a.seconds}s", "--latency", "--timeout", "10s"]
    if route is None:
        cmd += ["-s", os.path.join(a.work, "search.lua"), f"http://127.0.0.1:{port}"]
    else:
        cmd += [f"http://127.0.0.1:{port}{route}"]
    env = os.environ | {"IVFLAKE_BODIES": os.path.join(a.work, "bodies.jsonl")}
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk saw failed requests:\n{out}")

    def ms(label):
        m = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\b", out, re.M)
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    return {
        "qps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": ms("50%"),
        "p99_ms": ms("99%"),
        "mean_ms": ms("Latency"),
    }


def scrape(port):
    """(count, sum in ms) of the handler's and the library's histograms."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()

    def get(name, label):
        vals = {}
        for kind in ("count", "sum"):
            m = re.search(rf'^{name}_{kind}{{[^}}]*{label}[^}}]*}} ([\d.e+-]+)$', text, re.M)
            vals[kind] = float(m.group(1)) if m else 0.0
        return vals["count"], vals["sum"] * 1e3

    return {
        "handler": get("ivflake_http_request_seconds", 'route="/v1/indexes/{name}/search"'),
        "search": get("ivflake_search_seconds", 'stage="total"'),
    }


def start_server(ivflake, path, work):
    port = free_port()
    config = os.path.join(work, "serve.toml")
    with open(config, "w") as f:
        f.write(f'listen = "127.0.0.1:{port}"\n[indexes.bench]\nuri = "{path}"\npreload = "auto"\n')
    proc = subprocess.Popen([ivflake, "serve", "--config", config], stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(work, "serve.log"), "w"), env=os.environ | {"RUST_LOG": "warn"})
    wait_port(port, proc)
    deadline = time.time() + 120
    while time.time() < deadline:
        status = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/indexes/bench", timeout=10))
        if status.get("preload", {}).get("state") == "done":
            return proc, port
        time.sleep(0.2)
    raise RuntimeError(f"the preload did not finish: {status.get('preload')}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "ivflake-http"))
    p.add_argument("--out", help="write the results here as JSON")
    p.add_argument("--plot", help="draw QPS and p50 against connections into this PNG")
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--d", type=int, default=128)
    p.add_argument("--factory", default="IVF256,PQ16")
    p.add_argument("--nprobe", type=int, default=16)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--nq", type=int, default=1000)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--seconds", type=int, default=8)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--concurrency", default="1,8,32,128")
    p.add_argument(
        "--data-only",
        action="store_true",
        help="write index.faiss and queries.f32 into --work and stop (examples/qps.rs reads them)",
    )
    a = p.parse_args()
    if a.data_only:
        os.makedirs(a.work, exist_ok=True)
        print(make_index(a)[0])
        return
    conc = [int(c) for c in a.concurrency.split(",")]
    os.makedirs(a.work, exist_ok=True)
    with open(os.path.join(a.work, "search.lua"), "w") as f:
        f.write(WRK_SCRIPT)

    log("building release binaries")
    ivflake, qps_bin = build_binaries()
    log(f"making {a.n} x {a.d} vectors and {a.factory}")
    path, queries = make_index(a)
    proc, port = start_server(ivflake, path, a.work)
    res = {"params": vars(a), "file_bytes": os.path.getsize(path), "library": {}, "http": {}, "split": {}}
    try:
        res["faiss_in_memory"] = faiss_in_memory(a, path, queries, a.seconds)
        res["healthz"] = wrk(a, port, 1, "/healthz")
        for r in range(a.rounds):
            for c in conc:
                log(f"round {r + 1}: concurrency {c}")
                res["library"].setdefault(c, []).append(library(a, qps_bin, path, c))
                before = scrape(port)
                res["http"].setdefault(c, []).append(wrk(a, port, c))
                after = scrape(port)
                split = {}
                for part in ("handler", "search"):
                    n = after[part][0] - before[part][0]
                    split[part + "_mean_ms"] = (after[part][1] - before[part][1]) / max(n, 1)
                res["split"].setdefault(c, []).append(split)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    if a.out:
        with open(a.out, "w") as f:
            json.dump(res, f, indent=1)
    print_tables(res)
    if a.plot:
        plot(res, a.plot)


def plot(res, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Keys are ints in a run and strings once read back from --out's JSON.
    by_int = {part: {int(c): rows for c, rows in res[part].items()} for part in ("library", "http")}
    conns = sorted(by_int["library"])
    mean = lambda rows, key: [float(np.mean([r[key] for r in rows[c]])) for c in conns]  # noqa: E731
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4))
    for rows, label, color in [(by_int["library"], "library (examples/qps.rs)", "tab:blue"),
                               (by_int["http"], "ivflake serve under wrk", "tab:orange")]:
        ax1.plot(conns, mean(rows, "qps"), "o-", label=label, color=color)
        ax2.plot(conns, mean(rows, "p50_ms"), "o-", label=label, color=color)
    same_build = [r["side_by_side"]["faiss_p50_ms"] for r in by_int["library"][conns[0]] if r.get("side_by_side")]
    if same_build:
        ax2.axhline(float(np.mean(same_build)), ls=":", color="gray", label="Faiss in memory, same file and build")
    for ax, ylabel in [(ax1, "warm searches per second"), (ax2, "p50 latency, ms (log)")]:
        ax.set_xscale("log", base=2)
        ax.set_xticks(conns, [str(c) for c in conns])
        ax.set_xlabel("searches in flight (connections)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    ax2.set_yscale("log")
    ax1.set_ylim(bottom=0)
    ax2.legend(fontsize=8)
    p = res["params"]
    fig.suptitle(f"{p['n'] // 1000}k × {p['d']}-d {p['factory']}, nprobe {p['nprobe']}, k {p['k']}: "
                 "warm, one query per search, 2 cores shared with the load generator", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def print_tables(res):
    f = res["faiss_in_memory"]
    print(f"Faiss in memory, 1 thread: p50 {f['p50']:.3f} ms; /healthz over HTTP (wrk -c 1): "
          f"p50 {res['healthz']['p50_ms']:.3f} ms, {res['healthz']['qps']:.0f} req/s\n")
    print("| connections | library QPS | HTTP QPS | HTTP / library | library p50 ms | HTTP p50 ms | HTTP p99 ms |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in res["library"]:
        for lib, http in zip(res["library"][c], res["http"][c]):
            print(f"| {c} | {lib['qps']:.0f} | {http['qps']:.0f} | {http['qps'] / lib['qps']:.2f} | "
                  f"{lib['p50_ms']:.3f} | {http['p50_ms']:.3f} | {http['p99_ms']:.3f} |")
    print("\nWhere a request's time goes (means, ms):\n")
    print("| connections | wrk latency | in the handler | in the search | handler minus search | outside the handler |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for c in res["split"]:
        for http, s in zip(res["http"][c], res["split"][c]):
            h, srch = s["handler_mean_ms"], s["search_mean_ms"]
            print(f"| {c} | {http['mean_ms']:.3f} | {h:.3f} | {srch:.3f} | {h - srch:.3f} | {http['mean_ms'] - h:.3f} |")


if __name__ == "__main__":
    main()
