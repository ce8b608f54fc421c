"""ivflake.Client against a real `ivflake serve` on 127.0.0.1, and its 503
retry against a scripted server."""

import contextlib
import http.server
import json
import threading
import warnings

import numpy as np
import pytest

import ivflake
from conftest import assert_same_as_faiss, cli_binary, expected, serve

TOKEN = "python-client-test-token"


@pytest.fixture(scope="module")
def server(fixtures):
    with serve(cli_binary(), {"pq": fixtures / "ivfpq_l2.faiss", "flat": fixtures / "ivfflat_ip.faiss"}, TOKEN) as url:
        yield url


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
    retry_after = "0"

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append((self.path, self.headers["Content-Type"], len(body)))
        if type(self).busy > 0:
            type(self).busy -= 1
            payload = json.dumps({"error": {"code": "overloaded", "message": "busy"}}).encode()
            self.send_response(503)
            self.send_header("Retry-After", type(self).retry_after)
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
    _Scripted.retry_after = "0"
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


@pytest.mark.parametrize(
    "url", ["http://ivflake.example.com:8080", "http://10.0.0.7:8080", "http://[2001:db8::1]:8080", "http://localhost.example.com"]
)
def test_a_token_over_plain_http_to_another_host_warns(url):
    with pytest.warns(ivflake.InsecureTokenWarning, match="clear text"):
        ivflake.Client(url, token=TOKEN)


@pytest.mark.parametrize(
    "url, token",
    [
        ("https://ivflake.example.com", TOKEN),
        ("http://127.0.0.1:8080", TOKEN),
        ("http://127.8.9.10:8080", TOKEN),
        ("http://localhost:8080", TOKEN),
        ("http://LOCALHOST.:8080", TOKEN),
        ("http://api.localhost:8080", TOKEN),
        ("http://[::1]:8080", TOKEN),
        ("http://ivflake.example.com:8080", None),
    ],
)
def test_no_warning_without_a_token_in_clear_text_off_this_machine(url, token):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ivflake.Client(url, token=token)


class _Recording(http.server.BaseHTTPRequestHandler):
    """Records each request's method and Authorization header; answers every
    request with a redirect to `redirect_to` when set, else with `{}`."""

    redirect_to = ""
    status = 307

    def _answer(self):
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.headers.get("Authorization")))
        if self.redirect_to:
            self.send_response(self.status)
            self.send_header("Location", self.redirect_to + self.path)
            self.send_header("Content-Length", "0")
        else:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
        self.end_headers()
        if not self.redirect_to:
            self.wfile.write(b"{}")

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@contextlib.contextmanager
def _recording_server(**attributes):
    handler = type("Handler", (_Recording,), attributes)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.seen = []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_refused_and_the_token_stays(status):
    """The redirect's target never hears from the client, with or without the token."""
    with _recording_server() as (target, target_url):
        with _recording_server(redirect_to=target_url, status=status) as (redirecting, url):
            client = ivflake.Client(url, token=TOKEN)
            with pytest.raises(ivflake.IvflakeError, match=f"HTTP {status}.*redirects to '{target_url}"):
                client.index("x").search(np.ones(4, np.float32), 2)
            with pytest.raises(ivflake.IvflakeError, match="redirect"):
                client.indexes()
    assert redirecting.seen == [("POST", f"Bearer {TOKEN}"), ("GET", f"Bearer {TOKEN}")]
    assert target.seen == []


def test_a_retry_after_above_zero_is_waited_for_and_capped(scripted, monkeypatch):
    """Each wait is what the server asked, within `max_retry_wait`: seen in
    the calls to `time.sleep`, not in a stopwatch."""
    handler, url = scripted
    slept = []
    monkeypatch.setattr(ivflake.client.time, "sleep", slept.append)
    handler.busy, handler.retry_after = 2, "2"
    ivflake.Client(url, max_retries=3).index("x").search(np.ones(4, np.float32), 2)
    assert slept == [2.0, 2.0]
    slept.clear()
    handler.busy, handler.retry_after = 1, "120"
    ivflake.Client(url, max_retries=3, max_retry_wait=5.0).index("x").search(np.ones(4, np.float32), 2)
    assert slept == [5.0]


def test_long_id_filters_go_in_a_json_body(server, fixtures, queries):
    """20,000 ids: a query string would be refused (414/431); the client
    sends a JSON body, and the answer is `Index.search`'s."""
    remote = ivflake.Client(server, token=TOKEN).index("pq")
    local = ivflake.open(str(fixtures / "ivfpq_l2.faiss"))
    deny = list(range(0, 40_000, 2))
    D_remote, I_remote = remote.search(queries[:5], 5, nprobe=16, filter={"deny": deny})
    D_local, I_local = local.search(queries[:5], 5, nprobe=16, filter={"deny": deny})
    np.testing.assert_array_equal(I_remote, I_local)
    np.testing.assert_allclose(D_remote, D_local, rtol=1e-6)
    assert not np.isin(I_remote, deny).any()


def test_a_server_that_is_not_there_is_server_unreachable():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Nothing listens on the port now.
    with pytest.raises(ivflake.ServerUnreachable, match="cannot reach") as e:
        ivflake.Client(f"http://127.0.0.1:{port}").index("x").search(np.ones(4, np.float32), 2)
    assert isinstance(e.value, ivflake.IvflakeError)


def test_client_writes_to_a_writable_index(tmp_path, queries):
    """`ivflake serve live=<prefix>/` serves a mutable index writable: the
    client's upserts and deletes are searchable in the next request, equal to
    faiss-cpu's exact search after the same writes."""
    import faiss

    root = tmp_path / "live"
    d = queries.shape[1]
    ivflake.create(str(root), d=d, factory="IVF16,Flat")
    rng = np.random.default_rng(5)
    xb = rng.standard_normal((300, d)).astype("float32")
    ids = np.arange(300, dtype=np.int64) * 7
    with serve(cli_binary(), {"live": str(root) + "/"}, token=None) as url:
        index = ivflake.Client(url).index("live")
        assert index.upsert(xb, ids) == 0
        assert index.delete(ids[:50]) == 1
        D, I = index.search(queries[:5], 10, nprobe=16)
        reference = faiss.IndexIDMap(faiss.IndexFlatL2(d))
        reference.add_with_ids(xb[50:], ids[50:])
        D_ref, I_ref = reference.search(queries[:5], 10)
        np.testing.assert_array_equal(I, I_ref)
        np.testing.assert_allclose(D, D_ref, rtol=1e-5)
        assert index.last_stats["log_position"] == 1
        assert index.upsert(xb[:2], ids[:2], attributes=[{"tag": "a"}, {"tag": "b", "n": 1}]) == 2
        rows = index.get([int(ids[0]), int(ids[1]), 1])
        assert rows[2] is None
        assert [r["attributes"] for r in rows[:2]] == [{"tag": "a"}, {"tag": "b", "n": 1}]
        np.testing.assert_array_equal(np.array(rows[1]["vector"], dtype="float32"), xb[1])
        report = index.compact()
        assert report is not None and report["entries"] == 252
