"""Shared fixtures: the faiss-cpu index files `scripts/make_fixtures.py`
writes (with faiss-cpu's own results), in a directory and in the moto S3
bucket `make test` starts (`AWS_ENDPOINT_URL`, `IVFLAKE_S3_BUCKET`); a
one-object S3 endpoint that holds GETs on demand (`gated_s3`), for deadlines,
Ctrl-C and cancellation; and `ivflake serve` for the HTTP client's tests.
Under CI or `make test` a skip is a failure (`pytest_runtest_makereport`)."""

import contextlib
import email.utils
import hashlib
import http.server
import json
import os
import pathlib
import re
import socket
import subprocess
import threading
import time
import urllib.request

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]

# Set by `make test` (and so by CI), which starts the moto S3 server.
S3_VARIABLES = ("AWS_ENDPOINT_URL", "IVFLAKE_S3_BUCKET")


def _skips_fail() -> bool:
    return bool(os.environ.get("CI")) or any(os.environ.get(v) for v in S3_VARIABLES)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI or `make test`, a skipped test fails.

    The S3 tests skip when the S3 variables are missing, which is right on a
    laptop. Where they are meant to run, a skip means a test silently stopped
    running (a renamed variable, a fixture that no longer finds its server)
    while the suite stays green. xfail is left alone.
    """
    outcome = yield
    report = outcome.get_result()
    if report.skipped and not hasattr(report, "wasxfail") and _skips_fail():
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = (
            f"skipped under CI or with the S3 variables set, which makes it a failure: {reason}"
        )


@pytest.fixture(scope="session")
def fixtures() -> pathlib.Path:
    path = pathlib.Path(os.environ.get("IVFLAKE_FIXTURES", REPO / ".fixtures"))
    if not (path / "manifest.json").exists():
        pytest.fail(f"no fixtures in {path}: run `make fixtures` (or `make test`, which does)")
    return path


@pytest.fixture(scope="session")
def manifest(fixtures):
    return json.loads((fixtures / "manifest.json").read_text())


@pytest.fixture(scope="session")
def queries(fixtures) -> np.ndarray:
    return np.load(fixtures / "queries.npy")


@pytest.fixture(scope="session")
def s3_uri():
    """`s3_uri(name)`: the fixture `name` in the test bucket; skips without the S3 server."""
    bucket = os.environ.get("IVFLAKE_S3_BUCKET")
    if not bucket or not os.environ.get("AWS_ENDPOINT_URL"):
        pytest.skip("no S3 server: AWS_ENDPOINT_URL and IVFLAKE_S3_BUCKET are set by `make test`")
    return lambda name: f"s3://{bucket}/fixtures/{name}.faiss"


def expected(fixtures, name):
    """faiss-cpu's (D, I) for the fixture queries (k and nprobe from the manifest)."""
    return np.load(fixtures / f"{name}.dist.npy"), np.load(fixtures / f"{name}.ids.npy")


def assert_same_as_faiss(D, I, D_ref, I_ref):
    assert D.dtype == np.float32 and I.dtype == np.int64
    assert D.shape == D_ref.shape and I.shape == I_ref.shape
    np.testing.assert_array_equal(I, I_ref)
    np.testing.assert_allclose(D, D_ref, rtol=1e-5, atol=1e-4)


def assert_agrees_with_faiss(D, I, D_ref, I_ref, min_agreement):
    """For codecs whose distance estimates differ between Faiss versions
    (RaBitQ): the shapes and types match and most ids are equal."""
    assert D.dtype == np.float32 and I.dtype == np.int64
    assert D.shape == D_ref.shape and I.shape == I_ref.shape
    same = I == I_ref
    assert same.mean() >= min_agreement, f"only {same.mean():.3f} of ids agree with faiss-cpu"


def cli_binary() -> pathlib.Path:
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


@contextlib.contextmanager
def serve(binary, indexes, token):
    """`ivflake serve name=path...` on 127.0.0.1 with `token` (None: no auth); yields its URL once ready."""
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = dict(os.environ, RUST_LOG="warn")
    env.pop("IVFLAKE_API_TOKEN", None)
    if token is not None:
        env["IVFLAKE_API_TOKEN"] = token
    proc = subprocess.Popen(
        [str(binary), "serve", *(f"{name}={path}" for name, path in indexes.items()), "--listen", f"127.0.0.1:{port}"],
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


class GatedS3:
    """A one-object S3 endpoint on 127.0.0.1 that answers until `stall()`.

    After `stall()` every GET is held unanswered: the search that sent it can
    only end by its deadline, by Ctrl-C or by being cancelled. `held` is set
    when the first held GET arrives, and `abandoned` when the client closes a
    held connection, which is how a dropped (cancelled) GET looks from here.
    `uri` and `options` are what `ivflake.open` takes.
    """

    bucket, key = "gated", "index.faiss"

    def __init__(self, path: pathlib.Path):
        self.data = path.read_bytes()
        self.etag = '"%s"' % hashlib.md5(self.data).hexdigest()
        self.modified = email.utils.formatdate(path.stat().st_mtime, usegmt=True)
        self.stalled = threading.Event()
        self.held = threading.Event()
        self.abandoned = threading.Event()
        self.released = threading.Event()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.uri = f"s3://{self.bucket}/{self.key}"
        self.options = dict(
            endpoint=f"http://127.0.0.1:{self.server.server_address[1]}",
            allow_http=True,
            region="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        )

    def stall(self) -> None:
        self.stalled.set()

    def resume(self) -> None:
        """Answers GETs again; those already held stay held."""
        self.stalled.clear()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def _handler(self):
        gate = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._answer(body=False)

            def do_GET(self):
                if gate.stalled.is_set():
                    self._hold()
                else:
                    self._answer(body=True)

            def _hold(self):
                gate.held.set()
                self.connection.settimeout(0.05)
                while not gate.released.is_set():
                    try:
                        if self.connection.recv(1) == b"":
                            gate.abandoned.set()
                            break
                    except socket.timeout:  # TimeoutError from 3.10; an OSError in 3.9
                        continue
                    except OSError:
                        gate.abandoned.set()
                        break
                self.close_connection = True

            def _answer(self, body):
                if self.path.split("?")[0] != f"/{gate.bucket}/{gate.key}":
                    self._send(404, b"<Error><Code>NoSuchKey</Code></Error>", {"Content-Type": "application/xml"}, body)
                    return
                data, status, headers = gate.data, 200, {}
                wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
                if wanted:
                    start = int(wanted[1])
                    end = min(int(wanted[2]) if wanted[2] else len(data) - 1, len(data) - 1)
                    headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
                    data, status = data[start : end + 1], 206
                headers.update({"ETag": gate.etag, "Last-Modified": gate.modified})
                self._send(status, data, headers, body)

            def _send(self, status, data, headers, body):
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if body:
                    self.wfile.write(data)

        return Handler


@pytest.fixture
def gated_s3(fixtures):
    """`ivfpq_l2` behind a `GatedS3` endpoint."""
    gate = GatedS3(fixtures / "ivfpq_l2.faiss")
    yield gate
    gate.close()
