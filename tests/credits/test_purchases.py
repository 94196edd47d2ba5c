"""Balance, products, StoreKit 2 purchases and App Store notifications, over HTTP."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.app import create_app
from rendio.config import SettingsError
from rendio.ledger import service as ledger
from rendio.ledger.service import Reason
from tests.fakes.storekit import BUNDLE_ID, TestAppStore
from tests.helpers.clients import bearer, guest, open_client
from tests.helpers.processes import credits_verify, service_env, start_server


@pytest.fixture(scope="module")
def store() -> TestAppStore:
    return TestAppStore()


def store_settings(store: TestAppStore, tmp_path: Path, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "appstore_bundle_id": BUNDLE_ID,
        "appstore_environments": ["Sandbox"],
        "appstore_root_certificates": [store.write_root(tmp_path / "root.cer")],
        "appstore_online_checks": False,
    }
    values.update(overrides)
    return values


@pytest.fixture
async def shop(
    make_settings: Any, store: TestAppStore, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    settings = make_settings(**store_settings(store, tmp_path))
    async for http in open_client(create_app(settings, settings.database_url)):
        yield http


async def buy(client: httpx.AsyncClient, headers: dict[str, str], jws: str) -> httpx.Response:
    return await client.post(
        "/functions/v1/update-credits", json={"signed_transaction": jws}, headers=headers
    )


async def notify(client: httpx.AsyncClient, signed_payload: str) -> httpx.Response:
    return await client.post("/webhooks/app-store", json={"signedPayload": signed_payload})


async def balance(client: httpx.AsyncClient, headers: dict[str, str]) -> dict[str, int]:
    response = await client.get("/functions/v1/get-user-credits", headers=headers)
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


async def test_balance_and_products(client: httpx.AsyncClient) -> None:
    headers = (await guest(client)).headers
    assert await balance(client, headers) == {"credits_remaining": 10, "credits_total": 10}
    posted = await client.post("/functions/v1/get-user-credits", headers=headers)
    assert posted.json()["credits_remaining"] == 10
    refused = await client.get("/functions/v1/get-user-credits")
    assert refused.status_code == 401
    products = (await client.get("/functions/v1/get-products")).json()["products"]
    assert {"product_id": "com.rendio.credits.10", "credits": 10, "display_name": "10 credits"} in (
        products
    )


async def test_products_file_overrides_and_is_validated(make_settings: Any, tmp_path: Path) -> None:
    good = tmp_path / "products.json"
    good.write_text('{"products": [{"product_id": "pack.5", "credits": 5, "display_name": "5"}]}')
    settings = make_settings(products_file=good)
    async for client in open_client(create_app(settings, settings.database_url)):
        products = (await client.post("/functions/v1/get-products")).json()["products"]
        assert products == [{"product_id": "pack.5", "credits": 5, "display_name": "5"}]
    bad = tmp_path / "bad.yaml"
    bad.write_text("products:\n  - {product_id: a, credits: 0, display_name: x}\n")
    with pytest.raises(SettingsError, match=r"products\.0\.credits"):
        create_app(make_settings(products_file=bad), "")
    twice = tmp_path / "twice.yaml"
    twice.write_text(
        "products:\n  - {product_id: a, credits: 1, display_name: x}\n"
        "  - {product_id: a, credits: 2, display_name: y}\n"
    )
    with pytest.raises(SettingsError, match="appears twice"):
        create_app(make_settings(products_file=twice), "")


async def test_a_purchase_credits_once_and_a_replay_answers_the_first_result(
    shop: httpx.AsyncClient, store: TestAppStore, db: AsyncSession
) -> None:
    headers = (await guest(shop)).headers
    jws = store.sign(
        store.transaction(transaction_id="2000000001", product_id="com.rendio.credits.50")
    )
    first = await buy(shop, headers, jws)
    assert first.status_code == 200, first.text
    assert first.json() == {
        "transaction_id": "2000000001",
        "credits_added": 50,
        "credits_remaining": 60,
        "already_processed": False,
    }
    replay = await buy(shop, headers, jws)
    assert replay.json() == {**first.json(), "already_processed": True}
    assert await balance(shop, headers) == {"credits_remaining": 60, "credits_total": 60}

    someone_else = (await guest(shop, "install-2")).headers
    stolen = await buy(shop, someone_else, jws)
    assert stolen.status_code == 400
    assert stolen.json()["error"]["code"] == "ERR_4012"
    assert (await balance(shop, someone_else))["credits_remaining"] == 10
    purchases = await db.execute(text("SELECT count(*) FROM purchases"))
    assert purchases.scalar_one() == 1


async def test_quantity_multiplies_the_pack(shop: httpx.AsyncClient, store: TestAppStore) -> None:
    headers = (await guest(shop)).headers
    response = await buy(shop, headers, store.sign(store.transaction(quantity=3)))
    assert response.json()["credits_added"] == 30


async def test_concurrent_redemptions_of_one_transaction_credit_once(
    shop: httpx.AsyncClient, store: TestAppStore, db: AsyncSession
) -> None:
    headers = (await guest(shop)).headers
    jws = store.sign(store.transaction())
    responses = await asyncio.gather(*(buy(shop, headers, jws) for _ in range(12)))
    assert {r.status_code for r in responses} == {200}
    assert sum(not r.json()["already_processed"] for r in responses) == 1
    assert (await balance(shop, headers))["credits_remaining"] == 20
    rows = await db.execute(text("SELECT count(*) FROM quota_log WHERE reason = 'purchase'"))
    assert rows.scalar_one() == 1


def _tampered(jws: str) -> str:
    header, payload, signature = jws.split(".")
    body = jwt.utils.base64url_decode(payload).replace(b"credits.10", b"credits.50")
    return ".".join([header, jwt.utils.base64url_encode(body).decode(), signature])


async def test_invalid_purchases_are_refused_and_change_nothing(
    shop: httpx.AsyncClient, store: TestAppStore, db: AsyncSession
) -> None:
    headers = (await guest(shop)).headers
    foreign = TestAppStore()
    refusals = {
        "wrong bundle": store.sign(store.transaction(bundle_id="com.someone.else")),
        "wrong environment": store.sign(store.transaction(environment="Production")),
        "foreign chain": foreign.sign(foreign.transaction()),
        "tampered": _tampered(store.sign(store.transaction())),
        "revoked": store.sign(store.transaction(revoked=True)),
        "unknown product": store.sign(store.transaction(product_id="com.rendio.free")),
        "not consumable": store.sign(store.transaction(kind="Non-Consumable")),
        "unsigned": jwt.encode(store.transaction(), None, algorithm="none"),
        "garbage": "not-a-jws",
    }
    for name, jws in refusals.items():
        response = await buy(shop, headers, jws)
        assert response.status_code == 400, name
        assert response.json()["error"]["code"] == "ERR_4012", name
    missing = await buy(shop, headers, "")
    assert missing.status_code == 422
    counts = await db.execute(
        text("SELECT (SELECT count(*) FROM purchases), (SELECT count(*) FROM quota_log)")
    )
    assert tuple(counts.one()) == (0, 1)
    assert (await balance(shop, headers))["credits_remaining"] == 10


async def test_purchases_are_refused_when_not_configured(
    client: httpx.AsyncClient, store: TestAppStore
) -> None:
    headers = (await guest(client)).headers
    response = await buy(client, headers, store.sign(store.transaction()))
    assert response.status_code == 400
    assert response.json()["error"]["details"]["reason"] == "purchases are not configured"


async def test_xcode_transactions_are_accepted_when_configured_in_dev(
    make_settings: Any, store: TestAppStore, tmp_path: Path
) -> None:
    settings = make_settings(
        **store_settings(store, tmp_path, appstore_environments=["Sandbox", "Xcode"])
    )
    local_signer = TestAppStore()  # Xcode signs with its own local certificate
    async for client in open_client(create_app(settings, settings.database_url)):
        headers = (await guest(client)).headers
        xcode = await buy(
            client, headers, local_signer.sign(local_signer.transaction(environment="Xcode"))
        )
        assert xcode.status_code == 200
        sandbox_forgery = await buy(client, headers, local_signer.sign(local_signer.transaction()))
        assert sandbox_forgery.status_code == 400


async def _bought(
    shop: httpx.AsyncClient, store: TestAppStore, headers: dict[str, str], tid: str
) -> str:
    jws = store.sign(store.transaction(transaction_id=tid))
    assert (await buy(shop, headers, jws)).status_code == 200
    return jws


async def test_refund_takes_the_credits_back_once(
    shop: httpx.AsyncClient, store: TestAppStore, db: AsyncSession
) -> None:
    headers = (await guest(shop)).headers
    jws = await _bought(shop, store, headers, "3000000001")
    refund = store.sign(store.notification("REFUND", jws))
    response = await notify(shop, refund)
    assert response.status_code == 200
    assert response.json()["outcome"] == "refunded 10, shortfall 0"
    assert (await balance(shop, headers))["credits_remaining"] == 10
    again = await notify(shop, refund)
    assert again.json()["outcome"] == "duplicate"
    second_refund = await notify(shop, store.sign(store.notification("REVOKE", jws)))
    assert second_refund.json()["outcome"] == "already refunded"
    assert (await balance(shop, headers))["credits_remaining"] == 10


async def test_refund_of_spent_credits_stops_at_zero_and_records_the_shortfall(
    shop: httpx.AsyncClient, store: TestAppStore, db: AsyncSession
) -> None:
    buyer = await guest(shop)
    headers = buyer.headers
    jws = await _bought(shop, store, headers, "3000000002")
    await ledger.deduct(db, buyer.user_id, 16, reason=Reason.GENERATION, transaction_id="spend-16")
    await db.commit()
    response = await notify(shop, store.sign(store.notification("REFUND", jws)))
    assert response.json()["outcome"] == "refunded 4, shortfall 6"
    assert (await balance(shop, headers))["credits_remaining"] == 0
    row = await db.execute(
        text("SELECT change, details FROM quota_log WHERE reason = 'purchase_refund'")
    )
    change, details = row.one()
    assert change == -4
    assert details == {"transaction_id": "3000000002", "shortfall": 6}
    purchase = await db.execute(
        text("SELECT status, credits_revoked, refund_shortfall FROM purchases")
    )
    assert tuple(purchase.one()) == ("refunded", 4, 6)

    reversed_ = await notify(shop, store.sign(store.notification("REFUND_REVERSED", jws)))
    assert reversed_.json()["outcome"] == "restored 4"
    assert (await balance(shop, headers))["credits_remaining"] == 4


async def test_notifications_that_move_nothing(
    shop: httpx.AsyncClient, store: TestAppStore, db: AsyncSession
) -> None:
    test = await notify(shop, store.sign(store.notification("TEST")))
    assert test.json()["outcome"] == "test"
    not_ours = store.sign(store.transaction(product_id="com.other.app.coins"))
    unknown = await notify(shop, store.sign(store.notification("REFUND", not_ours)))
    assert unknown.json()["outcome"] == "unknown transaction"
    other = await notify(shop, store.sign(store.notification("CONSUMPTION_REQUEST")))
    assert other.json()["outcome"] == "ignored"
    deliveries = await db.execute(text("SELECT count(*) FROM webhook_deliveries"))
    assert deliveries.scalar_one() == 3


async def test_unverifiable_notifications_are_400_and_change_nothing(
    shop: httpx.AsyncClient, store: TestAppStore, db: AsyncSession
) -> None:
    headers = (await guest(shop)).headers
    jws = await _bought(shop, store, headers, "3000000003")
    foreign = TestAppStore()
    bodies = [
        foreign.sign(store.notification("REFUND", jws)),
        store.sign(store.notification("REFUND", jws, bundle_id="com.someone.else")),
        store.sign(store.notification("REFUND", jws, environment="Production")),
        store.sign(
            store.notification(
                "REFUND", foreign.sign(store.transaction(transaction_id="3000000003"))
            )
        ),
        "garbage",
    ]
    for body in bodies:
        response = await notify(shop, body)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == "ERR_4012"
    assert (await notify_raw(shop, {"nope": 1})).status_code == 422
    assert (await balance(shop, headers))["credits_remaining"] == 20
    deliveries = await db.execute(text("SELECT count(*) FROM webhook_deliveries"))
    assert deliveries.scalar_one() == 0


async def notify_raw(client: httpx.AsyncClient, body: Any) -> httpx.Response:
    return await client.post("/webhooks/app-store", json=body)


def test_purchase_and_refund_on_a_live_server_leave_the_ledger_verified(
    clean_database: str, tmp_path: Path, store: TestAppStore
) -> None:
    env = service_env(
        RENDIO_DATABASE_URL=clean_database,
        RENDIO_DATA_DIR=str(tmp_path / "data"),
        RENDIO_APPSTORE_BUNDLE_ID=BUNDLE_ID,
        RENDIO_APPSTORE_ENVIRONMENTS="Sandbox",
        RENDIO_APPSTORE_ROOT_CERTIFICATES=str(store.write_root(tmp_path / "root.cer")),
        RENDIO_APPSTORE_ONLINE_CHECKS="false",
    )
    server = start_server(["--no-worker"], env, tmp_path / "server.log")
    try:
        with httpx.Client(base_url=server.base_url, timeout=10) as http:
            onboarded = http.post(
                "/functions/v1/device-check",
                json={"device_id": "install-1", "device_token": "phone-1"},
            ).json()
            headers = bearer(onboarded["session"])
            jws = store.sign(store.transaction(product_id="com.rendio.credits.120"))
            bought = http.post(
                "/functions/v1/update-credits", json={"signed_transaction": jws}, headers=headers
            )
            assert bought.json()["credits_remaining"] == 130
            refund = http.post(
                "/webhooks/app-store",
                json={"signedPayload": store.sign(store.notification("REFUND", jws))},
            )
            assert refund.json()["outcome"] == "refunded 120, shortfall 0"
            assert http.get("/functions/v1/get-user-credits", headers=headers).json() == {
                "credits_remaining": 10,
                "credits_total": 130,
            }
    finally:
        server.stop()
    verify = credits_verify(clean_database)
    assert verify.returncode == 0, verify.stdout + verify.stderr


async def test_a_refund_before_redemption_blocks_the_redemption(
    shop: httpx.AsyncClient, store: TestAppStore, db: AsyncSession
) -> None:
    headers = (await guest(shop)).headers
    jws = store.sign(store.transaction(transaction_id="4000000001"))
    early = await notify(shop, store.sign(store.notification("REFUND", jws)))
    assert early.json()["outcome"] == "refunded before redemption"
    late = await buy(shop, headers, jws)
    assert late.status_code == 400
    assert late.json()["error"]["details"]["reason"] == "transaction revoked"
    assert (await balance(shop, headers))["credits_remaining"] == 10

    reversed_ = await notify(shop, store.sign(store.notification("REFUND_REVERSED", jws)))
    assert reversed_.json()["outcome"] == "reversed before redemption"
    assert (await buy(shop, headers, jws)).json()["credits_added"] == 10


async def test_refunds_racing_redemptions_never_leave_credits_behind(
    shop: httpx.AsyncClient, store: TestAppStore, db: AsyncSession
) -> None:
    """Redeem and refund of one transaction at once: however they interleave, the buyer ends
    without the pack's credits."""
    headers = (await guest(shop)).headers
    for n in range(8):
        jws = store.sign(store.transaction(transaction_id=f"50000000{n:02d}"))
        await asyncio.gather(
            buy(shop, headers, jws), notify(shop, store.sign(store.notification("REFUND", jws)))
        )
        assert (await balance(shop, headers))["credits_remaining"] == 10, n


async def test_malformed_unsigned_notifications_are_refused_and_store_nothing(
    make_settings: Any, store: TestAppStore, tmp_path: Path, db: AsyncSession
) -> None:
    """Unsigned environments (dev) let any payload through Apple's library: fields Apple never
    sends are a clean 400, with nothing recorded."""
    settings = make_settings(
        **store_settings(store, tmp_path, appstore_environments=["Sandbox", "Xcode"])
    )
    local_signer = TestAppStore()
    hostile = [
        {"notificationUUID": "abc\x00def"},
        {"notificationType": "REF\x00UND"},
        {"signedDate": "yesterday"},
        {"signedDate": [2026]},
    ]
    async for client in open_client(create_app(settings, settings.database_url)):
        for change in hostile:
            payload = local_signer.notification("TEST", environment="Xcode") | change
            response = await notify(client, local_signer.sign(payload))
            assert response.status_code == 400, (change, response.text)
            assert response.json()["error"]["code"] == "ERR_4012"
    stored = await db.execute(text("SELECT count(*) FROM webhook_deliveries"))
    assert stored.scalar_one() == 0
