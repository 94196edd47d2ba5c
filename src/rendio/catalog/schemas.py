"""Shapes of the catalog: the import file an operator writes and the API's model object."""

from __future__ import annotations

import uuid
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, model_validator

Provider = Literal["local", "fal", "openai", "runway", "replicate"]
# Model ids are derived from slugs, so the same slug has the same id on every install.
MODEL_ID_NAMESPACE = uuid.UUID("0b4f3f4e-5d0c-4c4e-9a53-72656e64696f")


def model_id_for(slug: str) -> uuid.UUID:
    return uuid.uuid5(MODEL_ID_NAMESPACE, slug)


class ModelSettings(BaseModel):
    """The generation settings a model accepts, each list with its default."""

    model_config = ConfigDict(extra="forbid")

    durations: list[int] = Field(min_length=1)
    default_duration: int
    aspect_ratios: list[str] = Field(min_length=1)
    default_aspect_ratio: str
    resolutions: list[str] = Field(min_length=1)
    default_resolution: str
    # Whether a request may (or must) bring `image_url`: image-to-video models say so.
    image_input: Literal["none", "optional", "required"] = "none"

    @model_validator(mode="after")
    def _defaults_are_offered(self) -> Self:
        if any(not 1 <= d <= 120 for d in self.durations):
            raise ValueError("durations must be between 1 and 120 seconds")
        for ratio in self.aspect_ratios:
            width, _, height = ratio.partition(":")
            if not (width.isdigit() and height.isdigit() and int(width) and int(height)):
                raise ValueError(f"aspect ratio {ratio!r} must look like 16:9")
        for resolution in self.resolutions:
            if not (resolution.endswith("p") and resolution[:-1].isdigit()):
                raise ValueError(f"resolution {resolution!r} must look like 720p")
        for name, options in (
            ("default_duration", self.durations),
            ("default_aspect_ratio", self.aspect_ratios),
            ("default_resolution", self.resolutions),
        ):
            if getattr(self, name) not in options:
                raise ValueError(f"{name} must be one of {options}")
        return self


class CatalogEntry(BaseModel):
    """One model in a catalog file."""

    model_config = ConfigDict(extra="forbid")

    slug: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]{0,99}$")
    name: str = Field(min_length=1, max_length=200)
    category: str = Field(min_length=1, max_length=64)
    description: str = Field(default="", max_length=2000)
    provider: Provider
    provider_model_id: str = Field(min_length=1, max_length=500)
    # Flat credits per job, or credits per second of video by resolution (then the flat price
    # is derived: the price of the default settings, shown to clients that know no better).
    cost_per_generation: int | None = Field(default=None, ge=1, le=100_000)
    cost_per_second: dict[str, int] | None = None
    is_featured: bool = False
    is_available: bool = True
    thumbnail_url: HttpUrl | None = None
    settings: ModelSettings
    options: dict[str, Any] = Field(default_factory=dict)
    deadline_seconds: int = Field(default=600, ge=10, le=86_400)

    @model_validator(mode="after")
    def _one_price(self) -> Self:
        if (self.cost_per_generation is None) == (self.cost_per_second is None):
            raise ValueError("give exactly one of cost_per_generation and cost_per_second")
        if self.cost_per_second is not None:
            missing = set(self.settings.resolutions) - set(self.cost_per_second)
            if missing:
                raise ValueError(f"cost_per_second has no price for {sorted(missing)}")
            if any(not 1 <= credits <= 10_000 for credits in self.cost_per_second.values()):
                raise ValueError("cost_per_second prices must be between 1 and 10000")
            self.cost_per_generation = price(
                self.cost_per_generation,
                self.cost_per_second,
                self.settings.default_duration,
                self.settings.default_resolution,
            )
        return self


def price(
    flat: int | None, per_second: dict[str, int] | None, duration: int, resolution: str
) -> int:
    """What one job with these settings costs: per second of video at its resolution when the
    model is priced so (what providers bill), else the flat price."""
    if per_second is not None:
        return per_second[resolution] * duration
    assert flat is not None
    return flat


class PriceOption(BaseModel):
    duration: int
    resolution: str
    credits: int


class CatalogFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    models: list[CatalogEntry] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_slugs(self) -> Self:
        seen: set[str] = set()
        for entry in self.models:
            if entry.slug in seen:
                raise ValueError(f"slug {entry.slug!r} appears more than once")
            seen.add(entry.slug)
        return self


class ModelOut(BaseModel):
    """A model as `get-models` returns it."""

    id: uuid.UUID
    slug: str
    name: str
    category: str
    description: str
    cost_per_generation: int
    cost_per_second: dict[str, int] | None
    # The price of every duration and resolution the model offers.
    prices: list[PriceOption]
    provider: str
    is_featured: bool
    thumbnail_url: str | None
    settings: ModelSettings


class ModelsOut(BaseModel):
    models: list[ModelOut]
