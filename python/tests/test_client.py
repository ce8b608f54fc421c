"""ivflake.Client against a real `ivflake serve` on 127.0.0.1, and its 503
retry against a scripted server."""

import http.server
import json
import os
import pathlib
import socket
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest

import ivflake
from conftest import REPO, assert_same_as_faiss, expected

TOKEN = "python-client-test-token"


def _cli_binary() -> pathlib.Path:
    """The `ivflake` CLI of this checkout: $IVFLAKE_BIN (`make test` sets it), or
    the one in this workspace's target dir, built by cargo when missing."""
    if os.environ.get("IVFLAKE_BIN"):
        return pathlib.Path(os.environ["IVFLAKE_BIN"])
    meta = json.loads(
        subprocess.run(
            ["cargo", "metadata", "--format-version", "1", "--no-deps"],
            cwd=REPO, check=True, capture_output=True, text=True,
        ).stdout
    )
    binary = pathlib.Path(meta["target_directory"]) / "debug" / "ivflake"
    if not binary.exists():
        subprocess.run(["cargo", "build", "-q", "-p", "ivflake-cli"], cwd=REPO, check=True)
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(fixtures):
    binary = _cli_binary()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, IVFLAKE_API_TOKEN=TOKEN, RUST_LOG="warn")
    proc = subprocess.Popen(
        [
            str(binary), "serve",
            f"pq={fixtures / 'ivfpq_l2.faiss'}",
            f"flat={fixtures / 'ivfflat_ip.faiss'}",
            "--listen", f"127.0.0.1:{port}",
        ],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        for _ in range(300):  # bounded: 30 s
            if proc.poll() is not None:
                pytest.fail(f"ivflake serve exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("ivflake serve did not become ready")
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_client_search_equals_faiss(server, fixtures, manifest, queries):
    client = ivflake.Client(server, token=TOKEN)
    for served, name in (("pq", "ivfpq_l2"), ("flat", "ivfflat_ip")):
        D, I = client.index(served).search(queries, manifest["k"], nprobe=manifest["nprobe"])
        assert_same_as_faiss(D, I, *expected(fixtures, name))


def test_client_matches_the_in_process_index(server, fixtures, queries):
    remote = ivflake.Client(server, token=TOKEN).index("pq")
    local = ivflake.open(str(fixtures / "ivfpq_l2.faiss"))
    for kwargs in ({}, {"filter": {"deny": list(range(0, 6000, 2))}}, {"filter": {"range": [100, 2000]}}, {"ids": [1, 2, 3, 500]}):
        D_remote, I_remote = remote.search(queries[:7], 5, nprobe=16, **kwargs)
        D_local, I_local = local.search(queries[:7], 5, nprobe=16, **kwargs)
        np.testing.assert_array_equal(I_remote, I_local)
        np.testing.assert_allclose(D_remote, D_local, rtol=1e-6)
    D1, I1 = remote.search(queries[0], 5, nprobe=16)
    assert I1.shape == (1, 5) and D1.dtype == np.float32 and I1.dtype == np.int64
    assert remote.last_stats["queries"] == 1


def test_client_info_and_listing(server):
    client = ivflake.Client(server, token=TOKEN)
    assert {i["name"] for i in client.indexes()} == {"pq", "flat"}
    info = client.index("flat").info()
    assert info["d"] == 32 and info["metric"] == "inner_product"


def test_client_errors(server, queries):
    client = ivflake.Client(server, token=TOKEN)
    with pytest.raises(ivflake.IndexNotFound):
        client.index("missing").search(queries[:1], 5)
    with pytest.raises(ValueError, match="invalid"):
        client.index("pq").search(np.zeros((1, 31), np.float32), 5)
    with pytest.raises(ValueError):
        client.index("pq").search(queries[:1], 5, nprobe=1000)
    with pytest.raises(ValueError):
        client.index("pq").search(queries[:1], 0)
    with pytest.raises(ivflake.IvflakeError, match="401"):
        ivflake.Client(server).index("pq").search(queries[:1], 5)
    with pytest.raises(ValueError):
        ivflake.Client("127.0.0.1:8080")


class _Scripted(http.server.BaseHTTPRequestHandler):
    """Answers 503 with Retry-After `busy` times, then a one-result search."""

    busy = 0
    seen = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((self.path, self.headers["Content-Type"], len(body)))
        if type(self).busy > 0:
            type(self).busy -= 1
            payload = json.dumps({"error": {"code": "overloaded", "message": "busy"}}).encode()
            self.send_response(503)
            self.send_header("Retry-After", "0")
        else:
            payload = json.dumps(
                {"k": 2, "results": [{"ids": [7, -1], "distances": [0.5, 3.4028235e38]}], "stats": {}}
            ).encode()
            self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def scripted():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Scripted.seen = []
    yield _Scripted, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_client_retries_503_a_bounded_number_of_times(scripted):
    handler, url = scripted
    handler.busy = 2
    D, I = ivflake.Client(url, max_retries=3).index("x").search(np.ones(4, np.float32), 2)
    np.testing.assert_array_equal(I, [[7, -1]])
    assert len(handler.seen) == 3
    path, content_type, length = handler.seen[0]
    assert content_type == "application/octet-stream" and length == 16
    assert "rows=1" in path and "d=4" in path and "k=2" in path

    handler.busy = 5
    handler.seen = []
    with pytest.raises(ivflake.IvflakeError, match="503"):
        ivflake.Client(url, max_retries=2).index("x").search(np.ones(4, np.float32), 2)
    assert len(handler.seen) == 3
