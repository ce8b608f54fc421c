"""Threads and asyncio: one index searched by many callers at once."""

import asyncio
import inspect
import sys
import threading
import time

import numpy as np
import pytest

import ivflake
from conftest import assert_same_as_faiss, expected

THREADS = 8


def _search_from_threads(index, queries, k, nprobe):
    """Each of 8 threads searches its own slice of the queries, all released together."""
    slices = np.array_split(np.arange(len(queries)), THREADS)
    results = [None] * THREADS
    errors = []
    start = threading.Barrier(THREADS)

    def run(i):
        try:
            start.wait()
            for _ in range(3):
                results[i] = index.search(queries[slices[i]], k, nprobe=nprobe)
        except Exception as e:  # reported below, with the thread's number
            errors.append((i, e))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    return np.vstack([r[0] for r in results]), np.vstack([r[1] for r in results])


@pytest.mark.parametrize("name", ["ivfpq_l2", "opq_ivfpq_ip"])
def test_eight_threads_from_a_directory(fixtures, manifest, queries, name):
    index = ivflake.open(str(fixtures / f"{name}.faiss"))
    D, I = _search_from_threads(index, queries, manifest["k"], manifest["nprobe"])
    assert_same_as_faiss(D, I, *expected(fixtures, name))


def test_eight_threads_from_s3(fixtures, manifest, queries, s3_uri):
    index = ivflake.open(s3_uri("ivfflat_ip"))
    D, I = _search_from_threads(index, queries, manifest["k"], manifest["nprobe"])
    assert_same_as_faiss(D, I, *expected(fixtures, "ivfflat_ip"))


def test_search_releases_the_gil(fixtures, manifest, queries):
    """Another Python thread runs while a search is in flight. With a long
    switch interval the main thread never yields the GIL between reading the
    counter and calling search, so the counter moves only if search releases it."""
    index = ivflake.open(str(fixtures / "ivfflat_l2.faiss"), memory_cache_bytes=0)
    ticks = 0
    done = threading.Event()

    def count():
        nonlocal ticks
        while not done.is_set():
            ticks += 1

    interval = sys.getswitchinterval()
    counter = threading.Thread(target=count)
    counter.start()
    try:
        while ticks == 0:
            time.sleep(0.001)
        sys.setswitchinterval(0.5)
        before = ticks
        index.search(queries, manifest["k"], nprobe=64)
        during = ticks - before
    finally:
        sys.setswitchinterval(interval)
        done.set()
        counter.join()
    assert during > 0


def test_asyncio_gather(fixtures, manifest, queries):
    name = "ivfsqfp16_l2"
    index = ivflake.open(str(fixtures / f"{name}.faiss"))
    k, nprobe = manifest["k"], manifest["nprobe"]

    async def main():
        parts = np.array_split(queries, 10)
        outs = await asyncio.gather(*(index.search_async(p, k, nprobe=nprobe) for p in parts))
        return np.vstack([d for d, _ in outs]), np.vstack([i for _, i in outs])

    D, I = asyncio.run(main())
    assert_same_as_faiss(D, I, *expected(fixtures, name))
    assert index.last_stats["queries"] in {len(p) for p in np.array_split(queries, 10)}


def test_asyncio_from_s3_with_filters(fixtures, manifest, queries, s3_uri):
    index = ivflake.open(s3_uri("ivfpq_ip"))
    k, nprobe = manifest["k"], manifest["nprobe"]

    async def main():
        full = await index.search_async(queries, k, nprobe=nprobe)
        ranged = await index.search_async(queries[:10], k, nprobe=nprobe, filter={"range": [0, 3000]})
        return full, ranged

    (D, I), (_, I_range) = asyncio.run(main())
    assert_same_as_faiss(D, I, *expected(fixtures, "ivfpq_ip"))
    assert ((I_range >= 0) & (I_range < 3000) | (I_range == -1)).all()


def test_asyncio_errors_are_the_same_exceptions(fixtures, queries):
    index = ivflake.open(str(fixtures / "ivfflat_l2.faiss"))

    async def bad_dimension():
        return await index.search_async(np.zeros((1, 5), np.float32), 10)

    with pytest.raises(ValueError):
        asyncio.run(bad_dimension())
    with pytest.raises(ValueError, match="k"):
        index.search_async(queries[:1], 0)


def test_asyncio_cancel_leaves_the_index_usable(fixtures, manifest, queries):
    index = ivflake.open(str(fixtures / "ivfpq_l2.faiss"), memory_cache_bytes=0)

    async def main():
        task = asyncio.ensure_future(index.search_async(queries, manifest["k"], nprobe=64))
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await index.search_async(queries, manifest["k"], nprobe=manifest["nprobe"])

    D, I = asyncio.run(main())
    assert_same_as_faiss(D, I, *expected(fixtures, "ivfpq_l2"))


def test_asyncio_run_takes_search_async_itself(fixtures, manifest, queries):
    index = ivflake.open(str(fixtures / "ivfsqfp16_l2.faiss"))
    call = index.search_async(queries, manifest["k"], nprobe=manifest["nprobe"])
    assert inspect.iscoroutine(call)
    D, I = asyncio.run(call)
    assert_same_as_faiss(D, I, *expected(fixtures, "ivfsqfp16_l2"))


def test_a_coroutine_made_before_the_loop_starts(fixtures, manifest, queries):
    """Made with no loop running, awaited in a loop started later: the queries
    are the ones passed at the call, even if the array changes before the await."""
    index = ivflake.open(str(fixtures / "ivfpq_l2.faiss"))
    xq = queries.copy()
    pending = index.search_async(xq, manifest["k"], nprobe=manifest["nprobe"])
    xq[:] = 0

    async def main():
        return await pending

    D, I = asyncio.run(main())
    assert_same_as_faiss(D, I, *expected(fixtures, "ivfpq_l2"))
    with pytest.raises(RuntimeError, match="await"):
        asyncio.run(main())  # a coroutine runs once


def test_search_async_in_two_loops_one_after_the_other(fixtures, manifest, queries):
    index = ivflake.open(str(fixtures / "ivfflat_ip.faiss"))
    k, nprobe = manifest["k"], manifest["nprobe"]
    first = asyncio.run(index.search_async(queries, k, nprobe=nprobe))
    second = asyncio.run(index.search_async(queries, k, nprobe=nprobe))
    for D, I in (first, second):
        assert_same_as_faiss(D, I, *expected(fixtures, "ivfflat_ip"))


def test_asyncio_cancel_of_a_running_search_drops_its_gets(gated_s3, queries):
    index = ivflake.open(gated_s3.uri, memory_cache_bytes=0, **gated_s3.options)
    gated_s3.stall()

    async def main():
        loop = asyncio.get_running_loop()
        # The timeout only bounds the test should the GET never arrive.
        task = asyncio.ensure_future(index.search_async(queries[:1], 10, nprobe=4, timeout=60))
        assert await loop.run_in_executor(None, gated_s3.held.wait, 30), "the search reached the store"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return await loop.run_in_executor(None, gated_s3.abandoned.wait, 30)

    assert asyncio.run(main()), "the cancelled search kept its GET open"
    gated_s3.resume()
    D, I = asyncio.run(index.search_async(queries[:1], 10, nprobe=4, timeout=60))
    assert (I >= 0).all()


def test_search_async_timeout_raises_deadline_exceeded(gated_s3, queries):
    index = ivflake.open(gated_s3.uri, memory_cache_bytes=0, **gated_s3.options)
    gated_s3.stall()
    with pytest.raises(ivflake.DeadlineExceeded):
        asyncio.run(index.search_async(queries[:1], 10, nprobe=4, timeout=1e-6))
