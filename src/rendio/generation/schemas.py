"""Request and response shapes of generate-video and get-video-status."""

from __future__ import annotations

import unicodedata
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, HttpUrl

from rendio.platform import i18n

MAX_PROMPT = 2000
MAX_IMAGE_URL = 2048


def _https_only(url: HttpUrl) -> HttpUrl:
    """Providers fetch the image themselves; an https URL of sane length is all we pass on."""
    if url.scheme != "https":
        raise ValueError("must be an https URL")
    if len(str(url)) > MAX_IMAGE_URL:
        raise ValueError(f"must be at most {MAX_IMAGE_URL} characters")
    return url


ImageUrl = Annotated[HttpUrl, AfterValidator(_https_only)]


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
    image_url: ImageUrl | None = Field(
        default=None,
        description="An https image for image-to-video models; passed to the provider, "
        "never fetched by us.",
    )
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
