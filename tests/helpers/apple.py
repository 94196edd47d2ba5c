"""Settings that point Sign in with Apple and DeviceCheck at the fake Apple server."""

from __future__ import annotations

from typing import Any

from tests.fakes.apple import DEVICECHECK_KEY_ID, TEAM_ID, FakeApple

CLIENT_ID = "com.rendio.app"


def apple_settings(fake: FakeApple, **overrides: Any) -> dict[str, Any]:
    """Settings that send Sign in with Apple and DeviceCheck to the fake."""
    values: dict[str, Any] = {
        "apple_client_ids": [CLIENT_ID],
        "apple_jwks_url": f"{fake.url}/auth/keys",
        "apple_team_id": TEAM_ID,
        "devicecheck_key_id": DEVICECHECK_KEY_ID,
        "devicecheck_private_key": fake.devicecheck_private_pem(),
        "devicecheck_url": fake.url,
        "devicecheck_timeout": 0.5,
    }
    values.update(overrides)
    return values
