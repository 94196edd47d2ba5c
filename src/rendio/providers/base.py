"""The one protocol every video provider adapter speaks, and the errors it may raise.

The worker only ever talks to this protocol, so adding a provider is one module. Statuses are
mapped explicitly by each adapter; anything it does not recognise must come back as `running`
("keep polling"), never as a failure. What an adapter needs to follow a job later (the URLs a
provider returned, the deployment it was sent to) is returned with the submission and kept on
the job row, so a later poll — by another worker, after a restart or a configuration change —
follows the job exactly where it was sent.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Protocol


class ProviderError(Exception):
    """A provider call failed. `retryable` errors (408, 429, 5xx, network) are tried again
    with backoff; others end the job at once."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        maybe_done: bool = False,
    ) -> None:
        self.retryable = retryable
        # The provider's HTTP status, when it answered one.
        self.status = status
        # The request may have been carried out (the answer was lost or unreadable): a create
        # must not be sent again, or the provider would run, and bill, the work twice.
        self.maybe_done = maybe_done
        super().__init__(message.replace("\x00", ""))


class Failure(StrEnum):
    """Why a provider ended a job, as our error codes tell the user (raw text goes to logs)."""

    REJECTED = "rejected"  # the request or its output was refused (safety, bad input): ERR_5003
    TIMED_OUT = "timed_out"  # it ran out of time on the provider's side: ERR_5001
    UNAVAILABLE = "unavailable"  # the provider broke or cancelled it: ERR_5002


@dataclass(frozen=True)
class Download:
    """Where a result can be fetched, with the headers the fetch needs (an API key for a
    gateway's `/content`; none for a provider's public, expiring URL)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Submission:
    """The provider's id for the work, and what else following it needs (kept on the job)."""

    provider_job_id: str
    state: dict[str, Any] = field(default_factory=dict)


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
    # What `Submission.state` held, once submitted.
    state: dict[str, Any] = field(default_factory=dict)
    # Where the provider should call back (None: no public URL, the job is polled only).
    webhook_url: str | None = None


@dataclass(frozen=True)
class PollResult:
    """What a look at the job found. A completed job has its video as a local file (`video`)
    or somewhere to fetch it from (`download`), and maybe the provider's own thumbnail."""

    status: Literal["running", "completed", "failed"]
    progress: int | None = None
    video: Path | None = None
    download: Download | None = None
    thumbnail: Download | None = None
    error: str | None = None
    failure: Failure = Failure.REJECTED
    # What the provider says the job cost it, for the operator (its own units).
    cost: dict[str, Any] | None = None


class VideoProvider(Protocol):
    name: str
    # Whether the provider tells us when a job changed (given `webhook_url`): then polling is
    # only the fallback for lost callbacks and can be sparse.
    calls_back: bool

    async def submit(self, request: GenerationRequest) -> Submission:
        """Start the work; return the provider's id for it and what following it needs."""
        ...

    async def poll(self, provider_job_id: str, request: GenerationRequest) -> PollResult: ...

    async def cancel(self, provider_job_id: str, request: GenerationRequest) -> None:
        """Best effort: stop work we will not pay attention to any more."""
        ...

    async def aclose(self) -> None:
        """Release what the adapter holds (clients, threads) when the process stops."""
        ...
