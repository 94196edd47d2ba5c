"""`delete-account`: the whole account, across every domain."""

from __future__ import annotations

from fastapi import APIRouter

from rendio.accounts import service
from rendio.identity.dependencies import AUTH_ERRORS, CurrentUser
from rendio.identity.schemas import AccountDeleted
from rendio.platform.db import Session
from rendio.platform.openapi import errors
from rendio.platform.services import CoreDeps

router = APIRouter(prefix="/functions/v1", tags=["identity"])


@router.post("/delete-account", response_model=AccountDeleted, responses=errors(*AUTH_ERRORS))
async def delete_account(
    services: CoreDeps, caller: CurrentUser, session: Session
) -> AccountDeleted:
    """Remove the account, its personal data and its videos; the ledger keeps anonymous rows."""
    user_id = caller.user_id
    media = await service.delete_account(session, user_id)
    await session.commit()  # the files go only once the account is gone for good
    await services.storage.delete(media)
    return AccountDeleted(user_id=user_id)
