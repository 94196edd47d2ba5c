"""Identity rules: guests per device, starter credits once per device, Apple sign-in and merge.

Decisions (docs/decisions.md has the reasons):
* A device's `device_id` leads to its guest only while that user is a guest; upgrading or
  merging releases the `device_id`, so device-check never hands out a registered account.
* Starter credits go through the ledger (reason `initial_grant`) and then bit0 is set, both
  before the transaction commits; a device whose bit0 is already set gets a guest with 0
  credits and `initial_grant_claimed: true`. With Apple's verifier, grants are serialized
  and bit0 read again under the lock (see `_read_bits_alone`).
* Everything for one Apple account runs under a transaction-scoped advisory lock on its `sub`,
  so concurrent sign-ins and merges for it happen one after the other, and only once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.credits import service as credits
from rendio.credits.models import Purchase
from rendio.credits.service import Reason
from rendio.generation.models import VideoJob
from rendio.identity.apple_signin import AppleIdentity
from rendio.identity.devicecheck import Bits, DeviceVerifier
from rendio.identity.models import PushToken, User
from rendio.identity.sessions import revoke_sessions
from rendio.platform.errors import AuthApiError, Forbidden


@dataclass(frozen=True)
class DeviceUser:
    user: User
    is_new: bool


async def check_device(
    session: AsyncSession,
    verifier: DeviceVerifier,
    *,
    device_id: str,
    device_token: str,
    starter_credits: int,
) -> DeviceUser:
    """Find or create the guest of `device_id`; grant starter credits if the device never had them.

    Concurrent checks of one device_id meet on the unique index (the loser's INSERT waits, then
    finds the winner's row) and then on the user row lock, so one user and one grant result.
    """
    bits = await verifier.read(session, device_token)
    inserted = (
        await session.execute(
            text(
                "INSERT INTO users (device_id, is_guest) VALUES (:device_id, true) "
                "ON CONFLICT (device_id) DO NOTHING RETURNING id"
            ),
            {"device_id": device_id},
        )
    ).scalar_one_or_none()
    user = (
        await session.execute(
            select(User).where(User.device_id == device_id).with_for_update(),
            execution_options={"populate_existing": True},
        )
    ).scalar_one()
    if user.banned_at is not None:
        raise Forbidden({"reason": "account banned"})

    if not user.initial_grant_claimed:
        if not bits.bit0 and not verifier.transactional:
            bits = await _read_bits_alone(session, verifier, device_token)
        if not bits.bit0 and starter_credits > 0:
            await credits.add(
                session,
                user.id,
                starter_credits,
                reason=Reason.INITIAL_GRANT,
                transaction_id=f"initial_grant:{user.id}",
                lifetime=True,
            )
        if not bits.bit0:
            await verifier.mark_claimed(session, device_token, bits)
        await session.execute(
            update(User).where(User.id == user.id).values(initial_grant_claimed=True)
        )
        await session.refresh(user)
    return DeviceUser(user=user, is_new=inserted is not None)


async def _read_bits_alone(
    session: AsyncSession, verifier: DeviceVerifier, device_token: str
) -> Bits:
    """Read the bits again while no other grant can run.

    Apple's bits cannot be compare-and-set and its tokens do not name the device, so two
    installs of one phone checking in at once would both see bit0 unset. Grants therefore take
    one shared lock, held until this transaction (and its bit0 update) commits, and read again
    under it. Only first grants pay for this; returning devices never reach it.
    """
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended('devicecheck:grant', 0))")
    )
    return await verifier.read(session, device_token)


async def create_anonymous_user(session: AsyncSession) -> User:
    user = User(is_guest=True)
    session.add(user)
    await session.flush()
    await session.refresh(user)
    return user


async def _lock_apple_account(session: AsyncSession, sub: str) -> None:
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"apple:{sub}"},
    )


async def sign_in_with_apple(
    session: AsyncSession, identity: AppleIdentity, guest: User | None
) -> User:
    """The user for this Apple account; a current guest is upgraded in place or merged into it."""
    await _lock_apple_account(session, identity.sub)
    existing = (
        await session.execute(
            select(User).where(User.apple_sub == identity.sub),
            execution_options={"populate_existing": True},
        )
    ).scalar_one_or_none()
    if existing is not None and existing.banned_at is not None:
        raise AuthApiError(400, "user_banned", "User is banned")

    if guest is not None and existing is None:
        upgraded = await _upgrade_guest(session, guest.id, identity)
        if upgraded is not None:
            return upgraded
    if guest is not None and existing is not None and existing.id != guest.id:
        await _merge_guest(session, guest.id, existing.id)
    if existing is not None:
        if identity.email and existing.email != identity.email:
            existing.email = identity.email
            await session.flush()
            await session.refresh(existing)  # reload what the UPDATE changed (updated_at)
        return existing

    user = User(apple_sub=identity.sub, email=identity.email, is_guest=False)
    session.add(user)
    await session.flush()
    await session.refresh(user)
    return user


async def _upgrade_guest(
    session: AsyncSession, guest_id: uuid.UUID, identity: AppleIdentity
) -> User | None:
    """Make the guest a registered user in place; None if it is no longer an open guest."""
    return (
        await session.execute(
            update(User)
            .where(User.id == guest_id, User.is_guest, User.merged_into.is_(None))
            .values(apple_sub=identity.sub, email=identity.email, is_guest=False, device_id=None)
            .returning(User),
            execution_options={"populate_existing": True},
        )
    ).scalar_one_or_none()


async def _merge_guest(session: AsyncSession, guest_id: uuid.UUID, target_id: uuid.UUID) -> None:
    """Move an open guest's credits, jobs, purchases and push tokens to `target_id` and close
    the guest (a later refund of the guest's purchase then takes from where its credits went).

    The compare-and-swap on `merged_into IS NULL` (under the guest's row lock) makes a retried
    or concurrent merge of the same guest a no-op; the ledger's unique transaction ids are the
    second lock.
    """
    closed = (
        await session.execute(
            update(User)
            .where(User.id == guest_id, User.is_guest, User.merged_into.is_(None))
            .values(merged_into=target_id, device_id=None)
            .returning(User.credits_remaining)
        )
    ).scalar_one_or_none()
    if closed is None:
        return
    if closed > 0:
        await credits.deduct(
            session,
            guest_id,
            closed,
            reason=Reason.MERGE_OUT,
            transaction_id=f"merge_out:{guest_id}",
            details={"into": str(target_id)},
        )
        await credits.add(
            session,
            target_id,
            closed,
            reason=Reason.MERGE_IN,
            transaction_id=f"merge_in:{guest_id}",
            details={"from": str(guest_id)},
            lifetime=True,
        )
    await session.execute(
        update(VideoJob).where(VideoJob.user_id == guest_id).values(user_id=target_id)
    )
    for table in (PushToken, Purchase):
        await session.execute(
            update(table).where(table.user_id == guest_id).values(user_id=target_id)
        )
    await revoke_sessions(session, user_id=guest_id)


async def update_profile(
    session: AsyncSession, user: User, *, language: str | None, theme_preference: str | None
) -> User:
    changes = {
        name: value
        for name, value in (("language", language), ("theme_preference", theme_preference))
        if value is not None
    }
    if changes:
        await session.execute(update(User).where(User.id == user.id).values(**changes))
        await session.refresh(user)
    return user


async def delete_account(session: AsyncSession, user_id: uuid.UUID) -> list[str]:
    """Delete the user row: sessions, tokens, jobs and push tokens go with it (ON DELETE
    CASCADE); ledger, audit and error rows stay with their user reference set to NULL.

    Returns the storage keys of the user's media, for the caller to remove once the deletion
    is committed.
    """
    stored = await session.execute(
        select(VideoJob.video_url, VideoJob.thumbnail_url).where(VideoJob.user_id == user_id)
    )
    keys = [key for row in stored for key in row if key]
    await session.execute(delete(User).where(User.id == user_id))
    return keys
