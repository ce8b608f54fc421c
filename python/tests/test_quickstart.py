"""examples/quickstart.py runs end to end (small sizes) and finds faiss's ids,
from a directory and, under `make test`, from the moto S3 server."""

import os
import subprocess
import sys

import pytest

from conftest import REPO


@pytest.mark.parametrize("where", ["directory", "s3"])
def test_quickstart_runs(tmp_path, where):
    env = dict(os.environ)
    if where == "directory":
        env.pop("AWS_ENDPOINT_URL", None)
    elif not env.get("AWS_ENDPOINT_URL"):
        pytest.skip("no S3 server: AWS_ENDPOINT_URL is set by `make test`")
    plot = tmp_path / "latency.png"
    out = subprocess.run(
        [
            sys.executable, str(REPO / "examples" / "quickstart.py"),
            "--dir", str(tmp_path / "data"), "--n", "4000", "--d", "16", "--queries", "20",
            "--factory", "IVF16,Flat", "--nprobe", "4", "--plot", str(plot),
        ],
        env=env, capture_output=True, text=True, timeout=300, check=True,
    ).stdout
    assert ("index file: s3://" in out) == (where == "s3")
    assert "recall@10 of ivflake against faiss-cpu in memory: 1.0000 (20/20 queries with the very same ids" in out
    assert "ivflake warm" in out and "faiss in memory" in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
