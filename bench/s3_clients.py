"""obstore against aioboto3 for the S3 storage, measured against moto's threaded server.

    .venv/bin/pip install aioboto3      # the candidate we did not keep; bench-only
    .venv/bin/python bench/s3_clients.py

For each client: the median of 5 uploads of a 20 MB file, and the mean time of 1,000 presigned
GET URLs (the work a history page does 40 times: a video and a thumbnail link per item), and
that a presigned URL downloads the object. Both clients run in one process, one after the
other, against the same server.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import boto3
import httpx
from moto.server import ThreadedMotoServer

UPLOADS = 5
SIGNATURES = 1000
SIZE = 20 * 1024 * 1024


async def aioboto3_client(endpoint: str, source: Path) -> tuple[float, float, str]:
    import aioboto3  # type: ignore[import-not-found]
    from botocore.config import Config

    config = Config(signature_version="s3v4", s3={"addressing_style": "path"})
    async with aioboto3.Session().client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", config=config
    ) as s3:
        uploads = []
        for n in range(UPLOADS):
            started = time.perf_counter()
            await s3.upload_file(str(source), "bench-aioboto3", f"v{n}.mp4")
            uploads.append(time.perf_counter() - started)
        started = time.perf_counter()
        for n in range(SIGNATURES):
            params = {"Bucket": "bench-aioboto3", "Key": f"v{n % UPLOADS}.mp4"}
            url = await s3.generate_presigned_url("get_object", Params=params, ExpiresIn=3600)
        return statistics.median(uploads), (time.perf_counter() - started) / SIGNATURES, url


async def obstore_client(endpoint: str, source: Path) -> tuple[float, float, str]:
    import obstore
    from obstore.store import S3Store

    store = S3Store(
        "bench-obstore",
        endpoint=endpoint,
        region="us-east-1",
        virtual_hosted_style_request=False,
        client_options={"allow_http": True},
    )
    uploads = []
    for n in range(UPLOADS):
        started = time.perf_counter()
        await obstore.put_async(store, f"v{n}.mp4", source)
        uploads.append(time.perf_counter() - started)
    started = time.perf_counter()
    for n in range(SIGNATURES):
        url = obstore.sign(store, "GET", f"v{n % UPLOADS}.mp4", timedelta(hours=1))
    return statistics.median(uploads), (time.perf_counter() - started) / SIGNATURES, url


def main() -> None:
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench")  # noqa: S106 (moto)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "video.bin"
        source.write_bytes(os.urandom(SIZE))
        for name, client in (("aioboto3", aioboto3_client), ("obstore", obstore_client)):
            s3.create_bucket(Bucket=f"bench-{name}")
            upload, sign, url = asyncio.run(client(endpoint, source))
            fetched = httpx.get(url, timeout=30)
            ok = fetched.status_code == 200 and len(fetched.content) == SIZE
            print(
                f"{name:9} upload 20 MB: {upload * 1000:5.0f} ms (median of {UPLOADS})   "
                f"presign: {sign * 1e6:4.0f} µs each   presigned GET works: {ok}"
            )
    server.stop()


if __name__ == "__main__":
    main()
