"""Bad input and bad files raise the exceptions their meaning calls for."""

import _thread
import os
import shutil
import socket
import signal
import threading

import numpy as np
import pytest

import ivflake


@pytest.fixture(scope="module")
def index(fixtures):
    return ivflake.open(str(fixtures / "ivfpq_l2.faiss"))


def test_exceptions_share_one_base():
    for kind in (
        ivflake.IndexNotFound,
        ivflake.CorruptIndex,
        ivflake.UnsupportedIndex,
        ivflake.IndexChanged,
        ivflake.DeadlineExceeded,
    ):
        assert issubclass(kind, ivflake.IvflakeError)
        assert kind.__module__ == "ivflake"
    assert issubclass(ivflake.IvflakeError, Exception)


@pytest.mark.parametrize(
    "xq, message",
    [
        (np.zeros((3, 31), np.float32), "d = 31.*the index has d = 32"),
        (np.zeros((3, 33), np.float32), "d = 33.*the index has d = 32"),
        (np.zeros((0, 32), np.float32), "queries|empty"),
        (np.zeros((2, 2, 32), np.float32), "2-D"),
        (np.full((1, 32), np.nan, np.float32), "NaN|finite"),
        (np.full((1, 32), np.inf, np.float32), "finite|inf"),
    ],
)
def test_bad_queries_are_value_errors(index, xq, message):
    with pytest.raises(ValueError, match=f"(?i){message}"):
        index.search(xq, 10, nprobe=4)


@pytest.mark.parametrize(
    "shape, message",
    [
        # As many floats as whole 32-d queries, in the wrong shape: each used
        # to pass the float count alone and answer a different number of rows.
        ((2, 16), r"d = 16 \(shape \[2, 16\]\); the index has d = 32"),
        ((1, 64), r"d = 64 \(shape \[1, 64\]\); the index has d = 32"),
        ((2, 64), r"d = 64"),
        ((64,), r"one vector of 64 values; the index has d = 32"),
        ((16,), r"one vector of 16 values"),
    ],
)
def test_queries_of_another_dimension_name_both(index, shape, message):
    xq = np.zeros(shape, np.float32)
    with pytest.raises(ValueError, match=message):
        index.search(xq, 10, nprobe=4)
    with pytest.raises(ValueError, match=message):
        index.search(xq.astype(np.float64), 10, nprobe=4)
    with pytest.raises(ValueError, match=message):
        index.search_async(xq, 10, nprobe=4)


def test_non_numeric_queries_are_refused(index):
    with pytest.raises((TypeError, ValueError)):
        index.search([["a"] * 32], 10)


@pytest.mark.parametrize("k", [0, -1, ivflake.MAX_K + 1])
def test_bad_k_is_a_value_error(index, queries, k):
    with pytest.raises(ValueError, match="k"):
        index.search(queries[:2], k, nprobe=4)


@pytest.mark.parametrize("nprobe", [0, -3, 65])
def test_bad_nprobe_is_a_value_error(index, queries, nprobe):
    with pytest.raises(ValueError, match="nprobe"):
        index.search(queries[:2], 10, nprobe=nprobe)
    with pytest.raises(ValueError, match="nprobe"):
        index.nprobe = nprobe


@pytest.mark.parametrize(
    "kwargs",
    [
        {"filter": {"allow": [1], "deny": [2]}},
        {"filter": {"near": [1]}},
        {"filter": [1, 2]},
        {"filter": {"allow": [1.5, 2.0]}},
        {"filter": {"range": [10, 5]}},
        {"filter": {"range": [1, 2, 3]}},
        {"ids": [1], "filter": {"deny": [2]}},
        {"timeout": -1.0},
        {"timeout": float("nan")},
    ],
)
def test_bad_options_are_value_errors(index, queries, kwargs):
    with pytest.raises(ValueError):
        index.search(queries[:2], 10, nprobe=4, **kwargs)


def test_bad_open_options_are_value_errors(fixtures):
    path = str(fixtures / "ivfpq_l2.faiss")
    with pytest.raises(ValueError, match="manifest"):
        ivflake.open(path, manifest="sometimes")
    with pytest.raises(ValueError, match="disk_cache_dir"):
        ivflake.open(path, disk_cache_bytes=1 << 20)
    with pytest.raises(ValueError, match="store options"):
        ivflake.open(path, region="us-east-1")
    with pytest.raises(ValueError, match="unknown store option"):
        ivflake.open("s3://bucket/index.faiss", endpont="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="scheme"):
        ivflake.open("ftp://host/index.faiss")


def test_missing_file_is_index_not_found(tmp_path):
    with pytest.raises(ivflake.IndexNotFound):
        ivflake.open(str(tmp_path / "nope.faiss"))
    with pytest.raises(ivflake.IndexNotFound):
        ivflake.open(str(tmp_path / "no-such-dir" / "nope.faiss"))


def test_missing_s3_object_is_index_not_found(s3_uri):
    with pytest.raises(ivflake.IndexNotFound):
        ivflake.open(s3_uri("no-such-index"))


@pytest.mark.parametrize("keep", [0.5, 0.02])
def test_truncated_file_is_corrupt(tmp_path, fixtures, keep):
    data = (fixtures / "ivfflat_l2.faiss").read_bytes()
    path = tmp_path / "truncated.faiss"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(ivflake.CorruptIndex):
        ivflake.open(str(path), manifest="ignore")


def test_garbage_file_is_corrupt(tmp_path):
    path = tmp_path / "garbage.faiss"
    path.write_bytes(bytes(range(256)) * 64)
    with pytest.raises(ivflake.CorruptIndex):
        ivflake.open(str(path))


@pytest.mark.parametrize(
    "name", ["ivfrabitq_fastscan", "ivfrabitq_4bit", "hnsw_flat", "idmap_flat", "binary_ivf"]
)
def test_unsupported_types_are_unsupported(fixtures, manifest, name):
    assert name in {e["name"] for e in manifest["unsupported"]}
    with pytest.raises(ivflake.UnsupportedIndex):
        ivflake.open(str(fixtures / f"{name}.faiss"))


def test_changed_object_is_index_changed(tmp_path, fixtures, queries):
    path = tmp_path / "index.faiss"
    shutil.copy(fixtures / "ivfflat_l2.faiss", path)
    index = ivflake.open(str(path), memory_cache_bytes=0)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # same size, new content and modification time: a new version
    path.write_bytes(bytes(data))
    os.utime(path, ns=(1, 1))
    with pytest.raises(ivflake.IndexChanged):
        index.search(queries, 10, nprobe=64)
    index.reload()
    D, I = index.search(queries[:1], 10, nprobe=64)
    assert I.shape == (1, 10)


@pytest.fixture
def stalled_endpoint():
    """An HTTP endpoint on 127.0.0.1 that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held = []
    stop = threading.Event()

    def accept():
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_ctrl_c_cancels_a_blocked_call(stalled_endpoint):
    # interrupt_main() raises SIGINT's KeyboardInterrupt in the main thread at
    # its next signal check, which the blocked call makes while waiting. It
    # does nothing under SIG_IGN or SIG_DFL, so Python's own handler is put in
    # place whatever an earlier test left.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    timer = threading.Timer(0.3, _thread.interrupt_main)
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            ivflake.open(
                "s3://bucket/index.faiss",
                endpoint=stalled_endpoint,
                allow_http=True,
                region="us-east-1",
                aws_access_key_id="test",
                aws_secret_access_key="test",
            )
    finally:
        timer.cancel()
        signal.signal(signal.SIGINT, previous)


def test_a_search_past_its_timeout_raises_deadline_exceeded(gated_s3, queries):
    # Every list GET is held, so only the deadline can end the search: the
    # outcome does not depend on how fast this machine is.
    index = ivflake.open(gated_s3.uri, memory_cache_bytes=0, **gated_s3.options)
    gated_s3.stall()
    with pytest.raises(ivflake.DeadlineExceeded):
        index.search(queries[:1], 10, nprobe=4, timeout=1e-6)
    with pytest.raises(ivflake.DeadlineExceeded):
        index.search(queries[:1], 10, nprobe=4, timeout=0.05)
    gated_s3.resume()
    D, I = index.search(queries[:1], 10, nprobe=4, timeout=60)
    assert (I >= 0).all()


def test_ctrl_c_cancels_a_search_and_its_gets(gated_s3, queries):
    """Ctrl-C once the search's first GET is held at the store: KeyboardInterrupt,
    the GET's connection is dropped, and the index still searches afterwards."""
    index = ivflake.open(gated_s3.uri, memory_cache_bytes=0, **gated_s3.options)
    gated_s3.stall()

    def interrupt_once_held():
        if gated_s3.held.wait(30):
            _thread.interrupt_main()

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    interrupter = threading.Thread(target=interrupt_once_held, daemon=True)
    interrupter.start()
    try:
        # The timeout only bounds the test should the GET never arrive.
        with pytest.raises(KeyboardInterrupt):
            index.search(queries[:1], 10, nprobe=4, timeout=60)
    finally:
        interrupter.join()
        signal.signal(signal.SIGINT, previous)
    assert gated_s3.abandoned.wait(30), "the cancelled search kept its GET open"
    gated_s3.resume()
    D, I = index.search(queries[:1], 10, nprobe=4, timeout=60)
    assert (I >= 0).all()


def test_a_plain_http_endpoint_without_allow_http_says_what_to_set(s3_uri):
    import os

    with pytest.raises(ivflake.IvflakeError, match="AWS_ALLOW_HTTP=true") as e:
        ivflake.open(s3_uri("ivfsq8_l2"), endpoint=os.environ["AWS_ENDPOINT_URL"], allow_http=False, region="us-east-1")
    assert "ignoring the checksum sidecar" not in str(e.value)


def test_negative_sizes_and_list_numbers_are_value_errors(fixtures):
    with pytest.raises(ValueError, match="memory_cache_bytes must be 0 or more, not -1"):
        ivflake.open(str(fixtures / "ivfflat_l2.faiss"), memory_cache_bytes=-1)
    index = ivflake.open(str(fixtures / "ivfflat_l2.faiss"))
    with pytest.raises(ValueError, match="lists: -1 is not a list number"):
        index.warm([-1])
    with pytest.raises(ValueError, match="largest must be 0 or more"):
        index.warm(largest=-3)
