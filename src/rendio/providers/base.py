"""The one protocol every video provider adapter speaks, and the errors it may raise.

The worker only ever talks to this protocol, so adding a provider is one module. Statuses are
mapped explicitly by each adapter; anything it does not recognise must come back as `running`
("keep polling"), never as a failure.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol


class ProviderError(Exception):
    """A provider call failed. `retryable` errors (408, 429, 5xx, network) are tried again
    with backoff; others end the job at once."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        self.retryable = retryable
        super().__init__(message)


@dataclass(frozen=True)
class GenerationRequest:
    job_id: uuid.UUID
    provider_model_id: str
    prompt: str
    duration: int
    aspect_ratio: str
    resolution: str
    image_url: str | None
    options: dict[str, Any] = field(default_factory=dict)
    workdir: Path = Path()


@dataclass(frozen=True)
class PollResult:
    status: Literal["running", "completed", "failed"]
    progress: int | None = None
    video: Path | None = None
    error: str | None = None


class VideoProvider(Protocol):
    name: str

    async def submit(self, request: GenerationRequest) -> str:
        """Start the work; return the provider's id for it."""
        ...

    async def poll(self, provider_job_id: str, request: GenerationRequest) -> PollResult: ...

    async def cancel(self, provider_job_id: str, request: GenerationRequest) -> None:
        """Best effort: stop work we will not pay attention to any more."""
        ...

    async def aclose(self) -> None:
        """Release what the adapter holds (clients, threads) when the process stops."""
        ...
