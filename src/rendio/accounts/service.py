"""Whole-account operations, above every domain: merging a guest into an account, deleting an
account. Neither knows any table: each asks every domain that owns rows with a `user_id` to
move or drop them, so a new table is handled by a function in its own domain plus one line in
the lists below."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.ext.asyncio import AsyncSession

from rendio.credits import purchases
from rendio.generation import jobs
from rendio.identity import service as identity
from rendio.identity.sessions import revoke_sessions
from rendio.ledger import service as ledger
from rendio.ledger.service import Reason
from rendio.push import service as push

Reassign = Callable[[AsyncSession, uuid.UUID, uuid.UUID], Awaitable[None]]
DeleteOwned = Callable[[AsyncSession, uuid.UUID], Awaitable[list[str]]]

# What follows a guest into the account it merges into.
REASSIGN: tuple[Reassign, ...] = (
    jobs.reassign_owner,
    purchases.reassign_owner,
    push.reassign_owner,
)
# What must be collected before an account's rows go (the rows go by ON DELETE): storage keys.
DELETE_OWNED: tuple[DeleteOwned, ...] = (jobs.delete_owned,)


async def merge_guest(session: AsyncSession, guest_id: uuid.UUID, target_id: uuid.UUID) -> None:
    """Move an open guest's credits and everything it owns to `target_id`, close the guest and
    end its sessions — once: a retried or concurrent merge of the same guest finds it closed
    (identity's compare-and-swap), and the ledger's unique transaction ids are the second lock.
    """
    credits = await identity.close_guest(session, guest_id, target_id)
    if credits is None:
        return
    if credits > 0:
        await ledger.deduct(
            session,
            guest_id,
            credits,
            reason=Reason.MERGE_OUT,
            transaction_id=f"merge_out:{guest_id}",
            details={"into": str(target_id)},
        )
        await ledger.add(
            session,
            target_id,
            credits,
            reason=Reason.MERGE_IN,
            transaction_id=f"merge_in:{guest_id}",
            details={"from": str(guest_id)},
            lifetime=True,
        )
    for reassign in REASSIGN:
        await reassign(session, guest_id, target_id)
    await revoke_sessions(session, user_id=guest_id)


async def delete_account(session: AsyncSession, user_id: uuid.UUID) -> list[str]:
    """Delete the account in the caller's transaction; return the storage keys of its files,
    for the caller to remove once the deletion has committed (files are not transactional)."""
    keys = [key for collect in DELETE_OWNED for key in await collect(session, user_id)]
    await identity.delete_user(session, user_id)
    return keys
