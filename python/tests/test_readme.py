"""The README's CLI and Python examples, run as written, so the README cannot
drift from the code. Only what has no fixed answer changes: the bucket
(``s3://bucket/`` becomes a prefix of the test bucket on the moto server
`make test` starts), the input files (generated here under the names the
README uses) and the Python block's `xq` and `allowed`. Skipped, each for its
reason: ``ivflake serve`` (it runs until stopped; the HTTP tests serve),
``ivflake bench`` (a benchmark of minutes), the Rust snippet (a fragment
inside an async fn) and the curl line (its vector is elided with ``...``).
"""

import asyncio
import os
import re
import shlex
import subprocess
import textwrap
import uuid

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import REPO, S3_VARIABLES, cli_binary

D = 32
SKIPPED = {"serve": "runs until stopped", "bench": "a benchmark of minutes"}


def readme_blocks(lang):
    return re.findall(r"```" + lang + r"\n(.*?)```", (REPO / "README.md").read_text(), re.S)


def commands(block):
    """Each `ivflake ...` command of a shell block, as argv: continuation
    lines joined, comments dropped (shlex reads quotes as a shell would)."""
    joined = block.replace("\\\n", " ")
    argvs = [shlex.split(line, comments=True) for line in joined.splitlines()]
    return [argv for argv in argvs if argv and argv[0] == "ivflake"]


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory):
    if not all(os.environ.get(v) for v in S3_VARIABLES):
        pytest.skip("no S3 server: AWS_ENDPOINT_URL and IVFLAKE_S3_BUCKET are set by `make test`")
    work = tmp_path_factory.mktemp("readme")
    rng = np.random.default_rng(11)
    centers = rng.normal(size=(64, D)).astype("float32") * 3
    vectors = (centers[rng.integers(0, 64, 20_000)] + rng.normal(size=(20_000, D))).astype("float32")
    np.save(work / "vectors.npy", vectors)
    np.save(work / "queries.npy", vectors[:5] + 0.01)
    np.save(work / "q.npy", vectors[:5] + 0.01)
    n = 10_000
    table = pa.table(
        {
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors[:n].ravel()), D),
            "id": pa.array(np.arange(n, dtype="int64")),
            "category": pa.array(rng.choice(["shoes", "hats", "bags"], n).tolist()),
            "price": pa.array(rng.uniform(1, 100, n)),
        }
    )
    pq.write_table(table, work / "data.parquet")
    # Attributes of every vector of `vectors.npy`, for the index built elsewhere.
    everyone = len(vectors)
    attrs = pa.table(
        {
            "id": pa.array(np.arange(everyone, dtype="int64")),
            "category": pa.array(rng.choice(["shoes", "hats", "bags"], everyone).tolist()),
            "price": pa.array(rng.uniform(1, 100, everyone)),
        }
    )
    pq.write_table(attrs, work / "attrs.parquet")
    prefix = f"s3://{os.environ['IVFLAKE_S3_BUCKET']}/readme-{uuid.uuid4().hex[:8]}/"
    return work, prefix


def run(argv, work, prefix):
    argv = [str(cli_binary())] + [
        a.replace("s3://bucket/", prefix) if a.startswith("s3://bucket/") else str(work / a) if (work / a).exists() else a
        for a in argv[1:]
    ]
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")
    done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{' '.join(argv)}\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_cli_examples_run_as_written(sandbox):
    work, prefix = sandbox
    ran = 0
    # "An index built elsewhere" for `ivflake attributes`: built here first.
    run(["ivflake", "build", "--input", "vectors.npy", "--factory", "IVF64,Flat", "--output",
         "s3://bucket/other.faiss"], work, prefix)
    for block in readme_blocks("sh"):
        for argv in commands(block):
            if argv[1] in SKIPPED:
                continue
            out = run(argv, work, prefix)
            if argv[1] == "search":
                assert len(out.strip().splitlines()) == 5, out
            ran += 1
    assert ran >= 6, f"only {ran} README commands ran"


def test_the_python_example_runs_as_written(sandbox):
    work, prefix = sandbox
    uri = prefix + "index.faiss"
    if subprocess.run([str(cli_binary()), "inspect", uri], capture_output=True).returncode != 0:
        run(["ivflake", "build", "--input", "vectors.npy", "--factory", "IVF64,Flat", "--output",
             "s3://bucket/index.faiss"], work, prefix)
    (block,) = [b for b in readme_blocks("python") if "ivflake.open(" in b]
    code = block.replace('"s3://bucket/index.faiss"', repr(uri))
    assert code != block, "the README's example URI changed: update this test's substitution"
    namespace = {"xq": np.load(work / "queries.npy"), "allowed": list(range(0, 20_000, 3))}
    exec("async def _example():\n" + textwrap.indent(code, "    ") + "\n    return D, I\n", namespace)
    D, I = asyncio.run(namespace["_example"]())
    assert D.shape == I.shape == (5, 10) and D.dtype == np.float32 and I.dtype == np.int64


def test_the_text_search_example_runs_as_written(sandbox):
    """The full-text block: its index created under the test bucket, with
    generated `xb`, `ids`, `texts`, `cats` and `xq`; then its queries'
    answers checked: the documents holding the words come first."""
    import ivflake

    work, prefix = sandbox
    (block,) = [b for b in readme_blocks("python") if "text_fields=" in b]
    uri = prefix + "docs/"
    code = block.replace('"s3://bucket/docs/"', repr(uri))
    assert code != block, "the README's example URI changed: update this test's substitution"
    rng = np.random.default_rng(1)
    n = 200
    texts = [("red running shoes" if i % 10 == 0 else f"plain item {i}") for i in range(n)]
    namespace = {"ivflake": ivflake, "xb": rng.standard_normal((n, 384)).astype("float32"),
                 "ids": np.arange(n, dtype="int64"), "texts": texts,
                 "cats": ["shoes" if i % 20 == 0 else "other" for i in range(n)],
                 "xq": rng.standard_normal(384).astype("float32")}
    exec(code, namespace)
    index = namespace["index"]
    hits = index.query(text={"body": "red running shoes"}, k=5)
    assert len(hits) == 5 and all(h["id"] % 10 == 0 for h in hits)
    hybrid = index.query(namespace["xq"], k=5, text={"body": "red running shoes"},
                         attribute_filter={"cat": "shoes"}, return_attributes=["body"])
    assert hybrid and all(h["id"] % 20 == 0 and h["attributes"]["body"] == "red running shoes" for h in hybrid)
    assert index.text_fields == {"body": "en", "title": "standard"}
