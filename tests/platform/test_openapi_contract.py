"""The OpenAPI document as a contract: each operation lists the error codes it can answer, and
answers only those.

`Contract` is hooked into the test client: every error answer of a documented operation is
checked against the codes the document lists for that operation and status. The tests then
drive each `/functions/v1` (and `/auth/v1`) operation into errors it can give.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi.openapi.utils import get_openapi
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.app import create_app
from rendio.platform.errors import HTTP_STATUS, ErrorCode
from tests.helpers.admin import admin_guest
from tests.helpers.clients import Guest, guest, open_client
from tests.helpers.factories import add_models, simulated_model, video_body
from tests.helpers.settings import SettingsFactory

KEY = "public-anon-key"
FUNCTIONS = "/functions/v1/"
BODY_METHODS = {"post", "put", "patch"}


class Undeclared(AssertionError):
    pass


class Contract:
    """Checks answers against the document; remembers which (method, path, code) it saw."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.seen: set[tuple[str, str, str]] = set()

    def operations(self, prefix: str = "") -> list[tuple[str, str, dict[str, Any]]]:
        return [
            (method, path, operation)
            for path, item in self.document["paths"].items()
            if path.startswith(prefix)
            for method, operation in item.items()
        ]

    def check(self, method: str, path: str, status: int, body: Any) -> None:
        operation = self.document["paths"].get(path, {}).get(method.lower())
        if operation is None or status < 400:
            return
        code = body["error"]["code"] if "error" in body else body["code"]
        declared = operation["responses"].get(str(status), {}).get("x-error-codes", [])
        if code not in declared:
            raise Undeclared(f"{method} {path} answered {status} {code}; declared {declared}")
        self.seen.add((method.lower(), path, code))

    async def hook(self, response: httpx.Response) -> None:
        await response.aread()
        request = response.request
        if response.headers.get("content-type", "").startswith("application/json"):
            self.check(request.method, request.url.path, response.status_code, response.json())


async def checked_client(app: Any, contract: Contract) -> AsyncIterator[httpx.AsyncClient]:
    async for client in open_client(app):
        client.headers["apikey"] = KEY
        client.event_hooks["response"].append(contract.hook)
        yield client


@pytest.fixture
async def contract_client(
    make_settings: SettingsFactory,
) -> AsyncIterator[tuple[httpx.AsyncClient, Contract]]:
    settings = make_settings(anon_key=KEY)
    app = create_app(settings, settings.database_url or "")
    contract = Contract(app.openapi())
    async for client in checked_client(app, contract):
        yield client, contract


def _path_params(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


async def call(client: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> httpx.Response:
    if method in BODY_METHODS and "json" not in kwargs and "content" not in kwargs:
        kwargs["json"] = {}
    return await client.request(method.upper(), _path_params(path), **kwargs)


def test_checker_refuses_an_undeclared_code() -> None:
    document = {
        "paths": {
            "/functions/v1/x": {"get": {"responses": {"404": {"x-error-codes": ["ERR_4011"]}}}}
        }
    }
    contract = Contract(document)
    contract.check("GET", "/functions/v1/x", 404, {"error": {"code": "ERR_4011"}})
    with pytest.raises(Undeclared):
        contract.check("GET", "/functions/v1/x", 401, {"error": {"code": "ERR_4005"}})
    with pytest.raises(Undeclared):
        contract.check("GET", "/functions/v1/x", 404, {"code": "not_found"})


async def test_every_function_declares_its_errors_with_the_envelope(
    contract_client: tuple[httpx.AsyncClient, Contract],
) -> None:
    _, contract = contract_client
    operations = contract.operations(FUNCTIONS)
    assert len(operations) > 30
    for method, path, operation in operations:
        declared = {
            status: response.get("x-error-codes", [])
            for status, response in operation["responses"].items()
            if int(status) >= 400
        }
        assert any(declared.values()), (method, path)
        for status, codes in declared.items():
            response = operation["responses"][status]
            assert codes, (method, path, status, "an error status without its codes")
            media = response["content"]["application/json"]
            assert media["schema"] == {"$ref": "#/components/schemas/ErrorEnvelope"}
            assert sorted(media["examples"]) == codes
            for code in codes:
                assert HTTP_STATUS[ErrorCode(code)] == int(status)
                assert f"`{code}`" in response["description"]
                assert media["examples"][code]["value"]["error"]["code"] == code
        # Every function sits behind the apikey gate; FastAPI's own 422 shape is gone.
        assert "ERR_4016" in declared["401"], (method, path)
        assert "HTTPValidationError" not in str(operation)
    envelope = contract.document["components"]["schemas"]["ErrorBody"]
    assert envelope["properties"]["code"] == {
        "$ref": "#/components/schemas/ErrorCode",
        "description": envelope["properties"]["code"]["description"],
    }
    enum = contract.document["components"]["schemas"]["ErrorCode"]["enum"]
    assert sorted(enum) == sorted(code.value for code in ErrorCode)
    assert "HTTPValidationError" not in contract.document["components"]["schemas"]


async def test_every_function_declares_its_own_errors(make_settings: SettingsFactory) -> None:
    """Beyond what the layers around it add: each route says what its own code raises (a new
    route without `responses=errors(...)` fails here). Only get-products raises nothing."""
    settings = make_settings()
    app = create_app(settings, settings.database_url or "")
    raw = get_openapi(title="raw", version="0", routes=app.routes)
    checked = 0
    for path, item in raw["paths"].items():
        if not path.startswith(FUNCTIONS) or path.endswith("/get-products"):
            continue
        for method, operation in item.items():
            declared = [
                code
                for response in operation["responses"].values()
                for code in response.get("x-error-codes", [])
            ]
            assert declared, (method, path)
            checked += 1
    assert checked > 25


async def test_declarations_are_specific_to_each_operation(
    contract_client: tuple[httpx.AsyncClient, Contract],
) -> None:
    """Not one list for all: what an operation cannot answer is not listed."""
    _, contract = contract_client
    paths = contract.document["paths"]

    def codes(path: str, method: str) -> set[str]:
        responses = paths[path][method]["responses"]
        return {
            code for response in responses.values() for code in response.get("x-error-codes", [])
        }

    generate = codes("/functions/v1/generate-video", "post")
    assert {"ERR_4001", "ERR_4002", "ERR_4003", "ERR_4007", "ERR_4008", "ERR_4009"} <= generate
    products = codes("/functions/v1/get-products", "get")
    assert not products & {"ERR_4005", "ERR_4013", "ERR_6001", "ERR_4011"}
    assert "ERR_4005" in codes("/functions/v1/get-user-credits", "get")
    assert "ERR_4013" not in codes("/functions/v1/get-user-credits", "get")
    assert "ERR_4006" in codes("/functions/v1/device-check", "post")
    assert "ERR_4005" not in codes("/functions/v1/device-check", "post")
    assert "ERR_4012" in codes("/functions/v1/update-credits", "post")
    assert "ERR_4012" not in codes("/functions/v1/get-video-status", "get")


async def test_security_schemes_and_the_idempotency_key(
    contract_client: tuple[httpx.AsyncClient, Contract],
) -> None:
    _, contract = contract_client
    schemes = contract.document["components"]["securitySchemes"]
    assert schemes["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearer"]["description"],
    }
    assert schemes["apikey"]["type"] == "apiKey"
    assert (schemes["apikey"]["in"], schemes["apikey"]["name"]) == ("header", "apikey")
    paths = contract.document["paths"]
    both = [{"apikey": [], "bearer": []}]
    assert paths["/functions/v1/generate-video"]["post"]["security"] == both
    assert paths["/functions/v1/get-models"]["get"]["security"] == [{"apikey": []}]
    assert paths["/functions/v1/device-check"]["post"]["security"] == [{"apikey": []}]
    assert paths["/auth/v1/user"]["get"]["security"] == both
    assert paths["/auth/v1/token"]["post"]["security"] == [{"apikey": []}]
    assert "security" not in paths["/webhooks/fal"]["post"]
    assert "security" not in paths["/health"]["get"]

    [key] = [
        p
        for p in paths["/functions/v1/generate-video"]["post"]["parameters"]
        if p["name"] == "Idempotency-Key"
    ]
    assert key["in"] == "header"
    assert key["required"] is True
    for method, path, operation in contract.operations():
        if path != "/functions/v1/generate-video":
            names = [p["name"] for p in operation.get("parameters", [])]
            assert "Idempotency-Key" not in names, (method, path)


async def test_auth_is_documented_in_gotrue_shapes(
    contract_client: tuple[httpx.AsyncClient, Contract],
) -> None:
    _, contract = contract_client
    schemas = contract.document["components"]["schemas"]
    assert set(schemas["GoTrueError"]["required"]) == {"code", "error_code", "msg", "message"}
    paths = contract.document["paths"]
    token = paths["/auth/v1/token"]["post"]
    body = token["requestBody"]["content"]["application/json"]["schema"]
    assert body == {
        "oneOf": [
            {"$ref": "#/components/schemas/RefreshIn"},
            {"$ref": "#/components/schemas/IdTokenIn"},
        ]
    }
    assert "refresh_token" in schemas["RefreshIn"]["properties"]
    assert "id_token" in schemas["IdTokenIn"]["properties"]
    ok = token["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/GoTrueSession"}
    signup = paths["/auth/v1/signup"]["post"]["requestBody"]["content"]["application/json"]
    assert signup["schema"] == {"$ref": "#/components/schemas/SignupIn"}
    update = paths["/auth/v1/user"]["put"]["requestBody"]["content"]["application/json"]
    assert update["schema"] == {"$ref": "#/components/schemas/UserUpdateIn"}
    for method, path, operation in contract.operations("/auth/v1/"):
        for status, response in operation["responses"].items():
            if int(status) < 400:
                continue
            refs = str(response["content"]["application/json"]["schema"])
            for code in response["x-error-codes"]:
                example = response["content"]["application/json"]["examples"][code]["value"]
                if code.startswith("ERR_"):  # the HTTP server's own refusals
                    assert code in ("ERR_4014", "ERR_4015", "ERR_6004"), (path, code)
                    assert "ErrorEnvelope" in refs
                    assert example["error"]["code"] == code
                else:
                    assert "GoTrueError" in refs, (method, path, status)
                    assert example["code"] == example["error_code"] == code
        # GoTrue answers a bad request with 400, never FastAPI's 422.
        assert "HTTPValidationError" not in str(operation)


async def banned(db: AsyncSession, user: Guest) -> None:
    await db.execute(
        text("UPDATE users SET banned_at = now() WHERE id = :id"), {"id": user.user_id}
    )
    await db.commit()


async def test_every_function_answers_only_declared_codes(
    contract_client: tuple[httpx.AsyncClient, Contract],
    db: AsyncSession,
    clean_database: str,
) -> None:
    client, contract = contract_client
    [expensive] = add_models(clean_database, simulated_model("contract-pricey", cost=1000))
    user = await guest(client, "contract-1")
    other = await guest(client, "contract-2")
    ban = await guest(client, "contract-3")
    admin = await admin_guest(client, db, "contract-admin")
    await banned(db, ban)
    functions = contract.operations(FUNCTIONS)

    for method, path, _ in functions:
        # The gate: a wrong apikey.
        assert (await call(client, method, path, headers={"apikey": "wrong"})).status_code == 401
        # Not JSON where a body may come.
        if method in BODY_METHODS:
            refused = await call(
                client, method, path, content=b"x", headers={"content-type": "text/plain"}
            )
            assert refused.status_code == 422, (method, path, refused.text)

    for method, path, operation in functions:
        if operation.get("security") != [{"apikey": [], "bearer": []}]:
            continue
        assert (await call(client, method, path)).status_code == 401
        garbled = await call(client, method, path, headers={"Authorization": "Bearer x.y.z"})
        assert garbled.status_code == 401
        assert (await call(client, method, path, headers=ban.headers)).status_code == 403
        if "/admin-" in path:
            assert (await call(client, method, path, headers=user.headers)).status_code == 403

    F = FUNCTIONS
    h = user.headers
    expected = [
        (await client.post(F + "device-check", json={"device_id": ""}), 422),
        (await client.patch(F + "user-profile", json={"language": "de"}, headers=h), 422),
        (await client.post(F + "user-profile", json={"user_id": other.user_id}, headers=h), 403),
        (await client.post(F + "update-credits", json={}, headers=h), 422),
        (await client.post(F + "update-credits", json={"signed_transaction": "x"}, headers=h), 400),
        (await client.get(F + "get-video-status", params={"job_id": "nope"}, headers=h), 422),
        (
            await client.get(
                F + "get-video-status", params={"job_id": str(uuid.uuid4())}, headers=h
            ),
            404,
        ),
        (await client.post(F + "get-video-status", json={}, headers=h), 422),
        (
            await client.post(
                F + "get-video-status", json={"job_id": str(uuid.uuid4())}, headers=h
            ),
            404,
        ),
        (await client.get(F + "get-video-jobs", params={"limit": 0}, headers=h), 422),
        (await client.get(F + "get-video-jobs", params={"cursor": "forged"}, headers=h), 422),
        (await client.post(F + "get-video-jobs", json={"limit": "many"}, headers=h), 422),
        (
            await client.post(
                F + "delete-video-job", json={"job_id": str(uuid.uuid4())}, headers=h
            ),
            404,
        ),
        (await client.delete(F + "delete-video-job", headers=h), 422),
        (
            await client.delete(
                F + "delete-video-job", params={"job_id": str(uuid.uuid4())}, headers=h
            ),
            404,
        ),
        (
            await client.post(
                F + "restore-video-job", json={"job_id": str(uuid.uuid4())}, headers=h
            ),
            404,
        ),
        (await client.post(F + "register-push-token", json={"token": "zz"}, headers=h), 422),
        (await client.post(F + "unregister-push-token", json={}, headers=h), 422),
    ]
    generate = F + "generate-video"
    key = {"Idempotency-Key": "contract-key"}
    expected += [
        (await client.post(generate, json=video_body(), headers=h), 400),
        (
            await client.post(generate, json=video_body(str(uuid.uuid4())), headers={**h, **key}),
            400,
        ),
        (await client.post(generate, json=video_body(prompt="  "), headers={**h, **key}), 400),
        (await client.post(generate, json=video_body(expensive), headers={**h, **key}), 402),
        (await client.post(generate, json=video_body(duration=99), headers={**h, **key}), 422),
        (await client.post(generate, json={"prompt": 1}, headers={**h, **key}), 422),
        (
            await client.post(
                generate, json=video_body() | {"user_id": other.user_id}, headers={**h, **key}
            ),
            403,
        ),
        (await client.post(generate, json=video_body(), headers={**h, **key}), 200),
        (await client.post(generate, json=video_body(prompt="another"), headers={**h, **key}), 422),
    ]
    nobody = str(uuid.uuid4())

    async def as_admin(name: str, body: dict[str, Any]) -> httpx.Response:
        return await client.post(F + name, json=body | {"reason": "r"}, headers=admin.headers)

    async def look(name: str, **params: Any) -> httpx.Response:
        return await client.get(F + name, params=params, headers=admin.headers)

    expected += [
        (await as_admin("admin-refund-credits", {"user_id": nobody, "amount": 1}), 404),
        (
            await as_admin("admin-adjust-credits", {"user_id": user.user_id, "change": -(10**4)}),
            402,
        ),
        (await as_admin("admin-adjust-credits", {"user_id": user.user_id, "change": 0}), 422),
        (await as_admin("admin-refund-job", {"job_id": nobody}), 404),
        (await as_admin("admin-set-model", {"model_id": nobody, "is_available": False}), 404),
        (await as_admin("admin-ban-user", {"user_id": nobody}), 404),
        (await as_admin("admin-ban-user", {"user_id": admin.user_id}), 422),
        (await as_admin("admin-unban-user", {"user_id": nobody}), 404),
        (await look("admin-user", user_id=nobody), 404),
        (await look("admin-user"), 422),
        (await look("admin-stats", since="yesterday"), 422),
        (await look("admin-actions", cursor="x"), 422),
        (await client.post("/webhooks/fal", json={}), 401),
        (await client.post("/webhooks/replicate", json={}), 401),
        (await client.post("/webhooks/app-store", json={"signedPayload": "x.y.z"}), 400),
        (await client.post("/webhooks/app-store", json={}), 422),
    ]
    for response, status in expected:
        assert response.status_code == status, (response.request.url, response.text)

    # Every function was driven into at least one of its errors, and most into several.
    answered = {(method, path) for method, path, _ in contract.seen}
    assert {(m, p) for m, p, _ in functions} <= answered
    assert {code for _, _, code in contract.seen} == {
        "ERR_4001", "ERR_4002", "ERR_4003", "ERR_4005", "ERR_4007", "ERR_4009", "ERR_4010",
        "ERR_4011", "ERR_4012", "ERR_4013", "ERR_4016",
    }  # fmt: skip


async def test_limits_answer_declared_codes(make_settings: SettingsFactory) -> None:
    """Rate limits, per action and per address, on the operations that have them."""
    settings = make_settings(
        anon_key=KEY, rate_limit_device_check="2/hour", rate_limit_generate_video="1/hour"
    )
    app = create_app(settings, settings.database_url or "")
    contract = Contract(app.openapi())
    async for client in checked_client(app, contract):
        user = await guest(client, "limits-1")
        await guest(client, "limits-2")
        refused = await client.post(
            FUNCTIONS + "device-check", json={"device_id": "a", "device_token": "b"}
        )
        assert refused.status_code == 429
        generate = FUNCTIONS + "generate-video"
        first = await client.post(
            generate, json=video_body(), headers={**user.headers, "Idempotency-Key": "k1"}
        )
        assert first.status_code == 200, first.text
        second = await client.post(
            generate, json=video_body(), headers={**user.headers, "Idempotency-Key": "k2"}
        )
        assert second.status_code == 429
    ceiling = make_settings(anon_key=KEY, rate_limit_per_ip="3/minute")
    app = create_app(ceiling, ceiling.database_url or "")
    contract = Contract(app.openapi())
    async for client in checked_client(app, contract):
        answers = [await client.get(FUNCTIONS + "get-products") for _ in range(4)]
        answers += [await client.post("/auth/v1/signup", json={})]
        answers += [await client.post("/webhooks/fal", json={})]
        assert [a.status_code for a in answers] == [200, 200, 200, 429, 429, 429]
    assert ("get", "/functions/v1/get-products", "ERR_4004") in contract.seen
    assert ("post", "/auth/v1/signup", "over_request_rate_limit") in contract.seen


async def test_auth_answers_only_declared_codes(
    contract_client: tuple[httpx.AsyncClient, Contract],
) -> None:
    client, contract = contract_client
    session = (await client.post("/auth/v1/signup", json={})).json()
    bearer = {"Authorization": f"Bearer {session['access_token']}"}
    A = "/auth/v1/"

    async def token(grant: str, body: dict[str, Any]) -> httpx.Response:
        return await client.post(A + "token", params={"grant_type": grant}, json=body)

    json_type = {"content-type": "application/json"}
    expected = [
        (await client.post(A + "signup", json={}, headers={"apikey": "wrong"}), 401),
        (await client.post(A + "signup", json={"email": "a@b.c", "password": "pw123456"}), 422),
        (await client.post(A + "signup", content=b"{", headers=json_type), 400),
        (await token("password", {}), 400),
        (await token("refresh_token", {}), 400),
        (await token("refresh_token", {"refresh_token": "nope"}), 400),
        (await token("id_token", {"provider": "google", "id_token": "x"}), 400),
        (await client.get(A + "user"), 401),
        (await client.get(A + "user", headers={"Authorization": "Bearer x.y.z"}), 403),
        (await client.put(A + "user", json={"app_metadata": {"a": 1}}, headers=bearer), 403),
        (await client.put(A + "user", json={"phone": "+15550100"}, headers=bearer), 422),
        (await client.post(A + "logout", params={"scope": "everyone"}, headers=bearer), 400),
        (await client.post(A + "logout"), 401),
    ]  # fmt: skip
    for response, status in expected:
        assert response.status_code == status, (response.request.url, response.text)
    assert {path for _, path, _ in contract.seen} == {
        A + "signup",
        A + "token",
        A + "user",
        A + "logout",
    }
