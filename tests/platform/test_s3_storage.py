"""S3 storage against a real S3-speaking server (moto): objects written, linked and deleted;
presigned links checked field by field and against an independent SigV4 computation (moto
itself accepts any signature)."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from rendio.config import Settings
from rendio.platform.storage import S3Storage, build_storage
from tests.helpers.s3 import ACCESS_KEY_ID, REGION, SECRET_ACCESS_KEY, FakeS3, sigv4_query_signature


@pytest.fixture
def storage(s3: FakeS3, tmp_path: Path) -> tuple[S3Storage, str]:
    bucket = s3.new_bucket()
    settings = Settings(data_dir=tmp_path, **s3.settings(bucket))
    built = build_storage(settings, "secret")
    assert isinstance(built, S3Storage)
    return built, bucket


async def test_a_file_is_stored_linked_and_deleted(
    storage: tuple[S3Storage, str], s3: FakeS3, tmp_path: Path
) -> None:
    store, bucket = storage
    source = tmp_path / "video.mp4"
    source.write_bytes(b"\x00video bytes" * 50_000)
    await store.put_file("videos/j1/run/video.mp4", source)
    assert s3.keys(bucket) == ["videos/j1/run/video.mp4"]
    assert store.local_path("videos/j1/run/video.mp4") is None

    link = store.link("videos/j1/run/video.mp4", "http://ignored", 600)
    fetched = httpx.get(link, timeout=10)
    assert fetched.status_code == 200 and fetched.content == source.read_bytes()

    await store.delete(["videos/j1/run/video.mp4", "never/existed.jpg"])
    assert s3.keys(bucket) == []
    await store.delete([])


def test_a_link_is_a_sigv4_presigned_get_with_the_configured_lifetime(
    storage: tuple[S3Storage, str], s3: FakeS3
) -> None:
    store, bucket = storage
    before = time.gmtime()
    link = store.link("videos/a b/thumbnail.jpg", "http://ignored", 900)
    parts = urlsplit(link)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    assert f"{parts.scheme}://{parts.netloc}" == s3.endpoint
    assert parts.path == f"/{bucket}/videos/a%20b/thumbnail.jpg"  # path style, key encoded
    assert query["X-Amz-Algorithm"] == "AWS4-HMAC-SHA256"
    assert query["X-Amz-Expires"] == "900"
    assert query["X-Amz-SignedHeaders"] == "host"
    date = time.strftime("%Y%m%d", before)
    assert query["X-Amz-Credential"] == f"{ACCESS_KEY_ID}/{date}/{REGION}/s3/aws4_request"
    signed_at = time.mktime(time.strptime(query["X-Amz-Date"], "%Y%m%dT%H%M%SZ"))
    assert abs(signed_at - time.mktime(before)) < 5
    assert query["X-Amz-Signature"] == sigv4_query_signature(link, SECRET_ACCESS_KEY)
    # The signature covers the lifetime: a link stretched by hand no longer verifies.
    stretched = link.replace("X-Amz-Expires=900", "X-Amz-Expires=604800")
    assert sigv4_query_signature(stretched, SECRET_ACCESS_KEY) != query["X-Amz-Signature"]


def test_s3_settings_are_checked(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="RENDIO_S3_BUCKET"):
        Settings(data_dir=tmp_path, storage="s3")
    with pytest.raises(ValueError, match="go together"):
        Settings(data_dir=tmp_path, storage="s3", s3_bucket="videos", s3_access_key_id="AKID")
