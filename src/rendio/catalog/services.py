"""What the catalog is handed at run time: its slice of the one services object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from rendio.catalog.cache import CatalogCache
from rendio.platform.services import CoreServices, services_dependency


@dataclass(frozen=True)
class CatalogServices(CoreServices):
    # Providers with an adapter and the settings they need: only their models are offered.
    offered_providers: frozenset[str]
    # get-models' answer, kept between catalog changes (catalog/cache.py).
    catalog_cache: CatalogCache


CatalogDeps = Annotated[CatalogServices, Depends(services_dependency(CatalogServices))]
