"""The suite's own rules: under CI or `make test`, a skipped test fails."""

import pathlib

import pytest

from conftest import S3_VARIABLES

pytest_plugins = ["pytester"]

SKIPPING = """
import pytest

def test_needs_a_server():
    pytest.skip("no S3 server")

@pytest.mark.xfail(reason="known", strict=True)
def test_known_failure():
    assert False

def test_passes():
    pass
"""


@pytest.mark.parametrize(
    "env, outcome",
    [
        ({}, {"skipped": 1}),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:1"}, {"failed": 1}),
        ({"IVFLAKE_S3_BUCKET": "bucket"}, {"failed": 1}),
        ({"CI": "true"}, {"failed": 1}),
    ],
)
def test_a_skip_fails_under_ci_or_with_the_s3_variables(pytester, monkeypatch, env, outcome):
    for name in ("CI", *S3_VARIABLES):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    pytester.makeconftest(pathlib.Path(__file__).with_name("conftest.py").read_text())
    pytester.makepyfile(test_skipping=SKIPPING)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, xfailed=1, **outcome)
    if "failed" in outcome:
        result.stdout.fnmatch_lines(["*skipped under CI or with the S3 variables set*no S3 server*"])
