"""A real S3-speaking server for tests: moto's threaded server on a free local port, with a
bucket. moto does not check request signatures, so tests check presigned URLs themselves
(`sigv4_query_signature`)."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import boto3
from moto.server import ThreadedMotoServer

ACCESS_KEY_ID = "AKIDRENDIOTEST"
SECRET_ACCESS_KEY = "rendio-test-secret"
REGION = "eu-central-1"


@dataclass(frozen=True)
class FakeS3:
    endpoint: str

    def new_bucket(self) -> str:
        name = f"rendio-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(
            Bucket=name, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        return name

    def client(self) -> Any:
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def keys(self, bucket: str) -> list[str]:
        listing = self.client().list_objects_v2(Bucket=bucket)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def settings(self, bucket: str) -> dict[str, Any]:
        return {
            "storage": "s3",
            "s3_bucket": bucket,
            "s3_endpoint_url": self.endpoint,
            "s3_region": REGION,
            "s3_access_key_id": ACCESS_KEY_ID,
            "s3_secret_access_key": SECRET_ACCESS_KEY,
        }


@contextmanager
def fake_s3() -> Iterator[FakeS3]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield FakeS3(f"http://{host}:{port}")
    finally:
        server.stop()


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


def sigv4_query_signature(url: str, secret_access_key: str) -> str:
    """The SigV4 signature a presigned S3 GET URL must carry, computed from its own query
    parameters by the published algorithm (AWS "Authenticating Requests: Using Query
    Parameters"), independently of the client that made it."""
    parts = urlsplit(url)
    params = [tuple(item.split("=", 1)) for item in parts.query.split("&")]
    decoded = {key: unquote(value) for key, value in params}
    canonical_query = "&".join(
        f"{quote(key, safe='-_.~')}={quote(decoded[key], safe='-_.~')}"
        for key in sorted(decoded)
        if key != "X-Amz-Signature"
    )
    canonical_request = "\n".join(
        ["GET", parts.path, canonical_query, f"host:{parts.netloc}\n", "host", "UNSIGNED-PAYLOAD"]
    )
    amz_date = decoded["X-Amz-Date"]
    _, date, region, service, terminal = decoded["X-Amz-Credential"].split("/")
    scope = f"{date}/{region}/{service}/{terminal}"
    string_to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            amz_date,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(f"AWS4{secret_access_key}".encode(), date)
    for part in (region, service, terminal):
        key = _hmac(key, part)
    return hmac.new(key, string_to_sign.encode(), hashlib.sha256).hexdigest()
