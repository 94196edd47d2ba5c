"""`get-models`: the public catalog, cacheable by ETag, answered from memory between catalog
changes (catalog/cache.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Header, Response

from rendio.catalog.cache import CatalogAnswer
from rendio.catalog.schemas import ModelsOut
from rendio.catalog.service import available_models, etag_matches, strong_etag
from rendio.catalog.services import CatalogDeps, CatalogServices
from rendio.platform.errors import ErrorCode
from rendio.platform.openapi import errors

router = APIRouter(prefix="/functions/v1", tags=["catalog"])
CACHE_CONTROL = "public, max-age=60"


_RESPONSES: dict[int | str, dict[str, Any]] = {
    304: {"description": "Not modified (If-None-Match matched the ETag)"},
    **errors(ErrorCode.DATABASE_ERROR),
}


@router.get("/get-models", response_model=ModelsOut, responses=_RESPONSES)
@router.post("/get-models", response_model=ModelsOut, responses=_RESPONSES)
async def get_models(
    services: CatalogDeps,
    if_none_match: str | None = Header(default=None),
) -> Response:
    """Available models, featured first then by name. Send `If-None-Match` to get a 304."""
    answer = services.catalog_cache.answer or await _read_catalog(services)
    headers = {"ETag": answer.etag, "Cache-Control": CACHE_CONTROL}
    if etag_matches(if_none_match, answer.etag):
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
