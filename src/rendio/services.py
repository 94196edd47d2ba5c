"""The composition root's services: the one object every request and task is handed.

`Services` inherits every domain's slice (each a frozen dataclass over `CoreServices`), so a
domain sees exactly what it declared and this module is the only place that knows them all.
It is built once per process — by `rendio serve` for its app (and its in-process worker) and
by `rendio worker` — and closed when the process stops.
"""

from __future__ import annotations

from dataclasses import dataclass

from rendio.accounts.service import merge_guest
from rendio.catalog.cache import CHANNEL as CATALOG_CHANNEL
from rendio.catalog.cache import CatalogCache
from rendio.config import Settings, SettingsError
from rendio.credits.appstore import build_appstore_verifier
from rendio.credits.products import ProductsError, load_products
from rendio.credits.services import CreditsServices
from rendio.generation.services import GenerationServices
from rendio.identity.apple_signin import AppleIdTokenVerifier
from rendio.identity.devicecheck import build_device_verifier
from rendio.identity.services import IdentityServices
from rendio.identity.sessions import Keys
from rendio.platform.db import create_engine, libpq_url, session_factory
from rendio.platform.health import Health
from rendio.platform.notices import Notices
from rendio.platform.ratelimit import RateLimiter
from rendio.platform.reads import Reads
from rendio.platform.storage import build_storage
from rendio.providers.registry import build_providers, offered_providers
from rendio.push.apns import ApnsClient
from rendio.push.services import PushServices
from rendio.realtime.hub import ChangeHub
from rendio.realtime.services import RealtimeServices
from rendio.webhooks.services import WebhookServices, build_verifiers


@dataclass(frozen=True)
class Services(
    RealtimeServices,
    PushServices,
    WebhookServices,
    GenerationServices,
    CreditsServices,
    IdentityServices,
):
    async def aclose(self) -> None:
        await self.notices.aclose()
        await self.reads.aclose()
        await self.changes.aclose()
        await self.device_verifier.aclose()
        if self.apns is not None:
            await self.apns.aclose()
        for provider in self.providers.values():
            await provider.aclose()
        await self.engine.dispose()


def build_services(settings: Settings, database_url: str, *, pool_size: int) -> Services:
    """Everything requests and tasks need; a bad products file or App Store setting is a
    SettingsError, raised before anything is served."""
    try:
        products = load_products(settings.products_file)
    except ProductsError as error:
        raise SettingsError(f"RENDIO_PRODUCTS_FILE: {error}") from None
    appstore = build_appstore_verifier(settings)
    secret = settings.resolved_jwt_secret()
    engine = create_engine(database_url, pool_size=pool_size)
    sessions = session_factory(engine)
    notices = Notices(libpq_url(settings.listen_database_url or database_url))
    catalog_cache = CatalogCache()
    notices.listen(CATALOG_CHANNEL, catalog_cache.changed, catalog_cache.listening)
    return Services(
        settings=settings,
        engine=engine,
        sessions=sessions,
        storage=build_storage(settings, secret),
        secret=secret,
        health=Health(),
        limiter=RateLimiter(settings.rate_limits, settings.redis_url),
        notices=notices,
        reads=Reads(libpq_url(database_url), size=pool_size),
        catalog_cache=catalog_cache,
        keys=Keys(
            secret=secret,
            access_token_lifetime=settings.access_token_lifetime,
            refresh_reuse_interval=settings.refresh_reuse_interval,
        ),
        device_verifier=build_device_verifier(settings),
        apple_id_verifier=AppleIdTokenVerifier(settings.apple_client_ids, settings.apple_jwks_url),
        merge_guest=merge_guest,
        products=products,
        appstore=appstore,
        offered_providers=frozenset(offered_providers(settings)),
        providers=build_providers(settings),
        apns=ApnsClient(settings) if settings.push_configured else None,
        verifiers=build_verifiers(settings),
        changes=ChangeHub(notices, sessions),
    )
