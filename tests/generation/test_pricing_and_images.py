"""Charges follow the chosen settings (per second by resolution where the model says so), and
an image goes only to models that take one, only as an https URL of sane length."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from tests.helpers.clients import guest
from tests.helpers.factories import add_models, generate, video_body

PER_SECOND = (
    "  - {slug: per-second, name: Per second, category: test, provider: local, "
    "provider_model_id: local-v1, cost_per_second: {360p: 1, 720p: 2}, "
    "settings: {durations: [2, 4], default_duration: 2, aspect_ratios: ['16:9'], "
    "default_aspect_ratio: '16:9', resolutions: [360p, 720p], default_resolution: 360p, "
    "image_input: optional}}\n"
)
NEEDS_IMAGE = PER_SECOND.replace("per-second", "needs-image").replace(
    "image_input: optional", "image_input: required"
)
IMAGE = "https://images.example.com/still.png"


@pytest.mark.parametrize(
    ("duration", "resolution", "charged"), [(2, "360p", 2), (4, "360p", 4), (4, "720p", 8)]
)
async def test_a_per_second_model_charges_what_the_settings_cost(
    client: httpx.AsyncClient,
    db: AsyncSession,
    clean_database: str,
    duration: int,
    resolution: str,
    charged: int,
) -> None:
    [model] = add_models(clean_database, PER_SECOND)
    user = await guest(client)
    body = video_body(model, duration=duration, resolution=resolution)
    answer = await generate(client, user.headers, body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["credits_used"] == charged
    assert answer.json()["credits_remaining"] == 10 - charged
    stored = (await db.execute(text("SELECT credits_used FROM video_jobs"))).scalar_one()
    assert stored == charged


async def test_images_go_only_where_a_model_takes_them(
    client: httpx.AsyncClient, db: AsyncSession, clean_database: str
) -> None:
    optional, required = add_models(clean_database, PER_SECOND, NEEDS_IMAGE)
    user = await guest(client)
    refusals = [
        (video_body() | {"image_url": IMAGE}, "does not take an image"),
        (video_body(required), "needs an image"),
        (video_body(optional) | {"image_url": "http://images.example.com/a.png"}, "https"),
        (video_body(optional) | {"image_url": IMAGE + "?" + "a" * 2020}, "2048"),
        (video_body(optional) | {"image_url": "not a url"}, "URL"),
    ]
    for body, problem in refusals:
        refused = await generate(client, user.headers, body)
        assert refused.status_code == 422, refused.text
        assert problem in refused.text
    assert (await db.execute(text("SELECT count(*) FROM video_jobs"))).scalar_one() == 0
    accepted = await generate(client, user.headers, video_body(required) | {"image_url": IMAGE})
    assert accepted.status_code == 200, accepted.text
    stored = (await db.execute(text("SELECT image_url FROM video_jobs"))).scalar_one()
    assert stored == IMAGE
