"""Runs moto's S3 server on loopback for the tests, creates the test bucket
and uploads the fixtures into it. Writes the endpoint URL to ENDPOINT_FILE
once ready, then serves until killed.

Usage: python scripts/s3_server.py FIXTURE_DIR ENDPOINT_FILE BUCKET
"""
import os
import signal
import sys
import time

import boto3
from moto.server import ThreadedMotoServer


def main(fixtures, endpoint_file, bucket):
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket=bucket)
    for name in sorted(os.listdir(fixtures)):
        s3.upload_file(os.path.join(fixtures, name), bucket, "fixtures/" + name)
    tmp = endpoint_file + ".tmp"
    with open(tmp, "w") as f:
        f.write(endpoint)
    os.replace(tmp, endpoint_file)
    signal.signal(signal.SIGTERM, lambda *_: (server.stop(), sys.exit(0)))
    # Bounded: the test run is far shorter than this.
    deadline = time.time() + 3 * 3600
    while time.time() < deadline:
        time.sleep(1)
    server.stop()


if __name__ == "__main__":
    main(*sys.argv[1:4])
