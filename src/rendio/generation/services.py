"""What generation is handed at run time: its slice of the one services object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from fastapi import Depends

from rendio.catalog.services import CatalogServices
from rendio.platform.services import services_dependency
from rendio.providers.base import VideoProvider


@dataclass(frozen=True)
class GenerationServices(CatalogServices):
    providers: Mapping[str, VideoProvider]

    @property
    def workdir(self) -> Path:
        """Scratch space for results on their way to storage, a folder per job."""
        return self.settings.data_dir / "work"


GenerationDeps = Annotated[GenerationServices, Depends(services_dependency(GenerationServices))]
