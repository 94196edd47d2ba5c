"""Shapes of the admin endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

MAX_CREDITS = 1_000_000
DEFAULT_PAGE = 50
MAX_PAGE = 200

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=500)]
OptionalReason = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]


class AdminIn(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RefundCreditsIn(AdminIn):
    user_id: uuid.UUID
    amount: int = Field(ge=1, le=MAX_CREDITS)
    reason: Reason


class AdjustCreditsIn(AdminIn):
    user_id: uuid.UUID
    change: int = Field(ge=-MAX_CREDITS, le=MAX_CREDITS)
    reason: Reason

    @model_validator(mode="after")
    def _not_zero(self) -> AdjustCreditsIn:
        if self.change == 0:
            raise ValueError("change must not be 0")
        return self


class RefundJobIn(AdminIn):
    job_id: uuid.UUID
    reason: Reason


class SetModelIn(AdminIn):
    model_id: str = Field(min_length=1, max_length=100, description="The model's id or slug.")
    is_available: bool | None = None
    is_featured: bool | None = None
    price: int | None = Field(default=None, ge=1, le=MAX_CREDITS, description="Credits per job.")
    reason: OptionalReason = ""

    @model_validator(mode="after")
    def _changes_something(self) -> SetModelIn:
        if not self.changes():
            raise ValueError("give at least one of is_available, is_featured, price")
        return self

    def changes(self) -> dict[str, Any]:
        """Column → new value."""
        wanted = {
            "is_available": self.is_available,
            "is_featured": self.is_featured,
            "cost_per_generation": self.price,
        }
        return {column: value for column, value in wanted.items() if value is not None}


class BanIn(AdminIn):
    user_id: uuid.UUID
    reason: Reason


class UnbanIn(AdminIn):
    user_id: uuid.UUID
    reason: OptionalReason = ""


class ActionOut(BaseModel):
    """What an admin action did: its audit row id and the target before and after."""

    action_id: int
    before: dict[str, Any]
    after: dict[str, Any]


class AuditRow(BaseModel):
    id: int
    admin_id: uuid.UUID | None
    actor: str
    action: str
    target_user_id: uuid.UUID | None
    target_model_id: uuid.UUID | None
    target_job_id: uuid.UUID | None
    reason: str
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    request_id: str | None
    details: dict[str, Any]
    created_at: datetime


class ActionsPage(BaseModel):
    data: list[AuditRow]
    next_cursor: str | None
    has_more: bool


class ActionsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=DEFAULT_PAGE, ge=1, le=MAX_PAGE)
    cursor: str | None = Field(default=None, pattern=r"^[0-9]{1,18}$")
    user_id: uuid.UUID | None = None
    action: str | None = Field(default=None, max_length=64)


class UserQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    user_id: uuid.UUID | None = None
    device_id: str | None = Field(default=None, min_length=1, max_length=255)
    apple_sub: str | None = Field(default=None, min_length=1, max_length=255)

    @model_validator(mode="after")
    def _exactly_one(self) -> UserQuery:
        given = [self.user_id, self.device_id, self.apple_sub]
        if sum(value is not None for value in given) != 1:
            raise ValueError("give exactly one of user_id, device_id, apple_sub")
        return self


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: datetime | None = Field(
        default=None, description="ISO 8601 with a time zone; default: 24 hours ago."
    )
