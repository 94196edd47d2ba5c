import httpx
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.app import create_app
from rendio.catalog.importer import import_models, parse_catalog
from rendio.catalog.models import VideoModel
from rendio.config import Settings
from rendio.platform.db import sync_engine
from rendio.providers.registry import offered_providers
from tests.helpers.clients import open_client
from tests.helpers.settings import SettingsFactory
from tests.helpers.waiting import eventually


async def eventually_changed(client: httpx.AsyncClient, etag: str) -> httpx.Response:
    """get-models once it no longer answers 304 to `etag` (at most 5 s)."""

    async def changed() -> httpx.Response | None:
        answer = await client.get("/functions/v1/get-models", headers={"if-none-match": etag})
        return answer if answer.status_code != 304 else None

    answer: httpx.Response | None = await eventually(changed, 5)
    assert answer is not None, "the catalog change never reached get-models"
    return answer


LOCAL_ID = "d4aade9e-62e1-508f-9c17-eb900fa1dc39"  # uuid5 of "rendio-local": stable everywhere


async def test_only_the_local_model_is_offered_without_provider_keys(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/functions/v1/get-models")
    assert response.status_code == 200
    models = response.json()["models"]
    assert [m["slug"] for m in models] == ["rendio-local"]
    local = models[0]
    assert local["id"] == LOCAL_ID
    assert set(local) == {
        "id", "slug", "name", "category", "description", "cost_per_generation",
        "cost_per_second", "prices", "provider", "is_featured", "thumbnail_url", "settings",
    }  # fmt: skip
    assert local["cost_per_second"] is None
    assert {(p["duration"], p["resolution"], p["credits"]) for p in local["prices"]} == {
        (duration, resolution, 1)
        for duration in local["settings"]["durations"]
        for resolution in local["settings"]["resolutions"]
    }
    assert local["settings"]["default_duration"] in local["settings"]["durations"]
    assert local["settings"]["default_aspect_ratio"] in local["settings"]["aspect_ratios"]
    assert local["settings"]["default_resolution"] in local["settings"]["resolutions"]


_EXTRA_LOCAL_MODELS = """
models:
  - {slug: b-plain, name: Beta, category: t, provider: local, provider_model_id: x,
     cost_per_generation: 1, settings: {durations: [2], default_duration: 2,
     aspect_ratios: ["1:1"], default_aspect_ratio: "1:1", resolutions: [360p],
     default_resolution: 360p}}
  - {slug: a-plain, name: Alpha, category: t, provider: local, provider_model_id: x,
     cost_per_generation: 1, settings: {durations: [2], default_duration: 2,
     aspect_ratios: ["1:1"], default_aspect_ratio: "1:1", resolutions: [360p],
     default_resolution: 360p}}
  - {slug: z-star, name: Zulu, category: t, provider: local, provider_model_id: x,
     cost_per_generation: 1, is_featured: true, settings: {durations: [2],
     default_duration: 2, aspect_ratios: ["1:1"], default_aspect_ratio: "1:1",
     resolutions: [360p], default_resolution: 360p}}
"""


async def test_models_come_featured_first_then_by_name(
    client: httpx.AsyncClient, clean_database: str
) -> None:
    engine = sync_engine(clean_database)
    with engine.begin() as conn:
        import_models(conn, parse_catalog(_EXTRA_LOCAL_MODELS))
    engine.dispose()
    names = [m["name"] for m in (await client.get("/functions/v1/get-models")).json()["models"]]
    assert names == ["Rendio Local Preview", "Zulu", "Alpha", "Beta"]


async def test_a_keyed_provider_s_models_are_offered_with_the_price_of_every_option(
    make_settings: SettingsFactory,
) -> None:
    settings: Settings = make_settings(fal_key="k", runway_api_key="k")
    async for client in open_client(create_app(settings, settings.database_url or "")):
        models = (await client.get("/functions/v1/get-models")).json()["models"]
    assert {m["provider"] for m in models} == set(offered_providers(settings))
    assert set(offered_providers(settings)) == {"local", "fal", "runway"}
    [veo] = [m for m in models if m["slug"] == "fal-veo-3-fast"]
    assert veo["cost_per_second"] == {"720p": 2, "1080p": 3}
    assert veo["cost_per_generation"] == 16  # the default settings: 8 s at 720p
    assert {(p["resolution"], p["credits"]) for p in veo["prices"]} == {("720p", 16), ("1080p", 24)}


async def test_disabled_models_are_hidden(client: httpx.AsyncClient, db: AsyncSession) -> None:
    await db.execute(
        update(VideoModel).where(VideoModel.slug == "rendio-local").values(is_available=False)
    )
    await db.commit()
    assert (await client.get("/functions/v1/get-models")).json() == {"models": []}


async def test_etag_and_conditional_get(client: httpx.AsyncClient, db: AsyncSession) -> None:
    first = await client.get("/functions/v1/get-models")
    etag = first.headers["etag"]
    assert etag.startswith('"') and not etag.startswith("W/")
    assert "max-age" in first.headers["cache-control"]

    again = await client.get("/functions/v1/get-models", headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag

    listed = await client.get(
        "/functions/v1/get-models", headers={"if-none-match": f'"other", W/{etag}'}
    )
    assert listed.status_code == 304

    stale = await client.get("/functions/v1/get-models", headers={"if-none-match": '"old"'})
    assert stale.status_code == 200

    await db.execute(
        update(VideoModel).where(VideoModel.slug == "rendio-local").values(cost_per_generation=3)
    )
    await db.commit()
    # A change made elsewhere reaches the kept answer by its notice, within moments.
    changed = await eventually_changed(client, etag)
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["models"][0]["cost_per_generation"] == 3


async def test_post_is_accepted_like_the_supabase_functions_client(
    client: httpx.AsyncClient,
) -> None:
    get = await client.get("/functions/v1/get-models")
    post = await client.post("/functions/v1/get-models", json={})
    assert post.status_code == 200
    assert post.json() == get.json()
    empty = await client.post("/functions/v1/get-models")
    assert empty.status_code == 200
