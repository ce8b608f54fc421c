"""Replicas behind HAProxy, measured: runs python/tests/test_replicas.py (3
`ivflake serve` replicas, HAProxy with deploy/k8s/base/haproxy.cfg, moto
behind, all on loopback) against a release build, collects the figures the
test reports, and plots them.

- store GETs of one load: one replica alone, 3 behind consistent hashing,
  3 behind round-robin;
- client errors while a replica is SIGKILLed and during a rolling restart;
- warm p50/p99 through HAProxy and straight to the replica, the hop's cost;
- each search's dollar cost (cold, warm) from its stats.

    cargo build --release -p ivflake-cli
    python -m benchmarks.bench_replicas --out docs/data/bench_replicas.json --plot docs/img/replicas.png
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
BUCKET = "ivflake-bench"


def plot(figures, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = figures["cache_locality"]
    modes = ["one replica", "consistent hashing", "round-robin"]
    lat = figures["latency"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    bars = a.bar(modes, [runs[m]["store_gets"] for m in modes], color=["#888", "#2a7", "#c54"])
    for bar, m in zip(bars, modes):
        a.annotate(f'{runs[m]["gets_vs_one_replica"]:.2f}×', (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                   ha="center", va="bottom")
    a.set_ylabel("store GETs for the same load")
    a.set_title("Cache locality: 6 indexes, 3 replicas, moto")
    names = ["direct p50", "HAProxy p50", "direct p99", "HAProxy p99"]
    values = [lat["direct_p50_ms"], lat["haproxy_p50_ms"], lat["direct_p99_ms"], lat["haproxy_p99_ms"]]
    b.bar(names, values, color=["#888", "#2a7", "#888", "#2a7"])
    b.set_ylabel("warm search latency (ms)")
    b.set_title(f'The hop costs {lat["hop_p50_ms"]:.2f} ms at p50')
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--binary", default=str(REPO / "target" / "release" / "ivflake"))
    p.add_argument("--out", default="docs/data/bench_replicas.json")
    p.add_argument("--plot", default="docs/img/replicas.png")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as work:
        endpoint_file = os.path.join(work, "endpoint")
        empty = os.path.join(work, "empty")
        os.mkdir(empty)
        moto = subprocess.Popen([sys.executable, "scripts/s3_server.py", empty, endpoint_file, BUCKET], cwd=REPO)
        try:
            for _ in range(200):  # bounded: 40 s
                if os.path.exists(endpoint_file):
                    break
                time.sleep(0.2)
            env = dict(os.environ, AWS_ENDPOINT_URL=open(endpoint_file).read().strip(), AWS_ALLOW_HTTP="true",
                       AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_REGION="us-east-1",
                       IVFLAKE_S3_BUCKET=BUCKET, IVFLAKE_BIN=a.binary, IVFLAKE_REPLICAS_REPORT=str(REPO / a.out),
                       OMP_WAIT_POLICY="PASSIVE", OPENBLAS_NUM_THREADS="1")
            subprocess.run([sys.executable, "-m", "pytest", "-q", "python/tests/test_replicas.py"], cwd=REPO,
                           env=env, check=True)
        finally:
            moto.terminate()
            moto.wait()
    figures = json.loads((REPO / a.out).read_text())
    figures["binary"] = "release"
    (REPO / a.out).write_text(json.dumps(figures, indent=2, sort_keys=True))
    plot(figures, REPO / a.plot)
    print(json.dumps(figures, indent=2, sort_keys=True))


if __name__ == "__main__":
    main()
