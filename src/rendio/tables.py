"""Every table, imported in one place so the metadata (and Alembic) sees the whole schema."""

from rendio.admin.models import AdminAction
from rendio.catalog.models import Model
from rendio.credits.models import QuotaLog
from rendio.generation.models import IdempotencyKey, VideoJob
from rendio.identity.models import AuthSession, DeviceBits, PushToken, RefreshToken, User
from rendio.platform.db import Base
from rendio.platform.models import ErrorLog, WebhookDelivery

metadata = Base.metadata

__all__ = [
    "AdminAction",
    "AuthSession",
    "DeviceBits",
    "ErrorLog",
    "IdempotencyKey",
    "Model",
    "PushToken",
    "QuotaLog",
    "RefreshToken",
    "User",
    "VideoJob",
    "WebhookDelivery",
    "metadata",
]
