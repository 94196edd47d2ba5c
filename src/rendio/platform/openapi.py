"""What the OpenAPI document promises about errors, and the docs pages that show it.

Every operation lists the error codes it can answer, grouped by HTTP status: each status's
description names its codes, its `x-error-codes` lists them, and its examples show each one in
the envelope whose schema (`ErrorEnvelope`, code as an enum) the status refers to. A route
declares what its own code can raise with `responses=errors(...)`; the composition root adds
what the layers around every operation can answer (the HTTP server, the request middleware,
the `apikey` gate it mounts) with `Around` rules, applied to the finished document.
`tests/platform/test_openapi_contract.py` drives endpoints into their errors and fails when an
answer's code is not in its operation's list.

The docs pages load Swagger UI and ReDoc from the `fastapi-offline` package's copies, served by
us, so they work without reaching any CDN.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from rendio.platform import i18n
from rendio.platform.errors import HTTP_STATUS, ErrorCode

CODES_KEY = "x-error-codes"
REF_PREFIX = "#/components/schemas/"
Responses = dict[int | str, dict[str, Any]]

# What each code means, for the OpenAPI descriptions and docs/errors.md (SPEC §3 and ours).
MEANING: dict[ErrorCode, str] = {
    ErrorCode.INSUFFICIENT_CREDITS: "insufficient credits (details: required, available)",
    ErrorCode.MODEL_UNAVAILABLE: "model unknown or not available",
    ErrorCode.INVALID_PROMPT: "invalid prompt (empty after trim, too long, control characters)",
    ErrorCode.RATE_LIMITED: "rate limit exceeded (details: retry_after; `Retry-After` header)",
    ErrorCode.UNAUTHORIZED: "missing, invalid or expired token",
    ErrorCode.DEVICE_VERIFICATION_FAILED: "device verification failed",
    ErrorCode.IDEMPOTENCY_KEY_REUSED: "Idempotency-Key reused with a different request",
    ErrorCode.IDEMPOTENCY_IN_PROGRESS: "a request with this Idempotency-Key is still in progress",
    ErrorCode.IDEMPOTENCY_KEY_INVALID: "Idempotency-Key missing or malformed",
    ErrorCode.FORBIDDEN: "forbidden (not yours, not admin, or account banned)",
    ErrorCode.NOT_FOUND: "not found (also for other users' objects: never leak existence)",
    ErrorCode.PURCHASE_INVALID: (
        "purchase invalid (bad signature, wrong bundle/environment, unknown product, revoked)"
    ),
    ErrorCode.VALIDATION_FAILED: "request validation failed (details: the fields)",
    ErrorCode.HEADERS_TOO_LARGE: "request headers too large",
    ErrorCode.REQUEST_TIMEOUT: "request headers or body too slow to arrive",
    ErrorCode.API_KEY_INVALID: "API key (`apikey` header) missing or invalid",
    ErrorCode.PROVIDER_TIMEOUT: "provider timeout",
    ErrorCode.PROVIDER_UNAVAILABLE: "provider (or Apple) unavailable",
    ErrorCode.PROVIDER_REJECTED: "provider rejected the request",
    ErrorCode.DATABASE_ERROR: "database error",
    ErrorCode.STORAGE_ERROR: "storage error",
    ErrorCode.INTERNAL_ERROR: "internal error",
    ErrorCode.UNAVAILABLE: "busy or not ready (`Retry-After` header)",
}

# Details shown in each code's example (what the code's answers really carry).
_EXAMPLE_DETAILS: dict[ErrorCode, dict[str, Any]] = {
    ErrorCode.INSUFFICIENT_CREDITS: {"required": 5, "available": 2},
    ErrorCode.MODEL_UNAVAILABLE: {"model_id": "6f1c2c52-0d0e-4d35-9a4c-3b5c1f0f7e11"},
    ErrorCode.INVALID_PROMPT: {"max_length": 2000},
    ErrorCode.RATE_LIMITED: {"retry_after": 30, "policy": "generate-video"},
    ErrorCode.UNAUTHORIZED: {"reason": "invalid or expired token"},
    ErrorCode.IDEMPOTENCY_KEY_REUSED: {"header": "Idempotency-Key"},
    ErrorCode.IDEMPOTENCY_IN_PROGRESS: {"header": "Idempotency-Key"},
    ErrorCode.IDEMPOTENCY_KEY_INVALID: {"header": "Idempotency-Key", "max_length": 255},
    ErrorCode.FORBIDDEN: {"reason": "account banned"},
    ErrorCode.NOT_FOUND: {"job_id": "0b7e4b1e-3f7a-4d8e-9a51-6c2f0a9d2b10"},
    ErrorCode.PURCHASE_INVALID: {"reason": "unknown product"},
    ErrorCode.VALIDATION_FAILED: {
        "fields": [{"field": "body.prompt", "problem": "Field required"}]
    },
    ErrorCode.API_KEY_INVALID: {"reason": "missing or wrong apikey"},
    ErrorCode.UNAVAILABLE: {"reason": "busy"},
}


class ErrorBody(BaseModel):
    code: ErrorCode = Field(description="One of the codes of docs/errors.md (SPEC §3).")
    message: str = Field(
        description="For people: localized from Accept-Language (en, tr, es; English otherwise)."
    )
    details: dict[str, Any] = Field(
        description="For programs: the message's placeholders and what went wrong "
        "(e.g. `fields` of a validation failure, each `{field, problem}`)."
    )


class ErrorEnvelope(BaseModel):
    """Every error answer outside `/auth/v1` and `/rest/v1`, which speak their own shapes."""

    error: ErrorBody


def _lines(text: str) -> list[str]:
    return [line for line in text.split("\n") if line]


def status_response(
    model: type[BaseModel], examples: Mapping[str, tuple[str, Any]], title: str
) -> dict[str, Any]:
    """One status's answer: `model` as its schema, and one example per code (`code: (summary,
    value)`), listed in its description and `x-error-codes`."""
    codes = sorted(examples)
    return {
        "model": model,
        "description": "\n".join([title, *(f"- `{c}`: {examples[c][0]}" for c in codes)]),
        CODES_KEY: codes,
        "content": {
            "application/json": {
                "examples": {c: {"summary": examples[c][0], "value": examples[c][1]} for c in codes}
            }
        },
    }


def example(code: ErrorCode) -> dict[str, Any]:
    details = _EXAMPLE_DETAILS.get(code, {})
    return {
        "error": {
            "code": code.value,
            "message": i18n.message(code, "en", details),
            "details": details,
        }
    }


def errors(*codes: ErrorCode) -> Responses:
    """FastAPI `responses=` for these codes, one entry per HTTP status."""
    by_status: dict[int, dict[str, tuple[str, Any]]] = {}
    for code in codes:
        by_status.setdefault(HTTP_STATUS[code], {})[code.value] = (MEANING[code], example(code))
    return {
        status: status_response(ErrorEnvelope, group, "Error envelope")
        for status, group in sorted(by_status.items())
    }


# Refusals of the HTTP server itself (platform/server.py: headers too large, a slow client, too
# many connections), answered in the envelope whatever the path.
SERVER_EDGE = (ErrorCode.HEADERS_TOO_LARGE, ErrorCode.REQUEST_TIMEOUT, ErrorCode.UNAVAILABLE)
# The request middleware's per-IP ceiling, in-flight cap and last line of defence.
EDGE = (ErrorCode.RATE_LIMITED, ErrorCode.UNAVAILABLE, ErrorCode.INTERNAL_ERROR)
# The middleware's body checks (size, Content-Length, content type) on methods with a body.
BODY_METHODS = frozenset({"post", "put", "patch"})
ANY_METHOD = frozenset({"get", "head", "post", "put", "patch", "delete", "options"})


@dataclass(frozen=True)
class Around:
    """Answers that a layer around the operations under `prefix` can give (to `methods`; with
    `with_input`, only to operations FastAPI found parameters or a body on, where it would
    otherwise have listed its own `HTTPValidationError` 422, which this replaces)."""

    prefix: str
    responses: Responses
    methods: frozenset[str] = ANY_METHOD
    with_input: bool = False


def envelope_rules(prefix: str, *gate: ErrorCode) -> list[Around]:
    """What is around every operation under `prefix` whose errors are the envelope: the HTTP
    server, the middleware, request validation, and the `gate` codes of a gate mounted there."""
    return [
        Around(prefix, errors(*SERVER_EDGE, *EDGE, *gate)),
        Around(prefix, errors(ErrorCode.VALIDATION_FAILED), methods=BODY_METHODS),
        Around(prefix, errors(ErrorCode.VALIDATION_FAILED), with_input=True),
    ]


REQUEST_BODY_KEY = "x-request-body"
SCHEMAS_KEY = "x-schemas"


def request_body(*models: type[BaseModel], description: str | None = None) -> dict[str, Any]:
    """`openapi_extra=` for an endpoint that parses its JSON body itself (to answer in its own
    shape): the body is one of `models`; `finish` puts it in place of FastAPI's."""
    schemas: dict[str, Any] = {}
    refs = []
    for model in models:
        schema = model.model_json_schema(ref_template=REF_PREFIX + "{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        refs.append({"$ref": REF_PREFIX + model.__name__})
    body: dict[str, Any] = {
        "required": False,
        "content": {"application/json": {"schema": refs[0] if len(refs) == 1 else {"oneOf": refs}}},
    }
    if description:
        body["description"] = description
    return {REQUEST_BODY_KEY: body, SCHEMAS_KEY: schemas}


def _schema_of(model: type[BaseModel], components: dict[str, Any]) -> dict[str, Any]:
    """A `$ref` to `model`, adding its schema (and those it uses) to the components."""
    _, schema = models_json_schema([(model, "serialization")], ref_template=REF_PREFIX + "{model}")
    for name, definition in schema.get("$defs", {}).items():
        components.setdefault(name, definition)
    return {"$ref": REF_PREFIX + model.__name__}


def _as_document(response: dict[str, Any], components: dict[str, Any]) -> dict[str, Any]:
    """A `responses=` entry as it reads in the document (its model as a schema reference)."""
    entry = {key: value for key, value in response.items() if key != "model"}
    content = {kind: dict(media) for kind, media in entry.get("content", {}).items()}
    if "model" in response:
        media = content.setdefault("application/json", {})
        media["schema"] = _schema_of(response["model"], components)
    entry["content"] = content
    return entry


def _merge(existing: dict[str, Any] | None, extra: dict[str, Any]) -> dict[str, Any]:
    """Two declarations of one status: their codes, descriptions and examples together (and,
    where two shapes meet on one status, either schema)."""
    if existing is None or CODES_KEY not in existing:
        return extra
    codes = sorted(set(existing[CODES_KEY]) | set(extra[CODES_KEY]))
    ours, theirs = _lines(existing["description"]), _lines(extra["description"])
    heads = list(dict.fromkeys([ours[0], theirs[0]]))
    items = sorted(set(ours[1:]) | set(theirs[1:]))
    ours_media = existing["content"]["application/json"]
    theirs_media = extra["content"]["application/json"]
    examples = {**theirs_media["examples"], **ours_media["examples"]}
    schemas = [ours_media["schema"], theirs_media["schema"]]
    media = {
        "schema": schemas[0] if schemas[0] == schemas[1] else {"oneOf": schemas},
        "examples": {code: examples[code] for code in codes},
    }
    return {
        **existing,
        CODES_KEY: codes,
        "description": "\n".join([" or ".join(heads), *items]),
        "content": {**existing["content"], "application/json": media},
    }


def _is_fastapi_422(response: Mapping[str, Any]) -> bool:
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    return bool(schema.get("$ref") == REF_PREFIX + "HTTPValidationError")


def finish(document: dict[str, Any], rules: Sequence[Around]) -> dict[str, Any]:
    """Apply `rules` to every operation; one security requirement per operation (its schemes
    are all needed, where FastAPI lists each as an alternative); drop unused schemas."""
    components = document.setdefault("components", {}).setdefault("schemas", {})
    for path, item in document.get("paths", {}).items():
        for method, operation in item.items():
            for name, schema in operation.pop(SCHEMAS_KEY, {}).items():
                components.setdefault(name, schema)
            if REQUEST_BODY_KEY in operation:
                operation["requestBody"] = operation.pop(REQUEST_BODY_KEY)
            responses = operation.setdefault("responses", {})
            matching = [rule for rule in rules if path.startswith(rule.prefix)]
            had_input = "422" in responses and _is_fastapi_422(responses["422"])
            if had_input and matching:
                del responses["422"]
            for rule in matching:
                if method not in rule.methods or (rule.with_input and not had_input):
                    continue
                for status, response in rule.responses.items():
                    extra = _as_document(response, components)
                    responses[str(status)] = _merge(responses.get(str(status)), extra)
            if len(operation.get("security", [])) > 1:
                joined: dict[str, list[str]] = {}
                for requirement in operation["security"]:
                    joined.update(requirement)
                operation["security"] = [joined]
            item[method] = operation
    _drop_unused(document)
    return document


def _drop_unused(document: dict[str, Any]) -> None:
    """FastAPI's validation schemas, once no operation refers to them any more."""
    schemas = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):  # the first refers to the second
        definition = schemas.pop(name, None)
        if definition is not None and f'"{REF_PREFIX}{name}"' in json.dumps(document, default=str):
            schemas[name] = definition


def describe(app: FastAPI, rules: Sequence[Around]) -> None:
    """Make `app.openapi()` the finished document (built once, like FastAPI's own)."""
    build: Callable[[], dict[str, Any]] = app.openapi
    finished: list[dict[str, Any]] = []

    def openapi() -> dict[str, Any]:
        if not finished:
            finished.append(finish(build(), rules))
        return finished[0]

    app.openapi = openapi  # type: ignore[method-assign]


DOCS_ASSETS = "/docs-assets"
_ASSETS = Path(fastapi_offline.__file__).parent / "static"


def serve_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Swagger UI at `docs_url` and ReDoc at `redoc_url`, their scripts and styles served from
    `DOCS_ASSETS` (build the app with `docs_url=None, redoc_url=None`)."""
    app.mount(DOCS_ASSETS, StaticFiles(directory=_ASSETS), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    oauth2_redirect = app.swagger_ui_oauth2_redirect_url or f"{docs_url}/oauth2-redirect"

    def root(request: Request) -> str:
        return str(request.scope.get("root_path", "")).rstrip("/")

    async def swagger(request: Request) -> HTMLResponse:
        base = root(request)
        return get_swagger_ui_html(
            openapi_url=base + openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{base}{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{base}{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{base}{DOCS_ASSETS}/favicon.png",
            oauth2_redirect_url=base + oauth2_redirect,
            # No validator badge: it would send the document to an outside service.
            swagger_ui_parameters={"validatorUrl": None, **(app.swagger_ui_parameters or {})},
        )

    async def swagger_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    async def redoc(request: Request) -> HTMLResponse:
        base = root(request)
        return get_redoc_html(
            openapi_url=base + openapi_url,
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{base}{DOCS_ASSETS}/redoc.standalone.js",
            redoc_favicon_url=f"{base}{DOCS_ASSETS}/favicon.png",
            with_google_fonts=False,
        )

    app.add_api_route(docs_url, swagger, include_in_schema=False)
    app.add_api_route(oauth2_redirect, swagger_redirect, include_in_schema=False)
    app.add_api_route(redoc_url, redoc, include_in_schema=False)
