"""The HTTP edge on the real app: envelope, request ids, bad input, operational endpoints.

A few probe routes are mounted on the real app so the app-wide handlers can be exercised
with a typed body, an unexpected exception and a real database error.
"""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import APIRouter
from pydantic import BaseModel
from sqlalchemy import text

from rendio.app import create_app
from rendio.config import Settings
from rendio.platform.db import Session
from tests.helpers.clients import open_client

probe = APIRouter()


class Payload(BaseModel):
    count: int
    name: str


@probe.post("/probe/echo")
async def echo(payload: Payload) -> dict[str, object]:
    return payload.model_dump()


@probe.get("/probe/crash")
async def crash() -> None:
    raise RuntimeError("secret internals: password=hunter2")


@probe.get("/probe/sql")
async def bad_sql(session: Session) -> None:
    await session.execute(text("SELECT * FROM table_that_does_not_exist"))


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(
        settings.model_copy(update={"max_body_bytes": 2048}), settings.database_url or ""
    )
    app.include_router(probe)
    async for client in open_client(app):
        yield client


def assert_envelope(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert isinstance(body["error"]["details"], dict)
    assert response.headers["x-request-id"]
    return body["error"]


async def test_valid_body_passes(http: httpx.AsyncClient) -> None:
    response = await http.post("/probe/echo", json={"count": 2, "name": "a"})
    assert response.status_code == 200
    assert response.json() == {"count": 2, "name": "a"}


async def test_malformed_json_is_a_clean_422(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/probe/echo", content=b'{"count": 2,', headers={"content-type": "application/json"}
    )
    error = assert_envelope(response, 422, "ERR_4013")
    assert error["details"] == {"body": "malformed JSON"}


async def test_wrong_types_name_the_fields(http: httpx.AsyncClient) -> None:
    response = await http.post("/probe/echo", json={"count": "many", "name": ["x"]})
    error = assert_envelope(response, 422, "ERR_4013")
    fields = {item["field"] for item in error["details"]["fields"]}
    assert fields == {"body.count", "body.name"}


async def test_json_array_instead_of_object(http: httpx.AsyncClient) -> None:
    assert_envelope(await http.post("/probe/echo", json=[1, 2]), 422, "ERR_4013")


async def test_wrong_content_type_is_refused(http: httpx.AsyncClient) -> None:
    response = await http.post(
        "/probe/echo",
        content=b"count=2",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    error = assert_envelope(response, 422, "ERR_4013")
    assert error["details"] == {"content_type": "must be application/json"}


async def test_body_over_the_cap_is_refused(http: httpx.AsyncClient) -> None:
    big = {"count": 1, "name": "x" * 5000}
    error = assert_envelope(await http.post("/probe/echo", json=big), 422, "ERR_4013")
    assert error["details"]["max_bytes"] == 2048


async def test_streamed_body_over_the_cap_is_refused(http: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"count": 1, "name": "'
        for _ in range(10):
            yield b"x" * 500
        yield b'"}'

    response = await http.post(
        "/probe/echo", content=chunks(), headers={"content-type": "application/json"}
    )
    assert_envelope(response, 422, "ERR_4013")


async def test_bogus_content_length_is_refused(http: httpx.AsyncClient) -> None:
    request = http.build_request("POST", "/probe/echo", content=b"{}")
    request.headers["content-length"] = "-5"
    assert_envelope(await http.send(request), 422, "ERR_4013")


async def test_unknown_route_and_method_are_404_envelopes(http: httpx.AsyncClient) -> None:
    assert_envelope(await http.get("/functions/v1/no-such-thing"), 404, "ERR_4011")
    assert_envelope(await http.delete("/functions/v1/get-models"), 404, "ERR_4011")


async def test_crash_is_a_500_envelope_without_internals(http: httpx.AsyncClient) -> None:
    response = await http.get("/probe/crash")
    assert_envelope(response, 500, "ERR_6003")
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text


async def test_database_error_hides_the_sql(http: httpx.AsyncClient) -> None:
    response = await http.get("/probe/sql")
    assert_envelope(response, 500, "ERR_6001")
    assert "table_that_does_not_exist" not in response.text
    assert "SELECT" not in response.text


async def test_messages_follow_accept_language(http: httpx.AsyncClient) -> None:
    messages = {}
    for language in ("en-US", "tr-TR,tr;q=0.9", "es;q=0.8, fr"):
        response = await http.get("/nope", headers={"accept-language": language})
        messages[language] = assert_envelope(response, 404, "ERR_4011")["message"]
    assert messages["en-US"] == "The requested item was not found."
    assert messages["tr-TR,tr;q=0.9"] == "İstenen öğe bulunamadı."
    assert messages["es;q=0.8, fr"] == "No se encontró el elemento solicitado."


async def test_request_id_is_echoed_or_generated(http: httpx.AsyncClient) -> None:
    echoed = await http.get("/health", headers={"x-request-id": "client-abc.123"})
    assert echoed.headers["x-request-id"] == "client-abc.123"
    generated = await http.get("/health")
    assert len(generated.headers["x-request-id"]) == 32
    hostile = await http.get("/health", headers={"x-request-id": "bad id\twith spaces"})
    assert hostile.headers["x-request-id"] != "bad id\twith spaces"


async def test_health_ready_docs(http: httpx.AsyncClient) -> None:
    assert (await http.get("/health")).json() == {"status": "ok"}
    assert (await http.get("/ready")).json() == {"status": "ready"}
    assert (await http.get("/docs")).status_code == 200
    spec = (await http.get("/openapi.json")).json()
    for path in (
        "/functions/v1/get-models",
        "/functions/v1/device-check",
        "/functions/v1/generate-video",
        "/functions/v1/get-video-status",
        "/functions/v1/update-credits",
        "/auth/v1/token",
        "/webhooks/app-store",
    ):
        assert path in spec["paths"], path
    generate = spec["paths"]["/functions/v1/generate-video"]["post"]
    assert any(p["name"] == "Idempotency-Key" for p in generate["parameters"])


async def test_ready_reports_a_dead_database(settings: Settings) -> None:
    broken = "postgresql://postgres@127.0.0.1:1/nowhere"
    app = create_app(settings.model_copy(update={"database_url": broken}), broken)
    async for client in open_client(app):
        response = await client.get("/ready")
        assert_envelope(response, 500, "ERR_6001")


async def test_metrics_count_requests_by_route_template(http: httpx.AsyncClient) -> None:
    await http.get("/functions/v1/get-models")
    await http.get("/no/such/path/12345")
    body = (await http.get("/metrics")).text
    assert (
        'rendio_http_requests_total{method="GET",route="/functions/v1/get-models",status="200"}'
        in body
    )
    assert "rendio_http_request_duration_seconds_bucket" in body
    assert "/no/such/path/12345" not in body


async def test_lone_surrogates_are_refused_not_crashed_on(client: httpx.AsyncClient) -> None:
    lone = b'"\\ud800"'
    device = await client.post(
        "/functions/v1/device-check",
        content=b'{"device_id": "install-1", "device_token": ' + lone + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert device.status_code == 422
    assert device.json()["error"]["code"] == "ERR_4013"
    refresh = await client.post(
        "/auth/v1/token?grant_type=refresh_token",
        content=b'{"refresh_token": ' + lone + b"}",
        headers={"Content-Type": "application/json"},
    )
    assert refresh.status_code == 400
    assert refresh.json()["code"] == "validation_failed"
    pair = await client.post(
        "/functions/v1/device-check",
        content=b'{"device_id": "install-1", "device_token": "\\ud83d\\ude00"}',
        headers={"Content-Type": "application/json"},
    )
    assert pair.status_code == 200, "an escaped surrogate pair is an ordinary emoji"


async def test_every_operation_has_a_stable_unique_id(http: httpx.AsyncClient) -> None:
    """Generated clients name their methods after operation ids: one per operation, derived
    from method and path, so they do not change when a handler is renamed."""
    spec = (await http.get("/openapi.json")).json()
    ids = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ids) == len(set(ids))
    generate = spec["paths"]["/functions/v1/generate-video"]["post"]
    assert generate["operationId"] == "post_generate_video"
    assert spec["paths"]["/functions/v1/get-video-status"]["get"]["operationId"] == (
        "get_get_video_status"
    )
    assert spec["paths"]["/auth/v1/token"]["post"]["operationId"] == "post_token"


async def test_requests_past_the_in_flight_cap_get_a_503_envelope() -> None:
    """Past RENDIO_MAX_IN_FLIGHT the app answers at once (ERR_6004, Retry-After) instead of
    queueing work; probes are always served."""
    import asyncio

    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    from rendio.platform.http import Renderers
    from rendio.platform.middleware import RequestMiddleware

    release = asyncio.Event()

    async def slow(request: object) -> PlainTextResponse:
        await release.wait()
        return PlainTextResponse("done")

    async def health(request: object) -> PlainTextResponse:
        return PlainTextResponse("ok")

    inner = Starlette(routes=[Route("/slow", slow), Route("/health", health)])
    app = RequestMiddleware(inner, max_body_bytes=1000, max_in_flight=1, renderers=Renderers({}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as http:
        first = asyncio.create_task(http.get("/slow"))
        while app.in_flight == 0:
            await asyncio.sleep(0.01)
        busy = await http.get("/slow")
        assert busy.status_code == 503
        assert busy.json()["error"]["code"] == "ERR_6004"
        assert busy.headers["retry-after"] == "1"
        assert (await http.get("/health")).status_code == 200
        release.set()
        assert (await first).status_code == 200
    assert app.in_flight == 0
