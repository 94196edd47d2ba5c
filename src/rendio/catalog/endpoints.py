"""`get-models`: the public catalog, cacheable by ETag, answered from memory between catalog
changes (catalog/cache.py).

It is the call every app launch makes, so it asks FastAPI for nothing but the request: no
dependencies to solve (the `apikey` gate is called here rather than as the router's
dependency), the services read off the app — measured in bench/README.md.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from rendio.catalog.cache import CatalogAnswer
from rendio.catalog.schemas import ModelsOut
from rendio.catalog.service import available_models, etag_matches, strong_etag
from rendio.catalog.services import CatalogServices
from rendio.identity.dependencies import APIKEY_SECURITY, check_apikey
from rendio.platform.errors import ErrorCode
from rendio.platform.openapi import errors
from rendio.platform.services import services_of

router = APIRouter(prefix="/functions/v1", tags=["catalog"])
CACHE_CONTROL = "public, max-age=60"


_RESPONSES: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    **errors(ErrorCode.DATABASE_ERROR),
}
_OPERATION: dict[str, Any] = {
    "security": APIKEY_SECURITY,
    "parameters": [
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "The ETag of a catalog the app holds: 304 if it is still current.",
        }
    ],
}


@router.get("/get-models", response_model=ModelsOut, responses=_RESPONSES, openapi_extra=_OPERATION)
@router.post(
    "/get-models", response_model=ModelsOut, responses=_RESPONSES, openapi_extra=_OPERATION
)
async def get_models(request: Request) -> Response:
    """Available models, featured first then by name. Send `If-None-Match` to get a 304."""
    check_apikey(request)
    services = services_of(request.app.state, CatalogServices)
    answer = services.catalog_cache.answer or await _read_catalog(services)
    headers = {"ETag": answer.etag, "Cache-Control": CACHE_CONTROL}
    if etag_matches(request.headers.get("if-none-match"), answer.etag):
        return Response(status_code=304, headers=headers)
    return Response(answer.body, media_type="application/json", headers=headers)


async def _read_catalog(services: CatalogServices) -> CatalogAnswer:
    generation = services.catalog_cache.generation
    async with services.sessions() as session:
        catalog = await available_models(session, services.offered_providers)
    body = catalog.model_dump_json().encode()
    answer = CatalogAnswer(body, strong_etag(body))
    services.catalog_cache.keep(generation, answer)
    return answer
