"""The model catalog table: what can be generated, by which provider, at what cost."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import CheckConstraint, String, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from rendio.platform.db import Base, Timestamps


class VideoModel(Timestamps, Base):
    """A generation model. `is_available` is the operator's switch; a model is offered only
    when it is on *and* its provider is configured."""

    __tablename__ = "models"
    __table_args__ = (
        CheckConstraint("cost_per_generation > 0", name="cost_positive"),
        CheckConstraint("deadline_seconds > 0", name="deadline_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(Text)
    category: Mapped[str] = mapped_column(String(64))
    description: Mapped[str] = mapped_column(Text, server_default="")
    provider: Mapped[str] = mapped_column(String(32))
    provider_model_id: Mapped[str] = mapped_column(Text)
    cost_per_generation: Mapped[int]
    cost_per_second: Mapped[dict[str, int] | None] = mapped_column(JSONB)
    is_featured: Mapped[bool] = mapped_column(server_default=text("false"))
    is_available: Mapped[bool] = mapped_column(server_default=text("true"))
    thumbnail_url: Mapped[str | None] = mapped_column(Text)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB)
    options: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    deadline_seconds: Mapped[int] = mapped_column(server_default=text("600"))
