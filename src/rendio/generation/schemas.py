"""Request and response shapes of generate-video and get-video-status."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from rendio.platform import i18n

MAX_PROMPT = 2000


class GenerationSettings(BaseModel):
    """Any setting left out takes the model's default."""

    model_config = ConfigDict(extra="forbid")

    duration: int | None = Field(default=None, ge=1, le=600)
    aspect_ratio: str | None = Field(default=None, max_length=16)
    resolution: str | None = Field(default=None, max_length=16)


class GenerateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    model_id: uuid.UUID
    prompt: str  # checked by clean_prompt: ERR_4003, not ERR_4013
    settings: GenerationSettings = Field(default_factory=GenerationSettings)
    image_url: HttpUrl | None = None
    user_id: uuid.UUID | None = Field(
        default=None, description="Ignored when it is the caller's id; refused otherwise."
    )


class GenerateOut(BaseModel):
    job_id: uuid.UUID
    status: str
    credits_used: int
    credits_remaining: int


class JobError(BaseModel):
    code: str
    message: str


class VideoStatusIn(BaseModel):
    model_config = ConfigDict(extra="ignore")

    job_id: uuid.UUID


class VideoStatusOut(BaseModel):
    job_id: uuid.UUID
    status: str
    progress: int
    video_url: str | None
    thumbnail_url: str | None
    credits_used: int
    error: JobError | None
    created_at: datetime
    completed_at: datetime | None
    media_expired: bool = Field(
        description="Retention removed the video and thumbnail (links are then null)."
    )


def job_error(code: str | None, accept_language: str | None) -> JobError | None:
    """A job's error code with its message in the client's language (chosen at read time)."""
    if not code:
        return None
    language = i18n.negotiate(accept_language)
    return JobError(code=code, message=i18n.message(code, language, {}))


def clean_prompt(prompt: str) -> str | None:
    """The prompt trimmed, or None when it is empty, too long or holds control characters
    (line breaks and tabs are text; other control characters are not)."""
    trimmed = prompt.strip()
    if not 1 <= len(trimmed) <= MAX_PROMPT:
        return None
    for char in trimmed:
        if char not in "\n\t" and unicodedata.category(char) in ("Cc", "Cs"):
            return None
    return trimmed
