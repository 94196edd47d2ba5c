"""What identity is handed at run time: its slice of the one services object."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.identity.apple_signin import AppleIdTokenVerifier
from rendio.identity.devicecheck import DeviceVerifier
from rendio.identity.sessions import Keys
from rendio.platform.services import CoreServices, services_dependency

# Moves a guest's credits and everything it owns into an account, once (accounts/ does it,
# asking each domain; identity only decides when).
MergeGuest = Callable[[AsyncSession, uuid.UUID, uuid.UUID], Awaitable[None]]


@dataclass(frozen=True)
class IdentityServices(CoreServices):
    keys: Keys
    device_verifier: DeviceVerifier
    apple_id_verifier: AppleIdTokenVerifier
    merge_guest: MergeGuest


IdentityDeps = Annotated[IdentityServices, Depends(services_dependency(IdentityServices))]
