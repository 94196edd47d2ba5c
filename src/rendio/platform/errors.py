"""The one error hierarchy: every non-2xx answer of a business endpoint is an AppError.

Each code has exactly one HTTP status (SPEC §3). The handlers in `http.py` render the envelope
`{"error": {"code", "message", "details"}}` with the message localized from Accept-Language.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class ErrorCode(StrEnum):
    INSUFFICIENT_CREDITS = "ERR_4001"
    MODEL_UNAVAILABLE = "ERR_4002"
    INVALID_PROMPT = "ERR_4003"
    RATE_LIMITED = "ERR_4004"
    UNAUTHORIZED = "ERR_4005"
    DEVICE_VERIFICATION_FAILED = "ERR_4006"
    IDEMPOTENCY_KEY_REUSED = "ERR_4007"
    IDEMPOTENCY_IN_PROGRESS = "ERR_4008"
    IDEMPOTENCY_KEY_INVALID = "ERR_4009"
    FORBIDDEN = "ERR_4010"
    NOT_FOUND = "ERR_4011"
    PURCHASE_INVALID = "ERR_4012"
    VALIDATION_FAILED = "ERR_4013"
    HEADERS_TOO_LARGE = "ERR_4014"
    REQUEST_TIMEOUT = "ERR_4015"
    API_KEY_INVALID = "ERR_4016"
    PROVIDER_TIMEOUT = "ERR_5001"
    PROVIDER_UNAVAILABLE = "ERR_5002"
    PROVIDER_REJECTED = "ERR_5003"
    DATABASE_ERROR = "ERR_6001"
    STORAGE_ERROR = "ERR_6002"
    INTERNAL_ERROR = "ERR_6003"
    UNAVAILABLE = "ERR_6004"


HTTP_STATUS: dict[ErrorCode, int] = {
    ErrorCode.INSUFFICIENT_CREDITS: 402,
    ErrorCode.MODEL_UNAVAILABLE: 400,
    ErrorCode.INVALID_PROMPT: 400,
    ErrorCode.RATE_LIMITED: 429,
    ErrorCode.UNAUTHORIZED: 401,
    ErrorCode.DEVICE_VERIFICATION_FAILED: 403,
    ErrorCode.IDEMPOTENCY_KEY_REUSED: 422,
    ErrorCode.IDEMPOTENCY_IN_PROGRESS: 409,
    ErrorCode.IDEMPOTENCY_KEY_INVALID: 400,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.PURCHASE_INVALID: 400,
    ErrorCode.VALIDATION_FAILED: 422,
    ErrorCode.HEADERS_TOO_LARGE: 431,
    ErrorCode.REQUEST_TIMEOUT: 408,
    ErrorCode.API_KEY_INVALID: 401,
    ErrorCode.PROVIDER_TIMEOUT: 504,
    ErrorCode.PROVIDER_UNAVAILABLE: 502,
    ErrorCode.PROVIDER_REJECTED: 502,
    ErrorCode.DATABASE_ERROR: 500,
    ErrorCode.STORAGE_ERROR: 500,
    ErrorCode.INTERNAL_ERROR: 500,
    ErrorCode.UNAVAILABLE: 503,
}


class AppError(Exception):
    """An error with a SPEC code; `details` fill the message placeholders and reach the client."""

    code: ErrorCode = ErrorCode.INTERNAL_ERROR

    def __init__(
        self,
        details: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
        code: ErrorCode | None = None,
    ) -> None:
        if code is not None:
            self.code = code
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(f"{self.code}: {self.details}")


class InsufficientCredits(AppError):
    code = ErrorCode.INSUFFICIENT_CREDITS

    def __init__(self, required: int, available: int) -> None:
        super().__init__({"required": required, "available": available})


class ModelUnavailable(AppError):
    code = ErrorCode.MODEL_UNAVAILABLE


class InvalidPrompt(AppError):
    code = ErrorCode.INVALID_PROMPT


class RateLimited(AppError):
    code = ErrorCode.RATE_LIMITED


class Unauthorized(AppError):
    code = ErrorCode.UNAUTHORIZED


class ApiKeyInvalid(AppError):
    """The `apikey` header is missing or wrong: the app's build is misconfigured, which signing
    in again cannot fix (unlike ERR_4005)."""

    code = ErrorCode.API_KEY_INVALID


class DeviceVerificationFailed(AppError):
    code = ErrorCode.DEVICE_VERIFICATION_FAILED


class IdempotencyKeyReused(AppError):
    code = ErrorCode.IDEMPOTENCY_KEY_REUSED


class IdempotencyInProgress(AppError):
    code = ErrorCode.IDEMPOTENCY_IN_PROGRESS


class IdempotencyKeyInvalid(AppError):
    code = ErrorCode.IDEMPOTENCY_KEY_INVALID


class Forbidden(AppError):
    code = ErrorCode.FORBIDDEN


class NotFound(AppError):
    code = ErrorCode.NOT_FOUND


class PurchaseInvalid(AppError):
    code = ErrorCode.PURCHASE_INVALID


class ValidationFailed(AppError):
    code = ErrorCode.VALIDATION_FAILED


class ProviderUnavailable(AppError):
    code = ErrorCode.PROVIDER_UNAVAILABLE


class DatabaseError(AppError):
    code = ErrorCode.DATABASE_ERROR


class Unavailable(AppError):
    """Busy (too many requests in flight) or not ready (a part of the process is down)."""

    code = ErrorCode.UNAVAILABLE
