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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from rendio.identity import metadata
from rendio.identity.apple_signin import AppleIdentity
from rendio.identity.devicecheck import Bits, DeviceVerifier
from rendio.identity.gotrue import AuthApiError
from rendio.identity.models import User
from rendio.identity.services import MergeGuest
from rendio.ledger import service as ledger
from rendio.ledger.service import Reason
from rendio.platform.errors import Forbidden, Unavailable

_NEW_GUEST = text(
    "INSERT INTO users (device_id, is_guest) VALUES (:device_id, true) "
    "ON CONFLICT (device_id) DO NOTHING RETURNING id"
)
_LOCK_GRANTS = text("SELECT pg_advisory_xact_lock(hashtextextended('devicecheck:grant', 0))")
_LOCK_APPLE_ACCOUNT = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")


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
    user, is_new = await _guest_of_device(session, device_id)
    if user.banned_at is not None:
        raise Forbidden({"reason": "account banned"})

    if not user.initial_grant_claimed:
        if not bits.bit0 and not verifier.transactional:
            bits = await _read_bits_alone(session, verifier, device_token)
        if not bits.bit0 and starter_credits > 0:
            await ledger.add(
                session,
                user.id,
                starter_credits,
                reason=Reason.INITIAL_GRANT,
                transaction_id=f"initial_grant:{user.id}",
                lifetime=True,
            )
        if not bits.bit0:
            await verifier.mark_claimed(session, device_token, bits)
        # The row as it now stands (the grant moved its balance), loaded into `user`.
        await session.execute(
            update(User)
            .where(User.id == user.id)
            .values(initial_grant_claimed=True)
            .returning(User),
            execution_options={"populate_existing": True},
        )
    return DeviceUser(user=user, is_new=is_new)


_DEVICE_ATTEMPTS = 3


async def _guest_of_device(session: AsyncSession, device_id: str) -> tuple[User, bool]:
    """The guest holding `device_id`, locked (created if there is none), and whether it is new.

    Between the insert that found the device taken and the lock, the holder can let the
    device go — deleted with its account, or upgraded to Apple — and the lock then finds no
    row: the device simply has no guest any more, so try again (the next insert succeeds).
    """
    for _ in range(_DEVICE_ATTEMPTS):
        inserted = (
            await session.execute(_NEW_GUEST, {"device_id": device_id})
        ).scalar_one_or_none()
        user = (
            await session.execute(
                select(User).where(User.device_id == device_id).with_for_update(),
                execution_options={"populate_existing": True},
            )
        ).scalar_one_or_none()
        if user is not None:
            return user, inserted is not None
    raise Unavailable({"reason": "the device's account kept changing; try again"})


async def _read_bits_alone(
    session: AsyncSession, verifier: DeviceVerifier, device_token: str
) -> Bits:
    """Read the bits again while no other grant can run.

    Apple's bits cannot be compare-and-set and its tokens do not name the device, so two
    installs of one phone checking in at once would both see bit0 unset. Grants therefore take
    one shared lock, held until this transaction (and its bit0 update) commits, and read again
    under it. Only first grants pay for this; returning devices never reach it.
    """
    await session.execute(_LOCK_GRANTS)
    return await verifier.read(session, device_token)


async def create_anonymous_user(
    session: AsyncSession, user_metadata: Mapping[str, Any] | None = None
) -> User:
    """A guest without a device (`signInAnonymously`), keeping the `data` it signed up with."""
    user = User(is_guest=True)
    if user_metadata:
        user.user_metadata = _storable_metadata({}, user_metadata)
    session.add(user)
    await session.flush()
    await session.refresh(user)
    return user


async def _lock_apple_account(session: AsyncSession, sub: str) -> None:
    await session.execute(
        _LOCK_APPLE_ACCOUNT,
        {"key": f"apple:{sub}"},
    )


async def sign_in_with_apple(
    session: AsyncSession, identity: AppleIdentity, guest: User | None, merge: MergeGuest
) -> User:
    """The user for this Apple account; a current guest is upgraded in place or merged into it
    (by `merge`, which moves what every domain holds for the guest)."""
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
        await merge(session, guest.id, existing.id)
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


async def close_guest(
    session: AsyncSession, guest_id: uuid.UUID, target_id: uuid.UUID
) -> int | None:
    """Close an open guest as merged into `target_id` and release its device; return the
    credits it held, or None if it was not an open guest (already merged: nothing to do).

    The compare-and-swap on `merged_into IS NULL` (under the guest's row lock) is what makes a
    retried or concurrent merge of the same guest a no-op.
    """
    closed: int | None = (
        await session.execute(
            update(User)
            .where(User.id == guest_id, User.is_guest, User.merged_into.is_(None))
            .values(merged_into=target_id, device_id=None)
            .returning(User.credits_remaining)
        )
    ).scalar_one_or_none()
    return closed


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


async def update_user(
    session: AsyncSession,
    user: User,
    *,
    email: str | None,
    phone: str | None,
    password: str | None,
    app_metadata: Mapping[str, Any] | None,
    data: Mapping[str, Any] | None,
) -> User:
    """supabase `updateUser`: `data` merges into `user_metadata`; credentials cannot change.

    There is no email, phone or password sign-in here, so a new email, a phone or a password
    is refused the way GoTrue refuses a disabled provider, and `app_metadata` the way it refuses
    a non-admin; every refusal comes before anything is written. An email equal to the
    current one (from Sign in with Apple) is no change, as in GoTrue.
    """
    if app_metadata is not None:
        raise AuthApiError(403, "not_admin", "Updating app_metadata requires admin privileges")
    if email and email != (user.email or ""):
        raise AuthApiError(
            422,
            "email_provider_disabled",
            "Email sign-in is not offered; the email comes from Sign in with Apple",
        )
    if phone:
        raise AuthApiError(422, "phone_provider_disabled", "Phone sign-in is not offered")
    if password is not None:
        raise AuthApiError(
            422,
            "email_provider_disabled",
            "Passwords are not used: there is no email or phone sign-in",
        )
    if not data:
        return user
    locked = (
        await session.execute(
            select(User).where(User.id == user.id).with_for_update(),
            execution_options={"populate_existing": True},
        )
    ).scalar_one_or_none()
    if locked is None:
        raise AuthApiError(404, "user_not_found", "User not found")
    changed = _storable_metadata(locked.user_metadata, data)
    await session.execute(update(User).where(User.id == user.id).values(user_metadata=changed))
    await session.refresh(locked)
    return locked


def _storable_metadata(current: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    result = metadata.merged(current, changes)
    try:
        metadata.check_storable(result)
    except metadata.MetadataRefused as refused:
        raise AuthApiError(400, "validation_failed", f"data: user_metadata {refused}") from None
    return result


async def delete_user(session: AsyncSession, user_id: uuid.UUID) -> None:
    """Delete the user row: sessions, tokens, jobs and push tokens go with it (ON DELETE
    CASCADE); ledger, audit and error rows stay with their user reference set to NULL."""
    await session.execute(delete(User).where(User.id == user_id))


_LANGUAGE = text("SELECT language FROM users WHERE id = :id")


async def language_of(session: AsyncSession, user_id: uuid.UUID) -> str:
    """The user's language (en when the account is gone)."""
    language = (await session.execute(_LANGUAGE, {"id": user_id})).scalar_one_or_none()
    return str(language or "en")
