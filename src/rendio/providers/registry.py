"""Provider adapters by slug. A model is offered only when its provider is configured (`local`
always; the others once their key is set); otherwise ERR_4002."""

from __future__ import annotations

from collections.abc import Callable

from rendio.config import Settings
from rendio.providers.base import VideoProvider
from rendio.providers.fal import FalProvider
from rendio.providers.local import LocalProvider
from rendio.providers.openai_videos import OpenAiVideosProvider
from rendio.providers.replicate import ReplicateProvider
from rendio.providers.runway import RunwayProvider

ADAPTERS: dict[str, Callable[[Settings], VideoProvider]] = {
    "local": lambda settings: LocalProvider(max_parallel=settings.worker_concurrency),
    "fal": FalProvider,
    "runway": RunwayProvider,
    "openai": OpenAiVideosProvider,
    "replicate": ReplicateProvider,
}


def offered_providers(settings: Settings) -> list[str]:
    return [name for name in ADAPTERS if settings.provider_configured(name)]


def build_providers(settings: Settings) -> dict[str, VideoProvider]:
    return {name: ADAPTERS[name](settings) for name in offered_providers(settings)}
