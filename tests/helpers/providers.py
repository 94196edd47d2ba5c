"""Requests for provider adapter tests, and submitting one to get what later calls follow."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from rendio.providers.base import GenerationRequest, VideoProvider


def generation_request(**changes: Any) -> GenerationRequest:
    """A job as the runner hands it to an adapter; `changes` override the defaults."""
    values: dict[str, Any] = {
        "job_id": uuid.uuid4(),
        "provider_model_id": "test-model",
        "prompt": "a lighthouse in a storm",
        "duration": 5,
        "aspect_ratio": "16:9",
        "resolution": "720p",
        "image_url": None,
    }
    return GenerationRequest(**(values | changes))


async def submitted(
    adapter: VideoProvider, request: GenerationRequest
) -> tuple[str, GenerationRequest]:
    """Submit `request`; the provider's id for it, and the request as later calls see it."""
    submission = await adapter.submit(request)
    return submission.provider_job_id, dataclasses.replace(request, state=submission.state)
