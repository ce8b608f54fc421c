"""Shared fixtures: the faiss-cpu index files `scripts/make_fixtures.py`
writes (with faiss-cpu's own results), in a directory and in the moto S3
bucket `make test` starts (`AWS_ENDPOINT_URL`, `IVFLAKE_S3_BUCKET`)."""

import json
import os
import pathlib

import numpy as np
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


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
