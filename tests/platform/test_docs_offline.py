"""The docs pages work without the internet: every script, style and icon comes from us."""

import re

import httpx
import pytest

_REFERENCE = re.compile(r"""(?:src|href|spec-url)\s*=\s*["']([^"']+)["']|url:\s*'([^']+)'""")


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_docs_page_references_only_our_own_assets(
    client: httpx.AsyncClient, page: str
) -> None:
    html = await client.get(page)
    assert html.status_code == 200
    assert html.headers["content-type"].startswith("text/html")
    assert "http://" not in html.text
    assert "https://" not in html.text
    references = [a or b for a, b in _REFERENCE.findall(html.text)]
    scripts = [ref for ref in references if ref.endswith(".js")]
    assert scripts, html.text
    assert "/openapi.json" in references
    for reference in references:
        assert reference.startswith("/") and not reference.startswith("//"), reference
        answer = await client.get(reference)
        assert answer.status_code == 200, reference
        assert answer.content, reference
    for script in scripts:
        assert b"SwaggerUIBundle" in (await client.get(script)).content or page == "/redoc"


async def test_swagger_ui_is_recent_enough_for_openapi_3_1(client: httpx.AsyncClient) -> None:
    """FastAPI writes OpenAPI 3.1, which Swagger UI renders from version 5 on."""
    assert (await client.get("/openapi.json")).json()["openapi"].startswith("3.1")
    bundle = (await client.get("/docs-assets/swagger-ui-bundle.js")).text
    [major] = re.findall(r'PACKAGE_VERSION:"(\d+)\.\d+\.\d+"', bundle)
    assert int(major) >= 5


async def test_the_validator_badge_is_off(client: httpx.AsyncClient) -> None:
    """Swagger UI would otherwise send the document to an outside validator."""
    assert '"validatorUrl": null' in (await client.get("/docs")).text
