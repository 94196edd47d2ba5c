"""Rate limits: per user for paid actions (counting only what succeeded), per client IP for
onboarding and auth, a per-IP ceiling on everything; IETF draft headers; shared through Redis;
open, visibly, when Redis is away."""

import ipaddress
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from rendio.app import create_app
from rendio.platform.client_ip import client_ip
from rendio.platform.ratelimit import ERRORS
from tests.helpers.clients import assert_gotrue_error, device_check, guest, open_client
from tests.helpers.factories import generate, video_body
from tests.helpers.redis import LOCAL_REDIS, redis_reachable
from tests.helpers.settings import SettingsFactory


async def app_client(settings: Any) -> AsyncIterator[httpx.AsyncClient]:
    async for client in open_client(create_app(settings, settings.database_url or "")):
        yield client


async def test_generate_video_counts_only_what_it_did(make_settings: SettingsFactory) -> None:
    settings = make_settings(rate_limit_generate_video="3/hour")
    async for client in app_client(settings):
        user = await guest(client)
        first = await generate(client, user.headers, key="k1")
        assert first.status_code == 200
        assert first.headers["ratelimit-policy"] == '"generate-video";q=3;w=3600'
        assert first.headers["ratelimit"].startswith('"generate-video";r=2;t=')
        replay = await generate(client, user.headers, key="k1")
        assert replay.headers["x-idempotent-replay"] == "true"  # a replay costs nothing
        bad = await generate(client, user.headers, video_body(prompt="   "))
        assert bad.status_code == 400  # refused for another reason: not counted
        assert (await generate(client, user.headers, key="k2")).status_code == 200
        third = await generate(client, user.headers, key="k3")
        assert third.status_code == 200
        assert third.headers["ratelimit"].startswith('"generate-video";r=0;')
        refused = await generate(client, user.headers, key="k4")
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["code"] == "ERR_4004"
        assert 1 <= error["details"]["retry_after"] <= 3600
        assert refused.headers["retry-after"] == str(error["details"]["retry_after"])
        assert refused.headers["ratelimit-policy"] == '"generate-video";q=3;w=3600'
        other = await guest(client, "install-other")  # another user has their own budget
        assert (await generate(client, other.headers)).status_code == 200


async def test_device_check_is_limited_per_client_ip(make_settings: SettingsFactory) -> None:
    async for client in app_client(make_settings(rate_limit_device_check="2/hour")):
        for number in range(2):
            ok = await device_check(client, f"install-{number}", f"phone-{number}")
            assert ok.status_code == 200
            assert ok.headers["ratelimit-policy"] == '"device-check";q=2;w=3600'
        refused = await device_check(client, "install-9", "phone-9")
        assert refused.status_code == 429
        # X-Forwarded-For from an untrusted peer is ignored: still the same address.
        spoofed = await device_check(
            client, "install-8", "phone-8", **{"X-Forwarded-For": "203.0.113.7"}
        )
        assert spoofed.status_code == 429


async def test_forwarded_addresses_count_behind_trusted_proxies(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(rate_limit_device_check="1/hour", trusted_proxies="127.0.0.1/32")
    async for client in app_client(settings):
        for address in ("203.0.113.7", "203.0.113.8"):
            answer = await device_check(
                client, f"install-{address}", "phone", **{"X-Forwarded-For": address}
            )
            assert answer.status_code == 200, address
        again = await device_check(
            client, "install-x", "phone", **{"X-Forwarded-For": "198.51.100.1, 203.0.113.7"}
        )
        assert again.status_code == 429  # the right-most untrusted hop is the client


async def test_auth_is_limited_in_gotrue_shape(make_settings: SettingsFactory) -> None:
    settings = make_settings(rate_limit_signup="1/hour", rate_limit_token="1/hour")
    async for client in app_client(settings):
        assert (await client.post("/auth/v1/signup", json={})).status_code == 200
        assert_gotrue_error(
            await client.post("/auth/v1/signup", json={}), 429, "over_request_rate_limit"
        )
        token = "/auth/v1/token?grant_type=refresh_token"
        await client.post(token, json={"refresh_token": "x"})
        refused = await client.post(token, json={"refresh_token": "x"})
        assert_gotrue_error(refused, 429, "over_request_rate_limit")
        assert "retry-after" in refused.headers


async def test_a_per_ip_ceiling_covers_everything_but_probes(
    make_settings: SettingsFactory,
) -> None:
    async for client in app_client(make_settings(rate_limit_per_ip="3/minute")):
        for _ in range(3):
            assert (await client.get("/functions/v1/get-models")).status_code == 200
        refused = await client.get("/functions/v1/get-models")
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "ERR_4004"
        assert refused.headers["ratelimit-policy"] == '"per-ip";q=3;w=60'
        assert (await client.get("/health")).status_code == 200


@pytest.mark.skipif(not redis_reachable(), reason="no Redis on 127.0.0.1:6379 to share limits")
async def test_limits_are_shared_across_replicas_through_redis(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(redis_url=LOCAL_REDIS, rate_limit_generate_video="2/hour")
    async for first in app_client(settings):
        async for second in app_client(settings):
            user = await guest(first, f"install-{uuid.uuid4().hex}")
            assert (await generate(first, user.headers)).status_code == 200
            assert (await generate(second, user.headers)).status_code == 200
            assert (await generate(first, user.headers)).status_code == 429
            assert (await generate(second, user.headers)).status_code == 429


async def test_an_unreachable_redis_fails_open_and_is_counted(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(redis_url="redis://127.0.0.1:1/0", rate_limit_generate_video="1/hour")
    before = ERRORS._value.get()
    async for client in app_client(settings):
        user = await guest(client)
        for _ in range(2):
            assert (await generate(client, user.headers)).status_code == 200
    assert ERRORS._value.get() > before


def test_client_ip_takes_the_right_most_untrusted_hop() -> None:
    proxies = [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("127.0.0.1/32")]
    assert client_ip("10.1.2.3", "203.0.113.5, 10.9.9.9", proxies) == "203.0.113.5"
    assert client_ip("10.1.2.3", "198.51.100.1, 203.0.113.5", proxies) == "203.0.113.5"
    assert client_ip("192.0.2.1", "203.0.113.5", proxies) == "192.0.2.1"  # peer not trusted
    assert client_ip("10.1.2.3", "not-an-ip", proxies) == "10.1.2.3"
    assert client_ip("10.1.2.3", "10.2.2.2", proxies) == "10.2.2.2"  # all trusted: left-most
    assert client_ip(None, None, proxies) == "unknown"


async def test_a_forged_forwarded_line_before_the_proxys_own_is_ignored(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(rate_limit_device_check="1/hour", trusted_proxies="127.0.0.1/32")
    async for client in app_client(settings):
        for number, forged in enumerate(("203.0.113.9", "203.0.113.10")):
            answer = await client.post(
                "/functions/v1/device-check",
                json={"device_id": f"install-{number}", "device_token": "phone"},
                headers=[("X-Forwarded-For", forged), ("X-Forwarded-For", "198.51.100.2")],
            )
            assert answer.status_code == (200 if number == 0 else 429), forged
