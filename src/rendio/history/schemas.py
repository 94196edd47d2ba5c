"""Shapes of the history endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from rendio.generation.jobs import JobStatus
from rendio.generation.schemas import JobError

DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class HistoryQuery(BaseModel):
    """What a page asks for; the same fields as GET's query parameters."""

    model_config = ConfigDict(extra="ignore")  # clients send their user_id along; ignored

    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, max_length=512)
    status: JobStatus | None = None
    deleted: bool = False

    @property
    def listing(self) -> str:
        """What a cursor is bound to besides its user: the filter it was issued for."""
        return f"{'deleted' if self.deleted else 'active'}:{self.status or '*'}"


class HistoryItem(BaseModel):
    job_id: uuid.UUID
    status: str
    progress: int
    prompt: str
    model_id: uuid.UUID
    model_name: str
    thumbnail_url: str | None
    video_url: str | None
    credits_used: int
    error: JobError | None
    created_at: datetime
    completed_at: datetime | None
    deleted_at: datetime | None
    media_expired: bool


class HistoryPage(BaseModel):
    data: list[HistoryItem]
    next_cursor: str | None
    has_more: bool


class JobRef(BaseModel):
    model_config = ConfigDict(extra="ignore")

    job_id: uuid.UUID


class JobVisibility(BaseModel):
    job_id: uuid.UUID
    deleted: bool
