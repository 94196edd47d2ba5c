"""What the credits domain is handed at run time: its slice of the one services object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends

from rendio.credits.appstore import AppStoreVerifier
from rendio.credits.products import ProductList
from rendio.platform.services import CoreServices, services_dependency


@dataclass(frozen=True)
class CreditsServices(CoreServices):
    products: ProductList
    appstore: AppStoreVerifier


CreditsDeps = Annotated[CreditsServices, Depends(services_dependency(CreditsServices))]
